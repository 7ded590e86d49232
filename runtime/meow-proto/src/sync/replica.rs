//! One device's copy of the sync log: it writes records of its own, applies those of the other
//! devices in any order the network brings them, and says what a peer is missing. Sans-IO: the
//! caller gives the time and carries the records.
//!
//! Two replicas that have applied the same records hold the same state, whatever the order
//! ([`Replica::state`]): for each `(kind, key)` the record with the highest
//! [`SyncRecord::order`] wins, a tombstone like a value. Each device's stream is applied in
//! sequence: a record past a gap waits for the ones before it (the sender sends again what was
//! not acknowledged), and a record seen before changes nothing.

use std::collections::BTreeMap;

use super::{Clock, DeviceId, Kind, SyncRecord};

/// What applying a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It is the new value of its key.
    Won,
    /// It was stored, but a later record of the same key keeps its value.
    Lost,
    /// Already applied: nothing changed.
    Duplicate,
    /// Records of its stream before it are missing: it was not applied.
    Gap {
        /// The sequence number the stream expects next.
        expected: u64,
    },
}

/// The current value of one `(kind, key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    order: (u64, super::Hlc),
    /// `None`: deleted (a tombstone, kept so that an older write arriving late stays dead).
    value: Option<Vec<u8>>,
}

/// A device's replica of the sync log.
#[derive(Debug, Clone)]
pub struct Replica {
    device: DeviceId,
    clock: Clock,
    /// Every device's stream as far as it is known without gaps.
    streams: BTreeMap<DeviceId, Vec<SyncRecord>>,
    state: BTreeMap<(Kind, Vec<u8>), Entry>,
}

impl Replica {
    /// An empty replica for `device`.
    pub fn new(device: DeviceId) -> Self {
        Self {
            device,
            clock: Clock::new(device),
            streams: BTreeMap::new(),
            state: BTreeMap::new(),
        }
    }

    /// Writes `value` (`None`: deletes) for `(kind, key)` at physical time `now_ms`; returns the
    /// record to send to the other devices.
    pub fn write(&mut self, kind: Kind, key: &[u8], value: Option<Vec<u8>>, epoch: u64, now_ms: u64) -> SyncRecord {
        let record = SyncRecord {
            device: self.device,
            seq: self.next_seq(self.device),
            hlc: self.clock.tick(now_ms),
            kind,
            epoch: if kind == Kind::Conversation { epoch } else { 0 },
            key: key.to_vec(),
            value,
        };
        self.apply(record.clone(), now_ms);
        record
    }

    /// Applies a record from any device (this one's own, sent back, included).
    pub fn apply(&mut self, record: SyncRecord, now_ms: u64) -> Applied {
        let expected = self.next_seq(record.device);
        if record.seq < expected {
            return Applied::Duplicate;
        }
        if record.seq > expected {
            return Applied::Gap { expected };
        }
        self.clock.observe(record.hlc, now_ms);
        let slot = (record.kind, record.key.clone());
        let wins = self.state.get(&slot).is_none_or(|e| record.order() > e.order);
        if wins {
            let entry = Entry {
                order: record.order(),
                value: record.value.clone(),
            };
            self.state.insert(slot, entry);
        }
        self.streams.entry(record.device).or_default().push(record);
        if wins { Applied::Won } else { Applied::Lost }
    }

    /// The next sequence number expected from `device`.
    fn next_seq(&self, device: DeviceId) -> u64 {
        self.streams.get(&device).map_or(1, |s| s.len() as u64 + 1)
    }

    /// How far each stream is known: what a peer sends back to say what it has.
    pub fn known(&self) -> BTreeMap<DeviceId, u64> {
        self.streams.iter().map(|(d, s)| (*d, s.len() as u64)).collect()
    }

    /// The records a peer that knows `known` of each stream is missing, oldest first in each
    /// stream (every stream, not only this device's: a device back from days offline catches up
    /// from whichever device it reaches first).
    pub fn missing_for(&self, known: &BTreeMap<DeviceId, u64>) -> Vec<SyncRecord> {
        self.streams
            .iter()
            .flat_map(|(device, stream)| {
                let from = known.get(device).copied().unwrap_or(0) as usize;
                stream.iter().skip(from).cloned()
            })
            .collect()
    }

    /// What orders the current record of `(kind, key)` (its lease epoch and stamp), deleted or
    /// not.
    pub fn order(&self, kind: Kind, key: &[u8]) -> Option<(u64, super::Hlc)> {
        Some(self.state.get(&(kind, key.to_vec()))?.order)
    }

    /// The value of `(kind, key)`, if it is set and not deleted.
    pub fn get(&self, kind: Kind, key: &[u8]) -> Option<&[u8]> {
        self.state.get(&(kind, key.to_vec()))?.value.as_deref()
    }

    /// The live values of one kind, in key order, without copying them.
    pub fn values(&self, kind: Kind) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.state
            .range((kind, Vec::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .filter_map(|((_, key), e)| Some((key.as_slice(), e.value.as_deref()?)))
    }

    /// Every live value, in `(kind, key)` order: what two converged replicas agree on.
    pub fn state(&self) -> Vec<(Kind, Vec<u8>, Vec<u8>)> {
        self.state
            .iter()
            .filter_map(|((kind, key), e)| Some((*kind, key.clone(), e.value.clone()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: DeviceId = DeviceId([1; 8]);
    const B: DeviceId = DeviceId([2; 8]);
    const C: DeviceId = DeviceId([3; 8]);

    /// Everything `from` has that `to` lacks.
    fn deliver(from: &Replica, to: &mut Replica, now: u64) {
        for r in from.missing_for(&to.known()) {
            to.apply(r, now);
        }
    }

    #[test]
    fn a_rename_and_a_delete_on_two_devices_converge_to_the_later() {
        let (mut a, mut b) = (Replica::new(A), Replica::new(B));
        let made = a.write(Kind::Contact, b"carol", Some(b"Carol".to_vec()), 0, 1000);
        assert_eq!(b.apply(made, 1000), Applied::Won);
        // Concurrently: A renames, B (whose clock is later) deletes.
        a.write(Kind::Contact, b"carol", Some(b"Caroline".to_vec()), 0, 2000);
        b.write(Kind::Contact, b"carol", None, 0, 2001);
        deliver(&a, &mut b, 3000);
        deliver(&b, &mut a, 3000);
        assert_eq!(a.state(), b.state());
        assert_eq!(a.get(Kind::Contact, b"carol"), None, "the later write was the delete");
        // Two plugin kv writes to one key: the later stays; to two keys: both stay.
        a.write(Kind::PluginKv, b"counter/alice", Some(b"1".to_vec()), 0, 4000);
        b.write(Kind::PluginKv, b"counter/alice", Some(b"2".to_vec()), 0, 4005);
        b.write(Kind::PluginKv, b"counter/bob", Some(b"9".to_vec()), 0, 4006);
        deliver(&a, &mut b, 5000);
        deliver(&b, &mut a, 5000);
        assert_eq!(a.state(), b.state());
        assert_eq!(a.get(Kind::PluginKv, b"counter/alice"), Some(&b"2"[..]));
        assert_eq!(a.get(Kind::PluginKv, b"counter/bob"), Some(&b"9"[..]));
    }

    #[test]
    fn a_device_offline_for_the_whole_exchange_catches_up_from_any_other() {
        let (mut a, mut b, mut c) = (Replica::new(A), Replica::new(B), Replica::new(C));
        for i in 0..50u64 {
            a.write(Kind::Inbox, &i.to_be_bytes(), Some(vec![1]), 0, 1000 + i);
            deliver(&a, &mut b, 1000 + i);
            b.write(Kind::Sent, &i.to_be_bytes(), Some(vec![2]), 0, 1000 + i);
            deliver(&b, &mut a, 1000 + i);
        }
        // C reaches only B, which relays A's stream too.
        deliver(&b, &mut c, 9000);
        assert_eq!(c.state(), a.state());
        assert_eq!(c.state().len(), 100);
    }

    #[test]
    fn streams_apply_in_sequence_and_duplicates_change_nothing() {
        let mut a = Replica::new(A);
        let first = a.write(Kind::Setting, b"x", Some(b"1".to_vec()), 0, 10);
        let second = a.write(Kind::Setting, b"x", Some(b"2".to_vec()), 0, 11);
        let mut b = Replica::new(B);
        assert_eq!(b.apply(second.clone(), 20), Applied::Gap { expected: 1 });
        assert_eq!(b.apply(first.clone(), 20), Applied::Won);
        assert_eq!(b.apply(first, 20), Applied::Duplicate);
        assert_eq!(b.apply(second, 20), Applied::Won);
        assert_eq!(b.get(Kind::Setting, b"x"), Some(&b"2"[..]));
    }

    #[test]
    fn values_of_one_kind_leave_the_others_and_the_deleted_out() {
        let mut r = Replica::new(A);
        r.write(Kind::Contact, b"c", Some(b"1".to_vec()), 0, 1);
        r.write(Kind::Sent, b"x", Some(b"2".to_vec()), 0, 2);
        r.write(Kind::Sent, b"y", Some(b"3".to_vec()), 0, 3);
        r.write(Kind::Sent, b"y", None, 0, 4);
        r.write(Kind::Setting, b"s", Some(b"4".to_vec()), 0, 5);
        let sent: Vec<_> = r.values(Kind::Sent).collect();
        assert_eq!(sent, vec![(&b"x"[..], &b"2"[..])]);
        assert_eq!(r.values(Kind::Inbox).count(), 0);
    }

    #[test]
    fn a_ratchet_state_of_a_later_lease_epoch_wins_whatever_the_clocks_say() {
        let (mut a, mut b) = (Replica::new(A), Replica::new(B));
        // B took the lease (epoch 2) with its clock behind A's, which wrote under epoch 1.
        a.write(Kind::Conversation, b"bob", Some(b"state-1".to_vec()), 1, 9000);
        b.write(Kind::Conversation, b"bob", Some(b"state-2".to_vec()), 2, 100);
        deliver(&a, &mut b, 9100);
        deliver(&b, &mut a, 9100);
        assert_eq!(a.get(Kind::Conversation, b"bob"), Some(&b"state-2"[..]));
        assert_eq!(a.state(), b.state());
    }

    /// Three devices write at random and exchange in random orders and partitions: once all
    /// have exchanged, they hold the same state.
    #[test]
    fn random_writes_and_exchanges_converge() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _round in 0..20 {
            let mut replicas = [Replica::new(A), Replica::new(B), Replica::new(C)];
            let mut now = 1_000;
            for _ in 0..300 {
                now += next(3);
                let i = next(3) as usize;
                if next(4) == 0 {
                    let j = next(3) as usize;
                    let from = replicas[j].clone();
                    deliver(&from, &mut replicas[i], now);
                } else {
                    let kind = [Kind::Contact, Kind::PluginKv, Kind::Group][next(3) as usize];
                    let key = [next(5) as u8];
                    let value = (next(5) != 0).then(|| vec![next(256) as u8]);
                    // Clocks skewed by device: the merge must not depend on them agreeing.
                    let skew = [0, 500, 2000][i];
                    replicas[i].write(kind, &key, value, 0, now + skew);
                }
            }
            for _ in 0..2 {
                for i in 0..3 {
                    for j in 0..3 {
                        let from = replicas[j].clone();
                        deliver(&from, &mut replicas[i], now);
                    }
                }
            }
            assert_eq!(replicas[0].state(), replicas[1].state());
            assert_eq!(replicas[1].state(), replicas[2].state());
        }
    }
}
