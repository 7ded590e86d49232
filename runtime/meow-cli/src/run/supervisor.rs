//! One thread per plugin instance: it starts the instance, feeds it events, and when the
//! instance is stopped (trap, time or memory limit) logs why and starts it again after a backoff.
//! A reload swaps in a new version only if it starts; otherwise the old one keeps running.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meow_plugin::{Engine, Event, Failure, Host, Instance, Limits, Plugin};

/// Events waiting for one instance at most; more are dropped with a warning.
const QUEUE: usize = 1024;
/// First and longest wait before a restart.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

enum Msg {
    Event(Arc<Event>),
    Reload(Box<Plugin>, String, std::sync::mpsc::Sender<Result<(), String>>),
    Stop,
}

/// Everything needed to (re)start an instance.
pub struct Spec {
    /// Instance name.
    pub name: String,
    /// The plugin.
    pub plugin: Plugin,
    /// Its engine.
    pub engine: Arc<dyn Engine>,
    /// Its host access.
    pub host: Host,
    /// Its limits.
    pub limits: Limits,
    /// Its configuration JSON.
    pub config: String,
    /// Called whenever the instance (re)starts or stops, to drop its timers.
    pub on_restart: Arc<dyn Fn(&str) + Send + Sync>,
}

/// A running instance's handle.
pub struct Supervisor {
    name: String,
    plugin: String,
    version: String,
    tx: SyncSender<Msg>,
    thread: Option<JoinHandle<()>>,
    state: Arc<std::sync::Mutex<Status>>,
}

/// How an instance is doing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// Running now.
    pub running: bool,
    /// Restarts so far.
    pub restarts: u64,
    /// Events handled.
    pub handled: u64,
    /// The last reason it was stopped.
    pub last_stop: Option<String>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Supervisor({})", self.name)
    }
}

fn start(spec: &Spec) -> Result<Box<dyn Instance>, Failure> {
    (spec.on_restart)(&spec.name);
    let mut inst = spec.engine.instantiate(&spec.plugin, spec.host.clone(), spec.limits)?;
    match inst.init(&spec.config) {
        Ok(()) => {}
        Err(Failure::Error(e)) => return Err(Failure::Stopped(format!("init failed: {e}"))),
        Err(stopped) => return Err(stopped),
    }
    match inst.handle(&Event::Startup) {
        Ok(()) | Err(Failure::Error(_)) => Ok(inst),
        Err(stopped) => Err(stopped),
    }
}

impl Supervisor {
    /// Starts the instance's thread.
    pub fn spawn(spec: Spec) -> std::io::Result<Supervisor> {
        let (tx, rx) = sync_channel(QUEUE);
        let state: Arc<std::sync::Mutex<Status>> = Arc::default();
        let (name, plugin, version) = (
            spec.name.clone(),
            spec.plugin.name().to_owned(),
            spec.plugin.manifest.version.clone(),
        );
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name(format!("plugin-{name}"))
            .spawn(move || run(spec, rx, st))?;
        Ok(Supervisor {
            name,
            plugin,
            version,
            tx,
            thread: Some(thread),
            state,
        })
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `plugin@version`.
    pub fn describe(&self) -> String {
        format!("{}@{}", self.plugin, self.version)
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Queues an event (dropped with a warning if the instance is far behind).
    pub fn deliver(&self, event: Arc<Event>) {
        match self.tx.try_send(Msg::Event(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(plugin = %self.name, "plugin is {QUEUE} events behind: event dropped")
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Replaces the plugin if the new version starts; waits for the answer.
    pub fn reload(&mut self, plugin: Plugin, config: String) -> Result<(), String> {
        let version = plugin.manifest.version.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Reload(Box::new(plugin), config, tx))
            .map_err(|_| "the instance is not running".to_owned())?;
        let r = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the instance did not answer".to_owned())?;
        if r.is_ok() {
            self.version = version;
        }
        r
    }

    /// Stops the instance and waits for its thread.
    pub fn stop(mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set(state: &std::sync::Mutex<Status>, f: impl FnOnce(&mut Status)) {
    if let Ok(mut s) = state.lock() {
        f(&mut s);
    }
}

/// Waits `d` while still answering Stop and Reload; returns false on Stop.
fn pause(spec: &mut Spec, rx: &Receiver<Msg>, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) | Ok(Msg::Stop) => return false,
            Ok(Msg::Event(_)) => {} // the instance is down: the event is not delivered
            Ok(Msg::Reload(p, config, reply)) => {
                // A new version of a crashing plugin is worth trying at once.
                spec.plugin = *p;
                spec.config = config;
                let _ = reply.send(Ok(()));
                return true;
            }
        }
    }
}

fn run(mut spec: Spec, rx: Receiver<Msg>, state: Arc<std::sync::Mutex<Status>>) {
    let mut backoff = BACKOFF_MIN;
    'restart: loop {
        let mut inst = match start(&spec) {
            Ok(i) => i,
            Err(f) => {
                tracing::error!(plugin = %spec.name, "plugin {} {f}; restarting in {}s", spec.name, backoff.as_secs());
                set(&state, |s| {
                    s.running = false;
                    s.restarts += 1;
                    s.last_stop = Some(f.to_string());
                });
                if !pause(&mut spec, &rx, backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        set(&state, |s| s.running = true);
        tracing::info!(plugin = %spec.name, "plugin {} ({}) started", spec.name, spec.plugin.name());
        let started = Instant::now();
        loop {
            let Ok(msg) = rx.recv() else { break 'restart };
            match msg {
                Msg::Stop => break 'restart,
                Msg::Event(e) => match inst.handle(&e) {
                    Ok(()) => set(&state, |s| s.handled += 1),
                    Err(Failure::Error(err)) => {
                        tracing::warn!(plugin = %spec.name, event = e.kind(), "plugin {} returned an error: {err}", spec.name);
                    }
                    Err(Failure::Stopped(reason)) => {
                        tracing::error!(
                            plugin = %spec.name,
                            event = e.kind(),
                            "plugin {} was stopped: {reason}; restarting in {}s",
                            spec.name,
                            backoff.as_secs()
                        );
                        set(&state, |s| {
                            s.running = false;
                            s.restarts += 1;
                            s.last_stop = Some(reason);
                        });
                        if started.elapsed() > BACKOFF_MAX {
                            backoff = BACKOFF_MIN;
                        }
                        if !pause(&mut spec, &rx, backoff) {
                            break 'restart;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue 'restart;
                    }
                },
                Msg::Reload(plugin, config, reply) => {
                    let old = std::mem::replace(&mut spec.plugin, *plugin);
                    let old_config = std::mem::replace(&mut spec.config, config);
                    match start(&spec) {
                        Ok(new) => {
                            inst = new;
                            tracing::info!(plugin = %spec.name, version = %spec.plugin.manifest.version, "plugin reloaded");
                            let _ = reply.send(Ok(()));
                        }
                        Err(f) => {
                            spec.plugin = old;
                            spec.config = old_config;
                            tracing::warn!(plugin = %spec.name, "new version {f}; keeping the running one");
                            let _ = reply.send(Err(format!("the new version {f}; the old one keeps running")));
                            // The failed attempt dropped the timers: start the old one afresh.
                            (spec.on_restart)(&spec.name);
                            let _ = inst.handle(&Event::Startup);
                        }
                    }
                }
            }
        }
    }
    (spec.on_restart)(&spec.name);
    set(&state, |s| s.running = false);
}
