//! Request handling: authorisation, quotas and the answers. Transport-independent: a session
//! connection and a datagram both hand requests here with their [`Peer`] context.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::FutureExt;
use meow_proto::codec::Encode;
use meow_proto::directory::{UncheckedEntry, Withdrawal};
use meow_proto::envelope;
use meow_proto::padding::MAX_ENVELOPE;
use meow_proto::wire::{
    ErrorCode, MAX_DIRECTORY_RESULTS, MAX_POLL_MESSAGES, MailboxAuth, Request, Response, ServerInfo,
};
use meow_proto::{MailboxId, broadcast::UncheckedBroadcast};
use meow_store::server::{ServerStore, StoredEntry};
use smol::channel::{Sender, bounded};

use crate::config::ServerConfig;
use crate::shared::{Shared, split_words};
use crate::writer::{Refusal, WriteOp};

/// Envelope bytes in one poll response at most (a frame holds 256 KiB; the largest envelope is
/// 128 KiB, so one always fits).
const MAX_POLL_BYTES: usize = 192 * 1024;
/// Clock difference tolerated on a broadcast's time.
const BROADCAST_SKEW_SECS: u64 = 600;

/// Who is asking: the channel binding their mailbox proofs must use, and what they proved.
#[derive(Debug)]
pub struct Peer {
    /// Session binding or datagram `enc`.
    pub binding: [u8; 32],
    /// Source address (for rate limits).
    pub ip: IpAddr,
    proven: Mutex<HashSet<MailboxId>>,
    max_mailboxes: usize,
}

impl Peer {
    /// A new peer context.
    pub fn new(binding: [u8; 32], ip: IpAddr, max_mailboxes: usize) -> Self {
        Self {
            binding,
            ip,
            proven: Mutex::new(HashSet::new()),
            max_mailboxes,
        }
    }

    /// Checks access to each mailbox: a valid proof now, or one given earlier on this channel.
    fn authorize(&self, auths: &[MailboxAuth]) -> Result<Vec<MailboxId>, Refusal> {
        let mut proven = self.proven.lock().map_err(|_| internal())?;
        let mut out = Vec::with_capacity(auths.len());
        for a in auths {
            let id = a.mailbox();
            if !proven.contains(&id) {
                if !a.verify(&self.binding) {
                    return Err((ErrorCode::NotAuthorized, format!("no valid proof for mailbox {id}")));
                }
                if proven.len() >= self.max_mailboxes {
                    return Err((
                        ErrorCode::TooManyMailboxes,
                        format!("at most {} mailboxes per connection", self.max_mailboxes),
                    ));
                }
                proven.insert(id);
            }
            out.push(id);
        }
        Ok(out)
    }
}

fn internal() -> Refusal {
    (ErrorCode::Internal, "internal server error".to_owned())
}

fn refuse((code, message): Refusal) -> Response {
    Response::Error { code, message }
}

/// Handles requests for one server.
#[derive(Debug)]
pub struct Engine {
    cfg: Arc<ServerConfig>,
    store: ServerStore,
    writer: Sender<WriteOp>,
    shared: Arc<Shared>,
    user_broadcasts: Mutex<HashMap<IpAddr, Vec<u64>>>,
}

impl Engine {
    /// An engine over a store and its writer queue.
    pub fn new(cfg: Arc<ServerConfig>, store: ServerStore, writer: Sender<WriteOp>, shared: Arc<Shared>) -> Self {
        Self {
            cfg,
            store,
            writer,
            shared,
            user_broadcasts: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Answers one request.
    pub async fn handle(&self, peer: &Peer, request: Request) -> Response {
        let result = match request {
            Request::Deposit { mailbox, envelope } => self.deposit(mailbox, envelope).await,
            Request::Poll {
                mailboxes,
                limit,
                wait_ms,
                broadcasts_after,
            } => self.poll(peer, &mailboxes, limit, wait_ms, broadcasts_after).await,
            Request::Ack { items } => self.ack(peer, items).await,
            Request::Broadcast(b) => self.broadcast(peer, b).await,
            Request::DirectoryPublish(e) => self.publish(e).await,
            Request::DirectorySearch { query, limit } => Ok(self.search(&query, limit)),
            Request::DirectoryRandom { count } => Ok(self.random(count)),
            Request::DirectoryWithdraw(w) => self.withdraw(w).await,
            Request::Info => Ok(Response::Info(ServerInfo {
                name: self.cfg.name.clone(),
                max_envelope: self.cfg.limits.max_envelope as u32,
                message_ttl_secs: self.cfg.message_ttl.as_secs(),
                open_broadcast: self.cfg.allow_broadcast,
            })),
        };
        result.unwrap_or_else(refuse)
    }

    async fn write<T>(&self, op: impl FnOnce(Sender<Result<T, Refusal>>) -> WriteOp) -> Result<T, Refusal> {
        let (tx, rx) = bounded(1);
        self.writer
            .send(op(tx))
            .await
            .map_err(|_| (ErrorCode::Unavailable, "server is shutting down".to_owned()))?;
        rx.recv()
            .await
            .map_err(|_| (ErrorCode::Unavailable, "server is shutting down".to_owned()))?
    }

    async fn deposit(&self, mailbox: MailboxId, envelope: Vec<u8>) -> Result<Response, Refusal> {
        if envelope.len() > self.cfg.limits.max_envelope {
            return Err((
                ErrorCode::TooLarge,
                format!(
                    "envelope of {} bytes exceeds {}",
                    envelope.len(),
                    self.cfg.limits.max_envelope
                ),
            ));
        }
        envelope::check_layout(&envelope).map_err(|e| (ErrorCode::InvalidEnvelope, e.to_string()))?;
        let now = meow_net::now_secs();
        self.write(|done| WriteOp::Deposit {
            mailbox,
            envelope,
            now,
            done,
        })
        .await?;
        Ok(Response::Deposited)
    }

    fn read(&self, mailboxes: &[MailboxId], limit: usize, after: u64, now: u64) -> Result<Response, Refusal> {
        let mut items: Vec<meow_proto::wire::StoredMessage> = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        for m in mailboxes {
            if items.len() >= limit || bytes >= MAX_POLL_BYTES {
                more = true;
                break;
            }
            let budget = MAX_POLL_BYTES - bytes;
            // Read the commit mark before the snapshot: everything below it is visible to the read.
            let committed = self.shared.committed_seq.load(std::sync::atomic::Ordering::Acquire);
            let read = self
                .store
                .read_mailbox(m, self.shared.read_hint(m), limit - items.len(), budget, now)
                .map_err(|e| {
                    tracing::error!(error = %e, "mailbox read failed");
                    internal()
                })?;
            self.shared.raise_read_hint(m, read.first_key.unwrap_or(committed));
            more |= read.more;
            let mut got = read.messages;
            bytes += got.iter().map(|m| m.envelope.len() + 48).sum::<usize>();
            items.append(&mut got);
        }
        Ok(Response::Messages {
            items,
            broadcasts: self.shared.broadcasts_after(after, now),
            more,
        })
    }

    async fn poll(
        &self,
        peer: &Peer,
        auths: &[MailboxAuth],
        limit: u32,
        wait_ms: u32,
        after: u64,
    ) -> Result<Response, Refusal> {
        let mailboxes = peer.authorize(auths)?;
        let limit = (limit as usize).clamp(1, MAX_POLL_MESSAGES);
        let wait = Duration::from_millis(wait_ms.into()).min(self.cfg.limits.max_poll_wait);
        let (tx, rx) = bounded(1);
        if !wait.is_zero() {
            // Register before reading, so a deposit committed in between still wakes us.
            self.shared.register(&mailboxes, &tx);
        }
        let first = self.read(&mailboxes, limit, after, meow_net::now_secs())?;
        let empty =
            matches!(&first, Response::Messages { items, broadcasts, .. } if items.is_empty() && broadcasts.is_empty());
        if !empty || wait.is_zero() {
            return Ok(first);
        }
        async {
            let _ = rx.recv().await;
        }
        .or(async {
            smol::Timer::after(wait).await;
        })
        .await;
        self.read(&mailboxes, limit, after, meow_net::now_secs())
    }

    async fn ack(&self, peer: &Peer, items: Vec<meow_proto::wire::AckItem>) -> Result<Response, Refusal> {
        let auths: Vec<MailboxAuth> = items.iter().map(|i| i.auth.clone()).collect();
        let ids = peer.authorize(&auths)?;
        let items = ids.into_iter().zip(items).map(|(id, i)| (id, i.seqs)).collect();
        self.write(|done| WriteOp::Ack { items, done }).await?;
        Ok(Response::Acked)
    }

    fn user_broadcast_allowed(&self, ip: IpAddr, now: u64) -> Result<(), Refusal> {
        if !self.cfg.allow_broadcast {
            return Err((
                ErrorCode::BroadcastRefused,
                "only this server's operator may broadcast (the operator can start it with --allow-broadcast)".into(),
            ));
        }
        let mut rl = self.user_broadcasts.lock().map_err(|_| internal())?;
        let recent = rl.entry(ip).or_default();
        recent.retain(|&t| t + 3600 > now);
        if recent.len() >= self.cfg.limits.user_broadcasts_per_hour as usize {
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "at most {} broadcasts per hour",
                    self.cfg.limits.user_broadcasts_per_hour
                ),
            ));
        }
        recent.push(now);
        Ok(())
    }

    async fn broadcast(&self, peer: &Peer, b: UncheckedBroadcast) -> Result<Response, Refusal> {
        let b = b.check().map_err(|_| {
            (
                ErrorCode::NotAuthorized,
                "broadcast signature does not verify".to_owned(),
            )
        })?;
        let now = meow_net::now_secs();
        if b.sent_at.abs_diff(now) > BROADCAST_SKEW_SECS {
            return Err((
                ErrorCode::NotAuthorized,
                "broadcast time is too far from the server's clock".into(),
            ));
        }
        let bytes = b.to_bytes();
        if let Some(id) = self.shared.has_broadcast(&bytes) {
            return Ok(Response::Broadcasted { id });
        }
        let from_operator = self.cfg.operators.contains(&b.signer);
        if !from_operator {
            self.user_broadcast_allowed(peer.ip, now)?;
        }
        let expires_at = now + self.cfg.broadcast_ttl.as_secs();
        let id = self
            .write(|done| WriteOp::Broadcast {
                bytes,
                from_operator,
                expires_at,
                done,
            })
            .await?;
        tracing::info!(id, from_operator, "broadcast accepted");
        Ok(Response::Broadcasted { id })
    }

    async fn publish(&self, e: UncheckedEntry) -> Result<Response, Refusal> {
        let now = meow_net::now_secs();
        let entry = e.check(now).map_err(|e| (ErrorCode::InvalidEntry, e.to_string()))?;
        let publisher = *entry.publisher().as_bytes();
        let full = self
            .shared
            .with_directory(|d| d.len() >= self.cfg.limits.max_directory_entries && !d.contains_key(&publisher))
            .unwrap_or(true);
        if full {
            return Err((ErrorCode::RateLimited, "the directory is full".into()));
        }
        let expires_at = entry.expires.min(now + self.cfg.limits.max_entry_lifetime.as_secs());
        let stored = StoredEntry {
            publisher,
            expires_at,
            bytes: entry.to_bytes(),
        };
        self.write(|done| WriteOp::PutEntry { entry: stored, done }).await?;
        Ok(Response::Published)
    }

    fn search(&self, query: &str, limit: u32) -> Response {
        let words = split_words(query);
        let limit = (limit as usize).clamp(1, MAX_DIRECTORY_RESULTS);
        let now = meow_net::now_secs();
        let entries = self
            .shared
            .with_directory(|d| {
                let mut hits: Vec<_> = d.values().filter(|l| l.expires_at > now && l.matches(&words)).collect();
                hits.sort_by_key(|l| std::cmp::Reverse(l.entry.card.body.created));
                hits.into_iter().take(limit).map(|l| l.entry.clone().into()).collect()
            })
            .unwrap_or_default();
        Response::Directory { entries }
    }

    fn random(&self, count: u32) -> Response {
        let count = (count as usize).clamp(1, MAX_DIRECTORY_RESULTS);
        let now = meow_net::now_secs();
        let entries = self
            .shared
            .with_directory(|d| {
                let mut all: Vec<_> = d.values().filter(|l| l.expires_at > now).collect();
                let mut rng = meow_proto::os_rng();
                let mut out = Vec::new();
                while !all.is_empty() && out.len() < count {
                    let i =
                        (u64::from_le_bytes(meow_proto::crypto::random_bytes(&mut rng)) % all.len() as u64) as usize;
                    out.push(all.swap_remove(i).entry.clone().into());
                }
                out
            })
            .unwrap_or_default();
        Response::Directory { entries }
    }

    async fn withdraw(&self, w: Withdrawal) -> Result<Response, Refusal> {
        w.check().map_err(|_| {
            (
                ErrorCode::NotAuthorized,
                "withdrawal signature does not verify".to_owned(),
            )
        })?;
        let publisher = *w.contact.as_bytes();
        let current = self
            .shared
            .with_directory(|d| d.get(&publisher).map(|l| l.id))
            .flatten();
        if current != Some(w.entry_id) {
            return Err((ErrorCode::NotFound, "no such directory entry".into()));
        }
        self.write(|done| WriteOp::DeleteEntry { publisher, done }).await?;
        Ok(Response::Withdrawn)
    }

    /// Asks the writer to remove what expired.
    pub fn sweep(&self) {
        let _ = self.writer.try_send(WriteOp::Sweep {
            now: meow_net::now_secs(),
        });
    }
}

/// The largest request a session frame may carry (an envelope plus headers).
pub const MAX_REQUEST: usize = MAX_ENVELOPE + 1024;
