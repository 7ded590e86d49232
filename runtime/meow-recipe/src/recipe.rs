//! A checked recipe: loading with every check, matching events, evaluating and rendering.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::commands::Command;
use meow_yaml::{YamlError, locate};
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::model::{Level, Mode, RawAction, RawRecipe, RawSchedule, RawTrigger};
use crate::templates::{self, Scope};

/// Why a recipe could not be loaded or run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecipeError {
    /// The file is not a valid recipe (with its place).
    #[error("{0}")]
    Invalid(#[from] YamlError),
    /// A template or condition failed while running.
    #[error("{path}: {message}")]
    Runtime {
        /// Which part.
        path: String,
        /// What happened.
        message: String,
    },
    /// The file could not be read.
    #[error("{0}")]
    Io(String),
}

/// What the load-time checks know about the home.
#[derive(Debug, Clone, Default)]
pub struct CheckContext {
    /// Contact names, when known.
    pub contacts: Option<Vec<String>>,
    /// Group names, when known.
    pub groups: Option<Vec<String>>,
    /// Plugin instance names, when known.
    pub plugins: Option<Vec<String>>,
}

/// When a schedule trigger fires.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every period.
    Every(Duration),
    /// On a cron pattern (local time).
    Cron(Box<croner::Cron>, String),
}

impl Schedule {
    /// A cron schedule from a five-field expression (local time).
    pub fn cron(expression: &str) -> Result<Schedule, String> {
        let cron = croner::Cron::from_str(expression).map_err(|e| format!("invalid cron expression: {e}"))?;
        Ok(Schedule::Cron(Box::new(cron), expression.to_owned()))
    }

    /// The next firing after `after`.
    pub fn next_after(&self, after: chrono::DateTime<chrono::Local>) -> Option<chrono::DateTime<chrono::Local>> {
        match self {
            Schedule::Every(d) => Some(after + chrono::Duration::from_std(*d).ok()?),
            Schedule::Cron(c, _) => c.find_next_occurrence(&after, false).ok(),
        }
    }

    /// How it reads.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(d) => format!("every {}s", d.as_secs()),
            Schedule::Cron(_, text) => format!("cron {text}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Trigger {
    Message {
        group: Option<Option<String>>,
        from: Option<String>,
        contains: Option<String>,
        pattern: Option<Regex>,
        /// Also messages marked automatic (sent by other bots).
        automatic: bool,
    },
    Schedule(Schedule),
    Startup,
    ContactAdded,
    Broadcast {
        contains: Option<String>,
    },
    /// A message on a topic of the MQTT broker, by topic filter.
    Mqtt(String),
    /// A chat command from a contact (`/name args…`).
    Command(Command),
    /// One of the user's devices was linked or revoked (`None`: either).
    Device(Option<String>),
}

impl Trigger {
    fn kind(&self) -> TriggerKind {
        match self {
            Trigger::Message { group: None, .. } => TriggerKind::Message,
            Trigger::Message { group: Some(_), .. } => TriggerKind::GroupMessage,
            Trigger::Schedule(_) => TriggerKind::Schedule,
            Trigger::Startup => TriggerKind::Startup,
            Trigger::ContactAdded => TriggerKind::ContactAdded,
            Trigger::Broadcast { .. } => TriggerKind::Broadcast,
            Trigger::Mqtt(_) => TriggerKind::Mqtt,
            Trigger::Command(_) => TriggerKind::Message,
            Trigger::Device(_) => TriggerKind::Device,
        }
    }
}

/// What kind of event starts a run: the key a trigger is written under, and `trigger.kind` in
/// templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TriggerKind {
    /// A contact's message.
    Message,
    /// A message in a group.
    GroupMessage,
    /// A schedule fired.
    Schedule,
    /// The runtime started.
    Startup,
    /// A contact was added.
    ContactAdded,
    /// An emergency broadcast arrived.
    Broadcast,
    /// A message on a subscribed MQTT topic.
    Mqtt,
    /// One of the user's devices was linked or revoked.
    Device,
}

impl TriggerKind {
    /// The name recipes use.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Message => "message",
            TriggerKind::GroupMessage => "group_message",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Startup => "startup",
            TriggerKind::ContactAdded => "contact_added",
            TriggerKind::Broadcast => "broadcast",
            TriggerKind::Mqtt => "mqtt",
            TriggerKind::Device => "device",
        }
    }
}

impl std::fmt::Display for TriggerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action with its templates rendered: what the runtime executes (or a dry run prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// Send text to a contact.
    Send {
        /// Contact.
        to: String,
        /// Text.
        text: String,
    },
    /// Answer the triggering message.
    Reply {
        /// Text.
        text: String,
    },
    /// Send to a group.
    GroupSend {
        /// Group.
        group: String,
        /// Text.
        text: String,
    },
    /// Broadcast on my server.
    Broadcast {
        /// Text.
        text: String,
    },
    /// Hand text to a plugin instance.
    Call {
        /// Instance.
        plugin: String,
        /// Text.
        text: String,
    },
    /// Store a value.
    Set {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Read a value into `vars`.
    Get {
        /// Key.
        key: String,
        /// Variable.
        into: String,
        /// Value when the key is absent.
        default: Option<String>,
    },
    /// Wait.
    Delay(Duration),
    /// Log.
    Log {
        /// Level.
        level: Level,
        /// Text.
        text: String,
    },
    /// Publish my directory entry.
    DirectoryPublish {
        /// Description.
        description: String,
        /// Tags.
        tags: Vec<String>,
    },
    /// Publish to an MQTT topic.
    MqttPublish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: String,
        /// Whether the broker keeps it for later subscribers.
        retain: bool,
    },
    /// Send a file from disk.
    SendFile {
        /// Contact.
        to: String,
        /// The file (as written in the recipe: relative to its folder).
        path: String,
        /// The name the contact sees.
        name: Option<String>,
    },
    /// Write a received file to disk.
    SaveFile {
        /// The file's id.
        file: String,
        /// A folder or a path (as written in the recipe).
        to: String,
        /// Replace an existing file.
        overwrite: bool,
    },
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rendered::Send { to, text } => write!(f, "send to {to}: {text:?}"),
            Rendered::Reply { text } => write!(f, "reply: {text:?}"),
            Rendered::GroupSend { group, text } => write!(f, "send to group {group}: {text:?}"),
            Rendered::Broadcast { text } => write!(f, "broadcast: {text:?}"),
            Rendered::Call { plugin, text } => write!(f, "call plugin {plugin} with {text:?}"),
            Rendered::Set { key, value } => write!(f, "set {key} = {value:?}"),
            Rendered::Get { key, into, .. } => write!(f, "get {key} into vars.{into}"),
            Rendered::Delay(d) => write!(f, "wait {}s", d.as_secs_f64()),
            Rendered::Log { level, text } => write!(f, "log ({level:?}): {text}"),
            Rendered::DirectoryPublish { description, tags } => {
                write!(f, "publish directory entry {description:?} {tags:?}")
            }
            Rendered::MqttPublish { topic, payload, retain } => {
                let kept = if *retain { " (retained)" } else { "" };
                write!(f, "publish to MQTT topic {topic}{kept}: {payload:?}")
            }
            Rendered::SendFile { to, path, name } => match name {
                Some(n) => write!(f, "send file {path} to {to} as {n:?}"),
                None => write!(f, "send file {path} to {to}"),
            },
            Rendered::SaveFile { file, to, overwrite } => {
                let over = if *overwrite { " (overwriting)" } else { "" };
                write!(f, "save file {file} to {to}{over}")
            }
        }
    }
}

/// An event a recipe may react to.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerEvent {
    /// What happened.
    pub kind: TriggerKind,
    /// Its fields (`sender`, `text`, `group`, …).
    pub fields: Map<String, Value>,
}

impl TriggerEvent {
    /// An event of `kind` with `fields`.
    pub fn new(kind: TriggerKind, fields: Value) -> Self {
        Self {
            kind,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    /// Field `k`, when it is a string.
    pub fn str(&self, k: &str) -> Option<&str> {
        self.fields.get(k).and_then(Value::as_str)
    }
}

/// A loaded, checked recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The run mode.
    pub mode: Mode,
    /// Most waiting (queued) or simultaneous (parallel) runs.
    pub max: usize,
    /// Where it was read from.
    pub file: String,
    triggers: Vec<Trigger>,
    conditions: Vec<String>,
    actions: Vec<RawAction>,
}

fn matches_text(text: Option<&str>, contains: &Option<String>) -> bool {
    match contains {
        None => true,
        Some(c) => text.is_some_and(|t| t.to_lowercase().contains(&c.to_lowercase())),
    }
}

/// The parts of an action that are templates, with their key path.
fn action_templates(i: usize, a: &RawAction) -> Vec<(String, &str)> {
    let p = |k: &str, f: &str| format!("actions[{i}].{k}.{f}");
    match a {
        RawAction::Send(s) => vec![(p("send", "to"), s.to.as_str()), (p("send", "text"), s.text.as_str())],
        RawAction::Reply(t) => vec![(p("reply", "text"), t.text.as_str())],
        RawAction::GroupSend(g) => vec![
            (p("group_send", "group"), g.group.as_str()),
            (p("group_send", "text"), g.text.as_str()),
        ],
        RawAction::Broadcast(t) => vec![(p("broadcast", "text"), t.text.as_str())],
        RawAction::Call(c) => vec![(p("call", "text"), c.text.as_str())],
        RawAction::Set(s) => vec![(p("set", "key"), s.key.as_str()), (p("set", "value"), s.value.as_str())],
        RawAction::Get(g) => vec![(p("get", "key"), g.key.as_str())],
        RawAction::Log(l) => vec![(p("log", "text"), l.text.as_str())],
        RawAction::DirectoryPublish(d) => vec![(p("directory_publish", "description"), d.description.as_str())],
        RawAction::MqttPublish(m) => vec![
            (p("mqtt_publish", "topic"), m.topic.as_str()),
            (p("mqtt_publish", "payload"), m.payload.as_str()),
        ],
        RawAction::SendFile(s) => {
            let mut t = vec![
                (p("send_file", "to"), s.to.as_str()),
                (p("send_file", "path"), s.path.as_str()),
            ];
            t.extend(s.name.as_deref().map(|n| (p("send_file", "as"), n)));
            t
        }
        RawAction::SaveFile(s) => vec![
            (p("save_file", "file"), s.file.as_str()),
            (p("save_file", "to"), s.to.as_str()),
        ],
        RawAction::Delay(_) => vec![],
    }
}

/// Why `filter` is not an MQTT topic filter (MQTT 3.1.1 §4.7.1), if it is not: `+` stands for
/// one whole level, `#` for the rest and only at the end.
/// The variables of a message trigger: the event's fields, its JSON and the pattern's captures.
fn message_vars(ev: &TriggerEvent, kind: TriggerKind, captures: Map<String, Value>) -> Map<String, Value> {
    let json = ev
        .str("text")
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null);
    let mut v = ev.fields.clone();
    v.insert("kind".into(), json!(kind.as_str()));
    v.insert("json".into(), json);
    v.insert("captures".into(), Value::Object(captures));
    for k in ["sender", "text", "id", "type", "policy", "reply_to"] {
        v.entry(k).or_insert(Value::Null);
    }
    v.entry("automatic").or_insert(Value::Bool(false));
    v
}

/// Whether `filter` is an MQTT topic filter (`+` for one level, `#` as the last); why not.
pub fn check_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return Err("a topic filter is 1 to 65535 bytes, without NUL");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("# stands alone, as the last level (home/#)");
        }
        if level.contains('+') && *level != "+" {
            return Err("+ stands alone for one level (home/+/state)");
        }
    }
    Ok(())
}

/// Whether MQTT `topic` is one `filter` names.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    // Topics starting with $ (the broker's own) match no filter starting with a wildcard.
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match (level, topic_levels.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(t)) if l == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn load_file(path: &Path, ctx: &CheckContext) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Io(format!("{}: {e}", path.display())))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("recipe");
        Recipe::load(&text, &path.display().to_string(), stem, ctx)
    }

    /// Parses and checks recipe text read from `file` (`default_name` if it names none).
    pub fn load(text: &str, file: &str, default_name: &str, ctx: &CheckContext) -> Result<Recipe, RecipeError> {
        let raw: RawRecipe = meow_yaml::load(text, file)?;
        let err = |path: &str, msg: String| {
            let (line, col) = locate(text, path);
            RecipeError::Invalid(YamlError::at(file, line, col, path, msg))
        };
        if raw.version != 1 {
            return Err(err(
                "version",
                format!("version {} is not supported (this meow reads version 1)", raw.version),
            ));
        }
        if raw.triggers.is_empty() {
            return Err(err("triggers", "a recipe needs at least one trigger".into()));
        }
        if raw.actions.is_empty() {
            return Err(err("actions", "a recipe needs at least one action".into()));
        }
        let mut triggers = Vec::new();
        for (i, t) in raw.triggers.iter().enumerate() {
            triggers.push(Self::trigger(i, t, ctx).map_err(|(path, m)| err(&path, m))?);
        }
        let env = templates::environment();
        let mut scope = Scope::default();
        for t in &triggers {
            scope.trigger.extend(templates::trigger_fields(t.kind()));
            if let Trigger::Command(_) = t {
                scope.trigger.extend(templates::COMMAND_FIELDS);
            }
        }
        for a in &raw.actions {
            if let RawAction::Get(g) = a {
                scope.vars.insert(g.into.clone());
            }
        }
        for (i, c) in raw.conditions.iter().enumerate() {
            templates::check_expression(&env, c, &scope).map_err(|m| err(&format!("conditions[{i}]"), m))?;
        }
        for (i, a) in raw.actions.iter().enumerate() {
            for (path, source) in action_templates(i, a) {
                templates::check_template(&env, source, &scope).map_err(|m| err(&path, m))?;
            }
            Self::check_action(i, a, ctx).map_err(|(path, m)| err(&path, m))?;
        }
        let needs_message = raw.actions.iter().any(|a| matches!(a, RawAction::Reply(_)));
        if needs_message
            && triggers
                .iter()
                .any(|t| !matches!(t, Trigger::Message { .. } | Trigger::Command(_)))
        {
            let i = raw
                .actions
                .iter()
                .position(|a| matches!(a, RawAction::Reply(_)))
                .unwrap_or(0);
            return Err(err(
                &format!("actions[{i}].reply"),
                "reply needs every trigger to be a message trigger".into(),
            ));
        }
        let name = raw.name.clone().unwrap_or_else(|| default_name.to_owned());
        Ok(Recipe {
            name,
            description: raw.description,
            mode: raw.mode,
            max: raw.max.unwrap_or(10).max(1),
            file: file.to_owned(),
            triggers,
            conditions: raw.conditions,
            actions: raw.actions,
        })
    }

    fn known(list: &Option<Vec<String>>, name: &str) -> bool {
        list.as_ref().is_none_or(|l| l.iter().any(|n| n == name))
    }

    fn trigger(i: usize, t: &RawTrigger, ctx: &CheckContext) -> Result<Trigger, (String, String)> {
        let regex = |p: &Option<String>, path: String| -> Result<Option<Regex>, (String, String)> {
            p.as_deref()
                .map(|p| Regex::new(p).map_err(|e| (path, format!("invalid pattern: {e}"))))
                .transpose()
        };
        let from = |f: &Option<String>, path: String| -> Result<Option<String>, (String, String)> {
            match f.as_deref() {
                None | Some("any") => Ok(None),
                Some(name) if Self::known(&ctx.contacts, name) => Ok(Some(name.to_owned())),
                Some(name) => Err((path, format!("unknown contact {name:?}"))),
            }
        };
        Ok(match t {
            RawTrigger::Message(m) => Trigger::Message {
                group: None,
                from: from(&m.from, format!("triggers[{i}].message.from"))?,
                contains: m.contains.clone(),
                pattern: regex(&m.pattern, format!("triggers[{i}].message.pattern"))?,
                automatic: m.automatic,
            },
            RawTrigger::GroupMessage(g) => {
                let group = match g.group.as_deref() {
                    None | Some("any") => None,
                    Some(name) if Self::known(&ctx.groups, name) => Some(name.to_owned()),
                    Some(name) => {
                        return Err((
                            format!("triggers[{i}].group_message.group"),
                            format!("unknown group {name:?}"),
                        ));
                    }
                };
                Trigger::Message {
                    group: Some(group),
                    from: from(&g.from, format!("triggers[{i}].group_message.from"))?,
                    contains: g.contains.clone(),
                    pattern: regex(&g.pattern, format!("triggers[{i}].group_message.pattern"))?,
                    automatic: g.automatic,
                }
            }
            RawTrigger::Schedule(s) => Trigger::Schedule(Self::schedule(i, s)?),
            RawTrigger::Startup(_) => Trigger::Startup,
            RawTrigger::ContactAdded(_) => Trigger::ContactAdded,
            RawTrigger::Broadcast(b) => Trigger::Broadcast {
                contains: b.contains.clone(),
            },
            RawTrigger::Mqtt(m) => {
                check_filter(&m.topic).map_err(|why| (format!("triggers[{i}].mqtt.topic"), why.to_owned()))?;
                Trigger::Mqtt(m.topic.clone())
            }
            RawTrigger::Device(d) => match d.change.as_deref() {
                None | Some("linked" | "revoked") => Trigger::Device(d.change.clone()),
                Some(other) => {
                    return Err((
                        format!("triggers[{i}].device.change"),
                        format!("{other:?} is not a change: use linked or revoked"),
                    ));
                }
            },
            RawTrigger::Command(c) => {
                Trigger::Command(Command::check(c).map_err(|why| (format!("triggers[{i}].command.name"), why))?)
            }
        })
    }

    fn schedule(i: usize, s: &RawSchedule) -> Result<Schedule, (String, String)> {
        let path = |k: &str| format!("triggers[{i}].schedule.{k}");
        match (&s.every, &s.cron, &s.at) {
            (Some(e), None, None) => {
                let d = meow_yaml::duration(e).map_err(|m| (path("every"), m))?;
                if d < Duration::from_secs(1) {
                    return Err((path("every"), "the shortest period is 1s".into()));
                }
                Ok(Schedule::Every(d))
            }
            (None, Some(c), None) => Schedule::cron(c).map_err(|e| (path("cron"), e)),
            (None, None, Some(at)) => {
                let (h, m) = at
                    .split_once(':')
                    .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
                    .filter(|(h, m)| *h < 24 && *m < 60)
                    .ok_or_else(|| (path("at"), format!("invalid time {at:?} (use HH:MM)")))?;
                let text = format!("{m} {h} * * *");
                let cron = croner::Cron::from_str(&text).map_err(|e| (path("at"), e.to_string()))?;
                Ok(Schedule::Cron(Box::new(cron), format!("daily at {at}")))
            }
            _ => Err((
                format!("triggers[{i}].schedule"),
                "give exactly one of every, cron or at".into(),
            )),
        }
    }

    fn check_action(i: usize, a: &RawAction, ctx: &CheckContext) -> Result<(), (String, String)> {
        match a {
            RawAction::Send(s) if !is_template(&s.to) && !Self::known(&ctx.contacts, &s.to) => {
                Err((format!("actions[{i}].send.to"), format!("unknown contact {:?}", s.to)))
            }
            RawAction::SendFile(s) if !is_template(&s.to) && !Self::known(&ctx.contacts, &s.to) => Err((
                format!("actions[{i}].send_file.to"),
                format!("unknown contact {:?}", s.to),
            )),
            RawAction::GroupSend(g) if !is_template(&g.group) && !Self::known(&ctx.groups, &g.group) => Err((
                format!("actions[{i}].group_send.group"),
                format!("unknown group {:?}", g.group),
            )),
            RawAction::Call(c) if !Self::known(&ctx.plugins, &c.plugin) => Err((
                format!("actions[{i}].call.plugin"),
                format!("unknown plugin instance {:?}", c.plugin),
            )),
            RawAction::Delay(d) => meow_yaml::duration(d)
                .map(|_| ())
                .map_err(|m| (format!("actions[{i}].delay"), m)),
            RawAction::Get(g) if g.into.is_empty() || !g.into.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                Err((
                    format!("actions[{i}].get.as"),
                    "a variable name is letters, digits and _".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The schedules of this recipe's schedule triggers.
    pub fn schedules(&self) -> Vec<Schedule> {
        self.triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::Schedule(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// The trigger variables if an event matches one of the triggers.
    pub fn matches(&self, ev: &TriggerEvent) -> Option<Value> {
        self.triggers.iter().find_map(|t| Self::match_one(t, ev))
    }

    fn match_one(t: &Trigger, ev: &TriggerEvent) -> Option<Value> {
        match t {
            Trigger::Message {
                group,
                from,
                contains,
                pattern,
                automatic,
            } => {
                let kind = if group.is_some() {
                    TriggerKind::GroupMessage
                } else {
                    TriggerKind::Message
                };
                if ev.kind != kind {
                    return None;
                }
                // Messages from other bots start no run unless the trigger asks for them: two
                // auto-answering homes then stop after one answer instead of looping.
                if !automatic && ev.fields.get("automatic").and_then(Value::as_bool) == Some(true) {
                    return None;
                }
                if let Some(Some(g)) = group
                    && ev.str("group") != Some(g.as_str())
                {
                    return None;
                }
                if from.as_deref().is_some_and(|f| ev.str("sender") != Some(f)) {
                    return None;
                }
                let text = ev.str("text");
                if !matches_text(text, contains) {
                    return None;
                }
                let mut captures = Map::new();
                if let Some(re) = pattern {
                    let caps = re.captures(text?)?;
                    for name in re.capture_names().flatten() {
                        if let Some(m) = caps.name(name) {
                            captures.insert(name.to_owned(), Value::String(m.as_str().to_owned()));
                        }
                    }
                }
                Some(Value::Object(message_vars(ev, kind, captures)))
            }
            Trigger::Command(c) => {
                if ev.kind != TriggerKind::Message || ev.fields.get("automatic").and_then(Value::as_bool) == Some(true)
                {
                    return None;
                }
                let (name, args) = crate::commands::parse(ev.str("text")?)?;
                let role = crate::commands::Role::parse(ev.str("role").unwrap_or(""));
                if name != c.name || role < c.role || args.len() < c.min_args {
                    return None;
                }
                let mut v = message_vars(ev, TriggerKind::Message, Map::new());
                v.insert("command".into(), json!(c.name));
                v.insert("args_text".into(), json!(args.join(" ")));
                v.insert("args".into(), json!(args));
                v.insert("role".into(), json!(role.as_str()));
                Some(Value::Object(v))
            }
            Trigger::Startup if ev.kind == TriggerKind::Startup => Some(json!({"kind": "startup"})),
            Trigger::Device(change)
                if ev.kind == TriggerKind::Device && change.as_deref().is_none_or(|c| ev.str("change") == Some(c)) =>
            {
                let mut v = ev.fields.clone();
                v.insert("kind".into(), json!("device"));
                Some(Value::Object(v))
            }
            Trigger::ContactAdded if ev.kind == TriggerKind::ContactAdded => {
                let mut v = ev.fields.clone();
                v.insert("kind".into(), json!("contact_added"));
                Some(Value::Object(v))
            }
            Trigger::Broadcast { contains }
                if ev.kind == TriggerKind::Broadcast && matches_text(ev.str("text"), contains) =>
            {
                let mut v = ev.fields.clone();
                v.insert("kind".into(), json!("broadcast"));
                Some(Value::Object(v))
            }
            Trigger::Mqtt(filter) if ev.kind == TriggerKind::Mqtt && topic_matches(filter, ev.str("topic")?) => {
                let json = ev
                    .str("payload")
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                    .unwrap_or(Value::Null);
                let mut v = ev.fields.clone();
                v.insert("kind".into(), json!("mqtt"));
                v.insert("json".into(), json);
                Some(Value::Object(v))
            }
            _ => None,
        }
    }

    /// The trigger variables of a schedule firing.
    pub fn schedule_trigger(s: &Schedule, at: chrono::DateTime<chrono::Local>) -> Value {
        json!({"kind": "schedule", "time": at.to_rfc3339(), "schedule": s.describe()})
    }

    /// The full template context of a run at `now` (the caller's clock: the runtime's, or the
    /// time a dry run is asked for).
    pub fn context(&self, trigger: &Value, vars: &Map<String, Value>, now: chrono::DateTime<chrono::Local>) -> Value {
        json!({
            "trigger": trigger,
            "now": templates::now_context(now),
            "recipe": {"name": self.name},
            "vars": vars,
        })
    }

    /// Evaluates the conditions in order; `Err` names the first that failed to evaluate, `Ok(Some(i))`
    /// the first that is false.
    pub fn first_false_condition(&self, ctx: &Value) -> Result<Option<usize>, RecipeError> {
        let env = templates::environment();
        for (i, c) in self.conditions.iter().enumerate() {
            match templates::truthy(&env, c, ctx) {
                Ok(true) => {}
                Ok(false) => return Ok(Some(i)),
                Err(message) => {
                    return Err(RecipeError::Runtime {
                        path: format!("conditions[{i}]"),
                        message,
                    });
                }
            }
        }
        Ok(None)
    }

    /// Evaluates condition `i` alone.
    pub fn condition_holds(&self, i: usize, ctx: &Value) -> Result<bool, RecipeError> {
        let env = templates::environment();
        templates::truthy(&env, &self.conditions[i], ctx).map_err(|message| RecipeError::Runtime {
            path: format!("conditions[{i}]"),
            message,
        })
    }

    /// The condition texts.
    pub fn conditions(&self) -> &[String] {
        &self.conditions
    }

    /// The chat commands its `command` triggers declare.
    pub fn commands(&self) -> Vec<Command> {
        self.triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::Command(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Whether the recipe publishes to MQTT or listens to it (the runtime needs a broker).
    pub fn uses_mqtt(&self) -> bool {
        self.actions.iter().any(|a| matches!(a, RawAction::MqttPublish(_))) || !self.mqtt_topics().is_empty()
    }

    /// The MQTT topic filters its triggers listen to.
    pub fn mqtt_topics(&self) -> Vec<String> {
        self.triggers
            .iter()
            .filter_map(|t| match t {
                Trigger::Mqtt(filter) => Some(filter.clone()),
                _ => None,
            })
            .collect()
    }

    /// Number of actions.
    pub fn action_count(&self) -> usize {
        self.actions.len()
    }

    /// Renders action `i` with a context.
    pub fn render(&self, i: usize, ctx: &Value) -> Result<Rendered, RecipeError> {
        let env = templates::environment();
        let a = &self.actions[i];
        let r = |path: &str, s: &str| {
            templates::render(&env, s, ctx).map_err(|message| RecipeError::Runtime {
                path: format!("actions[{i}].{path}"),
                message,
            })
        };
        Ok(match a {
            RawAction::Send(s) => Rendered::Send {
                to: r("send.to", &s.to)?,
                text: r("send.text", &s.text)?,
            },
            RawAction::Reply(t) => Rendered::Reply {
                text: r("reply.text", &t.text)?,
            },
            RawAction::GroupSend(g) => Rendered::GroupSend {
                group: r("group_send.group", &g.group)?,
                text: r("group_send.text", &g.text)?,
            },
            RawAction::Broadcast(t) => Rendered::Broadcast {
                text: r("broadcast.text", &t.text)?,
            },
            RawAction::Call(c) => Rendered::Call {
                plugin: c.plugin.clone(),
                text: r("call.text", &c.text)?,
            },
            RawAction::Set(s) => Rendered::Set {
                key: r("set.key", &s.key)?,
                value: r("set.value", &s.value)?,
            },
            RawAction::Get(g) => Rendered::Get {
                key: r("get.key", &g.key)?,
                into: g.into.clone(),
                default: g.default.clone(),
            },
            RawAction::Delay(d) => Rendered::Delay(meow_yaml::duration(d).map_err(|message| RecipeError::Runtime {
                path: format!("actions[{i}].delay"),
                message,
            })?),
            RawAction::Log(l) => Rendered::Log {
                level: l.level,
                text: r("log.text", &l.text)?,
            },
            RawAction::DirectoryPublish(d) => Rendered::DirectoryPublish {
                description: r("directory_publish.description", &d.description)?,
                tags: d.tags.clone(),
            },
            RawAction::MqttPublish(m) => Rendered::MqttPublish {
                topic: r("mqtt_publish.topic", &m.topic)?,
                payload: r("mqtt_publish.payload", &m.payload)?,
                retain: m.retain,
            },
            RawAction::SendFile(s) => Rendered::SendFile {
                to: r("send_file.to", &s.to)?,
                path: r("send_file.path", &s.path)?,
                name: s.name.as_deref().map(|n| r("send_file.as", n)).transpose()?,
            },
            RawAction::SaveFile(s) => Rendered::SaveFile {
                file: r("save_file.file", &s.file)?,
                to: r("save_file.to", &s.to)?,
                overwrite: s.overwrite,
            },
        })
    }

    /// Names of the trigger kinds, for people.
    pub fn trigger_kinds(&self) -> BTreeSet<TriggerKind> {
        self.triggers.iter().map(Trigger::kind).collect()
    }
}
