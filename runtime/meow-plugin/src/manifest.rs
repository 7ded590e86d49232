//! `plugin.yaml`: what a plugin is, what it asks for, and how it is configured.
//!
//! ```yaml
//! name: echo
//! version: 0.1.0
//! kind: wasm            # or lua
//! entry: echo.wasm      # relative to the manifest
//! sha256: 3f2a…         # of the entry file: a changed file is refused
//! capabilities: [messaging, kv]
//! config:
//!   prefix: { type: string, default: "echo: ", description: Put before the echoed text. }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a plugin may be allowed to do. Denied unless granted in `meow.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Send messages and replies.
    Messaging,
    /// Use its key-value store.
    Kv,
    /// Set timers.
    Timers,
    /// Use groups.
    Groups,
    /// Publish to and search the directory.
    Directory,
    /// Send emergency broadcasts.
    Broadcast,
    /// Send files and read received ones.
    Files,
    /// Make HTTP requests to the hosts meow.yaml allows.
    Http,
    /// Publish to and subscribe on the MQTT broker meow.yaml names.
    Mqtt,
    /// List the user's devices (docs/DEVICES.md).
    Devices,
}

impl Capability {
    /// Its name in YAML.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Messaging => "messaging",
            Capability::Kv => "kv",
            Capability::Timers => "timers",
            Capability::Groups => "groups",
            Capability::Directory => "directory",
            Capability::Broadcast => "broadcast",
            Capability::Files => "files",
            Capability::Http => "http",
            Capability::Mqtt => "mqtt",
            Capability::Devices => "devices",
        }
    }
}

/// How a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A WebAssembly component (wasm32-wasip2) of the `meow:bot` world.
    Wasm,
    /// A Lua 5.4 script.
    Lua,
}

/// The type of a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    String,
    /// A number.
    Number,
    /// true or false.
    Bool,
    /// A list.
    List,
    /// A mapping.
    Map,
}

impl FieldType {
    fn accepts(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (FieldType::String, Value::String(_))
                | (FieldType::Number, Value::Number(_))
                | (FieldType::Bool, Value::Bool(_))
                | (FieldType::List, Value::Array(_))
                | (FieldType::Map, Value::Object(_))
        )
    }

    fn name(self) -> &'static str {
        match self {
            FieldType::String => "a string",
            FieldType::Number => "a number",
            FieldType::Bool => "true or false",
            FieldType::List => "a list",
            FieldType::Map => "a mapping",
        }
    }
}

/// One configuration key of a plugin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// The value when the instance gives none.
    #[serde(default)]
    pub default: Option<Value>,
    /// Whether an instance must give a value.
    #[serde(default)]
    pub required: bool,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
}

/// A `plugin.yaml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// WASM or Lua.
    pub kind: Kind,
    /// The entry file, relative to the manifest.
    pub entry: String,
    /// SHA-256 of the entry file (hex). Required to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What it asks to be allowed.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Its configuration schema.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigField>,
}

/// Why a plugin cannot be loaded or configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// A file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The manifest is not valid YAML of the expected shape.
    #[error("{0}")]
    Manifest(#[from] meow_yaml::YamlError),
    /// No pinned hash.
    #[error("{manifest}: no sha256 for {entry}: pin it with `meow plugin pin {dir}`")]
    NotPinned {
        /// The manifest.
        manifest: String,
        /// The entry file.
        entry: String,
        /// The plugin directory.
        dir: String,
    },
    /// The entry file changed since it was pinned.
    #[error(
        "{entry}: sha256 is {found} but plugin.yaml pins {expected}: refusing a changed plugin (re-pin with `meow plugin pin` if the change is yours)"
    )]
    HashMismatch {
        /// The entry file.
        entry: String,
        /// The pinned hash.
        expected: String,
        /// The file's hash.
        found: String,
    },
    /// An instance's configuration does not fit the schema.
    #[error("plugin {plugin}: config.{key}: {reason}")]
    Config {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A loaded plugin: manifest, entry bytes (hash-checked), and where it came from.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// The manifest.
    pub manifest: Manifest,
    /// The plugin directory.
    pub dir: PathBuf,
    /// The entry file's bytes.
    pub code: Vec<u8>,
    /// Their SHA-256, hex.
    pub sha256: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PluginError + '_ {
    move |e| PluginError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    meow_proto::crypto::sha256(&[bytes])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Manifest {
    /// Reads `plugin.yaml` from a plugin directory (or the manifest file itself).
    pub fn read(path: &Path) -> Result<(Manifest, PathBuf, PathBuf), PluginError> {
        let file = if path.is_dir() {
            path.join("plugin.yaml")
        } else {
            path.to_owned()
        };
        let dir = file.parent().map(Path::to_owned).unwrap_or_default();
        let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
        let manifest: Manifest = meow_yaml::load(&text, &file.display().to_string())?;
        Ok((manifest, dir, file))
    }
}

impl Plugin {
    /// Loads a plugin and checks its entry file against the pinned hash.
    pub fn load(path: &Path) -> Result<Plugin, PluginError> {
        let (manifest, dir, file) = Manifest::read(path)?;
        let entry = dir.join(&manifest.entry);
        let code = std::fs::read(&entry).map_err(io_err(&entry))?;
        let sha256 = sha256_hex(&code);
        match &manifest.sha256 {
            None => {
                return Err(PluginError::NotPinned {
                    manifest: file.display().to_string(),
                    entry: manifest.entry.clone(),
                    dir: dir.display().to_string(),
                });
            }
            Some(pinned) if !pinned.eq_ignore_ascii_case(&sha256) => {
                return Err(PluginError::HashMismatch {
                    entry: entry.display().to_string(),
                    expected: pinned.clone(),
                    found: sha256,
                });
            }
            Some(_) => {}
        }
        Ok(Plugin {
            manifest,
            dir,
            code,
            sha256,
        })
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Checks an instance's configuration against the schema and fills in defaults; returns the
    /// JSON handed to the plugin's `init`.
    pub fn configure(&self, given: &Map<String, Value>) -> Result<String, PluginError> {
        let err = |key: &str, reason: String| PluginError::Config {
            plugin: self.manifest.name.clone(),
            key: key.to_owned(),
            reason,
        };
        let mut out = Map::new();
        for (key, value) in given {
            let field = self.manifest.config.get(key).ok_or_else(|| {
                let known: Vec<&str> = self.manifest.config.keys().map(String::as_str).collect();
                err(
                    key,
                    format!(
                        "unknown key (this plugin knows: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?;
            if !field.ty.accepts(value) {
                return Err(err(key, format!("must be {}", field.ty.name())));
            }
            out.insert(key.clone(), value.clone());
        }
        for (key, field) in &self.manifest.config {
            if out.contains_key(key) {
                continue;
            }
            match (&field.default, field.required) {
                (Some(d), _) => {
                    out.insert(key.clone(), d.clone());
                }
                (None, true) => return Err(err(key, "required, and no value was given".into())),
                (None, false) => {}
            }
        }
        Ok(Value::Object(out).to_string())
    }
}

/// Writes the entry file's hash into the manifest (after building or editing the plugin).
pub fn pin(path: &Path) -> Result<String, PluginError> {
    let (mut manifest, dir, file) = Manifest::read(path)?;
    let entry = dir.join(&manifest.entry);
    let hash = sha256_hex(&std::fs::read(&entry).map_err(io_err(&entry))?);
    let text = std::fs::read_to_string(&file).map_err(io_err(&file))?;
    // Keep the file as written: replace or append the sha256 line only.
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("sha256:"))
        .map(str::to_owned)
        .collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("entry:"))
        .map_or(lines.len(), |i| i + 1);
    lines.insert(at, format!("sha256: {hash}"));
    std::fs::write(&file, lines.join("\n") + "\n").map_err(io_err(&file))?;
    manifest.sha256 = Some(hash.clone());
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder removed when the returned guard drops.
    fn temp(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("meow-plugin-{tag}-"))
            .tempdir()
            .unwrap()
    }

    const YAML: &str = "name: greeter\nversion: 1.0.0\nkind: lua\nentry: main.lua\ncapabilities: [messaging]\nconfig:\n  greeting: { type: string, default: hello }\n  limit: { type: number, required: true }\n";

    #[test]
    fn pinning_loading_and_tamper_detection() {
        let tmp = temp("pin");
        let d = tmp.path();
        std::fs::write(d.join("plugin.yaml"), YAML).unwrap();
        std::fs::write(d.join("main.lua"), "function on_message(m) end\n").unwrap();
        assert!(matches!(Plugin::load(d), Err(PluginError::NotPinned { .. })));
        pin(d).unwrap();
        let p = Plugin::load(d).unwrap();
        assert_eq!(p.manifest.capabilities, vec![Capability::Messaging]);
        std::fs::write(d.join("main.lua"), "os.execute('rm -rf /')\n").unwrap();
        let e = Plugin::load(d).unwrap_err();
        assert!(matches!(e, PluginError::HashMismatch { .. }));
        assert!(e.to_string().contains("refusing a changed plugin"));
    }

    #[test]
    fn configuration_is_checked_and_defaults_filled() {
        let tmp = temp("config");
        let d = tmp.path();
        std::fs::write(d.join("plugin.yaml"), YAML).unwrap();
        std::fs::write(d.join("main.lua"), "").unwrap();
        pin(d).unwrap();
        let p = Plugin::load(d).unwrap();
        let cfg: Map<String, Value> = serde_json::from_str(r#"{"limit": 3}"#).unwrap();
        assert_eq!(p.configure(&cfg).unwrap(), r#"{"greeting":"hello","limit":3}"#);
        let bad: Map<String, Value> = serde_json::from_str(r#"{"limit": "x"}"#).unwrap();
        assert_eq!(
            p.configure(&bad).unwrap_err().to_string(),
            "plugin greeter: config.limit: must be a number"
        );
        let unknown: Map<String, Value> = serde_json::from_str(r#"{"limit": 1, "colour": 1}"#).unwrap();
        assert!(p.configure(&unknown).unwrap_err().to_string().contains("unknown key"));
        assert!(p.configure(&Map::new()).unwrap_err().to_string().contains("required"));
    }

    #[test]
    fn unknown_manifest_keys_are_errors_with_a_place() {
        let tmp = temp("unknown");
        let d = tmp.path();
        std::fs::write(d.join("plugin.yaml"), format!("{YAML}colour: red\n")).unwrap();
        let e = Manifest::read(d).unwrap_err().to_string();
        assert!(e.contains("plugin.yaml:9:1"), "{e}");
        assert!(e.contains("unknown field `colour`"), "{e}");
    }
}
