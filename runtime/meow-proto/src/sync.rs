//! The device sync log (spec §4.4; design in docs/DEVICES.md): the records a user's devices
//! exchange so that they converge on one state, and the rule that merges them.
//!
//! Each device writes its own stream of [`SyncRecord`]s, numbered from 1 without gaps. A record
//! sets or deletes (a tombstone) the value of one `(kind, key)`, stamped with a hybrid logical
//! clock ([`Hlc`], Kulkarni et al., "Logical Physical Clocks", 2014): the later stamp wins
//! everywhere, whatever order the records arrive in. Ratchet states are never merged by time:
//! their records carry the lease epoch of the one device that may write them, and a higher epoch
//! wins first ([`SyncRecord::order`]). The replica that applies records is
//! [`replica::Replica`].
//!
//! ```
//! use meow_proto::codec::{Decode, Encode};
//! use meow_proto::sync::{DeviceId, Hlc, Kind, SyncRecord};
//!
//! let record = SyncRecord {
//!     device: DeviceId([1; 8]),
//!     seq: 1,
//!     hlc: Hlc { ms: 1_700_000_000_000, counter: 0, device: DeviceId([1; 8]) },
//!     kind: Kind::Contact,
//!     epoch: 0,
//!     key: b"alice".to_vec(),
//!     value: Some(b"{\"name\":\"Alice\"}".to_vec()),
//! };
//! assert_eq!(SyncRecord::from_bytes(&record.to_bytes()), Ok(record));
//! ```

pub mod batch;
pub mod replica;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};

/// Version of the record format.
const FORMAT: u8 = 1;
/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Longest value, in bytes (a ratchet state with its skipped keys fits with room to spare).
pub const MAX_VALUE: usize = 256 * 1024;

/// Names one of the user's devices in the sync log (the first 8 bytes of the SHA-256 of its
/// `DevicePublic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 8]);

impl DeviceId {
    /// The id of a device: the first 8 bytes of the SHA-256 of its public key.
    pub fn of(device: &crate::DevicePublic) -> Self {
        let digest = crate::crypto::sha256(&[device.as_bytes()]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    /// Lowercase hex, for names and logs.
    pub fn to_hex(&self) -> String {
        crate::codec::to_hex(&self.0)
    }
}

/// A hybrid logical clock stamp: physical milliseconds, a counter for events within the same
/// millisecond (or while the physical clock is behind), and the device as the final tie-break.
/// Stamps are totally ordered and never repeat across devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch, as the latest clock seen.
    pub ms: u64,
    /// Events since `ms` was last raised.
    pub counter: u32,
    /// The device that made the stamp.
    pub device: DeviceId,
}

/// A device's hybrid logical clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    last: Hlc,
}

impl Clock {
    /// A clock for `device`, before any event.
    pub fn new(device: DeviceId) -> Self {
        Self {
            last: Hlc {
                ms: 0,
                counter: 0,
                device,
            },
        }
    }

    /// The stamp of a local event at physical time `now_ms`: later than every stamp this clock
    /// made or saw, even when the physical clock went back.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.last.ms {
            self.last.ms = now_ms;
            self.last.counter = 0;
        } else {
            self.last.counter = self.last.counter.saturating_add(1);
        }
        self.last
    }

    /// Takes in a stamp received from another device at physical time `now_ms`, so the next
    /// local stamp is later than it.
    pub fn observe(&mut self, seen: Hlc, now_ms: u64) {
        let ms = now_ms.max(self.last.ms).max(seen.ms);
        let counter = match (ms == self.last.ms, ms == seen.ms) {
            (true, true) => self.last.counter.max(seen.counter),
            (true, false) => self.last.counter,
            (false, true) => seen.counter,
            (false, false) => 0,
        };
        self.last.ms = ms;
        self.last.counter = counter;
    }
}

/// What a record is about: decides who may write it and how it merges (docs/DEVICES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A contact's name and settings.
    Contact,
    /// A conversation's ratchet state (ordered by lease epoch first).
    Conversation,
    /// An invitation in flight.
    Invitation,
    /// A group.
    Group,
    /// The directory entry.
    Directory,
    /// A received message.
    Inbox,
    /// A sent message.
    Sent,
    /// A setting.
    Setting,
    /// An entry of a plugin instance's key-value store.
    PluginKv,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Contact => 1,
            Kind::Conversation => 2,
            Kind::Invitation => 3,
            Kind::Group => 4,
            Kind::Directory => 5,
            Kind::Inbox => 6,
            Kind::Sent => 7,
            Kind::Setting => 8,
            Kind::PluginKv => 9,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Kind::Contact,
            2 => Kind::Conversation,
            3 => Kind::Invitation,
            4 => Kind::Group,
            5 => Kind::Directory,
            6 => Kind::Inbox,
            7 => Kind::Sent,
            8 => Kind::Setting,
            9 => Kind::PluginKv,
            _ => return None,
        })
    }
}

/// One write of one device: `(kind, key)` takes `value`, or is deleted (`None`, a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    /// The device whose stream it is in.
    pub device: DeviceId,
    /// Its place in that stream, from 1, without gaps.
    pub seq: u64,
    /// When it was written.
    pub hlc: Hlc,
    /// What it is about.
    pub kind: Kind,
    /// The lease epoch it was written under ([`Kind::Conversation`]); 0 for every other kind.
    pub epoch: u64,
    /// Which one.
    pub key: Vec<u8>,
    /// The new value, or `None` for a deletion.
    pub value: Option<Vec<u8>>,
}

impl SyncRecord {
    /// What decides between two records of the same `(kind, key)`: the higher wins.
    pub fn order(&self) -> (u64, Hlc) {
        (self.epoch, self.hlc)
    }
}

impl Encode for Hlc {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.ms).varint(self.counter.into()).raw(&self.device.0);
    }
}

impl Decode for Hlc {
    const WHAT: &'static str = "clock stamp";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ms = r.u64("stamp time")?;
        let counter = r.varint_max(u32::MAX.into(), "stamp counter")? as u32;
        let device = DeviceId(r.array("stamp device")?);
        Ok(Self { ms, counter, device })
    }
}

impl Encode for SyncRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT).raw(&self.device.0).varint(self.seq);
        self.hlc.encode(w);
        w.u8(self.kind.code()).varint(self.epoch).bytes(&self.key);
        match &self.value {
            Some(v) => w.u8(1).bytes(v),
            None => w.u8(0),
        };
    }
}

impl Decode for SyncRecord {
    const WHAT: &'static str = "sync record";

    /// Reads a record, refusing sequence number 0, an epoch on a kind that has none, and a
    /// stamp of another device than the stream's.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version(FORMAT, "sync record")?;
        let device = DeviceId(r.array("record device")?);
        let seq = r.varint("record sequence")?;
        let hlc = Hlc::decode(r)?;
        let code = r.u8("record kind")?;
        let kind = Kind::from_code(code).ok_or(DecodeError::UnknownValue {
            what: "record kind",
            value: code.into(),
        })?;
        let epoch = r.varint("record epoch")?;
        let key = r.bytes(MAX_KEY, "record key")?.to_vec();
        let value = match r.u8("record value tag")? {
            0 => None,
            1 => Some(r.bytes(MAX_VALUE, "record value")?.to_vec()),
            tag => {
                return Err(DecodeError::UnknownValue {
                    what: "record value tag",
                    value: tag.into(),
                });
            }
        };
        let invalid = |reason| DecodeError::Invalid {
            what: "sync record",
            reason,
        };
        if seq == 0 {
            return Err(invalid("sequence numbers start at 1"));
        }
        if hlc.device != device {
            return Err(invalid("stamped by another device than its stream's"));
        }
        if epoch != 0 && kind != Kind::Conversation {
            return Err(invalid("only conversation records carry an epoch"));
        }
        Ok(Self {
            device,
            seq,
            hlc,
            kind,
            epoch,
            key,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: DeviceId = DeviceId([0xaa; 8]);

    fn record(value: Option<&[u8]>) -> SyncRecord {
        SyncRecord {
            device: A,
            seq: 7,
            hlc: Hlc {
                ms: 0x0102_0304_0506,
                counter: 3,
                device: A,
            },
            kind: Kind::Conversation,
            epoch: 2,
            key: b"bob".to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    /// The bytes of a record, field by field (a vector for other implementations).
    #[test]
    fn a_record_has_these_bytes() {
        let bytes = record(Some(b"state")).to_bytes();
        let hex = crate::codec::to_hex(&bytes);
        assert_eq!(
            hex,
            concat!(
                "01",               // format
                "aaaaaaaaaaaaaaaa", // device
                "07",               // seq
                "0000010203040506", // stamp ms
                "03",               // stamp counter
                "aaaaaaaaaaaaaaaa", // stamp device
                "02",               // kind: conversation
                "02",               // epoch
                "03626f62",         // key "bob"
                "01",               // a value follows
                "057374617465",     // "state"
            )
        );
        assert_eq!(SyncRecord::from_bytes(&bytes), Ok(record(Some(b"state"))));
        let tombstone = record(None);
        assert_eq!(SyncRecord::from_bytes(&tombstone.to_bytes()), Ok(tombstone));
    }

    #[test]
    fn malformed_records_are_refused_with_the_reason() {
        let mut other = record(None);
        other.hlc.device = DeviceId([0xbb; 8]);
        let e = SyncRecord::from_bytes(&other.to_bytes()).unwrap_err().to_string();
        assert!(e.contains("another device"), "{e}");
        let mut first = record(None);
        first.seq = 0;
        assert!(SyncRecord::from_bytes(&first.to_bytes()).is_err());
        let mut contact = record(None);
        contact.kind = Kind::Contact;
        let e = SyncRecord::from_bytes(&contact.to_bytes()).unwrap_err().to_string();
        assert!(e.contains("epoch"), "{e}");
        let mut bytes = record(None).to_bytes();
        bytes[0] = 2;
        assert!(SyncRecord::from_bytes(&bytes).is_err(), "unknown format");
    }

    #[test]
    fn the_clock_moves_forward_whatever_the_wall_clock_does() {
        let mut clock = Clock::new(A);
        let a = clock.tick(1000);
        let b = clock.tick(1000);
        let c = clock.tick(900); // the wall clock went back
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
        // A stamp from a device whose clock is ahead: the next local one is later still.
        let ahead = Hlc {
            ms: 5000,
            counter: 4,
            device: DeviceId([1; 8]),
        };
        clock.observe(ahead, 1001);
        let d = clock.tick(1002);
        assert!(d > ahead, "{d:?} {ahead:?}");
        assert_eq!((d.ms, d.counter), (5000, 5));
    }
}
