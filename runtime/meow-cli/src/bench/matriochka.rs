//! `meow bench matriochka`: what Matriochka routes buy and cost. A global passive observer
//! against routes with several mean delays (on the test kit's virtual time); relay throughput,
//! in process and through a real server over TCP, against the X25519 operation every layer
//! costs; the latency three relays add; and the bytes each packet carries beyond its envelope.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meow_proto::crypto::onion::{OnionGroup, X25519Group};
use meow_proto::onion::{self, Instruction, RouteHop};
use meow_proto::{LookupKey, MailboxId, RelayKey};
use meow_server::relay::{Relay, RelayConfig};
use meow_testkit::mixsim::{Scenario, observe};

/// The workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Repetitions of each measurement (the range is reported).
    pub runs: usize,
    /// Senders in the observer simulation.
    pub senders: usize,
    /// Relays in the observer simulation.
    pub relays: usize,
    /// Simulated seconds.
    pub seconds: f64,
    /// Packets per throughput measurement.
    pub packets: usize,
}

fn range(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// Runs every part and prints the figures.
pub fn run(w: Workload) -> anyhow::Result<()> {
    println!(
        "== observer: {} senders, {} relays, 3 hops, 1 msg/s per sender, {} s, 1 ms links; {} runs (seeds)",
        w.senders, w.relays, w.seconds, w.runs
    );
    println!(
        "{:>12} {:>22} {:>10} {:>24} {:>8}",
        "mean delay", "linking accuracy", "baseline", "entropy (bits)", "max"
    );
    for delay in [0.0, 10.0, 50.0, 200.0, 1000.0] {
        let results: Vec<_> = (0..w.runs)
            .map(|seed| {
                observe(&Scenario {
                    senders: w.senders,
                    relays: w.relays,
                    hops: 3,
                    rate_per_sender: 1.0,
                    mean_delay_ms: delay,
                    link_ms: 1.0,
                    seconds: w.seconds,
                    seed: seed as u64 + 1,
                })
            })
            .collect();
        let (a0, a1) = range(&results.iter().map(|r| r.accuracy * 100.0).collect::<Vec<_>>());
        let (e0, e1) = range(&results.iter().map(|r| r.entropy_bits).collect::<Vec<_>>());
        println!(
            "{:>9} ms {:>9.1}% – {:>6.1}% {:>9.1}% {:>10.2} – {:>6.2} ({:.1}–{:.1} senders) {:>5.2}",
            delay,
            a0,
            a1,
            results[0].baseline * 100.0,
            e0,
            e1,
            e0.exp2(),
            e1.exp2(),
            results[0].max_entropy_bits
        );
    }
    throughput(w)?;
    latency(w)?;
    overhead();
    Ok(())
}

/// Packets for a relay whose key is `key`: with `forward`, the first of two hops (the relay
/// peels, blinds and passes on: a middle relay's work); else one hop delivering into its store.
fn packets(key: meow_proto::RelayPublic, n: usize, envelope: &[u8], forward: bool) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut rng = meow_proto::os_rng();
    let next = RelayKey::generate(&mut rng).public();
    let next_server = meow_proto::ServerKey::generate(&mut rng).public();
    (0..n)
        .map(|_| {
            let deliver = Instruction::Deliver {
                delay_ms: 0,
                target: None,
                mailbox: MailboxId([7; 16]),
                envelope: envelope.to_vec(),
            };
            let route = if forward {
                vec![
                    RouteHop {
                        relay: key,
                        instruction: Instruction::Forward {
                            next: next_server,
                            address: "192.0.2.1:7070".parse()?,
                            delay_ms: 0,
                        },
                    },
                    RouteHop {
                        relay: next,
                        instruction: deliver,
                    },
                ]
            } else {
                vec![RouteHop {
                    relay: key,
                    instruction: deliver,
                }]
            };
            Ok(onion::wrap(&route, &mut rng)?.into_bytes())
        })
        .collect()
}

fn throughput(w: Workload) -> anyhow::Result<()> {
    println!(
        "\n== relay throughput ({} packets of the smallest class, {} runs)",
        w.packets, w.runs
    );
    let envelope = super::server::template_envelope(64)?;
    let (mut dh, mut peel, mut served) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..w.runs {
        // Baseline: the one X25519 operation a layer cannot do without.
        let k = RelayKey::generate(&mut meow_proto::os_rng());
        let p = RelayKey::generate(&mut meow_proto::os_rng()).public();
        let secret = k.secret_bytes();
        let start = Instant::now();
        let mut acc = 0u8;
        for _ in 0..w.packets {
            acc ^= X25519Group::multiply(p.as_bytes(), &secret).map_or(0, |v| v[0]);
        }
        std::hint::black_box(acc);
        dh.push(super::rate(w.packets as u64, start.elapsed()));

        // The relay itself, one core, as a middle hop: peel, blind the key for the next hop,
        // replay tag (appended to its file), hold.
        let dir = tempfile::tempdir()?;
        let cfg = RelayConfig {
            per_second: u32::MAX,
            max_held: usize::MAX,
            ..RelayConfig::default()
        };
        let relay = Relay::open(dir.path(), cfg, meow_net::now_ms())?;
        let key = relay.info(meow_net::now_ms()).keys[0].1;
        let list = packets(key, w.packets, &envelope, true)?;
        let start = Instant::now();
        for p in list {
            relay
                .accept(meow_net::now_ms(), p)
                .map_err(|(c, m)| anyhow::anyhow!("{c:?}: {m}"))?;
        }
        peel.push(super::rate(w.packets as u64, start.elapsed()));

        served.push(served_rate(w.packets, &envelope)?);
    }
    let show = |name: &str, v: &[f64]| {
        let (lo, hi) = range(v);
        println!("{name:<62} {lo:>9.0} – {hi:>9.0} /s");
    };
    show("baseline: X25519 scalar multiplications, one core", &dh);
    show(
        "relay, middle hop: peel + blind + tag + journal + hold, one core",
        &peel,
    );
    show("server --relay over TCP, last hop: peel + deposit durably", &served);
    println!("(Loopix reports ~300 messages/s per mix relay; Nym's published figures are per node.)");
    Ok(())
}

/// Packets per second a real relay server takes over TCP, each delivered into its store.
fn served_rate(n: usize, envelope: &[u8]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut cfg = meow_server::ServerConfig::new(dir.path().to_owned(), "127.0.0.1:0".parse()?);
    cfg.relay = Some(RelayConfig {
        per_second: u32::MAX,
        max_held: usize::MAX,
        ..RelayConfig::default()
    });
    cfg.limits.max_messages_per_mailbox = u64::MAX;
    cfg.limits.max_bytes_per_mailbox = u64::MAX;
    cfg.limits.max_store_bytes = 0;
    cfg.limits.address_deposits = meow_server::Budget::UNLIMITED;
    cfg.limits.session_deposits = meow_server::Budget::UNLIMITED;
    let server = meow_server::Server::start(cfg)?;
    let card = server.card().clone();
    let key = server
        .catalog()
        .own()
        .body
        .relay
        .context("the relay publishes keys")?
        .key_at(meow_net::now_ms())
        .context("a key for now")?;
    let list = packets(key, n, envelope, false)?;
    let conns = 8;
    let start = Instant::now();
    smol::block_on(async {
        let mut tasks = Vec::new();
        for chunk in list.chunks(n.div_ceil(conns)) {
            let client = Arc::new(meow_net::ServerClient::connect(&card.address, &card.key).await?);
            let chunk: Vec<Vec<u8>> = chunk.to_vec();
            tasks.push(smol::spawn(async move {
                for window in chunk.chunks(32) {
                    let sends: Vec<_> = window
                        .iter()
                        .map(|p| {
                            let c = client.clone();
                            let p = p.clone();
                            smol::spawn(async move { c.forward(p).await })
                        })
                        .collect();
                    for s in sends {
                        s.await?;
                    }
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await?;
        }
        anyhow::Ok(())
    })?;
    // Taken means held: wait until the relay has delivered every one into its store.
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.relay_stats().map_or(0, |s| s.delivered) < n as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the relay did not deliver every packet");
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    server.shutdown();
    Ok(super::rate(n as u64, elapsed))
}

/// Send → stored latency through three relay servers on 127.0.0.1 with no delay: what the
/// relays cost beyond the delays they are asked for.
fn latency(w: Workload) -> anyhow::Result<()> {
    let samples = (w.packets / 100).clamp(50, 500);
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for _ in 0..w.runs {
        let lat = latency_once(samples)?;
        p50.push(lat.quantile_ms(0.5));
        p99.push(lat.quantile_ms(0.99));
    }
    let ((a, b), (c, d)) = (range(&p50), range(&p99));
    println!(
        "\n== added latency: 3 relays on 127.0.0.1, no delays asked, {samples} messages per run, send → stored and polled"
    );
    println!("p50 {a:.2} – {b:.2} ms, p99 {c:.2} – {d:.2} ms over {} runs", w.runs);
    println!("a route adds on top the delays it asks for: 3 × the mean on average (0.6 s at 200 ms)");
    Ok(())
}

/// One latency run of `samples` messages.
fn latency_once(samples: usize) -> anyhow::Result<super::Samples> {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
    let servers: Vec<_> = dirs
        .iter()
        .map(|d| {
            let mut cfg = meow_server::ServerConfig::new(d.path().to_owned(), "127.0.0.1:0".parse()?);
            cfg.relay = Some(RelayConfig::default());
            Ok(meow_server::Server::start(cfg)?)
        })
        .collect::<anyhow::Result<_>>()?;
    let now = meow_net::now_ms();
    let keys: Vec<_> = servers
        .iter()
        .map(|s| {
            s.catalog()
                .own()
                .body
                .relay
                .and_then(|r| r.key_at(now))
                .context("relay key")
        })
        .collect::<anyhow::Result<_>>()?;
    let lookup = LookupKey::generate(&mut meow_proto::os_rng());
    let mailbox = MailboxId::of(&lookup.public());
    let envelope = super::server::template_envelope(64)?;
    let mut lat = super::Samples::default();
    smol::block_on(async {
        let first = meow_net::ServerClient::connect(&servers[0].card().address, &servers[0].card().key).await?;
        let last = meow_net::ServerClient::connect(&servers[2].card().address, &servers[2].card().key).await?;
        for _ in 0..samples {
            let hop = |i: usize| -> Instruction {
                Instruction::Forward {
                    next: servers[i].card().key,
                    address: servers[i].card().address.clone(),
                    delay_ms: 0,
                }
            };
            let route = [
                RouteHop {
                    relay: keys[0],
                    instruction: hop(1),
                },
                RouteHop {
                    relay: keys[1],
                    instruction: hop(2),
                },
                RouteHop {
                    relay: keys[2],
                    instruction: Instruction::Deliver {
                        delay_ms: 0,
                        target: None,
                        mailbox,
                        envelope: envelope.clone(),
                    },
                },
            ];
            let packet = onion::wrap(&route, &mut meow_proto::os_rng())?.into_bytes();
            let start = Instant::now();
            first.forward(packet).await?;
            loop {
                let got = last.poll(&[&lookup], 16, Duration::from_secs(5), 0).await?;
                if !got.messages.is_empty() {
                    lat.0.push(start.elapsed().as_micros() as u64);
                    let seqs: Vec<u64> = got.messages.iter().map(|m| m.seq).collect();
                    last.ack(&[(&lookup, seqs)]).await?;
                    break;
                }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(lat)
}

/// Bytes a packet carries beyond its envelope, per size class.
fn overhead() {
    println!("\n== bytes: every link carries the same packet size for a class, whatever the hop");
    println!(
        "{:>10} {:>10} {:>10} {:>26}",
        "envelope", "packet", "overhead", "3-hop route, bytes on links"
    );
    for (class, size) in meow_proto::padding::SIZE_CLASSES.iter().enumerate().take(4) {
        let packet = onion::packet_len(class as u8).unwrap_or_default();
        println!("{:>10} {:>10} {:>10} {:>26}", size, packet, packet - size, 4 * packet);
    }
    println!(
        "(overhead = version, class, 32-byte ephemeral key, 768-byte routing field, 32-byte MAC; a plain deposit crosses 1 link, a 3-hop route 4)"
    );
}
