//! `meow bench server`: deposit -> poll -> ack throughput and latency of a real `meow server`
//! process with durability on, and the same workload against Mosquitto (QoS 1) when installed.
//!
//! Topology: `concurrency` producer connections, each keeping `window` deposits in flight to its
//! own mailbox, and as many consumer connections long-polling those mailboxes and acknowledging
//! what they get. A message counts once a consumer has received and acknowledged it.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meow_net::ServerClient;
use meow_proto::envelope::{self, ContentType, Message, MessageId};
use meow_proto::{ContactKey, ConversationKey, LookupKey, MailboxId, ServerPublic};

use super::{Samples, rate, rss_kib};

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Messages in the throughput run.
    pub messages: u64,
    /// Content bytes per message.
    pub size: usize,
    /// Producer/consumer pairs.
    pub concurrency: usize,
    /// Deposits in flight per producer.
    pub window: usize,
    /// Total rate of the latency run, messages per second.
    pub latency_rate: u64,
    /// Duration of the latency run.
    pub latency_secs: u64,
    /// Mailboxes in the memory run.
    pub mailboxes: u64,
    /// Whether to run Mosquitto too.
    pub mosquitto: bool,
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    /// Messages delivered.
    pub messages: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Deposit (publish) to durable acknowledgement, µs.
    pub deposit: Samples,
    /// Deposit start to consumer receipt, µs.
    pub e2e: Samples,
    /// Highest RSS seen, KiB.
    pub peak_rss_kib: u64,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

fn stamp(buf: &mut [u8], at: usize) {
    buf[at..at + 8].copy_from_slice(&now_us().to_be_bytes());
}

fn age_us(buf: &[u8], at: usize) -> u64 {
    let t = u64::from_be_bytes(buf[at..at + 8].try_into().unwrap_or_default());
    now_us().saturating_sub(t)
}

/// A real envelope for a message of `size` content bytes (its size class is what goes on the wire).
pub(crate) fn template_envelope(size: usize) -> anyhow::Result<Vec<u8>> {
    let mut rng = meow_proto::os_rng();
    let m = Message {
        id: MessageId::random(&mut rng),
        sent_at_ms: meow_net::now_ms(),
        content_type: ContentType::BINARY,
        content: vec![0x42; size],
        rotation: None,
        rotation_ack: None,
        automatic: false,
        reply_to: None,
    };
    let sender = ContactKey::generate(&mut rng);
    let recipient = ConversationKey::generate(&mut rng).public();
    Ok(envelope::seal(&m, &sender, &recipient, &mut rng)?)
}

/// A `meow server` child process on a temporary folder.
pub struct ServerChild {
    child: Child,
    dir: PathBuf,
    /// Its address.
    pub address: meow_proto::Address,
    /// Its key.
    pub key: ServerPublic,
}

impl ServerChild {
    fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args([
                "-q",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--max-messages",
                "10000000",
                // One benchmark client is one address: it measures the server, not its limits.
                "--max-store",
                "0",
                "--address-deposits",
                "0",
                "--address-deposit-bytes",
                "0",
                "--session-deposits",
                "0",
                "--session-deposit-bytes",
                "0",
                "--new-mailboxes-per-hour",
                "0",
                "--data",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting meow server")?;
        let last_run = dir.join("last-run.json");
        let start = Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&last_run) {
                break t;
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!("meow server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let address = v["address"].as_str().context("address")?.parse()?;
        let key = meow_server::load_or_create_key(dir)?.public();
        Ok(Self {
            child,
            dir: dir.to_owned(),
            address,
            key,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Samples a process's RSS every 50 ms until dropped; keeps the peak.
struct RssSampler {
    peak: Arc<Mutex<u64>>,
    _task: smol::Task<()>,
}

impl RssSampler {
    fn new(pid: u32) -> Self {
        let peak: Arc<Mutex<u64>> = Arc::default();
        let p = peak.clone();
        let task = smol::spawn(async move {
            loop {
                if let Some(r) = rss_kib(pid) {
                    let mut m = p.lock();
                    *m = (*m).max(r);
                }
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        });
        Self { peak, _task: task }
    }

    fn peak(&self) -> u64 {
        *self.peak.lock()
    }
}

/// One pair: a producer depositing `count` messages (paced if `interval` is set), a consumer
/// receiving them.
async fn meow_pair(
    server: (meow_proto::Address, ServerPublic),
    count: u64,
    window: usize,
    template: Arc<Vec<u8>>,
    pacing: Option<(Duration, Duration)>,
) -> anyhow::Result<(Samples, Samples)> {
    let key = LookupKey::generate(&mut meow_proto::os_rng());
    let mailbox = MailboxId::of(&key.public());
    let producer = Arc::new(ServerClient::connect(&server.0, &server.1).await?);
    let consumer = ServerClient::connect(&server.0, &server.1).await?;
    // Prove the mailbox before the clock starts.
    consumer.poll(&[&key], 1, Duration::ZERO, 0).await?;

    let consume = async {
        let mut e2e = Samples::default();
        let mut got = 0;
        while got < count {
            let r = consumer.poll(&[&key], 1024, Duration::from_secs(5), u64::MAX).await?;
            let seqs: Vec<u64> = r.messages.iter().map(|m| m.seq).collect();
            for m in &r.messages {
                e2e.0.push(age_us(&m.envelope, 1));
            }
            got += seqs.len() as u64;
            consumer.ack(&[(&key, seqs)]).await?;
        }
        anyhow::Ok(e2e)
    };
    let produce = async {
        let per = count.div_ceil(window as u64);
        let tasks: Vec<_> = (0..window as u64)
            .map(|w| {
                let (producer, template) = (producer.clone(), template.clone());
                let n = per.min(count.saturating_sub(w * per));
                smol::spawn(async move {
                    let mut lat = Samples::default();
                    let start = Instant::now();
                    for i in 0..n {
                        // Paced: this task's messages are spread evenly between its siblings'.
                        if let Some((iv, phase)) = pacing {
                            smol::Timer::at(start + phase + iv / window as u32 * w as u32 + iv * (i as u32)).await;
                        }
                        let mut env = template.as_ref().clone();
                        stamp(&mut env, 1);
                        let t = Instant::now();
                        producer.deposit(mailbox, env).await?;
                        lat.0.push(t.elapsed().as_micros() as u64);
                    }
                    anyhow::Ok(lat)
                })
            })
            .collect();
        let mut lat = Samples::default();
        for t in tasks {
            lat.extend(t.await?);
        }
        anyhow::Ok(lat)
    };
    let (e2e, dep) = futures_lite::future::zip(consume, produce).await;
    Ok((dep?, e2e?))
}

fn run_pairs<F, Fut>(concurrency: usize, make: F) -> anyhow::Result<RunResult>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<(Samples, Samples)>> + Send + 'static,
{
    smol::block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency).map(|i| smol::spawn(make(i))).collect();
        let mut r = RunResult::default();
        for t in tasks {
            let (dep, e2e) = t.await?;
            r.messages += e2e.0.len() as u64;
            r.deposit.extend(dep);
            r.e2e.extend(e2e);
        }
        r.elapsed = start.elapsed();
        Ok(r)
    })
}

fn meow_run(server: &ServerChild, w: &Workload, total: u64, paced: bool) -> anyhow::Result<RunResult> {
    let template = Arc::new(template_envelope(w.size)?);
    let per_pair = total / w.concurrency as u64;
    // Paced: each of the pair's `window` tasks sends every `interval`.
    let interval = paced.then(|| {
        let per_task_rate = w.latency_rate as f64 / (w.concurrency * w.window) as f64;
        Duration::from_secs_f64(1.0 / per_task_rate)
    });
    let sampler = RssSampler::new(server.pid());
    let target = (server.address.clone(), server.key);
    // Pairs are offset from each other too, so the load is smooth rather than bursts.
    let pair_phase = |i: usize| interval.map(|iv| (iv, iv / (w.window * w.concurrency) as u32 * i as u32));
    let mut r = run_pairs(w.concurrency, |i| {
        meow_pair(target.clone(), per_pair, w.window, template.clone(), pair_phase(i))
    })?;
    r.peak_rss_kib = sampler.peak();
    Ok(r)
}

/// Latency of one durable deposit at a time, and of a deposit followed by the poll that finds it.
fn unloaded_latency(server: &ServerChild, n: usize) -> anyhow::Result<(Samples, Samples)> {
    let env = template_envelope(1024)?;
    smol::block_on(async {
        let c = ServerClient::connect(&server.address, &server.key).await?;
        let key = LookupKey::generate(&mut meow_proto::os_rng());
        let mailbox = MailboxId::of(&key.public());
        c.poll(&[&key], 1, Duration::ZERO, 0).await?;
        let (mut dep, mut round) = (Samples::default(), Samples::default());
        for _ in 0..n {
            let t = Instant::now();
            c.deposit(mailbox, env.clone()).await?;
            dep.0.push(t.elapsed().as_micros() as u64);
            let got = c.poll(&[&key], 10, Duration::ZERO, u64::MAX).await?;
            c.ack(&[(&key, got.messages.iter().map(|m| m.seq).collect())]).await?;
            round.0.push(t.elapsed().as_micros() as u64);
        }
        anyhow::Ok((dep, round))
    })
}

/// Bytes of RSS per mailbox holding one small message.
fn mailbox_memory(server: &ServerChild, n: u64) -> anyhow::Result<f64> {
    let before = rss_kib(server.pid()).unwrap_or(0);
    let env = template_envelope(10)?;
    smol::block_on(async {
        let c = Arc::new(ServerClient::connect(&server.address, &server.key).await?);
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let (c, env) = (c.clone(), env.clone());
                smol::spawn(async move {
                    for i in (t..n).step_by(64) {
                        let mut id = [0u8; 16];
                        id[..8].copy_from_slice(&i.to_be_bytes());
                        c.deposit(MailboxId(id), env.clone()).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        anyhow::Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(server.pid()).unwrap_or(0);
    Ok((after.saturating_sub(before) * 1024) as f64 / n as f64)
}

/// A Mosquitto child process on a free port.
struct Mosquitto {
    child: Child,
    dir: PathBuf,
    address: String,
}

impl Mosquitto {
    /// A broker in `dir`; with `persistent`, its persistence on with its own autosave settings
    /// (the database is written every 30 minutes and at shutdown: never per message).
    fn start(dir: &Path, persistent: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let conf = dir.join("mosquitto.conf");
        let persistence = if persistent {
            format!("persistence true\npersistence_location {}/\n", dir.display())
        } else {
            "persistence false\n".to_owned()
        };
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}max_queued_messages 0\nmax_inflight_messages 0\nlog_type error\n"
            ),
        )?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting mosquitto")?;
        let address = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("mosquitto did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            dir: dir.to_owned(),
            address,
        })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mqtt_run(m: &Mosquitto, w: &Workload, total: u64, paced: bool) -> anyhow::Result<RunResult> {
    let per_pair = total / w.concurrency as u64;
    let interval = paced.then(|| Duration::from_secs_f64(w.concurrency as f64 / w.latency_rate as f64));
    let payload_len = w.size;
    let sampler = RssSampler::new(m.child.id());
    let address = m.address.clone();
    let window = w.window;
    let concurrency = w.concurrency;
    let mut r = run_pairs(w.concurrency, move |i| {
        let address = address.clone();
        async move {
            let topic = format!("bench/{i}");
            let (ready_tx, ready_rx) = smol::channel::bounded(1);
            let mut e2e = Samples::default();
            let consumer = {
                let (address, topic) = (address.clone(), topic.clone());
                smol::spawn(async move {
                    let mut e2e = Samples::default();
                    super::mqtt::consume(&address, &format!("c{i}"), &topic, per_pair, ready_tx, |p| {
                        e2e.0.push(age_us(p, 0))
                    })
                    .await?;
                    anyhow::Ok(e2e)
                })
            };
            ready_rx.recv().await?;
            let paced = interval.map(|iv| (iv, iv / concurrency as u32 * i as u32));
            let dep = super::mqtt::publish(&address, &format!("p{i}"), &topic, per_pair, window, paced, |_| {
                let mut p = vec![0x42u8; payload_len];
                stamp(&mut p, 0);
                p
            })
            .await?;
            e2e.extend(consumer.await?);
            Ok((Samples(dep), e2e))
        }
    })?;
    r.peak_rss_kib = sampler.peak();
    Ok(r)
}

fn report(name: &str, r: &RunResult) {
    println!(
        "{name:<28} {:>9.0} msg/s  {:>8} msgs in {:>6.2}s  publish/deposit p50 {:>6.2} ms p99 {:>6.2} ms  end-to-end p50 {:>6.2} ms p99 {:>6.2} ms  peak RSS {:>6.1} MiB",
        rate(r.messages, r.elapsed),
        r.messages,
        r.elapsed.as_secs_f64(),
        r.deposit.quantile_ms(0.5),
        r.deposit.quantile_ms(0.99),
        r.e2e.quantile_ms(0.5),
        r.e2e.quantile_ms(0.99),
        r.peak_rss_kib as f64 / 1024.0
    );
}

/// Runs the whole benchmark and prints the figures; its folders go, whatever happens.
pub fn run(w: Workload) -> anyhow::Result<()> {
    let _ = epoch();
    let base = std::env::temp_dir().join(format!("meow-bench-{}", std::process::id()));
    let result = run_in(&base, &w);
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn run_in(base: &Path, w: &Workload) -> anyhow::Result<()> {
    println!(
        "workload: {} messages of {} content bytes (envelope {} bytes), {} producer/consumer pairs, {} deposits in flight per producer, durable (fsync) deposits",
        w.messages,
        w.size,
        template_envelope(w.size)?.len(),
        w.concurrency,
        w.window
    );
    let server = ServerChild::start(&base.join("server"))?;
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib(server.pid()).unwrap_or(0);
    println!("meow server idle RSS: {:.1} MiB", idle as f64 / 1024.0);
    let (dep, round) = unloaded_latency(&server, 500)?;
    println!(
        "unloaded: durable deposit p50 {:.2} ms p99 {:.2} ms; deposit + poll + ack p50 {:.2} ms p99 {:.2} ms",
        dep.quantile_ms(0.5),
        dep.quantile_ms(0.99),
        round.quantile_ms(0.5),
        round.quantile_ms(0.99)
    );
    // The paced run goes first: it measures a steady load, not the compaction of the burst.
    let lat_total = w.latency_rate * w.latency_secs;
    let paced = meow_run(&server, w, lat_total, true)?;
    report(&format!("meow server (at {} msg/s)", w.latency_rate), &paced);
    let meow = meow_run(&server, w, w.messages, false)?;
    report("meow server (throughput)", &meow);
    drop(server);

    let server = ServerChild::start(&base.join("server-mem"))?;
    std::thread::sleep(Duration::from_millis(300));
    let per_mailbox = mailbox_memory(&server, w.mailboxes)?;
    println!(
        "memory: {per_mailbox:.0} bytes of RSS per mailbox holding one 176-byte envelope ({} mailboxes)",
        w.mailboxes
    );
    drop(server);

    if !w.mosquitto {
        return Ok(());
    }
    if Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        println!("mosquitto: not installed, comparison skipped (apt-get install mosquitto)");
        return Ok(());
    }
    let m = Mosquitto::start(&base.join("mosquitto"), false)?;
    let mq = mqtt_run(&m, w, w.messages, false)?;
    report("mosquitto QoS 1 (throughput)", &mq);
    drop(m);
    let m = Mosquitto::start(&base.join("mosquitto2"), false)?;
    let mq_paced = mqtt_run(&m, w, lat_total, true)?;
    report(&format!("mosquitto QoS 1 (at {} msg/s)", w.latency_rate), &mq_paced);
    drop(m);
    // The second baseline: Mosquitto with its persistence on (issue 19).
    let m = Mosquitto::start(&base.join("mosquitto3"), true)?;
    let mq_saved = mqtt_run(&m, w, w.messages, false)?;
    report("mosquitto QoS 1, persistence on (throughput)", &mq_saved);
    drop(m);
    let meow_rate = rate(meow.messages, meow.elapsed);
    println!(
        "ratio meow / mosquitto throughput: {:.2}x",
        meow_rate / rate(mq.messages, mq.elapsed)
    );
    println!(
        "ratio meow / mosquitto with persistence throughput: {:.2}x",
        meow_rate / rate(mq_saved.messages, mq_saved.elapsed)
    );
    Ok(())
}
