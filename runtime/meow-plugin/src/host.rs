//! The services a plugin instance may call, behind its capability checks.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::manifest::Capability;

/// Why a host call failed. It mirrors the WIT `error` variant, so it is deliberately exhaustive:
/// a new kind needs a new WIT case, and the hosts' matches say where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The capability is not granted.
    #[error("denied: {0}")]
    Denied(String),
    /// No such contact, key or timer.
    #[error("not found: {0}")]
    NotFound(String),
    /// A limit was reached.
    #[error("quota: {0}")]
    Quota(String),
    /// Bad arguments.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The operation failed.
    #[error("failed: {0}")]
    Failed(String),
}

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

/// One of the user's devices, as a plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// Its id (hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it is the device the plugin runs on.
    pub this: bool,
    /// When something last came from it, Unix ms, if anything did since the runtime started.
    pub last_seen: Option<u64>,
}

/// The node's public information, as a plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The instance's name.
    pub instance: String,
    /// The home's nickname.
    pub nickname: Option<String>,
    /// The home's user key fingerprint.
    pub fingerprint: String,
    /// Contact names.
    pub contacts: Vec<String>,
    /// Unix ms.
    pub now: u64,
}

/// A directory entry, as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryListing {
    /// The publisher's nickname.
    pub nickname: Option<String>,
    /// Their description.
    pub description: String,
    /// Their tags.
    pub tags: Vec<String>,
    /// The public card's text.
    pub card: String,
}

/// What the runtime provides to instances. Calls are synchronous and quick: sending only queues.
pub trait Services: Send + Sync {
    /// Queues a message to a contact.
    fn send(&self, instance: &str, to: &str, content_type: &str, body: Vec<u8>) -> Result<(), HostError>;
    /// Queues a reply to a received message.
    fn reply(&self, instance: &str, message_id: &str, text: &str) -> Result<(), HostError>;
    /// Reads a key.
    fn kv_get(&self, instance: &str, key: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Writes a key.
    fn kv_set(&self, instance: &str, key: &str, value: &[u8]) -> Result<(), HostError>;
    /// Deletes a key.
    fn kv_delete(&self, instance: &str, key: &str) -> Result<(), HostError>;
    /// Keys with a prefix, sorted.
    fn kv_list(&self, instance: &str, prefix: &str) -> Result<Vec<String>, HostError>;
    /// Sets a timer; returns its id.
    fn set_timer(&self, instance: &str, name: &str, after_ms: u64, repeat: bool) -> Result<u64, HostError>;
    /// Sets a timer that fires at the times of a cron expression (local time); returns its id.
    fn set_cron_timer(&self, instance: &str, name: &str, expression: &str) -> Result<u64, HostError> {
        let _ = (instance, name, expression);
        Err(HostError::Failed("this runtime has no cron timers".into()))
    }
    /// Cancels a timer.
    fn cancel_timer(&self, instance: &str, id: u64) -> Result<(), HostError>;
    /// The node's public information.
    fn node_info(&self, instance: &str) -> NodeInfo;
    /// How messages to a contact travel (`server`, `direct`, `matriochka`); `None` for no
    /// such contact.
    fn contact_policy(&self, instance: &str, contact: &str) -> Option<String>;
    /// Logs a line for the instance.
    fn log(&self, instance: &str, level: Level, message: &str);
    /// Queues a message to a group.
    fn group_send(&self, instance: &str, group: &str, text: &str) -> Result<(), HostError>;
    /// The groups this home is in.
    fn group_names(&self, instance: &str) -> Result<Vec<String>, HostError>;
    /// A group's members.
    fn group_members(&self, instance: &str, group: &str) -> Result<Vec<String>, HostError>;
    /// Queues an emergency broadcast.
    fn broadcast(&self, instance: &str, text: &str) -> Result<(), HostError>;
    /// Queues the publication of this home's directory entry.
    fn directory_publish(&self, instance: &str, description: &str, tags: Vec<String>) -> Result<(), HostError>;
    /// Queues the withdrawal of this home's directory entry.
    fn directory_withdraw(&self, instance: &str) -> Result<(), HostError>;
    /// Searches the directory (waits for the server).
    fn directory_search(&self, instance: &str, words: &str) -> Result<Vec<DirectoryListing>, HostError>;
    /// Queues a file to a contact; returns its id (hex).
    fn file_send(&self, instance: &str, file: OutgoingFile) -> Result<String, HostError> {
        let _ = (instance, file);
        Err(HostError::Failed("this runtime does not send files".into()))
    }
    /// Makes an HTTP request to a host meow.yaml allows.
    fn http(&self, instance: &str, request: HttpRequest) -> Result<HttpResponse, HostError> {
        let _ = (instance, request);
        Err(HostError::Denied("this runtime makes no HTTP requests".into()))
    }
    /// Publishes to the MQTT broker meow.yaml names (QoS 1).
    fn mqtt_publish(&self, instance: &str, topic: &str, payload: &[u8], retain: bool) -> Result<(), HostError> {
        let _ = (instance, topic, payload, retain);
        Err(HostError::Failed("this runtime has no MQTT broker".into()))
    }
    /// Subscribes the instance to an MQTT topic filter (`+` and `#` allowed): what arrives on
    /// it comes as [`crate::Event::Mqtt`]. `subscribe == false` unsubscribes.
    fn mqtt_subscribe(&self, instance: &str, filter: &str, subscribe: bool) -> Result<(), HostError> {
        let _ = (instance, filter, subscribe);
        Err(HostError::Failed("this runtime has no MQTT broker".into()))
    }
    /// The user's devices, this one first (none with one device).
    fn devices(&self, instance: &str) -> Result<Vec<DeviceView>, HostError> {
        let _ = instance;
        Ok(Vec::new())
    }
    /// Reads bytes `offset..offset + len` of a received file (fewer at its end).
    fn file_read(&self, instance: &str, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, HostError> {
        let _ = (instance, id, offset, len);
        Err(HostError::Failed("this runtime has no files".into()))
    }
}

/// An HTTP request a plugin makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// GET, POST, …
    pub method: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

/// The answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The most a plugin reads of a file in one call.
pub const MAX_FILE_READ: u32 = 1 << 20;

/// A file a plugin sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingFile {
    /// The contact.
    pub to: String,
    /// Its name (a plain file name).
    pub name: String,
    /// Its media type (empty: guessed from the name).
    pub media_type: String,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// One instance's access to the services: its name and its granted capabilities.
#[derive(Clone)]
pub struct Host {
    instance: String,
    granted: BTreeSet<Capability>,
    services: Arc<dyn Services>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host({}, {:?})", self.instance, self.granted)
    }
}

impl Host {
    /// Access for `instance` with `granted` capabilities.
    pub fn new(instance: &str, granted: impl IntoIterator<Item = Capability>, services: Arc<dyn Services>) -> Self {
        Self {
            instance: instance.to_owned(),
            granted: granted.into_iter().collect(),
            services,
        }
    }

    /// The instance's name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn require(&self, cap: Capability) -> Result<(), HostError> {
        if self.granted.contains(&cap) {
            Ok(())
        } else {
            Err(HostError::Denied(format!(
                "capability '{}' is not granted to instance '{}' (grant it in meow.yaml)",
                cap.name(),
                self.instance
            )))
        }
    }

    /// Sends text (capability messaging).
    pub fn send(&self, to: &str, content_type: &str, body: Vec<u8>) -> Result<(), HostError> {
        self.require(Capability::Messaging)?;
        self.services.send(&self.instance, to, content_type, body)
    }

    /// Replies (capability messaging).
    pub fn reply(&self, message_id: &str, text: &str) -> Result<(), HostError> {
        self.require(Capability::Messaging)?;
        self.services.reply(&self.instance, message_id, text)
    }

    /// Reads a key (capability kv).
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.require(Capability::Kv)?;
        self.services.kv_get(&self.instance, key)
    }

    /// Writes a key (capability kv).
    pub fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.require(Capability::Kv)?;
        self.services.kv_set(&self.instance, key, value)
    }

    /// Deletes a key (capability kv).
    pub fn kv_delete(&self, key: &str) -> Result<(), HostError> {
        self.require(Capability::Kv)?;
        self.services.kv_delete(&self.instance, key)
    }

    /// Lists keys (capability kv).
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<String>, HostError> {
        self.require(Capability::Kv)?;
        self.services.kv_list(&self.instance, prefix)
    }

    /// Sets a timer (capability timers).
    pub fn set_timer(&self, name: &str, after_ms: u64, repeat: bool) -> Result<u64, HostError> {
        self.require(Capability::Timers)?;
        self.services.set_timer(&self.instance, name, after_ms, repeat)
    }

    /// Sets a cron timer (capability timers).
    pub fn set_cron_timer(&self, name: &str, expression: &str) -> Result<u64, HostError> {
        self.require(Capability::Timers)?;
        self.services.set_cron_timer(&self.instance, name, expression)
    }

    /// Cancels a timer (capability timers).
    pub fn cancel_timer(&self, id: u64) -> Result<(), HostError> {
        self.require(Capability::Timers)?;
        self.services.cancel_timer(&self.instance, id)
    }

    /// Sends to a group (capability groups).
    pub fn group_send(&self, group: &str, text: &str) -> Result<(), HostError> {
        self.require(Capability::Groups)?;
        self.services.group_send(&self.instance, group, text)
    }

    /// Group names (capability groups).
    pub fn group_names(&self) -> Result<Vec<String>, HostError> {
        self.require(Capability::Groups)?;
        self.services.group_names(&self.instance)
    }

    /// Group members (capability groups).
    pub fn group_members(&self, group: &str) -> Result<Vec<String>, HostError> {
        self.require(Capability::Groups)?;
        self.services.group_members(&self.instance, group)
    }

    /// Broadcasts (capability broadcast).
    pub fn broadcast(&self, text: &str) -> Result<(), HostError> {
        self.require(Capability::Broadcast)?;
        self.services.broadcast(&self.instance, text)
    }

    /// Publishes the directory entry (capability directory).
    pub fn directory_publish(&self, description: &str, tags: Vec<String>) -> Result<(), HostError> {
        self.require(Capability::Directory)?;
        self.services.directory_publish(&self.instance, description, tags)
    }

    /// Withdraws the directory entry (capability directory).
    pub fn directory_withdraw(&self) -> Result<(), HostError> {
        self.require(Capability::Directory)?;
        self.services.directory_withdraw(&self.instance)
    }

    /// Searches the directory (capability directory).
    pub fn directory_search(&self, words: &str) -> Result<Vec<DirectoryListing>, HostError> {
        self.require(Capability::Directory)?;
        self.services.directory_search(&self.instance, words)
    }

    /// Sends a file (capability files); returns its id.
    pub fn file_send(&self, file: OutgoingFile) -> Result<String, HostError> {
        self.require(Capability::Files)?;
        self.services.file_send(&self.instance, file)
    }

    /// Makes an HTTP request (capability http; the host must be allowed in meow.yaml).
    pub fn http(&self, request: HttpRequest) -> Result<HttpResponse, HostError> {
        self.require(Capability::Http)?;
        self.services.http(&self.instance, request)
    }

    /// Reads part of a received file (capability files).
    pub fn file_read(&self, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, HostError> {
        self.require(Capability::Files)?;
        self.services.file_read(&self.instance, id, offset, len)
    }

    /// Publishes to the MQTT broker (capability mqtt).
    pub fn mqtt_publish(&self, topic: &str, payload: &[u8], retain: bool) -> Result<(), HostError> {
        self.require(Capability::Mqtt)?;
        self.services.mqtt_publish(&self.instance, topic, payload, retain)
    }

    /// Subscribes to (or, with `subscribe == false`, unsubscribes from) an MQTT topic filter
    /// (capability mqtt).
    pub fn mqtt_subscribe(&self, filter: &str, subscribe: bool) -> Result<(), HostError> {
        self.require(Capability::Mqtt)?;
        self.services.mqtt_subscribe(&self.instance, filter, subscribe)
    }

    /// The user's devices (capability devices).
    pub fn devices(&self) -> Result<Vec<DeviceView>, HostError> {
        self.require(Capability::Devices)?;
        self.services.devices(&self.instance)
    }

    /// Node information (always allowed).
    pub fn node_info(&self) -> NodeInfo {
        self.services.node_info(&self.instance)
    }

    /// A contact's privacy policy (always allowed: it is the home's own setting).
    pub fn contact_policy(&self, contact: &str) -> Option<String> {
        self.services.contact_policy(&self.instance, contact)
    }

    /// Logs (always allowed).
    pub fn log(&self, level: Level, message: &str) {
        self.services.log(&self.instance, level, message);
    }
}
