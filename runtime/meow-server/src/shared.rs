//! State shared by connections and the writer: long-poll waiters, and the in-memory copies of
//! broadcasts and directory entries (both small; the store holds them durably).

use std::collections::{HashMap, HashSet};

use parking_lot::{Mutex, RwLock};

use meow_proto::MailboxId;
use meow_proto::broadcast::UncheckedBroadcast;
use meow_proto::codec::Decode;
use meow_proto::directory::{DirectoryEntry, UncheckedEntry};
use meow_proto::wire::BroadcastItem;
use meow_store::server::{StoredBroadcast, StoredEntry};
use smol::channel::Sender;

/// A directory entry held in memory with its search words.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The verified entry.
    pub entry: DirectoryEntry,
    /// Its id (what a withdrawal names).
    pub id: [u8; 32],
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    words: Vec<String>,
}

impl Listed {
    /// Indexes a verified entry.
    pub fn new(entry: DirectoryEntry, expires_at: u64) -> Self {
        let mut words: Vec<String> = entry.tags.clone();
        words.extend(split_words(&entry.description));
        if let Some(n) = &entry.card.body.nickname {
            words.extend(split_words(n));
        }
        Self {
            id: entry.id(),
            entry,
            expires_at,
            words,
        }
    }

    /// Whether every query word is a prefix of one of the entry's words.
    pub fn matches(&self, query: &[String]) -> bool {
        query
            .iter()
            .all(|q| self.words.iter().any(|w| w.starts_with(q.as_str())))
    }
}

/// Lowercase words of a text.
pub fn split_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Shared between the writer and the connections.
#[derive(Debug, Default)]
pub struct Shared {
    /// Every committed message has a seq below this (published by the writer after each commit).
    pub committed_seq: std::sync::atomic::AtomicU64,
    /// Per mailbox, a seq below which nothing is stored: reads start there.
    read_hints: Mutex<HashMap<MailboxId, u64>>,
    waiters: Mutex<HashMap<MailboxId, Vec<Sender<()>>>>,
    broadcast_waiters: Mutex<Vec<Sender<()>>>,
    broadcasts: RwLock<Vec<(StoredBroadcast, BroadcastItem)>>,
    directory: RwLock<HashMap<[u8; 32], Listed>>,
}

impl Shared {
    /// Loads broadcasts and directory entries that are still valid at `now`.
    pub fn load(&self, broadcasts: Vec<StoredBroadcast>, entries: Vec<StoredEntry>, now: u64) {
        self.apply_committed(broadcasts, &[], entries, &[], now);
        self.broadcasts.write().retain(|(b, _)| b.expires_at > now);
        self.directory.write().retain(|_, l| l.expires_at > now);
    }

    /// Registers interest in new messages for `mailboxes` (and broadcasts); the returned channel
    /// gets a value when one arrives.
    pub fn register(&self, mailboxes: &[MailboxId], tx: &Sender<()>) {
        let mut w = self.waiters.lock();
        for m in mailboxes {
            let list = w.entry(*m).or_default();
            list.retain(|s| !s.is_closed());
            list.push(tx.clone());
        }
        drop(w);
        let mut w = self.broadcast_waiters.lock();
        w.retain(|s| !s.is_closed());
        w.push(tx.clone());
    }

    /// Where reads of `mailbox` may start.
    pub fn read_hint(&self, mailbox: &MailboxId) -> u64 {
        self.read_hints.lock().get(mailbox).copied().unwrap_or(0)
    }

    /// Records that nothing below `seq` is stored in `mailbox` (hints only move up).
    pub fn raise_read_hint(&self, mailbox: &MailboxId, seq: u64) {
        let mut h = self.read_hints.lock();
        if h.len() > 1_000_000 {
            h.clear();
        }
        let e = h.entry(*mailbox).or_insert(0);
        *e = (*e).max(seq);
    }

    /// Wakes pollers of these mailboxes.
    pub fn wake(&self, mailboxes: &HashSet<MailboxId>) {
        if mailboxes.is_empty() {
            return;
        }
        let mut w = self.waiters.lock();
        for m in mailboxes {
            for tx in w.remove(m).unwrap_or_default() {
                // Full or closed: the poller was woken already, or is gone.
                let _ = tx.try_send(());
            }
        }
    }

    fn wake_all(&self) {
        for tx in self.broadcast_waiters.lock().drain(..) {
            // Full or closed: the poller was woken already, or is gone.
            let _ = tx.try_send(());
        }
    }

    /// Applies a committed batch's broadcast and directory changes.
    pub fn apply_committed(
        &self,
        broadcasts: Vec<StoredBroadcast>,
        expired: &[u64],
        entries: Vec<StoredEntry>,
        removed: &[[u8; 32]],
        now: u64,
    ) {
        let any_new = !broadcasts.is_empty();
        let mut list = self.broadcasts.write();
        list.retain(|(b, _)| !expired.contains(&b.id));
        for b in broadcasts {
            match UncheckedBroadcast::from_bytes(&b.bytes) {
                Ok(broadcast) => {
                    let item = BroadcastItem {
                        id: b.id,
                        from_operator: b.from_operator,
                        broadcast,
                    };
                    list.push((b, item));
                }
                Err(e) => tracing::warn!(error = %e, "stored broadcast does not decode; skipped"),
            }
        }
        drop(list);
        let mut d = self.directory.write();
        for p in removed {
            d.remove(p);
        }
        for e in entries {
            let checked = UncheckedEntry::from_bytes(&e.bytes)
                .ok()
                .and_then(|u| u.check(now).ok());
            match checked {
                Some(entry) => {
                    d.insert(e.publisher, Listed::new(entry, e.expires_at));
                }
                None => tracing::warn!("stored directory entry does not verify; skipped"),
            }
        }
        drop(d);
        if any_new {
            self.wake_all();
        }
    }

    /// Broadcasts with an id above `after`, still valid at `now`.
    pub fn broadcasts_after(&self, after: u64, now: u64) -> Vec<BroadcastItem> {
        self.broadcasts
            .read()
            .iter()
            .filter(|(b, _)| b.id > after && b.expires_at > now)
            .map(|(_, i)| i.clone())
            .collect()
    }

    /// Ids of broadcasts expired at `now`.
    pub fn expired_broadcasts(&self, now: u64) -> Vec<u64> {
        self.broadcasts
            .read()
            .iter()
            .filter(|(b, _)| b.expires_at <= now)
            .map(|(b, _)| b.id)
            .collect()
    }

    /// Whether a broadcast with these bytes is already held (a replay).
    pub fn has_broadcast(&self, bytes: &[u8]) -> Option<u64> {
        self.broadcasts
            .read()
            .iter()
            .find(|(b, _)| b.bytes == bytes)
            .map(|(b, _)| b.id)
    }

    /// Publishers of entries expired at `now`.
    pub fn expired_entries(&self, now: u64) -> Vec<[u8; 32]> {
        self.directory
            .read()
            .iter()
            .filter(|(_, l)| l.expires_at <= now)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Runs `f` over the directory.
    pub fn with_directory<T>(&self, f: impl FnOnce(&HashMap<[u8; 32], Listed>) -> T) -> T {
        f(&self.directory.read())
    }
}
