//! The network shell: accepts TCP connections and serves sessions; answers sealed UDP datagrams.
//!
//! Per connection: a handshake under a timeout, then a reader loop that decrypts and decodes
//! requests and hands each to its own task (pipelining, bounded by `max_in_flight`), and a writer
//! task that seals responses in order and writes them in batches. Bad frames close the connection;
//! requests that decode but make no sense get an error response. Nothing a client sends can stop
//! the others from being served.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_lite::FutureExt;
use futures_lite::io::BufReader;
use meow_net::frame::{self, FrameError};
use meow_proto::ServerKey;
use meow_proto::codec::Decode;
use meow_proto::datagram;
use meow_proto::session::{self, CLIENT_HELLO_LEN};
use meow_proto::wire::{ErrorCode, RequestFrame, Response, ResponseFrame};
use smol::Executor;
use smol::channel::bounded;
use smol::lock::Semaphore;
use smol::net::{TcpListener, TcpStream, UdpSocket};

use crate::engine::{Engine, MAX_REQUEST, Peer};

/// What every connection task shares.
#[derive(Debug)]
pub struct Context {
    /// The request handler.
    pub engine: Engine,
    /// The server's key.
    pub key: ServerKey,
    /// Open connections.
    pub connections: AtomicUsize,
    /// Recent datagram `enc` values (replay protection), with their expiry.
    pub seen_datagrams: std::sync::Mutex<std::collections::HashMap<[u8; 32], u64>>,
}

async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            smol::Timer::after(d).await;
            None
        })
        .await
}

/// Accepts connections until the listener fails.
pub async fn accept_loop(ctx: Arc<Context>, listener: TcpListener, ex: Weak<Executor<'static>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limit = ctx.engine.config().limits.max_connections;
        if ctx.connections.fetch_add(1, Ordering::AcqRel) >= limit {
            ctx.connections.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, limit, "connection refused: too many connections");
            continue;
        }
        let Some(ex) = ex.upgrade() else { return };
        let ctx2 = ctx.clone();
        let ex2 = Arc::downgrade(&ex);
        ex.spawn(async move {
            if let Err(reason) = serve(&ctx2, stream, peer, &ex2).await {
                tracing::debug!(%peer, %reason, "connection closed");
            }
            ctx2.connections.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
}

async fn serve(
    ctx: &Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    ex: &Weak<Executor<'static>>,
) -> Result<(), String> {
    let limits = ctx.engine.config().limits.clone();
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = BufReader::with_capacity(64 * 1024, stream.clone());
    let mut buf = Vec::new();

    // Handshake.
    let hello = timeout(
        limits.handshake_timeout,
        frame::read_frame(&mut reader, &mut buf, CLIENT_HELLO_LEN + 16),
    )
    .await
    .ok_or("handshake timed out")?;
    hello.map_err(|e| format!("bad hello: {e}"))?;
    let (session, reply) =
        session::accept(&ctx.key, &buf, &mut meow_proto::os_rng()).map_err(|e| format!("handshake: {e}"))?;
    let mut w = stream.clone();
    timeout(limits.write_timeout, frame::write_frame(&mut w, &reply))
        .await
        .ok_or("write timed out")?
        .map_err(|e| e.to_string())?;
    let (sender, mut receiver, binding) = session.split();

    let peer_ctx = Arc::new(Peer::new(binding, peer.ip(), limits.max_mailboxes_per_connection));
    let (out_tx, out_rx) = bounded::<ResponseFrame>(limits.max_in_flight);
    let writer = ex.upgrade().ok_or("shutting down")?.spawn(frame::write_queued(
        stream,
        sender,
        out_rx,
        256 * 1024,
        limits.write_timeout,
    ));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let idle = limits.idle_timeout + limits.max_poll_wait;

    let result = loop {
        let read = timeout(idle, frame::read_frame(&mut reader, &mut buf, MAX_REQUEST + 64)).await;
        match read {
            None => break Err("idle timeout".to_owned()),
            Some(Err(FrameError::Closed)) => break Ok(()),
            Some(Err(e)) => break Err(e.to_string()),
            Some(Ok(())) => {}
        }
        if receiver.open_in_place(&mut buf).is_err() {
            break Err("frame failed authentication".to_owned());
        }
        let frame = match RequestFrame::from_bytes(&buf) {
            Ok(f) => f,
            Err(e) => {
                // Authenticated but undecodable: tell the client, keep the session.
                let response = Response::Error {
                    code: ErrorCode::Malformed,
                    message: e.to_string(),
                };
                if out_tx.send(ResponseFrame { id: 0, response }).await.is_err() {
                    break Err("writer gone".to_owned());
                }
                continue;
            }
        };
        let permit = in_flight.acquire_arc().await;
        let Some(ex) = ex.upgrade() else {
            break Err("shutting down".to_owned());
        };
        let (ctx, peer_ctx, out_tx) = (ctx.clone(), peer_ctx.clone(), out_tx.clone());
        ex.spawn(async move {
            let response = ctx.engine.handle(&peer_ctx, frame.request).await;
            let _ = out_tx.send(ResponseFrame { id: frame.id, response }).await;
            drop(permit);
        })
        .detach();
    };
    drop(out_tx);
    writer.cancel().await;
    result
}

/// Answers sealed datagrams on a UDP socket.
pub async fn datagram_loop(ctx: Arc<Context>, socket: UdpSocket, ex: Weak<Executor<'static>>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                continue;
            }
        };
        let now = meow_net::now_secs();
        let opened = match datagram::open_request(&ctx.key, &buf[..n], now) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(%from, error = %e, "datagram refused");
                continue;
            }
        };
        if !fresh_datagram(&ctx, opened.binding, now) {
            tracing::debug!(%from, "replayed datagram ignored");
            continue;
        }
        let Some(ex) = ex.upgrade() else { return };
        let (ctx2, socket2) = (ctx.clone(), socket.clone());
        ex.spawn(async move {
            let peer = Peer::new(opened.binding, from.ip(), 64);
            let response = ctx2.engine.handle(&peer, opened.request.clone()).await;
            let _ = socket2.send_to(&opened.seal_response(&response), from).await;
        })
        .detach();
    }
}

fn fresh_datagram(ctx: &Context, enc: [u8; 32], now: u64) -> bool {
    let Ok(mut seen) = ctx.seen_datagrams.lock() else {
        return false;
    };
    if seen.len() > 100_000 {
        seen.retain(|_, &mut exp| exp > now);
    }
    let window = 2 * datagram::MAX_SKEW_SECS;
    seen.insert(enc, now + window).is_none_or(|exp| exp <= now)
}
