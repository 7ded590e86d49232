//! The directory bot: publishes itself in the "free for chat" directory when it starts, greets
//! whoever contacts it through its directory card, and answers `help`.
//!
//! Configuration: `description`, `tags` (comma-separated), `greeting` (`{name}` is replaced by the
//! new contact's name).

use std::sync::OnceLock;

use meow_sdk::{Bot, Config, Message, directory, export_bot, log, messaging};

static CONFIG: OnceLock<Config> = OnceLock::new();

fn config() -> Config {
    CONFIG.get().cloned().unwrap_or_default()
}

struct DirectoryBot;

impl Bot for DirectoryBot {
    fn init(config: Config) -> Result<(), String> {
        let _ = CONFIG.set(config);
        Ok(())
    }

    fn on_startup() -> Result<(), String> {
        let c = config();
        let description = c.get_or("description", "A friendly bot: say hello");
        let tags: Vec<String> = c.get_or("tags", "bot").split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        directory::publish(description, &tags).map_err(|e| e.to_string())?;
        log::info(&format!("publishing myself in the directory: {description} [{}]", tags.join(", ")));
        Ok(())
    }

    fn on_contact_added(name: String, via_directory: bool) -> Result<(), String> {
        if !via_directory {
            return Ok(());
        }
        let greeting = config().get_or("greeting", "Hello {name}!").replace("{name}", &name);
        messaging::send(&name, &greeting).map_err(|e| e.to_string())
    }

    fn on_message(msg: Message) -> Result<(), String> {
        if msg.group.is_some() || msg.text.as_deref().map(str::trim) != Some("help") {
            return Ok(());
        }
        let c = config();
        let answer = format!("I am listed in the directory as: {}", c.get_or("description", "A friendly bot"));
        messaging::reply(&msg.id, &answer).map_err(|e| e.to_string())
    }
}

export_bot!(DirectoryBot);
