//! The plugin model shared by the WASM and Lua hosts: manifests, capabilities, configuration
//! schemas, the events plugins receive, and the host services they may call.
//!
//! A *plugin* is an artifact (a `plugin.yaml` and its entry file, pinned by SHA-256). An
//! *instance* binds a plugin to a name, a checked configuration and the capabilities granted to it
//! in `meow.yaml`. Every capability is denied unless granted.

#![forbid(unsafe_code)]

mod event;
mod host;
mod manifest;

pub use event::{BroadcastEvent, Event, MessageEvent};
pub use host::{
    DeviceView, DirectoryListing, Host, HostError, HttpRequest, HttpResponse, Level, MAX_FILE_READ, NodeInfo,
    OutgoingFile, Services,
};
pub use manifest::{Capability, ConfigField, FieldType, Kind, Manifest, Plugin, PluginError, pin, sha256_hex};

/// Why a call into a plugin failed. Deliberately exhaustive: the supervisor must decide what
/// each kind of failure means for the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The plugin returned an error: it is logged, the instance keeps running.
    Error(String),
    /// The instance was stopped (trap, time or memory limit): it must be restarted.
    Stopped(String),
    /// The plugin cannot run as it is (not a component of the host's world, a link mismatch, a
    /// script that does not compile): starting it again cannot help, a new version can.
    Broken(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(e) => write!(f, "returned an error: {e}"),
            Failure::Stopped(e) => write!(f, "was stopped: {e}"),
            Failure::Broken(e) => write!(f, "cannot run as it is: {e}"),
        }
    }
}

/// A running plugin instance.
pub trait Instance: Send {
    /// Starts the instance with its configuration (JSON, defaults filled in).
    fn init(&mut self, config: &str) -> Result<(), Failure>;
    /// Delivers one event.
    fn handle(&mut self, event: &Event) -> Result<(), Failure>;
}

/// Limits applied to every call into an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory (WASM) or heap (Lua), bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one call, milliseconds.
    pub call_ms: u64,
    /// Lua only: instructions per call.
    pub lua_instructions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_ms: 1000,
            lua_instructions: 50_000_000,
        }
    }
}

/// Something that can run plugins of one kind.
pub trait Engine: Send + Sync {
    /// Whether `plugin` starts without being compiled first (`meow plugin list` says
    /// "compiling" while a first start compiles).
    fn compiled(&self, _plugin: &Plugin) -> bool {
        true
    }

    /// Creates a running instance of `plugin` calling back into `host`.
    fn instantiate(&self, plugin: &Plugin, host: Host, limits: Limits) -> Result<Box<dyn Instance>, Failure>;
}
