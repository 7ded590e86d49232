//! Running recipes inside the daemon: matching node events and schedules, run modes, executing
//! rendered actions, delays that survive a restart, per-run traces kept in the home, and swapping
//! in a new set of recipes while running (`meow recipe reload`).
//!
//! Stored in the vault's recipe table:
//! - `kv/<key>`: the recipes' shared key-value store (`set` / `get` actions);
//! - `pending/<run>`: a run waiting in a delay (recipe, trigger, next action, vars, wake time);
//! - `trace/<recipe>/<run>`: what a run did (the last 20 per recipe are kept).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use meow_node::{NodeEvent, Origin, Table, sync};
use meow_plugin::{Event, MessageEvent};
use meow_recipe::{Admission, Recipe, Rendered, TriggerEvent, TriggerKind, message_event};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::core::{Core, RuntimeEvent};
use crate::error::{Result, RuntimeError};

/// Traces kept per recipe.
const TRACES_KEPT: usize = 20;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// When, Unix ms.
    pub at_ms: u64,
    /// What was done.
    pub what: String,
    /// How it went.
    pub outcome: String,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Run id.
    pub run: u64,
    /// Recipe name.
    pub recipe: String,
    /// Start, Unix ms.
    pub started_ms: u64,
    /// The trigger variables.
    pub trigger: Value,
    /// Steps so far.
    pub steps: Vec<Step>,
    /// `running`, `waiting until …`, `done`, `skipped: …`, `error: …`.
    pub result: String,
}

/// A run waiting in a delay, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    recipe: String,
    trigger: Value,
    next: usize,
    vars: Map<String, Value>,
    wake_at_ms: u64,
    trace: Trace,
}

#[derive(Default)]
struct State {
    running: usize,
    queue: VecDeque<Value>,
    /// Runs in progress: the task and the trace it started with.
    tasks: HashMap<u64, (smol::Task<()>, Trace)>,
}

/// The recipes of a daemon.
pub struct Recipes {
    daemon: Weak<Core>,
    recipes: parking_lot::RwLock<Vec<Arc<Recipe>>>,
    state: parking_lot::Mutex<HashMap<String, State>>,
    next_run: AtomicU64,
    schedules: parking_lot::Mutex<Vec<smol::Task<()>>>,
}

impl std::fmt::Debug for Recipes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipes({})", self.current().len())
    }
}

/// The name a recipe's messages carry in the outbox (`recipe:NAME`).
pub fn recipe_sender(recipe: &str) -> String {
    format!("recipe:{recipe}")
}

/// Unix milliseconds as local time (the recipes' `now`).
pub(crate) fn local(ms: u64) -> chrono::DateTime<chrono::Local> {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .with_timezone(&chrono::Local)
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("/").into_bytes()
}

/// The event a recipe sees for a node event.
pub fn trigger_event(e: &NodeEvent) -> Option<TriggerEvent> {
    let marked = |mut ev: TriggerEvent, item: &meow_node::InboxItem| {
        ev.fields.insert("automatic".into(), Value::Bool(item.automatic));
        let reply_to = item.reply_to.map(|id| id.to_hex());
        ev.fields
            .insert("reply_to".into(), reply_to.map_or(Value::Null, Value::String));
        if item.content_type == meow_proto::ContentType::FILE {
            // Its text is the file's JSON description: `trigger.json.file`, `.name`, `.size`…
            ev.fields.insert("type".into(), json!("file"));
        }
        Some(ev)
    };
    match e {
        NodeEvent::Message(item) => {
            let text = String::from_utf8_lossy(&item.content);
            match &item.origin {
                Origin::Contact => marked(
                    message_event(TriggerKind::Message, &item.from, &text, None, &item.message.to_hex()),
                    item,
                ),
                Origin::Group { name, .. } => marked(
                    message_event(
                        TriggerKind::GroupMessage,
                        &item.from,
                        &text,
                        Some(name),
                        &item.message.to_hex(),
                    ),
                    item,
                ),
                Origin::Broadcast {
                    server, from_operator, ..
                } => Some(TriggerEvent::new(
                    TriggerKind::Broadcast,
                    json!({"text": text, "server": server, "from_operator": from_operator}),
                )),
            }
        }
        NodeEvent::ContactAdded { name, via_public_card } => Some(TriggerEvent::new(
            TriggerKind::ContactAdded,
            json!({"name": name, "via_directory": via_public_card}),
        )),
        NodeEvent::DeviceLinked { device } => Some(meow_recipe::device_event("linked", device)),
        NodeEvent::DeviceRevoked { device } => Some(meow_recipe::device_event("revoked", device)),
        _ => None,
    }
}

impl Recipes {
    /// Recipes for a daemon.
    pub(crate) fn new(daemon: Weak<Core>, recipes: Vec<Recipe>) -> Arc<Self> {
        let first_run = daemon.upgrade().map_or(0, |d| d.clock.now_ms()) << 8;
        Arc::new(Self {
            daemon,
            recipes: parking_lot::RwLock::new(recipes.into_iter().map(Arc::new).collect()),
            state: parking_lot::Mutex::new(HashMap::new()),
            next_run: AtomicU64::new(first_run),
            schedules: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.daemon.upgrade().map_or(0, |d| d.clock.now_ms())
    }

    /// The recipes loaded now.
    fn current(&self) -> Vec<Arc<Recipe>> {
        self.recipes.read().clone()
    }

    /// The loaded recipes.
    pub fn list(&self) -> Vec<crate::views::RecipeView> {
        let state = self.state.lock();
        self.current()
            .iter()
            .map(|r| crate::views::RecipeView {
                name: r.name.clone(),
                triggers: r.trigger_kinds().into_iter().map(|k| k.to_string()).collect(),
                running: state.get(&r.name).map_or(0, |s| s.running),
            })
            .collect()
    }

    /// Starts schedules, resumes delayed runs, fires startup triggers.
    pub fn start(self: &Arc<Self>) {
        let tasks = self.schedule_tasks();
        *self.schedules.lock() = tasks;
        self.resume_pending();
        let startup = TriggerEvent::new(TriggerKind::Startup, json!({}));
        self.on_trigger_event(&startup);
    }

    /// Swaps in a new set of recipes: their schedules replace the old ones at once. Runs in
    /// progress (delays included) finish with the version of the recipe they started with; a
    /// later trigger uses the new one. Startup triggers do not fire again.
    pub fn replace(self: &Arc<Self>, recipes: Vec<Recipe>) {
        // Held throughout, so that two reloads at once cannot leave both sets of schedules.
        let mut schedules = self.schedules.lock();
        *self.recipes.write() = recipes.into_iter().map(Arc::new).collect();
        *schedules = self.schedule_tasks();
    }

    /// One task per schedule trigger of the current recipes (dropping a task stops it).
    fn schedule_tasks(self: &Arc<Self>) -> Vec<smol::Task<()>> {
        let mut tasks = Vec::new();
        let Some(clock) = self.daemon.upgrade().map(|d| d.clock.clone()) else {
            return tasks;
        };
        for r in self.current() {
            for s in r.schedules() {
                let (me, r, clock) = (self.clone(), r.clone(), clock.clone());
                tasks.push(smol::spawn(async move {
                    loop {
                        let Some(next) = s.next_after(local(clock.now_ms())) else {
                            return;
                        };
                        clock.sleep_until(next.timestamp_millis().max(0) as u64).await;
                        me.fire(&r, Recipe::schedule_trigger(&s, next));
                    }
                }));
            }
        }
        tasks
    }

    /// Matches a node event against every recipe.
    pub fn on_event(self: &Arc<Self>, e: &NodeEvent) {
        let Some(mut ev) = trigger_event(e) else { return };
        let Some(d) = self.daemon.upgrade() else { return };
        if let Some(sender) = ev.str("sender").map(str::to_owned) {
            // The sender's privacy policy (`server`, `direct`, `matriochka`) and role.
            if let Some(p) = d.services.policy_of(&sender) {
                ev.fields.insert("policy".into(), Value::String(p));
            }
            let role = d.cfg.roles.of(&sender);
            ev.fields.insert("role".into(), json!(role.as_str()));
            if ev.kind == TriggerKind::Message {
                self.answer_command(&d, &ev, &sender, role);
            }
        }
        self.on_trigger_event(&ev);
    }

    /// Answers what the recipes' commands cannot: `/help`, a refused role, too few arguments.
    fn answer_command(&self, d: &Arc<Core>, ev: &TriggerEvent, sender: &str, role: meow_recipe::commands::Role) {
        if ev.fields.get("automatic").and_then(Value::as_bool) == Some(true) {
            return;
        }
        let Some(text) = ev.str("text").filter(|t| t.trim_start().starts_with('/')) else {
            return;
        };
        let commands: Vec<_> = self.current().iter().flat_map(|r| r.commands()).collect();
        let Some(answer) = meow_recipe::commands::answer(&commands, text, role) else {
            return;
        };
        let reply_to = ev.str("id").and_then(meow_proto::MessageId::from_hex);
        let (d, to) = (d.clone(), sender.to_owned());
        smol::spawn(async move {
            let sent = match d.auto.take(&to) {
                Ok(()) => {
                    d.send_automatic(
                        &recipe_sender("commands"),
                        &to,
                        (meow_proto::ContentType::TEXT, answer.into_bytes()),
                        reply_to,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(contact = %to, "answering a command: {e}");
            }
        })
        .detach();
    }

    /// Matches a message heard on an MQTT topic against every recipe.
    pub fn on_mqtt(self: &Arc<Self>, topic: &str, payload: &[u8]) {
        self.on_trigger_event(&meow_recipe::mqtt_event(topic, payload));
    }

    fn on_trigger_event(self: &Arc<Self>, ev: &TriggerEvent) {
        for r in self.current() {
            if let Some(trigger) = r.matches(ev) {
                self.fire(&r, trigger);
            }
        }
    }

    fn fire(self: &Arc<Self>, r: &Arc<Recipe>, trigger: Value) {
        let mut state = self.state.lock();
        let st = state.entry(r.name.clone()).or_default();
        let skip = match r.mode.admit(r.max, st.running, st.queue.len()) {
            Admission::Run => None,
            Admission::Skip(why) => Some(why),
            Admission::Queue => {
                st.queue.push_back(trigger);
                return;
            }
            Admission::StopOthersAndRun => {
                let stopped: Vec<_> = st.tasks.drain().collect();
                st.running = 0;
                for (run, (task, started)) in stopped {
                    drop(task);
                    tracing::info!(recipe = %r.name, run, "run stopped (mode restart)");
                    self.stopped(started);
                }
                None
            }
        };
        if let Some(why) = skip {
            tracing::debug!(recipe = %r.name, "trigger ignored: {why}");
            drop(state);
            let trace = self.new_trace(r, trigger);
            self.finish(Trace {
                result: format!("skipped: {why}"),
                ..trace
            });
            return;
        }
        let trace = self.new_trace(r, trigger.clone());
        self.spawn_run(&mut state, r.clone(), trigger, 0, Map::new(), trace, None);
    }

    fn new_trace(&self, r: &Recipe, trigger: Value) -> Trace {
        let run = self.next_run.fetch_add(1, Ordering::Relaxed);
        Trace {
            run,
            recipe: r.name.clone(),
            started_ms: self.now_ms(),
            trigger,
            steps: Vec::new(),
            result: "running".into(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_run(
        self: &Arc<Self>,
        state: &mut HashMap<String, State>,
        r: Arc<Recipe>,
        trigger: Value,
        next: usize,
        vars: Map<String, Value>,
        trace: Trace,
        wake_at_ms: Option<u64>,
    ) {
        let st = state.entry(r.name.clone()).or_default();
        st.running += 1;
        let (me, run, started) = (self.clone(), trace.run, trace.clone());
        let clock = self.daemon.upgrade().map(|d| d.clock.clone());
        let task = smol::spawn(async move {
            if let (Some(at), Some(clock)) = (wake_at_ms, clock) {
                clock.sleep_until(at).await;
            }
            let trace = me.execute(&r, &trigger, next, vars, trace).await;
            me.finish(trace);
            me.run_done(&r, run);
        });
        st.tasks.insert(run, (task, started));
    }

    /// Records a run stopped by a new trigger (mode restart): its trace so far, and no delay left
    /// to resume after a restart of the runtime.
    fn stopped(&self, started: Trace) {
        let k = key(&["pending", &format!("{:016x}", started.run)]);
        let waiting = self
            .daemon
            .upgrade()
            .and_then(|d| match d.vault().get(Table::Recipes, &k) {
                Ok(v) => match serde_json::from_slice::<Pending>(&v?) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::error!(recipe = %started.recipe, "a stopped run's delay record is damaged ({e}): its steps so far are lost");
                        None
                    }
                },
                Err(e) => {
                    tracing::error!(recipe = %started.recipe, "reading a stopped run's delay: {e}");
                    None
                }
            });
        let trace = waiting.map_or(started, |p| p.trace);
        self.finish(Trace {
            result: "stopped: triggered again (mode restart)".into(),
            ..trace
        });
    }

    fn run_done(self: &Arc<Self>, r: &Arc<Recipe>, run: u64) {
        let mut state = self.state.lock();
        let st = state.entry(r.name.clone()).or_default();
        if let Some((task, _)) = st.tasks.remove(&run) {
            task.detach();
        }
        st.running = st.running.saturating_sub(1);
        if let Some(next) = st.queue.pop_front() {
            let trace = self.new_trace(r, next.clone());
            self.spawn_run(&mut state, r.clone(), next, 0, Map::new(), trace, None);
        }
    }

    fn step(&self, trace: &mut Trace, what: String, outcome: String) {
        let step = Step {
            at_ms: self.now_ms(),
            what,
            outcome,
        };
        // Two call sites: a failure is never held back by the log limit behind a run of successes.
        if step.outcome.starts_with("failed") {
            tracing::warn!(recipe = %trace.recipe, "{} -> {}", step.what, step.outcome);
        } else {
            tracing::info!(recipe = %trace.recipe, "{} -> {}", step.what, step.outcome);
        }
        if let Some(d) = self.daemon.upgrade() {
            d.publish(RuntimeEvent::RecipeStep {
                recipe: trace.recipe.clone(),
                step: step.clone(),
            });
        }
        trace.steps.push(step);
    }

    async fn execute(
        &self,
        r: &Recipe,
        trigger: &Value,
        from: usize,
        mut vars: Map<String, Value>,
        mut trace: Trace,
    ) -> Trace {
        let Some(d) = self.daemon.upgrade() else { return trace };
        if from == 0 {
            let ctx = r.context(trigger, &vars, local(self.now_ms()));
            match r.first_false_condition(&ctx) {
                Ok(None) => {}
                Ok(Some(i)) => {
                    trace.result = format!("skipped: condition {} is false ({})", i + 1, r.conditions()[i]);
                    return trace;
                }
                Err(e) => {
                    trace.result = format!("error: {e}");
                    return trace;
                }
            }
        }
        for i in from..r.action_count() {
            let ctx = r.context(trigger, &vars, local(self.now_ms()));
            let action = match r.render(i, &ctx) {
                Ok(a) => a,
                Err(e) => {
                    trace.result = format!("error: {e}");
                    return trace;
                }
            };
            let what = action.to_string();
            let outcome = match action {
                Rendered::Delay(wait) => {
                    let wake_at_ms = self.now_ms() + wait.as_millis() as u64;
                    self.step(&mut trace, what, "waiting".into());
                    trace.result = format!("waiting until {}", format_time(wake_at_ms));
                    let pending = Pending {
                        recipe: r.name.clone(),
                        trigger: trigger.clone(),
                        next: i + 1,
                        vars: vars.clone(),
                        wake_at_ms,
                        trace: trace.clone(),
                    };
                    if let Err(e) = self.save_pending(&d.vault(), &pending) {
                        trace.result = format!("error: storing the delay: {e}");
                        return trace;
                    }
                    d.clock.sleep_until(wake_at_ms).await;
                    continue;
                }
                other => match self.act(&d, r, trigger, &mut vars, other).await {
                    Ok(o) => o,
                    Err(e) => {
                        self.step(&mut trace, what, format!("failed: {e}"));
                        trace.result = format!("error: {e}");
                        return trace;
                    }
                },
            };
            self.step(&mut trace, what, outcome);
        }
        trace.result = "done".into();
        trace
    }

    async fn act(
        &self,
        d: &Arc<Core>,
        r: &Recipe,
        trigger: &Value,
        vars: &mut Map<String, Value>,
        a: Rendered,
    ) -> Result<String> {
        let by = recipe_sender(&r.name);
        let send = |to: String, text: String, reply_to: Option<meow_proto::MessageId>| async move {
            d.auto.take(&to)?;
            let delivery = d
                .send_automatic(
                    &recipe_sender(&r.name),
                    &to,
                    (meow_proto::ContentType::TEXT, text.into_bytes()),
                    reply_to,
                )
                .await?;
            Ok::<_, RuntimeError>(match delivery {
                sync::Delivery::Delivered { .. } => "delivered".to_owned(),
                sync::Delivery::Queued { reason } => format!("queued ({reason})"),
                sync::Delivery::Handed => "handed to the device that holds the conversation".to_owned(),
            })
        };
        Ok(match a {
            Rendered::Send { to, text } => send(to, text, None).await?,
            Rendered::Reply { text } => {
                let to = trigger["sender"].as_str().ok_or(RuntimeError::NoSender)?.to_owned();
                // A reply keeps the thread: it names the message it answers.
                let id = trigger["id"].as_str().and_then(meow_proto::MessageId::from_hex);
                send(to, text, id).await?
            }
            Rendered::GroupSend { group, text } => {
                let n = sync::group_send_as(
                    &d.node,
                    &group,
                    meow_proto::ContentType::TEXT,
                    text.into_bytes(),
                    Some(&by),
                )
                .await?
                .len();
                format!("sent to {n} members")
            }
            Rendered::Broadcast { text } => {
                let (server, id) = sync::broadcast(&d.node, &text).await?;
                format!("broadcast {id} on {server}")
            }
            Rendered::Call { plugin, text } => {
                let now = d.clock.now_ms();
                let ev = Event::Message(MessageEvent {
                    id: format!("recipe-{now}"),
                    sender: by,
                    content_type: "text".into(),
                    body: text.clone().into_bytes(),
                    text: Some(text),
                    sent_at: now,
                    group: None,
                    automatic: false,
                    reply_to: None,
                });
                if d.deliver_to(&plugin, ev) {
                    "handed to the plugin".into()
                } else {
                    return Err(RuntimeError::NoInstance(plugin));
                }
            }
            Rendered::Set { key: k, value } => {
                let vault = d.vault();
                let mut b = vault.batch();
                b.put(
                    Table::Recipes,
                    &key(&["kv", &k]),
                    value.as_bytes(),
                    &mut meow_proto::os_rng(),
                );
                b.commit()?;
                "stored".into()
            }
            Rendered::Get { key: k, into, default } => {
                let vault = d.vault();
                let v = vault
                    .get(Table::Recipes, &key(&["kv", &k]))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned());
                let found = v.is_some();
                vars.insert(into, Value::String(v.or(default).unwrap_or_default()));
                if found {
                    "read".into()
                } else {
                    "not set: default used".into()
                }
            }
            Rendered::Log { level, text } => {
                match level {
                    meow_recipe::Level::Debug => tracing::debug!(recipe = %r.name, "{text}"),
                    meow_recipe::Level::Info => tracing::info!(recipe = %r.name, "{text}"),
                    meow_recipe::Level::Warn => tracing::warn!(recipe = %r.name, "{text}"),
                    meow_recipe::Level::Error => tracing::error!(recipe = %r.name, "{text}"),
                }
                "logged".into()
            }
            Rendered::DirectoryPublish { description, tags } => {
                sync::directory_publish(&d.node, &description, &tags).await?;
                "published".into()
            }
            Rendered::MqttPublish { topic, payload, retain } => {
                let Some(mqtt) = &d.mqtt else {
                    return Err(RuntimeError::Invalid(
                        "mqtt_publish: meow.yaml names no MQTT broker".into(),
                    ));
                };
                mqtt.publish(&topic, payload.as_bytes(), retain)?;
                format!("queued for MQTT topic {topic}")
            }
            Rendered::SendFile { to, path, name } => {
                d.auto.take(&to)?;
                let out = crate::files::Outgoing {
                    to: &to,
                    path: &beside(&r.file, &path),
                    name: name.as_deref(),
                    media_type: None,
                    by: Some(&by),
                };
                let sent = crate::files::send(&d.node, out).await?;
                match sent.delivery {
                    crate::views::DeliveryView::Delivered { .. } => format!("file {} delivered", sent.file.id),
                    crate::views::DeliveryView::Queued { reason } => format!("file {} queued ({reason})", sent.file.id),
                    crate::views::DeliveryView::Handed => {
                        format!("file {} handed to the device that holds the conversation", sent.file.id)
                    }
                }
            }
            Rendered::SaveFile { file, to, overwrite } => {
                let target = beside(&r.file, &to);
                let (view, path) = crate::files::save(&*d.node.lock().await, &file, &target, overwrite)?;
                format!("saved {} to {}", view.name, path.display())
            }
            Rendered::Delay(_) => "".into(),
        })
    }

    fn save_pending(&self, vault: &meow_store::vault::Vault, p: &Pending) -> Result<()> {
        let mut b = vault.batch();
        b.put(
            Table::Recipes,
            &key(&["pending", &format!("{:016x}", p.trace.run)]),
            &serde_json::to_vec(p)?,
            &mut meow_proto::os_rng(),
        );
        b.commit()?;
        Ok(())
    }

    fn finish(&self, trace: Trace) {
        let Some(d) = self.daemon.upgrade() else { return };
        let vault = d.vault();
        let run = format!("{:016x}", trace.run);
        let mut b = vault.batch();
        b.delete(Table::Recipes, &key(&["pending", &run]));
        match serde_json::to_vec(&trace) {
            Ok(json) => b.put(
                Table::Recipes,
                &key(&["trace", &trace.recipe, &run]),
                &json,
                &mut meow_proto::os_rng(),
            ),
            Err(e) => tracing::error!(recipe = %trace.recipe, "a run's trace cannot be stored: {e}"),
        }
        if let Err(e) = b.commit() {
            tracing::error!(recipe = %trace.recipe, "storing the trace: {e}");
        }
        tracing::debug!(recipe = %trace.recipe, run = %run, result = %trace.result, "run finished");
        prune_traces(&vault, &trace.recipe);
    }

    fn resume_pending(self: &Arc<Self>) {
        let Some(d) = self.daemon.upgrade() else { return };
        let records = match d.vault().scan(Table::Recipes) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("reading the recipes' delayed runs: {e}; they are not resumed");
                return;
            }
        };
        let recipes = self.current();
        let mut state = self.state.lock();
        for (k, v) in records {
            if !k.starts_with(b"pending/") {
                continue;
            }
            let p = match serde_json::from_slice::<Pending>(&v) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("a delayed recipe run is damaged ({e}): dropped");
                    continue;
                }
            };
            match recipes.iter().find(|r| r.name == p.recipe) {
                Some(r) => {
                    tracing::info!(recipe = %p.recipe, "resuming a run waiting until {}", format_time(p.wake_at_ms));
                    self.next_run.fetch_max(p.trace.run + 1, Ordering::Relaxed);
                    self.spawn_run(
                        &mut state,
                        r.clone(),
                        p.trigger,
                        p.next,
                        p.vars,
                        p.trace,
                        Some(p.wake_at_ms),
                    );
                }
                None => {
                    tracing::warn!(recipe = %p.recipe, "a delayed run of a recipe that is no longer loaded is dropped");
                    self.finish(Trace {
                        result: "dropped: the recipe is no longer loaded".into(),
                        ..p.trace
                    });
                }
            }
        }
    }
}

/// Keeps the newest traces of a recipe.
fn prune_traces(vault: &meow_store::vault::Vault, recipe: &str) {
    let prefix = key(&["trace", recipe, ""]);
    let all = match vault.scan(Table::Recipes) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(recipe, "reading traces to prune them: {e}");
            return;
        }
    };
    let mut keys: Vec<Vec<u8>> = all
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(&prefix))
        .collect();
    if keys.len() <= TRACES_KEPT {
        return;
    }
    keys.sort();
    let mut b = vault.batch();
    for k in &keys[..keys.len() - TRACES_KEPT] {
        b.delete(Table::Recipes, k);
    }
    if let Err(e) = b.commit() {
        tracing::error!(recipe, "pruning old traces: {e}");
    }
}

/// The stored traces of a recipe, oldest first.
pub fn traces(vault: &meow_store::vault::Vault, recipe: &str) -> Result<Vec<Trace>> {
    let prefix = key(&["trace", recipe, ""]);
    let records = vault.scan(Table::Recipes)?;
    let damaged = |what: &'static str, source: serde_json::Error| RuntimeError::Damaged {
        what: format!("{what} of recipe {recipe}"),
        source,
    };
    let mut v: Vec<(&Vec<u8>, Trace)> = Vec::new();
    for (k, val) in records.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        v.push((k, serde_json::from_slice(val).map_err(|e| damaged("trace", e))?));
    }
    v.sort_by(|a, b| a.0.cmp(b.0));
    let mut out: Vec<Trace> = v.into_iter().map(|(_, t)| t).collect();
    // Runs still waiting have no finished trace yet: show their pending state.
    for (_, val) in records.iter().filter(|(k, _)| k.starts_with(b"pending/")) {
        let p: Pending = serde_json::from_slice(val).map_err(|e| damaged("delayed run", e))?;
        if p.recipe == recipe {
            out.push(p.trace);
        }
    }
    Ok(out)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for a Unix time in milliseconds.
pub fn format_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// `path` as a recipe names it: relative paths are relative to the recipe file's folder.
fn beside(recipe_file: &str, path: &str) -> PathBuf {
    let p = Path::new(path);
    match Path::new(recipe_file).parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_owned(),
    }
}
