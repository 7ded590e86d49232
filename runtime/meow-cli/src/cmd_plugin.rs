//! `meow plugin build` and `meow plugin pin`: turn plugin sources into pinned bundles the runtime
//! loads (`<out>/<name>/plugin.yaml` with the entry file's SHA-256, plus the entry file).
//!
//! A WASM plugin's folder says how it is built: a `Cargo.toml` (Rust, cargo for wasm32-wasip2),
//! an `app.py` (Python, componentize-py), a `bot.js` (JavaScript, componentize-js), or else an
//! already-built component named as the manifest's entry, which is packaged as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use meow_plugin::{Kind, Manifest};

/// Plugin directories under `dir` (itself, or up to two levels of subfolders with a plugin.yaml).
fn find_plugins(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if dir.join("plugin.yaml").is_file() {
        out.push(dir.to_owned());
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut subdirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    subdirs.sort();
    for d in subdirs {
        if d.file_name()
            .is_some_and(|n| n == "target" || n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        find_plugins(&d, depth - 1, out);
    }
}

/// The `[package] name` of a Cargo.toml.
fn package_name(cargo_toml: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(cargo_toml).with_context(|| format!("reading {}", cargo_toml.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(v) = line.strip_prefix("name") {
            let v = v.trim_start().trim_start_matches('=').trim().trim_matches('"');
            return Ok(v.to_owned());
        }
    }
    bail!("{}: no [package] name", cargo_toml.display())
}

fn cargo_build_wasm(dir: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let package = package_name(&dir.join("Cargo.toml"))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(["-p", &package])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .context("running cargo (is the Rust toolchain installed?)")?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let hint = if err.contains("wasm32-wasip2") && err.contains("not installed")
            || err.contains("can't find crate for `core`")
        {
            " (install the target: rustup target add wasm32-wasip2)"
        } else {
            ""
        };
        let last: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).take(3).collect();
        bail!("building {} failed{hint}: {}", dir.display(), last.join(" / "));
    }
    Ok(target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_"))))
}

/// The WITs the Python and JavaScript builds bind to (this binary's own): 0.1 and 0.2.
const WIT: &str = include_str!("../../../wit/meow-bot.wit");
const WIT_V02: &str = include_str!("../../../wit/v0.2/meow-bot.wit");

/// The engine a JavaScript plugin is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JsEngine {
    /// componentize-js (the engine behind `jco componentize`'s default backend).
    Starlingmonkey,
    /// componentize-qjs (`jco componentize --backend quickjs`), synchronous runtime; 0.2 only.
    Quickjs,
}

/// Whether a JavaScript plugin targets `meow:bot` 0.2 (its imports name `@0.2.x`).
fn targets_v02(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("bot.js")).is_ok_and(|js| js.contains("meow:bot/") && js.contains("@0.2."))
}

/// The world a Python or JavaScript plugin is built against: `mqtt-bot` when it implements the
/// `mqtt-handler` export (a `class MqttHandler` in app.py, an `mqttHandler` export in bot.js),
/// else `bot`.
fn world(source: Source, dir: &Path) -> &'static str {
    let (file, mark) = match source {
        Source::Python => ("app.py", "class MqttHandler"),
        _ => ("bot.js", "mqttHandler"),
    };
    let handles = std::fs::read_to_string(dir.join(file)).is_ok_and(|code| code.contains(mark));
    if handles { "mqtt-bot" } else { "bot" }
}

/// How a WASM plugin's folder is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Rust,
    Python,
    Js,
    /// A component built elsewhere: the manifest's entry, in the folder.
    Prebuilt,
}

impl Source {
    fn of(dir: &Path, entry: &str) -> anyhow::Result<Self> {
        Ok(if dir.join("Cargo.toml").is_file() {
            Source::Rust
        } else if dir.join("app.py").is_file() {
            Source::Python
        } else if dir.join("bot.js").is_file() {
            Source::Js
        } else if dir.join(entry).is_file() {
            Source::Prebuilt
        } else {
            bail!(
                "{}: nothing to build: a WASM plugin's folder holds a Cargo.toml (Rust), an app.py (Python), \
                 a bot.js (JavaScript) or the built component {entry} (see `meow plugin new --help`)",
                dir.display()
            )
        })
    }

    fn name(self) -> &'static str {
        match self {
            Source::Rust => "rust",
            Source::Python => "python",
            Source::Js => "js",
            Source::Prebuilt => "prebuilt",
        }
    }
}

/// Writes this binary's WIT (0.1, or with `v02` 0.2) under `build_dir`, for the tools that bind
/// to it.
fn wit_dir(build_dir: &Path, v02: bool) -> anyhow::Result<PathBuf> {
    let dir = std::path::absolute(build_dir.join(if v02 { "wit-0.2" } else { "wit" }))?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = if v02 { WIT_V02 } else { WIT };
    std::fs::write(dir.join("meow-bot.wit"), text).with_context(|| format!("writing {}", dir.display()))?;
    Ok(dir)
}

/// `tool`, from the plugin's own `node_modules/.bin` or the PATH.
fn find_tool(dir: &Path, tool: &str) -> Option<PathBuf> {
    let local = dir.join("node_modules/.bin").join(tool);
    if local.is_file() {
        return Some(local);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

/// Runs a component tool in `dir`; its error output, if it fails, says why.
fn run_tool(dir: &Path, tool: &str, install: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let Some(path) = find_tool(dir, tool) else {
        bail!(
            "building {} needs {tool}, which is not installed: {install}",
            dir.display()
        );
    };
    let output = Command::new(&path)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let out = String::from_utf8_lossy(&output.stdout);
        let said: Vec<&str> = err
            .lines()
            .chain(out.lines())
            // Stack frames and the Node.js banner say nothing about the plugin.
            .filter(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with("at ") && !l.starts_with("Node.js v")
            })
            .collect();
        let tail = said[said.len().saturating_sub(6)..].join("\n  ");
        bail!("{tool} could not build {}:\n  {tail}", dir.display());
    }
    Ok(())
}

/// Builds a Python (`app.py`, componentize-py) or JavaScript (`bot.js`, componentize-js with its
/// default features, or componentize-qjs) plugin into `<build_dir>/<name>.wasm`.
fn component_build(
    source: Source,
    dir: &Path,
    build_dir: &Path,
    name: &str,
    engine: JsEngine,
) -> anyhow::Result<PathBuf> {
    let v02 = source == Source::Js && targets_v02(dir);
    if source == Source::Js && engine == JsEngine::Quickjs && !v02 {
        bail!(
            "{}: QuickJS builds meow:bot 0.2 only (its own export is named `init`): import \
             'meow:bot/…@0.2.1' and export `start` instead of `init`",
            dir.display()
        );
    }
    let wit = wit_dir(build_dir, v02)?;
    let world = world(source, dir);
    let out = std::path::absolute(build_dir.join(format!("{name}.wasm")))?;
    let (w, o) = (wit.as_os_str(), out.as_os_str());
    let (tool, install, args): (_, _, Vec<&std::ffi::OsStr>) = match source {
        Source::Python => (
            "componentize-py",
            "pip install componentize-py",
            [
                "-d".as_ref(),
                w,
                "-w".as_ref(),
                world.as_ref(),
                "componentize".as_ref(),
                "app".as_ref(),
                "-o".as_ref(),
                o,
            ]
            .into(),
        ),
        _ if engine == JsEngine::Quickjs => (
            "componentize-qjs",
            "npm install -g componentize-qjs (or in the plugin's folder, without -g)",
            [
                "--wit".as_ref(),
                w,
                "--js".as_ref(),
                "bot.js".as_ref(),
                "--world".as_ref(),
                world.as_ref(),
                // Our host calls plugins synchronously (no component-model async ABI).
                "--sync".as_ref(),
                "-o".as_ref(),
                o,
            ]
            .into(),
        ),
        _ => (
            "componentize-js",
            "npm install -g @bytecodealliance/componentize-js (or in the plugin's folder, without -g)",
            [
                "bot.js".as_ref(),
                "--wit".as_ref(),
                w,
                "--world-name".as_ref(),
                world.as_ref(),
                "-o".as_ref(),
                o,
            ]
            .into(),
        ),
    };
    run_tool(dir, tool, install, &args)?;
    Ok(out)
}

/// Copies `from` to `to`, unless they are the same file (`--out` naming the plugin's own
/// parent folder): copying a file onto itself would empty it.
fn copy_into(from: &Path, to: &Path) -> anyhow::Result<()> {
    let same = matches!((std::fs::canonicalize(from), std::fs::canonicalize(to)), (Ok(a), Ok(b)) if a == b);
    if !same {
        std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Builds (WASM) or copies (Lua) each plugin into a pinned bundle under `out`.
pub fn build(sources: &[PathBuf], out: &Path, engine: JsEngine) -> anyhow::Result<Vec<String>> {
    let mut dirs = Vec::new();
    for s in sources {
        find_plugins(s, 2, &mut dirs);
    }
    if dirs.is_empty() {
        bail!("no plugin found (a plugin is a folder with a plugin.yaml)");
    }
    let build_dir = out.join(".build");
    let mut done = Vec::new();
    for dir in dirs {
        let (manifest, dir, file) = Manifest::read(&dir)?;
        let (entry, kind) = match manifest.kind {
            Kind::Wasm => {
                let source = Source::of(&dir, &manifest.entry)?;
                // Rust keeps cargo's target folder where it always was (a warm cache).
                let scratch = match source {
                    Source::Rust => build_dir.clone(),
                    _ => build_dir.join(source.name()),
                };
                let built = match source {
                    Source::Rust => cargo_build_wasm(&dir, &scratch)?,
                    Source::Python | Source::Js => component_build(source, &dir, &scratch, &manifest.name, engine)?,
                    Source::Prebuilt => dir.join(&manifest.entry),
                };
                (built, source.name())
            }
            Kind::Lua => (dir.join(&manifest.entry), ""),
        };
        let bundle = out.join(&manifest.name);
        std::fs::create_dir_all(&bundle).with_context(|| format!("creating {}", bundle.display()))?;
        copy_into(&entry, &bundle.join(&manifest.entry))?;
        copy_into(&file, &bundle.join("plugin.yaml"))?;
        let hash = meow_plugin::pin(&bundle)?;
        let size = std::fs::metadata(bundle.join(&manifest.entry))
            .map(|m| m.len())
            .unwrap_or(0);
        done.push(format!(
            "{} {} ({}{kind}, {} KiB, sha256 {}…) -> {}",
            manifest.name,
            manifest.version,
            if manifest.kind == Kind::Wasm { "wasm, " } else { "lua" },
            size / 1024,
            &hash[..12],
            bundle.display()
        ));
    }
    Ok(done)
}

/// One line about a plugin instance.
pub fn instance_line(i: &meow_runtime::views::InstanceView) -> String {
    let s = &i.status;
    let state = match (&s.broken, s.running, s.compiling) {
        (Some(_), ..) => "broken: not started again until `meow plugin reload` brings a new version",
        (None, true, _) => "running",
        (None, false, true) => "compiling (the first start of this version)",
        (None, false, false) => "restarting",
    };
    let last = s
        .last_stop
        .as_ref()
        .map(|l| format!(", last stopped: {l}"))
        .unwrap_or_default();
    let dropped = if s.dropped > 0 {
        format!(", {} events dropped (queue full)", s.dropped)
    } else {
        String::new()
    };
    format!(
        "{:<16} {:<20} {state}, {} events, {} restarts{dropped}{last}",
        i.instance, i.plugin, s.handled, s.restarts
    )
}

/// Prints the answer to `meow plugin list` or `reload`.
pub fn show(
    r: &mut crate::cmd_home::Reply,
    cmd: &crate::cli::PluginCmd,
    resp: meow_runtime::control::Response,
) -> anyhow::Result<()> {
    use meow_runtime::control::Response;
    match (cmd, resp) {
        (crate::cli::PluginCmd::List(a), Response::Plugins(list)) => {
            if a.json {
                return r.json(&list);
            }
            for i in &list {
                r.line(instance_line(i));
            }
        }
        (_, Response::PluginReloaded { name, version }) => r.line(format!("reloaded {name} (version {version})")),
        (_, other) => bail!("internal: unexpected answer {other:?}"),
    }
    Ok(())
}
