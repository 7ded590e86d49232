//! `meow.yaml`: what `meow run` starts — the embedded server, plugin instances, recipes.
//!
//! ```yaml
//! version: 1
//! server:                  # the in-process server (on by default)
//!   enabled: true
//!   listen: 127.0.0.1:7070
//!   udp: 127.0.0.1:7070    # also datagrams and radio link sessions (off by default)
//!   links: [serial:/dev/ttyUSB0, "rnode:/dev/ttyACM0,sf=9"]   # serial lines, radios
//! plugin_dirs: [plugins]   # where plugins are looked up by name
//! plugins:
//!   - name: echo           # the instance
//!     plugin: echo         # a plugin name (looked up in plugin_dirs) or a path
//!     grant: [messaging, kv]
//!     config: { prefix: "echo: " }
//! recipes: [recipes/*.yaml]
//! limits:                  # runtime-wide limits (defaults fit a small board)
//!   outbox: 5000
//! ```
//! Relative paths are relative to the file. Unknown keys are errors. Every limit, its default
//! and what happens when it is hit: docs/ARCHITECTURE.md, "Limits and containment".

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meow_plugin::Capability;
use meow_yaml::YamlError;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Result, RuntimeError};

fn default_true() -> bool {
    true
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7070))
}

fn default_server_data() -> PathBuf {
    PathBuf::from("server")
}

fn default_poll() -> String {
    "25s".into()
}

/// The embedded server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedServer {
    /// Whether to start it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where it listens (port 0: any free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Its data directory, relative to the home.
    #[serde(default = "default_server_data")]
    pub data: PathBuf,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// Let anyone broadcast (rate limited).
    #[serde(default)]
    pub allow_broadcast: bool,
    /// Also answer sealed datagrams and link sessions (LoRa and serial gateways, `meow sensor
    /// --link`) on this UDP address.
    #[serde(default)]
    pub udp: Option<SocketAddr>,
    /// Also serve them on these serial lines and radios (`serial:PATH[:BAUD]`,
    /// `rnode:PATH[:BAUD][,options]`, `meshtastic:PATH[:BAUD][,options]`); `meow status`
    /// shows each one's counters and airtime budget.
    #[serde(default)]
    pub links: Vec<String>,
    /// Relay Matriochka packets for anyone (as `meow server --relay`, with its defaults).
    #[serde(default)]
    pub relay: bool,
    /// Other servers' cards (text) to exchange the server catalog with.
    #[serde(default)]
    pub peers: Vec<String>,
}

impl EmbeddedServer {
    /// The links, parsed (checked when the file is loaded).
    pub fn link_addresses(&self) -> Vec<meow_net::port::LinkAddress> {
        self.links.iter().filter_map(|l| l.parse().ok()).collect()
    }
}

impl Default for EmbeddedServer {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
            data: default_server_data(),
            name: None,
            allow_broadcast: false,
            udp: None,
            links: Vec::new(),
            relay: false,
            peers: Vec::new(),
        }
    }
}

/// Per-instance limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceLimits {
    /// Memory cap in MiB.
    pub memory_mib: Option<usize>,
    /// Time budget of one call in milliseconds.
    pub call_ms: Option<u64>,
    /// Messages the instance may send per second, on average (default 10).
    pub sends_per_second: Option<f64>,
    /// Messages it may send at once before the rate applies (default 50).
    pub send_burst: Option<u32>,
    /// Its messages that may wait in the outbox at once (default 200).
    pub outbox: Option<usize>,
    /// The largest file it may send (`8MiB` by default; never above the runtime's
    /// `limits.file_size`, which the home applies to every file).
    pub file_size: Option<String>,
}

impl InstanceLimits {
    /// `file_size` in bytes, if set and valid (checked when meow.yaml is read).
    pub fn file_size_bytes(&self) -> Option<u64> {
        self.file_size.as_deref().and_then(|s| meow_yaml::size(s).ok())
    }
}

fn default_outbox() -> usize {
    5000
}

fn default_incoming_rate() -> f64 {
    5.0
}

fn default_incoming_burst() -> u32 {
    20
}

fn default_auto_replies() -> u32 {
    30
}

fn default_auto_window() -> String {
    "10m".into()
}

fn default_file_size() -> String {
    "64MiB".into()
}

fn default_command_queue() -> usize {
    1024
}

/// Limits of the whole runtime: what keeps one plugin, recipe or contact from hurting the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeLimits {
    /// Messages waiting in the outbox at most (people, plugins and recipes together).
    #[serde(default = "default_outbox")]
    pub outbox: usize,
    /// Messages per second, per contact, handed to plugins and recipes (more are stored and
    /// shown by `meow inbox`, but bots do not see them).
    #[serde(default = "default_incoming_rate")]
    pub incoming_per_second: f64,
    /// Messages a contact may send at once before that rate applies.
    #[serde(default = "default_incoming_burst")]
    pub incoming_burst: u32,
    /// Automatic messages (from plugins and recipes) to one contact per window, at most: stops
    /// a loop with a peer whose bots answer everything, marked or not.
    #[serde(default = "default_auto_replies")]
    pub auto_replies_per_contact: u32,
    /// The window of `auto_replies_per_contact` (`10m`, `1h`).
    #[serde(default = "default_auto_window")]
    pub auto_reply_window: String,
    /// Actions of plugins waiting for the runtime at most (sends, broadcasts, timers fired).
    #[serde(default = "default_command_queue")]
    pub command_queue: usize,
    /// The largest file sent or taken in (`64MiB`): a contact's larger file is refused at its
    /// first chunk.
    #[serde(default = "default_file_size")]
    pub file_size: String,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            outbox: default_outbox(),
            incoming_per_second: default_incoming_rate(),
            incoming_burst: default_incoming_burst(),
            auto_replies_per_contact: default_auto_replies(),
            auto_reply_window: default_auto_window(),
            command_queue: default_command_queue(),
            file_size: default_file_size(),
        }
    }
}

impl RuntimeLimits {
    /// The largest file sent or taken in, in bytes.
    pub fn file_size(&self) -> u64 {
        meow_yaml::size(&self.file_size).unwrap_or(meow_node::files::DEFAULT_MAX_FILE)
    }

    /// The window of the automatic-reply budget.
    pub fn auto_window(&self) -> Duration {
        meow_yaml::duration(&self.auto_reply_window).unwrap_or(Duration::from_secs(600))
    }
}

/// A plugin instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The instance's name (its key-value store and logs use it).
    pub name: String,
    /// A plugin name or a path to a plugin directory.
    pub plugin: String,
    /// Capabilities granted.
    #[serde(default)]
    pub grant: Vec<Capability>,
    /// Configuration, checked against the plugin's schema.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Limits.
    #[serde(default)]
    pub limits: InstanceLimits,
    /// Also hand it messages marked automatic (sent by other bots). Off by default, so that two
    /// auto-answering homes do not talk to each other forever.
    #[serde(default)]
    pub accept_automatic: bool,
    /// Keep its key-value store the same on all the user's devices (docs/DEVICES.md): each
    /// write is synced, the later write of a key wins. Off by default.
    #[serde(default)]
    pub sync: bool,
}

/// `conversations:` in meow.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationSettings {
    /// Offer contacts a post-quantum start (X-Wing) when moving them to conversation version 2:
    /// the default. `false` gives a classical start, whose offer and answer are a few dozen bytes
    /// instead of 1.2 KB each, for a home that reaches its server over a small link (LoRa). An
    /// offer from a contact is answered in kind either way. It applies to what the runtime
    /// sends and the cards it makes (which then ask the contact for a classical start too),
    /// commands given while it runs included; with no runtime on the home, `meow invite` and
    /// `meow accept` take `--classical-start` for one card.
    #[serde(default = "default_true")]
    pub post_quantum: bool,
}

/// `roles:` in meow.yaml: the contacts who may run the recipes' `admin` and `owner` commands
/// (everyone else runs those of `anyone`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// The owner's contact name.
    #[serde(default)]
    pub owner: Option<String>,
    /// The admins' contact names.
    #[serde(default)]
    pub admins: Vec<String>,
}

impl Roles {
    /// The role of contact `name`.
    pub fn of(&self, name: &str) -> meow_recipe::commands::Role {
        use meow_recipe::commands::Role;
        if self.owner.as_deref() == Some(name) {
            Role::Owner
        } else if self.admins.iter().any(|a| a == name) {
            Role::Admin
        } else {
            Role::Anyone
        }
    }
}

/// `mqtt:` in meow.yaml: the broker recipes (`mqtt_publish`, the `mqtt` trigger) and plugins
/// (capability `mqtt`) publish to and listen on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSettings {
    /// `mqtt://[user[:password]@]host[:port]` (port 1883 when absent), or `mqtts://…` for TLS
    /// (port 8883 when absent).
    pub broker: String,
    /// The client id the broker knows this runtime by (default `meow-<process id>`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// A user name (or in the URL).
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the password, relative to meow.yaml (rather than in the URL, which
    /// meow.yaml shows to whoever reads it).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// For an `mqtts://` broker whose certificate is not signed by a public authority (a home
    /// broker's own CA): the CA's certificate, PEM, relative to meow.yaml.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `direct:` in meow.yaml: accept direct links from contacts whose policy is
/// `direct-preferred` (`meow policy NAME direct-preferred`), and tell them where.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectSettings {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// The address contacts are told (default: the one listened on; required when listening
    /// on every interface).
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// How often contacts are told again (a presence holds for three times this).
    #[serde(default = "default_announce_every")]
    pub announce_every: String,
}

fn default_announce_every() -> String {
    "10m".into()
}

impl DirectSettings {
    /// The announcement interval.
    pub fn every(&self) -> Duration {
        meow_yaml::duration(&self.announce_every).unwrap_or(Duration::from_secs(600))
    }
}

impl Default for ConversationSettings {
    fn default() -> Self {
        Self { post_quantum: true }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Format version (1).
    pub version: u32,
    /// The home to use when neither --home nor MEOW_HOME is given.
    #[serde(default)]
    pub home: Option<PathBuf>,
    /// The embedded server.
    #[serde(default)]
    pub server: EmbeddedServer,
    /// More servers to add to the home (card texts).
    #[serde(default)]
    pub servers: Vec<String>,
    /// How long one poll waits for mail.
    #[serde(default = "default_poll")]
    pub poll_wait: String,
    /// Where plugins are looked up by name.
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugin instances.
    #[serde(default)]
    pub plugins: Vec<InstanceConfig>,
    /// Recipe files (globs allowed in the last path component).
    #[serde(default)]
    pub recipes: Vec<String>,
    /// Reload plugins when their files change.
    #[serde(default)]
    pub watch: bool,
    /// Runtime-wide limits.
    #[serde(default)]
    pub limits: RuntimeLimits,
    /// How conversations start and move between versions.
    #[serde(default)]
    pub conversations: ConversationSettings,
    /// Direct links with `direct-preferred` contacts (off when absent).
    #[serde(default)]
    pub direct: Option<DirectSettings>,
    /// The MQTT broker of recipes and plugins; no bridge when absent.
    #[serde(default)]
    pub mqtt: Option<MqttSettings>,
    /// The hosts the `http` capability may call; none when absent.
    #[serde(default)]
    pub http: Option<crate::http::HttpSettings>,
    /// Who may run the recipes' `admin` and `owner` commands.
    #[serde(default)]
    pub roles: Roles,
    /// The folder of the file (for relative paths).
    #[serde(skip)]
    pub base: PathBuf,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            version: 1,
            home: None,
            server: EmbeddedServer::default(),
            servers: Vec::new(),
            poll_wait: default_poll(),
            plugin_dirs: Vec::new(),
            plugins: Vec::new(),
            recipes: Vec::new(),
            watch: false,
            limits: RuntimeLimits::default(),
            conversations: ConversationSettings::default(),
            direct: None,
            mqtt: None,
            http: None,
            roles: Roles::default(),
            base: PathBuf::from("."),
        }
    }
}

impl RunConfig {
    /// Reads and checks a `meow.yaml`.
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(RuntimeError::io(format!("reading {}", path.display())))?;
        let file = path.display().to_string();
        let mut cfg: RunConfig = meow_yaml::load(&text, &file)?;
        let at = |key: &str, message: String| {
            let (line, column) = meow_yaml::locate(&text, key);
            RuntimeError::Config(YamlError::at(&file, line, column, key, message))
        };
        if cfg.version != 1 {
            return Err(at(
                "version",
                format!("version {} is not supported (this meow reads version 1)", cfg.version),
            ));
        }
        cfg.base = path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
        let mut names = std::collections::HashSet::new();
        for (i, p) in cfg.plugins.iter().enumerate() {
            let key = format!("plugins[{i}].name");
            meow_node::check_name(&p.name).map_err(|e| at(&key, e.to_string()))?;
            if !names.insert(p.name.clone()) {
                return Err(at(&key, format!("instance {:?} is defined twice", p.name)));
            }
        }
        for (i, l) in cfg.server.links.iter().enumerate() {
            let link = meow_net::port::LinkAddress::parse(l).map_err(|e| at(&format!("server.links[{i}]"), e))?;
            if matches!(link, meow_net::port::LinkAddress::Udp(_)) {
                return Err(at(
                    &format!("server.links[{i}]"),
                    "a UDP address goes in server.udp".into(),
                ));
            }
        }
        meow_yaml::duration(&cfg.poll_wait).map_err(|e| at("poll_wait", e))?;
        if let Some(d) = &cfg.direct {
            meow_yaml::duration(&d.announce_every).map_err(|e| at("direct.announce_every", e))?;
        }
        meow_yaml::duration(&cfg.limits.auto_reply_window).map_err(|e| at("limits.auto_reply_window", e))?;
        meow_yaml::size(&cfg.limits.file_size).map_err(|e| at("limits.file_size", e))?;
        if let Some(h) = &cfg.http {
            crate::http::check(h).map_err(|(key, e)| at(&key, e))?;
        }
        for (i, p) in cfg.plugins.iter().enumerate() {
            if let Some(size) = &p.limits.file_size {
                meow_yaml::size(size).map_err(|e| at(&format!("plugins[{i}].limits.file_size"), e))?;
            }
        }
        if cfg.limits.incoming_per_second.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return Err(at("limits.incoming_per_second", "must be above 0".into()));
        }
        Ok(cfg)
    }

    /// How long one poll waits for mail.
    pub fn poll_wait(&self) -> Duration {
        meow_yaml::duration(&self.poll_wait).unwrap_or(Duration::from_secs(25))
    }

    /// A path relative to the file.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// Finds a plugin directory by name or path.
    pub fn plugin_path(&self, plugin: &str) -> Result<PathBuf> {
        let as_path = Path::new(plugin);
        if plugin.contains('/') || plugin.ends_with(".yaml") {
            return Ok(self.resolve(as_path));
        }
        // The first folder holding the plugin with its entry file (a source folder whose WASM
        // is not built yet is skipped in favour of a built bundle further down the list).
        for dir in &self.plugin_dirs {
            let candidate = self.resolve(dir).join(plugin);
            let built = meow_plugin::Manifest::read(&candidate).is_ok_and(|(m, d, _)| d.join(&m.entry).exists());
            if built {
                return Ok(candidate);
            }
        }
        let searched: Vec<String> = self
            .plugin_dirs
            .iter()
            .map(|d| self.resolve(d).display().to_string())
            .collect();
        Err(RuntimeError::PluginNotFound {
            plugin: plugin.to_owned(),
            searched,
        })
    }

    /// Recipe files, globs expanded (a `*` in the file name part).
    pub fn recipe_files(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for pattern in &self.recipes {
            let p = self.resolve(Path::new(pattern));
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some((pre, post)) = name.split_once('*') {
                let dir = p.parent().map(Path::to_owned).unwrap_or_default();
                let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(RuntimeError::io(format!("reading recipe folder {}", dir.display())))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| {
                        f.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(pre) && n.ends_with(post))
                    })
                    .collect();
                found.sort();
                out.extend(found);
            } else {
                out.push(p);
            }
        }
        Ok(out)
    }
}
