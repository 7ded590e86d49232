//! The YAML shape of a recipe, exactly as written (checked further in `recipe.rs`).

use serde::Deserialize;

/// What happens when a recipe triggers while a run is in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ignore the new trigger.
    #[default]
    Single,
    /// Run after the current one (up to `max` waiting).
    Queued,
    /// Run alongside (up to `max` at once).
    Parallel,
    /// Stop the current run and start again.
    Restart,
}

/// Log levels for the `log` action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Detailed.
    Debug,
    /// Normal.
    #[default]
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipe {
    pub version: u32,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub max: Option<usize>,
    pub triggers: Vec<RawTrigger>,
    #[serde(default)]
    pub conditions: Vec<String>,
    pub actions: Vec<RawAction>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawTrigger {
    Message(RawMessageTrigger),
    GroupMessage(RawGroupTrigger),
    Schedule(RawSchedule),
    Startup(Empty),
    ContactAdded(Empty),
    Broadcast(RawBroadcastTrigger),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMessageTrigger {
    /// A contact name, or `any` (the default).
    #[serde(default)]
    pub from: Option<String>,
    /// Text that must appear in the message (case-insensitive).
    #[serde(default)]
    pub contains: Option<String>,
    /// A regular expression the text must match; named groups become `trigger.captures`.
    #[serde(default)]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupTrigger {
    /// The group's name, or `any` (the default).
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// A period: `30s`, `10m`, `1h`.
    #[serde(default)]
    pub every: Option<String>,
    /// A five-field cron expression (local time).
    #[serde(default)]
    pub cron: Option<String>,
    /// A daily time, `HH:MM` (local time).
    #[serde(default)]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBroadcastTrigger {
    #[serde(default)]
    pub contains: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawAction {
    /// Send text to a contact.
    Send(RawSend),
    /// Answer the triggering message.
    Reply(RawText),
    /// Send to a group.
    GroupSend(RawGroupSend),
    /// Emergency broadcast on my server.
    Broadcast(RawText),
    /// Hand text to a plugin instance, as a message from `recipe:<name>`.
    Call(RawCall),
    /// Store a value in the recipe's key-value store.
    Set(RawSet),
    /// Read a value into `vars.<as>`.
    Get(RawGet),
    /// Wait (survives a restart).
    Delay(String),
    /// Write to the runtime's log.
    Log(RawLog),
    /// Publish my directory entry.
    DirectoryPublish(RawPublish),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    pub to: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawText {
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupSend {
    pub group: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCall {
    pub plugin: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGet {
    pub key: String,
    #[serde(rename = "as")]
    pub into: String,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub text: String,
    #[serde(default)]
    pub level: Level,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublish {
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
}
