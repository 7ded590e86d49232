//! The WebAssembly plugin host: components of the `meow:bot` world (see `wit/`), run with
//! wasmtime.
//!
//! - One [`Store`] per instance, with a memory cap; an epoch deadline per call (a ticker thread
//!   advances the epoch every 10 ms), so a plugin that loops is stopped, not waited for.
//! - No guest can wait inside WASI: waiting there (a sleep, a poll with nothing ready) is the
//!   only way WASI blocks with the empty context below, and `wasi:io/poll` is replaced by a
//!   version that answers what is ready now and stops the instance instead of waiting (a plugin
//!   that wants to wait sets a meow timer). So calls stay synchronous and cheap, and the epoch
//!   deadline bounds them all.
//! - After any trap the instance is unusable; the runtime makes a new one (instantiation from a
//!   prepared component takes tens of microseconds).
//! - Compiled components are cached on disk, keyed by the engine's compatibility hash and the
//!   plugin's SHA-256, so a restart does not recompile.
//! - WASI is linked with an empty context (no files, environment, clocks beyond WASI's, or
//!   network): a Rust guest imports it even when it does no I/O. The guest's stdout and stderr
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

mod output;
mod unprovided;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "bot",
    });
}

use bindings::meow::bot::types;
use bindings::{Bot, BotPre, meow};

/// How often the epoch advances.
const TICK: Duration = Duration::from_millis(10);

/// What a store holds for one instance.
struct State {
    host: Host,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn wit_error(e: HostError) -> types::Error {
    match e {
        HostError::Denied(s) => types::Error::Denied(s),
        HostError::NotFound(s) => types::Error::NotFound(s),
        HostError::Quota(s) => types::Error::Quota(s),
        HostError::Invalid(s) => types::Error::Invalid(s),
        HostError::Failed(s) => types::Error::Failed(s),
    }
}

impl types::Host for State {}

impl meow::bot::messaging::Host for State {
    fn send(&mut self, to: String, text: String) -> Result<(), types::Error> {
        self.host.send(&to, "text", text.into_bytes()).map_err(wit_error)
    }

    fn send_typed(&mut self, to: String, content_type: String, body: Vec<u8>) -> Result<(), types::Error> {
        self.host.send(&to, &content_type, body).map_err(wit_error)
    }

    fn reply(&mut self, message_id: String, text: String) -> Result<(), types::Error> {
        self.host.reply(&message_id, &text).map_err(wit_error)
    }
}

impl meow::bot::kv::Host for State {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, types::Error> {
        self.host.kv_get(&key).map_err(wit_error)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), types::Error> {
        self.host.kv_set(&key, &value).map_err(wit_error)
    }

    fn delete(&mut self, key: String) -> Result<(), types::Error> {
        self.host.kv_delete(&key).map_err(wit_error)
    }

    fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, types::Error> {
        self.host.kv_list(&prefix).map_err(wit_error)
    }
}

impl meow::bot::timers::Host for State {
    fn set_timeout(&mut self, name: String, after_ms: u64) -> Result<u64, types::Error> {
        self.host.set_timer(&name, after_ms, false).map_err(wit_error)
    }

    fn set_interval(&mut self, name: String, every_ms: u64) -> Result<u64, types::Error> {
        self.host.set_timer(&name, every_ms, true).map_err(wit_error)
    }

    fn set_cron(&mut self, name: String, expression: String) -> Result<u64, types::Error> {
        self.host.set_cron_timer(&name, &expression).map_err(wit_error)
    }

    fn cancel(&mut self, id: u64) -> Result<(), types::Error> {
        self.host.cancel_timer(id).map_err(wit_error)
    }
}

impl meow::bot::log::Host for State {
    fn log(&mut self, level: types::Level, message: String) {
        let level = match level {
            types::Level::Trace => Level::Trace,
            types::Level::Debug => Level::Debug,
            types::Level::Info => Level::Info,
            types::Level::Warn => Level::Warn,
            types::Level::Error => Level::Error,
        };
        self.host.log(level, &message);
    }
}

impl meow::bot::node::Host for State {
    fn info(&mut self) -> meow::bot::node::NodeInfo {
        let i = self.host.node_info();
        meow::bot::node::NodeInfo {
            instance: i.instance,
            nickname: i.nickname,
            fingerprint: i.fingerprint,
            contacts: i.contacts,
            now: i.now,
        }
    }

    fn contact_policy(&mut self, contact: String) -> Option<String> {
        self.host.contact_policy(&contact)
    }
}

impl meow::bot::groups::Host for State {
    fn send(&mut self, group: String, text: String) -> Result<(), types::Error> {
        self.host.group_send(&group, &text).map_err(wit_error)
    }

    fn names(&mut self) -> Result<Vec<String>, types::Error> {
        self.host.group_names().map_err(wit_error)
    }

    fn members(&mut self, group: String) -> Result<Vec<String>, types::Error> {
        self.host.group_members(&group).map_err(wit_error)
    }
}

impl meow::bot::broadcast::Host for State {
    fn send(&mut self, text: String) -> Result<(), types::Error> {
        self.host.broadcast(&text).map_err(wit_error)
    }
}

impl meow::bot::directory::Host for State {
    fn publish(&mut self, description: String, tags: Vec<String>) -> Result<(), types::Error> {
        self.host.directory_publish(&description, tags).map_err(wit_error)
    }

    fn withdraw(&mut self) -> Result<(), types::Error> {
        self.host.directory_withdraw().map_err(wit_error)
    }

    fn search(&mut self, words: String) -> Result<Vec<meow::bot::directory::Entry>, types::Error> {
        let found = self.host.directory_search(&words).map_err(wit_error)?;
        Ok(found
            .into_iter()
            .map(|e| meow::bot::directory::Entry {
                nickname: e.nickname,
                description: e.description,
                tags: e.tags,
                card: e.card,
            })
            .collect())
    }
}

impl meow::bot::files::Host for State {
    fn send(&mut self, to: String, name: String, media_type: String, data: Vec<u8>) -> Result<String, types::Error> {
        let file = meow_plugin::OutgoingFile {
            to,
            name,
            media_type,
            data,
        };
        self.host.file_send(file).map_err(wit_error)
    }

    fn read(&mut self, id: String, offset: u64, len: u32) -> Result<Vec<u8>, types::Error> {
        self.host.file_read(&id, offset, len).map_err(wit_error)
    }
}

impl meow::bot::http::Host for State {
    fn fetch(&mut self, r: meow::bot::http::Request) -> Result<meow::bot::http::Response, types::Error> {
        let request = meow_plugin::HttpRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        };
        let answer = self.host.http(request).map_err(wit_error)?;
        Ok(meow::bot::http::Response {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
        })
    }
}

fn wit_event(e: &Event) -> types::Event {
    match e {
        Event::Startup => types::Event::Startup,
        Event::Message(m) => types::Event::Message(types::Message {
            id: m.id.clone(),
            sender: m.sender.clone(),
            content_type: m.content_type.clone(),
            body: m.body.clone(),
            text: m.text.clone(),
            sent_at: m.sent_at,
            group: m.group.clone(),
        }),
        Event::Timer { id, name } => types::Event::Timer(types::Timer {
            id: *id,
            name: name.clone(),
        }),
        Event::ContactAdded { name, via_directory } => types::Event::ContactAdded((name.clone(), *via_directory)),
        Event::Broadcast(b) => types::Event::Broadcast(types::Broadcast {
            server: b.server.clone(),
            from_operator: b.from_operator,
            text: b.text.clone(),
            sent_at: b.sent_at,
        }),
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
        refuse_waiting(&mut linker).map_err(|e| EngineError(e.to_string()))?;
        Bot::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| EngineError(e.to_string()))?;
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
                "cannot link against this host's {WIT_VERSION}: {e:#} (build it against the meow:bot world of wit/)"
            ))
        };
        if let Ok(pre) = self.linker.instantiate_pre(component) {
            return Ok(pre);
        }
        let mut linker = self.linker.clone();
        unprovided::stub(&mut linker, component).map_err(broken)?;
        linker.instantiate_pre(component).map_err(broken)
    }
}

/// The most bytes of compiled components the cache keeps beside those in use.
pub const CACHE_MAX_BYTES: u64 = 512 << 20;
/// The most compiled components the cache keeps.
pub const CACHE_MAX_FILES: usize = 64;

/// The WIT package this host implements.
pub const WIT_VERSION: &str = "meow:bot@0.1.3";

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
    bot: Bot,
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
/// that answer at once: what is ready now, or the [`WouldBlock`] trap. The rest of WASI never
/// waits with an empty context (no files, sockets or stdin; output is discarded).
fn refuse_waiting(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    use wasmtime_wasi::p2::bindings::io::poll::{Host, HostPollable};
    linker.allow_shadowing(true);
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_wrap("poll", |mut cx, (list,): (Vec<Resource<DynPollable>>,)| {
        let table = &mut cx.data_mut().table;
        Ok((now_or_refuse(Host::poll(table, list))?,))
    })?;
    poll.func_wrap("[method]pollable.block", |mut cx, (p,): (Resource<DynPollable>,)| {
        let table = &mut cx.data_mut().table;
        now_or_refuse(HostPollable::block(table, p))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The value of `f` if it is ready at its first poll; else the [`WouldBlock`] trap.
fn now_or_refuse<T>(f: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| {
        wasmtime_wasi::runtime::poll_noop(std::pin::pin!(f)).unwrap_or_else(|| Err(wasmtime::Error::new(WouldBlock)))
    })
}

impl WasmInstance {
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
        self.store.set_epoch_deadline(ticks(self.limits.call_ms));
        let r = self.bot.call_init(&mut self.store, config);
        self.outcome(r)
    }

    fn handle(&mut self, event: &Event) -> Result<(), Failure> {
        self.store.set_epoch_deadline(ticks(self.limits.call_ms));
        let ev = wit_event(event);
        let r = self.bot.call_handle(&mut self.store, &ev);
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
            host,
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
        let bot = BotPre::new(pre)
            .and_then(|p| p.instantiate(&mut store))
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
