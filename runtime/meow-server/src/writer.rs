//! The group-commit writer: one thread owns every write. It takes all operations waiting in its
//! queue, checks quotas, and applies them as one fjall batch; a second thread fsyncs the journal
//! and only then answers the callers of every batch applied before the fsync. Many deposits share
//! one fsync, and the next batch is prepared (quota checks, encoding) while the previous one is
//! being synced: that is what makes durable deposits fast. fjall holds its journal lock during the
//! fsync, so appending the next batch to the journal waits for the sync to end; BENCHMARKS.md says
//! why we leave that as it is.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use meow_proto::MailboxId;
use meow_proto::lease::{Lease, LeaseAnswer, LeaseOp};
use meow_proto::sync::DeviceId;
use meow_proto::wire::{ErrorCode, StoredMessage};
use meow_store::server::{MailboxStat, ServerStore, StoreBatch, StoredBroadcast, StoredEntry};
use smol::channel::{Receiver, Sender};

use crate::config::Limits;
use crate::shared::Shared;

/// Operations in one batch at most.
const MAX_BATCH_OPS: usize = 4096;
/// Envelope bytes in one batch at most.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Sequence numbers reserved per floor update.
const SEQ_BLOCK: u64 = 1 << 20;
/// Expired messages removed per sweep batch at most.
const MAX_SWEEP: usize = 10_000;
/// Conversation leases the server holds at most (about 100 bytes of memory each).
pub const MAX_LEASES: usize = 100_000;

/// A refusal: error code and message for the client.
pub type Refusal = (ErrorCode, String);

/// A change to the store.
#[derive(Debug)]
pub enum Change {
    /// Store an envelope.
    Deposit {
        /// Where.
        mailbox: MailboxId,
        /// What.
        envelope: Vec<u8>,
        /// Arrival time.
        now: u64,
        /// Who deposits (for the budget of mailboxes created by deposits).
        source: std::net::IpAddr,
    },
    /// Delete messages.
    Ack {
        /// Per mailbox, the seqs.
        items: Vec<(MailboxId, Vec<u64>)>,
    },
    /// Store a broadcast.
    Broadcast {
        /// The encoded, verified broadcast.
        bytes: Vec<u8>,
        /// Signed by an operator.
        from_operator: bool,
        /// When it expires.
        expires_at: u64,
    },
    /// Store or replace a directory entry.
    PutEntry {
        /// The entry.
        entry: StoredEntry,
    },
    /// Remove a directory entry.
    DeleteEntry {
        /// Its publisher.
        publisher: [u8; 32],
    },
    /// A compare-and-swap on a conversation lease ([`Lease::decide`]).
    Lease {
        /// The lease, named like a mailbox.
        id: MailboxId,
        /// The asking device.
        device: DeviceId,
        /// The epoch it last saw.
        expect: u64,
        /// Take or release.
        op: LeaseOp,
        /// Now, Unix seconds.
        now: u64,
        /// Who asks (a new lease counts against the budget of mailboxes it may create).
        source: std::net::IpAddr,
    },
    /// Remove what expired at `now`.
    Sweep {
        /// Now.
        now: u64,
    },
}

/// What a committed change produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It is durable.
    Done,
    /// It is durable under this id (a broadcast).
    Id(u64),
    /// A lease request's answer (granted or not), durable.
    Lease(LeaseAnswer),
}

/// A change and who waits for its outcome (answered once durable).
#[derive(Debug)]
pub struct WriteOp {
    /// The change.
    pub change: Change,
    /// Gets the outcome once the change is durable (or refused).
    pub done: Option<Sender<Result<Outcome, Refusal>>>,
}

/// A caller waiting for its outcome.
struct Done(Option<Sender<Result<Outcome, Refusal>>>, Result<Outcome, Refusal>);

impl Done {
    fn send(self) {
        if let Some(tx) = self.0 {
            drop(tx.try_send(self.1));
        }
    }

    fn fail(self, why: &Refusal) {
        if let Some(tx) = self.0 {
            drop(tx.try_send(Err(why.clone())));
        }
    }
}

/// A batch in the store, waiting for the fsync that makes it durable.
struct Applied {
    generation: u64,
    next_seq: u64,
    deposited: HashSet<MailboxId>,
    broadcasts: Vec<StoredBroadcast>,
    expired_broadcasts: Vec<u64>,
    entries: Vec<StoredEntry>,
    removed_entries: Vec<[u8; 32]>,
    done: Vec<Done>,
}

/// Fsyncs applied batches, then answers their callers and wakes long polls. If an fsync fails the
/// process aborts: after a failed fsync the kernel may have dropped the data, and answering
/// "stored" would be a lie (the same policy as PostgreSQL's).
fn sync_loop(store: ServerStore, shared: Arc<Shared>, rx: Receiver<Applied>, clock: meow_clock::SharedClock) {
    while let Ok(first) = rx.recv_blocking() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        let started = std::time::Instant::now();
        if let Err(e) = store.sync() {
            tracing::error!(error = %e, "fsync failed: stopping the server so that nothing unsynced is acknowledged");
            std::process::abort();
        }
        tracing::trace!(batches = batches.len(), took = ?started.elapsed(), "journal synced");
        if let Some(last) = batches.iter().map(|b| b.generation).max()
            && let Err(e) = store.mark_durable(last)
        {
            tracing::error!(error = %e, "writing the integrity mark");
        }
        let now = clock.now_secs();
        for b in batches {
            b.complete(&shared, now);
        }
    }
}

impl Applied {
    /// The batch is durable: publish what it changed, answer its callers, wake long polls.
    fn complete(self, shared: &Shared, now: u64) {
        shared
            .committed_seq
            .store(self.next_seq, std::sync::atomic::Ordering::Release);
        shared.apply_committed(
            self.broadcasts,
            &self.expired_broadcasts,
            self.entries,
            &self.removed_entries,
            now,
        );
        self.done.into_iter().for_each(Done::send);
        shared.wake(&self.deposited);
    }
}

/// The writer's state: the authoritative mailbox statistics and counters.
#[allow(missing_debug_implementations)]
pub struct Writer {
    store: ServerStore,
    stats: HashMap<MailboxId, MailboxStat>,
    next_seq: u64,
    seq_floor: u64,
    next_broadcast: u64,
    limits: Limits,
    ttl_secs: u64,
    shared: Arc<Shared>,
    /// Envelope bytes held, all mailboxes together.
    total_bytes: u64,
    /// The generation of the last batch applied.
    generation: u64,
    /// Mailboxes each source address may still create.
    new_mailboxes: HashMap<std::net::IpAddr, meow_clock::rate::Bucket>,
    clock: meow_clock::SharedClock,
    /// Every conversation lease.
    leases: HashMap<MailboxId, Lease>,
}

/// Changes of one batch, applied to the writer's state only after the commit succeeded.
#[derive(Default)]
struct Pending {
    stats: HashMap<MailboxId, MailboxStat>,
    deposited: HashSet<MailboxId>,
    deleted: HashSet<(MailboxId, u64)>,
    broadcasts: Vec<StoredBroadcast>,
    expired_broadcasts: Vec<u64>,
    entries: Vec<StoredEntry>,
    removed_entries: Vec<[u8; 32]>,
    /// Leases changed in this batch (`None`: removed).
    leases: HashMap<MailboxId, Option<Lease>>,
    new_floor: Option<u64>,
    done: Vec<Done>,
    bytes: usize,
}

impl Writer {
    /// The writer for a store, loading its statistics.
    pub fn new(
        store: ServerStore,
        limits: Limits,
        ttl_secs: u64,
        shared: Arc<Shared>,
        clock: meow_clock::SharedClock,
    ) -> Result<Self, meow_store::StoreError> {
        let stats = store.load_mailboxes()?;
        let seq_floor = store.seq_floor()?;
        let next_broadcast = store.load_broadcasts()?.iter().map(|b| b.id + 1).max().unwrap_or(1);
        shared
            .committed_seq
            .store(seq_floor, std::sync::atomic::Ordering::Release);
        let total_bytes = stats.values().map(|s| s.bytes).sum();
        let generation = store.integrity().generation;
        let leases = store.load_leases()?;
        Ok(Self {
            store,
            stats,
            next_seq: seq_floor,
            seq_floor,
            next_broadcast,
            limits,
            ttl_secs,
            shared,
            total_bytes,
            new_mailboxes: HashMap::new(),
            generation,
            clock,
            leases,
        })
    }

    /// Number of non-empty mailboxes.
    pub fn mailbox_count(&self) -> usize {
        self.stats.len()
    }

    /// Runs until the queue is closed and empty.
    pub fn run(mut self, queue: Receiver<WriteOp>) {
        let (sync_tx, sync_rx) = smol::channel::unbounded::<Applied>();
        let (store, shared, clock) = (self.store.clone(), self.shared.clone(), self.clock.clone());
        let syncer = std::thread::Builder::new()
            .name("meow-sync".into())
            .spawn(move || sync_loop(store, shared, sync_rx, clock));
        let Ok(syncer) = syncer else {
            tracing::error!("cannot start the sync thread");
            return;
        };
        while let Ok(first) = queue.recv_blocking() {
            let mut ops = vec![first];
            let mut bytes = 0;
            while ops.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(op) => {
                        if let Change::Deposit { envelope, .. } = &op.change {
                            bytes += envelope.len();
                        }
                        ops.push(op);
                    }
                    Err(_) => break,
                }
            }
            if let Some(applied) = self.process(ops)
                && sync_tx.send_blocking(applied).is_err()
            {
                break;
            }
        }
        drop(sync_tx);
        let _ = syncer.join();
        if let Err(e) = self.store.sync_mark() {
            tracing::error!(error = %e, "syncing the integrity mark");
        }
        tracing::debug!("writer stopped");
    }

    /// Commits changes at once, on the caller's thread (one batch, one fsync), and returns their
    /// outcomes in order: what the test kit's simulated server does instead of [`Writer::run`].
    pub fn commit_now(&mut self, changes: Vec<Change>) -> Vec<Result<Outcome, Refusal>> {
        let n = changes.len();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| smol::channel::bounded(1)).unzip();
        let ops = changes
            .into_iter()
            .zip(txs)
            .map(|(change, tx)| WriteOp { change, done: Some(tx) })
            .collect();
        if let Some(applied) = self.process(ops) {
            let generation = applied.generation;
            match self.store.sync().and_then(|()| self.store.mark_durable(generation)) {
                Ok(()) => applied.complete(&self.shared, self.clock.now_secs()),
                Err(e) => {
                    tracing::error!(error = %e, "fsync failed");
                    let why = (ErrorCode::Internal, "the server could not store this".to_owned());
                    applied.done.into_iter().for_each(|d| d.fail(&why));
                }
            }
        }
        rxs.into_iter()
            .map(|rx| {
                rx.try_recv()
                    .unwrap_or_else(|_| Err((ErrorCode::Internal, "no outcome".to_owned())))
            })
            .collect()
    }

    fn stat(&self, p: &Pending, m: &MailboxId) -> MailboxStat {
        p.stats
            .get(m)
            .or_else(|| self.stats.get(m))
            .copied()
            .unwrap_or_default()
    }

    fn process(&mut self, ops: Vec<WriteOp>) -> Option<Applied> {
        let started = std::time::Instant::now();
        let count = ops.len();
        let mut batch = self.store.batch();
        let mut p = Pending::default();
        for op in ops {
            self.apply(&mut batch, &mut p, op);
        }
        if let Some(floor) = p.new_floor {
            self.store.put_seq_floor(&mut batch, floor);
        }
        for (m, stat) in &p.stats {
            self.store.put_mailbox(&mut batch, m, *stat);
        }
        if batch.is_empty() {
            // Nothing to make durable (a sweep that found nothing, acks of deleted messages):
            // answer now, with no write and no fsync.
            p.done.into_iter().for_each(Done::send);
            return None;
        }
        self.store.put_generation(&mut batch, self.generation + 1);
        let result = self.store.apply(batch);
        tracing::trace!(ops = count, bytes = p.bytes, took = ?started.elapsed(), "batch applied");
        match result {
            Ok(()) => Some(self.applied(p)),
            Err(e) => {
                tracing::error!(error = %e, "applying a batch failed; refusing it");
                let why = (
                    ErrorCode::Internal,
                    "the server could not store this; try again".to_owned(),
                );
                p.done.into_iter().for_each(|d| d.fail(&why));
                None
            }
        }
    }

    /// The batch is in the store: update the writer's own state now (later batches see it), and
    /// hand what must wait for durability to the sync thread.
    fn applied(&mut self, p: Pending) -> Applied {
        self.generation += 1;
        if let Some(floor) = p.new_floor {
            self.seq_floor = floor;
        }
        for (id, lease) in p.leases {
            match lease {
                Some(l) => self.leases.insert(id, l),
                None => self.leases.remove(&id),
            };
        }
        for (m, stat) in p.stats {
            let before = if stat.count == 0 {
                self.stats.remove(&m)
            } else {
                self.stats.insert(m, stat)
            };
            self.total_bytes = (self.total_bytes + stat.bytes).saturating_sub(before.map_or(0, |b| b.bytes));
        }
        Applied {
            generation: self.generation,
            next_seq: self.next_seq,
            deposited: p.deposited,
            broadcasts: p.broadcasts,
            expired_broadcasts: p.expired_broadcasts,
            entries: p.entries,
            removed_entries: p.removed_entries,
            done: p.done,
        }
    }

    fn apply(&mut self, batch: &mut StoreBatch, p: &mut Pending, op: WriteOp) {
        let outcome = match op.change {
            Change::Deposit {
                mailbox,
                envelope,
                now,
                source,
            } => self
                .deposit(batch, p, mailbox, envelope, now, source)
                .map(|()| Outcome::Done),
            Change::Ack { items } => self.ack(batch, p, items).map(|()| Outcome::Done),
            Change::Broadcast {
                bytes,
                from_operator,
                expires_at,
            } => {
                let id = self.next_broadcast;
                self.next_broadcast += 1;
                let b = StoredBroadcast {
                    id,
                    expires_at,
                    from_operator,
                    bytes,
                };
                self.store.put_broadcast(batch, &b);
                p.broadcasts.push(b);
                Ok(Outcome::Id(id))
            }
            Change::PutEntry { entry } => {
                self.store.put_entry(batch, &entry);
                p.entries.push(entry);
                Ok(Outcome::Done)
            }
            Change::DeleteEntry { publisher } => {
                self.store.delete_entry(batch, &publisher);
                p.removed_entries.push(publisher);
                Ok(Outcome::Done)
            }
            Change::Lease {
                id,
                device,
                expect,
                op,
                now,
                source,
            } => self.lease(batch, p, id, (device, expect, op), now, source),
            Change::Sweep { now } => {
                self.sweep(batch, p, now);
                Ok(Outcome::Done)
            }
        };
        p.done.push(Done(op.done, outcome));
    }

    fn deposit(
        &mut self,
        batch: &mut StoreBatch,
        p: &mut Pending,
        mailbox: MailboxId,
        envelope: Vec<u8>,
        now: u64,
        source: std::net::IpAddr,
    ) -> Result<(), Refusal> {
        let mut stat = self.stat(p, &mailbox);
        let len = envelope.len() as u64;
        let max_store = self.limits.max_store_bytes;
        if max_store > 0 && self.total_bytes + p.bytes as u64 + len > max_store {
            return Err((
                ErrorCode::StorageFull,
                format!("the server's storage quota of {max_store} bytes is used up: try again later"),
            ));
        }
        if stat.count == 0 && !self.may_create_mailbox(source, now) {
            return Err((
                ErrorCode::RateLimited,
                format!(
                    "one address may create {} mailboxes per hour by depositing into them",
                    self.limits.new_mailboxes_per_hour
                ),
            ));
        }
        if stat.count >= self.limits.max_messages_per_mailbox {
            return Err((
                ErrorCode::MailboxFull,
                format!("mailbox full: it holds {} messages, the most allowed", stat.count),
            ));
        }
        if stat.bytes + len > self.limits.max_bytes_per_mailbox {
            return Err((
                ErrorCode::MailboxFull,
                format!(
                    "mailbox full: {} bytes held, limit {}",
                    stat.bytes, self.limits.max_bytes_per_mailbox
                ),
            ));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.next_seq >= p.new_floor.unwrap_or(self.seq_floor) {
            p.new_floor = Some(self.next_seq + SEQ_BLOCK);
        }
        let expires_at = now + self.ttl_secs;
        self.store.put_message(
            batch,
            &StoredMessage {
                mailbox,
                seq,
                received_at: now,
                envelope,
            },
            expires_at,
        );
        stat.count += 1;
        stat.bytes += len;
        if stat.oldest_expiry == 0 || expires_at < stat.oldest_expiry {
            stat.oldest_expiry = expires_at;
        }
        p.bytes += len as usize;
        p.stats.insert(mailbox, stat);
        p.deposited.insert(mailbox);
        Ok(())
    }

    /// The lease `id` as this batch sees it.
    fn current_lease(&self, p: &Pending, id: &MailboxId) -> Option<Lease> {
        match p.leases.get(id) {
            Some(pending) => *pending,
            None => self.leases.get(id).copied(),
        }
    }

    fn lease(
        &mut self,
        batch: &mut StoreBatch,
        p: &mut Pending,
        id: MailboxId,
        (device, expect, op): (DeviceId, u64, LeaseOp),
        now: u64,
        source: std::net::IpAddr,
    ) -> Result<Outcome, Refusal> {
        let current = self.current_lease(p, &id);
        if current.is_none() && op == LeaseOp::Take {
            if self.leases.len() + p.leases.len() >= MAX_LEASES {
                return Err((
                    ErrorCode::StorageFull,
                    format!("the server holds {MAX_LEASES} leases, the most it may"),
                ));
            }
            if !self.may_create_mailbox(source, now) {
                return Err((
                    ErrorCode::RateLimited,
                    "this address created too many mailboxes and leases this hour".to_owned(),
                ));
            }
        }
        let (after, granted) = Lease::decide(current, device, expect, op, now);
        if granted {
            self.store.put_lease(batch, &id, &after);
            p.leases.insert(id, Some(after));
        }
        Ok(Outcome::Lease(after.answer(granted, now)))
    }

    /// Counts a mailbox created by a deposit from `source` against its hourly budget.
    fn may_create_mailbox(&mut self, source: std::net::IpAddr, now: u64) -> bool {
        let per_hour = self.limits.new_mailboxes_per_hour;
        if per_hour == 0 {
            return true;
        }
        if self.new_mailboxes.len() > 100_000 {
            self.new_mailboxes.clear();
        }
        let now_ms = now * 1000;
        self.new_mailboxes
            .entry(source)
            .or_insert_with(|| {
                meow_clock::rate::Bucket::per_window(u64::from(per_hour), std::time::Duration::from_secs(3600), now_ms)
            })
            .take(now_ms)
    }

    fn ack(
        &mut self,
        batch: &mut StoreBatch,
        p: &mut Pending,
        items: Vec<(MailboxId, Vec<u64>)>,
    ) -> Result<(), Refusal> {
        for (mailbox, seqs) in items {
            let mut stat = self.stat(p, &mailbox);
            for seq in seqs {
                if !p.deleted.insert((mailbox, seq)) {
                    continue;
                }
                let size = self.store.message_size(&mailbox, seq).map_err(|e| {
                    tracing::error!(error = %e, "reading a message size failed");
                    (ErrorCode::Internal, "storage error".to_owned())
                })?;
                if let Some(size) = size {
                    self.store.delete_message(batch, &mailbox, seq);
                    stat.count = stat.count.saturating_sub(1);
                    stat.bytes = stat.bytes.saturating_sub(size);
                }
            }
            if stat.count == 0 {
                stat = MailboxStat::default();
            }
            p.stats.insert(mailbox, stat);
        }
        Ok(())
    }

    fn sweep(&mut self, batch: &mut StoreBatch, p: &mut Pending, now: u64) {
        let due: Vec<MailboxId> = self
            .stats
            .iter()
            .filter(|(_, s)| s.oldest_expiry != 0 && s.oldest_expiry <= now)
            .map(|(m, _)| *m)
            .collect();
        let mut removed = 0;
        for mailbox in due {
            if removed >= MAX_SWEEP {
                break;
            }
            let Ok((expired, next_expiry)) = self.store.expired_in(&mailbox, now) else {
                continue;
            };
            let mut stat = self.stat(p, &mailbox);
            for (seq, size) in &expired {
                self.store.delete_message(batch, &mailbox, *seq);
                stat.count = stat.count.saturating_sub(1);
                stat.bytes = stat.bytes.saturating_sub(*size);
            }
            removed += expired.len();
            stat.oldest_expiry = next_expiry;
            if stat.count == 0 {
                stat = MailboxStat::default();
            }
            p.stats.insert(mailbox, stat);
        }
        for id in self.shared.expired_broadcasts(now) {
            self.store.delete_broadcast(batch, id);
            p.expired_broadcasts.push(id);
        }
        for publisher in self.shared.expired_entries(now) {
            self.store.delete_entry(batch, &publisher);
            p.removed_entries.push(publisher);
        }
        let stale = self
            .leases
            .iter()
            .filter(|(_, l)| l.touched.saturating_add(self.ttl_secs) <= now);
        for (id, _) in stale.take(MAX_SWEEP) {
            self.store.delete_lease(batch, id);
            p.leases.insert(*id, None);
        }
        if removed > 0 {
            tracing::info!(removed, "expired messages removed");
        }
    }
}
