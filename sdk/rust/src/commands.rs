//! Commands for chat bots: `/name args…` routed to handlers, a generated `/help`, roles from
//! the instance's configuration (`owner`, `admins`), a rate limit per contact, and bans kept in
//! the instance's key-value store.
//!
//! ```ignore
//! static COMMANDS: OnceLock<Commands> = OnceLock::new();
//!
//! fn init(config: Config) -> Result<(), String> {
//!     let commands = Commands::new(&config)
//!         .command("ping", "", "answers pong", |_, _| Ok("pong".into()))
//!         .command("roll", "[sides]", "rolls a die", roll)
//!         .admin("say", "<contact> <text>", "sends text to a contact", say)
//!         .bans()
//!         .rate_limit(10, 60_000);
//!     let _ = COMMANDS.set(commands);
//!     Ok(())
//! }
//!
//! fn on_message(msg: Message) -> Result<(), String> {
//!     COMMANDS.get().map_or(Ok(false), |c| c.handle(&msg)).map(drop)
//! }
//! ```
//!
//! The decisions (what a line asks, who may, whether the sender is over the limit) are plain
//! functions of their inputs, tested on the host; [`Commands::handle`] adds the host calls
//! (the clock, the key-value store, the reply).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{Config, Message, kv, messaging, node};

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Any contact.
    Anyone,
    /// Contacts named in the configuration's `admins` (comma-separated), and the owner.
    Admin,
    /// The contact named in the configuration's `owner`.
    Owner,
}

/// A command's handler: the message and its arguments in, the answer out (`Ok("")` answers
/// nothing).
pub type Handler = fn(&Message, &[&str]) -> Result<String, String>;

struct Command {
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    role: Role,
    handler: Handler,
}

/// How many commands a contact may send in a window.
#[derive(Debug, Clone, Copy)]
struct Limit {
    count: u32,
    window_ms: u64,
}

/// One contact's current window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start_ms: u64,
    used: u32,
    warned: bool,
}

/// What to do with one command from one contact.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Over the limit for the first time in this window: say so once.
    Slow(String),
    /// Over the limit again: say nothing.
    Quiet,
    /// Go on.
    Go,
}

/// A bot's commands (see the module documentation).
pub struct Commands {
    commands: Vec<Command>,
    owner: Option<String>,
    admins: Vec<String>,
    limit: Option<Limit>,
    bans: bool,
    windows: Mutex<BTreeMap<String, Window>>,
}

/// Names in a configuration value: comma-separated, or a JSON list of strings.
fn names(value: Option<&str>) -> Vec<String> {
    let value = value.unwrap_or("").trim().trim_start_matches('[').trim_end_matches(']');
    value
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

impl Commands {
    /// No commands yet; roles come from `config` (`owner`, `admins`).
    pub fn new(config: &Config) -> Self {
        Self {
            commands: Vec::new(),
            owner: config.get("owner").map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned),
            admins: names(config.get("admins")),
            limit: None,
            bans: false,
            windows: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(mut self, role: Role, name: &'static str, usage: &'static str, help: &'static str, handler: Handler) -> Self {
        self.commands.push(Command {
            name,
            usage,
            help,
            role,
            handler,
        });
        self
    }

    /// A command anyone may run: `/name usage` does `help`.
    pub fn command(self, name: &'static str, usage: &'static str, help: &'static str, handler: Handler) -> Self {
        self.add(Role::Anyone, name, usage, help, handler)
    }

    /// A command for admins (and the owner).
    pub fn admin(self, name: &'static str, usage: &'static str, help: &'static str, handler: Handler) -> Self {
        self.add(Role::Admin, name, usage, help, handler)
    }

    /// A command for the owner alone.
    pub fn owner(self, name: &'static str, usage: &'static str, help: &'static str, handler: Handler) -> Self {
        self.add(Role::Owner, name, usage, help, handler)
    }

    /// Adds the admin commands `/ban CONTACT` and `/unban CONTACT`: a banned contact's
    /// messages are ignored (kept in the key-value store under `bans/CONTACT`, capability `kv`).
    pub fn bans(mut self) -> Self {
        self.bans = true;
        self
    }

    /// At most `count` commands per contact every `window_ms`; past it the contact is told
    /// once, then ignored until the window ends.
    pub fn rate_limit(mut self, count: u32, window_ms: u64) -> Self {
        self.limit = Some(Limit { count, window_ms });
        self
    }

    /// The role of a contact.
    pub fn role_of(&self, contact: &str) -> Role {
        if self.owner.as_deref() == Some(contact) {
            Role::Owner
        } else if self.admins.iter().any(|a| a == contact) {
            Role::Admin
        } else {
            Role::Anyone
        }
    }

    /// The `/help` text for a contact of `role`: the commands it may run.
    pub fn help(&self, role: Role) -> String {
        let mut lines = vec!["commands:".to_owned(), "/help - this list".to_owned()];
        let builtin: &[(&str, &str, &str)] = if self.bans {
            &[
                ("ban", "<contact>", "ignore a contact's messages"),
                ("unban", "<contact>", "hear a contact again"),
            ]
        } else {
            &[]
        };
        for c in &self.commands {
            if c.role <= role {
                lines.push(line(c.name, c.usage, c.help));
            }
        }
        if role >= Role::Admin {
            lines.extend(builtin.iter().map(|(n, u, h)| line(n, u, h)));
        }
        lines.join("\n")
    }

    /// Counts one command of `contact` at `now_ms` against the rate limit.
    fn admit(&self, contact: &str, now_ms: u64) -> Verdict {
        let Some(limit) = self.limit else { return Verdict::Go };
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // Forget windows long over, so that many contacts do not grow the map forever.
        windows.retain(|_, w| now_ms.saturating_sub(w.start_ms) < limit.window_ms);
        let w = windows.entry(contact.to_owned()).or_default();
        if w.used == 0 {
            w.start_ms = now_ms;
        }
        w.used += 1;
        if w.used <= limit.count {
            Verdict::Go
        } else if !w.warned {
            w.warned = true;
            let secs = (limit.window_ms - now_ms.saturating_sub(w.start_ms)).div_ceil(1000);
            Verdict::Slow(format!(
                "slow down: {} commands per {} s; try again in {secs} s",
                limit.count,
                limit.window_ms / 1000
            ))
        } else {
            Verdict::Quiet
        }
    }

    /// What `text` from a contact of `role` gets as an answer, given its arguments (`None`: not
    /// a command). Bans and the rate limit are [`Commands::handle`]'s.
    fn answer(&self, msg: &Message, role: Role, text: &str) -> Option<Result<String, String>> {
        let line = text.trim().strip_prefix('/')?;
        let mut words = line.split_whitespace();
        let name = words.next()?;
        let args: Vec<&str> = words.collect();
        if name == "help" {
            return Some(Ok(self.help(role)));
        }
        if self.bans && (name == "ban" || name == "unban") {
            if role < Role::Admin {
                return Some(Ok(format!("/{name} is for admins")));
            }
            return Some(ban(name == "ban", &args));
        }
        let Some(c) = self.commands.iter().find(|c| c.name == name) else {
            return Some(Ok(format!("unknown command /{name}: /help lists them")));
        };
        if role < c.role {
            let who = if c.role == Role::Owner { "the owner" } else { "admins" };
            return Some(Ok(format!("/{name} is for {who}")));
        }
        Some((c.handler)(msg, &args))
    }

    /// Handles `msg` if it is a command (a text starting with `/`): answers it, or says why
    /// not. Returns whether it was one (a banned contact's messages count as handled).
    pub fn handle(&self, msg: &Message) -> Result<bool, String> {
        // Without the kv capability there are no bans to read (and /ban says why it fails).
        if self.bans && kv::get(&format!("bans/{}", msg.sender)).ok().flatten().is_some() {
            return Ok(true);
        }
        let Some(text) = msg.text.as_deref().filter(|t| t.trim_start().starts_with('/')) else {
            return Ok(false);
        };
        let answer = match self.admit(&msg.sender, node::info().now) {
            Verdict::Go => self.answer(msg, self.role_of(&msg.sender), text).unwrap_or(Ok(String::new()))?,
            Verdict::Slow(why) => why,
            Verdict::Quiet => String::new(),
        };
        if !answer.is_empty() {
            messaging::reply(&msg.id, &answer).map_err(|e| e.to_string())?;
        }
        Ok(true)
    }
}

fn line(name: &str, usage: &str, help: &str) -> String {
    if usage.is_empty() {
        format!("/{name} - {help}")
    } else {
        format!("/{name} {usage} - {help}")
    }
}

fn ban(on: bool, args: &[&str]) -> Result<String, String> {
    let [contact] = args else {
        return Ok(format!("usage: /{} <contact>", if on { "ban" } else { "unban" }));
    };
    let key = format!("bans/{contact}");
    let (done, said) = if on {
        (kv::set(&key, b"1"), format!("{contact} is banned"))
    } else {
        (kv::delete(&key), format!("{contact} is heard again"))
    };
    Ok(match done {
        Ok(()) => said,
        Err(e) => format!("cannot {}: {e}", if on { "ban" } else { "unban" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(sender: &str, text: &str) -> Message {
        Message {
            id: "m1".into(),
            sender: sender.into(),
            content_type: "text".into(),
            body: text.as_bytes().to_vec(),
            text: Some(text.into()),
            sent_at: 0,
            group: None,
        }
    }

    fn bot() -> Commands {
        let config = Config::parse(r#"{"owner": "olga", "admins": "ada, alan"}"#);
        Commands::new(&config)
            .command("ping", "", "answers pong", |_, _| Ok("pong".into()))
            .command("echo", "<text>", "says it back", |_, args| Ok(args.join(" ")))
            .admin("shutdown", "", "stops the bot", |_, _| Ok("bye".into()))
            .owner("transfer", "<contact>", "gives the bot away", |_, _| Ok("done".into()))
            .bans()
            .rate_limit(3, 60_000)
    }

    fn ask(c: &Commands, sender: &str, text: &str) -> Option<String> {
        c.answer(&msg(sender, text), c.role_of(sender), text).map(|r| r.unwrap())
    }

    #[test]
    fn help_lists_what_the_sender_may_run() {
        let c = bot();
        let anyone = ask(&c, "bob", "/help").unwrap();
        assert_eq!(
            anyone,
            "commands:\n/help - this list\n/ping - answers pong\n/echo <text> - says it back"
        );
        let admin = ask(&c, "ada", "/help").unwrap();
        assert!(admin.contains("/shutdown - stops the bot") && admin.contains("/ban <contact>"));
        assert!(!admin.contains("/transfer"));
        assert!(ask(&c, "olga", "/help").unwrap().contains("/transfer <contact> - gives the bot away"));
    }

    #[test]
    fn commands_are_routed_with_their_arguments_and_roles_are_enforced() {
        let c = bot();
        assert_eq!(ask(&c, "bob", "  /echo hello   there ").as_deref(), Some("hello there"));
        assert_eq!(ask(&c, "bob", "/shutdown").as_deref(), Some("/shutdown is for admins"));
        assert_eq!(ask(&c, "ada", "/shutdown").as_deref(), Some("bye"));
        assert_eq!(ask(&c, "ada", "/transfer bob").as_deref(), Some("/transfer is for the owner"));
        assert_eq!(ask(&c, "olga", "/shutdown").as_deref(), Some("bye"), "the owner is an admin too");
        assert_eq!(ask(&c, "bob", "/ban ada").as_deref(), Some("/ban is for admins"));
        assert_eq!(ask(&c, "bob", "/nope").as_deref(), Some("unknown command /nope: /help lists them"));
        assert_eq!(ask(&c, "bob", "hello"), None, "not a command");
        assert_eq!(ask(&c, "bob", "/"), None);
    }

    #[test]
    fn a_flooding_contact_is_told_once_then_ignored_until_the_window_ends() {
        let c = bot();
        let verdicts: Vec<Verdict> = (0..6).map(|i| c.admit("bob", 1_000 + i)).collect();
        assert_eq!(&verdicts[..3], &[Verdict::Go, Verdict::Go, Verdict::Go]);
        assert_eq!(
            verdicts[3],
            Verdict::Slow("slow down: 3 commands per 60 s; try again in 60 s".into())
        );
        assert_eq!(&verdicts[4..], &[Verdict::Quiet, Verdict::Quiet]);
        assert_eq!(c.admit("alan", 1_010), Verdict::Go, "others are not affected");
        assert_eq!(c.admit("bob", 61_000), Verdict::Go, "a new window");
    }

    #[test]
    fn role_lists_read_commas_or_json() {
        assert_eq!(names(Some(r#"["ada", "alan"]"#)), ["ada", "alan"]);
        assert_eq!(names(Some("ada,alan")), ["ada", "alan"]);
        assert!(names(Some("")).is_empty() && names(None).is_empty());
    }
}
