//! `meow bench lora`: what a 20-byte sensor reading costs on a radio link. A sensor home sends
//! readings to a hub home through a running server's UDP side, past a relay on 127.0.0.1 that
//! counts every datagram that crosses it (what a LoRa radio would carry), in the compact form
//! through a link session and, as the baseline of the same run, as a version-2 envelope in a
//! sealed datagram. The last line is `on-air bytes: N`, the compact reading's frame.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use meow_net::gateway::GatewayClient;
use meow_node::sync;
use meow_node::{InitOptions, Node, NodeEvent};
use meow_proto::conversation::VersionStatus;
use meow_proto::crypto::KdfParams;
use meow_proto::envelope::ContentType;
use meow_proto::wire::{Request, Response};
use smol::lock::Mutex;

/// The reading of issue 13's figure: 20 bytes of JSON.
const READING: &[u8] = br#"{"t":21.50,"h":40.2}"#;
/// LXMF's figure for the same 20 bytes (opportunistic delivery; rns 1.5.7, lxmf 1.2.1), measured
/// in issue 13 on the same machine.
const LXMF_BYTES: usize = 227;

/// Datagram sizes seen by the relay: up (towards the server) and down.
#[derive(Debug, Default)]
struct Seen {
    up: Vec<usize>,
    down: Vec<usize>,
}

/// A UDP relay in front of `server` that records every datagram's size.
struct Relay {
    address: SocketAddr,
    seen: Arc<StdMutex<Seen>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(server: SocketAddr) -> anyhow::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        back.connect(server)?;
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let (front, back) = (Arc::new(front), Arc::new(back));
        let seen = Arc::new(StdMutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<StdMutex<Option<SocketAddr>>> = Arc::default();
        let address = front.local_addr()?;
        let up = {
            let (front, back, seen, stop, client) =
                (front.clone(), back.clone(), seen.clone(), stop.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        seen.lock().map(|mut s| s.up.push(n)).ok();
                        client.lock().map(|mut c| *c = Some(from)).ok();
                        let _ = back.send(&buf[..n]);
                    }
                }
            })
        };
        let down = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        seen.lock().map(|mut s| s.down.push(n)).ok();
                        if let Some(to) = client.lock().ok().and_then(|c| *c) {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
            })
        };
        Ok(Self {
            address,
            seen,
            stop,
            threads: vec![up, down],
        })
    }

    /// The datagrams seen since the last call.
    fn take(&self) -> Seen {
        self.seen
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn init(base: &std::path::Path, name: &str, card: &str) -> anyhow::Result<Mutex<Node>> {
    let opts = InitOptions {
        kdf: KdfParams::TESTING,
        display_name: Some(name.into()),
        decoys: true,
    };
    let mut n = Node::init(&base.join(name), b"bench", opts)?;
    n.add_server(card)?;
    Ok(Mutex::new(n))
}

/// Pairs the two homes and exchanges messages until the sensor's conversation is at version 2.
async fn pair_at_v2(sensor: &Mutex<Node>, hub: &Mutex<Node>) -> anyhow::Result<()> {
    let invitation = hub.lock().await.invite("sensor", false)?;
    sensor
        .lock()
        .await
        .accept(invitation.to_text().as_bytes(), Some("hub"))?;
    sync::flush_outbox(sensor, false).await?;
    sync::fetch(hub, Duration::ZERO).await?;
    sync::send(sensor, "hub", ContentType::TEXT, b"hello".to_vec()).await?;
    for _ in 0..5 {
        sync::fetch(hub, Duration::ZERO).await?;
        sync::flush_outbox(hub, false).await?;
        sync::fetch(sensor, Duration::ZERO).await?;
        let status = sensor.lock().await.contact("hub")?.conversation.version_status();
        if matches!(status, VersionStatus::V2 { .. }) {
            return Ok(());
        }
    }
    bail!("the conversation did not reach version 2")
}

/// Whether the hub received `READING` (`count` times).
async fn hub_received(hub: &Mutex<Node>, count: usize) -> anyhow::Result<bool> {
    let r = sync::fetch(hub, Duration::ZERO).await?;
    let got = r
        .events
        .iter()
        .filter(|e| matches!(e, NodeEvent::Message(i) if i.content == READING))
        .count();
    Ok(got == count)
}

/// Runs the benchmark: `readings` readings each way.
pub fn run(readings: usize) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("meow-bench-lora-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut cfg = meow_server::ServerConfig::new(base.join("server"), "127.0.0.1:0".parse()?);
    cfg.listen_udp = Some("127.0.0.1:0".parse()?);
    let server = meow_server::Server::start(cfg)?;
    let udp = server.udp_addr().context("the server has no UDP side")?;
    let relay = Relay::start(udp)?;
    let card = server.card().to_text();
    let (sensor, hub) = (init(&base, "sensor", &card)?, init(&base, "hub", &card)?);
    let result = smol::block_on(async {
        pair_at_v2(&sensor, &hub).await?;
        let via = meow_proto::Address::Udp(relay.address.to_string());
        let link = meow_net::port::LinkAddress::Udp(relay.address.to_string());
        let clock = meow_clock::SystemClock::shared();
        let mut gateway = GatewayClient::connect(&link, server.card().key, Duration::from_secs(5), clock).await?;
        let mut compact = Vec::new();
        for _ in 0..readings.max(1) {
            let item = sensor
                .lock()
                .await
                .queue_compact("hub", ContentType::JSON, READING.to_vec())?
                .context("not at version 2")?;
            sync::deliver_over_link(&sensor, item, &mut gateway).await??;
            compact.push(relay.take());
        }
        ensure!(
            hub_received(&hub, compact.len()).await?,
            "the hub did not get every compact reading"
        );
        let mut sealed = Vec::new();
        for _ in 0..readings.max(1) {
            let items = sensor
                .lock()
                .await
                .queue_message("hub", ContentType::JSON, READING.to_vec())?;
            let item = items.last().context("nothing queued")?;
            let (mailbox, envelope) = (item.mailbox, item.envelope.clone());
            let response = meow_net::datagram::request(
                &via,
                &server.card().key,
                &[],
                |_| Request::Deposit { mailbox, envelope },
                Duration::from_secs(5),
            )
            .await?;
            ensure!(response == Response::Deposited, "sealed datagram refused: {response:?}");
            sealed.push(relay.take());
        }
        ensure!(
            hub_received(&hub, sealed.len()).await?,
            "the hub did not get every sealed reading"
        );
        anyhow::Ok((compact, sealed))
    });
    drop(relay);
    drop(server);
    let _ = std::fs::remove_dir_all(&base);
    let (compact, sealed) = result.context("lora benchmark")?;
    report(&compact, &sealed)
}

/// Time on air per reading through an RNode (one KISS data frame: a LoRa packet of the frame
/// and the RNode's 1-byte header) at SF7 and SF12 (125 kHz, 4/5), and how many readings fit in
/// 1 % of an hour, for the compact form, the sealed datagram and LXMF.
fn airtime_table(frame: usize, answer: usize, sealed: usize) {
    use meow_net::radio::{airtime::LoraParams, rnode::frame_airtime};
    println!("time on air per reading through an RNode (125 kHz, 4/5; the answer is the gateway's airtime):");
    for sf in [7u8, 12] {
        let lora = LoraParams::sf(sf);
        let ms = |n: usize| frame_airtime(&lora, n).as_secs_f64() * 1000.0;
        let per_hour = |n: usize| (36.0 / frame_airtime(&lora, n).as_secs_f64()).floor();
        println!(
            "  SF{sf:<2} compact {:7.1} ms (answer {:6.1} ms), {:4} readings/hour under 1 %; sealed {:7.1} ms, {:4}/hour; LXMF {:7.1} ms, {:4}/hour",
            ms(frame),
            ms(answer),
            per_hour(frame),
            ms(sealed),
            per_hour(sealed),
            ms(LXMF_BYTES),
            per_hour(LXMF_BYTES)
        );
    }
}

fn sizes(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(" + ")
}

fn report(compact: &[Seen], sealed: &[Seen]) -> anyhow::Result<()> {
    println!(
        "a 20-byte reading ({}), bytes crossing the UDP link on 127.0.0.1:",
        String::from_utf8_lossy(READING)
    );
    let first = compact.first().context("no reading")?;
    ensure!(
        first.up.len() == 2,
        "expected an open and a frame first, saw {:?}",
        first.up
    );
    println!(
        "  link session open (once per session): {} up, {} down",
        first.up[0], first.down[0]
    );
    let frames: Vec<usize> = compact.iter().filter_map(|s| s.up.last().copied()).collect();
    let acks: Vec<usize> = compact.iter().filter_map(|s| s.down.last().copied()).collect();
    println!(
        "  compact form in a link session: {} up per reading, answer {} down",
        sizes(&frames),
        sizes(&acks)
    );
    let dgrams: Vec<usize> = sealed.iter().filter_map(|s| s.up.last().copied()).collect();
    let dacks: Vec<usize> = sealed.iter().filter_map(|s| s.down.last().copied()).collect();
    println!(
        "  version-2 envelope in a sealed datagram (no session): {} up, answer {} down",
        sizes(&dgrams),
        sizes(&dacks)
    );
    println!("  Reticulum + LXMF (opportunistic, issue 13's measurement): {LXMF_BYTES}");
    let on_air = *frames.iter().max().context("no frame")?;
    ensure!(frames.iter().all(|&f| f == on_air), "frames differ in size: {frames:?}");
    airtime_table(
        on_air,
        acks.last().copied().unwrap_or(0),
        dgrams.last().copied().unwrap_or(0),
    );
    // Last, on a line of its own: the figure scripts read.
    println!("on-air bytes: {on_air}");
    Ok(())
}
