//! What one device sends another through the sync channel (PROTOCOL.md §25): the records the
//! peer has not acknowledged, and what the sender itself knows of every stream (its
//! acknowledgement). A payload larger than one envelope (a batch, a new device's welcome) travels
//! in [`Part`]s, reassembled by [`Reassembly`]; a part lost on the way costs nothing but a
//! resend, because the sender sends again whatever the peer has not acknowledged.
//!
//! ```
//! use std::collections::BTreeMap;
//! use meow_proto::sync::DeviceId;
//! use meow_proto::sync::batch::{Batch, Reassembly};
//! let batch = Batch { known: BTreeMap::from([(DeviceId([1; 8]), 4)]), records: vec![] };
//! use meow_proto::codec::{Decode, Encode};
//! let parts = meow_proto::sync::batch::split(&batch.to_bytes(), [7; 8], 1000);
//! let mut r = Reassembly::default();
//! let mut out = None;
//! for p in parts {
//!     out = r.add(&p).unwrap();
//! }
//! assert_eq!(Batch::from_bytes(&out.unwrap()), Ok(batch));
//! ```

use std::collections::{BTreeMap, HashMap};

use super::{DeviceId, SyncRecord};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};

const FORMAT: u8 = 1;
/// Devices one user may have at most.
pub const MAX_DEVICES: usize = 64;
/// Records in one batch at most.
pub const MAX_RECORDS: usize = 1 << 20;
/// Parts of one payload at most (with envelopes of 128 KiB: about 230 MiB).
pub const MAX_PARTS: u64 = 2048;
/// Payloads being reassembled at once at most; past it the oldest is dropped (and sent again).
const MAX_OPEN: usize = 8;
/// Bytes held for payloads being reassembled, all together: past it the oldest payloads are
/// dropped, so a device sending endless parts costs bounded memory. A welcome larger than this
/// (a home of about a million messages) cannot be received.
pub const MAX_BUFFERED: usize = 128 * 1024 * 1024;

/// Records and an acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// How far the sender knows each stream (the receiver sends it nothing below).
    pub known: BTreeMap<DeviceId, u64>,
    /// Records, oldest first in each stream.
    pub records: Vec<SyncRecord>,
}

/// Writes how far each stream is known: `list<device:[8] length:varint>`, ascending.
pub fn write_known(w: &mut Writer, known: &BTreeMap<DeviceId, u64>) {
    let list: Vec<_> = known.iter().collect();
    w.list(&list, |w, (d, seq)| {
        w.raw(&d.0).varint(**seq);
    });
}

/// Reads what [`write_known`] wrote, refusing devices out of strictly ascending order (so that
/// the encoding stays canonical).
pub fn read_known(r: &mut Reader<'_>) -> Result<BTreeMap<DeviceId, u64>, DecodeError> {
    let known = r.list(MAX_DEVICES, "known streams", |r| {
        Ok((DeviceId(r.array("stream device")?), r.varint("stream length")?))
    })?;
    if known.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(DecodeError::Invalid {
            what: "known streams",
            reason: "devices are not in strictly ascending order",
        });
    }
    Ok(known.into_iter().collect())
}

impl Encode for Batch {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT);
        write_known(w, &self.known);
        w.list(&self.records, |w, r| r.encode(w));
    }
}

impl Decode for Batch {
    const WHAT: &'static str = "sync batch";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(FORMAT, "sync batch")?;
        let known = read_known(r)?;
        let records = r.list(MAX_RECORDS, "sync records", SyncRecord::decode)?;
        Ok(Self { known, records })
    }
}

/// One envelope's worth of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Names the batch (random, chosen by the sender).
    pub batch: [u8; 8],
    /// This part's place, from 0.
    pub index: u64,
    /// How many parts the batch has.
    pub count: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Encode for Part {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT).raw(&self.batch).varint(self.index).varint(self.count);
        w.bytes(&self.data);
    }
}

impl Decode for Part {
    const WHAT: &'static str = "sync part";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(FORMAT, "sync part")?;
        let batch = r.array("batch id")?;
        let index = r.varint("part index")?;
        let count = r.varint_max(MAX_PARTS, "part count")?;
        let data = r.bytes(crate::padding::MAX_ENVELOPE, "part data")?.to_vec();
        if count == 0 || index >= count {
            return Err(DecodeError::Invalid {
                what: "sync part",
                reason: "its index is not below its count",
            });
        }
        Ok(Self {
            batch,
            index,
            count,
            data,
        })
    }
}

/// `payload` cut into parts named `id` whose data is at most `max_data` bytes, each encoded.
pub fn split(payload: &[u8], id: [u8; 8], max_data: usize) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = payload.chunks(max_data.max(1)).collect();
    let count = chunks.len() as u64;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            Part {
                batch: id,
                index: i as u64,
                count,
                data: data.to_vec(),
            }
            .to_bytes()
        })
        .collect()
}

type PartsIn = (u64, BTreeMap<u64, Vec<u8>>);

/// Payloads whose parts are arriving.
#[derive(Debug, Default)]
pub struct Reassembly {
    /// Per batch: its count of parts, and the parts in so far.
    open: HashMap<[u8; 8], PartsIn>,
    order: Vec<[u8; 8]>,
    /// Bytes of the parts held.
    held: usize,
}

impl Reassembly {
    /// Adds an encoded part; returns the payload once every part of it is in.
    pub fn add(&mut self, part: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let part = Part::from_bytes(part)?;
        if !self.open.contains_key(&part.batch) {
            if self.order.len() >= MAX_OPEN {
                self.drop_oldest();
            }
            self.order.push(part.batch);
        }
        while self.held + part.data.len() > MAX_BUFFERED && self.order.len() > 1 {
            self.drop_oldest();
        }
        if self.held + part.data.len() > MAX_BUFFERED {
            self.drop_oldest();
            return Err(DecodeError::Invalid {
                what: "sync payload",
                reason: "larger than the most a device buffers",
            });
        }
        let slot = self.open.entry(part.batch).or_insert((part.count, BTreeMap::new()));
        if slot.0 != part.count {
            return Err(DecodeError::Invalid {
                what: "sync part",
                reason: "its count differs from its batch's other parts",
            });
        }
        let len = part.data.len();
        if let Some(before) = slot.1.insert(part.index, part.data) {
            self.held -= before.len();
        }
        self.held += len;
        if slot.1.len() as u64 != slot.0 {
            return Ok(None);
        }
        let (_, parts) = self.open.remove(&part.batch).unwrap_or_default();
        self.order.retain(|b| b != &part.batch);
        let whole: Vec<u8> = parts.into_values().flatten().collect();
        self.held -= whole.len();
        Ok(Some(whole))
    }

    /// Whether parts of payload `id` are being reassembled.
    pub fn is_open(&self, id: &[u8; 8]) -> bool {
        self.open.contains_key(id)
    }

    fn drop_oldest(&mut self) {
        if self.order.is_empty() {
            return;
        }
        let oldest = self.order.remove(0);
        if let Some((_, parts)) = self.open.remove(&oldest) {
            self.held -= parts.values().map(Vec::len).sum::<usize>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Hlc, Kind};

    fn batch(n: usize) -> Batch {
        let d = DeviceId([3; 8]);
        let records = (1..=n as u64)
            .map(|seq| SyncRecord {
                device: d,
                seq,
                hlc: Hlc {
                    ms: seq,
                    counter: 0,
                    device: d,
                },
                kind: Kind::Inbox,
                epoch: 0,
                key: seq.to_be_bytes().to_vec(),
                value: Some(vec![seq as u8; 300]),
            })
            .collect();
        Batch {
            known: BTreeMap::from([(d, 2), (DeviceId([4; 8]), 9)]),
            records,
        }
    }

    #[test]
    fn parts_in_any_order_make_the_batch_again() {
        let b = batch(50);
        let mut parts = split(&b.to_bytes(), [1; 8], 1000);
        assert!(parts.len() > 10);
        parts.reverse();
        parts.swap(0, 5);
        let mut r = Reassembly::default();
        let mut got = None;
        for p in &parts {
            assert!(got.is_none(), "complete only with the last part");
            got = r.add(p).unwrap();
        }
        assert_eq!(Batch::from_bytes(&got.unwrap()), Ok(b));
        // A part seen twice after completion starts a new batch that never completes alone.
        assert_eq!(r.add(&parts[0]).unwrap(), None);
    }

    #[test]
    fn bad_parts_are_refused_and_batches_in_flight_are_bounded() {
        let mut bad = Part {
            batch: [1; 8],
            index: 2,
            count: 2,
            data: vec![],
        };
        assert!(Part::from_bytes(&bad.to_bytes()).is_err());
        bad.index = 0;
        bad.count = MAX_PARTS + 1;
        assert!(Part::from_bytes(&bad.to_bytes()).is_err());
        let mut r = Reassembly::default();
        for i in 0..100u8 {
            let p = Part {
                batch: [i; 8],
                index: 0,
                count: 2,
                data: vec![1],
            };
            r.add(&p.to_bytes()).unwrap();
        }
        assert!(r.open.len() <= MAX_OPEN);
        assert_eq!(
            r.held,
            r.open
                .values()
                .map(|(_, p)| p.values().map(Vec::len).sum::<usize>())
                .sum::<usize>()
        );
        // A part whose count disagrees with its batch's first part is refused.
        let p = Part {
            batch: [99; 8],
            index: 1,
            count: 3,
            data: vec![1],
        };
        assert!(r.add(&p.to_bytes()).is_err());
        // Endless parts of one huge payload: memory stays bounded, and it says why.
        let mut flood = Reassembly::default();
        let big = vec![0u8; 100_000];
        let mut refused = false;
        for i in 0..MAX_PARTS - 1 {
            let p = Part {
                batch: [7; 8],
                index: i,
                count: MAX_PARTS,
                data: big.clone(),
            };
            refused |= flood.add(&p.to_bytes()).is_err();
            assert!(flood.held <= MAX_BUFFERED);
        }
        assert!(refused);
    }
}
