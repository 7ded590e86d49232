//! The running daemon: it opens the home, starts the embedded server if configured, keeps
//! polling for mail, hands events to plugin instances, recipes and subscribers, executes what
//! they ask, and answers control requests. Stopping it at any moment loses nothing: nothing is
//! acknowledged at a server before it is stored, and events for bots are stored with the mail.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures_lite::FutureExt;
use meow_clock::{SharedClock, SystemClock};
use meow_node::{Node, NodeEvent, Origin, sync};
use meow_plugin::{BroadcastEvent, Capability, Engine, Event, Host, Kind, Limits, MessageEvent, Plugin};
use meow_proto::ContentType;

use crate::config::{InstanceConfig, RunConfig};
use crate::control::{self, Answer, ControlError, Request, Response};
use crate::error::{Result, RuntimeError};
use crate::recipes::{Recipes, Step};
use crate::services::{AutoBudget, Command, RuntimeServices, ServicesSetup, plugin_sender};
use crate::supervisor::{NativeFactory, Source, Spec, Supervisor, Watchdog};
use crate::views::{InstanceView, RecipeView, StatusView};
use meow_clock::rate::Buckets;

/// Makes an engine when a plugin of its kind is first loaded.
pub type EngineFactory = Box<dyn Fn() -> std::result::Result<Arc<dyn Engine>, String> + Send + Sync>;

/// The plugin engines a runtime may use, each made on first use.
#[derive(Default)]
pub struct Engines {
    factories: Vec<(Kind, EngineFactory)>,
    made: Mutex<Vec<(Kind, Arc<dyn Engine>)>>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<Kind> = self.factories.iter().map(|(k, _)| *k).collect();
        write!(f, "Engines({kinds:?})")
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Wasm => "WebAssembly",
        Kind::Lua => "Lua",
    }
}

impl Engines {
    /// No engine: only native handlers run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs plugins of `kind` with the engine `make` returns (called once, on first use).
    pub fn with(
        mut self,
        kind: Kind,
        make: impl Fn() -> std::result::Result<Arc<dyn Engine>, String> + Send + Sync + 'static,
    ) -> Self {
        self.factories.push((kind, Box::new(make)));
        self
    }

    fn get(&self, kind: Kind) -> Result<Arc<dyn Engine>> {
        let mut made = self.made.lock();
        if let Some((_, e)) = made.iter().find(|(k, _)| *k == kind) {
            return Ok(e.clone());
        }
        let (_, make) = self
            .factories
            .iter()
            .find(|(k, _)| *k == kind)
            .ok_or_else(|| RuntimeError::Engine {
                kind: kind_name(kind),
                reason: "this program runs no such plugins".into(),
            })?;
        let engine = make().map_err(|reason| RuntimeError::Engine {
            kind: kind_name(kind),
            reason,
        })?;
        made.push((kind, engine.clone()));
        Ok(engine)
    }
}

/// What subscribers of a runtime see.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RuntimeEvent {
    /// A message arrived or a contact was added (what plugins and recipes are handed).
    Node(NodeEvent),
    /// A recipe finished a step.
    RecipeStep {
        /// The recipe.
        recipe: String,
        /// The step.
        step: Step,
    },
}

/// A native handler to run as a plugin instance.
struct Native {
    name: String,
    grant: Vec<Capability>,
    accept_automatic: bool,
    factory: NativeFactory,
}

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    home: PathBuf,
    node: Node,
    config: RunConfig,
    engines: Engines,
    natives: Vec<Native>,
    watch: bool,
    clock: SharedClock,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuntimeBuilder({})", self.home.display())
    }
}

impl RuntimeBuilder {
    /// A runtime for the home in `home`, already opened as `node`, configured by `config`.
    pub fn new(home: &Path, node: Node, config: RunConfig) -> Self {
        Self {
            home: home.to_owned(),
            node,
            config,
            engines: Engines::new(),
            natives: Vec::new(),
            watch: false,
            clock: SystemClock::shared(),
        }
    }

    /// The plugin engines (by default none: only native handlers run).
    pub fn engines(mut self, engines: Engines) -> Self {
        self.engines = engines;
        self
    }

    /// Runs a native handler as the instance `name`, with the capabilities `grant`. `make` is
    /// called at every (re)start of the instance.
    pub fn native<H: crate::native::Handler>(
        mut self,
        name: &str,
        grant: &[Capability],
        make: impl Fn() -> H + Send + Sync + 'static,
    ) -> Self {
        self.natives.push(Native {
            name: name.to_owned(),
            grant: grant.to_vec(),
            accept_automatic: false,
            factory: crate::native::factory(make),
        });
        self
    }

    /// Reloads plugins and recipes when their files change.
    pub fn watch(mut self, on: bool) -> Self {
        self.watch = on;
        self
    }

    /// The clock (the system clock by default).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Starts everything; returns once the plugins are launched.
    pub async fn start(self) -> Result<Runtime> {
        start(self).await
    }
}

/// The running daemon's state, shared by its tasks.
pub struct Core {
    /// The home.
    pub(crate) node: Arc<smol::lock::Mutex<Node>>,
    home: PathBuf,
    pub(crate) services: Arc<RuntimeServices>,
    supervisors: Mutex<BTreeMap<String, Supervisor>>,
    accepts_automatic: Mutex<BTreeMap<String, bool>>,
    instance_configs: Vec<InstanceConfig>,
    pub(crate) cfg: RunConfig,
    engines: Engines,
    stop: smol::channel::Sender<()>,
    vault: Arc<meow_store::vault::Vault>,
    recipes: OnceLock<Arc<Recipes>>,
    subscribers: Mutex<Vec<smol::channel::Sender<RuntimeEvent>>>,
    pub(crate) clock: SharedClock,
    pub(crate) auto: Arc<AutoBudget>,
    incoming: Mutex<Buckets<String>>,
    watchdog: Watchdog,
    server_address: Option<String>,
    server_links: Vec<(String, Arc<dyn meow_net::port::DatagramPort>)>,
    server_relay: Option<Arc<meow_server::relay::Relay>>,
    /// The MQTT bridge, when meow.yaml names a broker.
    pub(crate) mqtt: Option<Arc<crate::mqtt::Mqtt>>,
    /// A device being linked through this daemon (`meow device link`).
    pub(crate) linking: smol::lock::Mutex<Option<crate::home::LinkSession>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Core({})", self.home.display())
    }
}

/// Converts a node event into what plugins see.
pub fn plugin_event(e: &NodeEvent) -> Option<Event> {
    match e {
        NodeEvent::Message(item) => match &item.origin {
            Origin::Broadcast {
                server, from_operator, ..
            } => Some(Event::Broadcast(BroadcastEvent {
                server: server.clone(),
                from_operator: *from_operator,
                text: String::from_utf8_lossy(&item.content).into_owned(),
                sent_at: item.sent_at_ms,
            })),
            origin => {
                // A file's message is its JSON description (`meow_node::files::FileRecord::describe`).
                let text = matches!(
                    item.content_type,
                    ContentType::TEXT | ContentType::JSON | ContentType::FILE
                )
                .then(|| String::from_utf8_lossy(&item.content).into_owned());
                Some(Event::Message(MessageEvent {
                    id: item.message.to_hex(),
                    sender: item.from.clone(),
                    content_type: item.content_type.name(),
                    body: item.content.clone(),
                    text,
                    sent_at: item.sent_at_ms,
                    group: match origin {
                        Origin::Group { name, .. } => Some(name.clone()),
                        _ => None,
                    },
                    automatic: item.automatic,
                    reply_to: item.reply_to.map(|id| id.to_hex()),
                }))
            }
        },
        NodeEvent::ContactAdded { name, via_public_card } => Some(Event::ContactAdded {
            name: name.clone(),
            via_directory: *via_public_card,
        }),
        NodeEvent::DeviceLinked { device } => Some(Event::Device {
            change: "linked".into(),
            device: device.clone(),
        }),
        NodeEvent::DeviceRevoked { device } => Some(Event::Device {
            change: "revoked".into(),
            device: device.clone(),
        }),
        _ => None,
    }
}

fn limits(cfg: &InstanceConfig) -> Limits {
    let d = Limits::default();
    Limits {
        memory_bytes: cfg.limits.memory_mib.map_or(d.memory_bytes, |m| m << 20),
        call_ms: cfg.limits.call_ms.unwrap_or(d.call_ms),
        ..d
    }
}

impl Core {
    fn load_plugin(&self, inst: &InstanceConfig) -> Result<Plugin> {
        let path = self.cfg.plugin_path(&inst.plugin)?;
        Plugin::load(&path).map_err(|source| RuntimeError::Plugin {
            instance: inst.name.clone(),
            source,
        })
    }

    fn spec(&self, name: &str, source: Source, host: Host, limits: Limits, config: String) -> Spec {
        let services = self.services.clone();
        Spec {
            name: name.to_owned(),
            source,
            host,
            limits,
            config,
            on_restart: Arc::new(move |name| services.forget_instance(name)),
        }
    }

    fn start_instance(&self, inst: &InstanceConfig) -> Result<Supervisor> {
        let plugin = self.load_plugin(inst)?;
        let config = plugin.configure(&inst.config).map_err(|source| RuntimeError::Plugin {
            instance: inst.name.clone(),
            source,
        })?;
        for cap in &inst.grant {
            if !plugin.manifest.capabilities.contains(cap) {
                tracing::warn!(instance = %inst.name, "capability {} granted but not requested by {}", cap.name(), plugin.name());
            }
        }
        for cap in &plugin.manifest.capabilities {
            if !inst.grant.contains(cap) {
                tracing::info!(instance = %inst.name, "{} asks for capability {}, which is not granted", plugin.name(), cap.name());
            }
        }
        let granted: Vec<_> = inst
            .grant
            .iter()
            .copied()
            .filter(|c| plugin.manifest.capabilities.contains(c))
            .collect();
        if granted.contains(&meow_plugin::Capability::Mqtt) && self.mqtt.is_none() {
            tracing::warn!(instance = %inst.name, "granted mqtt, but meow.yaml names no broker (`mqtt:`): its MQTT calls will fail");
        }
        self.services.configure(inst);
        let source = Source::Plugin {
            engine: self.engines.get(plugin.manifest.kind)?,
            plugin: Box::new(plugin),
        };
        let host = Host::new(&inst.name, granted, self.services.clone());
        let spec = self.spec(&inst.name, source, host, limits(inst), config);
        Supervisor::spawn(spec, &self.watchdog).map_err(RuntimeError::io("starting a plugin thread"))
    }

    fn start_native(&self, n: &Native) -> Result<Supervisor> {
        let inst = InstanceConfig {
            name: n.name.clone(),
            plugin: "native".into(),
            grant: n.grant.clone(),
            config: Default::default(),
            limits: Default::default(),
            accept_automatic: n.accept_automatic,
            sync: false,
        };
        self.services.configure(&inst);
        let host = Host::new(&n.name, n.grant.iter().copied(), self.services.clone());
        let spec = self.spec(
            &n.name,
            Source::Native(n.factory.clone()),
            host,
            limits(&inst),
            "{}".into(),
        );
        Supervisor::spawn(spec, &self.watchdog).map_err(RuntimeError::io("starting a handler thread"))
    }

    /// Reloads an instance's plugin from disk; rolls back if the new version fails to start.
    pub fn reload(&self, name: &str) -> Result<String> {
        let inst = self
            .instance_configs
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| RuntimeError::NoInstance(name.to_owned()))?;
        let plugin = self.load_plugin(inst)?;
        let config = plugin.configure(&inst.config).map_err(|source| RuntimeError::Plugin {
            instance: name.to_owned(),
            source,
        })?;
        let version = plugin.manifest.version.clone();
        let sups = self.supervisors.lock();
        let sup = sups
            .get(name)
            .ok_or_else(|| RuntimeError::NoInstance(name.to_owned()))?;
        sup.reload(plugin, config).map_err(|reason| RuntimeError::Reload {
            instance: name.to_owned(),
            reason,
        })?;
        Ok(version)
    }

    /// Instances and their state.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.supervisors
            .lock()
            .values()
            .map(|s| InstanceView {
                instance: s.name().to_owned(),
                plugin: s.describe(),
                status: s.status(),
            })
            .collect()
    }

    /// The loaded recipes.
    pub fn recipes(&self) -> Vec<RecipeView> {
        self.recipes.get().map(|r| r.list()).unwrap_or_default()
    }

    /// The daemon's state.
    pub async fn status(&self) -> StatusView {
        let (outbox, events_waiting) = {
            let n = self.node.lock().await;
            (n.outbox_len(None), n.events_waiting())
        };
        StatusView {
            home: self.home.display().to_string(),
            server: self.server_address.clone(),
            instances: self.instances(),
            recipes: self.recipes(),
            outbox,
            events_waiting,
            links: self.link_views(),
            relay: self.server_relay.as_ref().map(|r| {
                let s = r.stats();
                crate::views::RelayView {
                    accepted: s.accepted,
                    forwarded: s.forwarded,
                    delivered: s.delivered,
                    replays: s.replays,
                    refused: s.refused,
                    lost: s.lost,
                    held: r.held(),
                }
            }),
        }
    }

    /// The embedded server's serial lines and radios.
    fn link_views(&self) -> Vec<crate::views::LinkView> {
        self.server_links
            .iter()
            .map(|(name, port)| crate::views::LinkView::new(name.clone(), &port.status()))
            .collect()
    }

    /// The home's vault (for the recipe and plugin stores).
    pub(crate) fn vault(&self) -> Arc<meow_store::vault::Vault> {
        self.vault.clone()
    }

    /// Reads the recipe files again and swaps them in; on any error the loaded recipes stay.
    /// Returns the names now loaded.
    pub async fn reload_recipes(&self) -> Result<Vec<String>> {
        let recipes = self.recipes.get().ok_or(RuntimeError::NotStarted("the recipes"))?;
        let loaded = load_recipes(&self.node, &self.cfg).await?;
        let names = loaded.iter().map(|r| r.name.clone()).collect();
        if let Some(mqtt) = &self.mqtt {
            mqtt.set_recipe_topics(mqtt_topics(&loaded));
        }
        recipes.replace(loaded);
        Ok(names)
    }

    /// Hands an event to one plugin instance; false if there is no such instance.
    pub(crate) fn deliver_to(&self, instance: &str, event: Event) -> bool {
        match self.supervisors.lock().get(instance) {
            Some(s) => {
                s.deliver(Arc::new(event));
                true
            }
            None => false,
        }
    }

    /// Whether a contact's message may go to the bots now (its incoming rate).
    fn admit(&self, e: &NodeEvent) -> bool {
        let NodeEvent::Message(item) = e else { return true };
        let key = match &item.origin {
            Origin::Broadcast { server, .. } => format!("broadcast:{server}"),
            _ => item.from.clone(),
        };
        let now = self.clock.now_ms();
        if self.incoming.lock().take(&key, now) {
            return true;
        }
        tracing::warn!(
            contact = %item.from,
            "{} sends faster than limits.incoming_per_second: a message is stored but not handed to plugins and recipes",
            item.from
        );
        false
    }

    /// Hands an event to every instance, the recipes and the subscribers.
    pub(crate) async fn dispatch(&self, e: NodeEvent) {
        if !self.admit(&e) {
            return;
        }
        if let NodeEvent::Message(item) = &e
            && item.contact != 0
        {
            self.services.remember(&item.message.to_hex(), &item.from);
        }
        if let NodeEvent::ContactAdded { .. } = e {
            self.refresh_contacts().await;
        }
        let automatic = matches!(&e, NodeEvent::Message(item) if item.automatic);
        if let Some(pe) = plugin_event(&e) {
            let pe = Arc::new(pe);
            let accepts = self.accepts_automatic.lock().clone();
            for s in self.supervisors.lock().values() {
                if !automatic || accepts.get(s.name()).copied().unwrap_or(false) {
                    s.deliver(pe.clone());
                }
            }
        }
        if let Some(r) = self.recipes.get() {
            r.on_event(&e);
        }
        self.publish(RuntimeEvent::Node(e));
    }

    pub(crate) fn publish(&self, e: RuntimeEvent) {
        let mut subs = self.subscribers.lock();
        subs.retain(|s| !s.is_closed());
        for s in subs.iter() {
            let _ = s.try_send(e.clone());
        }
    }

    pub(crate) async fn refresh_contacts(&self) {
        let node = self.node.lock().await;
        self.services.set_contacts(crate::services::addressable(&node));
        self.services.set_policies(crate::services::policies(&node));
    }

    /// Asks the daemon to stop.
    pub fn request_stop(&self) {
        let _ = self.stop.try_send(());
    }

    /// Sends a program's message (a plugin's or a recipe's): marked automatic, counted against
    /// `by`'s outbox quota, delivered now if a server takes it.
    pub(crate) async fn send_automatic(
        &self,
        by: &str,
        to: &str,
        (content_type, body): (ContentType, Vec<u8>),
        reply_to: Option<meow_proto::MessageId>,
    ) -> Result<sync::Delivery> {
        let items = match reply_to {
            Some(id) => self
                .node
                .lock()
                .await
                .queue_reply(to, (content_type, body), id, Some(by))?,
            None => self.node.lock().await.queue_automatic(to, content_type, body, by)?,
        };
        Ok(sync::deliver_message(&self.node, items).await?)
    }

    async fn execute(&self, cmd: Command) {
        match cmd {
            Command::Send {
                instance,
                to,
                content_type,
                body,
                reply_to,
            } => match self
                .send_automatic(&plugin_sender(&instance), &to, (content_type, body), reply_to)
                .await
            {
                Ok(sync::Delivery::Delivered { .. }) => tracing::debug!(plugin = %instance, %to, "message delivered"),
                Ok(sync::Delivery::Queued { reason }) => {
                    tracing::warn!(plugin = %instance, %to, "message queued: {reason}")
                }
                Ok(sync::Delivery::Handed) => {
                    tracing::debug!(plugin = %instance, %to, "message handed to the device that holds the conversation")
                }
                Err(e) => tracing::warn!(plugin = %instance, %to, "cannot send: {e}"),
            },
            Command::GroupSend { instance, group, text } => {
                let by = plugin_sender(&instance);
                match sync::group_send_as(&self.node, &group, ContentType::TEXT, text.into_bytes(), Some(&by)).await {
                    Ok(d) => tracing::debug!(plugin = %instance, %group, "group message sent to {} members", d.len()),
                    Err(e) => tracing::warn!(plugin = %instance, %group, "group send failed: {e}"),
                }
            }
            Command::Broadcast { instance, text } => match sync::broadcast(&self.node, &text).await {
                Ok((server, id)) => tracing::info!(plugin = %instance, "broadcast {id} accepted by {server}"),
                Err(e) => tracing::warn!(plugin = %instance, "broadcast refused: {e}"),
            },
            Command::DirectoryPublish {
                instance,
                description,
                tags,
            } => match sync::directory_publish(&self.node, &description, &tags).await {
                Ok((server, _)) => tracing::info!(plugin = %instance, "directory entry published on {server}"),
                Err(e) => tracing::warn!(plugin = %instance, "directory publish failed: {e}"),
            },
            Command::DirectoryWithdraw { instance } => match sync::directory_withdraw(&self.node).await {
                Ok(server) => tracing::info!(plugin = %instance, "directory entry withdrawn from {server}"),
                Err(e) => tracing::warn!(plugin = %instance, "directory withdraw failed: {e}"),
            },
            Command::SendFile {
                instance,
                to,
                meta,
                data,
            } => {
                let by = plugin_sender(&instance);
                let queued = self.node.lock().await.queue_described(&to, &meta, &data, Some(&by));
                let delivered = match queued {
                    Ok(items) => sync::deliver_message(&self.node, items).await,
                    Err(e) => Err(e),
                };
                match delivered {
                    Ok(d) => tracing::info!(plugin = %instance, %to, file = %meta.id, "file sent ({d:?})"),
                    Err(e) => tracing::warn!(plugin = %instance, %to, file = %meta.id, "cannot send the file: {e}"),
                }
            }
            Command::Timer { instance, id, name } => {
                self.deliver_to(&instance, Event::Timer { id, name });
            }
        }
    }

    /// Answers a control request.
    pub(crate) async fn answer(self: &Arc<Self>, request: Request) -> Answer {
        let r = crate::home::handle(&self.node, Some(self), request).await;
        self.refresh_contacts().await;
        r.map_err(ControlError::from)
    }
}

/// Hands stored events to the bots, oldest first, until the task is dropped. Each event is
/// deleted once handed on; a crash in between hands it on again at the next start.
async fn dispatch_loop(core: Arc<Core>, signal: smol::channel::Receiver<()>) {
    loop {
        let batch = core.node.lock().await.pending_events(256);
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("reading events for plugins and recipes: {e}");
                core.clock.sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if batch.is_empty() {
            if signal.recv().await.is_err() {
                return;
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        for (seq, event) in batch {
            if let Some(e) = event {
                core.dispatch(e).await;
            }
            done.push(seq);
        }
        if let Err(e) = core.node.lock().await.events_done(&done) {
            tracing::error!("forgetting events handed on: {e}");
            core.clock.sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Polls servers until the task is dropped (what arrives reaches the bots through the events).
/// A long poll starts over when the mailboxes to poll change (a new invitation or contact):
/// dropping a poll loses nothing, since mail is acknowledged only once it is stored.
async fn fetch_loop(core: Arc<Core>, wait: Duration, plan: smol::channel::Receiver<()>) {
    let mut failures = 0u32;
    loop {
        // Every round yields, even if no network call had to wait.
        smol::future::yield_now().await;
        if let Err(e) = sync::flush_outbox(&core.node, true).await {
            tracing::error!("outbox: {e}");
        }
        while plan.try_recv().is_ok() {}
        let fetched = async { Some(sync::fetch(&core.node, wait).await) }
            .or(async {
                let _ = plan.recv().await;
                None
            })
            .await;
        let Some(fetched) = fetched else { continue };
        match fetched {
            Ok(report) => {
                for (server, reason) in &report.unreachable {
                    tracing::warn!(%server, "cannot reach server: {reason}");
                }
                if report.unreachable.is_empty() {
                    failures = 0;
                } else {
                    failures += 1;
                    core.clock.sleep(Duration::from_secs(1 << failures.min(5))).await;
                }
            }
            Err(e) => {
                tracing::error!("fetching mail: {e}");
                core.clock.sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Runs plugin actions, a bounded number at once.
/// The MQTT topic filters the recipes listen to, each once.
fn mqtt_topics(recipes: &[meow_recipe::Recipe]) -> Vec<String> {
    let mut topics: Vec<String> = recipes.iter().flat_map(|r| r.mqtt_topics()).collect();
    topics.sort();
    topics.dedup();
    topics
}

/// Hands what the MQTT bridge hears to the recipes and to the plugin instances subscribed.
async fn heard_loop(core: Weak<Core>, recipes: Arc<Recipes>, rx: smol::channel::Receiver<crate::mqtt::Heard>) {
    while let Ok((topic, payload)) = rx.recv().await {
        recipes.on_mqtt(&topic, &payload);
        let Some(core) = core.upgrade() else { return };
        let Some(mqtt) = &core.mqtt else { continue };
        for instance in mqtt.plugins_hearing(&topic) {
            let event = Event::Mqtt {
                topic: topic.clone(),
                payload: payload.clone(),
            };
            core.deliver_to(&instance, event);
        }
    }
}

async fn command_loop(core: Arc<Core>, rx: smol::channel::Receiver<Command>) {
    let permits = Arc::new(smol::lock::Semaphore::new(16));
    while let Ok(cmd) = rx.recv().await {
        let permit = permits.acquire_arc().await;
        let c = core.clone();
        smol::spawn(async move {
            c.execute(cmd).await;
            drop(permit);
        })
        .detach();
    }
}

/// Plugin files' modification times, for `watch`.
fn stamps(core: &Core) -> BTreeMap<String, std::time::SystemTime> {
    core.instance_configs
        .iter()
        .filter_map(|i| {
            let dir = core.cfg.plugin_path(&i.plugin).ok()?;
            let (m, dir, file) = meow_plugin::Manifest::read(&dir).ok()?;
            let t1 = std::fs::metadata(file).and_then(|m| m.modified()).ok()?;
            let t2 = std::fs::metadata(dir.join(&m.entry)).and_then(|m| m.modified()).ok()?;
            Some((i.name.clone(), t1.max(t2)))
        })
        .collect()
}

/// The recipe files and their modification times (a file added or removed changes it too).
fn recipe_stamps(core: &Core) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    match core.cfg.recipe_files() {
        Ok(files) => files
            .into_iter()
            .map(|f| {
                let t = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
                (f, t)
            })
            .collect(),
        Err(e) => {
            tracing::warn!("watching recipes: {e}");
            Vec::new()
        }
    }
}

async fn watch_loop(core: Arc<Core>) {
    let mut last = stamps(&core);
    let mut last_recipes = recipe_stamps(&core);
    loop {
        core.clock.sleep(Duration::from_secs(1)).await;
        let now = stamps(&core);
        for (name, t) in &now {
            if last.get(name) != Some(t) {
                let c = core.clone();
                let n = name.clone();
                // A reload waits for the instance: off the executor.
                match smol::unblock(move || c.reload(&n)).await {
                    Ok(v) => tracing::info!(plugin = %name, "reloaded version {v} after a file change"),
                    Err(e) => tracing::warn!(plugin = %name, "not reloaded: {e}"),
                }
            }
        }
        last = now;
        let recipes_now = recipe_stamps(&core);
        if recipes_now != last_recipes {
            match core.reload_recipes().await {
                Ok(names) => tracing::info!("recipes reloaded after a file change: {}", names.join(", ")),
                Err(e) => tracing::warn!("recipes not reloaded, the previous ones keep running: {e}"),
            }
        }
        last_recipes = recipes_now;
    }
}

/// Loads every recipe file of the configuration, checked against the home as it is now (its
/// contacts, groups and plugin instances).
async fn load_recipes(node: &smol::lock::Mutex<Node>, cfg: &RunConfig) -> Result<Vec<meow_recipe::Recipe>> {
    let (contacts, groups) = {
        let node = node.lock().await;
        let contacts = node.contacts().iter().map(|c| c.name.clone()).collect();
        let groups = node.groups()?.into_iter().filter(|g| !g.left).map(|g| g.name).collect();
        (contacts, groups)
    };
    let check = meow_recipe::CheckContext {
        contacts: Some(contacts),
        groups: Some(groups),
        plugins: Some(cfg.plugins.iter().map(|p| p.name.clone()).collect()),
    };
    let mut loaded: Vec<meow_recipe::Recipe> = Vec::new();
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in cfg.recipe_files()? {
        let recipe = meow_recipe::Recipe::load_file(&file, &check)?;
        if recipe.uses_mqtt() && cfg.mqtt.is_none() {
            return Err(RuntimeError::NoMqtt { file });
        }
        if let Some(first) = files.insert(recipe.name.clone(), file.clone()) {
            return Err(RuntimeError::RecipeNameTaken {
                file,
                name: recipe.name,
                first,
            });
        }
        loaded.push(recipe);
    }
    Ok(loaded)
}

/// A running runtime.
pub struct Runtime {
    core: Arc<Core>,
    server: Option<meow_server::ServerHandle>,
    tasks: Vec<smol::Task<()>>,
    stop_rx: smol::channel::Receiver<()>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runtime({})", self.core.home.display())
    }
}

fn embedded_server(node: &mut Node, home: &Path, cfg: &RunConfig) -> Result<Option<meow_server::ServerHandle>> {
    if !cfg.server.enabled {
        return Ok(None);
    }
    let mut sc = meow_server::ServerConfig::new(home.join(&cfg.server.data), cfg.server.listen);
    sc.name = cfg
        .server
        .name
        .clone()
        .or_else(|| node.display_name().map(str::to_owned))
        .unwrap_or_else(|| "home".into());
    sc.operators = vec![node.broadcast_key().public()];
    sc.allow_broadcast = cfg.server.allow_broadcast;
    sc.listen_udp = cfg.server.udp;
    sc.links = cfg.server.link_addresses();
    sc.relay = cfg.server.relay.then(meow_server::relay::RelayConfig::default);
    for text in &cfg.server.peers {
        let card = meow_proto::ServerCard::from_text(text.trim()).map_err(meow_node::NodeError::from)?;
        sc.gossip.peers.push(card);
    }
    let s = meow_server::Server::start(sc)?;
    node.ensure_server(s.card())?;
    Ok(Some(s))
}

async fn start(b: RuntimeBuilder) -> Result<Runtime> {
    let RuntimeBuilder {
        home,
        mut node,
        config: cfg,
        engines,
        natives,
        watch,
        clock,
    } = b;
    control::ensure_not_running(&home)?;
    let server = embedded_server(&mut node, &home, &cfg)?;
    for text in &cfg.servers {
        let card = meow_proto::ServerCard::from_text(text).map_err(meow_node::NodeError::from)?;
        node.ensure_server(&card)?;
    }
    node.set_outbox_limit(cfg.limits.outbox);
    node.set_file_limit(cfg.limits.file_size());
    node.set_post_quantum_upgrades(cfg.conversations.post_quantum);
    node.record_events_from_now()?;
    // A daemon stopped between moving records into a compartment and rewriting the files (a
    // kill -9 after `meow hide`) left old copies in the journal: none survive a start.
    node.vault().scrub().map_err(meow_node::NodeError::from)?;
    let (signal_tx, signal_rx) = smol::channel::bounded(1);
    node.set_event_signal(signal_tx);
    let (plan_tx, plan_rx) = smol::channel::bounded(1);
    node.set_plan_signal(plan_tx);
    let (cmd_tx, cmd_rx) = smol::channel::bounded(cfg.limits.command_queue.max(1));
    let vault = node.vault();
    let contacts = crate::services::addressable(&node);
    for name in cfg.roles.owner.iter().chain(&cfg.roles.admins) {
        if !contacts.iter().any(|(c, _)| c == name) {
            tracing::warn!("roles: {name:?} is no contact of this home: nobody gets that role through it");
        }
    }
    let policies = crate::services::policies(&node);
    let (nickname, fingerprint) = (node.display_name().map(str::to_owned), node.user_public().fingerprint());
    let node = Arc::new(smol::lock::Mutex::new(node));
    let loaded = load_recipes(&node, &cfg).await?;
    let (heard_tx, heard_rx) = smol::channel::bounded(crate::mqtt::INCOMING);
    let mqtt = cfg
        .mqtt
        .as_ref()
        .map(|m| crate::mqtt::Mqtt::start(m, &cfg.base, mqtt_topics(&loaded), heard_tx).map(Arc::new))
        .transpose()?;
    let auto = Arc::new(crate::services::auto_budget(&cfg.limits, clock.clone()));
    let services = Arc::new(RuntimeServices::new(ServicesSetup {
        node: node.clone(),
        vault: vault.clone(),
        commands: cmd_tx,
        clock: clock.clone(),
        nickname,
        fingerprint,
        auto: auto.clone(),
        http: cfg.http.as_ref().map(|h| Arc::new(crate::http::HttpClient::new(h))),
        mqtt: mqtt.clone(),
    }));
    services.set_contacts(contacts);
    services.set_policies(policies);
    let (stop, stop_rx) = smol::channel::bounded(1);
    let mut accepts: BTreeMap<String, bool> = cfg
        .plugins
        .iter()
        .map(|p| (p.name.clone(), p.accept_automatic))
        .collect();
    accepts.extend(natives.iter().map(|n| (n.name.clone(), n.accept_automatic)));
    let core = Arc::new(Core {
        node,
        home: home.clone(),
        services,
        supervisors: Mutex::new(BTreeMap::new()),
        accepts_automatic: Mutex::new(accepts),
        instance_configs: cfg.plugins.clone(),
        engines,
        stop,
        vault,
        recipes: OnceLock::new(),
        subscribers: Mutex::new(Vec::new()),
        incoming: Mutex::new(Buckets::new(cfg.limits.incoming_per_second, cfg.limits.incoming_burst)),
        clock,
        auto,
        watchdog: Watchdog::start().map_err(RuntimeError::io("starting the watchdog thread"))?,
        server_address: server.as_ref().map(|s| s.local_addr().to_string()),
        server_links: server.as_ref().map(|s| s.links()).unwrap_or_default(),
        server_relay: server.as_ref().and_then(|s| s.relay()),
        mqtt,
        linking: smol::lock::Mutex::new(None),
        cfg: cfg.clone(),
    });
    let names: Vec<String> = loaded.iter().map(|r| r.name.clone()).collect();
    let recipes = Recipes::new(Arc::downgrade(&core), loaded);
    let _ = core.recipes.set(recipes.clone());
    for inst in &cfg.plugins {
        let sup = core.start_instance(inst)?;
        core.supervisors.lock().insert(inst.name.clone(), sup);
    }
    for n in &natives {
        let sup = core.start_native(n)?;
        core.supervisors.lock().insert(n.name.clone(), sup);
    }
    let listener = control::bind(&home)?;
    let mut tasks = vec![
        smol::spawn(fetch_loop(core.clone(), cfg.poll_wait(), plan_rx)),
        smol::spawn(dispatch_loop(core.clone(), signal_rx)),
        smol::spawn(command_loop(core.clone(), cmd_rx)),
        smol::spawn(heard_loop(Arc::downgrade(&core), recipes.clone(), heard_rx)),
    ];
    let c = core.clone();
    tasks.push(smol::spawn(control::serve(listener, move |req| {
        let c = c.clone();
        async move { c.answer(req).await }
    })));
    if watch || cfg.watch {
        tasks.push(smol::spawn(watch_loop(core.clone())));
    }
    if let Some(settings) = &cfg.direct {
        tasks.extend(crate::direct::start(core.node.clone(), settings, core.clock.clone())?);
    }
    recipes.start();
    if !names.is_empty() {
        tracing::info!("recipes: {}", names.join(", "));
    }
    Ok(Runtime {
        core,
        server,
        tasks,
        stop_rx,
    })
}

/// How long a shutdown waits for plugin threads, then for the last outbox flush.
const STOP_PLUGINS: Duration = Duration::from_secs(2);
const STOP_FLUSH: Duration = Duration::from_millis(1500);

impl Runtime {
    /// A builder (see [`RuntimeBuilder::new`]).
    pub fn builder(home: &Path, node: Node, config: RunConfig) -> RuntimeBuilder {
        RuntimeBuilder::new(home, node, config)
    }

    /// The home, shared with the runtime's tasks (hold its lock briefly).
    pub fn node(&self) -> &Arc<smol::lock::Mutex<Node>> {
        &self.core.node
    }

    /// The embedded server's card, if one runs.
    pub fn server_card(&self) -> Option<&meow_proto::ServerCard> {
        self.server.as_ref().map(|s| s.card())
    }

    /// The embedded server's address, if one runs.
    pub fn server_address(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().map(|s| s.local_addr())
    }

    /// Events as they are handed to the bots, and recipe steps as they finish.
    pub fn subscribe(&self) -> smol::channel::Receiver<RuntimeEvent> {
        let (tx, rx) = smol::channel::bounded(4096);
        self.core.subscribers.lock().push(tx);
        rx
    }

    /// Answers a control request in process (what the control socket does for other programs).
    pub async fn request(&self, request: Request) -> Answer {
        self.core.answer(request).await
    }

    /// The plugin instances and their state.
    pub fn instances(&self) -> Vec<InstanceView> {
        self.core.instances()
    }

    /// The loaded recipes.
    pub fn recipes(&self) -> Vec<RecipeView> {
        self.core.recipes()
    }

    /// Asks the runtime to stop ([`Runtime::run_until_stopped`] returns).
    pub fn request_stop(&self) {
        self.core.request_stop();
    }

    /// Waits for SIGINT, SIGTERM or a stop request, then shuts down.
    pub async fn run_until_stopped(self) -> Result<()> {
        use async_signal::{Signal, Signals};
        use futures_lite::StreamExt;
        let mut signals =
            Signals::new([Signal::Int, Signal::Term]).map_err(RuntimeError::io("installing signal handlers"))?;
        let stop_rx = self.stop_rx.clone();
        async {
            let _ = signals.next().await;
        }
        .or(async {
            let _ = stop_rx.recv().await;
        })
        .await;
        self.shutdown().await
    }

    /// Stops tasks and plugins, tries the outbox once more, closes the server. Bounded: plugin
    /// threads get 2 s, the last flush 1.5 s; whatever is not sent stays
    /// in the outbox for the next run.
    pub async fn shutdown(self) -> Result<()> {
        tracing::info!("stopping");
        for t in self.tasks {
            t.cancel().await;
        }
        let sups: Vec<Supervisor> = std::mem::take(&mut *self.core.supervisors.lock())
            .into_values()
            .collect();
        let stops: Vec<_> = sups
            .into_iter()
            .map(|s| smol::unblock(move || s.stop(STOP_PLUGINS)))
            .collect();
        for s in stops {
            s.await;
        }
        let flushed = async { Some(sync::flush_outbox(&self.core.node, false).await) }
            .or(async {
                smol::Timer::after(STOP_FLUSH).await;
                None
            })
            .await;
        match flushed {
            Some(Ok(r)) if !r.queued.is_empty() => tracing::info!(
                queued = r.queued.len(),
                "messages stay in the outbox until the next run"
            ),
            Some(Err(e)) => tracing::warn!("last outbox flush: {e}"),
            None => tracing::info!("the last outbox flush took too long: messages stay in the outbox"),
            _ => {}
        }
        if let Err(e) = std::fs::remove_file(control::socket_path(&self.core.home)) {
            tracing::debug!("removing the control socket: {e}");
        }
        if let Some(s) = self.server {
            smol::unblock(move || s.shutdown()).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs a request on a home held by no daemon (what a one-shot `meow` command does).
pub async fn handle_direct(node: &smol::lock::Mutex<Node>, request: Request) -> Result<Response> {
    crate::home::handle(node, None, request).await
}
