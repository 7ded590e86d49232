//! The plugin host services as fakes.

use parking_lot::Mutex;
use std::collections::BTreeMap;

use meow_plugin::{DirectoryListing, HostError, Level, NodeInfo, Services};

/// Services that accept everything and do nothing: what a benchmark of the plugin boundary
/// wants, and a test that only looks at the plugin's own answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullServices;

fn node_info(instance: &str) -> NodeInfo {
    NodeInfo {
        instance: instance.into(),
        nickname: None,
        fingerprint: "f".into(),
        contacts: vec![],
        now: 1,
    }
}

impl Services for NullServices {
    fn send(&self, _: &str, _: &str, _: &str, _: Vec<u8>) -> Result<(), HostError> {
        Ok(())
    }
    fn reply(&self, _: &str, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn kv_get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(None)
    }
    fn kv_set(&self, _: &str, _: &str, _: &[u8]) -> Result<(), HostError> {
        Ok(())
    }
    fn kv_delete(&self, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn kv_list(&self, _: &str, _: &str) -> Result<Vec<String>, HostError> {
        Ok(vec![])
    }
    fn set_timer(&self, _: &str, _: &str, _: u64, _: bool) -> Result<u64, HostError> {
        Ok(1)
    }
    fn cancel_timer(&self, _: &str, _: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn node_info(&self, instance: &str) -> NodeInfo {
        node_info(instance)
    }
    fn contact_policy(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn log(&self, _: &str, _: Level, _: &str) {}
    fn group_send(&self, _: &str, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn group_names(&self, _: &str) -> Result<Vec<String>, HostError> {
        Ok(vec![])
    }
    fn group_members(&self, _: &str, _: &str) -> Result<Vec<String>, HostError> {
        Ok(vec![])
    }
    fn broadcast(&self, _: &str, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn directory_publish(&self, _: &str, _: &str, _: Vec<String>) -> Result<(), HostError> {
        Ok(())
    }
    fn directory_withdraw(&self, _: &str) -> Result<(), HostError> {
        Ok(())
    }
    fn directory_search(&self, _: &str, _: &str) -> Result<Vec<DirectoryListing>, HostError> {
        Ok(vec![])
    }
}

/// Services that remember what plugins asked for: sends (`reply:ID` as the recipient of a reply),
/// log lines, and a working key-value store. Everything else behaves like [`NullServices`].
#[derive(Debug, Default)]
pub struct RecordingServices {
    sent: Mutex<Vec<(String, String)>>,
    logs: Mutex<Vec<String>>,
    kv: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl RecordingServices {
    /// What was sent: (recipient, text).
    pub fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().clone()
    }

    /// The log lines.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().clone()
    }
}

impl Services for RecordingServices {
    fn send(&self, _: &str, to: &str, _: &str, body: Vec<u8>) -> Result<(), HostError> {
        self.sent
            .lock()
            .push((to.into(), String::from_utf8_lossy(&body).into_owned()));
        Ok(())
    }
    fn reply(&self, _: &str, id: &str, text: &str) -> Result<(), HostError> {
        self.sent.lock().push((format!("reply:{id}"), text.into()));
        Ok(())
    }
    fn kv_get(&self, _: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.kv.lock().get(key).cloned())
    }
    fn kv_set(&self, _: &str, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.kv.lock().insert(key.into(), value.to_vec());
        Ok(())
    }
    fn kv_delete(&self, _: &str, key: &str) -> Result<(), HostError> {
        self.kv.lock().remove(key);
        Ok(())
    }
    fn kv_list(&self, _: &str, prefix: &str) -> Result<Vec<String>, HostError> {
        Ok(self
            .kv
            .lock()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn set_timer(&self, i: &str, n: &str, ms: u64, r: bool) -> Result<u64, HostError> {
        NullServices.set_timer(i, n, ms, r)
    }
    fn cancel_timer(&self, i: &str, id: u64) -> Result<(), HostError> {
        NullServices.cancel_timer(i, id)
    }
    fn node_info(&self, instance: &str) -> NodeInfo {
        node_info(instance)
    }
    fn contact_policy(&self, _: &str, _: &str) -> Option<String> {
        None
    }
    fn log(&self, _: &str, _: Level, message: &str) {
        self.logs.lock().push(message.into());
    }
    fn group_send(&self, i: &str, g: &str, t: &str) -> Result<(), HostError> {
        NullServices.group_send(i, g, t)
    }
    fn group_names(&self, i: &str) -> Result<Vec<String>, HostError> {
        NullServices.group_names(i)
    }
    fn group_members(&self, i: &str, g: &str) -> Result<Vec<String>, HostError> {
        NullServices.group_members(i, g)
    }
    fn broadcast(&self, i: &str, t: &str) -> Result<(), HostError> {
        NullServices.broadcast(i, t)
    }
    fn directory_publish(&self, i: &str, d: &str, t: Vec<String>) -> Result<(), HostError> {
        NullServices.directory_publish(i, d, t)
    }
    fn directory_withdraw(&self, i: &str) -> Result<(), HostError> {
        NullServices.directory_withdraw(i)
    }
    fn directory_search(&self, i: &str, w: &str) -> Result<Vec<DirectoryListing>, HostError> {
        NullServices.directory_search(i, w)
    }
}
