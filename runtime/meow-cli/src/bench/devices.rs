//! `meow bench devices`: what several devices cost (docs/DEVICES.md). Linking a device to a home
//! with many contacts and messages (the welcome's bytes, the time until the new device is
//! usable), and syncing each message the holder receives to the other devices (bytes deposited
//! and time, against the same messages received by a home with one device).

use std::time::{Duration, Instant};

use anyhow::Context;
use meow_node::devices::link::Joining;
use meow_node::devices::net;
use meow_node::sync;
use meow_node::{Env, InitOptions, Node};
use meow_proto::crypto::KdfParams;
use meow_proto::envelope::ContentType;
use smol::lock::Mutex;

/// The workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Contacts of the home.
    pub contacts: usize,
    /// Messages in its inbox before the link.
    pub messages: usize,
    /// Devices linked one after the other (each measured).
    pub runs: usize,
    /// Messages received after the links, to measure the cost of syncing each.
    pub synced: usize,
}

struct Bench {
    base: std::path::PathBuf,
    card: String,
    _server: meow_server::ServerHandle,
}

impl Bench {
    fn home(&self, name: &str) -> anyhow::Result<Mutex<Node>> {
        let opts = InitOptions {
            kdf: KdfParams::TESTING,
            display_name: Some(name.into()),
            decoys: false,
        };
        let mut n = Node::init(&self.base.join(name), b"bench", opts)?;
        n.add_server(&self.card)?;
        Ok(Mutex::new(n))
    }
}

/// `peer` becomes `count` contacts of `home` (c0, c1…), `home` being `h0`, `h1`… to it.
async fn befriend(home: &Mutex<Node>, peer: &Mutex<Node>, count: usize) -> anyhow::Result<()> {
    for i in 0..count {
        let card = home.lock().await.invite(&format!("c{i}"), false)?;
        peer.lock()
            .await
            .accept(card.to_text().as_bytes(), Some(&format!("h{i}")))?;
    }
    sync::flush_outbox(peer, false).await?;
    sync::fetch(home, Duration::ZERO).await?;
    Ok(())
}

/// `peer` sends `count` messages spread over `contacts` of its contacts h0, h1…; `home` reads
/// them all. Returns the time `home` took to read them.
async fn deliver(home: &Mutex<Node>, peer: &Mutex<Node>, contacts: usize, count: usize) -> anyhow::Result<Duration> {
    for i in 0..count {
        let text = format!("message {i}: {}", "x".repeat(40));
        peer.lock().await.queue_message(
            &format!("h{}", i % contacts.max(1)),
            ContentType::TEXT,
            text.into_bytes(),
        )?;
        if i % 1000 == 999 {
            sync::flush_outbox(peer, false).await?;
        }
    }
    sync::flush_outbox(peer, false).await?;
    let t = Instant::now();
    loop {
        let got = sync::fetch(home, Duration::ZERO).await?;
        if got.events.is_empty() {
            break;
        }
    }
    Ok(t.elapsed())
}

/// Links a new device `name` to `home`; returns it, the welcome's bytes and the time from the
/// confirmed code to a usable device (welcome built, sealed, deposited, received, home made).
async fn link(b: &Bench, home: &Mutex<Node>, name: &str) -> anyhow::Result<(Node, usize, Duration)> {
    let linking = home.lock().await.start_link()?;
    let env = Env::system();
    let (joining, mailbox, request, _) = Joining::start(linking.card.clone(), name, &env)?;
    let pool = home.lock().await.pool();
    let new_side = net::join(joining, mailbox, request, &pool, Duration::from_secs(600), || true);
    let old_side = async {
        let (request, _) = net::link_wait(home, &linking, Duration::from_secs(60)).await?;
        let t = Instant::now();
        let bytes = net::link_welcome(home, &linking, &request, b"bench").await?;
        anyhow::Ok((t, bytes))
    };
    let (joined, sent) = futures_lite::future::zip(new_side, old_side).await;
    let (t, bytes) = sent?;
    let (joining, welcome) = joined?;
    let opts = InitOptions {
        kdf: KdfParams::TESTING,
        display_name: None,
        decoys: false,
    };
    let node = joining.finish(&b.base.join(name), b"bench", &welcome, opts, env)?;
    Ok((node, bytes, t.elapsed()))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the benchmark.
pub fn run(w: Workload) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("meow-bench-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut cfg = meow_server::ServerConfig::new(base.join("server"), "127.0.0.1:0".parse()?);
    // One peer sends the whole history: no per-address budget in the way.
    cfg.limits.address_deposits = meow_server::config::Budget::UNLIMITED;
    cfg.limits.session_deposits = meow_server::config::Budget::UNLIMITED;
    let server = meow_server::Server::start(cfg)?;
    let b = Bench {
        base: base.clone(),
        card: server.card().to_text(),
        _server: server,
    };
    let result = smol::block_on(async {
        let (home, peer) = (b.home("alice")?, b.home("bob")?);
        println!(
            "setting up a home with {} contacts and {} messages on an in-process server…",
            w.contacts, w.messages
        );
        befriend(&home, &peer, w.contacts).await?;
        deliver(&home, &peer, w.contacts, w.messages).await?;
        let mut devices = Vec::new();
        for i in 0..w.runs {
            let (node, bytes, took) = link(&b, &home, &format!("device{i}")).await?;
            let (got, had) = (node.inbox(false)?.len(), home.lock().await.inbox(false)?.len());
            anyhow::ensure!(got == had, "the new device has {got} messages of {had}");
            println!(
                "link {}: {had} messages, {} contacts: welcome of {bytes} bytes ({:.2} MiB), usable after {:.0} ms{}",
                i + 1,
                node.contacts().len(),
                bytes as f64 / (1024.0 * 1024.0),
                ms(took),
                if i == 0 {
                    " (the first link also writes the log of the whole home)"
                } else {
                    ""
                }
            );
            devices.push(Mutex::new(node));
        }
        // Per message: the holder opens it and syncs it to every other device.
        let (solo, other) = (b.home("solo")?, b.home("carl")?);
        befriend(&solo, &other, 1).await?;
        let alone = deliver(&solo, &other, 1, w.synced).await?;
        for d in &devices {
            sync::fetch(d, Duration::ZERO).await?;
        }
        let mut synced = net::Flushed::default();
        for i in 0..w.synced {
            let text = format!("message {i}: {}", "x".repeat(40));
            peer.lock()
                .await
                .queue_message("h0", ContentType::TEXT, text.into_bytes())?;
        }
        sync::flush_outbox(&peer, false).await?;
        let t = Instant::now();
        loop {
            let got = sync::fetch(&home, Duration::ZERO).await?;
            synced.envelopes += got.device_sync.envelopes;
            synced.bytes += got.device_sync.bytes;
            if got.events.is_empty() {
                break;
            }
        }
        let held = t.elapsed();
        let t = Instant::now();
        sync::fetch(&devices[0], Duration::ZERO).await?;
        let applied = t.elapsed();
        let per = (w.synced * devices.len()).max(1);
        println!(
            "sync of {} received messages to {} other devices: {} bytes per message per device ({} envelopes in all); \
             the holder reads them in {:.0} ms ({:.2} ms each) against {:.0} ms ({:.2} ms each) for a home with one device; \
             another device applies them in {:.0} ms",
            w.synced,
            devices.len(),
            synced.bytes / per,
            synced.envelopes,
            ms(held),
            ms(held) / w.synced.max(1) as f64,
            ms(alone),
            ms(alone) / w.synced.max(1) as f64,
            ms(applied)
        );
        // One at a time: each message opened and synced on its own (the worst case).
        let (mut one, mut one_solo, mut one_bytes) = (Duration::ZERO, Duration::ZERO, 0);
        let singles = 20;
        for i in 0..singles {
            let text = format!("single {i}: {}", "x".repeat(40));
            sync::send(&peer, "h0", ContentType::TEXT, text.clone().into_bytes()).await?;
            let t = Instant::now();
            one_bytes += sync::fetch(&home, Duration::ZERO).await?.device_sync.bytes;
            one += t.elapsed();
            sync::send(&other, "h0", ContentType::TEXT, text.into_bytes()).await?;
            let t = Instant::now();
            sync::fetch(&solo, Duration::ZERO).await?;
            one_solo += t.elapsed();
        }
        println!(
            "one message at a time ({singles} times): {} bytes per message per device; \
             the holder's read takes {:.2} ms against {:.2} ms with one device",
            one_bytes / (singles * devices.len()).max(1),
            ms(one) / singles as f64,
            ms(one_solo) / singles as f64
        );
        anyhow::Ok(())
    });
    drop(b);
    let _ = std::fs::remove_dir_all(&base);
    result.context("devices benchmark")
}
