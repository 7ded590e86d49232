//! The WebAssembly plugin host: components of the `meow:bot` world (see `wit/`), run with
//! wasmtime.
//!
//! - One [`Store`] per instance, with a memory cap; an epoch deadline per call (a ticker thread
//!   advances the epoch every 10 ms), so a plugin that loops is stopped, not waited for.
//! - No guest waits inside WASI, but for the answer to its own `wasi:http` request: waiting there
//!   (a sleep, a poll with nothing ready) is the only way WASI blocks with the empty context
//!   below, and `wasi:io/poll` is replaced by a version that answers what is ready now and stops
//!   the instance instead of waiting (a plugin that wants to wait sets a meow timer). A call that
//!   has sent an HTTP request may wait, for what is left of its budget (module `http`). So calls
//!   stay synchronous, and the epoch deadline and the budget bound them all.
//! - After any trap the instance is unusable; the runtime makes a new one (instantiation from a
//!   prepared component takes tens of microseconds).
//! - Compiled components are cached on disk, keyed by the engine's compatibility hash and the
//!   plugin's SHA-256, so a restart does not recompile.
//! - WASI is linked with an empty context (no files, environment, clocks beyond WASI's, or
//!   sockets): a Rust guest imports it even when it does no I/O. `wasi:http` is linked too, and
//!   its requests go through the host's HTTP policy (module `http`). The guest's stdout and stderr
//!   go to the instance's log, a line at a time and rate-limited (module `output`); a trap's
//!   explanation quotes the last lines of stderr (a panic's or an exception's message).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use meow_plugin::{Event, Failure, Host, HostError, Instance, Level, Limits, Plugin};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

#[macro_use]
mod hosts;
mod http;
mod output;
mod unprovided;

/// The bindings of `meow:bot@0.1.x` (the guest exports `init` and `handle`).
mod v01 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "bot",
    });
}

/// The bindings of `meow:bot@0.2.x` (the guest exports `start` and `handle`).
mod v02 {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2",
        world: "bot",
    });
}

host_version!(v01, host_v01);
host_version!(v02, host_v02, reply_to);

/// How often the epoch advances.
const TICK: Duration = Duration::from_millis(10);

/// What a store holds for one instance.
struct State {
    host: Host,
    /// The guest exports `mqtt-handler`: it may subscribe to MQTT topics.
    hears_mqtt: bool,
    wasi: WasiCtx,
    http: http::HttpState,
    table: ResourceTable,
    limits: StoreLimits,
}

impl wasmtime_wasi_http::WasiHttpView for State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: &mut self.table,
            hooks: &mut self.http.hooks,
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
#[error("starting the WebAssembly engine: {0}")]
pub struct EngineError(String);

/// Runs WASM plugins.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<State>,
    cache: Option<PathBuf>,
    /// A program that compiles a component into a file: `program args… IN OUT` (see
    /// [`WasmEngine::compile_in_child`]).
    compiler: Option<Vec<std::ffi::OsString>>,
    prepared: Mutex<HashMap<String, InstancePre<State>>>,
    /// Held while compiling: one compile at a time (two instances of one plugin starting
    /// together compile it once; the peak memory of compiles does not add up).
    compiling: Mutex<()>,
}

/// The engine configuration: the same in a compiling child, so that its output loads here.
fn config() -> Config {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true).epoch_interruption(true);
    cfg
}

/// Compiles the component in file `input` into `output` (what a compiling child does, see
/// [`WasmEngine::compile_in_child`]); the memory the compiler used goes with the process.
pub fn compile_file(input: &Path, output: &Path) -> Result<(), EngineError> {
    let err = |e: &dyn std::fmt::Display| EngineError(e.to_string());
    let engine = Engine::new(&config()).map_err(|e| err(&e))?;
    let code = std::fs::read(input).map_err(|e| err(&format!("reading {}: {e}", input.display())))?;
    let compiled = engine.precompile_component(&code).map_err(|e| err(&e))?;
    write_whole(output, &compiled).map_err(|e| err(&format!("writing {}: {e}", output.display())))
}

/// Writes `bytes` to `path` through a temporary file renamed into place: a reader never sees
/// half a compiled component.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path))
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WasmEngine(cache: {:?})", self.cache)
    }
}

impl WasmEngine {
    /// A new engine; compiled components are cached in `cache` if given.
    pub fn new(cache: Option<PathBuf>) -> Result<Self, EngineError> {
        let engine = Engine::new(&config()).map_err(|e| EngineError(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        refuse_waiting(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        v01::Bot::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| EngineError(e.to_string()))?;
        v02::Bot::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| EngineError(e.to_string()))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("meow-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| EngineError(e.to_string()))?;
        if let Some(dir) = &cache {
            let _ = std::fs::create_dir_all(dir);
        }
        Ok(Self {
            engine,
            linker,
            cache,
            compiler: None,
            prepared: Mutex::new(HashMap::new()),
            compiling: Mutex::new(()),
        })
    }

    /// Compiles components in a short-lived child process, `program` followed by the input
    /// and output files, which must call [`compile_file`] (the `meow` binary runs itself). A
    /// compiler's peak memory (hundreds of MiB for a Python component) then leaves with the
    /// child instead of staying in the daemon's heap; the result is loaded from the cache
    /// (mapped, so only the code that runs takes memory). Needs a cache folder; if the child
    /// fails, the component is compiled here instead, so its error is the real one.
    pub fn compile_in_child(mut self, program: Vec<std::ffi::OsString>) -> Self {
        self.compiler = Some(program);
        self
    }

    /// The prefix of this engine's cache files: its compatibility hash.
    fn cache_prefix(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}-", h.finish())
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let prefix = self.cache_prefix();
        self.cache.as_ref().map(|d| d.join(format!("{prefix}{sha256}.cwasm")))
    }

    /// Keeps the cache within [`CACHE_MAX_BYTES`] and [`CACHE_MAX_FILES`]: files another
    /// engine version wrote and leftovers of interrupted compiles go first, then the entries
    /// used longest ago; the components this engine has loaded, and `keep`, stay. Called with
    /// the compile lock held, so no compile's files are in the way.
    fn evict(&self, keep: &str) {
        let Some(dir) = &self.cache else { return };
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let prefix = self.cache_prefix();
        let mut in_use: Vec<String> = self.prepared.lock().keys().cloned().collect();
        in_use.push(keep.to_owned());
        let mut kept = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            let ours = name.starts_with(&prefix) && name.ends_with(".cwasm");
            if !ours {
                let _ = std::fs::remove_file(e.path());
            } else if !in_use.iter().any(|sha| name.contains(sha.as_str())) {
                kept.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len(), e.path()));
            }
        }
        kept.sort();
        let mut bytes: u64 = kept.iter().map(|k| k.1).sum();
        let mut files = kept.len() + in_use.len();
        for (_, len, path) in kept {
            if bytes <= CACHE_MAX_BYTES && files <= CACHE_MAX_FILES {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(file = %path.display(), "evicted from the compiled plugin cache");
                bytes -= len;
                files -= 1;
            }
        }
    }

    /// Loads a compiled component from the cache.
    #[allow(unsafe_code)]
    fn cached(&self, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the file name) into the home's private cache folder, and
        // its name carries the SHA-256 of the source the runtime has just verified. wasmtime
        // still checks the header and refuses a file made by another engine configuration.
        unsafe { Component::deserialize_file(&self.engine, path) }.ok()
    }

    fn component(&self, plugin: &Plugin) -> Result<Component, Failure> {
        let path = self.cache_path(&plugin.sha256);
        if let Some(c) = path.as_deref().and_then(|p| self.cached(p)) {
            touch(path.as_deref());
            return Ok(c);
        }
        let _one_at_a_time = self.compiling.lock();
        // Another thread may have compiled it while this one waited.
        if let Some(c) = path.as_deref().and_then(|p| self.cached(p)) {
            return Ok(c);
        }
        let compiled = self.compile(plugin, path.as_deref());
        // No compile is in progress here (the lock is held): leftovers can go.
        self.evict(&plugin.sha256);
        compiled
    }

    /// Compiles `plugin` (in a child if so configured) and writes it to the cache at `path`.
    fn compile(&self, plugin: &Plugin, path: Option<&Path>) -> Result<Component, Failure> {
        if let (Some(program), Some(path)) = (&self.compiler, path) {
            match compile_child(program, plugin, path) {
                Ok(()) => {
                    if let Some(c) = self.cached(path) {
                        return Ok(c);
                    }
                    tracing::warn!(plugin = %plugin.name(), "the compiling child's output does not load: compiling here");
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name(), "compiling in a child process failed ({e}): compiling here")
                }
            }
        }
        let c = Component::new(&self.engine, &plugin.code)
            .map_err(|e| Failure::Broken(format!("not a valid meow:bot component: {e}")))?;
        if let (Some(path), Ok(bytes)) = (path, c.serialize())
            && let Err(e) = write_whole(path, &bytes)
        {
            tracing::debug!("could not write the compiled plugin cache: {e}");
        }
        Ok(c)
    }

    fn prepare(&self, plugin: &Plugin) -> Result<InstancePre<State>, Failure> {
        if let Some(p) = self.prepared.lock().get(&plugin.sha256).cloned() {
            return Ok(p);
        }
        let component = self.component(plugin)?;
        let pre = self.link(&component)?;
        self.prepared.lock().insert(plugin.sha256.clone(), pre.clone());
        Ok(pre)
    }

    /// Links a component; what it imports and this host does not provide is linked to stubs
    /// that fail when called (module `unprovided`).
    fn link(&self, component: &Component) -> Result<InstancePre<State>, Failure> {
        let broken = |e: wasmtime::Error| {
            Failure::Broken(format!(
                "cannot link against this host's {}: {e:#} (build it against a meow:bot world of wit/)",
                WIT_VERSIONS.join(" or ")
            ))
        };
        let pre = match self.linker.instantiate_pre(component) {
            Ok(pre) => pre,
            Err(_) => {
                let mut linker = self.linker.clone();
                unprovided::stub(&mut linker, component).map_err(broken)?;
                linker.instantiate_pre(component).map_err(broken)?
            }
        };
        if v01::BotPre::new(pre.clone()).is_err() && v02::BotPre::new(pre.clone()).is_err() {
            return Err(Failure::Broken(
                "exports neither `init` and `handle` (meow:bot 0.1) nor `start` and `handle` (meow:bot 0.2)".into(),
            ));
        }
        Ok(pre)
    }
}

/// The most bytes of compiled components the cache keeps beside those in use.
pub const CACHE_MAX_BYTES: u64 = 512 << 20;
/// The most compiled components the cache keeps.
pub const CACHE_MAX_FILES: usize = 64;

/// The WIT package this host implements (the 0.1 line; [`WIT_VERSIONS`] has every one).
pub const WIT_VERSION: &str = "meow:bot@0.1.4";
/// Every version of the WIT package this host links, side by side: a plugin built against any
/// `0.1.x` or `0.2.x` loads (what a later patch adds fails only when called).
pub const WIT_VERSIONS: &[&str] = &[WIT_VERSION, "meow:bot@0.2.1"];

/// A running guest, of either supported version of the world.
struct Guest {
    bot: Bot,
    /// Its `mqtt-handler.on-message`, if it exports one (world `mqtt-bot`).
    on_mqtt: Option<MqttHandler>,
}

/// The world's own exports, of either version.
enum Bot {
    V01(v01::Bot),
    V02(v02::Bot),
}

type MqttHandler = wasmtime::component::TypedFunc<(String, Vec<u8>), (Result<(), String>,)>;

/// The names of the `mqtt-handler` export in each supported version (a later patch of either is
/// found under them: wasmtime looks exports up by semver).
const MQTT_HANDLERS: [&str; 2] = ["meow:bot/mqtt-handler@0.1.4", "meow:bot/mqtt-handler@0.2.1"];

impl Guest {
    /// Instantiates a linked component as the version whose exports it has.
    fn instantiate(pre: InstancePre<State>, store: &mut Store<State>) -> wasmtime::Result<Self> {
        let instance = pre.instantiate(&mut *store)?;
        let bot = match v01::BotIndices::new(&pre) {
            Ok(i) => Bot::V01(i.load(&mut *store, &instance)?),
            Err(_) => Bot::V02(v02::BotIndices::new(&pre)?.load(&mut *store, &instance)?),
        };
        let on_mqtt = MQTT_HANDLERS.iter().find_map(|name| {
            let interface = instance.get_export_index(&mut *store, None, name)?;
            let func = instance.get_export_index(&mut *store, Some(&interface), "on-message")?;
            instance.get_typed_func(&mut *store, func).ok()
        });
        store.data_mut().hears_mqtt = on_mqtt.is_some();
        Ok(Self { bot, on_mqtt })
    }

    fn start(&self, store: &mut Store<State>, config: &str) -> wasmtime::Result<Result<(), String>> {
        match &self.bot {
            Bot::V01(b) => b.call_init(store, config),
            Bot::V02(b) => b.call_start(store, config),
        }
    }

    fn handle(&self, store: &mut Store<State>, event: &Event) -> wasmtime::Result<Result<(), String>> {
        if let Event::Mqtt { topic, payload } = event {
            return self.hear(store, topic, payload);
        }
        match &self.bot {
            Bot::V01(b) => match host_v01::wit_event(event) {
                Some(e) => b.call_handle(store, &e),
                None => Ok(Ok(())),
            },
            Bot::V02(b) => match host_v02::wit_event(event) {
                Some(e) => b.call_handle(store, &e),
                None => Ok(Ok(())),
            },
        }
    }

    /// Hands an MQTT message to the `mqtt-handler` export.
    fn hear(&self, store: &mut Store<State>, topic: &str, payload: &[u8]) -> wasmtime::Result<Result<(), String>> {
        let Some(f) = &self.on_mqtt else {
            return Ok(Err(
                "an MQTT message came, and this plugin exports no mqtt-handler".into()
            ));
        };
        let (r,) = f.call(&mut *store, (topic.to_owned(), payload.to_vec()))?;
        Ok(r)
    }
}

/// Runs `program IN OUT` on the plugin's code; `OUT` is `path`.
fn compile_child(program: &[std::ffi::OsString], plugin: &Plugin, path: &Path) -> Result<(), String> {
    let (exe, args) = program.split_first().ok_or("no compiler program")?;
    let input = path.with_extension("src");
    std::fs::write(&input, &plugin.code).map_err(|e| format!("writing {}: {e}", input.display()))?;
    let out = std::process::Command::new(exe)
        .args(args)
        .arg(&input)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output();
    let _ = std::fs::remove_file(&input);
    let out = out.map_err(|e| format!("starting {}: {e}", exe.to_string_lossy()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Marks a cache entry as used now (eviction goes by last use).
fn touch(path: Option<&Path>) {
    if let Some(f) = path.and_then(|p| std::fs::File::options().append(true).open(p).ok()) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

fn ticks(call_ms: u64) -> u64 {
    (call_ms / TICK.as_millis() as u64).max(1)
}

fn describe(e: &wasmtime::Error, limits: &Limits) -> String {
    if let Some(w) = e.downcast_ref::<WouldBlock>() {
        return w.to_string();
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => format!("exceeded its time budget of {} ms for one call", limits.call_ms),
        Some(Trap::OutOfFuel) => "ran out of fuel".to_owned(),
        Some(t) => format!("trapped: {t}"),
        None if format!("{e:?}").contains("growing memory") => {
            format!("exceeded its memory limit of {} MiB", limits.memory_bytes >> 20)
        }
        None => match e.downcast_ref::<unprovided::Unprovided>() {
            Some(u) => u.to_string(),
            None => format!("trapped: {e}"),
        },
    }
}

/// A running WASM instance.
pub struct WasmInstance {
    store: Store<State>,
    bot: Guest,
    limits: Limits,
    stdout: output::GuestOutput,
    stderr: output::GuestOutput,
}

impl std::fmt::Debug for WasmInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WasmInstance({})", self.store.data().host.instance())
    }
}

/// A guest tried to wait inside WASI.
#[derive(Debug, thiserror::Error)]
#[error(
    "tried to wait inside WASI (a sleep, or a poll with nothing ready): plugins may not block a call; set a meow timer instead"
)]
struct WouldBlock;

/// Replaces `wasi:io/poll`'s two waiting functions (`poll` and `pollable.block`) with versions
/// that answer at once: what is ready now, or the [`WouldBlock`] trap; in a call that has sent a
/// `wasi:http` request, they wait for what is left of its budget instead. The rest of WASI never
/// waits with an empty context (no files, sockets or stdin; output goes to the log).
fn refuse_waiting(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    use wasmtime_wasi::p2::bindings::io::poll::{Host, HostPollable};
    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap("poll", |mut cx, (list,): (Vec<Resource<DynPollable>>,)| {
        let state = cx.data_mut();
        let wait = state.http.may_wait();
        Ok((now_or_refuse(Host::poll(&mut state.table, list), wait)?,))
    })?;
    poll.func_wrap("[method]pollable.block", |mut cx, (p,): (Resource<DynPollable>,)| {
        let state = cx.data_mut();
        let wait = state.http.may_wait();
        now_or_refuse(HostPollable::block(&mut state.table, p), wait)
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The value of `f` if it is ready at its first poll, or within `wait` (a call waiting for its
/// HTTP answer, see module `http`); else the [`WouldBlock`] trap.
fn now_or_refuse<T>(f: impl Future<Output = wasmtime::Result<T>>, wait: Option<Duration>) -> wasmtime::Result<T> {
    let mut f = std::pin::pin!(f);
    let first = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| wasmtime_wasi::runtime::poll_noop(f.as_mut()));
    match (first, wait) {
        (Some(ready), _) => ready,
        (None, None) => Err(wasmtime::Error::new(WouldBlock)),
        (None, Some(wait)) => wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(wait, f).await })
            .unwrap_or_else(|_| Err(wasmtime::Error::new(WouldBlock))),
    }
}

impl WasmInstance {
    /// A call starts: a whole time budget, and no HTTP request of its own yet.
    fn new_call(&mut self) {
        self.store.set_epoch_deadline(ticks(self.limits.call_ms));
        self.store.data_mut().http.new_call();
    }

    fn outcome(&mut self, r: wasmtime::Result<Result<(), String>>) -> Result<(), Failure> {
        self.stdout.finish_line();
        self.stderr.finish_line();
        let said = self.stderr.take_last();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Error(e)),
            Err(e) => {
                let why = describe(&e, &self.limits);
                Err(Failure::Stopped(match said {
                    // What a guest prints as it panics or raises says more than the trap.
                    Some(line) => format!("{why} (its last words on stderr: {line})"),
                    None => why,
                }))
            }
        }
    }
}

impl Instance for WasmInstance {
    fn init(&mut self, config: &str) -> Result<(), Failure> {
        self.new_call();
        let r = self.bot.start(&mut self.store, config);
        self.outcome(r)
    }

    fn handle(&mut self, event: &Event) -> Result<(), Failure> {
        self.new_call();
        let r = self.bot.handle(&mut self.store, event);
        self.outcome(r)
    }
}

impl meow_plugin::Engine for WasmEngine {
    fn compiled(&self, plugin: &Plugin) -> bool {
        self.prepared.lock().contains_key(&plugin.sha256) || self.cache_path(&plugin.sha256).is_some_and(|p| p.exists())
    }

    fn instantiate(&self, plugin: &Plugin, host: Host, limits: Limits) -> Result<Box<dyn Instance>, Failure> {
        let pre = self.prepare(plugin)?;
        let (stdout, stderr) = (
            output::GuestOutput::stdout(host.clone()),
            output::GuestOutput::stderr(host.clone()),
        );
        let state = State {
            http: http::HttpState::new(host.clone(), limits.call_ms),
            host,
            hears_mqtt: false,
            wasi: WasiCtxBuilder::new()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .tables(16)
                .table_elements(200_000)
                .trap_on_grow_failure(true)
                .build(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(limits.call_ms));
        let bot = Guest::instantiate(pre, &mut store)
            .map_err(|e| Failure::Stopped(format!("cannot start: {}", describe(&e, &limits))))?;
        Ok(Box::new(WasmInstance {
            store,
            bot,
            limits,
            stdout,
            stderr,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_drops_other_versions_and_leftovers_then_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let engine = WasmEngine::new(Some(dir.path().to_owned())).unwrap();
        let prefix = engine.cache_prefix();
        std::fs::write(dir.path().join("0000000000000000-old.cwasm"), b"x").unwrap();
        std::fs::write(dir.path().join(format!("{prefix}cut.src")), b"x").unwrap();
        let start = std::time::SystemTime::now() - Duration::from_secs(10_000);
        for i in 0..CACHE_MAX_FILES + 5 {
            let path = dir.path().join(format!("{prefix}{i:03}.cwasm"));
            let f = std::fs::File::create(&path).unwrap();
            f.set_modified(start + Duration::from_secs(i as u64)).unwrap();
        }
        // The oldest is the one being compiled: it stays anyway.
        engine.evict("000");
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), CACHE_MAX_FILES, "{left:?}");
        assert!(
            left.iter().all(|n| n.starts_with(&prefix) && n.ends_with(".cwasm")),
            "{left:?}"
        );
        let kept = |i: usize| left.contains(&format!("{prefix}{i:03}.cwasm"));
        assert!(kept(0), "the entry in use stays");
        assert!((1..=5).all(|i| !kept(i)), "the five used longest ago go: {left:?}");
        assert!(kept(6) && kept(CACHE_MAX_FILES + 4));
    }
}
