//! One conversation with one contact: my keys for it, theirs, and key rotation (spec §2.3, §2.4).
//!
//! Rotation, as implemented here:
//! 1. [`Conversation::rotate`] makes new keys and keeps them *pending*; every message sealed from
//!    then on carries a [`RotationOffer`]. Pending keys are polled and used to decrypt alongside the
//!    current ones.
//! 2. The peer, on reading the offer, switches to the new keys at once and acknowledges the serial
//!    in its next message (the node sends a [`ContentType::CONTROL`] message when it has nothing to
//!    say).
//! 3. On the acknowledgement — or on the first message that arrives through the new keys, which
//!    proves the peer has them — the pending keys become current and the old ones *retire*: they
//!    are still polled until their mailbox is drained, then forgotten.
//!
//! Messages in flight in either direction are therefore never lost: whatever the peer sealed to
//! my old keys can still be opened until I drop them, and I never drop them before the peer said
//! it moved on.

use std::collections::{BTreeSet, HashSet};

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::CryptoRng;
use crate::envelope::{self, ContentType, EnvelopeError, Message, MessageId, RotationOffer};
use crate::keys::{ContactKey, ContactPublic, ConversationKey, ConversationPublic, LookupKey, LookupPublic, MailboxId};

/// Why an incoming envelope was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// The mailbox is not one of mine for this conversation.
    #[error("mailbox does not belong to this conversation")]
    UnknownMailbox,
    /// Opening or verifying failed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A rotation is already waiting for the peer's acknowledgement.
    #[error("a key rotation (serial {0}) is already waiting for the contact's acknowledgement")]
    RotationPending(u32),
}

/// One generation of my keys for a conversation.
#[derive(Debug, Clone)]
pub struct KeySet {
    /// Generation number, 0 for the keys on the card.
    pub serial: u32,
    /// Where the peer seals to.
    pub conversation: ConversationKey,
    /// My mailbox.
    pub lookup: LookupKey,
}

impl KeySet {
    /// Fresh keys for generation `serial`.
    pub fn generate(serial: u32, rng: &mut impl CryptoRng) -> Self {
        Self {
            serial,
            conversation: ConversationKey::generate(rng),
            lookup: LookupKey::generate(rng),
        }
    }

    /// The mailbox these keys name.
    pub fn mailbox(&self) -> MailboxId {
        MailboxId::of(&self.lookup.public())
    }

    fn offer(&self) -> RotationOffer {
        RotationOffer {
            serial: self.serial,
            conversation: self.conversation.public(),
            lookup: self.lookup.public(),
        }
    }

    fn encode(&self, w: &mut Writer) {
        w.varint(self.serial.into());
        w.raw(self.conversation.secret_bytes().as_slice());
        w.raw(self.lookup.seed().as_slice());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let serial = r.varint_max(u32::MAX.into(), "key serial")? as u32;
        let conversation = ConversationKey::from_secret_bytes(r.array("conversation secret")?);
        let lookup = LookupKey::from_seed(&r.array("lookup secret")?);
        Ok(Self {
            serial,
            conversation,
            lookup,
        })
    }
}

/// The peer's current keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerKeys {
    /// Their generation number.
    pub serial: u32,
    /// Where I seal to.
    pub conversation: ConversationPublic,
    /// Their mailbox.
    pub lookup: LookupPublic,
}

impl PeerKeys {
    /// The mailbox I deposit into.
    pub fn mailbox(&self) -> MailboxId {
        MailboxId::of(&self.lookup)
    }
}

/// An envelope ready to deposit.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The peer's mailbox.
    pub mailbox: MailboxId,
    /// The sealed envelope.
    pub envelope: Vec<u8>,
    /// The message id (for the outbox and dedupe).
    pub id: MessageId,
}

/// An accepted incoming message and what it changed.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The verified message.
    pub message: Message,
    /// My pending rotation was confirmed by this message (old keys now retire).
    pub rotation_confirmed: Option<u32>,
    /// The peer rotated its keys; an acknowledgement is due.
    pub peer_rotated: Option<u32>,
}

/// A retired key generation still polled until drained.
#[derive(Debug, Clone)]
pub struct Retiring {
    /// The old keys.
    pub keys: KeySet,
    /// When they retired, Unix milliseconds.
    pub since_ms: u64,
}

/// The state of one conversation. Holds secrets: persist only encrypted.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// My identity for this contact (never rotates).
    pub contact_key: ContactKey,
    /// Their identity for me.
    pub peer: ContactPublic,
    current: KeySet,
    pending: Option<KeySet>,
    retiring: Vec<Retiring>,
    peer_keys: PeerKeys,
    ack_due: Option<u32>,
}

impl Conversation {
    /// A conversation from the two cards' keys.
    pub fn new(contact_key: ContactKey, current: KeySet, peer: ContactPublic, peer_keys: PeerKeys) -> Self {
        Self {
            contact_key,
            peer,
            current,
            pending: None,
            retiring: Vec::new(),
            peer_keys,
            ack_due: None,
        }
    }

    /// My current keys.
    pub fn current(&self) -> &KeySet {
        &self.current
    }

    /// My keys waiting for the peer's acknowledgement.
    pub fn pending(&self) -> Option<&KeySet> {
        self.pending.as_ref()
    }

    /// My retired keys still polled.
    pub fn retiring(&self) -> &[Retiring] {
        &self.retiring
    }

    /// The peer's current keys.
    pub fn peer_keys(&self) -> &PeerKeys {
        &self.peer_keys
    }

    /// Whether an acknowledgement of the peer's rotation still has to be sent.
    pub fn ack_due(&self) -> Option<u32> {
        self.ack_due
    }

    /// Every lookup key whose mailbox must be polled: current, pending and retiring.
    pub fn lookup_keys(&self) -> impl Iterator<Item = &LookupKey> {
        core::iter::once(&self.current.lookup)
            .chain(self.pending.iter().map(|k| &k.lookup))
            .chain(self.retiring.iter().map(|r| &r.keys.lookup))
    }

    /// Whether `mailbox` is one of mine in this conversation.
    pub fn owns(&self, mailbox: &MailboxId) -> bool {
        self.keys_for(mailbox).is_some()
    }

    fn keys_for(&self, mailbox: &MailboxId) -> Option<&KeySet> {
        core::iter::once(&self.current)
            .chain(self.pending.iter())
            .chain(self.retiring.iter().map(|r| &r.keys))
            .find(|k| &k.mailbox() == mailbox)
    }

    /// Starts a rotation of my conversation and lookup keys; returns its serial.
    pub fn rotate(&mut self, rng: &mut impl CryptoRng) -> Result<u32, ConversationError> {
        if let Some(p) = &self.pending {
            return Err(ConversationError::RotationPending(p.serial));
        }
        let serial = self.current.serial + 1;
        self.pending = Some(KeySet::generate(serial, rng));
        Ok(serial)
    }

    /// Signs and seals a message to the peer's current keys, with any rotation offer or
    /// acknowledgement that is due.
    pub fn seal(
        &mut self,
        content_type: ContentType,
        content: Vec<u8>,
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Outgoing, ConversationError> {
        let message = Message {
            id: MessageId::random(rng),
            sent_at_ms: now_ms,
            content_type,
            content,
            rotation: self.pending.as_ref().map(KeySet::offer),
            rotation_ack: self.ack_due,
        };
        let envelope = envelope::seal(&message, &self.contact_key, &self.peer_keys.conversation, rng)?;
        self.ack_due = None;
        Ok(Outgoing {
            mailbox: self.peer_keys.mailbox(),
            envelope,
            id: message.id,
        })
    }

    /// Opens, verifies and applies an envelope found in one of my mailboxes. Does not check for
    /// duplicates: that is the caller's [`crate::replay::ReplayWindow`] or store.
    pub fn open(&mut self, mailbox: &MailboxId, envelope: &[u8], now_ms: u64) -> Result<Incoming, ConversationError> {
        let keys = self.keys_for(mailbox).ok_or(ConversationError::UnknownMailbox)?;
        let via_serial = keys.serial;
        let message = envelope::open(envelope, &keys.conversation)?.verify(&self.peer)?;

        let pending_serial = self.pending.as_ref().map(|p| p.serial);
        let confirmed = pending_serial.filter(|&s| message.rotation_ack == Some(s) || via_serial == s);
        if confirmed.is_some() {
            self.promote(now_ms);
        }
        let peer_rotated = message.rotation.as_ref().and_then(|offer| self.apply_offer(offer));
        Ok(Incoming {
            message,
            rotation_confirmed: confirmed,
            peer_rotated,
        })
    }

    fn promote(&mut self, now_ms: u64) {
        if let Some(new) = self.pending.take() {
            let old = core::mem::replace(&mut self.current, new);
            self.retiring.push(Retiring {
                keys: old,
                since_ms: now_ms,
            });
        }
    }

    fn apply_offer(&mut self, offer: &RotationOffer) -> Option<u32> {
        let same = offer.serial == self.peer_keys.serial
            && offer.conversation == self.peer_keys.conversation
            && offer.lookup == self.peer_keys.lookup;
        if offer.serial > self.peer_keys.serial {
            self.peer_keys = PeerKeys {
                serial: offer.serial,
                conversation: offer.conversation,
                lookup: offer.lookup,
            };
        } else if !same {
            // An old or conflicting offer: ignore it, the peer will repeat its latest one.
            return None;
        }
        // New or repeated: (re-)acknowledge, the peer may have missed our acknowledgement.
        self.ack_due = Some(offer.serial);
        Some(offer.serial)
    }

    /// Forgets a retired key generation (its mailbox was drained after the rotation was
    /// confirmed). Returns whether something was dropped.
    pub fn drop_retired(&mut self, mailbox: &MailboxId) -> bool {
        let before = self.retiring.len();
        self.retiring.retain(|r| &r.keys.mailbox() != mailbox);
        before != self.retiring.len()
    }
}

impl Encode for Conversation {
    fn encode(&self, w: &mut Writer) {
        w.u8(1);
        w.raw(self.contact_key.seed().as_slice());
        self.peer.encode(w);
        self.current.encode(w);
        w.option(self.pending.as_ref(), |w, k| k.encode(w));
        w.list(&self.retiring, |w, r| {
            r.keys.encode(w);
            w.varint(r.since_ms);
        });
        w.varint(self.peer_keys.serial.into());
        self.peer_keys.conversation.encode(w);
        self.peer_keys.lookup.encode(w);
        w.option(self.ack_due.as_ref(), |w, s| {
            w.varint((*s).into());
        });
    }
}

impl Decode for Conversation {
    const WHAT: &'static str = "conversation";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("conversation version")?;
        if version != 1 {
            return Err(DecodeError::UnsupportedVersion {
                what: "conversation",
                version,
            });
        }
        let contact_key = ContactKey::from_seed(&r.array("contact secret")?);
        let peer = ContactPublic::decode(r)?;
        let current = KeySet::decode(r)?;
        let pending = r.option("pending keys", KeySet::decode)?;
        let retiring = r.list(64, "retiring keys", |r| {
            Ok(Retiring {
                keys: KeySet::decode(r)?,
                since_ms: r.varint("retired since")?,
            })
        })?;
        let peer_keys = PeerKeys {
            serial: r.varint_max(u32::MAX.into(), "peer serial")? as u32,
            conversation: ConversationPublic::decode(r)?,
            lookup: LookupPublic::decode(r)?,
        };
        let ack_due = r.option("ack due", |r| Ok(r.varint_max(u32::MAX.into(), "ack due")? as u32))?;
        Ok(Self {
            contact_key,
            peer,
            current,
            pending,
            retiring,
            peer_keys,
            ack_due,
        })
    }
}

/// Duplicate and replay detection for one conversation, in memory: remembers message ids for
/// `window_ms` and refuses anything older than the window (it could be a replay of a forgotten id).
/// At most `max_ids` ids are kept; past that the window's floor moves up.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    window_ms: u64,
    max_ids: usize,
    floor_ms: u64,
    by_time: BTreeSet<(u64, MessageId)>,
    ids: HashSet<MessageId>,
}

/// Why a message was refused as a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// This id was already accepted.
    #[error("duplicate message (already received)")]
    Duplicate,
    /// The message is older than the replay window.
    #[error("message too old to tell from a replay")]
    TooOld,
}

impl ReplayWindow {
    /// A window of `window_ms` keeping at most `max_ids` ids.
    pub fn new(window_ms: u64, max_ids: usize) -> Self {
        Self {
            window_ms,
            max_ids,
            floor_ms: 0,
            by_time: BTreeSet::new(),
            ids: HashSet::new(),
        }
    }

    /// Accepts `id` once; refuses it again, or if older than the window at `now_ms`.
    pub fn check(&mut self, id: MessageId, sent_at_ms: u64, now_ms: u64) -> Result<(), Replay> {
        self.floor_ms = self.floor_ms.max(now_ms.saturating_sub(self.window_ms));
        self.forget_below_floor();
        if sent_at_ms < self.floor_ms {
            return Err(Replay::TooOld);
        }
        if !self.ids.insert(id) {
            return Err(Replay::Duplicate);
        }
        self.by_time.insert((sent_at_ms, id));
        if self.by_time.len() > self.max_ids {
            if let Some(&(t, _)) = self.by_time.first() {
                self.floor_ms = t + 1;
            }
            self.forget_below_floor();
        }
        Ok(())
    }

    fn forget_below_floor(&mut self) {
        while let Some(&(t, id)) = self.by_time.first() {
            if t >= self.floor_ms {
                break;
            }
            self.by_time.pop_first();
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    pub(crate) fn pair(rng: &mut TestRng) -> (Conversation, Conversation) {
        let (a_ck, b_ck) = (ContactKey::generate(rng), ContactKey::generate(rng));
        let (a_keys, b_keys) = (KeySet::generate(0, rng), KeySet::generate(0, rng));
        let peer_of = |k: &KeySet| PeerKeys {
            serial: k.serial,
            conversation: k.conversation.public(),
            lookup: k.lookup.public(),
        };
        let a = Conversation::new(a_ck.clone(), a_keys.clone(), b_ck.public(), peer_of(&b_keys));
        let b = Conversation::new(b_ck, b_keys, a_ck.public(), peer_of(&a_keys));
        (a, b)
    }

    fn deliver(to: &mut Conversation, out: &Outgoing) -> Incoming {
        to.open(&out.mailbox, &out.envelope, 1000).unwrap()
    }

    #[test]
    fn rotation_with_messages_in_flight_both_ways_loses_nothing() {
        let mut rng = TestRng::new(11);
        let (mut a, mut b) = pair(&mut rng);
        let old_a_mailbox = a.current().mailbox();

        // B seals to A's old keys before hearing of the rotation.
        let b1 = b.seal(ContentType::TEXT, b"b1".to_vec(), 1, &mut rng).unwrap();
        a.rotate(&mut rng).unwrap();
        assert!(matches!(a.rotate(&mut rng), Err(ConversationError::RotationPending(1))));
        let a1 = a.seal(ContentType::TEXT, b"a1".to_vec(), 2, &mut rng).unwrap();
        let b2 = b.seal(ContentType::TEXT, b"b2".to_vec(), 3, &mut rng).unwrap();

        // A reads B's in-flight messages with the old keys.
        assert_eq!(deliver(&mut a, &b1).message.content, b"b1");
        assert_eq!(deliver(&mut a, &b2).message.content, b"b2");
        assert_eq!(a.current().serial, 0, "not confirmed yet");

        // B reads the offer, switches, acknowledges.
        let got = deliver(&mut b, &a1);
        assert_eq!(got.peer_rotated, Some(1));
        let b3 = b.seal(ContentType::TEXT, b"b3".to_vec(), 4, &mut rng).unwrap();
        assert_ne!(b3.mailbox, old_a_mailbox, "B uses A's new mailbox");
        let got = deliver(&mut a, &b3);
        assert_eq!(got.rotation_confirmed, Some(1));
        assert_eq!(a.current().serial, 1);
        assert_eq!(a.retiring().len(), 1);

        // A late message to the old mailbox still opens until the old keys are dropped.
        assert_eq!(a.open(&old_a_mailbox, &b2.envelope, 5).unwrap().message.content, b"b2");
        assert!(a.drop_retired(&old_a_mailbox));
        assert_eq!(
            a.open(&old_a_mailbox, &b2.envelope, 5).unwrap_err(),
            ConversationError::UnknownMailbox
        );
    }

    #[test]
    fn state_round_trips_through_its_encoding() {
        let mut rng = TestRng::new(12);
        let (mut a, mut b) = pair(&mut rng);
        a.rotate(&mut rng).unwrap();
        let out = a.seal(ContentType::TEXT, b"x".to_vec(), 1, &mut rng).unwrap();
        deliver(&mut b, &out);
        let bytes = b.to_bytes();
        let mut b2 = Conversation::from_bytes(&bytes).unwrap();
        assert_eq!(b2.to_bytes(), bytes);
        assert_eq!(b2.ack_due(), Some(1));
        let reply = b2.seal(ContentType::CONTROL, vec![], 2, &mut rng).unwrap();
        assert_eq!(deliver(&mut a, &reply).rotation_confirmed, Some(1));
    }

    #[test]
    fn replay_window_drops_duplicates_and_old_messages() {
        let mut w = ReplayWindow::new(1000, 3);
        w.check(MessageId([1; 16]), 5000, 5000).unwrap();
        assert_eq!(w.check(MessageId([1; 16]), 5000, 5001), Err(Replay::Duplicate));
        assert_eq!(w.check(MessageId([2; 16]), 3000, 5001), Err(Replay::TooOld));
        for i in 3..8 {
            w.check(MessageId([i; 16]), 5000 + u64::from(i), 5010).unwrap();
        }
        assert_eq!(
            w.check(MessageId([1; 16]), 5000, 5011),
            Err(Replay::TooOld),
            "evicted id is now too old"
        );
    }
}
