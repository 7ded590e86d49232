//! `meow.yaml`: what `meow run` starts — the embedded server, plugin instances, recipes.
//!
//! ```yaml
//! version: 1
//! server:                  # the in-process server (on by default)
//!   enabled: true
//!   listen: 127.0.0.1:7070
//! plugin_dirs: [plugins]   # where plugins are looked up by name
//! plugins:
//!   - name: echo           # the instance
//!     plugin: echo         # a plugin name (looked up in plugin_dirs) or a path
//!     grant: [messaging, kv]
//!     config: { prefix: "echo: " }
//! recipes: [recipes/*.yaml]
//! ```
//! Relative paths are relative to the file. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use meow_plugin::Capability;
use serde::Deserialize;
use serde_json::{Map, Value};

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
}

impl Default for EmbeddedServer {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_listen(),
            data: default_server_data(),
            name: None,
            allow_broadcast: false,
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
            base: PathBuf::from("."),
        }
    }
}

impl RunConfig {
    /// Reads and checks a `meow.yaml`.
    pub fn load(path: &Path) -> anyhow::Result<RunConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut cfg: RunConfig = meow_yaml::load(&text, &path.display().to_string())?;
        if cfg.version != 1 {
            bail!(
                "{}: version {} is not supported (this meow reads version 1)",
                path.display(),
                cfg.version
            );
        }
        cfg.base = path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("."));
        let mut names = std::collections::HashSet::new();
        for (i, p) in cfg.plugins.iter().enumerate() {
            meow_node::check_name(&p.name)
                .map_err(|e| anyhow::anyhow!("{}: plugins[{i}].name: {e}", path.display()))?;
            if !names.insert(p.name.clone()) {
                bail!(
                    "{}: plugins[{i}].name: instance {:?} is defined twice",
                    path.display(),
                    p.name
                );
            }
        }
        Ok(cfg)
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
    pub fn plugin_path(&self, plugin: &str) -> anyhow::Result<PathBuf> {
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
        bail!(
            "plugin {plugin:?} not found in plugin_dirs [{}] (build it with `meow plugin build`)",
            searched.join(", ")
        )
    }

    /// Recipe files, globs expanded (a `*` in the file name part).
    pub fn recipe_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for pattern in &self.recipes {
            let p = self.resolve(Path::new(pattern));
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some((pre, post)) = name.split_once('*') {
                let dir = p.parent().map(Path::to_owned).unwrap_or_default();
                let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("reading recipe folder {}", dir.display()))?
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
