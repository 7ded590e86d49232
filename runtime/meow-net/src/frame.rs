//! Length-delimited frames on a byte stream: `length:u32 (big-endian) | payload`.
//!
//! The reader checks the length against a maximum, then grows its buffer only as the bytes
//! arrive, so a peer cannot make us reserve memory it does not send.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use meow_proto::codec::Encode;
use meow_proto::session::SessionSender;

/// Largest frame on a session: a 128 KiB envelope with its request header and tag, with room.
pub const MAX_FRAME_LEN: usize = 256 * 1024 + 64;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer closed the stream between frames.
    #[error("connection closed")]
    Closed,
    /// The announced length is above the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The stream failed or ended inside a frame.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame into `buf` (replacing its content).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    buf.clear();
    let mut got = 0;
    while got < len {
        // At most 16 KiB ahead of what has arrived (or as much again as has arrived).
        let want = (len - got).min(GROW.max(got));
        buf.resize(got + want, 0);
        r.read_exact(&mut buf[got..]).await?;
        got += want;
    }
    Ok(())
}

/// The step by which a frame buffer grows ahead of the bytes received.
const GROW: usize = 16 * 1024;

/// Appends `message`, encoded and sealed by `session`, as one frame to `out` (no copy: it is
/// encoded and encrypted in place).
pub fn put_sealed(out: &mut Vec<u8>, session: &mut SessionSender, message: &impl Encode) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    message.encode_into(out);
    session.seal_in_place(out, start + 4);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Replaces `out` with `first` and then every message already waiting in `queue`, each sealed as
/// a frame, until `max` bytes: what one write sends when many tasks pipeline on one connection.
pub fn gather_sealed<T: Encode>(
    out: &mut Vec<u8>,
    session: &mut SessionSender,
    first: T,
    queue: &smol::channel::Receiver<T>,
    max: usize,
) {
    out.clear();
    let mut next = Some(first);
    while let Some(message) = next {
        put_sealed(out, session, &message);
        next = if out.len() < max { queue.try_recv().ok() } else { None };
    }
}

/// Why [`write_queued`] stopped writing.
#[derive(Debug)]
pub enum WriteStop {
    /// The queue was closed: nothing more to send.
    Done,
    /// A write took longer than the timeout: the peer stopped reading.
    TimedOut,
    /// A write failed.
    Failed(std::io::Error),
}

/// The writer of one session connection: seals the messages queued on `queue` in order and writes
/// them, as many as are waiting in one write (up to `max` bytes), until the queue closes or a
/// write fails or takes longer than `timeout` on `clock`. A peer that stops reading cannot hold
/// the connection forever: on a failure `close` shuts the link down, so that its reader sees the
/// end too.
pub async fn write_queued<T: Encode, W: AsyncWrite + Unpin>(
    mut writer: W,
    close: impl Fn(),
    mut session: SessionSender,
    queue: smol::channel::Receiver<T>,
    max: usize,
    timeout: std::time::Duration,
    clock: &meow_clock::SharedClock,
) -> WriteStop {
    use futures_lite::FutureExt;
    let mut out = Vec::with_capacity(64 * 1024);
    while let Ok(first) = queue.recv().await {
        gather_sealed(&mut out, &mut session, first, &queue, max);
        let write = async {
            let wrote = async {
                writer.write_all(&out).await?;
                writer.flush().await
            };
            wrote.await.map_err(WriteStop::Failed)
        };
        let expire = async {
            clock.sleep(timeout).await;
            Err(WriteStop::TimedOut)
        };
        if let Err(stop) = write.or(expire).await {
            close();
            return stop;
        }
    }
    WriteStop::Done
}

/// Appends a frame (length then payload) to `out`.
pub fn put_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Writes one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(4 + payload.len());
    put_frame(&mut out, payload);
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::codec::Writer;
    use meow_proto::session::{self, ClientHandshake};

    /// Bytes written as they are.
    struct Blob(Vec<u8>);

    impl Encode for Blob {
        fn encode(&self, w: &mut Writer) {
            w.raw(&self.0);
        }
    }

    fn sender() -> SessionSender {
        let key = meow_proto::ServerKey::generate(&mut meow_proto::os_rng());
        let (_, hello) = ClientHandshake::start(&key.public(), &mut meow_proto::os_rng()).unwrap();
        let (server, _) = session::accept(&key, &hello, &mut meow_proto::os_rng()).unwrap();
        server.split().0
    }

    /// A connected pair on 127.0.0.1: ours, and the peer's end (which the test may never read).
    async fn pair() -> (smol::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = smol::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (ours, listener.accept().unwrap().0)
    }

    #[test]
    fn the_writer_gives_up_on_a_peer_that_stops_reading_and_ends_with_its_queue() {
        smol::block_on(async {
            let (ours, _peer) = pair().await;
            let (tx, rx) = smol::channel::unbounded();
            for _ in 0..256 {
                tx.send(Blob(vec![7; 64 * 1024])).await.unwrap();
            }
            let timeout = std::time::Duration::from_millis(200);
            let clock = meow_clock::SystemClock::shared();
            let closer = ours.clone();
            let close = move || drop(closer.shutdown(std::net::Shutdown::Both));
            let stop = write_queued(ours, close, sender(), rx, 256 * 1024, timeout, &clock).await;
            assert!(matches!(stop, WriteStop::TimedOut), "{stop:?}");

            let (ours, mut peer) = pair().await;
            let (tx, rx) = smol::channel::unbounded();
            tx.send(Blob(b"hello".to_vec())).await.unwrap();
            drop(tx);
            let stop = write_queued(ours, || {}, sender(), rx, 256 * 1024, timeout, &clock).await;
            assert!(matches!(stop, WriteStop::Done), "{stop:?}");
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
            assert_eq!(got.len(), 4 + 5 + 16, "one sealed frame: length, bytes, AEAD tag");
        });
    }

    #[test]
    fn frames_round_trip_and_limits_hold() {
        smol::block_on(async {
            let mut bytes = Vec::new();
            put_frame(&mut bytes, b"hello");
            put_frame(&mut bytes, b"");
            let mut r = futures_lite::io::Cursor::new(bytes.clone());
            let mut buf = Vec::new();
            read_frame(&mut r, &mut buf, 10).await.unwrap();
            assert_eq!(buf, b"hello");
            read_frame(&mut r, &mut buf, 10).await.unwrap();
            assert!(buf.is_empty());
            assert!(matches!(
                read_frame(&mut r, &mut buf, 10).await,
                Err(FrameError::Closed)
            ));

            let mut r = futures_lite::io::Cursor::new(bytes.clone());
            assert!(matches!(
                read_frame(&mut r, &mut buf, 4).await,
                Err(FrameError::TooLarge { len: 5, max: 4 })
            ));
            let mut r = futures_lite::io::Cursor::new(bytes[..6].to_vec());
            assert!(matches!(read_frame(&mut r, &mut buf, 10).await, Err(FrameError::Io(_))));
        });
    }
}
