//! Chat commands declared by recipes: a `command` trigger names `/name`, its usage, its help
//! line, the role it needs and how many arguments it takes. The runtime answers what the
//! recipes cannot: `/help` (generated from the commands the sender may run), a command the
//! sender's role does not allow, too few arguments.
//!
//! ```yaml
//! triggers:
//!   - command: { name: lights, usage: "<room> on|off", help: "switches a room's lights", role: admin, min_args: 2 }
//! actions:
//!   - mqtt_publish: { topic: "home/{{ trigger.args[0] }}/light", payload: "{{ trigger.args[1] }}" }
//! ```

use serde::Deserialize;

/// Who may run a command: the roles come from `roles:` in meow.yaml (an owner, admins), and
/// everyone else is `anyone`. Each role may run the commands of the roles below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Any contact.
    #[default]
    Anyone,
    /// The admins meow.yaml names.
    Admin,
    /// The owner meow.yaml names.
    Owner,
}

impl Role {
    /// Its name in YAML and in `trigger.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Anyone => "anyone",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// The role `trigger.role` names (`anyone` for anything else).
    pub fn parse(s: &str) -> Role {
        match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            _ => Role::Anyone,
        }
    }
}

/// A `command` trigger as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommandTrigger {
    /// The command, without its slash: letters, digits, `-` and `_`.
    pub name: String,
    /// Its arguments, for `/help` and the usage line (`<room> on|off`).
    #[serde(default)]
    pub usage: String,
    /// One line for `/help`.
    #[serde(default)]
    pub help: String,
    /// Who may run it (`anyone`, the default; `admin`; `owner`).
    #[serde(default)]
    pub role: Role,
    /// Fewer arguments than this get the usage line, not a run.
    #[serde(default)]
    pub min_args: usize,
}

/// A checked command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its name (lowercase, no slash).
    pub name: String,
    /// Its arguments' description.
    pub usage: String,
    /// Its help line.
    pub help: String,
    /// Who may run it.
    pub role: Role,
    /// The fewest arguments it runs with.
    pub min_args: usize,
}

impl Command {
    /// Checks a trigger as written; the error is the reason.
    pub(crate) fn check(raw: &RawCommandTrigger) -> Result<Command, String> {
        let name = raw.name.strip_prefix('/').unwrap_or(&raw.name).to_lowercase();
        let good = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if name.is_empty() || name.len() > 32 || !name.chars().all(good) {
            return Err(format!(
                "{:?}: a command name is 1 to 32 letters, digits, - or _",
                raw.name
            ));
        }
        if name == "help" {
            return Err("/help is the runtime's: it lists the commands".into());
        }
        Ok(Command {
            name,
            usage: raw.usage.trim().to_owned(),
            help: raw.help.trim().to_owned(),
            role: raw.role,
            min_args: raw.min_args,
        })
    }

    /// `/name usage`.
    fn synopsis(&self) -> String {
        if self.usage.is_empty() {
            format!("/{}", self.name)
        } else {
            format!("/{} {}", self.name, self.usage)
        }
    }
}

/// A message read as a command: its name (lowercase) and its arguments (split on whitespace).
pub fn parse(text: &str) -> Option<(String, Vec<String>)> {
    let rest = text.trim().strip_prefix('/')?;
    let mut words = rest.split_whitespace();
    let name = words.next()?.to_lowercase();
    Some((name, words.map(str::to_owned).collect()))
}

/// What the runtime answers to `text` from a contact of `role`, when the recipes' `commands`
/// cannot: the generated `/help`, a refusal, or the usage line. `None` when a recipe runs (or
/// the text is no command of theirs, which a plugin may answer).
pub fn answer(commands: &[Command], text: &str, role: Role) -> Option<String> {
    if commands.is_empty() {
        return None;
    }
    let (name, args) = parse(text)?;
    if name == "help" {
        return Some(help(commands, role));
    }
    let found: Vec<&Command> = commands.iter().filter(|c| c.name == name).collect();
    let runnable: Vec<&&Command> = found.iter().filter(|c| c.role <= role).collect();
    match (found.first(), runnable.is_empty()) {
        (None, _) => None,
        (Some(c), true) => Some(format!("/{} is for {}", c.name, who(c.role))),
        (Some(_), false) => {
            let fewest = runnable.iter().map(|c| c.min_args).min().unwrap_or(0);
            (args.len() < fewest).then(|| format!("usage: {}", runnable[0].synopsis()))
        }
    }
}

/// `/help` for a contact of `role`: the commands they may run, one per line.
pub fn help(commands: &[Command], role: Role) -> String {
    let mut lines: Vec<String> = commands
        .iter()
        .filter(|c| c.role <= role)
        .map(|c| match c.help.as_str() {
            "" => c.synopsis(),
            help => format!("{} - {help}", c.synopsis()),
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines.splice(0..0, ["commands:".to_owned(), "/help - this list".to_owned()]);
    lines.join("\n")
}

/// Who may run a command of `role` (the SDKs' words).
fn who(role: Role) -> &'static str {
    match role {
        Role::Anyone => "anyone",
        Role::Admin => "admins",
        Role::Owner => "the owner",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(name: &str, usage: &str, role: Role, min_args: usize) -> Command {
        Command::check(&RawCommandTrigger {
            name: name.into(),
            usage: usage.into(),
            help: format!("does {name}"),
            role,
            min_args,
        })
        .unwrap()
    }

    #[test]
    fn help_lists_what_the_role_may_run_and_refusals_say_why() {
        let cmds = [
            command("status", "", Role::Anyone, 0),
            command("lights", "<room> on|off", Role::Admin, 2),
            command("/Reboot", "", Role::Owner, 0),
        ];
        assert_eq!(
            answer(&cmds, "/help", Role::Anyone).unwrap(),
            "commands:\n/help - this list\n/status - does status"
        );
        let admin = answer(&cmds, " /HELP ", Role::Admin).unwrap();
        assert!(admin.contains("/lights <room> on|off - does lights") && !admin.contains("reboot"));
        assert!(
            answer(&cmds, "/help", Role::Owner)
                .unwrap()
                .contains("/reboot - does /Reboot")
        );
        assert_eq!(
            answer(&cmds, "/lights kitchen off", Role::Anyone).unwrap(),
            "/lights is for admins"
        );
        assert_eq!(
            answer(&cmds, "/reboot", Role::Admin).unwrap(),
            "/reboot is for the owner"
        );
        assert_eq!(
            answer(&cmds, "/lights kitchen", Role::Admin).unwrap(),
            "usage: /lights <room> on|off"
        );
        assert_eq!(answer(&cmds, "/lights kitchen off", Role::Admin), None, "a recipe runs");
        assert_eq!(answer(&cmds, "/Status", Role::Anyone), None);
        assert_eq!(
            answer(&cmds, "/weather", Role::Owner),
            None,
            "not theirs: a plugin may answer"
        );
        assert_eq!(answer(&cmds, "hello", Role::Owner), None);
        assert_eq!(answer(&[], "/help", Role::Owner), None, "no commands, no /help");
    }

    #[test]
    fn names_are_short_words_and_help_is_reserved() {
        for bad in ["", "/", "two words", "help", "/help", "é", &"x".repeat(33)] {
            let raw = RawCommandTrigger {
                name: bad.into(),
                ..Default::default()
            };
            assert!(Command::check(&raw).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse("/Lights  kitchen   off").unwrap(),
            ("lights".into(), vec!["kitchen".into(), "off".into()])
        );
        assert_eq!(parse("lights"), None);
        assert_eq!(parse("/"), None);
    }
}
