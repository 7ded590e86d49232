//! The runtime on the test kit's world: virtual time, an in-process network, a real server,
//! native handlers. Nothing sleeps: the clock moves when a test moves it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures_lite::FutureExt;
use meow_node::{Node, NodeEvent, sync};
use meow_plugin::{Capability, Event, Host};
use meow_proto::ContentType;
use meow_runtime::control::{Request, Response};
use meow_runtime::{RunConfig, Runtime, RuntimeEvent};
use meow_testkit::World;
use meow_testkit::sim::WorldServer;
use smol::lock::Mutex;

const START: u64 = 1_800_000_000_000;

/// Echoes every text, and counts what it handled.
struct Echo(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl meow_runtime::native::Handler for Echo {
    fn handle(&mut self, host: &Host, event: &Event) -> Result<(), String> {
        if let Event::Message(m) = event {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let text = m.text.as_deref().unwrap_or("");
            let answer = match text {
                "policy of owner?" => format!("plugin sees {:?}", host.contact_policy("owner")),
                _ => format!("echo: {text}"),
            };
            host.reply(&m.id, &answer).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

struct Setup {
    world: World,
    _server: WorldServer,
    runtime: Runtime,
    owner: Mutex<Node>,
    handled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// A bot runtime (a native echo handler and the given recipes and limits) and an owner home,
/// contacts of each other, on one world server.
async fn setup(yaml_extra: &str) -> Setup {
    let world = World::new(START, 11);
    let dir = tempfile::tempdir().unwrap();
    let server = world.server("hub", |_| {});
    let card = server.card().to_text();
    let bot = world.home(dir.path(), "bot", 1);
    let recipe_dir = dir.path().join("recipes");
    std::fs::create_dir_all(&recipe_dir).unwrap();
    let yaml = format!("version: 1\nserver: {{ enabled: false }}\nservers: [\"{card}\"]\npoll_wait: 25s\n{yaml_extra}");
    let cfg_path = dir.path().join("meow.yaml");
    std::fs::write(&cfg_path, yaml).unwrap();
    let cfg = RunConfig::load(&cfg_path).unwrap();
    let handled: std::sync::Arc<std::sync::atomic::AtomicUsize> = std::sync::Arc::default();
    let h = std::sync::Arc::clone(&handled);
    let runtime = Runtime::builder(&dir.path().join("bot"), bot, cfg)
        .clock(world.clock.shared())
        .native("echo", &[Capability::Messaging], move || Echo(h.clone()))
        .start()
        .await
        .unwrap();
    let owner = Mutex::new(world.home(dir.path(), "owner", 2));
    owner.lock().await.add_server(&card).unwrap();
    let events = runtime.subscribe();
    let Ok(Response::Invitation { card, .. }) = runtime
        .request(Request::Invite {
            name: "owner".into(),
            classical_start: false,
        })
        .await
    else {
        panic!("an invitation")
    };
    let accepted = owner.lock().await.accept(card.as_bytes(), Some("bot")).unwrap();
    assert!(matches!(accepted, meow_node::Accepted::Answered { .. }));
    sync::flush_outbox(&owner, false).await.unwrap();
    next(&events, |e| {
        matches!(e, RuntimeEvent::Node(NodeEvent::ContactAdded { .. }))
    })
    .await;
    Setup {
        world,
        _server: server,
        runtime,
        owner,
        handled,
        _dir: dir,
    }
}

/// The next event that `want` accepts (failing after 20 s of wall time: a guard, not a wait).
async fn next(rx: &smol::channel::Receiver<RuntimeEvent>, want: impl Fn(&RuntimeEvent) -> bool) -> RuntimeEvent {
    async {
        loop {
            let e = rx.recv().await.unwrap();
            if want(&e) {
                return e;
            }
        }
    }
    .or(async {
        smol::Timer::after(Duration::from_secs(20)).await;
        panic!("no such event within 20 s")
    })
    .await
}

/// The texts the owner receives next: fetches until some arrive (control messages such as the
/// version-2 accept come first and carry none), failing after 20 s of wall time. Each fetch
/// returns at once: a long poll would wait on the world's clock, which only the test moves.
/// After a second of wall time with nothing, the world's clock moves a second per round: a send
/// that met a connection the server closed during a jump of the clock retries on that clock.
async fn owner_texts(s: &Setup) -> Vec<String> {
    let wall = std::time::Instant::now();
    loop {
        let report = sync::fetch(&s.owner, Duration::ZERO).await.unwrap();
        let texts: Vec<String> = report
            .events
            .into_iter()
            .filter_map(|e| match e {
                NodeEvent::Message(m) => Some(String::from_utf8_lossy(&m.content).into_owned()),
                _ => None,
            })
            .collect();
        if !texts.is_empty() {
            return texts;
        }
        assert!(
            wall.elapsed() < Duration::from_secs(20),
            "no text for the owner within 20 s"
        );
        smol::Timer::after(Duration::from_millis(5)).await;
        if wall.elapsed() > Duration::from_secs(1) {
            s.world.clock.advance(Duration::from_secs(1));
        }
    }
}

#[test]
fn a_recipe_waits_an_hour_of_virtual_time_in_no_time() {
    smol::block_on(async {
        let recipe = "version: 1\nname: later\ntriggers: [message: { contains: remind }]\nactions:\n  - delay: 1h\n  - reply: { text: an hour later }\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("later.yaml");
        std::fs::write(&file, recipe).unwrap();
        let s = setup(&format!("recipes: [\"{}\"]\n", file.display())).await;
        let events = s.runtime.subscribe();
        let wall = std::time::Instant::now();
        sync::send(&s.owner, "bot", ContentType::TEXT, b"remind me".to_vec())
            .await
            .unwrap();
        next(
            &events,
            |e| matches!(e, RuntimeEvent::RecipeStep { step, .. } if step.what.starts_with("wait")),
        )
        .await;
        assert_eq!(
            owner_texts(&s).await,
            ["echo: remind me"],
            "the echo, not the reminder yet"
        );
        s.world.clock.advance(Duration::from_secs(3599));
        s.world.clock.advance(Duration::from_secs(1));
        let step = next(
            &events,
            |e| matches!(e, RuntimeEvent::RecipeStep { step, .. } if step.what.starts_with("reply")),
        )
        .await;
        let RuntimeEvent::RecipeStep { step, .. } = step else {
            unreachable!()
        };
        assert_eq!(
            step.at_ms,
            START + 3_600_000,
            "exactly an hour later on the world's clock"
        );
        assert_eq!(owner_texts(&s).await, ["an hour later"]);
        assert!(wall.elapsed() < Duration::from_secs(10), "{:?}", wall.elapsed());
        s.runtime.shutdown().await.unwrap();
    });
}

#[test]
fn a_fetch_by_another_command_still_reaches_the_handler_once() {
    smol::block_on(async {
        let s = setup("").await;
        for i in 0..5 {
            sync::send(&s.owner, "bot", ContentType::TEXT, format!("m{i}").into_bytes())
                .await
                .unwrap();
            // Someone reads the bot's inbox through the control API as the mail arrives.
            let r = s
                .runtime
                .request(Request::Inbox {
                    wait_secs: 0,
                    all: false,
                })
                .await
                .unwrap();
            assert!(matches!(r, Response::Inbox { .. }));
        }
        let mut got = Vec::new();
        while got.len() < 5 {
            got.extend(owner_texts(&s).await);
        }
        got.sort();
        assert_eq!(got, ["echo: m0", "echo: m1", "echo: m2", "echo: m3", "echo: m4"]);
        assert_eq!(s.handled.load(std::sync::atomic::Ordering::SeqCst), 5);
        s.runtime.shutdown().await.unwrap();
    });
}

#[test]
fn a_contact_flooding_the_bot_is_cut_at_its_incoming_rate() {
    smol::block_on(async {
        let s = setup("limits: { incoming_per_second: 1, incoming_burst: 3 }\n").await;
        let events = s.runtime.subscribe();
        for i in 0..10 {
            sync::send(&s.owner, "bot", ContentType::TEXT, format!("flood {i}").into_bytes())
                .await
                .unwrap();
        }
        // All ten are stored (the inbox shows them); three reach the handler.
        let mut stored = 0;
        while stored < 10 {
            if let Ok(Response::Inbox { items, .. }) = s
                .runtime
                .request(Request::Inbox {
                    wait_secs: 0,
                    all: true,
                })
                .await
            {
                stored = items.len();
            }
            if stored < 10 {
                next(&events, |e| matches!(e, RuntimeEvent::Node(NodeEvent::Message(_)))).await;
            }
        }
        assert_eq!(s.handled.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A second later, the next message goes through again.
        s.world.clock.advance(Duration::from_secs(1));
        sync::send(&s.owner, "bot", ContentType::TEXT, b"after a pause".to_vec())
            .await
            .unwrap();
        next(
            &events,
            |e| matches!(e, RuntimeEvent::Node(NodeEvent::Message(m)) if m.content == b"after a pause"),
        )
        .await;
        let mut got = Vec::new();
        while !got.iter().any(|t: &String| t == "echo: after a pause") {
            got.extend(owner_texts(&s).await);
        }
        assert_eq!(s.handled.load(std::sync::atomic::Ordering::SeqCst), 4);
        s.runtime.shutdown().await.unwrap();
    });
}

#[test]
fn the_typed_control_api_answers_in_process() {
    smol::block_on(async {
        let s = setup("").await;
        let Ok(Response::Contacts { contacts, .. }) = s.runtime.request(Request::Contacts).await else {
            panic!()
        };
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].name, "owner");
        let Ok(Response::Plugins(list)) = s.runtime.request(Request::PluginList).await else {
            panic!()
        };
        assert_eq!(list[0].instance, "echo");
        assert_eq!(list[0].plugin, "native");
        let err = s
            .runtime
            .request(Request::Send {
                to: "nobody".into(),
                text: "x".into(),
                reply_to: None,
            })
            .await
            .unwrap_err();
        assert!(err.message.contains("unknown contact"), "{err}");
        s.runtime.shutdown().await.unwrap();
    });
}

/// How the bot's runtime describes its conversation with the owner.
async fn protocol(s: &Setup) -> String {
    let Ok(Response::Contacts { contacts, .. }) = s.runtime.request(Request::Contacts).await else {
        panic!("contacts")
    };
    contacts[0].protocol.clone()
}

#[test]
fn conversations_post_quantum_false_gives_contacts_a_classical_start() {
    smol::block_on(async {
        let s = setup("conversations: { post_quantum: false }\n").await;
        assert!(protocol(&s).await.starts_with("v1"));
        // The bot speaks first: its own offer carries no X-Wing key (its card also asks the owner
        // for a classical start; meow-node tests that path).
        s.runtime
            .request(Request::Send {
                to: "owner".into(),
                text: "hello".into(),
                reply_to: None,
            })
            .await
            .unwrap();
        assert_eq!(owner_texts(&s).await, ["hello"]);
        sync::send(&s.owner, "bot", ContentType::TEXT, b"hi".to_vec())
            .await
            .unwrap();
        assert_eq!(owner_texts(&s).await, ["echo: hi"]);
        assert_eq!(protocol(&s).await, "v2 (double ratchet, classical start)");
        s.runtime.shutdown().await.unwrap();
    });
}

/// A contact's privacy policy is what plugins (`contact-policy`) and recipes (`trigger.policy`)
/// read, and it follows a change made through the control API.
#[test]
fn plugins_and_recipes_read_a_contacts_policy() {
    smol::block_on(async {
        let recipe = "version: 1\nname: policy\ntriggers: [message: { contains: policy }]\nactions:\n  - reply: { text: \"recipe sees {{ trigger.policy }}\" }\n";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, recipe).unwrap();
        let s = setup(&format!("recipes: [\"{}\"]\n", file.display())).await;
        let r = s
            .runtime
            .request(Request::SetPolicy {
                name: "owner".into(),
                policy: "direct-preferred".into(),
                hops: None,
                delay_ms: None,
                default: false,
            })
            .await
            .unwrap();
        assert!(
            matches!(r, Response::PolicySet { ref after, .. } if after == "direct"),
            "{r:?}"
        );
        sync::send(&s.owner, "bot", ContentType::TEXT, b"policy of owner?".to_vec())
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(owner_texts(&s).await);
        }
        got.sort();
        assert_eq!(got, ["plugin sees Some(\"direct\")", "recipe sees direct"]);
        s.runtime.shutdown().await.unwrap();
    });
}

/// `server: { relay: true }` in meow.yaml makes the embedded server a Matriochka relay: the
/// home's catalog, fetched from it, lists it as a relay of its own, trusted to start routes.
#[test]
fn an_embedded_server_with_relay_true_is_a_trusted_relay_in_the_catalog() {
    smol::block_on(async {
        // The system clock: the embedded server signs its descriptor on it.
        let dir = tempfile::tempdir().unwrap();
        let opts = meow_node::InitOptions {
            kdf: meow_proto::crypto::KdfParams::TESTING,
            display_name: Some("relayhome".into()),
            decoys: false,
        };
        let home = Node::init(&dir.path().join("relayhome"), b"pw", opts).unwrap();
        let cfg_path = dir.path().join("meow.yaml");
        std::fs::write(
            &cfg_path,
            "version: 1\nserver: { listen: \"127.0.0.1:0\", relay: true, name: relayhome }\n",
        )
        .unwrap();
        let cfg = RunConfig::load(&cfg_path).unwrap();
        let runtime = Runtime::builder(&dir.path().join("relayhome"), home, cfg)
            .start()
            .await
            .unwrap();
        let r = runtime.request(Request::ServerCatalog { refresh: true }).await.unwrap();
        let Response::Catalog { servers, fetched_ms } = r else {
            panic!("{r:?}")
        };
        assert!(fetched_ms > 0);
        assert_eq!(servers.len(), 1, "{servers:?}");
        let s = &servers[0];
        assert!(s.relays && s.mine && s.trusted, "{s:?}");
        assert_eq!(s.name, "relayhome");
        let Ok(Response::Status(status)) = runtime.request(Request::Status).await else {
            panic!("a status")
        };
        let relay = status.relay.expect("the relay's counters in the status");
        assert_eq!((relay.accepted, relay.held), (0, 0));
        runtime.shutdown().await.unwrap();
    });
}

/// A runtime of a home of its own, on `world`'s clock, with no server, no contact and
/// `yaml_extra` in its meow.yaml: ready for `.native(…)` and `.start()`.
fn lone_runtime(world: &World, dir: &std::path::Path, yaml_extra: &str) -> meow_runtime::RuntimeBuilder {
    let cfg_path = dir.join("meow.yaml");
    std::fs::write(
        &cfg_path,
        format!("version: 1\nserver: {{ enabled: false }}\n{yaml_extra}"),
    )
    .unwrap();
    let cfg = RunConfig::load(&cfg_path).unwrap();
    Runtime::builder(&dir.join("bot"), world.home(dir, "bot", 1), cfg).clock(world.clock.shared())
}

/// Sets a cron timer at startup and records the runtime's clock at each firing; a bad
/// expression's error too.
struct CronTicks(std::sync::Arc<std::sync::Mutex<Vec<Result<u64, String>>>>);

impl meow_runtime::native::Handler for CronTicks {
    fn handle(&mut self, host: &Host, event: &Event) -> Result<(), String> {
        match event {
            Event::Startup => {
                host.set_cron_timer("tick", "*/10 * * * *").map_err(|e| e.to_string())?;
                // The longest wait a plugin can ask for: taken, never fires, overflows nothing.
                host.set_timer("never", u64::MAX, true).map_err(|e| e.to_string())?;
                let bad = host.set_cron_timer("bad", "every tuesday").map(|_| 0);
                self.0.lock().unwrap().push(bad.map_err(|e| e.to_string()));
            }
            Event::Timer { name, .. } => self.0.lock().unwrap().push(Ok(host.node_info().now).and_then(|now| {
                if name == "tick" {
                    Ok(now)
                } else {
                    Err(format!("{name} fired"))
                }
            })),
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn a_cron_timer_fires_at_the_times_of_its_expression_on_the_runtimes_clock() {
    smol::block_on(async {
        let world = World::new(START, 12);
        let dir = tempfile::tempdir().unwrap();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<Result<u64, String>>>> = std::sync::Arc::default();
        let s = seen.clone();
        let runtime = lone_runtime(&world, dir.path(), "")
            .native("cron", &[Capability::Timers], move || CronTicks(s.clone()))
            .start()
            .await
            .unwrap();
        let wait_for = |n: usize| {
            let seen = seen.clone();
            async move {
                let wall = std::time::Instant::now();
                while seen.lock().unwrap().len() < n {
                    assert!(wall.elapsed() < Duration::from_secs(20), "{:?}", seen.lock().unwrap());
                    smol::Timer::after(Duration::from_millis(5)).await;
                }
            }
        };
        wait_for(1).await;
        // START is on a 10-minute boundary: the next firings are 10 and 20 minutes later.
        for _ in 0..2 {
            for _ in 0..10 {
                world.clock.advance(Duration::from_secs(60));
            }
            let n = seen.lock().unwrap().len() + 1;
            wait_for(n).await;
        }
        world.clock.advance(Duration::from_secs(9 * 60));
        smol::Timer::after(Duration::from_millis(100)).await;
        let seen = seen.lock().unwrap().clone();
        assert!(
            matches!(&seen[0], Err(e) if e.contains("invalid cron expression")),
            "{seen:?}"
        );
        assert_eq!(
            seen[1..],
            [Ok(START + 600_000), Ok(START + 1_200_000)],
            "and not before the 30th minute"
        );
        runtime.shutdown().await.unwrap();
    });
}

#[test]
fn a_recipe_that_publishes_to_mqtt_without_a_broker_is_refused_at_start() {
    smol::block_on(async {
        let world = World::new(START, 13);
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("to-mqtt.yaml");
        std::fs::write(
            &recipe,
            "version: 1\ntriggers:\n  - startup: {}\nactions:\n  - mqtt_publish: { topic: meow/up, payload: yes }\n",
        )
        .unwrap();
        let started = lone_runtime(&world, dir.path(), &format!("recipes: [\"{}\"]\n", recipe.display()))
            .start()
            .await;
        let Err(e) = started else {
            panic!("a runtime started with no broker for mqtt_publish")
        };
        assert!(e.to_string().contains("mqtt_publish needs a broker: add `mqtt:"), "{e}");
    });
}
