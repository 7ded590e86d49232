//! The echo bot: answers every text message with the same text after a prefix.
//!
//! Configuration: `prefix` (default `"echo: "`), `count` (default `true`: keep a per-contact message
//! count in the key-value store and mention it). An answer to a contact kept on another policy
//! than `server` says which (`[direct]`, `[matriochka]`): the way the answer travels.

use std::sync::OnceLock;

use meow_sdk::{Bot, Config, Message, export_bot, kv, log, messaging, node};

static CONFIG: OnceLock<Config> = OnceLock::new();

struct Echo;

fn count(sender: &str) -> Result<u64, String> {
    let key = format!("count/{sender}");
    let n = kv::get(&key)
        .map_err(|e| e.to_string())?
        .and_then(|v| v.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
        + 1;
    kv::set(&key, &n.to_le_bytes()).map_err(|e| e.to_string())?;
    Ok(n)
}

impl Bot for Echo {
    fn init(config: Config) -> Result<(), String> {
        log::info(&format!("echo ready, prefix {:?}", config.get_or("prefix", "echo: ")));
        let _ = CONFIG.set(config);
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), String> {
        let Some(text) = &msg.text else { return Ok(()) };
        let config = CONFIG.get().cloned().unwrap_or_default();
        let mut answer = format!("{}{text}", config.get_or("prefix", "echo: "));
        if config.flag("count") != Some(false) {
            answer.push_str(&format!(" (#{})", count(&msg.sender)?));
        }
        if let Some(policy) = node::contact_policy(&msg.sender).filter(|p| p != "server") {
            answer.push_str(&format!(" [{policy}]"));
        }
        messaging::reply(&msg.id, &answer).map_err(|e| e.to_string())
    }
}

export_bot!(Echo);
