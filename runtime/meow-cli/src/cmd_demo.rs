//! `meow demo`: the main job in one command, with no setup. Three homes in a demo folder — a hub
//! running the runtime (embedded server, the echo and responder plugins, the sample recipes), a
//! simulated sensor, and an owner — and the flow as it happens: readings arriving, a recipe
//! firing an alert, plugins replying. It ends by itself, or on Ctrl-C, with a summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::FutureExt;
use meow_node::sync::{self, Delivery};
use meow_node::{InitOptions, Node, NodeEvent, Origin};
use meow_proto::crypto::KdfParams;
use smol::lock::Mutex;

use meow_runtime::config::{EmbeddedServer, InstanceConfig, RunConfig};
use meow_runtime::{Runtime, RuntimeEvent};

use crate::cli::DemoArgs;

const PASSWORD: &str = "demo";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the example plugins if their bundles are missing; returns the plugins available.
fn ensure_plugins(bundles: &Path) -> Vec<&'static str> {
    let mut ok = Vec::new();
    for name in ["responder", "echo"] {
        if bundles.join(name).join("plugin.yaml").exists() {
            ok.push(name);
            continue;
        }
        println!(
            "building the {name} plugin into {} (first run only)…",
            bundles.display()
        );
        let src = [repo().join("plugins").join(name)];
        let mut built = crate::cmd_plugin::build(&src, bundles, crate::cmd_plugin::JsEngine::Starlingmonkey);
        if let Err(e) = &built
            && e.to_string().contains("wasm32-wasip2")
        {
            println!("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)…");
            let _ = std::process::Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .status();
            built = crate::cmd_plugin::build(&src, bundles, crate::cmd_plugin::JsEngine::Starlingmonkey);
        }
        match built {
            Ok(_) => ok.push(name),
            Err(e) => println!("the {name} plugin could not be built ({e:#}); the demo goes on without it"),
        }
    }
    ok
}

fn init(dir: &Path, name: &str) -> anyhow::Result<Mutex<Node>> {
    let opts = InitOptions {
        kdf: KdfParams::TESTING,
        display_name: Some(name.into()),
        decoys: true,
    };
    Ok(Mutex::new(Node::init(&dir.join(name), PASSWORD.as_bytes(), opts)?))
}

struct Feed {
    start: Instant,
}

impl Feed {
    fn say(&self, who: &str, what: &str) {
        println!("[{:>5.1}s] {who:<16} {what}", self.start.elapsed().as_secs_f64());
    }
}

#[derive(Default)]
struct Counts {
    readings_sent: AtomicU64,
    readings_received: AtomicU64,
    alerts: AtomicU64,
    owner_received: AtomicU64,
    recipe_steps: AtomicU64,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let bundles = args.plugins.clone().unwrap_or_else(|| repo().join("target/plugins"));
    let plugins = ensure_plugins(&bundles);
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("meow-demo-{}", std::process::id())),
    };
    if dir.join("hub").exists() {
        anyhow::bail!(
            "{} already holds a demo: remove it or choose another --dir",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    smol::block_on(demo(&dir, &bundles, &plugins, Duration::from_secs(args.seconds)))
}

fn config(dir: &Path, bundles: &Path, plugins: &[&str], port: u16, with_recipes: bool) -> RunConfig {
    let recipes = repo().join("recipes");
    let files: Vec<String> = ["sensor-alert.yaml", "forward.yaml", "daily-summary.yaml"]
        .iter()
        .map(|f| recipes.join(f).display().to_string())
        .chain([repo().join("examples/demo/summary.yaml").display().to_string()])
        .collect();
    RunConfig {
        server: EmbeddedServer {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            ..EmbeddedServer::default()
        },
        plugin_dirs: vec![bundles.to_owned()],
        plugins: plugins
            .iter()
            .map(|p| InstanceConfig {
                name: (*p).to_owned(),
                plugin: (*p).to_owned(),
                grant: vec![meow_plugin::Capability::Messaging, meow_plugin::Capability::Kv],
                config: Default::default(),
                limits: Default::default(),
                accept_automatic: false,
                sync: false,
            })
            .collect(),
        recipes: if with_recipes { files } else { Vec::new() },
        poll_wait: "1s".into(),
        base: dir.to_owned(),
        ..RunConfig::default()
    }
}

async fn demo(dir: &Path, bundles: &Path, plugins: &[&str], length: Duration) -> anyhow::Result<()> {
    let feed = Arc::new(Feed { start: Instant::now() });
    let counts = Arc::new(Counts::default());
    println!("meow demo: three homes in {} (password \"{PASSWORD}\")", dir.display());
    drop(init(dir, "hub")?);
    let (sensor, owner) = (Arc::new(init(dir, "sensor")?), Arc::new(init(dir, "owner")?));

    let hub_dir = dir.join("hub");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let open_hub = || Node::open(&hub_dir, PASSWORD.as_bytes());

    // First the contacts: the hub invites the sensor and the owner, they answer through the hub's
    // server. (Recipes name these contacts, so they load once the contacts exist.)
    let first = Runtime::builder(&hub_dir, open_hub()?, config(dir, bundles, plugins, port, false))
        .engines(crate::engines(&hub_dir))
        .start()
        .await?;
    let card = first
        .server_card()
        .cloned()
        .context("the embedded server did not start")?;
    let ev_rx = first.subscribe();
    for (name, node) in [("sensor", &sensor), ("owner", &owner)] {
        node.lock().await.add_server(&card.to_text())?;
        let invitation = first.node().lock().await.invite(name, false)?;
        node.lock().await.accept(invitation.to_text().as_bytes(), Some("hub"))?;
        sync::flush_outbox(node, false).await?;
    }
    let mut added = 0;
    while added < 2 {
        let ev = async { ev_rx.recv().await.ok() }
            .or(async {
                smol::Timer::after(Duration::from_secs(15)).await;
                None
            })
            .await
            .context("the hub did not receive the answer cards")?;
        if let RuntimeEvent::Node(NodeEvent::ContactAdded { name, .. }) = ev {
            feed.say(
                "hub",
                &format!("+ contact {name} (its answer card arrived through the hub's mailbox)"),
            );
            added += 1;
        }
    }
    first.shutdown().await?;

    // Then the runtime with everything.
    let running = Runtime::builder(&hub_dir, open_hub()?, config(dir, bundles, plugins, port, true))
        .engines(crate::engines(&hub_dir))
        .start()
        .await?;
    let recipes: Vec<String> = running.recipes().into_iter().map(|r| r.name).collect();
    println!("  hub:    runtime with its in-process server on {}", card.address);
    println!(
        "          plugins: {}",
        running
            .instances()
            .iter()
            .map(|i| format!("{} ({})", i.instance, i.plugin))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("          recipes: {}", recipes.join(", "));
    println!("  sensor: reports a reading every second (a heat spike comes after a few)");
    println!("  owner:  a person: receives alerts, talks to the hub's plugins\n");
    let ev_rx = running.subscribe();

    let mut tasks = Vec::new();
    let (f, c) = (feed.clone(), counts.clone());
    tasks.push(smol::spawn(async move {
        while let Ok(ev) = ev_rx.recv().await {
            match ev {
                RuntimeEvent::Node(NodeEvent::Message(item)) if item.from == "sensor" => {
                    c.readings_received.fetch_add(1, Ordering::Relaxed);
                }
                RuntimeEvent::RecipeStep { recipe, step } => {
                    c.recipe_steps.fetch_add(1, Ordering::Relaxed);
                    if recipe == "sensor-alert" && step.what.starts_with("send") {
                        c.alerts.fetch_add(1, Ordering::Relaxed);
                    }
                    f.say(
                        &format!("recipe {recipe}"),
                        &format!("{} -> {}", step.what, step.outcome),
                    );
                }
                _ => {}
            }
        }
    }));
    let (f, c, o) = (feed.clone(), counts.clone(), owner.clone());
    tasks.push(smol::spawn(async move {
        loop {
            match sync::fetch(&o, Duration::from_secs(1)).await {
                Ok(report) => {
                    for e in report.events {
                        if let NodeEvent::Message(item) = e {
                            c.owner_received.fetch_add(1, Ordering::Relaxed);
                            let who = match &item.origin {
                                Origin::Broadcast { .. } => "broadcast → owner".to_owned(),
                                _ => format!("{} → owner", item.from),
                            };
                            f.say(&who, &String::from_utf8_lossy(&item.content));
                        }
                    }
                }
                Err(e) => f.say("owner", &format!("cannot fetch: {e}")),
            }
        }
    }));
    let (f, c, s) = (feed.clone(), counts.clone(), sensor.clone());
    tasks.push(smol::spawn(async move {
        let mut sim = crate::cmd_sensor::Simulator::new(7, 5);
        loop {
            let (_, reading) = sim.next_reading();
            match crate::cmd_sensor::report(&s, "hub", &reading).await {
                Ok((size, Delivery::Delivered { .. })) => {
                    c.readings_sent.fetch_add(1, Ordering::Relaxed);
                    f.say(
                        "sensor → hub",
                        &format!("{reading}   ({size}-byte envelope, LoRa class)"),
                    );
                }
                Ok((_, Delivery::Queued { reason })) => f.say("sensor", &format!("reading queued: {reason}")),
                Ok((_, Delivery::Handed)) => {
                    f.say("sensor", "reading handed to the device that holds the conversation")
                }
                Err(e) => f.say("sensor", &format!("cannot report: {e:#}")),
            }
            smol::Timer::after(Duration::from_secs(1)).await;
        }
    }));
    let (f, o) = (feed.clone(), owner.clone());
    tasks.push(smol::spawn(async move {
        for (at, text) in [
            (3, "ping"),
            (7, "stats"),
            (11, "fwd please water the plants"),
            (14, "uptime"),
        ] {
            smol::Timer::at(f.start + Duration::from_secs(at)).await;
            f.say("owner → hub", text);
            if let Err(e) = sync::send(&o, "hub", meow_proto::ContentType::TEXT, text.as_bytes().to_vec()).await {
                f.say("owner", &format!("cannot send: {e}"));
            }
        }
    }));

    let interrupted = async {
        use futures_lite::StreamExt;
        if let Ok(mut s) = async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
            let _ = s.next().await;
        } else {
            futures_lite::future::pending::<()>().await;
        }
        true
    }
    .or(async {
        smol::Timer::at(feed.start + length).await;
        false
    })
    .await;
    for t in tasks {
        t.cancel().await;
    }
    running.shutdown().await?;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "\n{}summary after {:.0}s:",
        if interrupted { "interrupted; " } else { "" },
        feed.start.elapsed().as_secs_f64()
    );
    println!(
        "  {} readings sent by the sensor, {} received by the hub",
        n(&counts.readings_sent),
        n(&counts.readings_received)
    );
    println!(
        "  {} temperature alert(s) sent by the sensor-alert recipe; {} recipe steps in all",
        n(&counts.alerts),
        n(&counts.recipe_steps)
    );
    println!(
        "  {} messages received by the owner (alerts, summaries, plugin replies)",
        n(&counts.owner_received)
    );
    println!("  the homes stay in {} (password \"{PASSWORD}\"): try", dir.display());
    println!(
        "    MEOW_HOME={} MEOW_PASSWORD={PASSWORD} meow inbox --all",
        dir.join("owner").display()
    );
    println!(
        "    MEOW_HOME={} MEOW_PASSWORD={PASSWORD} meow recipe trace sensor-alert",
        dir.join("hub").display()
    );
    Ok(())
}
