//! Plugin instances on threads of their own, watched.
//!
//! Each instance has a worker thread that starts it, feeds it events from a bounded queue and,
//! when the instance is stopped (trap, time or memory limit), logs why and starts it again after
//! a backoff. A reload swaps in a new version only if it starts; otherwise the old one keeps
//! running.
//!
//! The engines stop what they can see (Lua's instruction hook, WASM's epoch deadline and call
//! timeout). The [`Watchdog`] stops the rest: a call that has not returned a grace period after
//! its budget is abandoned, whatever it is doing, and a new worker thread takes over the queue
//! with a fresh instance. The abandoned thread exits as soon as its call returns, if ever; the
//! runtime never waits for it, so a plugin cannot hang a reload or a shutdown.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use meow_plugin::{Engine, Event, Failure, Host, Instance, Limits, Plugin};

/// Events waiting for one instance at most; more are dropped with a warning.
pub const QUEUE: usize = 1024;
/// First and longest wait before a restart.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long past its budget a call may run before the watchdog abandons it.
pub const GRACE: Duration = Duration::from_millis(500);
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical section
/// here is a few assignments).
/// Makes instances of native (Rust) handlers.
pub type NativeFactory = Arc<dyn Fn(Host) -> Box<dyn Instance> + Send + Sync>;

/// What an instance runs.
#[derive(Clone)]
pub enum Source {
    /// A plugin bundle and its engine.
    Plugin {
        /// The plugin.
        plugin: Box<Plugin>,
        /// Its engine.
        engine: Arc<dyn Engine>,
    },
    /// A handler compiled into the program that embeds the runtime.
    Native(NativeFactory),
}

/// Everything needed to (re)start an instance.
#[derive(Clone)]
pub struct Spec {
    /// Instance name.
    pub name: String,
    /// What it runs.
    pub source: Source,
    /// Its host access.
    pub host: Host,
    /// Its limits.
    pub limits: Limits,
    /// Its configuration JSON.
    pub config: String,
    /// Called whenever the instance (re)starts or stops, to drop its timers.
    pub on_restart: Arc<dyn Fn(&str) + Send + Sync>,
}

impl Spec {
    fn describe(&self) -> String {
        match &self.source {
            Source::Plugin { plugin, .. } => format!("{}@{}", plugin.name(), plugin.manifest.version),
            Source::Native(_) => "native".into(),
        }
    }

    fn compiling(&self) -> bool {
        match &self.source {
            Source::Plugin { plugin, engine } => !engine.compiled(plugin),
            Source::Native(_) => false,
        }
    }

    fn instantiate(&self) -> Result<Box<dyn Instance>, Failure> {
        match &self.source {
            Source::Plugin { plugin, engine } => engine.instantiate(plugin, self.host.clone(), self.limits),
            Source::Native(f) => Ok(f(self.host.clone())),
        }
    }
}

/// How an instance is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Running now.
    pub running: bool,
    /// Restarts so far.
    pub restarts: u64,
    /// Events handled.
    pub handled: u64,
    /// Events dropped because its queue was full.
    pub dropped: u64,
    /// The last reason it was stopped.
    pub last_stop: Option<String>,
    /// Why it cannot run as it is, when it cannot: it is not started again until a new
    /// version is loaded (`meow plugin reload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// Its code is being compiled (the first start of a version of a WASM plugin).
    #[serde(default)]
    pub compiling: bool,
}

enum Msg {
    Event(Arc<Event>),
    Reload(Box<Plugin>, String, std::sync::mpsc::Sender<Result<(), String>>),
}

/// The state shared by an instance's handle, its worker threads and the watchdog.
struct Slot {
    name: String,
    queue: Mutex<VecDeque<Msg>>,
    ready: Condvar,
    spec: Mutex<Spec>,
    status: Mutex<Status>,
    /// The generation of the worker that owns the instance; older workers exit.
    generation: AtomicU64,
    /// The call in progress: its worker's generation, when it started, its budget.
    busy: Mutex<Option<(u64, Instant, Duration)>>,
    stopping: AtomicBool,
    /// The current worker has exited.
    exited: Mutex<bool>,
    exited_cv: Condvar,
    /// New versions taken while waiting to restart.
    reloads: AtomicU64,
}

impl Slot {
    fn current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation && !self.stopping.load(Ordering::Acquire)
    }

    fn set(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock());
    }

    /// The next message for the worker of `generation`, waiting up to `timeout`; `Err` when the
    /// worker must exit.
    fn next(&self, generation: u64, timeout: Option<Duration>) -> Result<Option<Msg>, ()> {
        let until = timeout.map(|t| Instant::now() + t);
        let mut q = self.queue.lock();
        loop {
            if !self.current(generation) {
                return Err(());
            }
            if let Some(m) = q.pop_front() {
                return Ok(Some(m));
            }
            match until {
                None => self.ready.wait(&mut q),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    self.ready.wait_for(&mut q, left);
                }
            }
        }
    }

    /// Runs one call of the worker of `generation` under the watchdog's eye.
    fn call<T>(&self, generation: u64, budget: Duration, f: impl FnOnce() -> T) -> T {
        *self.busy.lock() = Some((generation, Instant::now(), budget));
        let out = f();
        let mut busy = self.busy.lock();
        if busy.is_some_and(|(g, _, _)| g == generation) {
            *busy = None;
        }
        out
    }
}

/// A running instance's handle.
pub struct Supervisor {
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Supervisor({})", self.slot.name)
    }
}

fn spawn_worker(slot: &Arc<Slot>, generation: u64, backoff: Duration) -> std::io::Result<()> {
    *slot.exited.lock() = false;
    let s = slot.clone();
    std::thread::Builder::new()
        .name(format!("plugin-{}", slot.name))
        .spawn(move || {
            run(&s, generation, backoff);
            if s.generation.load(Ordering::Acquire) == generation {
                *s.exited.lock() = true;
                s.exited_cv.notify_all();
            }
        })
        .map(drop)
}

impl Supervisor {
    /// Starts the instance's worker and registers it with the watchdog.
    pub fn spawn(spec: Spec, watchdog: &Watchdog) -> std::io::Result<Supervisor> {
        let slot = Arc::new(Slot {
            name: spec.name.clone(),
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            spec: Mutex::new(spec),
            status: Mutex::new(Status::default()),
            generation: AtomicU64::new(1),
            busy: Mutex::new(None),
            stopping: AtomicBool::new(false),
            exited: Mutex::new(false),
            exited_cv: Condvar::new(),
            reloads: AtomicU64::new(0),
        });
        spawn_worker(&slot, 1, Duration::ZERO)?;
        watchdog.watch(&slot);
        Ok(Supervisor { slot })
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// `plugin@version` (or `native`).
    pub fn describe(&self) -> String {
        self.slot.spec.lock().describe()
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.slot.status.lock().clone()
    }

    /// Queues an event (dropped with a warning if the instance is far behind).
    pub fn deliver(&self, event: Arc<Event>) {
        let mut q = self.slot.queue.lock();
        if q.len() >= QUEUE {
            drop(q);
            self.slot.set(|s| s.dropped += 1);
            tracing::warn!(plugin = %self.slot.name, "plugin is {QUEUE} events behind: event dropped");
            return;
        }
        q.push_back(Msg::Event(event));
        drop(q);
        self.slot.ready.notify_all();
    }

    /// Replaces the plugin if the new version starts; waits for the answer (a hung instance is
    /// abandoned by the watchdog and the reload is then taken by its successor).
    pub fn reload(&self, plugin: Plugin, config: String) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.slot
            .queue
            .lock()
            .push_front(Msg::Reload(Box::new(plugin), config, tx));
        self.slot.ready.notify_all();
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the instance did not answer within 60 s".to_owned())?
    }

    /// Stops the instance: waits up to `wait` for its worker, then leaves it behind.
    pub fn stop(self, wait: Duration) {
        self.slot.stopping.store(true, Ordering::Release);
        self.slot.ready.notify_all();
        let mut exited = self.slot.exited.lock();
        self.slot.exited_cv.wait_while_for(&mut exited, |done| !*done, wait);
        if !*exited {
            tracing::warn!(plugin = %self.slot.name, "the instance did not stop within {} ms: left behind", wait.as_millis());
        }
        (self.slot.spec.lock().on_restart)(&self.slot.name);
    }
}

fn start(spec: &Spec, slot: &Slot, generation: u64) -> Result<Box<dyn Instance>, Failure> {
    (spec.on_restart)(&spec.name);
    let compiling = spec.compiling();
    if compiling {
        slot.status.lock().compiling = true;
        tracing::info!(plugin = %spec.name, "compiling {} (its first start)", spec.describe());
    }
    let made = spec.instantiate();
    if compiling {
        slot.status.lock().compiling = false;
    }
    let mut inst = made?;
    let budget = Duration::from_millis(spec.limits.call_ms);
    match slot.call(generation, budget, || inst.init(&spec.config)) {
        Ok(()) => {}
        Err(Failure::Error(e)) => return Err(Failure::Stopped(format!("init failed: {e}"))),
        Err(stopped) => return Err(stopped),
    }
    match slot.call(generation, budget, || inst.handle(&Event::Startup)) {
        Ok(()) | Err(Failure::Error(_)) => Ok(inst),
        Err(stopped) => Err(stopped),
    }
}

/// Waits `d` while answering reloads (events stay queued for the restarted instance); returns
/// false when the worker must exit.
fn pause(slot: &Slot, generation: u64, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return slot.current(generation);
        }
        let mut q = slot.queue.lock();
        if !slot.current(generation) {
            return false;
        }
        let reload = q
            .iter()
            .position(|m| matches!(m, Msg::Reload(..)))
            .and_then(|i| q.remove(i));
        if let Some(Msg::Reload(p, config, reply)) = reload {
            drop(q);
            // A new version of a crashing plugin is worth trying at once.
            let mut spec = slot.spec.lock();
            spec.source = match &spec.source {
                Source::Plugin { engine, .. } => Source::Plugin {
                    plugin: p,
                    engine: engine.clone(),
                },
                native => native.clone(),
            };
            spec.config = config;
            slot.reloads.fetch_add(1, Ordering::SeqCst);
            let _ = reply.send(Ok(()));
            return true;
        }
        slot.ready.wait_for(&mut q, left);
    }
}

/// Waits, answering reloads, until a new version replaces a plugin that cannot run as it is;
/// false when the worker must exit.
fn broken(slot: &Slot, generation: u64, reason: String) -> bool {
    tracing::error!(plugin = %slot.name, "plugin {} cannot run as it is: {reason}; not started again until a new version is loaded (meow plugin reload)", slot.name);
    slot.set(|s| {
        s.running = false;
        s.last_stop = Some(reason.clone());
        s.broken = Some(reason);
    });
    let seen = slot.reloads.load(Ordering::SeqCst);
    while slot.reloads.load(Ordering::SeqCst) == seen {
        if !pause(slot, generation, BACKOFF_MAX) {
            return false;
        }
    }
    slot.set(|s| s.broken = None);
    true
}

fn stopped(slot: &Slot, reason: String, backoff: Duration) {
    tracing::error!(plugin = %slot.name, "plugin {} was stopped: {reason}; restarting in {}s", slot.name, backoff.as_secs());
    slot.set(|s| {
        s.running = false;
        s.restarts += 1;
        s.last_stop = Some(reason);
    });
}

fn run(slot: &Arc<Slot>, generation: u64, first_backoff: Duration) {
    let mut backoff = BACKOFF_MIN;
    if !first_backoff.is_zero() && !pause(slot, generation, first_backoff) {
        return;
    }
    'restart: loop {
        let mut spec = slot.spec.lock().clone();
        let mut inst = match start(&spec, slot, generation) {
            Ok(i) => i,
            Err(f) => {
                if !slot.current(generation) {
                    return;
                }
                let reason = match f {
                    Failure::Stopped(r) => r,
                    Failure::Error(e) => format!("returned an error: {e}"),
                    Failure::Broken(r) => {
                        if !broken(slot, generation, r) {
                            return;
                        }
                        continue;
                    }
                };
                stopped(slot, reason, backoff);
                if !pause(slot, generation, backoff) {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        slot.set(|s| s.running = true);
        tracing::info!(plugin = %spec.name, "plugin {} ({}) started", spec.name, spec.describe());
        let started = Instant::now();
        let budget = Duration::from_millis(spec.limits.call_ms);
        loop {
            let Ok(Some(msg)) = slot.next(generation, None) else {
                break 'restart;
            };
            match msg {
                Msg::Event(e) => match slot.call(generation, budget, || inst.handle(&e)) {
                    _ if !slot.current(generation) => return,
                    Ok(()) => slot.set(|s| s.handled += 1),
                    Err(Failure::Error(err)) => {
                        slot.set(|s| s.handled += 1);
                        tracing::warn!(plugin = %spec.name, event = e.kind(), "plugin {} returned an error: {err}", spec.name);
                    }
                    // A running instance that fails is stopped; a fresh one may do better.
                    Err(Failure::Stopped(reason) | Failure::Broken(reason)) => {
                        if started.elapsed() > BACKOFF_MAX {
                            backoff = BACKOFF_MIN;
                        }
                        stopped(slot, reason, backoff);
                        if !pause(slot, generation, backoff) {
                            return;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue 'restart;
                    }
                },
                Msg::Reload(plugin, config, reply) => {
                    let mut new_spec = spec.clone();
                    if let Source::Plugin { engine, .. } = &spec.source {
                        new_spec.source = Source::Plugin {
                            plugin,
                            engine: engine.clone(),
                        };
                    }
                    new_spec.config = config;
                    match start(&new_spec, slot, generation) {
                        Ok(new) => {
                            inst = new;
                            *slot.spec.lock() = new_spec.clone();
                            spec = new_spec;
                            tracing::info!(plugin = %spec.name, "plugin reloaded ({})", spec.describe());
                            let _ = reply.send(Ok(()));
                        }
                        Err(f) => {
                            tracing::warn!(plugin = %spec.name, "new version {f}; keeping the running one");
                            let _ = reply.send(Err(format!("the new version {f}; the old one keeps running")));
                            // The failed attempt dropped the timers: start the old one afresh.
                            (spec.on_restart)(&spec.name);
                            let _ = slot.call(generation, budget, || inst.handle(&Event::Startup));
                        }
                    }
                }
            }
        }
    }
    slot.set(|s| s.running = false);
}

/// One thread that watches every instance's calls.
#[derive(Clone, Default)]
pub struct Watchdog {
    slots: Arc<Mutex<Vec<Weak<Slot>>>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watchdog({} instances)", self.slots.lock().len())
    }
}

impl Watchdog {
    /// Starts the watchdog thread; it ends when the last clone is dropped.
    pub fn start() -> std::io::Result<Watchdog> {
        let w = Watchdog::default();
        let weak = Arc::downgrade(&w.slots);
        std::thread::Builder::new()
            .name("meow-watchdog".into())
            .spawn(move || {
                while let Some(slots) = weak.upgrade() {
                    let live: Vec<Arc<Slot>> = {
                        let mut list = slots.lock();
                        list.retain(|s| s.strong_count() > 0);
                        list.iter().filter_map(Weak::upgrade).collect()
                    };
                    drop(slots);
                    for s in live {
                        check(&s);
                    }
                    std::thread::sleep(WATCH_EVERY);
                }
            })?;
        Ok(w)
    }

    fn watch(&self, slot: &Arc<Slot>) {
        self.slots.lock().push(Arc::downgrade(slot));
    }
}

/// Abandons the call in progress of `slot` if it has run too long.
fn check(slot: &Arc<Slot>) {
    let overdue = match *slot.busy.lock() {
        Some((generation, since, budget)) if since.elapsed() > budget + GRACE => Some((generation, budget)),
        _ => None,
    };
    let Some((generation, budget)) = overdue else { return };
    if slot
        .generation
        .compare_exchange(generation, generation + 1, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    *slot.busy.lock() = None;
    let reason = format!(
        "a call did not return within {} ms (its budget is {} ms): abandoned",
        (budget + GRACE).as_millis(),
        budget.as_millis()
    );
    stopped(slot, reason, BACKOFF_MIN);
    if slot.stopping.load(Ordering::Acquire) {
        *slot.exited.lock() = true;
        slot.exited_cv.notify_all();
        return;
    }
    if let Err(e) = spawn_worker(slot, generation + 1, BACKOFF_MIN) {
        tracing::error!(plugin = %slot.name, "cannot start a new worker thread: {e}");
    }
}
