//! The network shell: accepts TCP connections and serves sessions; answers sealed datagrams
//! and link sessions on datagram ports (UDP, serial lines, radios).
//!
//! Per connection: a handshake under a short timeout, then a reader loop that decrypts and
//! decodes requests and hands each to its own task (pipelining, bounded by `max_in_flight`), and
//! a writer task that seals responses in order and writes them in batches. Bad frames close the
//! connection; requests that decode but make no sense get an error response. Nothing a client
//! sends can stop the others from being served: connections are capped per source address, and
//! the ones still in their handshake form a bounded pool where the oldest (from the same address
//! first) makes room for a newcomer, so idle sockets cannot lock good clients out. Memory for a
//! connection's buffers is only taken once its handshake is done, and frames grow only as their
//! bytes arrive.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_lite::FutureExt;
use futures_lite::io::BufReader;
use meow_net::frame::{self, FrameError};
use meow_net::port::{DatagramPort, PortPeer};
use meow_net::{Link, MemoryListener};
use meow_proto::ServerKey;
use meow_proto::codec::Decode;
use meow_proto::datagram;
use meow_proto::link;
use meow_proto::session::{self, CLIENT_HELLO_LEN};
use meow_proto::wire::{ErrorCode, Request, RequestFrame, Response, ResponseFrame};
use smol::Executor;
use smol::channel::{Receiver, Sender, bounded};
use smol::lock::Semaphore;
use smol::net::TcpListener;

use crate::config::Limits;
use crate::engine::{MAX_REQUEST, Peer};
use meow_clock::timeout;

/// Open connections by source address, and those still in their handshake, oldest first.
#[derive(Debug, Default)]
pub struct Connections {
    open: usize,
    per_address: HashMap<IpAddr, usize>,
    handshaking: VecDeque<(u64, IpAddr, Sender<()>)>,
    next_id: u64,
}

impl Connections {
    /// Admits a connection from `ip`: its id and the signal that evicts it during its handshake,
    /// or the refusal (logged by the caller).
    fn admit(&mut self, ip: IpAddr, limits: &Limits) -> Result<(u64, Receiver<()>), &'static str> {
        if self.open >= limits.max_connections && !self.evict(None) {
            return Err("too many connections");
        }
        if self.per_address.get(&ip).copied().unwrap_or(0) >= limits.max_connections_per_address
            && !self.evict(Some(ip))
        {
            return Err("too many connections from this address");
        }
        if self.handshaking.len() >= limits.max_unauthenticated && !self.evict(Some(ip)) {
            self.evict(None);
        }
        self.open += 1;
        *self.per_address.entry(ip).or_insert(0) += 1;
        self.next_id += 1;
        let (tx, rx) = bounded(1);
        self.handshaking.push_back((self.next_id, ip, tx));
        Ok((self.next_id, rx))
    }

    /// Closes the oldest connection still in its handshake (from `ip`, if given).
    fn evict(&mut self, ip: Option<IpAddr>) -> bool {
        let at = self
            .handshaking
            .iter()
            .position(|(_, a, _)| ip.is_none_or(|ip| *a == ip));
        match at.and_then(|i| self.handshaking.remove(i)) {
            Some((_, _, tx)) => {
                let _ = tx.try_send(());
                true
            }
            None => false,
        }
    }

    fn handshake_done(&mut self, id: u64) {
        self.handshaking.retain(|(i, _, _)| *i != id);
    }

    fn closed(&mut self, id: u64, ip: IpAddr) {
        self.handshake_done(id);
        self.open = self.open.saturating_sub(1);
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
    }
}

/// What every connection task shares.
#[derive(Debug)]
pub struct Context {
    /// The request handler.
    pub shell: crate::shell::Shell,
    /// The server's key.
    pub key: ServerKey,
    /// Open connections.
    pub connections: parking_lot::Mutex<Connections>,
    /// Recent datagram `enc` values (replay protection), with their expiry.
    pub seen_datagrams: parking_lot::Mutex<std::collections::HashMap<[u8; 32], u64>>,
    /// Link sessions of datagram clients (LoRa and serial gateways).
    pub links: parking_lot::Mutex<crate::links::Links>,
}

fn server_rng(ctx: &Context) -> meow_proto::crypto::SharedRng {
    ctx.shell.engine.config().rng.clone()
}

fn connections(ctx: &Context) -> parking_lot::MutexGuard<'_, Connections> {
    ctx.connections.lock()
}

/// Accepts TCP connections until the listener fails.
pub async fn accept_loop(ctx: Arc<Context>, listener: TcpListener, ex: Weak<Executor<'static>>) {
    loop {
        let link = match listener.accept().await.and_then(|(stream, _)| Link::tcp(stream)) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !admit(&ctx, link, &ex) {
            return;
        }
    }
}

/// Accepts in-process connections until the listener closes.
pub async fn memory_loop(ctx: Arc<Context>, listener: MemoryListener, ex: Weak<Executor<'static>>) {
    while let Some(link) = listener.accept().await {
        if !admit(&ctx, link, &ex) {
            return;
        }
    }
}

/// Admits a connection (or refuses it) and serves it on its own task; false once the server
/// is shutting down.
fn admit(ctx: &Arc<Context>, link: Link, ex: &Weak<Executor<'static>>) -> bool {
    let peer = link.peer;
    let admitted = connections(ctx).admit(peer, &ctx.shell.engine.config().limits);
    let (id, evicted) = match admitted {
        Ok(a) => a,
        Err(why) => {
            tracing::warn!(%peer, "connection refused: {why}");
            return true;
        }
    };
    let Some(executor) = ex.upgrade() else {
        connections(ctx).closed(id, peer);
        return false;
    };
    let (ctx2, ex2) = (ctx.clone(), ex.clone());
    executor
        .spawn(async move {
            if let Err(reason) = serve(&ctx2, link, id, evicted, &ex2).await {
                tracing::debug!(%peer, %reason, "connection closed");
            }
            connections(&ctx2).closed(id, peer);
        })
        .detach();
    true
}

/// Reads the client's hello: under the handshake timeout, and closed early if evicted.
async fn read_hello<R: futures_lite::AsyncRead + Unpin>(
    clock: &meow_clock::SharedClock,
    stream: &mut R,
    limits: &Limits,
    evicted: Receiver<()>,
) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let read = async { Some(frame::read_frame(stream, &mut buf, CLIENT_HELLO_LEN + 16).await) }.or(async {
        let _ = evicted.recv().await;
        None
    });
    match timeout(&**clock, limits.handshake_timeout, read).await {
        None => Err("handshake timed out".into()),
        Some(None) => Err("evicted before its handshake: too many connections waiting".into()),
        Some(Some(r)) => r.map(|()| buf).map_err(|e| format!("bad hello: {e}")),
    }
}

async fn serve(
    ctx: &Arc<Context>,
    link: Link,
    id: u64,
    evicted: Receiver<()>,
    ex: &Weak<Executor<'static>>,
) -> Result<(), String> {
    let limits = ctx.shell.engine.config().limits.clone();
    let clock = ctx.shell.engine.config().clock.clone();
    let peer = link.peer;
    let (mut raw, mut w, close) = link.split();

    // Handshake, with no buffer beyond the hello itself.
    let hello = read_hello(&clock, &mut raw, &limits, evicted).await?;
    let (session, reply) =
        session::accept(&ctx.key, &hello, &mut server_rng(ctx)).map_err(|e| format!("handshake: {e}"))?;
    timeout(&*clock, limits.write_timeout, frame::write_frame(&mut w, &reply))
        .await
        .ok_or("write timed out")?
        .map_err(|e| e.to_string())?;
    connections(ctx).handshake_done(id);
    let (sender, mut receiver, binding) = session.split();
    let mut reader = BufReader::with_capacity(64 * 1024, raw);
    let mut buf = Vec::new();

    let peer_ctx = Arc::new(Peer::new(binding, peer, limits.max_mailboxes_per_connection));
    let (out_tx, out_rx) = bounded::<ResponseFrame>(limits.max_in_flight);
    let write_clock = clock.clone();
    let writer = ex.upgrade().ok_or("shutting down")?.spawn(async move {
        frame::write_queued(w, close, sender, out_rx, 256 * 1024, limits.write_timeout, &write_clock).await
    });
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let idle = limits.idle_timeout + limits.max_poll_wait;

    let result = loop {
        let read = timeout(
            &*clock,
            idle,
            frame::read_frame(&mut reader, &mut buf, MAX_REQUEST + 64),
        )
        .await;
        match read {
            None => break Err("idle timeout".to_owned()),
            Some(Err(FrameError::Closed)) => break Ok(()),
            Some(Err(e)) => break Err(e.to_string()),
            Some(Ok(())) => {}
        }
        if receiver.open_in_place(&mut buf).is_err() {
            break Err("frame failed authentication".to_owned());
        }
        let decoded = RequestFrame::from_bytes(&buf);
        // A large frame's buffer is not kept for the life of the connection.
        if buf.capacity() > 64 * 1024 {
            buf = Vec::new();
        }
        let frame = match decoded {
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
            let response = ctx.shell.answer(&peer_ctx, frame.request).await;
            let _ = out_tx.send(ResponseFrame { id: frame.id, response }).await;
            drop(permit);
        })
        .detach();
    };
    drop(out_tx);
    writer.cancel().await;
    result
}

/// Answers sealed datagrams and link sessions on a datagram port (UDP, a serial line, a
/// radio). A port that fails (a serial device unplugged) is retried every second; bad
/// datagrams are dropped and never stop the loop.
pub async fn datagram_loop(ctx: Arc<Context>, port: Arc<dyn DatagramPort>, name: String, ex: Weak<Executor<'static>>) {
    let mut failing = false;
    loop {
        let (datagram, from) = match port.recv_from().await {
            Ok(r) => {
                failing = false;
                r
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(port = %name, error = %e, "datagram port failed; retrying every second");
                }
                failing = true;
                ctx.shell.engine.config().clock.sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(ex) = ex.upgrade() else { return };
        let now = ctx.shell.engine.config().clock.now_secs();
        match datagram.first() {
            Some(&link::OPEN) => {
                open_link(&ctx, &port, &datagram, from, now).await;
                continue;
            }
            Some(&link::FRAME) => {
                link_frame(&ctx, &port, &ex, &datagram, from, now).await;
                continue;
            }
            _ => {}
        }
        let opened = match datagram::open_request(&ctx.key, &datagram, now) {
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
        let (ctx2, port2) = (ctx.clone(), port.clone());
        ex.spawn(async move {
            let peer = Peer::new(opened.binding, from.ip(), 64);
            let response = ctx2.shell.answer(&peer, opened.request.clone()).await;
            let _ = port2.send_to(&opened.seal_response(&response), from).await;
        })
        .detach();
    }
}

/// A link open: a new session, answered at once.
async fn open_link(ctx: &Context, port: &Arc<dyn DatagramPort>, datagram: &[u8], from: PortPeer, now: u64) {
    let mut rng = server_rng(ctx);
    let answer = ctx
        .links
        .lock()
        .open(&ctx.key, datagram, now, &mut rng, |enc| fresh_datagram(ctx, enc, now));
    match answer {
        Ok(Some(answer)) => {
            let _ = port.send_to(&answer, from).await;
        }
        Ok(None) => tracing::debug!(%from, "replayed link open ignored"),
        Err(e) => tracing::debug!(%from, error = %e, "link open refused"),
    }
}

/// A frame in a link session: its deposit is stored, then answered (an unknown session is told
/// so, a frame that does not open is dropped).
async fn link_frame(
    ctx: &Arc<Context>,
    port: &Arc<dyn DatagramPort>,
    ex: &Executor<'static>,
    frame: &[u8],
    from: PortPeer,
    now: u64,
) {
    let opened = ctx.links.lock().frame(frame, now);
    let (id, deposit) = match opened {
        Ok(d) => d,
        Err(link::LinkError::UnknownSession) => {
            if let Some(answer) = link::unknown_session(frame) {
                let _ = port.send_to(&answer, from).await;
            }
            return;
        }
        Err(e) => {
            tracing::debug!(%from, error = %e, "link frame refused");
            return;
        }
    };
    let (ctx, port) = (ctx.clone(), port.clone());
    ex.spawn(async move {
        let status = match deposit.mailbox {
            None => link::LinkStatus::Refused(ErrorCode::NotFound),
            Some(mailbox) => {
                let peer = Peer::new(deposit.binding, from.ip(), 64);
                let request = Request::Deposit {
                    mailbox,
                    envelope: deposit.envelope,
                };
                match ctx.shell.answer(&peer, request).await {
                    Response::Deposited => link::LinkStatus::Deposited,
                    Response::Error { code, .. } => link::LinkStatus::Refused(code),
                    _ => link::LinkStatus::Refused(ErrorCode::Internal),
                }
            }
        };
        let answer = ctx.links.lock().answer(id, deposit.counter, status);
        if let Some(answer) = answer {
            let _ = port.send_to(&answer, from).await;
        }
    })
    .detach();
}

fn fresh_datagram(ctx: &Context, enc: [u8; 32], now: u64) -> bool {
    let mut seen = ctx.seen_datagrams.lock();
    if seen.len() > 100_000 {
        seen.retain(|_, &mut exp| exp > now);
    }
    let window = 2 * datagram::MAX_SKEW_SECS;
    seen.insert(enc, now + window).is_none_or(|exp| exp <= now)
}
