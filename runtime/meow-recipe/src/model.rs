//! The YAML shape of a recipe, exactly as written (checked further in `recipe.rs`), and what its run
//! mode decides when a trigger arrives during a run.

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

/// What to do with a new trigger, given the runs of the recipe in progress and waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start a run now.
    Run,
    /// Stop every run in progress, then start one.
    StopOthersAndRun,
    /// Keep the trigger; run it when the current run ends.
    Queue,
    /// Ignore the trigger, for this reason.
    Skip(&'static str),
}

impl Mode {
    /// Decides about a new trigger when `running` runs are in progress and `queued` wait.
    pub fn admit(self, max: usize, running: usize, queued: usize) -> Admission {
        match self {
            _ if running == 0 => Admission::Run,
            Mode::Single => Admission::Skip("a run is in progress (mode single)"),
            Mode::Parallel if running >= max => Admission::Skip("too many runs at once (mode parallel)"),
            Mode::Parallel => Admission::Run,
            Mode::Queued if queued >= max => Admission::Skip("the queue is full (mode queued)"),
            Mode::Queued => Admission::Queue,
            Mode::Restart => Admission::StopOthersAndRun,
        }
    }
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
    Mqtt(RawMqttTrigger),
    Command(crate::commands::RawCommandTrigger),
    Device(RawDeviceTrigger),
}

/// `device: { change: linked | revoked }` (no change: both).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeviceTrigger {
    /// `linked` or `revoked`; absent: either.
    #[serde(default)]
    pub change: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttTrigger {
    /// A topic filter of the broker in meow.yaml (`+` one level, `#` the rest).
    pub topic: String,
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
    /// Also react to messages marked automatic (sent by plugins and recipes of other homes).
    /// Off by default, which ends loops between auto-answering homes.
    #[serde(default)]
    pub automatic: bool,
}

/// A message trigger's fields plus `group`, written out: serde's `flatten` would turn
/// `deny_unknown_fields` off, and a misspelt key must stay an error.
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
    #[serde(default)]
    pub automatic: bool,
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
    /// Publish to a topic of the MQTT broker in meow.yaml.
    MqttPublish(RawMqttPublish),
    /// Send a file from disk to a contact.
    SendFile(RawSendFile),
    /// Write a received file to disk.
    SaveFile(RawSaveFile),
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttPublish {
    pub topic: String,
    pub payload: String,
    #[serde(default)]
    pub retain: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSendFile {
    pub to: String,
    /// The file on disk (relative: to the recipe file's folder).
    pub path: String,
    /// The name the contact sees (default: the file's own).
    #[serde(default, rename = "as")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSaveFile {
    /// The file's id (`{{ trigger.json.file }}` for a file that arrived).
    pub file: String,
    /// A folder (the file goes in under its own name) or a path (relative: to the recipe
    /// file's folder).
    pub to: String,
    /// Replace an existing file.
    #[serde(default)]
    pub overwrite: bool,
}

#[cfg(test)]
mod tests {
    use super::{Admission, Mode};

    #[test]
    fn run_modes_admit_new_triggers_as_documented() {
        for mode in [Mode::Single, Mode::Queued, Mode::Parallel, Mode::Restart] {
            assert_eq!(mode.admit(2, 0, 0), Admission::Run, "{mode:?} with nothing running");
        }
        assert!(matches!(Mode::Single.admit(2, 1, 0), Admission::Skip(_)));
        assert_eq!(Mode::Parallel.admit(2, 1, 0), Admission::Run);
        assert!(matches!(Mode::Parallel.admit(2, 2, 0), Admission::Skip(_)));
        assert_eq!(Mode::Queued.admit(2, 1, 1), Admission::Queue);
        assert!(matches!(Mode::Queued.admit(2, 1, 2), Admission::Skip(r) if r.contains("queue is full")));
        assert_eq!(Mode::Restart.admit(2, 3, 0), Admission::StopOthersAndRun);
    }
}
