//! Datagram ports over serial lines and LoRa radios (spec §1.8, off the internet):
//!
//! - [`line::KissLine`]: a bare serial line, each datagram one KISS frame with a CRC-16;
//! - [`rnode::Rnode`]: an RNode (or a KISS TNC speaking RNode's commands), configured for
//!   frequency, bandwidth, spreading factor, coding rate and power, datagrams as KISS data;
//! - [`meshtastic::Meshtastic`]: a Meshtastic device over its serial stream API, datagrams
//!   in private-app packets.
//!
//! The radios share a [`Transmitter`]: datagrams wait in order for the duty cycle
//! ([`airtime::DutyCycle`]) and large ones are split into frames ([`fragment`]).

pub mod airtime;
pub mod fragment;
pub mod kiss;
pub mod line;
pub mod meshtastic;
pub mod reopen;
pub mod rnode;

pub use reopen::Reopening;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use meow_clock::SharedClock;
use parking_lot::Mutex;
use smol::channel::{Receiver, Sender};

use crate::port::{DatagramPort, LinkAddress, PortPeer, PortStatus, UdpPort};
use crate::transport::LinkWriter;
use airtime::{DutyCycle, LoraParams};

/// A radio's settings, written `option=value` after the device: `sf=12,bw=125k,cr=5,
/// freq=868.1M,power=14,duty=1%` (an RNode) or `channel=0,to=!a1b2c3d4,duty=1%` (Meshtastic,
/// whose `sf`/`bw`/`cr` only describe the mesh's preset, for the airtime budget).
#[derive(Debug, Clone, PartialEq)]
pub struct RadioOptions {
    /// Modulation.
    pub lora: LoraParams,
    /// Frequency, Hz (an RNode).
    pub frequency_hz: u32,
    /// Transmit power, dBm (an RNode).
    pub power_dbm: u8,
    /// Share of any hour on the air.
    pub duty: f64,
    /// Channel index (Meshtastic).
    pub channel: u32,
    /// Destination node (Meshtastic; every node when unset).
    pub to: Option<u32>,
}

impl RadioOptions {
    /// An RNode's defaults: 868.1 MHz, SF7, 125 kHz, 4/5, 14 dBm, 1 %.
    pub fn rnode() -> Self {
        Self {
            lora: LoraParams::sf(7),
            frequency_hz: 868_100_000,
            power_dbm: 14,
            duty: 0.01,
            channel: 0,
            to: None,
        }
    }

    /// Meshtastic's default preset (LongFast: SF11, 250 kHz, 4/5, a 16-symbol preamble), 1 %.
    pub fn meshtastic() -> Self {
        Self {
            lora: LoraParams {
                bandwidth_hz: 250_000,
                preamble: 16,
                ..LoraParams::sf(11)
            },
            ..Self::rnode()
        }
    }

    /// Parses `option=value,…` over the defaults of an RNode (`rnode`) or of Meshtastic.
    pub fn parse(options: &str, rnode: bool) -> Result<Self, String> {
        let mut o = if rnode { Self::rnode() } else { Self::meshtastic() };
        for pair in options.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("radio option {pair:?} is not option=value"))?;
            let bad = |what: &str| format!("radio option {k}={v}: {what}");
            match (k, rnode) {
                ("sf", _) => o.lora.spreading_factor = v.parse().map_err(|_| bad("a number 6..12"))?,
                ("bw", _) => o.lora.bandwidth_hz = parse_hz(v).ok_or_else(|| bad("e.g. 125k or 125000"))?,
                ("cr", _) => {
                    o.lora.coding_rate = v.trim_start_matches("4/").parse().map_err(|_| bad("5..8 (4/5..4/8)"))?
                }
                ("duty", _) => o.duty = parse_share(v).ok_or_else(|| bad("a share, e.g. 1% or 0.01"))?,
                ("freq", true) => o.frequency_hz = parse_hz(v).ok_or_else(|| bad("e.g. 868.1M"))?,
                ("power", true) => o.power_dbm = v.parse().map_err(|_| bad("dBm, 0..22"))?,
                ("channel", false) => o.channel = v.parse().map_err(|_| bad("a channel index"))?,
                ("to", false) => {
                    let hex = v.trim_start_matches('!');
                    o.to = Some(u32::from_str_radix(hex, 16).map_err(|_| bad("a node id like !a1b2c3d4"))?)
                }
                _ => {
                    let known = if rnode {
                        "sf, bw, cr, freq, power, duty"
                    } else {
                        "sf, bw, cr, channel, to, duty"
                    };
                    return Err(format!("unknown radio option {k:?} (known: {known})"));
                }
            }
        }
        o.lora.check()?;
        if o.power_dbm > 22 {
            return Err(format!("power {} dBm is more than 22", o.power_dbm));
        }
        Ok(o)
    }
}

fn parse_hz(v: &str) -> Option<u32> {
    let v = v.to_ascii_lowercase();
    let v = v.trim_end_matches("hz");
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1e3),
        'm' => (&v[..v.len() - 1], 1e6),
        'g' => (&v[..v.len() - 1], 1e9),
        _ => (v, 1.0),
    };
    let hz = num.parse::<f64>().ok()? * mult;
    (hz >= 1.0 && hz <= f64::from(u32::MAX)).then(|| hz.round() as u32)
}

fn parse_share(v: &str) -> Option<f64> {
    let share = match v.strip_suffix('%') {
        Some(p) => p.parse::<f64>().ok()? / 100.0,
        None => v.parse::<f64>().ok()?,
    };
    (share > 0.0 && share <= 1.0).then_some(share)
}

/// A background task a port needs (its transmitter): spawn it and let it run; it ends when
/// the port is dropped.
pub type PortTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An opened port: the port, the task it needs (a radio's transmitter) and the peer at the
/// other end (the UDP address, or the line).
pub struct Opened {
    /// The port.
    pub port: Arc<dyn DatagramPort>,
    /// Its background task, for the caller to spawn.
    pub task: Option<PortTask>,
    /// Where datagrams for the other end go.
    pub peer: PortPeer,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opened({:?}, to {})", self.port, self.peer)
    }
}

impl Opened {
    /// Spawns the task on smol's global executor; the port and its peer.
    pub fn spawned(self) -> (Arc<dyn DatagramPort>, PortPeer) {
        if let Some(task) = self.task {
            smol::spawn(task).detach();
        }
        (self.port, self.peer)
    }
}

/// Opens the port `address` names (a radio is detected and configured first).
pub async fn open(address: &LinkAddress, clock: SharedClock) -> io::Result<Opened> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{address}: {e}"));
    let line = |task, port| Opened {
        port,
        task,
        peer: PortPeer::Line,
    };
    Ok(match address {
        LinkAddress::Udp(host_port) => {
            let target = smol::net::resolve(host_port.as_str())
                .await
                .map_err(context)?
                .into_iter()
                .next()
                .ok_or_else(|| io::Error::other(format!("{address}: the name resolves to no address")))?;
            let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let socket = smol::net::UdpSocket::bind(local).await.map_err(context)?;
            Opened {
                port: Arc::new(UdpPort::new(socket)),
                task: None,
                peer: PortPeer::Ip(target),
            }
        }
        LinkAddress::Serial(spec) => line(None, Arc::new(line::KissLine::new(crate::serial::open(spec)?))),
        LinkAddress::Rnode(spec, options) => {
            let link = crate::serial::open(spec)?;
            let (port, task) = rnode::Rnode::open(link, options, clock).await.map_err(context)?;
            line(Some(task), port)
        }
        LinkAddress::Meshtastic(spec, options) => {
            let link = crate::serial::open(spec)?;
            let (port, task) = meshtastic::Meshtastic::open(link, options, clock)
                .await
                .map_err(context)?;
            line(Some(task), port)
        }
    })
}

/// `setup`, or a timeout error saying `what` after `limit`: how long a device has to answer
/// when a port opens.
async fn answered_within<T>(
    limit: Duration,
    what: &'static str,
    setup: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    use futures_lite::FutureExt;
    setup
        .or(async {
            smol::Timer::after(limit).await;
            Err(io::Error::new(io::ErrorKind::TimedOut, what))
        })
        .await
}

/// One datagram for the radio: its frames as the device wants them written, and the airtime
/// of each on the air.
struct Outgoing {
    frames: Vec<(Vec<u8>, Duration)>,
    done: Sender<io::Result<()>>,
}

/// What the transmitter has done, shared with its port.
#[derive(Debug)]
struct TxCounters {
    duty: Mutex<DutyCycle>,
    queued: AtomicUsize,
    frames: AtomicU64,
    bytes: AtomicU64,
    airtime_us: AtomicU64,
}

/// What a radio port received: whole datagrams, and the bytes of every frame (fragments too).
#[derive(Debug, Default)]
struct Received {
    datagrams: AtomicU64,
    bytes: AtomicU64,
}

impl Received {
    /// A frame of `len` bytes came in; `whole` when it completed a datagram.
    fn frame(&self, len: usize, whole: bool) {
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.datagrams.fetch_add(u64::from(whole), Ordering::Relaxed);
    }

    fn get(&self) -> (u64, u64) {
        (
            self.datagrams.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The sending half of a radio port: datagrams in order, each frame when the duty cycle
/// allows it.
#[derive(Debug)]
pub struct Transmitter {
    queue: Sender<Outgoing>,
    counters: Arc<TxCounters>,
    clock: SharedClock,
}

/// Datagrams a radio queues before refusing more.
const TX_QUEUE: usize = 1024;

impl Transmitter {
    /// A transmitter writing to `writer` within `duty`; returns it and the task that sends.
    fn new(writer: LinkWriter, duty: DutyCycle, clock: SharedClock) -> (Self, PortTask) {
        let (tx, rx) = smol::channel::bounded(TX_QUEUE);
        let counters = Arc::new(TxCounters {
            duty: Mutex::new(duty),
            queued: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            airtime_us: AtomicU64::new(0),
        });
        let task = Box::pin(transmit(rx, writer, counters.clone(), clock.clone()));
        (
            Self {
                queue: tx,
                counters,
                clock,
            },
            task,
        )
    }

    /// Queues `frames` (written bytes, airtime each) as one datagram; resolves once they are
    /// on the air.
    async fn send(&self, frames: Vec<(Vec<u8>, Duration)>) -> io::Result<()> {
        let (done, wait) = smol::channel::bounded(1);
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.try_send(Outgoing { frames, done }).is_err() {
            self.counters.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the radio's queue is full ({TX_QUEUE} datagrams wait for airtime)"),
            ));
        }
        wait.recv()
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the radio's transmitter stopped"))?
    }

    /// The counters and the budget, as a port reports them.
    fn status(&self, received: &Received, dropped: u64) -> PortStatus {
        let received = received.get();
        let c = &self.counters;
        let mut duty = c.duty.lock();
        PortStatus {
            sent: (c.frames.load(Ordering::Relaxed), c.bytes.load(Ordering::Relaxed)),
            received,
            dropped,
            queued: c.queued.load(Ordering::Relaxed),
            airtime_used: Duration::from_micros(c.airtime_us.load(Ordering::Relaxed)),
            airtime: Some((duty.left(self.clock.now_ms()), duty.budget())),
        }
    }
}

async fn transmit(queue: Receiver<Outgoing>, mut writer: LinkWriter, c: Arc<TxCounters>, clock: SharedClock) {
    while let Ok(item) = queue.recv().await {
        let mut result = Ok(());
        for (bytes, air) in &item.frames {
            let slot = c.duty.lock().next_slot(clock.now_ms(), *air);
            clock.sleep_until(slot).await;
            if let Err(e) = async {
                writer.write_all(bytes).await?;
                writer.flush().await
            }
            .await
            {
                result = Err(e);
                break;
            }
            c.duty.lock().record(clock.now_ms(), *air);
            c.frames.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            c.airtime_us.fetch_add(air.as_micros() as u64, Ordering::Relaxed);
        }
        c.queued.fetch_sub(1, Ordering::Relaxed);
        let _ = item.done.try_send(result);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn radio_options_parse_units_and_refuse_nonsense() {
        let o = RadioOptions::parse("sf=12,bw=125kHz,cr=4/8,freq=869.525M,power=10,duty=10%", true).unwrap();
        assert_eq!(o.lora.spreading_factor, 12);
        assert_eq!(o.lora.bandwidth_hz, 125_000);
        assert_eq!(o.lora.coding_rate, 8);
        assert_eq!(o.frequency_hz, 869_525_000);
        assert_eq!(o.power_dbm, 10);
        assert!((o.duty - 0.1).abs() < 1e-12);
        let m = RadioOptions::parse("to=!00c0ffee,channel=2", false).unwrap();
        assert_eq!((m.to, m.channel), (Some(0x00c0_ffee), 2));
        assert_eq!(m.lora.spreading_factor, 11);
        for (bad, rnode) in [
            ("freq=868M", false),
            ("to=!1", true),
            ("duty=0", true),
            ("duty=150%", true),
            ("power=30", true),
            ("bw=lots", true),
            ("sf", true),
        ] {
            assert!(RadioOptions::parse(bad, rnode).is_err(), "{bad}");
        }
    }
}
