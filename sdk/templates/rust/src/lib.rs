//! {{name}}: answers "hello" with a greeting and counts greetings per contact.

use meow_sdk::{Bot, Config, Message, export_bot, kv, log, messaging};

struct Plugin;

fn count(sender: &str) -> Result<u64, String> {
    let key = format!("greeted/{sender}");
    let n = kv::get(&key)
        .map_err(|e| e.to_string())?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    kv::set(&key, n.to_string().as_bytes()).map_err(|e| e.to_string())?;
    Ok(n)
}

impl Bot for Plugin {
    fn init(_config: Config) -> Result<(), String> {
        log::info("{{name}} ready");
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), String> {
        if msg.text.as_deref().map(str::trim) != Some("hello") {
            return Ok(());
        }
        let n = count(&msg.sender)?;
        messaging::reply(&msg.id, &format!("hello {}, from rust (#{n})", msg.sender)).map_err(|e| e.to_string())
    }
}

export_bot!(Plugin);
