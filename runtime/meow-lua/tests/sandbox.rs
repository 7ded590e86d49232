//! The Lua host against a recording fake runtime: handlers, capabilities, the sandbox, limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use meow_lua::LuaEngine;
use meow_plugin::{
    Capability, Engine, Event, Failure, Host, HostError, Kind, Level, Limits, Manifest, MessageEvent, NodeInfo, Plugin,
    Services,
};

#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, String)>>,
    logs: Mutex<Vec<String>>,
    kv: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

impl Services for Recorder {
    fn send(&self, _: &str, to: &str, _: &str, body: Vec<u8>) -> Result<(), HostError> {
        self.sent
            .lock()
            .unwrap()
            .push((to.into(), String::from_utf8(body).unwrap()));
        Ok(())
    }
    fn reply(&self, _: &str, id: &str, text: &str) -> Result<(), HostError> {
        self.sent.lock().unwrap().push((format!("reply:{id}"), text.into()));
        Ok(())
    }
    fn kv_get(&self, _: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.kv.lock().unwrap().get(key).cloned())
    }
    fn kv_set(&self, _: &str, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.kv.lock().unwrap().insert(key.into(), value.to_vec());
        Ok(())
    }
    fn kv_delete(&self, _: &str, key: &str) -> Result<(), HostError> {
        self.kv.lock().unwrap().remove(key);
        Ok(())
    }
    fn kv_list(&self, _: &str, prefix: &str) -> Result<Vec<String>, HostError> {
        Ok(self
            .kv
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn set_timer(&self, _: &str, _: &str, _: u64, _: bool) -> Result<u64, HostError> {
        Ok(7)
    }
    fn cancel_timer(&self, _: &str, _: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn node_info(&self, instance: &str) -> NodeInfo {
        NodeInfo {
            instance: instance.into(),
            nickname: None,
            fingerprint: "f".into(),
            contacts: vec![],
            now: 1,
        }
    }
    fn log(&self, _: &str, _: Level, message: &str) {
        self.logs.lock().unwrap().push(message.into());
    }
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
    fn directory_search(&self, _: &str, _: &str) -> Result<Vec<meow_plugin::DirectoryListing>, HostError> {
        Ok(vec![])
    }
}

fn plugin(source: &str) -> Plugin {
    Plugin {
        manifest: Manifest {
            name: "t".into(),
            version: "1".into(),
            kind: Kind::Lua,
            entry: "t.lua".into(),
            sha256: None,
            description: None,
            capabilities: vec![],
            config: Default::default(),
        },
        dir: PathBuf::new(),
        code: source.as_bytes().to_vec(),
        sha256: String::new(),
    }
}

fn start(
    source: &str,
    caps: &[Capability],
    limits: Limits,
) -> (Result<Box<dyn meow_plugin::Instance>, Failure>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let host = Host::new("t", caps.iter().copied(), rec.clone());
    (LuaEngine.instantiate(&plugin(source), host, limits), rec)
}

fn message(text: &str) -> Event {
    Event::Message(MessageEvent {
        id: "abc".into(),
        sender: "bob".into(),
        content_type: "text".into(),
        body: text.as_bytes().to_vec(),
        text: Some(text.into()),
        sent_at: 1,
        group: None,
    })
}

#[test]
fn handlers_reply_and_use_the_kv_store() {
    let src = r#"
        function init(config) meow.info("prefix " .. config.prefix) end
        function on_message(msg)
            local n = tonumber(meow.kv.get("n") or "0") + 1
            meow.kv.set("n", tostring(n))
            meow.reply(msg, meow.config.prefix .. msg.text .. " #" .. n)
        end
    "#;
    let (inst, rec) = start(src, &[Capability::Messaging, Capability::Kv], Limits::default());
    let mut inst = inst.unwrap();
    inst.init(r#"{"prefix": "> "}"#).unwrap();
    inst.handle(&message("hi")).unwrap();
    inst.handle(&message("again")).unwrap();
    assert_eq!(
        *rec.sent.lock().unwrap(),
        vec![
            ("reply:abc".into(), "> hi #1".into()),
            ("reply:abc".into(), "> again #2".into())
        ]
    );
    assert_eq!(rec.logs.lock().unwrap()[0], "prefix > ");
}

#[test]
fn message_tables_carry_every_field_to_both_handler_styles() {
    let show =
        r#"table.concat({m.id, m.sender, m.content_type, m.text or "-", #m.body, m.sent_at, m.group or "-"}, "|")"#;
    let direct = format!("function on_message(m) meow.send('log', {show}) end");
    let catch_all = format!("function handle(e) local m = e.message; meow.send('log', e.kind .. ':' .. {show}) end");
    let binary = Event::Message(MessageEvent {
        id: "i2".into(),
        sender: "carol".into(),
        content_type: "binary".into(),
        body: vec![0, 159, 146, 150],
        text: None,
        sent_at: 1_800_000_000_000,
        group: Some("friends".into()),
    });
    for (src, prefix) in [(direct, ""), (catch_all, "message:")] {
        let (inst, rec) = start(&src, &[Capability::Messaging], Limits::default());
        let mut inst = inst.unwrap();
        inst.handle(&message("héllo")).unwrap();
        inst.handle(&binary).unwrap();
        let sent: Vec<String> = rec.sent.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            sent,
            vec![
                format!("{prefix}abc|bob|text|héllo|6|1|-"),
                format!("{prefix}i2|carol|binary|-|4|1800000000000|friends"),
            ]
        );
    }
}

#[test]
fn capabilities_not_granted_are_denied() {
    let src = r#"function on_message(msg) local ok, err = meow.send("bob", "x"); meow.warn(err) end"#;
    let (inst, rec) = start(src, &[], Limits::default());
    inst.unwrap().handle(&message("x")).unwrap();
    assert!(rec.sent.lock().unwrap().is_empty());
    assert!(
        rec.logs.lock().unwrap()[0].contains("capability 'messaging' is not granted"),
        "{:?}",
        rec.logs.lock().unwrap()
    );
}

#[test]
fn the_sandbox_has_no_way_out() {
    for escape in [
        "io.open('/etc/passwd')",
        "os.execute('true')",
        "require('os')",
        "load('return 1')()",
        "loadfile('/etc/passwd')",
        "dofile('/etc/passwd')",
        "string.dump(print)",
        "debug.getinfo(1)",
        "package.loadlib('x', 'y')",
        "collectgarbage('count')",
        "(''):dump()",
    ] {
        let (inst, _) = start(escape, &[], Limits::default());
        match inst {
            Err(Failure::Stopped(reason)) => assert!(reason.contains("cannot start"), "{escape}: {reason}"),
            other => panic!("{escape} was not refused: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn an_infinite_loop_is_stopped() {
    let limits = Limits {
        call_ms: 200,
        ..Limits::default()
    };
    let (inst, _) = start("function on_message(m) while true do end end", &[], limits);
    let err = inst.unwrap().handle(&message("x")).unwrap_err();
    assert!(matches!(&err, Failure::Stopped(r) if r.contains("budget")), "{err:?}");
}

#[test]
fn a_memory_bomb_is_stopped() {
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let (inst, _) = start(
        "function on_message(m) local t = {} while true do t[#t+1] = string.rep('x', 65536) end end",
        &[],
        limits,
    );
    let err = inst.unwrap().handle(&message("x")).unwrap_err();
    assert_eq!(err, Failure::Stopped("exceeded its memory limit of 8 MiB".into()));
}

#[test]
fn ordinary_errors_keep_the_instance() {
    let (inst, rec) = start(
        "function on_message(m) if m.text == 'bad' then error('boom') end meow.info('ok') end",
        &[],
        Limits::default(),
    );
    let mut inst = inst.unwrap();
    assert!(matches!(inst.handle(&message("bad")), Err(Failure::Error(e)) if e.contains("boom")));
    inst.handle(&message("fine")).unwrap();
    assert_eq!(rec.logs.lock().unwrap().as_slice(), ["ok"]);
}
