//! `meow plugin new NAME --lang rust|lua|python|js`: writes a working hello plugin from the
//! templates in `sdk/templates/` (carried in the binary), ready for `meow plugin build`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A plugin language `meow plugin new` and `meow plugin build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, compiled with cargo for wasm32-wasip2 against sdk/rust.
    Rust,
    /// Lua 5.4, run by the Lua host: nothing to build.
    Lua,
    /// Python, made into a component by componentize-py.
    Python,
    /// JavaScript, made into a component by componentize-js (StarlingMonkey).
    Js,
}

impl Lang {
    /// The files of this language's template: (path in the plugin, text).
    fn files(self) -> &'static [(&'static str, &'static str)] {
        macro_rules! t {
            ($lang:literal, $file:literal) => {
                (
                    $file,
                    include_str!(concat!("../../../sdk/templates/", $lang, "/", $file)),
                )
            };
        }
        match self {
            Lang::Rust => &[
                t!("rust", "Cargo.toml"),
                t!("rust", "src/lib.rs"),
                t!("rust", "plugin.yaml"),
            ],
            Lang::Lua => &[t!("lua", "main.lua"), t!("lua", "plugin.yaml")],
            Lang::Python => &[
                t!("python", "app.py"),
                t!("python", "meow_commands.py"),
                t!("python", "plugin.yaml"),
            ],
            Lang::Js => &[t!("js", "bot.js"), t!("js", "commands.js"), t!("js", "plugin.yaml")],
        }
    }
}

/// A plugin name: what manifests accept, so the scaffold pins and loads as it is.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("{name:?} is not a plugin name: use lowercase letters, digits, '-' and '_', starting with a letter");
    }
    Ok(())
}

/// Where `sdk/rust` is, written as the template's dependency path: found above the new plugin
/// (a plugin made inside a checkout of meow), else the checkout this binary was built from.
fn sdk_path(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    for up in abs.ancestors().skip(1) {
        if up.join("sdk/rust/Cargo.toml").is_file() {
            return up.join("sdk/rust").display().to_string();
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust");
    std::fs::canonicalize(&built_from)
        .unwrap_or(built_from)
        .display()
        .to_string()
}

/// Writes the template of `lang` into `dir` (which must not exist or be empty). Returns the
/// files written.
pub fn scaffold(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} is not empty: choose another folder with --dir", dir.display());
    }
    let sdk = if lang == Lang::Rust {
        sdk_path(dir)
    } else {
        String::new()
    };
    let mut written = Vec::new();
    for (file, text) in lang.files() {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk);
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// What to do next, for the person who just ran `meow plugin new`.
pub fn next_steps(name: &str, lang: Lang, dir: &Path) -> String {
    let d = dir.display();
    let mut build = match lang {
        Lang::Lua => format!("  meow plugin pin {d}                      # after each edit\n"),
        _ => format!("  meow plugin build {d} --out {d}/../built\n"),
    };
    // The path the template was given (sdk_path is what scaffold wrote) may name no SDK when
    // this binary was built elsewhere.
    if lang == Lang::Rust && !Path::new(&sdk_path(dir)).join("Cargo.toml").is_file() {
        build.insert_str(
            0,
            "  (first point meow-sdk's path in Cargo.toml at sdk/rust of a meow checkout)\n",
        );
    }
    let plugin_dir = if lang == Lang::Lua {
        d.to_string()
    } else {
        format!("{d}/../built")
    };
    format!(
        "next:\n{build}  then in meow.yaml:\n    plugin_dirs: [{plugin_dir}]\n    plugins:\n      - {{ name: {name}, plugin: {name}, grant: [messaging, kv] }}\n  and `meow run`; a contact who sends \"hello\" gets an answer."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_writes_a_manifest_the_runtime_reads() {
        for lang in [Lang::Rust, Lang::Lua, Lang::Python, Lang::Js] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("hello-bot");
            let files = scaffold("hello-bot", lang, &dir).unwrap();
            assert!(files.iter().all(|f| f.is_file()));
            let text = std::fs::read_to_string(dir.join("plugin.yaml")).unwrap();
            assert!(!text.contains("{{"), "{lang:?}: a placeholder is left: {text}");
            assert!(text.contains("name: hello-bot"), "{text}");
        }
    }

    #[test]
    fn a_folder_with_files_or_a_bad_name_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep.txt"), "mine").unwrap();
        let e = scaffold("ok", Lang::Lua, tmp.path()).unwrap_err().to_string();
        assert!(e.contains("is not empty"), "{e}");
        for bad in ["", "Hello", "9lives", "a b", "../x"] {
            let e = scaffold(bad, Lang::Lua, &tmp.path().join("new"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not a plugin name"), "{bad:?}: {e}");
        }
        assert_eq!(std::fs::read_to_string(tmp.path().join("keep.txt")).unwrap(), "mine");
    }
}
