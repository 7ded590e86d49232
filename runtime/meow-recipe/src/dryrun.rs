//! Dry runs: what a recipe would do for a sample event, without doing it.
//!
//! The sample event is YAML with one key naming its kind:
//! ```yaml
//! message: { from: sensor, text: '{"t": 31.5}' }
//! ```
//! (`message` also takes `role`, for `command` triggers; `group_message` takes `group`; `schedule: {}` fires the recipe's first schedule;
//! `startup: {}`; `contact_added: { name: bob }`; `broadcast: { text: flood, server: home }`;
//! `mqtt: { topic: home/door, payload: open }`; `device: { change: linked, device: laptop }`.)

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::model::Empty;
use crate::recipe::{Recipe, RecipeError, Rendered, TriggerEvent, TriggerKind};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SampleEvent {
    Message(SampleMessage),
    GroupMessage(SampleMessage),
    Schedule(Empty),
    Startup(Empty),
    ContactAdded(SampleContact),
    Broadcast(SampleBroadcast),
    Mqtt(SampleMqtt),
    Device(SampleDevice),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleDevice {
    change: String,
    device: String,
}

/// One of the user's devices linked or revoked (`change`), as the runtime hands it to recipes.
pub fn device_event(change: &str, device: &str) -> TriggerEvent {
    TriggerEvent::new(TriggerKind::Device, json!({"change": change, "device": device}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleMqtt {
    topic: String,
    payload: String,
}

/// A message on an MQTT topic as the runtime hands it to recipes (the payload as text, invalid
/// UTF-8 replaced).
pub fn mqtt_event(topic: &str, payload: &[u8]) -> TriggerEvent {
    TriggerEvent::new(
        TriggerKind::Mqtt,
        json!({"topic": topic, "payload": String::from_utf8_lossy(payload)}),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleMessage {
    from: String,
    text: String,
    #[serde(default)]
    group: Option<String>,
    /// The sender's role for `command` triggers (`anyone` by default; the runtime takes it from
    /// `roles:` in meow.yaml).
    #[serde(default)]
    role: crate::commands::Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleContact {
    name: String,
    #[serde(default)]
    via_directory: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleBroadcast {
    text: String,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    from_operator: bool,
}

/// A message event as the runtime builds it.
pub fn message_event(kind: TriggerKind, sender: &str, text: &str, group: Option<&str>, id: &str) -> TriggerEvent {
    let ty = if serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object() || v.is_array()) {
        "json"
    } else {
        "text"
    };
    TriggerEvent::new(
        kind,
        json!({"sender": sender, "text": text, "group": group, "id": id, "type": ty, "policy": "server"}),
    )
}

/// Reads a sample event file.
pub fn sample_event(text: &str, file: &str) -> Result<(TriggerEvent, bool), RecipeError> {
    let e: SampleEvent = meow_yaml::load(text, file)?;
    Ok(match e {
        SampleEvent::Message(m) => {
            let mut ev = message_event(TriggerKind::Message, &m.from, &m.text, None, "dry-run");
            ev.fields.insert("role".into(), json!(m.role.as_str()));
            (ev, false)
        }
        SampleEvent::GroupMessage(m) => (
            message_event(
                TriggerKind::GroupMessage,
                &m.from,
                &m.text,
                Some(m.group.as_deref().unwrap_or("group")),
                "dry-run",
            ),
            false,
        ),
        SampleEvent::Schedule(_) => (TriggerEvent::new(TriggerKind::Schedule, json!({})), true),
        SampleEvent::Startup(_) => (TriggerEvent::new(TriggerKind::Startup, json!({})), false),
        SampleEvent::ContactAdded(c) => (
            TriggerEvent::new(
                TriggerKind::ContactAdded,
                json!({"name": c.name, "via_directory": c.via_directory}),
            ),
            false,
        ),
        SampleEvent::Mqtt(m) => (mqtt_event(&m.topic, m.payload.as_bytes()), false),
        SampleEvent::Device(d) => (device_event(&d.change, &d.device), false),
        SampleEvent::Broadcast(b) => (
            TriggerEvent::new(
                TriggerKind::Broadcast,
                json!({"text": b.text, "server": b.server.unwrap_or_else(|| "home".into()), "from_operator": b.from_operator}),
            ),
            false,
        ),
    })
}

/// What a dry run found.
#[derive(Debug)]
pub struct DryRun {
    /// The trigger variables, if the event matched.
    pub trigger: Option<Value>,
    /// Each condition and its value (or error), up to the first false one.
    pub conditions: Vec<(String, Result<bool, String>)>,
    /// Each action, rendered (or the error rendering it), if the conditions held.
    pub actions: Vec<Result<Rendered, String>>,
}

impl DryRun {
    /// Whether the recipe would run its actions.
    pub fn would_run(&self) -> bool {
        self.trigger.is_some() && self.conditions.iter().all(|(_, r)| matches!(r, Ok(true)))
    }

    /// Whether anything failed to evaluate.
    pub fn has_errors(&self) -> bool {
        self.conditions.iter().any(|(_, r)| r.is_err()) || self.actions.iter().any(|a| a.is_err())
    }
}

impl std::fmt::Display for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(trigger) = &self.trigger else {
            return writeln!(f, "the event matches no trigger: nothing would happen");
        };
        writeln!(f, "trigger matched: {trigger}")?;
        for (c, r) in &self.conditions {
            match r {
                Ok(v) => writeln!(f, "condition {c:?}: {v}")?,
                Err(e) => writeln!(f, "condition {c:?}: error: {e}")?,
            }
        }
        if !self.would_run() {
            return writeln!(f, "a condition is not met: no action would run");
        }
        for (i, a) in self.actions.iter().enumerate() {
            match a {
                Ok(r) => writeln!(f, "action {}: {r}", i + 1)?,
                Err(e) => writeln!(f, "action {}: error: {e}", i + 1)?,
            }
        }
        Ok(())
    }
}

/// Runs a recipe against an event without side effects, as if it happened at `now` (so the
/// same event at the same time always gives the same report). `get` actions read nothing: the
/// variable takes its default, or `<KEY>`.
pub fn dry_run(recipe: &Recipe, event: &TriggerEvent, schedule: bool, now: chrono::DateTime<chrono::Local>) -> DryRun {
    let trigger = if schedule {
        recipe.schedules().first().map(|s| Recipe::schedule_trigger(s, now))
    } else {
        recipe.matches(event)
    };
    let mut run = DryRun {
        trigger: trigger.clone(),
        conditions: Vec::new(),
        actions: Vec::new(),
    };
    let Some(trigger) = trigger else { return run };
    let mut vars = Map::new();
    let ctx = recipe.context(&trigger, &vars, now);
    for (i, c) in recipe.conditions().iter().enumerate() {
        let r = match recipe.condition_holds(i, &ctx) {
            Ok(v) => Ok(v),
            Err(e) => Err(e.to_string()),
        };
        let stop = !matches!(r, Ok(true));
        run.conditions.push((c.clone(), r));
        if stop {
            return run;
        }
    }
    for i in 0..recipe.action_count() {
        let ctx = recipe.context(&trigger, &vars, now);
        let r = recipe.render(i, &ctx).map_err(|e| e.to_string());
        if let Ok(Rendered::Get { key, into, default }) = &r {
            vars.insert(
                into.clone(),
                Value::String(default.clone().unwrap_or_else(|| format!("<{key}>"))),
            );
        }
        run.actions.push(r);
    }
    run
}
