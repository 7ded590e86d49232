//! The plugin guide (docs/PLUGINS.md) works as written: the plugin files, the meow.yaml lines
//! and the expected answers are read from the guide itself, so the guide cannot drift from the
//! code without this test failing.

use std::path::Path;

use crate::support::{Daemon, Home, TempDir, hub_with_contacts, repo, wait_for_text};

fn guide() -> String {
    std::fs::read_to_string(repo().join("docs/PLUGINS.md")).unwrap()
}

/// The body of the first fenced code block after the first line containing `marker`.
fn block_after(doc: &str, marker: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in the guide"));
    let rest = &doc[at..];
    let fence = rest.find("```").unwrap();
    let body = fence + rest[fence..].find('\n').unwrap() + 1;
    let end = body + rest[body..].find("```").unwrap();
    rest[body..end].to_owned()
}

/// The body of the fenced code block that contains `marker`.
fn block_with(doc: &str, marker: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in the guide"));
    let open = doc[..at].rfind("```").unwrap();
    let body = open + doc[open..].find('\n').unwrap() + 1;
    let end = at + doc[at..].find("```").unwrap();
    doc[body..end].to_owned()
}

/// What the guide says the bot answers: the text after `bot: ` on the first line that has it,
/// from the line containing `marker` on.
fn expected_answer(doc: &str, marker: &str) -> String {
    let at = doc
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in the guide"));
    let line = doc[at..].lines().find(|l| l.contains("bot: ")).unwrap();
    line.split_once("bot: ").unwrap().1.trim().to_owned()
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
    let dir = tmp.path().join("my-plugins/greeter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("greeter.lua"),
        block_after(&doc, "`my-plugins/greeter/greeter.lua`:"),
    )
    .unwrap();
    std::fs::write(
        dir.join("plugin.yaml"),
        block_after(&doc, "`my-plugins/greeter/plugin.yaml`:"),
    )
    .unwrap();
    hub.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    let instance = block_after(&doc, "Add an instance to `meow.yaml`");
    let answer = expected_answer(&doc, "meow send bot hi");
    assert_eq!(answer, "Salut, me! (greeting #1)");
    run_and_ask(&hub, &homes[0], &config, &base, &instance, "hi", &answer);
}

#[test]
fn the_rust_plugin_of_the_guide_builds_and_runs_as_written() {
    let doc = guide();
    let tmp = TempDir::new("guide-rust");
    let (hub, homes, config, base) = hub_with_contacts(&tmp, &["me"]);
    let dir = tmp.path().join("my-plugins/shout");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    // The guide's Cargo.toml names the SDK by a path relative to this repository.
    let sdk = repo().join("sdk/rust");
    let cargo_toml = block_after(&doc, "`my-plugins/shout/Cargo.toml`:")
        .replace("\"../../sdk/rust\"", &format!("{:?}", sdk.display().to_string()));
    assert!(cargo_toml.contains(&sdk.display().to_string()), "{cargo_toml}");
    std::fs::write(dir.join("Cargo.toml"), cargo_toml).unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        block_after(&doc, "`my-plugins/shout/src/lib.rs`:"),
    )
    .unwrap();
    std::fs::write(
        dir.join("plugin.yaml"),
        block_after(&doc, "`my-plugins/shout/plugin.yaml`:"),
    )
    .unwrap();

    let build = block_with(&doc, "meow plugin build my-plugins/shout");
    let args: Vec<&str> = build.split_whitespace().skip(1).collect();
    let out = Home {
        dir: tmp.path().join("none"),
        password: "x".into(),
    }
    .meow_in(tmp.path(), &args);
    assert!(out.ok().contains("built shout 0.1.0 (wasm"), "{}", out.stdout);

    let instance = block_with(&doc, "my-plugins/built]");
    let answer = expected_answer(&doc, "meow send bot \"hey there\"");
    assert_eq!(answer, "HEY THERE");
    run_and_ask(&hub, &homes[0], &config, &base, &instance, "hey there", &answer);
}
