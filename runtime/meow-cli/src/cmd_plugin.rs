//! `meow plugin build` and `meow plugin pin`: turn plugin sources into pinned bundles the runtime
//! loads (`<out>/<name>/plugin.yaml` with the entry file's SHA-256, plus the entry file).

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

/// Builds (WASM) or copies (Lua) each plugin into a pinned bundle under `out`.
pub fn build(sources: &[PathBuf], out: &Path) -> anyhow::Result<Vec<String>> {
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
        let entry = match manifest.kind {
            Kind::Wasm => cargo_build_wasm(&dir, &build_dir)?,
            Kind::Lua => dir.join(&manifest.entry),
        };
        let bundle = out.join(&manifest.name);
        std::fs::create_dir_all(&bundle).with_context(|| format!("creating {}", bundle.display()))?;
        std::fs::copy(&entry, bundle.join(&manifest.entry)).with_context(|| format!("copying {}", entry.display()))?;
        std::fs::copy(&file, bundle.join("plugin.yaml")).with_context(|| format!("copying {}", file.display()))?;
        let hash = meow_plugin::pin(&bundle)?;
        let size = std::fs::metadata(bundle.join(&manifest.entry))
            .map(|m| m.len())
            .unwrap_or(0);
        let kind = match manifest.kind {
            Kind::Wasm => "wasm",
            Kind::Lua => "lua",
        };
        done.push(format!(
            "{} {} ({kind}, {} KiB, sha256 {}…) -> {}",
            manifest.name,
            manifest.version,
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
    let state = match (&s.broken, s.running) {
        (Some(_), _) => "broken: not started again until `meow plugin reload` brings a new version",
        (None, true) => "running",
        (None, false) => "restarting",
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
