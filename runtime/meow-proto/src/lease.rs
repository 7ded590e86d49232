//! The conversation lease (docs/DEVICES.md, PROTOCOL.md §25): a small object a user's server
//! holds so that exactly one of the user's devices advances a conversation's ratchet at a time.
//!
//! The server arbitrates with a compare-and-swap: a device names the epoch it last saw, and the
//! lease is granted only if that epoch is still current. This module holds the rule itself,
//! sans-IO ([`Lease::decide`]), so that the server, the simulated server and the tests apply the
//! same one; the request and answer travel in [`crate::wire`].
//!
//! ```
//! use meow_proto::lease::{Lease, LeaseOp};
//! use meow_proto::sync::DeviceId;
//! let (a, b) = (DeviceId([1; 8]), DeviceId([2; 8]));
//! let (lease, granted) = Lease::decide(None, a, 0, LeaseOp::Take, 100);
//! assert!(granted && lease.epoch == 1 && lease.holder == Some(a));
//! // B saw epoch 0 only: the compare fails, and B learns who holds it.
//! let (_, granted) = Lease::decide(Some(lease), b, 0, LeaseOp::Take, 101);
//! assert!(!granted);
//! ```

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::sync::DeviceId;

/// How long a holder must have been silent before another device may break its lease, seconds.
/// Long, because two holders must never exist: clocks and partitions make short leases unsafe.
pub const LEASE_BREAK_SECS: u64 = 600;

/// What a device asks of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp {
    /// Take the lease, or renew it if already held (the answer says whether it was granted).
    Take,
    /// Give it up (the holder only): the next device takes it without waiting.
    Release,
}

/// A lease as the server keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Increases each time the lease changes hands (never on a renewal).
    pub epoch: u64,
    /// The device holding it; `None` once released.
    pub holder: Option<DeviceId>,
    /// When it was last taken, renewed or released, Unix seconds (the server's clock).
    pub touched: u64,
}

impl Lease {
    /// The compare-and-swap: `who`, having last seen `expect`, asks `op` at `now`. Returns the
    /// lease as it is afterwards and whether the request was granted.
    ///
    /// - `Take` is granted when `expect` is the current epoch and the lease is free or already
    ///   `who`'s (a renewal keeps the epoch), or when its holder has been silent for
    ///   [`LEASE_BREAK_SECS`] (the lease is broken). Changing hands raises the epoch.
    /// - `Release` is granted to the holder naming the current epoch; the epoch stays.
    /// - A lease the server does not hold is taken at `expect + 1`.
    /// - Anything else changes nothing: the answer shows the current state, so the asker can
    ///   retry with the epoch it now knows.
    pub fn decide(current: Option<Lease>, who: DeviceId, expect: u64, op: LeaseOp, now: u64) -> (Lease, bool) {
        // A lease the server does not hold (never taken, or swept after a long silence) starts
        // from the asker's own view, so that epochs never go back for the devices that saw them.
        let cur = current.unwrap_or(Lease {
            epoch: expect,
            holder: None,
            touched: now,
        });
        if cur.epoch != expect {
            return (cur, false);
        }
        let mine = cur.holder == Some(who);
        match op {
            LeaseOp::Release if mine => (
                Lease {
                    holder: None,
                    touched: now,
                    ..cur
                },
                true,
            ),
            LeaseOp::Release => (cur, false),
            LeaseOp::Take if mine => (Lease { touched: now, ..cur }, true),
            LeaseOp::Take => {
                let free = cur.holder.is_none() || now.saturating_sub(cur.touched) >= LEASE_BREAK_SECS;
                if !free {
                    return (cur, false);
                }
                let next = Lease {
                    epoch: cur.epoch + 1,
                    holder: Some(who),
                    touched: now,
                };
                (next, true)
            }
        }
    }

    /// The answer to a device about this lease at `now`.
    pub fn answer(&self, granted: bool, now: u64) -> LeaseAnswer {
        LeaseAnswer {
            granted,
            epoch: self.epoch,
            holder: self.holder,
            idle_secs: now.saturating_sub(self.touched),
        }
    }
}

/// The server's answer to a lease request: the outcome and the lease as it now is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseAnswer {
    /// Whether the request was granted.
    pub granted: bool,
    /// The current epoch.
    pub epoch: u64,
    /// The current holder.
    pub holder: Option<DeviceId>,
    /// Seconds since the lease was last touched.
    pub idle_secs: u64,
}

impl Encode for LeaseOp {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            LeaseOp::Take => 1,
            LeaseOp::Release => 2,
        });
    }
}

impl Decode for LeaseOp {
    const WHAT: &'static str = "lease operation";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("lease operation")? {
            1 => Ok(LeaseOp::Take),
            2 => Ok(LeaseOp::Release),
            value => Err(DecodeError::UnknownValue {
                what: "lease operation",
                value: value.into(),
            }),
        }
    }
}

impl Encode for LeaseAnswer {
    fn encode(&self, w: &mut Writer) {
        w.bool(self.granted).varint(self.epoch);
        w.option(self.holder.as_ref(), |w, d| {
            w.raw(&d.0);
        });
        w.varint(self.idle_secs);
    }
}

impl Decode for LeaseAnswer {
    const WHAT: &'static str = "lease answer";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            granted: r.bool("lease granted")?,
            epoch: r.varint("lease epoch")?,
            holder: r.option("lease holder", |r| Ok(DeviceId(r.array::<8>("lease holder")?)))?,
            idle_secs: r.varint("lease idle")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: DeviceId = DeviceId([1; 8]);
    const B: DeviceId = DeviceId([2; 8]);

    fn take(cur: Option<Lease>, who: DeviceId, expect: u64, now: u64) -> (Lease, bool) {
        Lease::decide(cur, who, expect, LeaseOp::Take, now)
    }

    #[test]
    fn one_holder_at_a_time() {
        let (l, ok) = take(None, A, 0, 10);
        assert!(ok);
        // Both saw epoch 0: only the first compare-and-swap wins.
        let (l2, ok) = take(Some(l), B, 0, 11);
        assert!(!ok);
        assert_eq!(l2, l);
        // B now knows epoch 1, but A holds it and is not silent.
        let (_, ok) = take(Some(l), B, 1, 12);
        assert!(!ok);
        // A renews without changing the epoch.
        let (l3, ok) = take(Some(l), A, 1, 300);
        assert!(ok);
        assert_eq!((l3.epoch, l3.touched), (1, 300));
    }

    #[test]
    fn a_lease_the_server_lost_continues_from_the_askers_epoch() {
        let (l, ok) = take(None, B, 41, 10);
        assert!(ok);
        assert_eq!((l.epoch, l.holder), (42, Some(B)));
        let (l, ok) = Lease::decide(None, B, 41, LeaseOp::Release, 10);
        assert!(!ok, "nothing to release");
        assert_eq!(l.epoch, 41);
    }

    #[test]
    fn release_hands_over_at_once() {
        let (l, _) = take(None, A, 0, 10);
        let (l, ok) = Lease::decide(Some(l), B, 1, LeaseOp::Release, 11);
        assert!(!ok, "only the holder releases");
        let (l, ok) = Lease::decide(Some(l), A, 1, LeaseOp::Release, 12);
        assert!(ok);
        assert_eq!(l.holder, None);
        let (l, ok) = take(Some(l), B, 1, 13);
        assert!(ok);
        assert_eq!((l.epoch, l.holder), (2, Some(B)));
        // A's stale release of epoch 1 changes nothing.
        let (l2, ok) = Lease::decide(Some(l), A, 1, LeaseOp::Release, 14);
        assert!(!ok);
        assert_eq!(l2, l);
        // B releases; A, still thinking of epoch 1, must not get it back as if nothing had
        // happened: B advanced the ratchet in epoch 2, and A must read that state first.
        let (l, _) = Lease::decide(Some(l), B, 2, LeaseOp::Release, 15);
        let (_, ok) = take(Some(l), A, 1, 16);
        assert!(!ok, "a device that missed an epoch is refused");
        let (l, ok) = take(Some(l), A, 2, 17);
        assert!(ok);
        assert_eq!(l.epoch, 3);
    }

    #[test]
    fn a_silent_holder_is_broken_only_after_the_break_time() {
        let (l, _) = take(None, A, 0, 1000);
        let (_, ok) = take(Some(l), B, 1, 1000 + LEASE_BREAK_SECS - 1);
        assert!(!ok);
        let (l, ok) = take(Some(l), B, 1, 1000 + LEASE_BREAK_SECS);
        assert!(ok);
        assert_eq!((l.epoch, l.holder), (2, Some(B)));
        // The broken holder's renewal names epoch 1: refused, so it learns it lost the lease.
        let (_, ok) = take(Some(l), A, 1, 1000 + LEASE_BREAK_SECS + 1);
        assert!(!ok);
    }

    #[test]
    fn answer_round_trips_with_a_vector() {
        let (l, ok) = take(None, A, 0, 10);
        let answer = l.answer(ok, 15);
        let bytes = answer.to_bytes();
        let expected = concat!(
            "01",               // granted
            "01",               // epoch
            "01",               // a holder follows
            "0101010101010101", // holder
            "05",               // idle seconds
        );
        assert_eq!(crate::codec::to_hex(&bytes), expected);
        assert_eq!(LeaseAnswer::from_bytes(&bytes).unwrap(), answer);
        assert!(LeaseOp::from_bytes(&[3]).is_err());
    }
}
