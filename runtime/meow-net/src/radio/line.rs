//! A bare serial line as a datagram port: each datagram is one KISS data frame followed by its
//! CRC-16 (`kiss::encode_checked`). KISS, not COBS, because it is what RNodes and TNCs speak,
//! so one codec serves the line and the radios, and a `screen` on the line shows frame
//! boundaries plainly. Frames that fail the CRC are dropped and counted.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::lock::Mutex;

use super::kiss::{self, Decoder};
use crate::port::{DatagramPort, PortFuture, PortPeer, PortStatus};
use crate::transport::{Link, LinkReader, LinkWriter};

/// The largest datagram a line carries (a link-session frame or a sealed datagram of the
/// largest envelope class fits).
pub const LINE_MTU: usize = 16 * 1024;

/// Reads KISS frames from a byte stream.
pub(crate) struct FrameReader {
    reader: LinkReader,
    decoder: Decoder,
    ready: VecDeque<kiss::Frame>,
    buf: Vec<u8>,
}

impl FrameReader {
    pub(crate) fn new(reader: LinkReader, max: usize) -> Self {
        Self {
            reader,
            decoder: Decoder::new(max),
            ready: VecDeque::new(),
            buf: vec![0; 4096],
        }
    }

    /// The next frame; an error when the stream fails or ends.
    pub(crate) async fn next(&mut self) -> io::Result<kiss::Frame> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Ok(f);
            }
            let n = self.reader.read(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the serial line closed"));
            }
            let ready = &mut self.ready;
            self.decoder.feed(&self.buf[..n], |f| ready.push_back(f));
        }
    }

    /// Frames the decoder dropped (bad framing, too large).
    pub(crate) fn dropped(&self) -> u64 {
        self.decoder.dropped
    }
}

/// A serial line carrying KISS frames with a CRC.
pub struct KissLine {
    reader: Mutex<FrameReader>,
    writer: Mutex<LinkWriter>,
    sent: (AtomicU64, AtomicU64),
    received: (AtomicU64, AtomicU64),
    bad_crc: AtomicU64,
    framing_dropped: AtomicU64,
}

impl std::fmt::Debug for KissLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KissLine")
    }
}

impl KissLine {
    /// A line over an open byte stream (`crate::serial::open`, or a pipe in tests).
    pub fn new(link: Link) -> Self {
        let (reader, writer, _) = link.split();
        Self {
            reader: Mutex::new(FrameReader::new(reader, LINE_MTU + 2)),
            writer: Mutex::new(writer),
            sent: Default::default(),
            received: Default::default(),
            bad_crc: AtomicU64::new(0),
            framing_dropped: AtomicU64::new(0),
        }
    }
}

impl DatagramPort for KissLine {
    fn mtu(&self) -> usize {
        LINE_MTU
    }

    fn send_to<'a>(&'a self, datagram: &'a [u8], _to: PortPeer) -> PortFuture<'a, ()> {
        Box::pin(async move {
            if datagram.len() > LINE_MTU {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a {}-byte datagram is larger than the line's {LINE_MTU}",
                        datagram.len()
                    ),
                ));
            }
            let frame = kiss::encode_checked(datagram);
            let mut w = self.writer.lock().await;
            w.write_all(&frame).await?;
            w.flush().await?;
            self.sent.0.fetch_add(1, Ordering::Relaxed);
            self.sent.1.fetch_add(frame.len() as u64, Ordering::Relaxed);
            Ok(())
        })
    }

    fn recv_from(&self) -> PortFuture<'_, (Vec<u8>, PortPeer)> {
        Box::pin(async move {
            let mut r = self.reader.lock().await;
            loop {
                let frame = r.next().await;
                self.framing_dropped.store(r.dropped(), Ordering::Relaxed);
                let frame = frame?;
                match kiss::open_checked(&frame) {
                    Some(data) => {
                        self.received.0.fetch_add(1, Ordering::Relaxed);
                        self.received
                            .1
                            .fetch_add(frame.data.len() as u64 + 3, Ordering::Relaxed);
                        return Ok((data.to_vec(), PortPeer::Line));
                    }
                    None => {
                        self.bad_crc.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(len = frame.data.len(), "serial frame failed its CRC, dropped");
                    }
                }
            }
        })
    }

    fn status(&self) -> PortStatus {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PortStatus {
            sent: (load(&self.sent.0), load(&self.sent.1)),
            received: (load(&self.received.0), load(&self.received.1)),
            dropped: load(&self.bad_crc) + load(&self.framing_dropped),
            ..PortStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::transport::memory_pair;

    #[test]
    fn datagrams_cross_a_line_and_noise_is_counted_not_delivered() {
        smol::block_on(async {
            let (a, b) = memory_pair();
            let (left, right) = (KissLine::new(a), KissLine::new(b));
            left.send_to(b"first", PortPeer::Line).await.unwrap();
            left.send_to(&[kiss::FEND, kiss::FESC, 0], PortPeer::Line)
                .await
                .unwrap();
            assert_eq!(right.recv_from().await.unwrap(), (b"first".to_vec(), PortPeer::Line));
            assert_eq!(right.recv_from().await.unwrap().0, vec![kiss::FEND, kiss::FESC, 0]);
            // A corrupted frame, then a good one: only the good one comes out.
            let mut bad = kiss::encode_checked(b"corrupt");
            bad[4] ^= 1;
            left.writer.lock().await.write_all(&bad).await.unwrap();
            left.send_to(b"after", PortPeer::Line).await.unwrap();
            assert_eq!(right.recv_from().await.unwrap().0, b"after".to_vec());
            let s = right.status();
            assert_eq!(s.dropped, 1);
            assert_eq!(s.received.0, 3);
            assert_eq!(left.status().sent.0, 3);
            assert!(left.send_to(&vec![0; LINE_MTU + 1], PortPeer::Line).await.is_err());
        });
    }
}
