//! Simulated radios and cables, built from the devices' public protocol documentation, so the
//! serial and radio ports are tested without hardware:
//!
//! - [`Air`]: the medium. Radios on the same settings hear each other; every transmission is
//!   logged with its size on the air and its time on the test's clock.
//! - [`sim_rnode`]: an RNode as its host sees it over USB serial (KISS: detection, settings
//!   echoed back, data frames of at most 508 bytes, sent only once the radio is on).
//! - [`sim_meshtastic`]: a Meshtastic device over its serial stream API (a configuration dump
//!   with log text around it, private-app packets of at most 233 bytes).
//! - [`NullModem`]: two pseudo-terminals joined like a cable, which the test can cut.
//!
//! Each device runs on a [`Link`] (its end of a pipe, or a pseudo-terminal master):
//! [`on_pty`] gives it a pseudo-terminal and a thread, for tests of real processes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use meow_clock::SharedClock;
use meow_net::Link;
use meow_net::radio::kiss::{self, CMD_DATA};
use meow_net::radio::meshtastic::{self as mt, pb};
use meow_net::radio::rnode;
use parking_lot::Mutex;
use smol::channel::{Receiver, Sender, unbounded};

/// One transmission on the air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmission {
    /// The radio that sent it.
    pub from: String,
    /// The payload the radio was given (what it puts in its packet).
    pub payload: Vec<u8>,
    /// The time, ms on the test's clock.
    pub at_ms: u64,
}

#[derive(Debug)]
struct Radio {
    name: String,
    channel: Vec<u8>,
    inbox: Sender<(String, Vec<u8>)>,
}

/// The shared medium and its log.
#[derive(Debug, Clone)]
pub struct Air {
    radios: Arc<Mutex<Vec<Radio>>>,
    log: Arc<Mutex<Vec<Transmission>>>,
    clock: SharedClock,
}

impl Air {
    /// An empty medium timed by `clock`.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            radios: Default::default(),
            log: Default::default(),
            clock,
        }
    }

    fn join(&self, name: &str) -> Receiver<(String, Vec<u8>)> {
        let (tx, rx) = unbounded();
        let mut radios = self.radios.lock();
        // A device plugged in again replaces its old self.
        radios.retain(|r| r.name != name);
        radios.push(Radio {
            name: name.into(),
            channel: Vec::new(),
            inbox: tx,
        });
        rx
    }

    fn tune(&self, name: &str, channel: Vec<u8>) {
        if let Some(r) = self.radios.lock().iter_mut().find(|r| r.name == name) {
            r.channel = channel;
        }
    }

    fn transmit(&self, from: &str, payload: Vec<u8>) {
        let radios = self.radios.lock();
        let channel = radios.iter().find(|r| r.name == from).map(|r| r.channel.clone());
        self.log.lock().push(Transmission {
            from: from.into(),
            payload: payload.clone(),
            at_ms: self.clock.now_ms(),
        });
        for r in radios
            .iter()
            .filter(|r| r.name != from && Some(&r.channel) == channel.as_ref())
        {
            let _ = r.inbox.try_send((from.into(), payload.clone()));
        }
    }

    /// Every transmission so far.
    pub fn log(&self) -> Vec<Transmission> {
        self.log.lock().clone()
    }

    /// The payload sizes `from` sent, in order.
    pub fn sizes_from(&self, from: &str) -> Vec<usize> {
        self.log
            .lock()
            .iter()
            .filter(|t| t.from == from)
            .map(|t| t.payload.len())
            .collect()
    }
}

async fn write(w: &smol::lock::Mutex<meow_net::LinkWriter>, bytes: &[u8]) {
    let mut w = w.lock().await;
    let _ = w.write_all(bytes).await;
    let _ = w.flush().await;
}

/// Frames an RNode refused (too large, or sent with the radio off).
pub static RNODE_REFUSED: AtomicU64 = AtomicU64::new(0);

/// An RNode named `name` on `air`, its host at the other end of `link`. Runs until the host's
/// end closes.
pub async fn sim_rnode(link: Link, air: Air, name: String) {
    let (mut reader, writer, _) = link.split();
    let writer = smol::lock::Mutex::new(writer);
    let inbox = air.join(&name);
    let host_to_air = async {
        let mut decoder = kiss::Decoder::new(1024);
        let mut settings: std::collections::BTreeMap<u8, Vec<u8>> = Default::default();
        let mut buf = [0u8; 1024];
        loop {
            let Ok(n) = reader.read(&mut buf).await else { return };
            if n == 0 {
                return;
            }
            let mut frames = Vec::new();
            decoder.feed(&buf[..n], |f| frames.push(f));
            for f in frames {
                match f.command {
                    rnode::CMD_DETECT if f.data == [rnode::DETECT_REQ] => {
                        write(&writer, &kiss::encode(rnode::CMD_DETECT, &[rnode::DETECT_RESP])).await;
                    }
                    CMD_DATA => {
                        let on = settings.get(&rnode::CMD_RADIO_STATE) == Some(&vec![rnode::RADIO_ON]);
                        if f.data.len() > rnode::FRAME_MTU || !on {
                            RNODE_REFUSED.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        air.transmit(&name, f.data);
                    }
                    cmd @ rnode::CMD_FREQUENCY..=rnode::CMD_RADIO_STATE => {
                        settings.insert(cmd, f.data.clone());
                        // The channel: frequency, bandwidth, spreading factor, coding rate.
                        let channel = [rnode::CMD_FREQUENCY, rnode::CMD_BANDWIDTH, rnode::CMD_SF, rnode::CMD_CR]
                            .iter()
                            .flat_map(|c| settings.get(c).cloned().unwrap_or_default())
                            .collect();
                        air.tune(&name, channel);
                        write(&writer, &kiss::encode(cmd, &f.data)).await;
                    }
                    _ => {}
                }
            }
        }
    };
    let air_to_host = async {
        while let Ok((_, payload)) = inbox.recv().await {
            write(&writer, &kiss::encode(CMD_DATA, &payload)).await;
        }
    };
    host_to_air.or(air_to_host).await;
}

/// The `FromRadio` for a private-app packet from `from`.
fn from_radio_packet(id: u32, from: u32, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    pb::uint(&mut data, 1, u64::from(mt::PRIVATE_APP));
    pb::bytes(&mut data, 2, payload);
    let mut packet = Vec::new();
    pb::fixed32(&mut packet, 1, from);
    pb::fixed32(&mut packet, 2, mt::BROADCAST);
    pb::bytes(&mut packet, 4, &data);
    let mut m = Vec::new();
    pb::uint(&mut m, 1, u64::from(id));
    pb::bytes(&mut m, 2, &packet);
    m
}

/// The configuration dump a device sends after `want_config_id`: its node info, a node list
/// entry, and the end marker, with log text in between.
fn config_dump(node: u32, nonce: u32) -> Vec<u8> {
    let mut info = Vec::new();
    pb::uint(&mut info, 1, u64::from(node));
    let mut my_info = Vec::new();
    pb::uint(&mut my_info, 1, 1);
    pb::bytes(&mut my_info, 3, &info);
    let mut node_info = Vec::new();
    pb::uint(&mut node_info, 1, 2);
    pb::bytes(&mut node_info, 4, &[0x08, 0x2A]);
    let mut done = Vec::new();
    pb::uint(&mut done, 1, 3);
    pb::uint(&mut done, 7, u64::from(nonce));
    let mut out = b"INFO  | 00:00:01 1 [Serial] Client wants config\r\n".to_vec();
    out.extend(mt::frame(&my_info));
    out.extend(mt::frame(&node_info));
    out.extend_from_slice(b"DEBUG | 00:00:01 1 config sent\r\n");
    out.extend(mt::frame(&done));
    out
}

/// The private-app payload of a `ToRadio` packet, if it is one.
fn to_radio_payload(m: &[u8]) -> Option<Result<Vec<u8>, ()>> {
    let packet = pb::fields(m)?.into_iter().find_map(|f| match f {
        (1, pb::Value::Bytes(p)) => Some(p),
        _ => None,
    })?;
    let data = pb::fields(packet)?.into_iter().find_map(|f| match f {
        (4, pb::Value::Bytes(d)) => Some(d),
        _ => None,
    })?;
    let fields = pb::fields(data)?;
    let port = fields.iter().find_map(|f| match f {
        (1, pb::Value::Varint(p)) => Some(*p),
        _ => None,
    });
    let payload = fields.iter().find_map(|f| match f {
        (2, pb::Value::Bytes(p)) => Some(p.to_vec()),
        _ => None,
    })?;
    Some(
        if port == Some(u64::from(mt::PRIVATE_APP)) && payload.len() <= mt::PAYLOAD_MTU {
            Ok(payload)
        } else {
            Err(())
        },
    )
}

/// Packets a Meshtastic device refused (too large, not the private-app port).
pub static MESHTASTIC_REFUSED: AtomicU64 = AtomicU64::new(0);

/// A Meshtastic device of node number `node` on `air` (all on one channel), its host at the
/// other end of `link`.
pub async fn sim_meshtastic(link: Link, air: Air, node: u32) {
    let name = format!("!{node:08x}");
    let (reader, writer, _) = link.split();
    let writer = smol::lock::Mutex::new(writer);
    let inbox = air.join(&name);
    air.tune(&name, b"LongFast".to_vec());
    let host_to_air = async {
        let mut frames = mt::StreamReader::new(reader);
        while let Ok(m) = frames.next().await {
            let want = pb::fields(&m).and_then(|f| {
                f.into_iter().find_map(|f| match f {
                    (3, pb::Value::Varint(n)) => Some(n as u32),
                    _ => None,
                })
            });
            if let Some(nonce) = want {
                write(&writer, &config_dump(node, nonce)).await;
                continue;
            }
            match to_radio_payload(&m) {
                Some(Ok(payload)) => air.transmit(&name, payload),
                Some(Err(())) | None => {
                    MESHTASTIC_REFUSED.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let air_to_host = async {
        let mut id = 100;
        while let Ok((from, payload)) = inbox.recv().await {
            let from = u32::from_str_radix(from.trim_start_matches('!'), 16).unwrap_or(0);
            id += 1;
            write(&writer, &mt::frame(&from_radio_packet(id, from, &payload))).await;
        }
    };
    host_to_air.or(air_to_host).await;
}

/// Runs `device` on a pseudo-terminal's master, on a thread of its own; the path of the
/// terminal a program opens as the device.
pub fn on_pty<F>(device: impl FnOnce(Link) -> F) -> PathBuf
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (path, unplug) = pluggable(device);
    // Never unplugged: the device lives as long as the test process.
    std::mem::forget(unplug);
    path
}

/// Like [`on_pty`], and the device goes away (its terminal closes, as when a USB radio is
/// unplugged) when the returned sender is dropped.
pub fn pluggable<F>(device: impl FnOnce(Link) -> F) -> (PathBuf, Sender<()>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (master, path, keep) = meow_net::serial::pty().unwrap_or_else(|e| panic!("a pseudo-terminal: {e}"));
    let run = device(master);
    let (unplug, unplugged) = smol::channel::bounded::<()>(1);
    std::thread::spawn(move || {
        smol::block_on(run.or(async {
            let _ = unplugged.recv().await;
        }));
        drop(keep);
    });
    (path, unplug)
}

/// Two pseudo-terminals joined like a serial cable: what one end writes, the other reads,
/// unless the test has cut the cable (then bytes are lost, as on a cut wire).
#[derive(Debug, Clone)]
pub struct NullModem {
    cut: Arc<AtomicBool>,
    /// Bytes carried each way.
    pub carried: Arc<AtomicU64>,
}

impl NullModem {
    /// The cable and the paths of its two ends.
    pub fn new() -> (Self, PathBuf, PathBuf) {
        let cable = Self {
            cut: Arc::new(AtomicBool::new(false)),
            carried: Arc::new(AtomicU64::new(0)),
        };
        let (a, path_a, keep_a) = meow_net::serial::pty().unwrap_or_else(|e| panic!("a pseudo-terminal: {e}"));
        let (b, path_b, keep_b) = meow_net::serial::pty().unwrap_or_else(|e| panic!("a pseudo-terminal: {e}"));
        let c = cable.clone();
        std::thread::spawn(move || {
            let _keep = (keep_a, keep_b);
            let (ra, wa, _) = a.split();
            let (rb, wb, _) = b.split();
            smol::block_on(c.pump(ra, wb).or(c.pump(rb, wa)));
        });
        (cable, path_a, path_b)
    }

    async fn pump(&self, mut from: meow_net::LinkReader, mut to: meow_net::LinkWriter) {
        let mut buf = [0u8; 4096];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    // The far program closed its end; it may open it again.
                    smol::Timer::after(Duration::from_millis(20)).await;
                    continue;
                }
                Ok(n) => n,
            };
            if self.cut.load(Ordering::SeqCst) {
                continue;
            }
            self.carried.fetch_add(n as u64, Ordering::Relaxed);
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    /// Cuts (`true`) or mends the cable.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use meow_clock::VirtualClock;
    use meow_net::port::{DatagramPort, PortPeer};
    use meow_net::radio::airtime::LoraParams;
    use meow_net::radio::meshtastic::Meshtastic;
    use meow_net::radio::rnode::{Rnode, frame_airtime};
    use meow_net::radio::{PortTask, RadioOptions};
    use meow_net::transport::memory_pair;
    use smol::LocalExecutor;

    /// Runs `ex` until nothing can progress, then moves `clock` to its next timer; until `done`.
    fn drive(ex: &LocalExecutor<'_>, clock: &VirtualClock, done: impl Fn() -> bool) {
        for _ in 0..1_000_000 {
            while ex.try_tick() {}
            if done() {
                return;
            }
            match clock.next_deadline() {
                Some(at) => clock.set(at),
                // Waiting on a pipe another task is about to fill: give the reactor a turn.
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        panic!("never done");
    }

    async fn rnode_pair(
        ex: &LocalExecutor<'_>,
        air: &Air,
        clock: SharedClock,
        options: &RadioOptions,
    ) -> (Arc<Rnode>, Arc<Rnode>) {
        let mut ports = Vec::new();
        for name in ["sensor", "gateway"] {
            let (host, device) = memory_pair();
            ex.spawn(sim_rnode(device, air.clone(), name.into())).detach();
            let (port, task): (Arc<Rnode>, PortTask) = Rnode::open(host, options, clock.clone()).await.unwrap();
            ex.spawn(task).detach();
            ports.push(port);
        }
        (ports.remove(0), ports.remove(0))
    }

    #[test]
    fn a_hundred_readings_on_a_one_percent_sf12_link_keep_the_budget_in_order() {
        let vclock = VirtualClock::new(1_000_000);
        let clock = vclock.shared();
        let air = Air::new(clock.clone());
        let ex = LocalExecutor::new();
        let options = RadioOptions::parse("sf=12", true).unwrap();
        let ports = Arc::new(Mutex::new(None));
        let p = ports.clone();
        let (a2, c2) = (air.clone(), clock.clone());
        let opts = options.clone();
        let ex = std::rc::Rc::new(ex);
        let ex2 = ex.clone();
        ex.spawn(async move { *p.lock() = Some(rnode_pair(&ex2, &a2, c2, &opts).await) })
            .detach();
        drive(&ex, &vclock, || ports.lock().is_some());
        let (sensor, gateway) = ports.lock().take().unwrap();

        // 100 readings of 110 bytes queued at once.
        let sent = Arc::new(AtomicU64::new(0));
        for n in 0..100u8 {
            let (sensor, sent) = (sensor.clone(), sent.clone());
            ex.spawn(async move {
                let mut reading = vec![n; 110];
                reading[0] = b'L';
                sensor.send_to(&reading, PortPeer::Line).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            })
            .detach();
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        ex.spawn(async move {
            loop {
                let (d, _) = gateway.recv_from().await.unwrap();
                g.lock().push(d[1]);
            }
        })
        .detach();
        drive(&ex, &vclock, || got.lock().len() == 100);

        assert_eq!(*got.lock(), (0..100).collect::<Vec<u8>>(), "in order, none lost");
        assert_eq!(sent.load(Ordering::Relaxed), 100);
        let air_ms = frame_airtime(&LoraParams::sf(12), 110).as_secs_f64() * 1000.0;
        let starts: Vec<u64> = air.log().iter().map(|t| t.at_ms).collect();
        assert_eq!(starts.len(), 100);
        // At most 36 s of airtime in any hour: count the frames in each hour from each start.
        let per_hour = (36_000.0 / air_ms).floor() as usize;
        for (i, &s) in starts.iter().enumerate() {
            let within = starts[i..].iter().take_while(|&&t| t < s + 3_600_000).count();
            assert!(within <= per_hour, "{within} frames in the hour from {s}");
        }
        let hours = (starts[99] - starts[0]) as f64 / 3_600_000.0;
        assert!(
            hours >= (100 / per_hour - 1) as f64,
            "{hours} h for 100 frames at {per_hour}/h"
        );
        let status = sensor.status();
        assert_eq!(status.sent.0, 100);
        assert_eq!(status.queued, 0);
        assert!(status.airtime.unwrap().0 < Duration::from_secs(36));
    }

    #[test]
    fn datagrams_larger_than_a_frame_cross_both_radios_in_pieces() {
        let vclock = VirtualClock::new(1_000_000);
        let clock = vclock.shared();
        let air = Air::new(clock.clone());
        let ex = std::rc::Rc::new(LocalExecutor::new());
        let done = Arc::new(Mutex::new(Vec::new()));
        let (d, a, c, e) = (done.clone(), air.clone(), clock.clone(), ex.clone());
        ex.spawn(async move {
            let options = RadioOptions::parse("duty=100%", true).unwrap();
            let (sensor, gateway) = rnode_pair(&e, &a, c.clone(), &options).await;
            let big: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
            sensor.send_to(&big, PortPeer::Line).await.unwrap();
            let (got, _) = gateway.recv_from().await.unwrap();
            d.lock().push(got == big);

            let mesh_air = Air::new(c.clone());
            let options = RadioOptions::parse("duty=100%", false).unwrap();
            let mut ports = Vec::new();
            for node in [0x0a0b_0c0d, 0x0102_0304] {
                let (host, device) = memory_pair();
                e.spawn(sim_meshtastic(device, mesh_air.clone(), node)).detach();
                let (port, task) = Meshtastic::open(host, &options, c.clone()).await.unwrap();
                assert_eq!(port.node(), node);
                e.spawn(task).detach();
                ports.push(port);
            }
            ports[0].send_to(&big, PortPeer::Line).await.unwrap();
            let (got, from) = ports[1].recv_from().await.unwrap();
            d.lock().push(got == big && from == PortPeer::Node(0x0a0b_0c0d));
            d.lock()
                .push(mesh_air.sizes_from("!0a0b0c0d").iter().all(|&s| s <= mt::PAYLOAD_MTU));
            d.lock().push(mesh_air.sizes_from("!0a0b0c0d").len() == 6);
        })
        .detach();
        drive(&ex, &vclock, || done.lock().len() == 4);
        assert_eq!(*done.lock(), vec![true; 4]);
        assert_eq!(
            air.sizes_from("sensor"),
            vec![508, 508, 193],
            "1200 bytes as 3 fragments"
        );
        assert_eq!(RNODE_REFUSED.load(Ordering::Relaxed), 0);
        assert_eq!(MESHTASTIC_REFUSED.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_radio_unplugged_and_plugged_back_is_opened_again() {
        smol::block_on(async {
            let clock = meow_clock::SystemClock::shared();
            let air = Air::new(clock.clone());
            let dir = tempfile::tempdir().unwrap();
            let device = dir.path().join("ttyACM0");
            let a = air.clone();
            let (first, unplug) = pluggable(move |l| sim_rnode(l, a, "gateway".into()));
            std::os::unix::fs::symlink(&first, &device).unwrap();
            let address = meow_net::port::LinkAddress::parse(&format!("rnode:{},duty=100%", device.display())).unwrap();
            let gateway = meow_net::radio::Reopening::open(address, clock.clone()).await.unwrap();

            let (host, sim) = memory_pair();
            smol::spawn(sim_rnode(sim, air.clone(), "sensor".into())).detach();
            let options = RadioOptions::parse("duty=100%", true).unwrap();
            let (sensor, task) = Rnode::open(host, &options, clock.clone()).await.unwrap();
            smol::spawn(task).detach();

            sensor.send_to(b"Lone", PortPeer::Line).await.unwrap();
            assert_eq!(gateway.recv_from().await.unwrap().0, b"Lone");
            let waiting = {
                let g = gateway.clone();
                smol::spawn(async move { g.recv_from().await.unwrap().0 })
            };
            drop(unplug);
            smol::Timer::after(Duration::from_millis(300)).await;
            let a = air.clone();
            let (second, _plugged) = pluggable(move |l| sim_rnode(l, a, "gateway".into()));
            std::fs::remove_file(&device).unwrap();
            std::os::unix::fs::symlink(&second, &device).unwrap();
            for _ in 0..100 {
                if gateway.reopened() == 1 {
                    break;
                }
                smol::Timer::after(Duration::from_millis(100)).await;
            }
            assert_eq!(gateway.reopened(), 1, "opened again at the same path");
            sensor.send_to(b"Ltwo", PortPeer::Line).await.unwrap();
            assert_eq!(waiting.await, b"Ltwo");
        });
    }

    #[test]
    fn an_rnode_that_keeps_other_settings_is_named() {
        smol::block_on(async {
            let (host, mut device) = memory_pair();
            let fake = async move {
                let mut buf = [0u8; 256];
                let _ = device.reader.read(&mut buf).await;
                let mut answer = kiss::encode(rnode::CMD_DETECT, &[rnode::DETECT_RESP]);
                for (cmd, value) in rnode::settings_frames(&RadioOptions::rnode()) {
                    let value = if cmd == rnode::CMD_SF { vec![9] } else { value };
                    kiss::encode_into(cmd, &value, &mut answer);
                }
                device.writer.write_all(&answer).await.unwrap();
                smol::Timer::after(Duration::from_secs(5)).await;
            };
            let options = RadioOptions::rnode();
            let open = Rnode::open(host, &options, meow_clock::SystemClock::shared());
            let e = open
                .or(async {
                    fake.await;
                    unreachable!()
                })
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains("did not take the spreading factor"), "{e}");
            let (host, _silent) = memory_pair();
            let e = Rnode::open(host, &RadioOptions::rnode(), meow_clock::SystemClock::shared())
                .await
                .err()
                .unwrap();
            assert!(e.to_string().contains("no RNode answered"), "{e}");
        });
    }
}
