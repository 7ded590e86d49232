//! The runtime's errors: each says in one line what went wrong and, where it helps, what to do.

use std::path::PathBuf;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The home refused an operation.
    #[error(transparent)]
    Node(#[from] meow_node::NodeError),
    /// The vault failed.
    #[error(transparent)]
    Store(#[from] meow_store::StoreError),
    /// The embedded server could not start.
    #[error("starting the embedded server: {0}")]
    Server(#[from] meow_server::ServerError),
    /// A recipe is not valid.
    #[error(transparent)]
    Recipe(#[from] meow_recipe::RecipeError),
    /// `meow.yaml` is not valid.
    #[error(transparent)]
    Config(#[from] meow_yaml::YamlError),
    /// A plugin could not be loaded or configured.
    #[error("plugin instance {instance}: {source}")]
    Plugin {
        /// The instance.
        instance: String,
        /// Why.
        source: meow_plugin::PluginError,
    },
    /// An engine (WASM, Lua) could not start.
    #[error("the {kind} engine: {reason}")]
    Engine {
        /// Which engine.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// No plugin instance has this name.
    #[error("no plugin instance {0:?} (see `meow plugin list`)")]
    NoInstance(String),
    /// A plugin reload was refused; the running version stays.
    #[error("{instance}: {reason}")]
    Reload {
        /// The instance.
        instance: String,
        /// Why.
        reason: String,
    },
    /// A recipe publishes to MQTT and meow.yaml names no broker.
    #[error(
        "{}: mqtt_publish needs a broker: add `mqtt: {{ broker: \"mqtt://HOST:1883\" }}` to meow.yaml",
        file.display()
    )]
    NoMqtt {
        /// The recipe file.
        file: PathBuf,
    },
    /// An MQTT broker could not be used.
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    /// Two recipe files use one name.
    #[error(
        "{}: the recipe name {name:?} is taken by {} (traces and run modes go by name: rename one)",
        file.display(),
        first.display()
    )]
    RecipeNameTaken {
        /// The second file.
        file: PathBuf,
        /// The name.
        name: String,
        /// The file that has it first.
        first: PathBuf,
    },
    /// A request carried a value that makes no sense (named in the message).
    #[error("{0}")]
    Invalid(String),
    /// A command that needs a running daemon was sent without one.
    #[error("no `meow run` is running on this home: {0}")]
    NoDaemon(&'static str),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The control socket carried something unreadable.
    #[error("control socket: {0}")]
    Control(String),
    /// Another daemon holds the home.
    #[error("another `meow run` is already running on {0}")]
    AlreadyRunning(PathBuf),
    /// A record could not be encoded or decoded as JSON.
    #[error("a stored record: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored record does not decode.
    #[error("a stored {what} is damaged ({source}); `meow doctor` checks the home")]
    Damaged {
        /// What the record is.
        what: String,
        /// Why it does not decode.
        source: serde_json::Error,
    },
    /// The per-contact budget of automatic messages is spent.
    #[error(
        "at most {max} automatic messages to {contact} per {window_secs} s (a loop between bots?); raise limits.auto_replies_per_contact in meow.yaml"
    )]
    AutoReplies {
        /// The contact.
        contact: String,
        /// Messages allowed per window.
        max: u32,
        /// The window.
        window_secs: u64,
    },
    /// A `reply` action ran for a trigger that has no sender.
    #[error("the trigger has no sender to reply to")]
    NoSender,
    /// A part of the runtime was asked for before it started.
    #[error("{0} are not started yet")]
    NotStarted(&'static str),
    /// No plugin folder holds the plugin.
    #[error("plugin {plugin:?} not found in plugin_dirs [{}] (build it with `meow plugin build`)", searched.join(", "))]
    PluginNotFound {
        /// The plugin's name.
        plugin: String,
        /// The folders searched.
        searched: Vec<String>,
    },
}

impl RuntimeError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let context = context.into();
        move |source| RuntimeError::Io { context, source }
    }
}

/// Result of runtime operations.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
