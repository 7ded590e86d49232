//! The client side of a server session over any stream [`Link`](crate::transport::Link): connect, handshake, pipelined
//! requests. The bookkeeping (ids, mailbox proofs, deadlines) is the sans-IO
//! [`ClientCore`]; this is its async shell.
//!
//! Many requests may be in flight on one connection; a reader task matches responses to requests
//! by id. Mailbox proofs are sent the first time a lookup key is used on the connection, then the
//! session remembers them.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::FutureExt;
use futures_lite::io::BufReader;
use meow_clock::{SharedClock, SystemClock};
use meow_proto::broadcast::Broadcast;
use meow_proto::codec::Decode;
use meow_proto::crypto::SharedRng;
use meow_proto::directory::{DirectoryEntry, UncheckedEntry, Withdrawal};
use meow_proto::lease::{LeaseAnswer, LeaseOp};
use meow_proto::session::{ClientHandshake, SessionError, SessionReceiver, SessionSender};
use meow_proto::sync::DeviceId;
use meow_proto::wire::{
    AckItem, BroadcastItem, ErrorCode, MailboxAuth, Request, RequestFrame, Response, ResponseFrame, ServerInfo,
    StoredMessage,
};
use meow_proto::{Address, LookupKey, MailboxId, ServerPublic};
use smol::channel::{Receiver, Sender, bounded};

use crate::client_core::ClientCore;
use crate::frame::{self, FrameError, MAX_FRAME_LEN};
use crate::transport::Transports;

/// What a client takes from its program: transports, a clock, a random generator.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How addresses are reached.
    pub transports: Transports,
    /// Request and connect timeouts run on it.
    pub clock: SharedClock,
    /// Handshake keys come from it.
    pub rng: SharedRng,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            transports: Transports::system(),
            clock: SystemClock::shared(),
            rng: SharedRng::os(),
        }
    }
}

/// How long connecting and the handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may wait for its response (plus any long-poll wait it asks for).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to a server failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach server {address}: {reason}")]
    Connect {
        /// The address tried.
        address: String,
        /// Why.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("server did not answer in time")]
    Timeout,
    /// The server does not hold the key we expected, or the handshake was tampered with.
    #[error("handshake with {address} failed: {source}")]
    Handshake {
        /// The address.
        address: String,
        /// Why.
        source: SessionError,
    },
    /// The connection is gone.
    #[error("connection lost: {0}")]
    Closed(CloseReason),
    /// The server answered something that makes no sense for the request.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused the request.
    #[error("server refused: {message}")]
    Server {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
}

impl ClientError {
    /// Whether trying again later (maybe on a new connection) may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout | ClientError::Closed(_) => true,
            ClientError::Server { code, .. } => code.is_transient(),
            ClientError::Handshake { .. } | ClientError::Protocol(_) => false,
        }
    }
}

/// Why a connection to a server ended.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The server closed the stream between frames.
    #[error("the server closed the connection")]
    ByServer,
    /// A write took longer than the request timeout.
    #[error("the server stopped reading")]
    StoppedReading,
    /// Reading or writing failed, or a frame was too large.
    #[error("{0}")]
    Link(Arc<FrameError>),
    /// A frame did not open under the session key (tampering, or a broken server).
    #[error("a frame from the server failed authentication")]
    Unauthenticated,
    /// A frame opened but did not decode as a response.
    #[error("an undecodable response: {0}")]
    Undecodable(meow_proto::codec::DecodeError),
}

/// What a poll returned.
#[derive(Debug, Clone, Default)]
pub struct PollResult {
    /// Messages, oldest first per mailbox.
    pub messages: Vec<StoredMessage>,
    /// Broadcasts newer than asked.
    pub broadcasts: Vec<BroadcastItem>,
    /// More messages are waiting.
    pub more: bool,
}

/// Requests queued for the writer task at most; a sender waits beyond that.
const MAX_QUEUED: usize = 1024;
/// Bytes the writer task gathers into one write at most.
const MAX_WRITE: usize = 256 * 1024;

type Pending = Mutex<HashMap<u64, Sender<Response>>>;
type Closed = Arc<Mutex<Option<CloseReason>>>;

/// An open session with one server.
pub struct ServerClient {
    address: Address,
    outgoing: Sender<RequestFrame>,
    pending: Arc<Pending>,
    closed: Closed,
    core: Mutex<ClientCore>,
    clock: SharedClock,
    _reader: smol::Task<()>,
    _writer: smol::Task<()>,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerClient({})", self.address)
    }
}

async fn with_timeout<T>(
    clock: &SharedClock,
    d: Duration,
    fut: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    fut.or(async {
        clock.sleep(d).await;
        Err(ClientError::Timeout)
    })
    .await
}

impl ServerClient {
    /// Connects to `address` over TCP and authenticates the server by `key` (the system clock
    /// and generator; [`ServerClient::connect_with`] takes others).
    pub async fn connect(address: &Address, key: &ServerPublic) -> Result<Self, ClientError> {
        Self::connect_with(address, key, &ClientOptions::default()).await
    }

    /// Connects to `address` by its transport and authenticates the server by `key`.
    pub async fn connect_with(
        address: &Address,
        key: &ServerPublic,
        opts: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let connect_err = |e: &dyn std::fmt::Display| ClientError::Connect {
            address: address.to_string(),
            reason: e.to_string(),
        };
        let result = with_timeout(&opts.clock, CONNECT_TIMEOUT, async {
            let link = opts.transports.connect(address).await.map_err(|e| connect_err(&e))?;
            let (hs, hello) =
                ClientHandshake::start(key, &mut opts.rng.clone()).map_err(|source| ClientError::Handshake {
                    address: address.to_string(),
                    source,
                })?;
            let (reader, mut writer, close) = link.split();
            frame::write_frame(&mut writer, &hello)
                .await
                .map_err(|e| connect_err(&e))?;
            let mut reader = BufReader::with_capacity(64 * 1024, reader);
            let mut buf = Vec::new();
            frame::read_frame(&mut reader, &mut buf, 1024)
                .await
                .map_err(|e| connect_err(&e))?;
            let session = hs.finish(&buf).map_err(|source| ClientError::Handshake {
                address: address.to_string(),
                source,
            })?;
            Ok((reader, writer, close, session))
        })
        .await;
        let (reader, writer, close, session) = match result {
            Err(ClientError::Timeout) => return Err(connect_err(&"timed out")),
            other => other?,
        };
        let (send, recv, binding) = session.split();
        let pending: Arc<Pending> = Arc::default();
        let closed: Closed = Arc::default();
        let (outgoing, queued) = bounded(MAX_QUEUED);
        let reader_task = smol::spawn(read_responses(reader, recv, pending.clone(), closed.clone()));
        let writer_task = smol::spawn(write_requests(
            writer,
            close,
            send,
            queued,
            closed.clone(),
            opts.clock.clone(),
        ));
        Ok(Self {
            address: address.clone(),
            outgoing,
            pending,
            closed,
            core: Mutex::new(ClientCore::new(binding)),
            clock: opts.clock.clone(),
            _reader: reader_task,
            _writer: writer_task,
        })
    }

    /// The server address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Whether the connection has failed.
    pub fn is_closed(&self) -> bool {
        self.closed.lock().is_some()
    }

    /// Sends a request and waits for its response (up to the request timeout plus `extra`).
    pub async fn request(&self, request: Request, extra: Duration) -> Result<Response, ClientError> {
        if let Some(reason) = self.closed.lock().clone() {
            return Err(ClientError::Closed(reason));
        }
        let timeout = REQUEST_TIMEOUT + extra;
        let frame = self.core.lock().start(self.clock.now_ms(), request, timeout);
        let id = frame.id;
        let (tx, rx): (Sender<Response>, Receiver<Response>) = bounded(1);
        self.pending.lock().insert(id, tx);
        let result = with_timeout(&self.clock, timeout, async {
            if self.outgoing.send(frame).await.is_err() {
                return Err(self.closed_error());
            }
            rx.recv().await.map_err(|_| self.closed_error())
        })
        .await;
        self.core.lock().forget(id);
        if result.is_err() {
            self.pending.lock().remove(&id);
        }
        result
    }

    fn closed_error(&self) -> ClientError {
        // No reason recorded yet: the reader dropped the waiters as it stopped.
        let reason = self.closed.lock().clone();
        ClientError::Closed(reason.unwrap_or(CloseReason::ByServer))
    }

    fn auth(&self, key: &LookupKey) -> MailboxAuth {
        self.core.lock().auth(key)
    }

    fn mark_proven<'a>(&self, keys: impl IntoIterator<Item = &'a LookupKey>) {
        self.core.lock().mark_proven(keys);
    }

    /// Deposits an envelope; returns once the server has it on disk.
    pub async fn deposit(&self, mailbox: MailboxId, envelope: Vec<u8>) -> Result<(), ClientError> {
        match self
            .request(Request::Deposit { mailbox, envelope }, Duration::ZERO)
            .await?
        {
            Response::Deposited => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Polls mailboxes (proving ownership as needed); waits up to `wait` if nothing is there.
    pub async fn poll(
        &self,
        keys: &[&LookupKey],
        limit: u32,
        wait: Duration,
        broadcasts_after: u64,
    ) -> Result<PollResult, ClientError> {
        let mailboxes = keys.iter().map(|k| self.auth(k)).collect();
        let wait_ms = wait.as_millis().min(u32::MAX.into()) as u32;
        let req = Request::Poll {
            mailboxes,
            limit,
            wait_ms,
            broadcasts_after,
        };
        match self.request(req, wait).await? {
            Response::Messages {
                items,
                broadcasts,
                more,
            } => {
                self.mark_proven(keys.iter().copied());
                Ok(PollResult {
                    messages: items,
                    broadcasts,
                    more,
                })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Deletes delivered messages.
    pub async fn ack(&self, items: &[(&LookupKey, Vec<u64>)]) -> Result<(), ClientError> {
        let req = Request::Ack {
            items: items
                .iter()
                .map(|(k, seqs)| AckItem {
                    auth: self.auth(k),
                    seqs: seqs.clone(),
                })
                .collect(),
        };
        match self.request(req, Duration::ZERO).await? {
            Response::Acked => {
                self.mark_proven(items.iter().map(|(k, _)| *k));
                Ok(())
            }
            other => Err(unexpected(other)),
        }
    }

    /// Publishes an emergency broadcast; returns its id.
    pub async fn broadcast(&self, b: Broadcast) -> Result<u64, ClientError> {
        match self.request(Request::Broadcast(b.into()), Duration::ZERO).await? {
            Response::Broadcasted { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes (or replaces) a directory entry.
    pub async fn directory_publish(&self, entry: DirectoryEntry) -> Result<(), ClientError> {
        match self
            .request(Request::DirectoryPublish(entry.into()), Duration::ZERO)
            .await?
        {
            Response::Published => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Searches the directory.
    pub async fn directory_search(&self, query: &str, limit: u32) -> Result<Vec<UncheckedEntry>, ClientError> {
        match self
            .request(
                Request::DirectorySearch {
                    query: query.to_owned(),
                    limit,
                },
                Duration::ZERO,
            )
            .await?
        {
            Response::Directory { entries } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Draws directory entries at random.
    pub async fn directory_random(&self, count: u32) -> Result<Vec<UncheckedEntry>, ClientError> {
        match self.request(Request::DirectoryRandom { count }, Duration::ZERO).await? {
            Response::Directory { entries } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Withdraws a directory entry.
    pub async fn directory_withdraw(&self, w: Withdrawal) -> Result<(), ClientError> {
        match self.request(Request::DirectoryWithdraw(w), Duration::ZERO).await? {
            Response::Withdrawn => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Hands a Matriochka packet to a relay; returns once the relay has recorded it.
    pub async fn forward(&self, packet: Vec<u8>) -> Result<(), ClientError> {
        match self.request(Request::Forward { packet }, Duration::ZERO).await? {
            Response::Forwarded => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The server's catalog (encoded descriptors, unchecked), offering one's own descriptor.
    pub async fn catalog(&self, offer: Option<Vec<u8>>) -> Result<Vec<Vec<u8>>, ClientError> {
        match self.request(Request::Catalog { offer }, Duration::ZERO).await? {
            Response::Catalog { descriptors } => Ok(descriptors),
            other => Err(unexpected(other)),
        }
    }

    /// A compare-and-swap on the conversation lease named by `key` (docs/PROTOCOL.md §25):
    /// `device`, having last seen epoch `expect`, asks `op`. A refusal is not an error: the
    /// answer says who holds the lease and at which epoch, to retry with.
    pub async fn lease(
        &self,
        key: &LookupKey,
        device: DeviceId,
        expect: u64,
        op: LeaseOp,
    ) -> Result<LeaseAnswer, ClientError> {
        let req = Request::Lease {
            auth: self.auth(key),
            device,
            expect,
            op,
        };
        match self.request(req, Duration::ZERO).await? {
            Response::Lease(answer) => {
                self.mark_proven([key]);
                Ok(answer)
            }
            other => Err(unexpected(other)),
        }
    }

    /// The server's name and limits.
    pub async fn info(&self) -> Result<ServerInfo, ClientError> {
        match self.request(Request::Info, Duration::ZERO).await? {
            Response::Info(info) => Ok(info),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ClientError {
    match r {
        Response::Error { code, message } => ClientError::Server { code, message },
        other => ClientError::Protocol(format!("unexpected response {other:?}")),
    }
}

/// Seals queued requests in order and writes them, as many as are waiting in one write: requests
/// pipelined by many tasks leave in few packets.
async fn write_requests(
    writer: std::pin::Pin<Box<dyn futures_lite::AsyncWrite + Send>>,
    close: Box<dyn Fn() + Send + Sync>,
    session: SessionSender,
    queued: Receiver<RequestFrame>,
    closed: Closed,
    clock: SharedClock,
) {
    // A server that stops reading must not hold the connection forever: after the request
    // timeout the connection counts as lost, and the reader, seeing the shutdown, fails every
    // request still waiting.
    let stop = frame::write_queued(writer, close, session, queued, MAX_WRITE, REQUEST_TIMEOUT, &clock).await;
    let reason = match stop {
        frame::WriteStop::Done => return,
        frame::WriteStop::TimedOut => CloseReason::StoppedReading,
        frame::WriteStop::Failed(e) => CloseReason::Link(Arc::new(FrameError::Io(e))),
    };
    closed.lock().get_or_insert(reason);
}

async fn read_responses(
    mut reader: BufReader<std::pin::Pin<Box<dyn futures_lite::AsyncRead + Send>>>,
    mut session: SessionReceiver,
    pending: Arc<Pending>,
    closed: Closed,
) {
    let mut buf = Vec::new();
    let reason = loop {
        match frame::read_frame(&mut reader, &mut buf, MAX_FRAME_LEN).await {
            Ok(()) => {}
            Err(FrameError::Closed) => break CloseReason::ByServer,
            Err(e) => break CloseReason::Link(Arc::new(e)),
        }
        if session.open_in_place(&mut buf).is_err() {
            break CloseReason::Unauthenticated;
        }
        let frame = match ResponseFrame::from_bytes(&buf) {
            Ok(f) => f,
            Err(e) => break CloseReason::Undecodable(e),
        };
        let waiter = pending.lock().remove(&frame.id);
        if let Some(tx) = waiter {
            let _ = tx.try_send(frame.response);
        }
    };
    tracing::debug!(%reason, "server connection closed");
    closed.lock().get_or_insert(reason);
    // Dropping the senders wakes every waiting request with an error.
    pending.lock().clear();
}
