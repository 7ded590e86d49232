//! The server's rules, sans-IO: [`Engine::handle`] takes the time, who asks and the request, and
//! returns what to do — answer now, commit a [`Change`] to the store and answer with its outcome,
//! or park a long poll until a deposit or a deadline. It checks authorisation, quotas and rate
//! budgets, and reads the store; it never waits, sleeps or reads a clock. The async shell
//! ([`crate::shell`]) and the test kit's simulated server both drive it.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use meow_clock::rate::Bucket;
use meow_proto::codec::Encode;
use meow_proto::directory::{UncheckedEntry, Withdrawal};
use meow_proto::envelope;
use meow_proto::lease::LeaseOp;
use meow_proto::padding::MAX_ENVELOPE;
use meow_proto::sync::DeviceId;
use meow_proto::wire::{
    ErrorCode, MAX_DIRECTORY_RESULTS, MAX_POLL_MESSAGES, MailboxAuth, Request, Response, ServerInfo,
};
use meow_proto::{MailboxId, broadcast::UncheckedBroadcast};
use meow_store::server::{ServerStore, StoredEntry};

use crate::config::{Budget, ServerConfig};
use crate::gossip::CatalogService;
use crate::relay::Relay;
use crate::shared::{Shared, split_words};
use crate::writer::{Change, Outcome, Refusal};

/// What to do with a request.
#[derive(Debug)]
pub enum Action {
    /// Send this answer.
    Reply(Response),
    /// Commit this change (durably), then answer with [`Answer::response`] of its outcome.
    Commit(Change, Answer),
    /// Nothing is waiting: answer with [`Engine::read`] of these mailboxes when a deposit into
    /// one of them (or a broadcast) is committed, or at `until_ms` at the latest.
    Park(Parked),
}

/// A long poll waiting for mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The mailboxes, authorised.
    pub mailboxes: Vec<MailboxId>,
    /// The most messages to return.
    pub limit: usize,
    /// Broadcasts above this id are returned.
    pub broadcasts_after: u64,
    /// When the poll answers anyway, Unix ms.
    pub until_ms: u64,
}

/// The answer a committed change gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `Deposited`.
    Deposited,
    /// `Acked`.
    Acked,
    /// `Broadcasted` with the new id.
    Broadcasted,
    /// `Published`.
    Published,
    /// `Withdrawn`.
    Withdrawn,
    /// `Lease` with the compare-and-swap's answer.
    Lease,
}

impl Answer {
    /// The response to a committed change, or to its refusal.
    pub fn response(self, outcome: Result<Outcome, Refusal>) -> Response {
        match (self, outcome) {
            (_, Err(r)) => refuse(r),
            (Answer::Deposited, Ok(_)) => Response::Deposited,
            (Answer::Acked, Ok(_)) => Response::Acked,
            (Answer::Broadcasted, Ok(Outcome::Id(id))) => Response::Broadcasted { id },
            (Answer::Published, Ok(_)) => Response::Published,
            (Answer::Withdrawn, Ok(_)) => Response::Withdrawn,
            (Answer::Lease, Ok(Outcome::Lease(answer))) => Response::Lease(answer),
            (Answer::Lease | Answer::Broadcasted, Ok(_)) => refuse(internal()),
        }
    }
}

/// Deposits and bytes left in a [`Budget`].
#[derive(Debug)]
pub struct DepositBudget {
    count: Option<Bucket>,
    bytes: Option<Bucket>,
    budget: Budget,
}

impl DepositBudget {
    /// A full budget at `now_ms`.
    pub fn new(budget: Budget, now_ms: u64) -> Self {
        let bucket = |n: u64| (n > 0).then(|| Bucket::per_window(n, budget.window, now_ms));
        Self {
            count: bucket(u64::from(budget.count)),
            bytes: bucket(budget.bytes),
            budget,
        }
    }

    /// Counts one deposit of `len` bytes, or says why it is refused.
    fn take(&mut self, len: usize, now_ms: u64, whose: &str) -> Result<(), Refusal> {
        let bytes_ok = self.bytes.as_mut().is_none_or(|b| b.take_n(len as u64, now_ms));
        let count_ok = bytes_ok && self.count.as_mut().is_none_or(|b| b.take(now_ms));
        if count_ok {
            return Ok(());
        }
        Err((
            ErrorCode::RateLimited,
            format!(
                "{whose} may deposit {} messages and {} bytes per {} s: slow down",
                self.budget.count,
                self.budget.bytes,
                self.budget.window.as_secs()
            ),
        ))
    }
}

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
    deposits: Mutex<Option<DepositBudget>>,
}

impl Peer {
    /// A new peer context.
    pub fn new(binding: [u8; 32], ip: IpAddr, max_mailboxes: usize) -> Self {
        Self {
            binding,
            ip,
            proven: Mutex::new(HashSet::new()),
            max_mailboxes,
            deposits: Mutex::new(None),
        }
    }

    /// Checks access to each mailbox: a valid proof now, or one given earlier on this channel.
    fn authorize(&self, auths: &[MailboxAuth]) -> Result<Vec<MailboxId>, Refusal> {
        let mut proven = self.proven.lock();
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

/// The error response for a refusal.
pub fn refuse((code, message): Refusal) -> Response {
    Response::Error { code, message }
}

/// Handles requests for one server.
#[derive(Debug)]
pub struct Engine {
    cfg: Arc<ServerConfig>,
    store: ServerStore,
    shared: Arc<Shared>,
    user_broadcasts: Mutex<HashMap<IpAddr, Vec<u64>>>,
    addresses: Mutex<HashMap<IpAddr, DepositBudget>>,
    relay: Option<Arc<Relay>>,
    catalog: Option<Arc<CatalogService>>,
}

impl Engine {
    /// An engine over a store (which it reads; changes go through the writer).
    pub fn new(cfg: Arc<ServerConfig>, store: ServerStore, shared: Arc<Shared>) -> Self {
        Self {
            cfg,
            store,
            shared,
            user_broadcasts: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
            relay: None,
            catalog: None,
        }
    }

    /// Relays Matriochka packets with `relay`.
    pub fn with_relay(mut self, relay: Arc<Relay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Answers catalog requests from `catalog`.
    pub fn with_catalog(mut self, catalog: Arc<CatalogService>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Applies the per-session and per-address deposit budgets.
    fn budget(&self, now: u64, peer: &Peer, len: usize) -> Result<(), Refusal> {
        let limits = &self.cfg.limits;
        {
            let mut session = peer.deposits.lock();
            session
                .get_or_insert_with(|| DepositBudget::new(limits.session_deposits, now))
                .take(len, now, "one session")?;
        }
        let mut addresses = self.addresses.lock();
        if addresses.len() > 100_000 {
            addresses.clear();
        }
        addresses
            .entry(peer.ip)
            .or_insert_with(|| DepositBudget::new(limits.address_deposits, now))
            .take(len, now, "one address")
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// What to do with one request, at `now_ms`.
    pub fn handle(&self, now_ms: u64, peer: &Peer, request: Request) -> Action {
        let now = now_ms / 1000;
        let result = match request {
            Request::Deposit { mailbox, envelope } => self.deposit(now_ms, peer, mailbox, envelope),
            Request::Poll {
                mailboxes,
                limit,
                wait_ms,
                broadcasts_after,
            } => self.poll(now_ms, peer, &mailboxes, limit, wait_ms, broadcasts_after),
            Request::Ack { items } => self.ack(peer, items),
            Request::Broadcast(b) => self.broadcast(now, peer, b),
            Request::DirectoryPublish(e) => self.publish(now, e),
            Request::DirectorySearch { query, limit } => Ok(Action::Reply(self.search(now, &query, limit))),
            Request::DirectoryRandom { count } => Ok(Action::Reply(self.random(now, count))),
            Request::DirectoryWithdraw(w) => self.withdraw(w),
            Request::Info => Ok(Action::Reply(Response::Info(ServerInfo {
                name: self.cfg.name.clone(),
                max_envelope: self.cfg.limits.max_envelope as u32,
                message_ttl_secs: self.cfg.message_ttl.as_secs(),
                open_broadcast: self.cfg.allow_broadcast,
            }))),
            Request::Forward { packet } => match &self.relay {
                Some(relay) => relay
                    .accept(now_ms, packet)
                    .map(|()| Action::Reply(Response::Forwarded)),
                None => Err((
                    ErrorCode::Unavailable,
                    "this server does not relay Matriochka packets (its operator may start it with --relay)".into(),
                )),
            },
            Request::Lease {
                auth,
                device,
                expect,
                op,
            } => self.lease(now, peer, &auth, (device, expect, op)),
            Request::Catalog { offer } => match &self.catalog {
                Some(c) => c.answer(now_ms, peer.ip, offer).map(Action::Reply),
                None => Err((ErrorCode::Unavailable, "this server keeps no catalog".into())),
            },
        };
        result.unwrap_or_else(|r| Action::Reply(refuse(r)))
    }

    fn deposit(&self, now_ms: u64, peer: &Peer, mailbox: MailboxId, envelope: Vec<u8>) -> Result<Action, Refusal> {
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
        self.budget(now_ms, peer, envelope.len())?;
        let change = Change::Deposit {
            mailbox,
            envelope,
            now: now_ms / 1000,
            source: peer.ip,
        };
        Ok(Action::Commit(change, Answer::Deposited))
    }

    /// What is waiting in `mailboxes` (and the broadcasts above `after`) at `now_ms`: the answer to
    /// a poll, parked or not.
    pub fn read(&self, now_ms: u64, p: &Parked) -> Response {
        self.read_now(&p.mailboxes, p.limit, p.broadcasts_after, now_ms / 1000)
            .unwrap_or_else(refuse)
    }

    fn read_now(&self, mailboxes: &[MailboxId], limit: usize, after: u64, now: u64) -> Result<Response, Refusal> {
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

    fn poll(
        &self,
        now_ms: u64,
        peer: &Peer,
        auths: &[MailboxAuth],
        limit: u32,
        wait_ms: u32,
        after: u64,
    ) -> Result<Action, Refusal> {
        let mailboxes = peer.authorize(auths)?;
        let limit = (limit as usize).clamp(1, MAX_POLL_MESSAGES);
        let wait = Duration::from_millis(wait_ms.into()).min(self.cfg.limits.max_poll_wait);
        let first = self.read_now(&mailboxes, limit, after, now_ms / 1000)?;
        let empty =
            matches!(&first, Response::Messages { items, broadcasts, .. } if items.is_empty() && broadcasts.is_empty());
        if !empty || wait.is_zero() {
            return Ok(Action::Reply(first));
        }
        Ok(Action::Park(Parked {
            mailboxes,
            limit,
            broadcasts_after: after,
            until_ms: now_ms + wait.as_millis() as u64,
        }))
    }

    fn ack(&self, peer: &Peer, items: Vec<meow_proto::wire::AckItem>) -> Result<Action, Refusal> {
        let auths: Vec<MailboxAuth> = items.iter().map(|i| i.auth.clone()).collect();
        let ids = peer.authorize(&auths)?;
        let items = ids.into_iter().zip(items).map(|(id, i)| (id, i.seqs)).collect();
        Ok(Action::Commit(Change::Ack { items }, Answer::Acked))
    }

    fn lease(
        &self,
        now: u64,
        peer: &Peer,
        auth: &MailboxAuth,
        (device, expect, op): (DeviceId, u64, LeaseOp),
    ) -> Result<Action, Refusal> {
        let ids = peer.authorize(std::slice::from_ref(auth))?;
        let change = Change::Lease {
            id: ids[0],
            device,
            expect,
            op,
            now,
            source: peer.ip,
        };
        Ok(Action::Commit(change, Answer::Lease))
    }

    fn user_broadcast_allowed(&self, ip: IpAddr, now: u64) -> Result<(), Refusal> {
        if !self.cfg.allow_broadcast {
            return Err((
                ErrorCode::BroadcastRefused,
                "only this server's operator may broadcast (the operator can start it with --allow-broadcast)".into(),
            ));
        }
        let mut rl = self.user_broadcasts.lock();
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

    fn broadcast(&self, now: u64, peer: &Peer, b: UncheckedBroadcast) -> Result<Action, Refusal> {
        let b = b.check().map_err(|_| {
            (
                ErrorCode::NotAuthorized,
                "broadcast signature does not verify".to_owned(),
            )
        })?;
        if b.sent_at.abs_diff(now) > BROADCAST_SKEW_SECS {
            return Err((
                ErrorCode::NotAuthorized,
                "broadcast time is too far from the server's clock".into(),
            ));
        }
        let bytes = b.to_bytes();
        if let Some(id) = self.shared.has_broadcast(&bytes) {
            return Ok(Action::Reply(Response::Broadcasted { id }));
        }
        let from_operator = self.cfg.operators.contains(&b.signer);
        if !from_operator {
            self.user_broadcast_allowed(peer.ip, now)?;
        }
        let expires_at = now + self.cfg.broadcast_ttl.as_secs();
        tracing::info!(from_operator, "broadcast accepted");
        let change = Change::Broadcast {
            bytes,
            from_operator,
            expires_at,
        };
        Ok(Action::Commit(change, Answer::Broadcasted))
    }

    fn publish(&self, now: u64, e: UncheckedEntry) -> Result<Action, Refusal> {
        let entry = e.check(now).map_err(|e| (ErrorCode::InvalidEntry, e.to_string()))?;
        let publisher = *entry.publisher().as_bytes();
        let full = self
            .shared
            .with_directory(|d| d.len() >= self.cfg.limits.max_directory_entries && !d.contains_key(&publisher));
        if full {
            return Err((ErrorCode::RateLimited, "the directory is full".into()));
        }
        let expires_at = entry.expires.min(now + self.cfg.limits.max_entry_lifetime.as_secs());
        let stored = StoredEntry {
            publisher,
            expires_at,
            bytes: entry.to_bytes(),
        };
        Ok(Action::Commit(Change::PutEntry { entry: stored }, Answer::Published))
    }

    fn search(&self, now: u64, query: &str, limit: u32) -> Response {
        let words = split_words(query);
        let limit = (limit as usize).clamp(1, MAX_DIRECTORY_RESULTS);
        let entries = self.shared.with_directory(|d| {
            let mut hits: Vec<_> = d.values().filter(|l| l.expires_at > now && l.matches(&words)).collect();
            hits.sort_by_key(|l| std::cmp::Reverse(l.entry.card.body.created));
            hits.into_iter().take(limit).map(|l| l.entry.clone().into()).collect()
        });
        Response::Directory { entries }
    }

    fn random(&self, now: u64, count: u32) -> Response {
        let count = (count as usize).clamp(1, MAX_DIRECTORY_RESULTS);
        let entries = self.shared.with_directory(|d| {
            let mut all: Vec<_> = d.values().filter(|l| l.expires_at > now).collect();
            let mut rng = self.cfg.rng.clone();
            let mut out = Vec::new();
            while !all.is_empty() && out.len() < count {
                let i = meow_proto::crypto::random_below(all.len(), &mut rng);
                out.push(all.swap_remove(i).entry.clone().into());
            }
            out
        });
        Response::Directory { entries }
    }

    fn withdraw(&self, w: Withdrawal) -> Result<Action, Refusal> {
        w.check().map_err(|_| {
            (
                ErrorCode::NotAuthorized,
                "withdrawal signature does not verify".to_owned(),
            )
        })?;
        let publisher = *w.contact.as_bytes();
        let current = self.shared.with_directory(|d| d.get(&publisher).map(|l| l.id));
        if current != Some(w.entry_id) {
            return Err((ErrorCode::NotFound, "no such directory entry".into()));
        }
        Ok(Action::Commit(Change::DeleteEntry { publisher }, Answer::Withdrawn))
    }

    /// The change that removes what expired at `now_ms` (the shell asks every
    /// `sweep_interval`: [`Engine::next_sweep`]).
    pub fn sweep(&self, now_ms: u64) -> Change {
        Change::Sweep { now: now_ms / 1000 }
    }

    /// When the next sweep is due after one at `last_ms`.
    pub fn next_sweep(&self, last_ms: u64) -> u64 {
        last_ms + self.cfg.sweep_interval.max(Duration::from_millis(10)).as_millis() as u64
    }
}

/// The largest request a session frame may carry (an envelope plus headers).
pub const MAX_REQUEST: usize = MAX_ENVELOPE + 1024;
