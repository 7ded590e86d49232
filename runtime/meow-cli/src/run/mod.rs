//! `meow run`: the daemon. It opens the home, starts the embedded server if configured, keeps
//! polling for mail, hands events to plugin instances (and recipes), executes what they ask, and
//! answers the other `meow` commands over the control socket. SIGINT/SIGTERM stop it cleanly:
//! nothing is acknowledged at a server before it is stored, so stopping at any moment loses
//! nothing.

pub mod config;
pub mod control;
pub mod recipes;
pub mod services;
pub mod supervisor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_lite::FutureExt;
use meow_node::sync;
use meow_node::{Node, NodeEvent, Origin};
use meow_plugin::{BroadcastEvent, Engine, Event, Host, Limits, MessageEvent, Plugin};
use meow_proto::ContentType;
use smol::lock::Mutex;

use self::config::{InstanceConfig, RunConfig};
use self::services::{Command, RuntimeServices};
use self::supervisor::{Spec, Supervisor};
use crate::cmd_home::Reply;

/// The engines, created when first needed.
#[derive(Default)]
struct Engines {
    wasm: std::sync::Mutex<Option<Arc<meow_wasm::WasmEngine>>>,
    cache: PathBuf,
}

impl Engines {
    fn get(&self, kind: meow_plugin::Kind) -> anyhow::Result<Arc<dyn Engine>> {
        match kind {
            meow_plugin::Kind::Lua => Ok(Arc::new(meow_lua::LuaEngine)),
            meow_plugin::Kind::Wasm => {
                let mut w = self.wasm.lock().map_err(|_| anyhow::anyhow!("engine lock"))?;
                if w.is_none() {
                    *w = Some(Arc::new(meow_wasm::WasmEngine::new(Some(self.cache.clone()))?));
                }
                Ok(w.clone()
                    .map(|e| e as Arc<dyn Engine>)
                    .ok_or_else(|| anyhow::anyhow!("no engine"))?)
            }
        }
    }
}

/// The running daemon, shared by its tasks.
#[allow(missing_debug_implementations)]
pub struct Daemon {
    /// The home.
    pub node: Arc<Mutex<Node>>,
    services: Arc<RuntimeServices>,
    supervisors: std::sync::Mutex<BTreeMap<String, Supervisor>>,
    instance_configs: Vec<InstanceConfig>,
    cfg: RunConfig,
    engines: Engines,
    stop: smol::channel::Sender<()>,
    vault: Arc<meow_store::vault::Vault>,
    /// The recipes.
    pub recipes: std::sync::OnceLock<Arc<recipes::Recipes>>,
    /// Observers of node events (the demo's display).
    pub listeners: std::sync::Mutex<Vec<smol::channel::Sender<NodeEvent>>>,
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
                let text = matches!(item.content_type, ContentType::TEXT | ContentType::JSON)
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
                }))
            }
        },
        NodeEvent::ContactAdded { name, via_public_card } => Some(Event::ContactAdded {
            name: name.clone(),
            via_directory: *via_public_card,
        }),
        _ => None,
    }
}

impl Daemon {
    fn limits(cfg: &InstanceConfig) -> Limits {
        let d = Limits::default();
        Limits {
            memory_bytes: cfg.limits.memory_mib.map_or(d.memory_bytes, |m| m << 20),
            call_ms: cfg.limits.call_ms.unwrap_or(d.call_ms),
            ..d
        }
    }

    fn load_plugin(&self, inst: &InstanceConfig) -> anyhow::Result<Plugin> {
        let path = self.cfg.plugin_path(&inst.plugin)?;
        Plugin::load(&path).with_context(|| format!("instance {}", inst.name))
    }

    fn start_instance(&self, inst: &InstanceConfig) -> anyhow::Result<Supervisor> {
        let plugin = self.load_plugin(inst)?;
        let config = plugin.configure(&inst.config)?;
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
        let services = self.services.clone();
        let spec = Spec {
            name: inst.name.clone(),
            engine: self.engines.get(plugin.manifest.kind)?,
            host: Host::new(&inst.name, granted, self.services.clone()),
            limits: Self::limits(inst),
            config,
            plugin,
            on_restart: Arc::new(move |name| services.cancel_timers_of(name)),
        };
        Ok(Supervisor::spawn(spec)?)
    }

    /// Reloads an instance's plugin from disk; rolls back if the new version fails to start.
    pub fn reload(&self, name: &str) -> anyhow::Result<String> {
        let inst = self
            .instance_configs
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| anyhow::anyhow!("no plugin instance {name:?} (see `meow plugin list`)"))?;
        let plugin = self.load_plugin(inst)?;
        let config = plugin.configure(&inst.config)?;
        let version = plugin.manifest.version.clone();
        let mut sups = self.supervisors.lock().map_err(|_| anyhow::anyhow!("lock"))?;
        let sup = sups
            .get_mut(name)
            .ok_or_else(|| anyhow::anyhow!("instance {name} is not running"))?;
        sup.reload(plugin, config).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        Ok(version)
    }

    /// Instances and their state.
    pub fn instances(&self) -> Vec<(String, String, supervisor::Status)> {
        self.supervisors
            .lock()
            .map(|s| {
                s.values()
                    .map(|s| (s.name().to_owned(), s.describe(), s.status()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The home's vault (for the recipe and plugin stores).
    pub fn vault(&self) -> Arc<meow_store::vault::Vault> {
        self.vault.clone()
    }

    /// Reads the recipe files again and swaps them in; on any error the loaded recipes stay.
    /// Returns the names now loaded.
    pub async fn reload_recipes(&self) -> anyhow::Result<Vec<String>> {
        let recipes = self.recipes.get().context("the recipes are not started yet")?;
        let loaded = load_recipes(&self.node, &self.cfg).await?;
        let names = loaded.iter().map(|r| r.name.clone()).collect();
        recipes.replace(loaded);
        Ok(names)
    }

    /// Hands an event to one plugin instance; false if there is no such instance.
    pub fn deliver_to(&self, instance: &str, event: Event) -> bool {
        let sups = self.supervisors.lock();
        match sups.as_ref().ok().and_then(|s| s.get(instance)) {
            Some(s) => {
                s.deliver(Arc::new(event));
                true
            }
            None => false,
        }
    }

    /// Hands an event to every instance and listener.
    pub async fn dispatch(&self, e: NodeEvent) {
        if let NodeEvent::Message(item) = &e
            && item.contact != 0
        {
            self.services.remember(&item.message.to_hex(), &item.from);
        }
        if let NodeEvent::ContactAdded { .. } = e {
            self.refresh_contacts().await;
        }
        if let Some(pe) = plugin_event(&e) {
            let pe = Arc::new(pe);
            if let Ok(sups) = self.supervisors.lock() {
                for s in sups.values() {
                    s.deliver(pe.clone());
                }
            }
        }
        if let Some(r) = self.recipes.get() {
            r.on_event(&e);
        }
        let listeners: Vec<_> = self.listeners.lock().map(|l| l.clone()).unwrap_or_default();
        for l in listeners {
            let _ = l.try_send(e.clone());
        }
    }

    async fn refresh_contacts(&self) {
        let names = self
            .node
            .lock()
            .await
            .contacts()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        self.services.set_contacts(names);
    }

    /// Asks the daemon to stop.
    pub fn request_stop(&self) {
        let _ = self.stop.try_send(());
    }

    async fn execute(&self, cmd: Command) {
        match cmd {
            Command::Send {
                instance,
                to,
                content_type,
                body,
            } => {
                let queued = self.node.lock().await.queue_message(&to, content_type, body);
                match queued {
                    Ok(item) => match sync::deliver(&self.node, item).await {
                        Ok(sync::Delivery::Delivered { .. }) => {
                            tracing::debug!(plugin = %instance, %to, "message delivered")
                        }
                        Ok(sync::Delivery::Queued { reason }) => {
                            tracing::warn!(plugin = %instance, %to, "message queued: {reason}")
                        }
                        Err(e) => tracing::error!(plugin = %instance, %to, "message could not be queued: {e}"),
                    },
                    Err(e) => tracing::warn!(plugin = %instance, %to, "cannot send: {e}"),
                }
            }
            Command::GroupSend { instance, group, text } => match groups_send(self, &group, &text).await {
                Ok(n) => tracing::debug!(plugin = %instance, %group, "group message sent to {n} members"),
                Err(e) => tracing::warn!(plugin = %instance, %group, "group send failed: {e:#}"),
            },
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
            Command::Timer { instance, id, name } => {
                let sups = self.supervisors.lock();
                if let Ok(sups) = sups
                    && let Some(s) = sups.get(&instance)
                {
                    s.deliver(Arc::new(Event::Timer { id, name }));
                }
            }
        }
    }
}

/// Polls servers and dispatches what arrives, until the task is dropped.
async fn fetch_loop(d: Arc<Daemon>, wait: Duration) {
    let mut failures = 0u32;
    loop {
        // Every round yields, even if no network call had to wait.
        smol::future::yield_now().await;
        if let Err(e) = sync::flush_outbox(&d.node, true).await {
            tracing::error!("outbox: {e}");
        }
        match sync::fetch(&d.node, wait).await {
            Ok(report) => {
                for (server, reason) in &report.unreachable {
                    tracing::warn!(%server, "cannot reach server: {reason}");
                }
                let had_trouble = !report.unreachable.is_empty();
                for e in report.events {
                    d.dispatch(e).await;
                }
                if had_trouble {
                    failures += 1;
                    smol::Timer::after(Duration::from_secs(1 << failures.min(5))).await;
                } else {
                    failures = 0;
                }
            }
            Err(e) => {
                tracing::error!("fetching mail: {e}");
                smol::Timer::after(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Plugin files' modification times, for `watch`.
fn stamps(d: &Daemon) -> BTreeMap<String, std::time::SystemTime> {
    d.instance_configs
        .iter()
        .filter_map(|i| {
            let dir = d.cfg.plugin_path(&i.plugin).ok()?;
            let (m, dir, file) = meow_plugin::Manifest::read(&dir).ok()?;
            let t1 = std::fs::metadata(file).and_then(|m| m.modified()).ok()?;
            let t2 = std::fs::metadata(dir.join(&m.entry)).and_then(|m| m.modified()).ok()?;
            Some((i.name.clone(), t1.max(t2)))
        })
        .collect()
}

/// The recipe files and their modification times (a file added or removed changes it too).
fn recipe_stamps(d: &Daemon) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    let files = d.cfg.recipe_files().unwrap_or_default();
    files
        .into_iter()
        .map(|f| {
            let t = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
            (f, t)
        })
        .collect()
}

async fn watch_loop(d: Arc<Daemon>) {
    let mut last = stamps(&d);
    let mut last_recipes = recipe_stamps(&d);
    loop {
        smol::Timer::after(Duration::from_secs(1)).await;
        let now = stamps(&d);
        for (name, t) in &now {
            if last.get(name) != Some(t) {
                match d.reload(name) {
                    Ok(v) => tracing::info!(plugin = %name, "reloaded version {v} after a file change"),
                    Err(e) => tracing::warn!(plugin = %name, "not reloaded: {e:#}"),
                }
            }
        }
        last = now;
        let recipes_now = recipe_stamps(&d);
        if recipes_now != last_recipes {
            match d.reload_recipes().await {
                Ok(names) => tracing::info!("recipes reloaded after a file change: {}", names.join(", ")),
                Err(e) => tracing::warn!("recipes not reloaded, the previous ones keep running: {e:#}"),
            }
        }
        last_recipes = recipes_now;
    }
}

/// Loads every recipe file of the configuration, checked against the home as it is now (its
/// contacts, groups and plugin instances).
async fn load_recipes(node: &Mutex<Node>, cfg: &RunConfig) -> anyhow::Result<Vec<meow_recipe::Recipe>> {
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
        if let Some(first) = files.insert(recipe.name.clone(), file.clone()) {
            anyhow::bail!(crate::cmd_recipe::name_taken(&file, &recipe.name, &first));
        }
        loaded.push(recipe);
    }
    Ok(loaded)
}

/// What the caller of [`start`] gets back.
pub struct Running {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// The embedded server, if any.
    pub server: Option<meow_server::ServerHandle>,
    tasks: Vec<smol::Task<()>>,
    stop_rx: smol::channel::Receiver<()>,
}

/// Starts everything; returns once plugins are launched.
pub async fn start(home: &Path, node: Node, cfg: RunConfig, watch: bool) -> anyhow::Result<Running> {
    let mut node = node;
    let server = match cfg.server.enabled {
        false => None,
        true => {
            let mut sc = meow_server::ServerConfig::new(home.join(&cfg.server.data), cfg.server.listen);
            sc.name = cfg
                .server
                .name
                .clone()
                .or_else(|| node.display_name().map(str::to_owned))
                .unwrap_or_else(|| "home".into());
            sc.operators = vec![node.broadcast_key().public()];
            sc.allow_broadcast = cfg.server.allow_broadcast;
            let s = meow_server::Server::start(sc).context("starting the embedded server")?;
            node.ensure_server(s.card())?;
            Some(s)
        }
    };
    for text in &cfg.servers {
        let card = meow_proto::ServerCard::from_text(text).context("servers: in meow.yaml")?;
        node.ensure_server(&card)?;
    }
    let (cmd_tx, cmd_rx) = smol::channel::unbounded();
    let vault = node.vault();
    let contacts: Vec<String> = node.contacts().iter().map(|c| c.name.clone()).collect();
    let (nickname, fingerprint) = (node.display_name().map(str::to_owned), node.user_public().fingerprint());
    let node = Arc::new(Mutex::new(node));
    let services = Arc::new(RuntimeServices::new(
        node.clone(),
        vault.clone(),
        cmd_tx,
        nickname,
        fingerprint,
    ));
    services.set_contacts(contacts);
    let (stop, stop_rx) = smol::channel::bounded(1);
    let loaded = load_recipes(&node, &cfg).await?;
    let daemon = Arc::new(Daemon {
        node,
        services,
        supervisors: std::sync::Mutex::new(BTreeMap::new()),
        instance_configs: cfg.plugins.clone(),
        engines: Engines {
            wasm: std::sync::Mutex::new(None),
            cache: home.join("cache").join("wasm"),
        },
        cfg: cfg.clone(),
        stop,
        vault,
        recipes: std::sync::OnceLock::new(),
        listeners: std::sync::Mutex::new(Vec::new()),
    });
    let names: Vec<String> = loaded.iter().map(|r| r.name.clone()).collect();
    let recipes = recipes::Recipes::new(Arc::downgrade(&daemon), loaded);
    let _ = daemon.recipes.set(recipes.clone());
    for inst in &cfg.plugins {
        let sup = daemon
            .start_instance(inst)
            .with_context(|| format!("plugin instance {}", inst.name))?;
        daemon
            .supervisors
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .insert(inst.name.clone(), sup);
    }
    let wait = crate::util::parse_duration(&cfg.poll_wait).context("poll_wait in meow.yaml")?;
    let mut tasks = vec![smol::spawn(fetch_loop(daemon.clone(), wait))];
    let d = daemon.clone();
    tasks.push(smol::spawn(async move {
        while let Ok(cmd) = cmd_rx.recv().await {
            let d = d.clone();
            smol::spawn(async move { d.execute(cmd).await }).detach();
        }
    }));
    let listener = control::bind(home)?;
    let d = daemon.clone();
    tasks.push(smol::spawn(control::serve(listener, move |req| {
        let d = d.clone();
        async move { handle_control(&d, req).await }
    })));
    if watch || cfg.watch {
        tasks.push(smol::spawn(watch_loop(daemon.clone())));
    }
    recipes.start();
    if !names.is_empty() {
        tracing::info!("recipes: {}", names.join(", "));
    }
    Ok(Running {
        daemon,
        server,
        tasks,
        stop_rx,
    })
}

impl Running {
    /// Waits for SIGINT, SIGTERM or a stop request, then shuts down cleanly.
    pub async fn wait_and_stop(self, home: &Path) -> anyhow::Result<()> {
        use async_signal::{Signal, Signals};
        use futures_lite::StreamExt;
        let mut signals = Signals::new([Signal::Int, Signal::Term]).context("installing signal handlers")?;
        let stop_rx = self.stop_rx.clone();
        async {
            let _ = signals.next().await;
        }
        .or(async {
            let _ = stop_rx.recv().await;
        })
        .await;
        self.shutdown(home).await
    }

    /// Stops tasks and plugins, tries the outbox once more, closes the server.
    pub async fn shutdown(self, home: &Path) -> anyhow::Result<()> {
        tracing::info!("stopping");
        for t in self.tasks {
            t.cancel().await;
        }
        let sups: Vec<Supervisor> = self
            .daemon
            .supervisors
            .lock()
            .map(|mut s| std::mem::take(&mut *s).into_values().collect())
            .unwrap_or_default();
        for s in sups {
            smol::unblock(move || s.stop()).await;
        }
        let flushed = sync::flush_outbox(&self.daemon.node, false)
            .or(async {
                smol::Timer::after(Duration::from_secs(3)).await;
                Ok(sync::FlushReport::default())
            })
            .await;
        if let Ok(r) = flushed
            && !r.queued.is_empty()
        {
            tracing::info!(
                queued = r.queued.len(),
                "messages stay in the outbox until the next run"
            );
        }
        let _ = std::fs::remove_file(control::socket_path(home));
        if let Some(s) = self.server {
            smol::unblock(move || s.shutdown()).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs a command from the control socket against the daemon's node.
async fn handle_control(d: &Arc<Daemon>, req: control::Request) -> Reply {
    use clap::Parser;
    let fail = |e: anyhow::Error| Reply {
        error: Some(crate::util::one_line(&e)),
        code: 1,
        ..Reply::default()
    };
    let cli = match crate::cli::Cli::try_parse_from(&req.argv) {
        Ok(c) => c,
        Err(e) => return fail(anyhow::anyhow!("{}", e.to_string().lines().next().unwrap_or(""))),
    };
    let result = crate::dispatch_home(&d.node, cli.command, req.data, Some(d)).await;
    match result {
        Ok(r) => {
            d.refresh_contacts().await;
            r
        }
        Err(e) => fail(e),
    }
}

/// Sends text to every member of a group (groups: see the node's group module).
pub async fn groups_send(d: &Daemon, group: &str, text: &str) -> anyhow::Result<usize> {
    let report = sync::group_send(&d.node, group, meow_proto::ContentType::TEXT, text.as_bytes().to_vec()).await?;
    Ok(report.len())
}

/// Publishes (or refreshes) this home's directory entry.
pub async fn directory_publish(d: &Daemon, description: &str, tags: &[String]) -> anyhow::Result<()> {
    sync::directory_publish(&d.node, description, tags).await?;
    Ok(())
}
