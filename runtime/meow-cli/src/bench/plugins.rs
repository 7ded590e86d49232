//! `meow bench plugins`: the cost of handing one event to a plugin, and the start-up time of
//! `meow run` with ten plugin instances.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meow_plugin::{Engine, Event, Host, Limits, MessageEvent, Plugin};
use meow_testkit::NullServices as Null;

use super::Samples;

fn message(size: usize) -> Event {
    let body = vec![b'x'; size];
    Event::Message(MessageEvent {
        id: "0123456789abcdef0123456789abcdef".into(),
        sender: "alice".into(),
        content_type: "text".into(),
        text: Some(String::from_utf8(body.clone()).unwrap_or_default()),
        body,
        sent_at: 1_800_000_000_000,
        group: None,
        automatic: false,
        reply_to: None,
    })
}

fn lua_plugin(name: &str, source: &str) -> Plugin {
    Plugin {
        manifest: meow_plugin::Manifest {
            name: name.into(),
            version: "0".into(),
            kind: meow_plugin::Kind::Lua,
            entry: "x.lua".into(),
            sha256: None,
            description: None,
            capabilities: vec![],
            config: Default::default(),
        },
        dir: PathBuf::new(),
        code: source.as_bytes().to_vec(),
        sha256: String::new(),
    }
}

fn measure(engine: &dyn Engine, plugin: &Plugin, config: &str, events: usize, size: usize) -> anyhow::Result<Samples> {
    let host = Host::new(
        "bench",
        [meow_plugin::Capability::Messaging, meow_plugin::Capability::Kv],
        Arc::new(Null),
    );
    let mut inst = engine
        .instantiate(plugin, host, Limits::default())
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    inst.init(config).map_err(|f| anyhow::anyhow!("{f}"))?;
    let ev = message(size);
    for _ in 0..events / 10 {
        let _ = inst.handle(&ev);
    }
    let mut s = Samples::default();
    for _ in 0..events {
        let t = Instant::now();
        inst.handle(&ev).map_err(|f| anyhow::anyhow!("{f}"))?;
        s.0.push(t.elapsed().as_nanos() as u64);
    }
    Ok(s)
}

fn report(name: &str, s: &Samples) {
    // Samples are in ns here: quantile_ms of ns values reads as µs.
    println!(
        "{name:<44} p50 {:>6.2} µs   p99 {:>6.2} µs",
        s.quantile_ms(0.5),
        s.quantile_ms(0.99)
    );
}

/// Start-up of `meow run` with ten instances; returns (cold, warm) times.
fn startup(bundles: &Path, instances: usize) -> anyhow::Result<(Duration, Duration)> {
    let base = std::env::temp_dir().join(format!("meow-bench-startup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let home = base.join("home");
    let node = meow_node::Node::init(
        &home,
        b"bench",
        meow_node::InitOptions {
            kdf: meow_proto::crypto::KdfParams::TESTING,
            display_name: None,
            decoys: true,
        },
    )?;
    drop(node);
    let mut yaml = format!(
        "version: 1\nserver:\n  listen: 127.0.0.1:0\nplugin_dirs: [{}]\nplugins:\n",
        bundles.display()
    );
    for i in 0..instances {
        let plugin = if i % 2 == 0 { "echo" } else { "responder" };
        yaml.push_str(&format!(
            "  - {{ name: {plugin}-{i}, plugin: {plugin}, grant: [messaging, kv] }}\n"
        ));
    }
    let cfg_path = base.join("meow.yaml");
    std::fs::write(&cfg_path, yaml)?;
    let mut times = Vec::new();
    for _ in 0..2 {
        let cfg = meow_runtime::RunConfig::load(&cfg_path)?;
        let node = meow_node::Node::open(&home, b"bench")?;
        let t = Instant::now();
        let running = smol::block_on(
            meow_runtime::Runtime::builder(&home, node, cfg)
                .engines(crate::engines(&home))
                .start(),
        )?;
        while running.instances().iter().any(|i| !i.status.running) {
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(t.elapsed());
        smol::block_on(running.shutdown())?;
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok((times[0], times[1]))
}

/// Runs the plugin benchmarks.
pub fn run(bundles: &Path, events: usize, size: usize) -> anyhow::Result<()> {
    let bundles = &bundles
        .canonicalize()
        .with_context(|| format!("{} (run `meow plugin build plugins` first)", bundles.display()))?;
    println!(
        "per-event dispatch: {events} message events of {size} bytes each, handled in one instance, timed one by one"
    );
    let wasm = meow_wasm::WasmEngine::new(None)?;
    let noop = Plugin::load(&bundles.join("spin"))
        .context("the spin test plugin (a no-op for other messages): run `meow plugin build plugins` first")?;
    report("wasm  no-op handler", &measure(&wasm, &noop, "{}", events, size)?);
    let echo = Plugin::load(&bundles.join("echo")).context("the echo plugin: run `meow plugin build plugins` first")?;
    report(
        "wasm  echo (formats and replies: 1 host call)",
        &measure(&wasm, &echo, r#"{"prefix":"echo: ","count":false}"#, events, size)?,
    );
    let lua = meow_lua::LuaEngine;
    report(
        "lua   no-op handler",
        &measure(
            &lua,
            &lua_plugin("noop", "function on_message(m) end"),
            "{}",
            events,
            size,
        )?,
    );
    let lua_echo = lua_plugin("echo", "function on_message(m) meow.reply(m, 'echo: ' .. m.text) end");
    report(
        "lua   echo (formats and replies: 1 host call)",
        &measure(&lua, &lua_echo, "{}", events, size)?,
    );
    let (cold, warm) = startup(bundles, 10)?;
    println!(
        "meow run start-up with 10 instances (5 wasm echo, 5 lua responder): cold cache {:.0} ms, warm cache {:.0} ms",
        cold.as_secs_f64() * 1000.0,
        warm.as_secs_f64() * 1000.0
    );
    Ok(())
}
