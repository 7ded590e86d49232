//! The relay's journal of held packets: every packet taken is appended before `Forwarded` is
//! answered, and marked done once handed on (or given up), so a relay killed and restarted
//! hands on what it held instead of losing it.
//!
//! ```text
//! segment = record*                          (files relay/held-N.log, N increasing)
//! record  = 1 put:  order:u64 | due_ms:u64 | len:u32 | job
//!         | 2 done: order:u64
//! job     = instruction (docs/PROTOCOL.md §22, with no delay left) | packet:option<bytes>
//! ```
//!
//! Records are appended (no fsync: a kill loses nothing the kernel has; a power cut may lose the
//! last ones). A new segment starts past 8 MiB; the oldest segments go once every packet they
//! hold is done, oldest first, so a `done` is never dropped while its `put` remains. A record
//! cut short by a crash ends the replay of its segment. A packet replayed twice after a crash
//! (its `done` lost) is refused by the next relay as a replay, or dropped by the recipient's
//! duplicate detection: at most once on the wire beyond the relay.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use meow_proto::codec::{Decode, Encode, Reader, Writer};
use meow_proto::onion::Instruction;

use super::Job;

/// A segment is closed past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
const PUT: u8 = 1;
const DONE: u8 = 2;

/// A packet not done: its order, when it is due (Unix ms), what to do.
pub(super) type Pending = (u64, u64, Job);

/// Held packets on disk.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    current: (u64, File, u64),
    /// Per segment, the packets it holds that are not done.
    live: BTreeMap<u64, usize>,
    /// Which segment holds each packet not done.
    place: HashMap<u64, u64>,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("held-{id}.log"))
}

/// A job as the journal stores it: its instruction, and the inner packet of a forward.
fn encode_job(job: &Job) -> Vec<u8> {
    let (instruction, packet) = job.parts();
    let mut w = Writer::new();
    instruction.encode(&mut w);
    w.option(packet.as_ref(), |w, p| {
        w.bytes(p);
    });
    w.into_bytes()
}

fn decode_job(r: &mut Reader<'_>) -> Option<Job> {
    let instruction = Instruction::decode(r).ok()?;
    let packet = r
        .option("packet", |r| {
            Ok(r.bytes(meow_proto::wire::MAX_ONION_PACKET, "packet")?.to_vec())
        })
        .ok()?;
    Job::new(instruction, packet)
}

/// Reads one segment's records into `pending`, by order.
fn replay(bytes: &[u8], id: u64, pending: &mut BTreeMap<u64, (u64, u64, Job)>) {
    let mut r = Reader::new(bytes);
    loop {
        let record = (|| -> Option<()> {
            match r.u8("record").ok()? {
                PUT => {
                    let order = u64::from_be_bytes(r.array::<8>("order").ok()?);
                    let due = u64::from_be_bytes(r.array::<8>("due").ok()?);
                    let len = u32::from_be_bytes(r.array::<4>("length").ok()?) as usize;
                    let mut job = Reader::new(r.take(len, "job").ok()?);
                    pending.insert(order, (id, due, decode_job(&mut job)?));
                }
                DONE => {
                    pending.remove(&u64::from_be_bytes(r.array::<8>("order").ok()?));
                }
                _ => return None,
            }
            Some(())
        })();
        if record.is_none() {
            return;
        }
    }
}

impl Journal {
    /// Opens the journal in `dir`; the packets not done.
    pub(super) fn open(dir: &Path) -> std::io::Result<(Self, Vec<Pending>)> {
        let mut ids: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("held-")?.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut pending = BTreeMap::new();
        for id in &ids {
            replay(&std::fs::read(segment_path(dir, *id))?, *id, &mut pending);
        }
        let next_id = ids.last().map_or(0, |i| i + 1);
        let file = File::create(segment_path(dir, next_id))?;
        let mut journal = Self {
            dir: dir.to_owned(),
            current: (next_id, file, 0),
            live: ids.iter().map(|i| (*i, 0)).collect(),
            place: HashMap::new(),
        };
        journal.live.insert(next_id, 0);
        for (order, (id, _, _)) in &pending {
            *journal.live.entry(*id).or_default() += 1;
            journal.place.insert(*order, *id);
        }
        journal.collect()?;
        let held = pending
            .into_iter()
            .map(|(order, (_, due, job))| (order, due, job))
            .collect();
        Ok((journal, held))
    }

    fn append(&mut self, record: &[u8]) -> std::io::Result<()> {
        if self.current.2 >= SEGMENT_BYTES {
            let id = self.current.0 + 1;
            self.current = (id, File::create(segment_path(&self.dir, id))?, 0);
            self.live.insert(id, 0);
        }
        self.current.1.write_all(record)?;
        self.current.2 += record.len() as u64;
        Ok(())
    }

    /// Records a packet taken.
    pub(super) fn put(&mut self, order: u64, due_ms: u64, job: &Job) -> std::io::Result<()> {
        let job = encode_job(job);
        let mut record = Vec::with_capacity(21 + job.len());
        record.push(PUT);
        record.extend_from_slice(&order.to_be_bytes());
        record.extend_from_slice(&due_ms.to_be_bytes());
        record.extend_from_slice(&(job.len() as u32).to_be_bytes());
        record.extend_from_slice(&job);
        self.append(&record)?;
        *self.live.entry(self.current.0).or_default() += 1;
        self.place.insert(order, self.current.0);
        Ok(())
    }

    /// Records a packet handed on (or given up), and drops the segments nothing needs.
    pub(super) fn done(&mut self, order: u64) -> std::io::Result<()> {
        let mut record = vec![DONE];
        record.extend_from_slice(&order.to_be_bytes());
        self.append(&record)?;
        if let Some(id) = self.place.remove(&order)
            && let Some(n) = self.live.get_mut(&id)
        {
            *n = n.saturating_sub(1);
        }
        self.collect()
    }

    /// Deletes the oldest segments while they hold nothing pending (never the current one).
    fn collect(&mut self) -> std::io::Result<()> {
        while let Some((&id, &n)) = self.live.iter().next() {
            if n > 0 || id == self.current.0 {
                break;
            }
            self.live.remove(&id);
            super::remove_if_there(&segment_path(&self.dir, id))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::MailboxId;

    /// A damaged journal (any bytes) reads without a panic, keeping the records before the damage.
    #[test]
    fn damaged_segments_read_up_to_the_damage() {
        let job = Job::Deposit {
            target: None,
            mailbox: MailboxId([1; 16]),
            envelope: vec![2; 176],
        };
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        j.put(1, 10, &job).unwrap();
        j.put(2, 20, &job).unwrap();
        let bytes = std::fs::read(segment_path(dir.path(), 0)).unwrap();
        let mut seed = 0x9e37_79b9_u64;
        for cut in 0..bytes.len() {
            let mut pending = BTreeMap::new();
            replay(&bytes[..cut], 0, &mut pending);
            assert!(pending.len() <= 2);
            let mut damaged = bytes.clone();
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            damaged[cut] ^= (seed >> 56) as u8 | 1;
            let mut pending = BTreeMap::new();
            replay(&damaged, 0, &mut pending);
            assert!(pending.len() <= 2);
        }
        let mut pending = BTreeMap::new();
        replay(&bytes, 0, &mut pending);
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[&2].2, job);
    }
}
