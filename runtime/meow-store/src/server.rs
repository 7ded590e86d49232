//! A server's durable state: mailboxes, broadcasts, directory entries.
//!
//! Keyspaces and layouts (all integers big-endian):
//!
//! | keyspace     | key                         | value                                             |
//! |--------------|-----------------------------|---------------------------------------------------|
//! | `messages`   | mailbox `[16]` ‖ seq `u64`  | received_at `u64` ‖ expires_at `u64` ‖ envelope   |
//! | `mailboxes`  | mailbox `[16]`              | count `u64` ‖ bytes `u64` ‖ oldest_expiry `u64`   |
//! | `meta`       | `"seq_floor"`               | `u64`: every seq handed out is below it           |
//! | `broadcasts` | id `u64`                    | expires_at `u64` ‖ from_operator `u8` ‖ broadcast |
//! | `directory`  | publisher key `[32]`        | expires_at `u64` ‖ entry                          |
//! | `leases`     | lease mailbox `[16]`        | epoch `u64` ‖ touched `u64` ‖ holder `[8]` if held |
//!
//! Sequence numbers increase over the whole server, so within a mailbox key order is arrival order.

use std::collections::HashMap;
use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode};
use meow_proto::MailboxId;
use meow_proto::lease::Lease;
use meow_proto::sync::DeviceId;
use meow_proto::wire::StoredMessage;

use crate::StoreError;

const SEQ_FLOOR_KEY: &[u8] = b"seq_floor";
const GENERATION_KEY: &[u8] = b"generation";
const MARK_FILE: &str = "store.mark";

/// What the server keeps in memory about one non-empty mailbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStat {
    /// Messages held.
    pub count: u64,
    /// Envelope bytes held.
    pub bytes: u64,
    /// A lower bound on the earliest expiry of its messages (0 when unknown).
    pub oldest_expiry: u64,
}

impl MailboxStat {
    fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.count.to_be_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        out[16..].copy_from_slice(&self.oldest_expiry.to_be_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != 24 {
            return None;
        }
        Some(Self {
            count: be_u64(&b[..8])?,
            bytes: be_u64(&b[8..16])?,
            oldest_expiry: be_u64(&b[16..])?,
        })
    }
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

fn message_key(mailbox: &MailboxId, seq: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&mailbox.0);
    k[16..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// What a mailbox read found.
#[derive(Debug, Default)]
pub struct MailboxRead {
    /// Messages, oldest first.
    pub messages: Vec<StoredMessage>,
    /// More are waiting.
    pub more: bool,
    /// The seq of the first stored message seen (expired or not): nothing below it is stored.
    pub first_key: Option<u64>,
}

/// A stored broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBroadcast {
    /// Its id.
    pub id: u64,
    /// When it is dropped, Unix seconds.
    pub expires_at: u64,
    /// Signed by the operator.
    pub from_operator: bool,
    /// The encoded signed broadcast.
    pub bytes: Vec<u8>,
}

/// A stored directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The publisher's key bytes.
    pub publisher: [u8; 32],
    /// When it is dropped, Unix seconds.
    pub expires_at: u64,
    /// The encoded signed entry.
    pub bytes: Vec<u8>,
}

/// The server's fjall database, with its integrity mark (`store.mark`, see [`crate::mark`]).
#[derive(Clone)]
pub struct ServerStore {
    db: Database,
    messages: Keyspace,
    mailboxes: Keyspace,
    meta: Keyspace,
    broadcasts: Keyspace,
    directory: Keyspace,
    leases: Keyspace,
    mark: std::sync::Arc<crate::mark::Mark<crate::mark::Checksum>>,
    integrity: crate::mark::Integrity,
}

impl std::fmt::Debug for ServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerStore")
    }
}

/// Operations committed together, atomically and durably.
pub struct StoreBatch {
    batch: WriteBatch,
}

impl StoreBatch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }
}

impl std::fmt::Debug for StoreBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreBatch({} ops)", self.batch.len())
    }
}

impl ServerStore {
    /// Opens (or creates) the store in `dir`; fails with [`StoreError::Damaged`] if it lost
    /// writes.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::inspect(dir)?;
        match store.integrity.problem() {
            Some(problem) => Err(StoreError::Damaged {
                what: format!("the server store at {}", dir.display()),
                problem,
            }),
            None => Ok(store),
        }
    }

    /// Opens the store in `dir` even if it lost writes (for `meow doctor`).
    pub fn inspect(dir: &Path) -> Result<Self, StoreError> {
        let db = crate::open_database(
            Database::builder(dir.join("store")).worker_threads(1),
            dir,
            "the server store",
        )?;
        let opts = KeyspaceCreateOptions::default;
        let meta = db.keyspace("meta", opts)?;
        let generation = match meta.get(GENERATION_KEY)? {
            Some(v) => be_u64(&v).ok_or_else(|| corrupt("generation"))?,
            None => 0,
        };
        let (mark, marked, mark_damaged) = crate::mark::Mark::open(&dir.join(MARK_FILE), crate::mark::Checksum)?;
        if marked.is_none() && !mark_damaged && generation == 0 {
            mark.write(0)?;
        }
        Ok(Self {
            messages: db.keyspace("messages", opts)?,
            mailboxes: db.keyspace("mailboxes", opts)?,
            meta,
            broadcasts: db.keyspace("broadcasts", opts)?,
            directory: db.keyspace("directory", opts)?,
            leases: db.keyspace("leases", opts)?,
            db,
            mark: std::sync::Arc::new(mark),
            integrity: crate::mark::Integrity {
                generation,
                mark: marked,
                mark_damaged,
            },
        })
    }

    /// What the integrity mark found when the store was opened.
    pub fn integrity(&self) -> crate::mark::Integrity {
        self.integrity
    }

    /// Accepts the store as it is: its mark is reset to the current generation.
    pub fn accept_as_is(&self) -> Result<(), StoreError> {
        self.mark.reset(self.integrity.generation)
    }

    /// Records the generation of a batch (its last write).
    pub fn put_generation(&self, b: &mut StoreBatch, generation: u64) {
        b.batch.insert(&self.meta, GENERATION_KEY, generation.to_be_bytes());
    }

    /// Records in the mark that `generation` is durable (call after [`Self::sync`]).
    pub fn mark_durable(&self, generation: u64) -> Result<(), StoreError> {
        self.mark.write(generation)
    }

    /// Makes the mark itself durable (when the server stops).
    pub fn sync_mark(&self) -> Result<(), StoreError> {
        self.mark.sync()
    }

    /// Messages and envelope bytes actually stored per mailbox (`oldest_expiry` left at 0), and
    /// the number of records that are not messages (for `meow doctor`, which compares them with
    /// the statistics).
    pub fn count_messages(&self) -> Result<(HashMap<MailboxId, MailboxStat>, usize), StoreError> {
        let (mut out, mut bad) = (HashMap::<MailboxId, MailboxStat>::new(), 0);
        for kv in self.messages.iter() {
            let (k, v) = kv.into_inner()?;
            let Some(id) = k.get(..16).and_then(|m| <[u8; 16]>::try_from(m).ok()) else {
                bad += 1;
                continue;
            };
            if k.len() != 24 || v.len() < 16 || !meow_proto::padding::is_class_size(v.len() - 16) {
                bad += 1;
                continue;
            }
            let e = out.entry(MailboxId(id)).or_default();
            e.count += 1;
            e.bytes += (v.len() - 16) as u64;
        }
        Ok((out, bad))
    }

    /// Every non-empty mailbox's statistics.
    pub fn load_mailboxes(&self) -> Result<HashMap<MailboxId, MailboxStat>, StoreError> {
        let mut out = HashMap::new();
        for kv in self.mailboxes.iter() {
            let (k, v) = kv.into_inner()?;
            let id: [u8; 16] = k.as_ref().try_into().map_err(|_| corrupt("mailbox key"))?;
            let stat = MailboxStat::from_bytes(&v).ok_or_else(|| corrupt("mailbox stat"))?;
            out.insert(MailboxId(id), stat);
        }
        Ok(out)
    }

    /// The sequence-number floor: every seq ever handed out is below it.
    pub fn seq_floor(&self) -> Result<u64, StoreError> {
        match self.meta.get(SEQ_FLOOR_KEY)? {
            Some(v) => be_u64(&v).ok_or_else(|| corrupt("seq floor")),
            None => Ok(1),
        }
    }

    /// A new empty batch.
    pub fn batch(&self) -> StoreBatch {
        StoreBatch { batch: self.db.batch() }
    }

    /// Applies a batch atomically: it is visible at once and in the journal, but durable only
    /// after the next [`Self::sync`].
    pub fn apply(&self, batch: StoreBatch) -> Result<(), StoreError> {
        batch.batch.commit()?;
        Ok(())
    }

    /// Makes everything applied so far durable (fsync of the journal).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Applies a batch and makes it durable.
    pub fn commit(&self, batch: StoreBatch) -> Result<(), StoreError> {
        self.apply(batch)?;
        self.sync()
    }

    /// Up to `limit` unexpired messages of `mailbox` with a seq of at least `from`, holding at most
    /// `max_bytes` of envelopes (at least one message if any), oldest first.
    ///
    /// Starting past acknowledged messages matters: their deletion markers stay in the LSM tree
    /// until compaction, and a scan from the start of the mailbox would wade through all of them.
    pub fn read_mailbox(
        &self,
        mailbox: &MailboxId,
        from: u64,
        limit: usize,
        max_bytes: usize,
        now: u64,
    ) -> Result<MailboxRead, StoreError> {
        let mut read = MailboxRead::default();
        let mut bytes = 0;
        for kv in self
            .messages
            .range(message_key(mailbox, from)..=message_key(mailbox, u64::MAX))
        {
            let (k, v) = kv.into_inner()?;
            let seq = be_u64(&k[16..]).ok_or_else(|| corrupt("message key"))?;
            read.first_key.get_or_insert(seq);
            if read.messages.len() == limit || (!read.messages.is_empty() && bytes + v.len() > max_bytes) {
                read.more = true;
                return Ok(read);
            }
            bytes += v.len();
            if v.len() < 16 {
                return Err(corrupt("message value"));
            }
            let expires_at = be_u64(&v[8..16]).ok_or_else(|| corrupt("message value"))?;
            if expires_at <= now {
                continue;
            }
            let received_at = be_u64(&v[..8]).ok_or_else(|| corrupt("message value"))?;
            read.messages.push(StoredMessage {
                mailbox: *mailbox,
                seq,
                received_at,
                envelope: v[16..].to_vec(),
            });
        }
        Ok(read)
    }

    /// The envelope size of a stored message, if it exists.
    pub fn message_size(&self, mailbox: &MailboxId, seq: u64) -> Result<Option<u64>, StoreError> {
        Ok(self
            .messages
            .size_of(message_key(mailbox, seq))?
            .map(|n| u64::from(n).saturating_sub(16)))
    }

    /// Messages of `mailbox` that expired at `now`: `(seq, envelope size)`, and the expiry of the
    /// first message left (0 if none).
    pub fn expired_in(&self, mailbox: &MailboxId, now: u64) -> Result<(Vec<(u64, u64)>, u64), StoreError> {
        let mut expired = Vec::new();
        for kv in self.messages.prefix(mailbox.0) {
            let (k, v) = kv.into_inner()?;
            let expires_at = be_u64(v.get(8..16).unwrap_or_default()).ok_or_else(|| corrupt("message value"))?;
            if expires_at > now {
                return Ok((expired, expires_at));
            }
            let seq = be_u64(&k[16..]).ok_or_else(|| corrupt("message key"))?;
            expired.push((seq, v.len() as u64 - 16));
        }
        Ok((expired, 0))
    }

    /// Every stored broadcast, oldest first.
    pub fn load_broadcasts(&self) -> Result<Vec<StoredBroadcast>, StoreError> {
        let mut out = Vec::new();
        for kv in self.broadcasts.iter() {
            let (k, v) = kv.into_inner()?;
            let id = be_u64(&k).ok_or_else(|| corrupt("broadcast key"))?;
            if v.len() < 9 {
                return Err(corrupt("broadcast value"));
            }
            let expires_at = be_u64(&v[..8]).ok_or_else(|| corrupt("broadcast value"))?;
            out.push(StoredBroadcast {
                id,
                expires_at,
                from_operator: v[8] == 1,
                bytes: v[9..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Every stored directory entry.
    pub fn load_directory(&self) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::new();
        for kv in self.directory.iter() {
            let (k, v) = kv.into_inner()?;
            let publisher: [u8; 32] = k.as_ref().try_into().map_err(|_| corrupt("directory key"))?;
            if v.len() < 8 {
                return Err(corrupt("directory value"));
            }
            let expires_at = be_u64(&v[..8]).ok_or_else(|| corrupt("directory value"))?;
            out.push(StoredEntry {
                publisher,
                expires_at,
                bytes: v[8..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Every conversation lease.
    pub fn load_leases(&self) -> Result<HashMap<MailboxId, Lease>, StoreError> {
        let mut out = HashMap::new();
        for kv in self.leases.iter() {
            let (k, v) = kv.into_inner()?;
            let id: [u8; 16] = k.as_ref().try_into().map_err(|_| corrupt("lease key"))?;
            out.insert(
                MailboxId(id),
                lease_from_bytes(&v).ok_or_else(|| corrupt("lease value"))?,
            );
        }
        Ok(out)
    }

    /// Bytes on disk.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

fn lease_from_bytes(v: &[u8]) -> Option<Lease> {
    let holder = match v.len() {
        16 => None,
        24 => Some(DeviceId(v[16..].try_into().ok()?)),
        _ => return None,
    };
    Some(Lease {
        epoch: be_u64(&v[..8])?,
        touched: be_u64(&v[8..16])?,
        holder,
    })
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl ServerStore {
    /// Adds a message to a batch.
    pub fn put_message(&self, b: &mut StoreBatch, m: &StoredMessage, expires_at: u64) {
        let mut v = Vec::with_capacity(16 + m.envelope.len());
        v.extend_from_slice(&m.received_at.to_be_bytes());
        v.extend_from_slice(&expires_at.to_be_bytes());
        v.extend_from_slice(&m.envelope);
        b.batch.insert(&self.messages, message_key(&m.mailbox, m.seq), v);
    }

    /// Deletes a message in a batch.
    pub fn delete_message(&self, b: &mut StoreBatch, mailbox: &MailboxId, seq: u64) {
        b.batch.remove(&self.messages, message_key(mailbox, seq));
    }

    /// Records a mailbox's statistics (deletes the record when it is empty).
    pub fn put_mailbox(&self, b: &mut StoreBatch, mailbox: &MailboxId, stat: MailboxStat) {
        if stat.count == 0 {
            b.batch.remove(&self.mailboxes, mailbox.0);
        } else {
            b.batch.insert(&self.mailboxes, mailbox.0, stat.to_bytes());
        }
    }

    /// Records a new sequence-number floor.
    pub fn put_seq_floor(&self, b: &mut StoreBatch, floor: u64) {
        b.batch.insert(&self.meta, SEQ_FLOOR_KEY, floor.to_be_bytes());
    }

    /// Stores a broadcast.
    pub fn put_broadcast(&self, b: &mut StoreBatch, bc: &StoredBroadcast) {
        let mut v = Vec::with_capacity(9 + bc.bytes.len());
        v.extend_from_slice(&bc.expires_at.to_be_bytes());
        v.push(u8::from(bc.from_operator));
        v.extend_from_slice(&bc.bytes);
        b.batch.insert(&self.broadcasts, bc.id.to_be_bytes(), v);
    }

    /// Deletes a broadcast.
    pub fn delete_broadcast(&self, b: &mut StoreBatch, id: u64) {
        b.batch.remove(&self.broadcasts, id.to_be_bytes());
    }

    /// Stores (or replaces) a directory entry.
    pub fn put_entry(&self, b: &mut StoreBatch, e: &StoredEntry) {
        let mut v = Vec::with_capacity(8 + e.bytes.len());
        v.extend_from_slice(&e.expires_at.to_be_bytes());
        v.extend_from_slice(&e.bytes);
        b.batch.insert(&self.directory, e.publisher, v);
    }

    /// Deletes a directory entry.
    pub fn delete_entry(&self, b: &mut StoreBatch, publisher: &[u8; 32]) {
        b.batch.remove(&self.directory, *publisher);
    }

    /// Stores a conversation lease.
    pub fn put_lease(&self, b: &mut StoreBatch, id: &MailboxId, lease: &Lease) {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&lease.epoch.to_be_bytes());
        v.extend_from_slice(&lease.touched.to_be_bytes());
        if let Some(holder) = lease.holder {
            v.extend_from_slice(&holder.0);
        }
        b.batch.insert(&self.leases, id.0, v);
    }

    /// Deletes a conversation lease.
    pub fn delete_lease(&self, b: &mut StoreBatch, id: &MailboxId) {
        b.batch.remove(&self.leases, id.0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn msg(mailbox: MailboxId, seq: u64) -> StoredMessage {
        StoredMessage {
            mailbox,
            seq,
            received_at: 100,
            envelope: vec![seq as u8; 176],
        }
    }

    #[test]
    fn leases_survive_reopen() {
        let dir = tempdir();
        let (held, free) = (MailboxId([1; 16]), MailboxId([2; 16]));
        let lease = |holder| Lease {
            epoch: 7,
            holder,
            touched: 1234,
        };
        {
            let s = ServerStore::open(dir.path()).unwrap();
            let mut b = s.batch();
            s.put_lease(&mut b, &held, &lease(Some(DeviceId([9; 8]))));
            s.put_lease(&mut b, &free, &lease(None));
            s.put_lease(&mut b, &MailboxId([3; 16]), &lease(None));
            s.delete_lease(&mut b, &MailboxId([3; 16]));
            s.commit(b).unwrap();
        }
        let s = ServerStore::open(dir.path()).unwrap();
        let leases = s.load_leases().unwrap();
        assert_eq!(leases.len(), 2);
        assert_eq!(leases[&held], lease(Some(DeviceId([9; 8]))));
        assert_eq!(leases[&free], lease(None));
    }

    #[test]
    fn messages_survive_reopen_in_order() {
        let dir = tempdir();
        let a = MailboxId([1; 16]);
        {
            let s = ServerStore::open(dir.path()).unwrap();
            let mut b = s.batch();
            for seq in [5, 3, 9] {
                s.put_message(&mut b, &msg(a, seq), 1000);
            }
            s.put_mailbox(
                &mut b,
                &a,
                MailboxStat {
                    count: 3,
                    bytes: 528,
                    oldest_expiry: 1000,
                },
            );
            s.put_seq_floor(&mut b, 77);
            s.commit(b).unwrap();
        }
        let s = ServerStore::open(dir.path()).unwrap();
        let r = s.read_mailbox(&a, 0, 10, 1 << 20, 500).unwrap();
        assert_eq!(r.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 5, 9]);
        assert!(!r.more);
        assert_eq!(r.first_key, Some(3));
        let r = s.read_mailbox(&a, 0, 2, 1 << 20, 500).unwrap();
        assert_eq!(r.messages.len(), 2);
        assert!(r.more);
        let r = s.read_mailbox(&a, 4, 10, 1 << 20, 500).unwrap();
        assert_eq!(r.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![5, 9]);
        assert_eq!(s.seq_floor().unwrap(), 77);
        assert_eq!(s.load_mailboxes().unwrap()[&a].count, 3);
        assert_eq!(s.message_size(&a, 3).unwrap(), Some(176));
        assert_eq!(
            s.read_mailbox(&a, 0, 10, 1 << 20, 1000).unwrap().messages.len(),
            0,
            "expired messages are not served"
        );
        assert_eq!(s.expired_in(&a, 1000).unwrap().0.len(), 3);
    }

    /// A folder removed when the returned guard drops.
    pub(crate) fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("meow-store-test-").tempdir().unwrap()
    }
}
