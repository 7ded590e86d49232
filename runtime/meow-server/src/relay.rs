//! The Matriochka relay (docs/PROTOCOL.md §22): the server's relay keys, one per key epoch, the
//! replay tags of the packets each key opened, and the packets held for their delay.
//!
//! A packet is peeled with the key of the epoch it arrives in (or the one before or after, for
//! clocks that differ and packets that crossed an epoch's end), its tag is recorded, and what
//! is inside waits in the queue until its delay is over; [`run`] then forwards it to the next
//! server or deposits it. Keys live in `relay/epoch-N.key` and are deleted, with their tags,
//! once their epoch is over: a packet captured earlier can no longer be opened by anything the
//! server holds, and the tag set never grows beyond two epochs' traffic.
//!
//! Durability: tags are appended to `relay/tags-N` and the packet to the journal of held
//! packets (`relay/held-N.log`) before the packet is accepted, so a relay killed and restarted still
//! refuses a replay and hands on what it held (a power cut may lose the last records the
//! kernel had not written).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meow_clock::rate::Bucket;
use meow_proto::catalog::RelayInfo;
use meow_proto::onion::{self, Instruction, OnionError, OnionPacket, ReplayTag};
use meow_proto::wire::{ErrorCode, Request, Response};
use meow_proto::{Address, MailboxId, RelayKey, ServerPublic};
use parking_lot::Mutex;
use smol::channel::{Receiver, Sender};

use crate::writer::Refusal;

/// Epochs ahead whose keys are made and published.
const KEYS_AHEAD: u64 = 3;
/// Attempts at handing a packet on before it is dropped.
const ATTEMPTS: u32 = 4;

/// What a relay accepts.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The longest a packet is held; longer delays are cut to it.
    pub max_delay: Duration,
    /// The length of a key epoch.
    pub epoch: Duration,
    /// Packets accepted per second (a token bucket with a second's burst).
    pub per_second: u32,
    /// Packets held at once at most.
    pub max_held: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_delay: Duration::from_secs(60),
            epoch: Duration::from_secs(3600),
            per_second: 2000,
            max_held: 100_000,
        }
    }
}

/// What a held packet becomes once its delay is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Hand the inner packet to the next relay.
    Forward {
        /// Its session key.
        next: ServerPublic,
        /// Where it is.
        address: Address,
        /// The packet (the same size as the one received).
        packet: Vec<u8>,
    },
    /// Deposit the envelope: here, or on `target`.
    Deposit {
        /// `None`: this server's own store.
        target: Option<(ServerPublic, Address)>,
        /// The mailbox.
        mailbox: MailboxId,
        /// The envelope.
        envelope: Vec<u8>,
    },
}

impl Job {
    /// The job a peeled layer asks for: a forward carries the inner packet, a deliver is the last
    /// layer; `None` when the instruction and the layers disagree.
    pub fn new(instruction: Instruction, next: Option<Vec<u8>>) -> Option<Self> {
        Some(match (instruction, next) {
            (Instruction::Forward { next, address, .. }, Some(packet)) => Job::Forward { next, address, packet },
            (
                Instruction::Deliver {
                    target,
                    mailbox,
                    envelope,
                    ..
                },
                None,
            ) => Job::Deposit {
                target,
                mailbox,
                envelope,
            },
            _ => return None,
        })
    }

    /// The instruction (with no delay left) and the inner packet that make this job again with
    /// [`Job::new`]: what the journal stores.
    fn parts(&self) -> (Instruction, Option<&[u8]>) {
        match self {
            Job::Forward { next, address, packet } => (
                Instruction::Forward {
                    next: *next,
                    address: address.clone(),
                    delay_ms: 0,
                },
                Some(packet),
            ),
            Job::Deposit {
                target,
                mailbox,
                envelope,
            } => (
                Instruction::Deliver {
                    delay_ms: 0,
                    target: target.clone(),
                    mailbox: *mailbox,
                    envelope: envelope.clone(),
                },
                None,
            ),
        }
    }
}

/// The replay tags seen under one epoch's key, and their file (opened on the first new tag).
#[derive(Debug, Default)]
struct EpochTags {
    seen: HashSet<ReplayTag>,
    file: Option<std::fs::File>,
}

/// What a relay has done, for its operator and the tests: packet sizes in and out (one per size
/// class whatever the hop), and counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Sizes of the packets accepted.
    pub sizes_in: BTreeSet<usize>,
    /// Sizes of the packets forwarded.
    pub sizes_out: BTreeSet<usize>,
    /// Packets accepted.
    pub accepted: u64,
    /// Packets forwarded to the next relay.
    pub forwarded: u64,
    /// Envelopes deposited (here or on the target).
    pub delivered: u64,
    /// Replays dropped.
    pub replays: u64,
    /// Packets refused (not for our keys, malformed, over the rate).
    pub refused: u64,
    /// Packets dropped after every attempt to hand them on failed.
    pub lost: u64,
}

mod journal;

/// Packets held, by due time and arrival order; the last order given; their journal.
#[derive(Debug)]
struct Held {
    queue: BTreeMap<(u64, u64), Job>,
    last: u64,
    journal: journal::Journal,
}

/// A server's relay: keys, tags, held packets.
#[derive(Debug)]
pub struct Relay {
    dir: PathBuf,
    cfg: RelayConfig,
    keys: Mutex<BTreeMap<u64, RelayKey>>,
    tags: Mutex<HashMap<u64, EpochTags>>,
    held: Mutex<Held>,
    rate: Mutex<Bucket>,
    stats: Mutex<RelayStats>,
    wake: (Sender<()>, Receiver<()>),
}

fn io_refusal(e: &std::io::Error) -> Refusal {
    tracing::error!(error = %e, "relay storage failed");
    (ErrorCode::Internal, "the relay could not record the packet".into())
}

impl Relay {
    /// Opens (or creates) the relay's keys and tags under `data_dir/relay` at `now_ms`.
    pub fn open(data_dir: &Path, cfg: RelayConfig, now_ms: u64) -> std::io::Result<Self> {
        let dir = data_dir.join("relay");
        std::fs::create_dir_all(&dir)?;
        let per_second = f64::from(cfg.per_second.max(1));
        let (journal, pending) = journal::Journal::open(&dir)?;
        let mut held = Held {
            queue: BTreeMap::new(),
            last: 0,
            journal,
        };
        for (order, due, job) in pending {
            held.last = held.last.max(order);
            held.queue.insert((due, order), job);
        }
        if !held.queue.is_empty() {
            tracing::info!(packets = held.queue.len(), "relay: packets held before a restart go on");
        }
        let relay = Self {
            dir,
            rate: Mutex::new(Bucket::new(per_second, cfg.per_second.max(1), now_ms)),
            cfg,
            keys: Mutex::default(),
            tags: Mutex::default(),
            held: Mutex::new(held),
            stats: Mutex::default(),
            wake: smol::channel::bounded(1),
        };
        relay.load()?;
        relay.rotate(now_ms)?;
        Ok(relay)
    }

    fn epoch_secs(&self) -> u64 {
        self.cfg
            .epoch
            .as_secs()
            .max(u64::from(meow_proto::catalog::MIN_EPOCH_SECS))
    }

    fn epoch_at(&self, now_ms: u64) -> u64 {
        now_ms / 1000 / self.epoch_secs()
    }

    fn load(&self) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(epoch) = name.strip_prefix("epoch-").and_then(|n| n.strip_suffix(".key")) {
                let Ok(epoch) = epoch.parse::<u64>() else { continue };
                let bytes = std::fs::read(entry.path())?;
                match <[u8; 32]>::try_from(bytes) {
                    Ok(b) => {
                        self.keys.lock().insert(epoch, RelayKey::from_secret_bytes(b));
                    }
                    Err(_) => tracing::warn!(file = %name, "damaged relay key ignored"),
                }
            } else if let Some(epoch) = name.strip_prefix("tags-").and_then(|n| n.parse::<u64>().ok()) {
                let bytes = std::fs::read(entry.path())?;
                let seen: HashSet<ReplayTag> = bytes
                    .chunks_exact(16)
                    .filter_map(|c| c.try_into().ok().map(ReplayTag))
                    .collect();
                self.tags.lock().insert(epoch, EpochTags { seen, file: None });
            }
        }
        Ok(())
    }

    /// Makes the keys of the coming epochs and deletes those (and their tags) of epochs over.
    pub fn rotate(&self, now_ms: u64) -> std::io::Result<()> {
        let current = self.epoch_at(now_ms);
        let mut keys = self.keys.lock();
        for epoch in current..=current + KEYS_AHEAD {
            if let std::collections::btree_map::Entry::Vacant(slot) = keys.entry(epoch) {
                let key = RelayKey::generate(&mut meow_proto::os_rng());
                crate::write_private(
                    &self.dir.join(format!("epoch-{epoch}.key")),
                    key.secret_bytes().as_slice(),
                )
                .map_err(std::io::Error::other)?;
                slot.insert(key);
            }
        }
        let old: Vec<u64> = keys.keys().copied().filter(|e| *e + 1 < current).collect();
        let mut tags = self.tags.lock();
        for epoch in old {
            keys.remove(&epoch);
            tags.remove(&epoch);
            remove_if_there(&self.dir.join(format!("epoch-{epoch}.key")))?;
            remove_if_there(&self.dir.join(format!("tags-{epoch}")))?;
        }
        tags.retain(|e, _| *e + 1 >= current);
        Ok(())
    }

    /// What the server's descriptor says of its relay at `now_ms`.
    pub fn info(&self, now_ms: u64) -> RelayInfo {
        let current = self.epoch_at(now_ms);
        RelayInfo {
            max_delay_ms: u32::try_from(self.cfg.max_delay.as_millis()).unwrap_or(u32::MAX),
            epoch_secs: u32::try_from(self.epoch_secs()).unwrap_or(u32::MAX),
            keys: self
                .keys
                .lock()
                .iter()
                .filter(|(e, _)| **e >= current)
                .map(|(e, k)| (*e, k.public()))
                .collect(),
        }
    }

    /// What the relay has done so far.
    pub fn stats(&self) -> RelayStats {
        self.stats.lock().clone()
    }

    /// Packets held now.
    pub fn held(&self) -> usize {
        self.held.lock().queue.len()
    }

    fn count(&self, f: impl FnOnce(&mut RelayStats)) {
        f(&mut self.stats.lock());
    }

    /// Takes a packet at `now_ms`: peels it, refuses a replay, and holds what is inside for its
    /// delay. Answers once the tag is recorded.
    pub fn accept(&self, now_ms: u64, bytes: Vec<u8>) -> Result<(), Refusal> {
        let result = self.try_accept(now_ms, bytes);
        if let Err((code, _)) = &result {
            self.count(|s| match code {
                ErrorCode::Replayed => s.replays += 1,
                _ => s.refused += 1,
            });
        }
        result
    }

    fn try_accept(&self, now_ms: u64, bytes: Vec<u8>) -> Result<(), Refusal> {
        if !self.rate.lock().take(now_ms) {
            return Err((
                ErrorCode::RateLimited,
                format!("this relay takes {} packets per second", self.cfg.per_second),
            ));
        }
        if self.held() >= self.cfg.max_held {
            return Err((ErrorCode::Unavailable, "this relay holds all the packets it can".into()));
        }
        let size = bytes.len();
        let packet = OnionPacket::from_bytes(bytes).map_err(|e| (ErrorCode::Malformed, e.to_string()))?;
        let (epoch, peeled) = self.peel(now_ms, &packet)?;
        self.remember(epoch, peeled.tag)?;
        let delay = u64::from(peeled.instruction.delay_ms()).min(self.cfg.max_delay.as_millis() as u64);
        let job = Job::new(peeled.instruction, peeled.next.map(OnionPacket::into_bytes))
            .ok_or_else(|| (ErrorCode::Malformed, "the onion's layers disagree".to_owned()))?;
        tracing::debug!(size, class = packet.class(), delay_ms = delay, "onion packet accepted");
        self.hold(now_ms + delay, job)?;
        self.count(|s| {
            s.accepted += 1;
            s.sizes_in.insert(size);
        });
        Ok(())
    }

    /// Opens the packet with the key of the epoch it arrives in, or of the epoch before or after.
    fn peel(&self, now_ms: u64, packet: &OnionPacket) -> Result<(u64, onion::Peeled), Refusal> {
        let current = self.epoch_at(now_ms);
        // Copied out of the lock: peeling (two X25519 operations) runs on every thread at once.
        let candidates: Vec<(u64, RelayKey)> = {
            let keys = self.keys.lock();
            [current, current.saturating_sub(1), current + 1]
                .into_iter()
                .filter_map(|e| Some((e, keys.get(&e)?.clone())))
                .collect()
        };
        let mut last = None;
        for (epoch, key) in &candidates {
            let epoch = *epoch;
            match onion::peel(packet, key) {
                Ok(p) => return Ok((epoch, p)),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(OnionError::Sphinx(_)) | None => (
                ErrorCode::NotAuthorized,
                "the packet is not for this relay's current keys".into(),
            ),
            Some(e) => (ErrorCode::Malformed, e.to_string()),
        })
    }

    fn remember(&self, epoch: u64, tag: ReplayTag) -> Result<(), Refusal> {
        let mut tags = self.tags.lock();
        let entry = tags.entry(epoch).or_default();
        if !entry.seen.insert(tag) {
            return Err((ErrorCode::Replayed, "this packet was relayed before".into()));
        }
        let appended = match &mut entry.file {
            Some(file) => file.write_all(&tag.0),
            None => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("tags-{epoch}")))
                .and_then(|mut f| f.write_all(&tag.0).map(|()| entry.file = Some(f))),
        };
        appended.map_err(|e| {
            entry.seen.remove(&tag);
            entry.file = None;
            io_refusal(&e)
        })
    }

    /// Journals the job, then queues it.
    fn hold(&self, due_ms: u64, job: Job) -> Result<(), Refusal> {
        let mut held = self.held.lock();
        let order = held.last + 1;
        held.journal.put(order, due_ms, &job).map_err(|e| io_refusal(&e))?;
        held.last = order;
        held.queue.insert((due_ms, order), job);
        drop(held);
        let _ = self.wake.0.try_send(());
        Ok(())
    }

    /// The jobs due at `now_ms` with their order (for [`Relay::finish`]), and when the next one
    /// is due.
    pub fn due(&self, now_ms: u64) -> (Vec<(u64, Job)>, Option<u64>) {
        let mut held = self.held.lock();
        let later = held.queue.split_off(&(now_ms + 1, 0));
        let due = std::mem::replace(&mut held.queue, later);
        let next = held.queue.keys().next().map(|(t, _)| *t);
        (due.into_iter().map(|((_, order), job)| (order, job)).collect(), next)
    }

    /// Notes that job `order` was handed on or given up: the journal forgets it.
    pub fn finish(&self, order: u64) {
        if let Err(e) = self.held.lock().journal.done(order) {
            tracing::error!(error = %e, "relay journal: marking a packet done failed");
        }
    }
}

/// Removes a file; one already gone is no error.
fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs the relay's queue: hands on each packet when its delay is over (a task each, on the
/// server's executor `ex`), rotating keys as epochs pass. `deposit` stores an envelope in this
/// server's own store. Ends when the server shuts down.
pub async fn run<D, F>(
    relay: Arc<Relay>,
    pool: Arc<meow_net::Pool>,
    clock: meow_clock::SharedClock,
    deposit: D,
    ex: std::sync::Weak<smol::Executor<'static>>,
) where
    D: Fn(MailboxId, Vec<u8>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), Refusal>> + Send + 'static,
{
    let mut next_rotation = 0;
    loop {
        let now = clock.now_ms();
        if now >= next_rotation {
            if let Err(e) = relay.rotate(now) {
                tracing::error!(error = %e, "rotating relay keys failed");
            }
            next_rotation = now + 60_000;
        }
        let (jobs, next) = relay.due(now);
        let Some(executor) = ex.upgrade() else { return };
        for (order, job) in jobs {
            let (relay, pool, clock, deposit) = (relay.clone(), pool.clone(), clock.clone(), deposit.clone());
            executor
                .spawn(async move {
                    hand_on(&relay, &pool, &clock, &deposit, &job).await;
                    relay.finish(order);
                })
                .detach();
        }
        drop(executor);
        let until = next.unwrap_or(u64::MAX).min(next_rotation);
        let wake = relay.wake.1.clone();
        futures_lite::future::or(
            async {
                let _ = wake.recv().await;
            },
            clock.sleep_until(until),
        )
        .await;
    }
}

async fn hand_on<D, F>(relay: &Relay, pool: &meow_net::Pool, clock: &meow_clock::SharedClock, deposit: &D, job: &Job)
where
    D: Fn(MailboxId, Vec<u8>) -> F,
    F: Future<Output = Result<(), Refusal>>,
{
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match try_hand_on(pool, deposit, job).await {
            Ok(()) => {
                relay.count(|s| match job {
                    Job::Forward { packet, .. } => {
                        s.forwarded += 1;
                        s.sizes_out.insert(packet.len());
                    }
                    Job::Deposit { .. } => s.delivered += 1,
                });
                return;
            }
            Err((permanent, why)) => {
                tracing::debug!(attempt, error = %why, "handing on an onion packet failed");
                if permanent || attempt == ATTEMPTS {
                    break;
                }
            }
        }
        clock.sleep(backoff).await;
        backoff *= 2;
    }
    tracing::warn!("an onion packet could not be handed on and is dropped");
    relay.count(|s| s.lost += 1);
}

/// One attempt; on failure, whether it is permanent and why.
async fn try_hand_on<D, F>(pool: &meow_net::Pool, deposit: &D, job: &Job) -> Result<(), (bool, String)>
where
    D: Fn(MailboxId, Vec<u8>) -> F,
    F: Future<Output = Result<(), Refusal>>,
{
    let (address, key, request) = match job {
        Job::Deposit {
            target: None,
            mailbox,
            envelope,
        } => {
            return deposit(*mailbox, envelope.clone())
                .await
                .map_err(|(code, m)| (!code.is_transient(), m));
        }
        Job::Deposit {
            target: Some((key, address)),
            mailbox,
            envelope,
        } => (
            address,
            key,
            Request::Deposit {
                mailbox: *mailbox,
                envelope: envelope.clone(),
            },
        ),
        Job::Forward { next, address, packet } => (address, next, Request::Forward { packet: packet.clone() }),
    };
    let client = pool.get(address, key).await.map_err(|e| (false, e.to_string()))?;
    match client.request(request, Duration::ZERO).await {
        Ok(Response::Forwarded | Response::Deposited) => Ok(()),
        Ok(Response::Error { code, message }) => Err((!code.is_transient(), format!("{code:?}: {message}"))),
        Ok(other) => Err((true, format!("unexpected answer {other:?}"))),
        Err(e) => {
            pool.drop_client(address).await;
            Err((false, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests;
