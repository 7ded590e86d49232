//! helpdesk: a command bot on [`meow_sdk::Commands`]. Anyone may run `/ping`, `/time` and
//! `/visits`; admins (`admins` in the configuration) also `/announce TEXT` to every contact and
//! `/ban` / `/unban`; the `owner` may run everything. New contacts get the help text, and a
//! contact over `commands_per_minute` is told to slow down, once.

use std::sync::OnceLock;

use meow_sdk::{Bot, Commands, Config, Message, export_bot, kv, messaging, node};

static COMMANDS: OnceLock<Commands> = OnceLock::new();

struct Helpdesk;

fn err(e: impl ToString) -> String {
    e.to_string()
}

fn visits(msg: &Message, _: &[&str]) -> Result<String, String> {
    let key = format!("visits/{}", msg.sender);
    let n = kv::get(&key)
        .map_err(err)?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    kv::set(&key, n.to_string().as_bytes()).map_err(err)?;
    Ok(format!("visit #{n}"))
}

fn announce(msg: &Message, args: &[&str]) -> Result<String, String> {
    if args.is_empty() {
        return Ok("usage: /announce <text>".into());
    }
    let text = args.join(" ");
    let contacts = node::info().contacts;
    for c in contacts.iter().filter(|c| **c != msg.sender) {
        messaging::send(c, &text).map_err(err)?;
    }
    Ok(format!("announced to {} contacts", contacts.len().saturating_sub(1)))
}

impl Bot for Helpdesk {
    fn init(config: Config) -> Result<(), String> {
        let per_minute = config.number("commands_per_minute").unwrap_or(10.0).max(1.0) as u32;
        let commands = Commands::new(&config)
            .command("ping", "", "answers pong", |_, _| Ok("pong".into()))
            .command("time", "", "the bot's clock, Unix ms", |_, _| Ok(node::info().now.to_string()))
            .command("visits", "", "counts your visits", visits)
            .admin("announce", "<text>", "sends text to every contact", announce)
            .bans()
            .rate_limit(per_minute, 60_000);
        let _ = COMMANDS.set(commands);
        Ok(())
    }

    fn on_message(msg: Message) -> Result<(), String> {
        COMMANDS.get().map_or(Ok(false), |c| c.handle(&msg)).map(drop)
    }

    fn on_contact_added(name: String, _via_directory: bool) -> Result<(), String> {
        let Some(c) = COMMANDS.get() else { return Ok(()) };
        let hello = format!("hello {name}! {}", c.help(c.role_of(&name)));
        messaging::send(&name, &hello).map_err(err)
    }
}

export_bot!(Helpdesk);
