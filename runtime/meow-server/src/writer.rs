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

/// A refusal: error code and message for the client.
pub type Refusal = (ErrorCode, String);

/// What the writer is asked to do.
#[derive(Debug)]
pub enum WriteOp {
    /// Store an envelope.
    Deposit {
        /// Where.
        mailbox: MailboxId,
        /// What.
        envelope: Vec<u8>,
        /// Arrival time.
        now: u64,
        /// Answered once durable.
        done: Sender<Result<(), Refusal>>,
    },
    /// Delete messages.
    Ack {
        /// Per mailbox, the seqs.
        items: Vec<(MailboxId, Vec<u64>)>,
        /// Answered once durable.
        done: Sender<Result<(), Refusal>>,
    },
    /// Store a broadcast.
    Broadcast {
        /// The encoded, verified broadcast.
        bytes: Vec<u8>,
        /// Signed by an operator.
        from_operator: bool,
        /// When it expires.
        expires_at: u64,
        /// Answered with the id once durable.
        done: Sender<Result<u64, Refusal>>,
    },
    /// Store or replace a directory entry.
    PutEntry {
        /// The entry.
        entry: StoredEntry,
        /// Answered once durable.
        done: Sender<Result<(), Refusal>>,
    },
    /// Remove a directory entry.
    DeleteEntry {
        /// Its publisher.
        publisher: [u8; 32],
        /// Answered once durable.
        done: Sender<Result<(), Refusal>>,
    },
    /// Remove what expired at `now`.
    Sweep {
        /// Now.
        now: u64,
    },
}

enum Done {
    Unit(Sender<Result<(), Refusal>>, Result<(), Refusal>),
    Id(Sender<Result<u64, Refusal>>, Result<u64, Refusal>),
}

impl Done {
    fn send(self) {
        match self {
            Done::Unit(tx, r) => drop(tx.try_send(r)),
            Done::Id(tx, r) => drop(tx.try_send(r)),
        }
    }

    fn fail(self, why: &Refusal) {
        match self {
            Done::Unit(tx, _) => drop(tx.try_send(Err(why.clone()))),
            Done::Id(tx, _) => drop(tx.try_send(Err(why.clone()))),
        }
    }
}

/// A batch in the store, waiting for the fsync that makes it durable.
struct Applied {
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
fn sync_loop(store: ServerStore, shared: Arc<Shared>, rx: Receiver<Applied>) {
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
        let now = meow_net::now_secs();
        for b in batches {
            shared
                .committed_seq
                .store(b.next_seq, std::sync::atomic::Ordering::Release);
            shared.apply_committed(b.broadcasts, &b.expired_broadcasts, b.entries, &b.removed_entries, now);
            b.done.into_iter().for_each(Done::send);
            shared.wake(&b.deposited);
        }
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
    ) -> Result<Self, meow_store::StoreError> {
        let stats = store.load_mailboxes()?;
        let seq_floor = store.seq_floor()?;
        let next_broadcast = store.load_broadcasts()?.iter().map(|b| b.id + 1).max().unwrap_or(1);
        shared
            .committed_seq
            .store(seq_floor, std::sync::atomic::Ordering::Release);
        Ok(Self {
            store,
            stats,
            next_seq: seq_floor,
            seq_floor,
            next_broadcast,
            limits,
            ttl_secs,
            shared,
        })
    }

    /// Number of non-empty mailboxes.
    pub fn mailbox_count(&self) -> usize {
        self.stats.len()
    }

    /// Runs until the queue is closed and empty.
    pub fn run(mut self, queue: Receiver<WriteOp>) {
        let (sync_tx, sync_rx) = smol::channel::unbounded::<Applied>();
        let (store, shared) = (self.store.clone(), self.shared.clone());
        let syncer = std::thread::Builder::new()
            .name("meow-sync".into())
            .spawn(move || sync_loop(store, shared, sync_rx));
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
                        if let WriteOp::Deposit { envelope, .. } = &op {
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
        tracing::debug!("writer stopped");
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
        if let Some(floor) = p.new_floor {
            self.seq_floor = floor;
        }
        for (m, stat) in p.stats {
            if stat.count == 0 {
                self.stats.remove(&m);
            } else {
                self.stats.insert(m, stat);
            }
        }
        Applied {
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
        match op {
            WriteOp::Deposit {
                mailbox,
                envelope,
                now,
                done,
            } => {
                let r = self.deposit(batch, p, mailbox, envelope, now);
                p.done.push(Done::Unit(done, r));
            }
            WriteOp::Ack { items, done } => {
                let r = self.ack(batch, p, items);
                p.done.push(Done::Unit(done, r));
            }
            WriteOp::Broadcast {
                bytes,
                from_operator,
                expires_at,
                done,
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
                p.done.push(Done::Id(done, Ok(id)));
            }
            WriteOp::PutEntry { entry, done } => {
                self.store.put_entry(batch, &entry);
                p.entries.push(entry);
                p.done.push(Done::Unit(done, Ok(())));
            }
            WriteOp::DeleteEntry { publisher, done } => {
                self.store.delete_entry(batch, &publisher);
                p.removed_entries.push(publisher);
                p.done.push(Done::Unit(done, Ok(())));
            }
            WriteOp::Sweep { now } => self.sweep(batch, p, now),
        }
    }

    fn deposit(
        &mut self,
        batch: &mut StoreBatch,
        p: &mut Pending,
        mailbox: MailboxId,
        envelope: Vec<u8>,
        now: u64,
    ) -> Result<(), Refusal> {
        let mut stat = self.stat(p, &mailbox);
        let len = envelope.len() as u64;
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
        if removed > 0 {
            tracing::info!(removed, "expired messages removed");
        }
    }
}
