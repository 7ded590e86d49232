//! A Meshtastic device as a datagram port, through its serial stream API: every message is
//! `0x94 0xC3`, a 16-bit big-endian length (at most 512) and a protobuf (`ToRadio` from the
//! host, `FromRadio` from the device); bytes outside frames are the device's debug log and are
//! skipped. MEOW datagrams travel as `Data` payloads on the private-app port (256), at most
//! 233 bytes each: larger ones are fragmented here. Only the few protobuf fields used are
//! encoded, by hand, from `meshtastic/mesh.proto`:
//!
//! ```text
//! ToRadio    { MeshPacket packet = 1; uint32 want_config_id = 3; }
//! FromRadio  { uint32 id = 1; MeshPacket packet = 2; MyNodeInfo my_info = 3; uint32 config_complete_id = 7; }
//! MeshPacket { fixed32 from = 1; fixed32 to = 2; uint32 channel = 3; Data decoded = 4; fixed32 id = 6; uint32 hop_limit = 9; }
//! Data       { PortNum portnum = 1; bytes payload = 2; }
//! MyNodeInfo { uint32 my_node_num = 1; }
//! ```
//!
//! Opening sends `want_config_id` and waits for the device to finish its configuration dump
//! (`config_complete_id` with the same number), learning its node number on the way.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use meow_clock::SharedClock;
use smol::lock::Mutex;

use super::airtime::{DutyCycle, LoraParams};
use super::fragment::{self, Reassembly};
use super::{PortTask, RadioOptions, Transmitter};
use crate::port::{DatagramPort, PortFuture, PortPeer, PortStatus};
use crate::transport::{Link, LinkReader};

/// First byte of a stream frame.
pub const START1: u8 = 0x94;
/// Second byte of a stream frame.
pub const START2: u8 = 0xC3;
/// Largest protobuf in one stream frame.
pub const MAX_FRAME: usize = 512;
/// The private-application port number.
pub const PRIVATE_APP: u32 = 256;
/// Largest `Data.payload`.
pub const PAYLOAD_MTU: usize = 233;
/// Every node.
pub const BROADCAST: u32 = 0xFFFF_FFFF;
/// Hops a packet may take.
const HOP_LIMIT: u32 = 3;
/// Bytes a Meshtastic packet adds on the air: its 16-byte radio header, and the `Data`
/// fields around the payload (port number 3 bytes, payload tag and length 2 to 3).
const ON_AIR_OVERHEAD: usize = 16 + 3 + 3;
/// How long the device has to finish its configuration dump.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(8);

/// Protobuf encoding of the few fields used (wire types 0 varint, 2 bytes, 5 fixed32).
pub mod pb {
    /// Appends a varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A varint field.
    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        varint(out, u64::from(field) << 3);
        varint(out, v);
    }

    /// A fixed32 field.
    pub fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
        varint(out, (u64::from(field) << 3) | 5);
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-delimited field.
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        varint(out, (u64::from(field) << 3) | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// One field's value.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Value<'a> {
        /// Wire type 0.
        Varint(u64),
        /// Wire type 5.
        Fixed32(u32),
        /// Wire type 1.
        Fixed64(u64),
        /// Wire type 2.
        Bytes(&'a [u8]),
    }

    fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// The fields of a message, in order; `None` if it is malformed.
    pub fn fields(b: &[u8]) -> Option<Vec<(u32, Value<'_>)>> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < b.len() {
            let key = read_varint(b, &mut at)?;
            let field = u32::try_from(key >> 3).ok()?;
            let value = match key & 7 {
                0 => Value::Varint(read_varint(b, &mut at)?),
                1 => {
                    let v = b.get(at..at + 8)?;
                    at += 8;
                    Value::Fixed64(u64::from_le_bytes(v.try_into().ok()?))
                }
                2 => {
                    let len = usize::try_from(read_varint(b, &mut at)?).ok()?;
                    let v = b.get(at..at.checked_add(len)?)?;
                    at += len;
                    Value::Bytes(v)
                }
                5 => {
                    let v = b.get(at..at + 4)?;
                    at += 4;
                    Value::Fixed32(u32::from_le_bytes(v.try_into().ok()?))
                }
                _ => return None,
            };
            out.push((field, value));
        }
        Some(out)
    }
}

/// A stream frame around `protobuf`.
pub fn frame(protobuf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + protobuf.len());
    out.extend_from_slice(&[START1, START2]);
    out.extend_from_slice(&(protobuf.len() as u16).to_be_bytes());
    out.extend_from_slice(protobuf);
    out
}

/// `ToRadio { want_config_id }`.
pub fn want_config(nonce: u32) -> Vec<u8> {
    let mut m = Vec::new();
    pb::uint(&mut m, 3, u64::from(nonce));
    m
}

/// `ToRadio { packet: MeshPacket { to, channel, decoded: Data { PRIVATE_APP, payload }, id, hop_limit } }`.
pub fn to_radio_packet(to: u32, channel: u32, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    pb::uint(&mut data, 1, u64::from(PRIVATE_APP));
    pb::bytes(&mut data, 2, payload);
    let mut packet = Vec::new();
    pb::fixed32(&mut packet, 2, to);
    if channel != 0 {
        pb::uint(&mut packet, 3, u64::from(channel));
    }
    pb::bytes(&mut packet, 4, &data);
    pb::fixed32(&mut packet, 6, id);
    pb::uint(&mut packet, 9, u64::from(HOP_LIMIT));
    let mut m = Vec::new();
    pb::bytes(&mut m, 1, &packet);
    m
}

/// What a `FromRadio` says, as far as a port cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRadio {
    /// A private-app payload from node `from`.
    Payload { from: u32, payload: Vec<u8> },
    /// The device's own node number.
    MyNode(u32),
    /// The end of the configuration dump asked for with this number.
    ConfigComplete(u32),
    /// Anything else (node lists, telemetry, text messages, other ports).
    Other,
}

/// Reads a `FromRadio`; `None` if it is malformed.
pub fn read_from_radio(b: &[u8]) -> Option<FromRadio> {
    use pb::Value;
    for (field, value) in pb::fields(b)? {
        match (field, value) {
            (2, Value::Bytes(packet)) => return read_packet(packet),
            (3, Value::Bytes(info)) => {
                let num = pb::fields(info)?.into_iter().find_map(|f| match f {
                    (1, Value::Varint(n)) => u32::try_from(n).ok(),
                    _ => None,
                });
                return Some(num.map_or(FromRadio::Other, FromRadio::MyNode));
            }
            (7, Value::Varint(n)) => return Some(FromRadio::ConfigComplete(n as u32)),
            _ => {}
        }
    }
    Some(FromRadio::Other)
}

fn read_packet(packet: &[u8]) -> Option<FromRadio> {
    use pb::Value;
    let mut from = 0;
    let mut decoded = None;
    for (field, value) in pb::fields(packet)? {
        match (field, value) {
            (1, Value::Fixed32(f)) => from = f,
            (4, Value::Bytes(d)) => decoded = Some(d),
            _ => {}
        }
    }
    let Some(data) = decoded else {
        return Some(FromRadio::Other);
    };
    let (mut port, mut payload) = (0u64, None);
    for (field, value) in pb::fields(data)? {
        match (field, value) {
            (1, Value::Varint(p)) => port = p,
            (2, Value::Bytes(p)) => payload = Some(p.to_vec()),
            _ => {}
        }
    }
    Some(match payload {
        Some(payload) if port == u64::from(PRIVATE_APP) => FromRadio::Payload { from, payload },
        _ => FromRadio::Other,
    })
}

/// The stream framing, sans I/O: bytes in as they arrive, frames' protobufs out, the log
/// text between frames skipped.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    /// Bytes skipped (the device's log, or noise).
    pub skipped: u64,
}

impl StreamDecoder {
    /// Feeds `bytes`; every frame they complete is passed to `frame`.
    pub fn feed(&mut self, bytes: &[u8], mut frame: impl FnMut(Vec<u8>)) {
        self.buf.extend_from_slice(bytes);
        while let Some(f) = self.take() {
            frame(f);
        }
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        loop {
            let start = self.buf.windows(2).position(|w| w == [START1, START2]);
            let Some(start) = start else {
                // Keep a last START1 that may begin a frame.
                let keep = usize::from(self.buf.last() == Some(&START1));
                self.skipped += (self.buf.len() - keep) as u64;
                self.buf.drain(..self.buf.len() - keep);
                return None;
            };
            self.skipped += start as u64;
            self.buf.drain(..start);
            let len = usize::from(u16::from_be_bytes([*self.buf.get(2)?, *self.buf.get(3)?]));
            if len > MAX_FRAME {
                // Not a frame after all: skip its start bytes and look again.
                self.skipped += 2;
                self.buf.drain(..2);
                continue;
            }
            if self.buf.len() < 4 + len {
                return None;
            }
            let frame = self.buf[4..4 + len].to_vec();
            self.buf.drain(..4 + len);
            return Some(frame);
        }
    }
}

/// Reads stream frames from a byte stream.
pub struct StreamReader {
    reader: LinkReader,
    decoder: StreamDecoder,
    ready: std::collections::VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamReader({} frames ready)", self.ready.len())
    }
}

impl StreamReader {
    /// A reader over a byte stream.
    pub fn new(reader: LinkReader) -> Self {
        Self {
            reader,
            decoder: StreamDecoder::default(),
            ready: Default::default(),
        }
    }

    /// Bytes skipped so far.
    pub fn skipped(&self) -> u64 {
        self.decoder.skipped
    }

    /// The next frame's protobuf.
    pub async fn next(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(frame);
            }
            let mut chunk = [0u8; 1024];
            let n = self.reader.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the device's serial line closed",
                ));
            }
            let ready = &mut self.ready;
            self.decoder.feed(&chunk[..n], |f| ready.push_back(f));
        }
    }
}

/// A Meshtastic device as a datagram port.
pub struct Meshtastic {
    reader: Mutex<(StreamReader, Reassembly)>,
    tx: Transmitter,
    options: RadioOptions,
    node: u32,
    next_id: AtomicU64,
    received: super::Received,
    clock: SharedClock,
}

impl std::fmt::Debug for Meshtastic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meshtastic(!{:08x})", self.node)
    }
}

/// Time on air of a packet carrying `payload` bytes.
pub fn packet_airtime(lora: &LoraParams, payload: usize) -> Duration {
    lora.airtime(payload + ON_AIR_OVERHEAD)
}

impl Meshtastic {
    /// Asks the device on `link` for its configuration and waits for the end of it; returns
    /// the port and its transmitter task.
    pub async fn open(link: Link, options: &RadioOptions, clock: SharedClock) -> io::Result<(Arc<Self>, PortTask)> {
        let (reader, mut writer, _) = link.split();
        let mut frames = StreamReader::new(reader);
        let nonce = u32::from_le_bytes(meow_proto::crypto::random_bytes(&mut meow_proto::os_rng())) | 1;
        writer.write_all(&frame(&want_config(nonce))).await?;
        writer.flush().await?;
        let node = super::answered_within(
            CONFIG_TIMEOUT,
            "no Meshtastic device answered (is the serial API on? is the speed right?)",
            config_dump(&mut frames, nonce),
        )
        .await?;
        tracing::info!(node = format!("!{node:08x}"), "meshtastic device ready");
        let (tx, task) = Transmitter::new(writer, DutyCycle::new(options.duty), clock.clone());
        let port = Arc::new(Self {
            reader: Mutex::new((frames, Reassembly::default())),
            tx,
            options: options.clone(),
            node,
            next_id: AtomicU64::new(u64::from(u32::from_le_bytes(meow_proto::crypto::random_bytes(
                &mut meow_proto::os_rng(),
            )))),
            received: Default::default(),
            clock,
        });
        Ok((port, task))
    }

    /// The device's node number.
    pub fn node(&self) -> u32 {
        self.node
    }
}

/// Reads the configuration dump up to its end: the device's node number.
async fn config_dump(frames: &mut StreamReader, nonce: u32) -> io::Result<u32> {
    let mut node = None;
    loop {
        match read_from_radio(&frames.next().await?) {
            Some(FromRadio::MyNode(n)) => node = Some(n),
            Some(FromRadio::ConfigComplete(n)) if n == nonce => {
                return node.ok_or_else(|| io::Error::other("the Meshtastic device did not say its node number"));
            }
            _ => {}
        }
    }
}

impl DatagramPort for Meshtastic {
    fn mtu(&self) -> usize {
        fragment::max_datagram(PAYLOAD_MTU)
    }

    fn send_to<'a>(&'a self, datagram: &'a [u8], to: PortPeer) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let to = match to {
                PortPeer::Node(n) => n,
                _ => self.options.to.unwrap_or(BROADCAST),
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let frames = fragment::split(datagram, PAYLOAD_MTU, id as u8)?
                .into_iter()
                .enumerate()
                .map(|(i, f)| {
                    let pkt = to_radio_packet(
                        to,
                        self.options.channel,
                        (id as u32).wrapping_add(i as u32 * 0x1_0000),
                        &f,
                    );
                    (frame(&pkt), packet_airtime(&self.options.lora, f.len()))
                })
                .collect();
            self.tx.send(frames).await
        })
    }

    fn recv_from(&self) -> PortFuture<'_, (Vec<u8>, PortPeer)> {
        Box::pin(async move {
            let mut guard = self.reader.lock().await;
            let (frames, parts) = &mut *guard;
            loop {
                let bytes = frames.next().await?;
                let Some(FromRadio::Payload { from, payload }) = read_from_radio(&bytes) else {
                    continue;
                };
                let len = payload.len();
                let whole = parts.push(PortPeer::Node(from), payload, self.clock.now_ms());
                self.received.frame(len, whole.is_some());
                if let Some(d) = whole {
                    return Ok((d, PortPeer::Node(from)));
                }
            }
        })
    }

    fn status(&self) -> PortStatus {
        let dropped = self.reader.try_lock().map_or(0, |g| g.1.dropped);
        self.tx.status(&self.received, dropped)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn to_radio_is_the_documented_protobuf() {
        assert_eq!(frame(&want_config(42)), [0x94, 0xC3, 0x00, 0x02, 0x18, 0x2A]);
        let m = to_radio_packet(BROADCAST, 0, 0x0102_0304, b"hi");
        assert_eq!(
            m,
            [
                0x0A, 0x15, // packet, 21 bytes
                0x15, 0xFF, 0xFF, 0xFF, 0xFF, // to = broadcast (fixed32, field 2)
                0x22, 0x07, 0x08, 0x80, 0x02, 0x12, 0x02, b'h', b'i', // decoded { portnum 256, payload "hi" }
                0x35, 0x04, 0x03, 0x02, 0x01, // id (fixed32, field 6)
                0x48, 0x03, // hop_limit 3
            ]
        );
    }

    #[test]
    fn from_radio_reads_payloads_node_numbers_and_the_end_of_config() {
        let mut data = Vec::new();
        pb::uint(&mut data, 1, 256);
        pb::bytes(&mut data, 2, b"datagram");
        let mut packet = Vec::new();
        pb::fixed32(&mut packet, 1, 0xA1B2_C3D4);
        pb::fixed32(&mut packet, 2, BROADCAST);
        pb::bytes(&mut packet, 4, &data);
        let mut m = Vec::new();
        pb::uint(&mut m, 1, 9);
        pb::bytes(&mut m, 2, &packet);
        assert_eq!(
            read_from_radio(&m),
            Some(FromRadio::Payload {
                from: 0xA1B2_C3D4,
                payload: b"datagram".to_vec()
            })
        );
        let mut info = Vec::new();
        pb::uint(&mut info, 1, 0x1234);
        let mut m = Vec::new();
        pb::bytes(&mut m, 3, &info);
        assert_eq!(read_from_radio(&m), Some(FromRadio::MyNode(0x1234)));
        assert_eq!(read_from_radio(&[0x38, 0x2A]), Some(FromRadio::ConfigComplete(42)));
        // A text message (port 1) is not ours.
        let mut text = Vec::new();
        pb::uint(&mut text, 1, 1);
        pb::bytes(&mut text, 2, b"hello mesh");
        let mut packet = Vec::new();
        pb::bytes(&mut packet, 4, &text);
        let mut m = Vec::new();
        pb::bytes(&mut m, 2, &packet);
        assert_eq!(read_from_radio(&m), Some(FromRadio::Other));
        assert_eq!(read_from_radio(&[0x12, 0x30, 0x00]), None, "a length past the end");
        assert_eq!(read_from_radio(&[0x0B]), None, "wire type 3");
    }

    #[test]
    fn the_stream_reader_skips_log_text_and_false_starts() {
        smol::block_on(async {
            let (mut a, b) = crate::transport::memory_pair();
            let mut wire = b"INFO  | ??:??:?? 2 Booted\r\n".to_vec();
            wire.extend_from_slice(&[START1, START2, 0xFF, 0xFF]);
            wire.extend_from_slice(&frame(b"one"));
            wire.extend_from_slice(b"DEBUG | log");
            wire.push(START1);
            wire.extend_from_slice(&frame(b"two")[1..]);
            a.writer.write_all(&wire).await.unwrap();
            drop(a);
            let (reader, _, _) = b.split();
            let mut r = StreamReader::new(reader);
            assert_eq!(r.next().await.unwrap(), b"one");
            assert_eq!(r.next().await.unwrap(), b"two");
            assert!(r.next().await.is_err(), "the end of the stream");
            assert!(r.skipped() > 30);
        });
    }
}
