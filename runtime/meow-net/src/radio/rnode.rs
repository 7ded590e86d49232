//! An RNode (Mark Qvist's open LoRa modem, the radio of Reticulum) or any KISS TNC that speaks
//! RNode's commands, as a datagram port. The host talks KISS over USB serial; besides data
//! frames (command 0x00) the RNode takes settings, each answered with the value it now uses:
//! frequency (0x01, Hz, 4 bytes big-endian), bandwidth (0x02, Hz, 4 bytes), transmit power
//! (0x03, dBm), spreading factor (0x04), coding rate (0x05, 5..8), radio state (0x06, 1 = on),
//! and detection (0x08: the host sends 0x73, the RNode answers 0x46). Opening checks that the
//! device answers and took every setting; a mismatch is an error naming the setting.
//!
//! An RNode carries up to 508 bytes per data frame (it splits what exceeds one LoRa packet
//! into two, each with a 1-byte header, and the time on air counts both); larger datagrams
//! are fragmented here.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use meow_clock::SharedClock;
use smol::lock::Mutex;

use super::airtime::{DutyCycle, LoraParams};
use super::fragment::{self, Reassembly};
use super::kiss::{self, CMD_DATA};
use super::line::FrameReader;
use super::{PortTask, RadioOptions, Transmitter};
use crate::port::{DatagramPort, PortFuture, PortPeer, PortStatus};
use crate::transport::Link;

/// Set the frequency.
pub const CMD_FREQUENCY: u8 = 0x01;
/// Set the bandwidth.
pub const CMD_BANDWIDTH: u8 = 0x02;
/// Set the transmit power.
pub const CMD_TXPOWER: u8 = 0x03;
/// Set the spreading factor.
pub const CMD_SF: u8 = 0x04;
/// Set the coding rate.
pub const CMD_CR: u8 = 0x05;
/// Turn the radio on or off.
pub const CMD_RADIO_STATE: u8 = 0x06;
/// Detect an RNode.
pub const CMD_DETECT: u8 = 0x08;
/// An error report.
pub const CMD_ERROR: u8 = 0x90;
/// What the host sends with `CMD_DETECT`.
pub const DETECT_REQ: u8 = 0x73;
/// What an RNode answers.
pub const DETECT_RESP: u8 = 0x46;
/// Radio on.
pub const RADIO_ON: u8 = 0x01;
/// The largest data frame an RNode takes.
pub const FRAME_MTU: usize = 508;
/// Bytes of one LoRa packet an RNode sends (its 1-byte header included).
const PACKET: usize = 255;

/// How long the device has to answer detection and settings.
const SETUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The settings frames, in the order they are sent.
pub fn settings_frames(o: &RadioOptions) -> Vec<(u8, Vec<u8>)> {
    vec![
        (CMD_FREQUENCY, o.frequency_hz.to_be_bytes().to_vec()),
        (CMD_BANDWIDTH, o.lora.bandwidth_hz.to_be_bytes().to_vec()),
        (CMD_TXPOWER, vec![o.power_dbm]),
        (CMD_SF, vec![o.lora.spreading_factor]),
        (CMD_CR, vec![o.lora.coding_rate]),
        (CMD_RADIO_STATE, vec![RADIO_ON]),
    ]
}

fn setting_name(command: u8) -> &'static str {
    match command {
        CMD_FREQUENCY => "frequency",
        CMD_BANDWIDTH => "bandwidth",
        CMD_TXPOWER => "transmit power",
        CMD_SF => "spreading factor",
        CMD_CR => "coding rate",
        CMD_RADIO_STATE => "radio state",
        _ => "setting",
    }
}

/// Time on air of one data frame of `len` bytes: one LoRa packet of `len + 1`, or two.
pub fn frame_airtime(lora: &LoraParams, len: usize) -> Duration {
    let first = (len + 1).min(PACKET);
    let mut air = lora.airtime(first);
    if len + 1 > PACKET {
        air += lora.airtime(len + 1 - (PACKET - 1));
    }
    air
}

/// An RNode as a datagram port.
pub struct Rnode {
    reader: Mutex<(FrameReader, Reassembly)>,
    tx: Transmitter,
    lora: LoraParams,
    tag: AtomicU64,
    received: super::Received,
    clock: SharedClock,
}

impl std::fmt::Debug for Rnode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rnode({:?})", self.lora)
    }
}

impl Rnode {
    /// Detects the RNode on `link`, configures it and turns its radio on; returns the port and
    /// its transmitter task.
    pub async fn open(link: Link, options: &RadioOptions, clock: SharedClock) -> io::Result<(Arc<Self>, PortTask)> {
        let (reader, mut writer, _) = link.split();
        let mut frames = FrameReader::new(reader, FRAME_MTU + 16);
        let settings = settings_frames(options);
        let mut hello = kiss::encode(CMD_DETECT, &[DETECT_REQ]);
        for (cmd, value) in &settings {
            kiss::encode_into(*cmd, value, &mut hello);
        }
        writer.write_all(&hello).await?;
        writer.flush().await?;
        super::answered_within(
            SETUP_TIMEOUT,
            "no RNode answered (is it an RNode with current firmware? is the speed right?)",
            expect_answers(&mut frames, &settings),
        )
        .await?;
        let (tx, task) = Transmitter::new(writer, DutyCycle::new(options.duty), clock.clone());
        tracing::info!(lora = ?options.lora, hz = options.frequency_hz, "rnode ready");
        let port = Arc::new(Self {
            reader: Mutex::new((frames, Reassembly::default())),
            tx,
            lora: options.lora,
            tag: AtomicU64::new(0),
            received: Default::default(),
            clock,
        });
        Ok((port, task))
    }
}

/// Reads until detection and every setting came back as asked.
async fn expect_answers(frames: &mut FrameReader, settings: &[(u8, Vec<u8>)]) -> io::Result<()> {
    let mut detected = false;
    let mut pending: Vec<&(u8, Vec<u8>)> = settings.iter().collect();
    while !detected || !pending.is_empty() {
        let f = frames.next().await?;
        match f.command {
            CMD_DETECT if f.data == [DETECT_RESP] => detected = true,
            CMD_ERROR => {
                return Err(io::Error::other(format!(
                    "the RNode reports error 0x{:02x} while being set up",
                    f.data.first().copied().unwrap_or(0)
                )));
            }
            cmd => {
                let Some(i) = pending.iter().position(|(c, _)| *c == cmd) else {
                    continue;
                };
                if pending[i].1 != f.data {
                    return Err(io::Error::other(format!(
                        "the RNode did not take the {} (asked {:?}, it uses {:?})",
                        setting_name(cmd),
                        pending[i].1,
                        f.data
                    )));
                }
                pending.remove(i);
            }
        }
    }
    Ok(())
}

impl DatagramPort for Rnode {
    fn mtu(&self) -> usize {
        fragment::max_datagram(FRAME_MTU)
    }

    fn send_to<'a>(&'a self, datagram: &'a [u8], _to: PortPeer) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let tag = self.tag.fetch_add(1, Ordering::Relaxed) as u8;
            let frames = fragment::split(datagram, FRAME_MTU, tag)?
                .into_iter()
                .map(|f| (frame_airtime(&self.lora, f.len()), kiss::encode(CMD_DATA, &f)))
                .map(|(air, bytes)| (bytes, air))
                .collect();
            self.tx.send(frames).await
        })
    }

    fn recv_from(&self) -> PortFuture<'_, (Vec<u8>, PortPeer)> {
        Box::pin(async move {
            let mut guard = self.reader.lock().await;
            let (frames, parts) = &mut *guard;
            loop {
                let f = frames.next().await?;
                match f.command {
                    CMD_DATA => {
                        let len = f.data.len();
                        let whole = parts.push(PortPeer::Line, f.data, self.clock.now_ms());
                        self.received.frame(len, whole.is_some());
                        if let Some(d) = whole {
                            return Ok((d, PortPeer::Line));
                        }
                    }
                    CMD_ERROR => tracing::warn!(code = ?f.data.first(), "the RNode reports an error"),
                    _ => {}
                }
            }
        })
    }

    fn status(&self) -> PortStatus {
        let dropped = self.reader.try_lock().map_or(0, |g| g.0.dropped() + g.1.dropped);
        self.tx.status(&self.received, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_the_documented_bytes() {
        let o = RadioOptions::rnode();
        let wire: Vec<u8> = settings_frames(&o)
            .iter()
            .flat_map(|(c, v)| kiss::encode(*c, v))
            .collect();
        assert_eq!(
            wire,
            [
                0xC0, 0x01, 0x33, 0xBE, 0x27, 0xA0, 0xC0, // 868 100 000 Hz
                0xC0, 0x02, 0x00, 0x01, 0xE8, 0x48, 0xC0, // 125 000 Hz
                0xC0, 0x03, 0x0E, 0xC0, // 14 dBm
                0xC0, 0x04, 0x07, 0xC0, // SF7
                0xC0, 0x05, 0x05, 0xC0, // 4/5
                0xC0, 0x06, 0x01, 0xC0, // on
            ]
        );
    }

    #[test]
    fn a_long_frame_costs_two_packets() {
        let lora = LoraParams::sf(7);
        assert_eq!(frame_airtime(&lora, 110), lora.airtime(111));
        assert_eq!(frame_airtime(&lora, 400), lora.airtime(255) + lora.airtime(147));
    }
}
