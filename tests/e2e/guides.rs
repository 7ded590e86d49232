//! The plugin guide (docs/PLUGINS.md) works as written: the plugin files, the meow.yaml lines
//! and the expected answers are read from the guide itself, so the guide cannot drift from the
//! code without this test failing.

use std::path::Path;

use crate::support::{Daemon, Home, TempDir, hub_with_contacts, repo, wait_for_text};

fn guide() -> String {
    std::fs::read_to_string(repo().join("docs/PLUGINS.md")).unwrap()
}

/// Where `marker` first appears in the guide.
fn find(doc: &str, marker: &str) -> usize {
    doc.find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in the guide"))
}

/// The body of the fenced code block whose opening fence is at `open`.
fn fenced(doc: &str, open: usize) -> String {
    let body = open + doc[open..].find('\n').unwrap() + 1;
    let end = body + doc[body..].find("```").unwrap();
    doc[body..end].to_owned()
}

/// The body of the first fenced code block after the first line containing `marker`.
fn block_after(doc: &str, marker: &str) -> String {
    let at = find(doc, marker);
    fenced(doc, at + doc[at..].find("```").unwrap())
}

/// The body of the fenced code block that contains `marker`.
fn block_with(doc: &str, marker: &str) -> String {
    fenced(doc, doc[..find(doc, marker)].rfind("```").unwrap())
}

/// What the guide says the bot answers: the text after `bot: ` on the first line that has it,
/// from the line containing `marker` on.
fn expected_answer(doc: &str, marker: &str) -> String {
    let line = doc[find(doc, marker)..].lines().find(|l| l.contains("bot: ")).unwrap();
    line.split_once("bot: ").unwrap().1.trim().to_owned()
}

/// Writes `file` (a path under `root`, as the guide names it) with the block the guide gives.
fn write_from_guide(doc: &str, root: &Path, file: &str) {
    let path = root.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, block_after(doc, &format!("`{file}`:"))).unwrap();
}

/// Runs a daemon on `hub` with the guide's instance lines, sends `text` from `me` and waits for
/// the answer the guide promises.
fn run_and_ask(hub: &Home, me: &Home, config: &Path, base: &str, instance: &str, text: &str, answer: &str) {
    std::fs::write(config, format!("{base}{instance}")).unwrap();
    let daemon = Daemon::start(hub, config);
    me.meow(&["send", "hub", text]).ok();
    wait_for_text(me, &format!("the guide's answer {answer:?}"), |t| t == answer);
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn the_lua_plugin_of_the_guide_runs_as_written() {
    let doc = guide();
    let tmp = TempDir::new("guide-lua");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["me"]);
    for file in ["greeter.lua", "plugin.yaml"] {
        write_from_guide(&doc, tmp.path(), &format!("my-plugins/greeter/{file}"));
    }
    let dir = tmp.path().join("my-plugins/greeter");
    hub.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    let instance = block_after(&doc, "Add an instance to `meow.yaml`");
    let answer = expected_answer(&doc, "meow send bot hi");
    assert_eq!(answer, "Salut, me! (greeting #1)");
    run_and_ask(&hub, &homes[0], &config, &base, &instance, "hi", &answer);
}

#[test]
fn the_rust_plugin_of_the_guide_builds_and_runs_as_written() {
    crate::support::plugins(); // the wasm32-wasip2 target, added if missing
    let doc = guide();
    let tmp = TempDir::new("guide-rust");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["me"]);
    for file in ["Cargo.toml", "src/lib.rs", "plugin.yaml"] {
        write_from_guide(&doc, tmp.path(), &format!("my-plugins/shout/{file}"));
    }
    // The guide's Cargo.toml names the SDK by a path relative to this repository.
    let cargo_toml = tmp.path().join("my-plugins/shout/Cargo.toml");
    let sdk = repo().join("sdk/rust").display().to_string();
    let text = std::fs::read_to_string(&cargo_toml).unwrap();
    let patched = text.replace("\"../../sdk/rust\"", &format!("{sdk:?}"));
    assert_ne!(patched, text, "the guide's Cargo.toml names ../../sdk/rust");
    std::fs::write(&cargo_toml, patched).unwrap();

    build_from_guide(&doc, &tmp, "shout");

    let instance = block_with(&doc, "my-plugins/built]");
    let answer = expected_answer(&doc, "meow send bot \"hey there\"");
    assert_eq!(answer, "HEY THERE");
    run_and_ask(&hub, &homes[0], &config, &base, &instance, "hey there", &answer);
}

/// Runs the guide's build command for the WASM plugin my-plugins/`name`, in `tmp`.
fn build_from_guide(doc: &str, tmp: &TempDir, name: &str) {
    let build = block_with(doc, &format!("meow plugin build my-plugins/{name}"));
    let args: Vec<&str> = build.split_whitespace().skip(1).collect();
    let out = crate::support::cli(tmp).meow_in(tmp.path(), &args);
    assert!(
        out.ok().contains(&format!("built {name} 0.1.0 (wasm")),
        "{}",
        out.stdout
    );
}

/// Builds the guide's plugin `name` (files `files` under my-plugins/NAME) with the guide's build
/// command, then runs it with the guide's instance line and checks the guide's answer to `text`.
fn build_and_ask(tag: &str, name: &str, files: &[&str], text: &str) {
    let doc = guide();
    let tmp = TempDir::new(tag);
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["me"]);
    for file in files {
        write_from_guide(&doc, tmp.path(), &format!("my-plugins/{name}/{file}"));
    }
    build_from_guide(&doc, &tmp, name);
    let instance = block_with(&doc, &format!("{{ name: {name}, plugin: {name}"));
    let answer = expected_answer(&doc, &format!("meow send bot \"{text}\""));
    std::fs::write(&config, format!("{base}{instance}")).unwrap();
    let daemon = Daemon::start(&hub, &config);
    homes[0].meow(&["send", "hub", text]).ok();
    crate::languages::wait_for_all(&homes[0], &daemon, &[answer]);
    assert!(
        daemon.log_text().contains(&format!("{name} ready")),
        "its stdout is in the log"
    );
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn the_python_plugin_of_the_guide_builds_and_runs_as_written() {
    if !crate::languages::tool_or_skip("componentize-py", "pip install componentize-py") {
        return;
    }
    build_and_ask("guide-python", "reverse", &["app.py", "plugin.yaml"], "stressed");
}

#[test]
fn the_javascript_plugin_of_the_guide_builds_and_runs_as_written() {
    if !crate::languages::tool_or_skip("componentize-js", "npm install -g @bytecodealliance/componentize-js") {
        return;
    }
    build_and_ask("guide-js", "words", &["bot.js", "plugin.yaml"], "one two three");
}
