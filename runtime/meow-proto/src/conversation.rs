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
//!
//! Version 2 (the Double Ratchet) is negotiated inside a version-1 conversation, see
//! [`crate::upgrade`] and the states of [`VersionStatus`]; rotation keeps working in both (in
//! version 2 the conversation key on an offer is carried but unused: the ratchet replaces it).

mod version;

use std::collections::{BTreeSet, HashSet};

use version::Version;
pub use version::VersionStatus;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::CryptoRng;
use crate::envelope::{self, ContentType, EnvelopeError, Message, MessageId, RotationOffer};
use crate::keys::{ContactKey, ContactPublic, ConversationKey, ConversationPublic, LookupKey, LookupPublic, MailboxId};
use crate::upgrade::{self, OfferSecrets, UpgradeError, UpgradeMessage};

/// How long an unanswered upgrade offer waits before it is sent again.
pub const REOFFER_MS: u64 = 24 * 3600 * 1000;

/// Why an incoming envelope was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A version-1 envelope from a contact that already sends version 2: refused, so that whoever
    /// holds the contact's old keys cannot take the conversation back to version 1.
    #[error("a version 1 message from a contact that moved to version 2: refused (downgrade)")]
    Downgrade,
    /// A version-2 envelope in a conversation that has no ratchet (yet).
    #[error("a version 2 message before the upgrade to version 2 was agreed")]
    NotUpgraded,
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
    /// The conversation's version moved (an upgrade step was taken).
    pub version_changed: Option<VersionStatus>,
    /// An upgrade step from the peer that could not be taken (logged; the message itself stands).
    pub upgrade_refused: Option<UpgradeError>,
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
    version: Version,
    /// An upgrade step to send in the next control message.
    upgrade_due: Option<UpgradeMessage>,
    /// A first version-2 message is owed (it tells the peer to switch).
    v2_due: bool,
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
            version: Version::V1,
            upgrade_due: None,
            v2_due: false,
        }
    }

    /// The conversation's protocol version.
    pub fn version_status(&self) -> VersionStatus {
        self.version.status()
    }

    /// Whether a control message is owed: a rotation acknowledgement or an upgrade step.
    pub fn control_due(&self) -> bool {
        self.ack_due.is_some() || self.upgrade_due.is_some() || self.v2_due
    }

    /// Whether an upgrade offer should go out now: never offered, or offered without an answer
    /// for [`REOFFER_MS`].
    pub fn wants_offer(&self, now_ms: u64) -> bool {
        match &self.version {
            Version::V1 => true,
            Version::Offered { at_ms, .. } => now_ms.saturating_sub(*at_ms) >= REOFFER_MS && self.upgrade_due.is_none(),
            _ => false,
        }
    }

    /// Offers version 2 (again, with the same keys, if an offer is waiting); the offer goes in the
    /// next control message. `post_quantum` adds an X-Wing key (1.2 KB); false for links where
    /// that does not fit. Returns whether an offer is now due.
    pub fn offer_upgrade(&mut self, post_quantum: bool, now_ms: u64, rng: &mut impl CryptoRng) -> bool {
        if !self.wants_offer(now_ms) {
            return false;
        }
        let secrets = match &self.version {
            Version::Offered { secrets, .. } => secrets.clone(),
            _ => OfferSecrets::generate(post_quantum, rng),
        };
        // Only an X-Wing seed that is not a key could fail here, and every seed of 32 bytes is
        // one: nothing to report, the conversation simply stays on version 1.
        let Ok(offer) = secrets.offer() else {
            return false;
        };
        self.upgrade_due = Some(offer);
        self.version = Version::Offered { secrets, at_ms: now_ms };
        true
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
        self.seal_as(content_type, content, (false, None), now_ms, rng)
    }

    /// [`Conversation::seal`], saying whether a program (not a person) sent the message and
    /// which message it answers: `(automatic, reply_to)`.
    pub fn seal_as(
        &mut self,
        content_type: ContentType,
        content: Vec<u8>,
        (automatic, reply_to): (bool, Option<MessageId>),
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Outgoing, ConversationError> {
        // A control message carries whatever the conversation owes: an upgrade step rides as its
        // content (a version-1 node ignores control content).
        let carries_step = content_type == ContentType::CONTROL && content.is_empty() && self.upgrade_due.is_some();
        let content = match (&self.upgrade_due, carries_step) {
            (Some(step), true) => step.to_bytes(),
            _ => content,
        };
        let message = Message {
            automatic,
            id: MessageId::random(rng),
            sent_at_ms: now_ms,
            content_type,
            content,
            rotation: self.pending.as_ref().map(KeySet::offer),
            rotation_ack: self.ack_due,
            reply_to,
        };
        let envelope = match &mut self.version {
            Version::V2 { ratchet, .. } => {
                let sender = self.contact_key.public();
                let sealed = envelope::seal_v2(&message, ratchet, &sender, &self.peer, rng)?;
                self.v2_due = false;
                sealed
            }
            _ => envelope::seal(&message, &self.contact_key, &self.peer_keys.conversation, rng)?,
        };
        self.ack_due = None;
        if carries_step {
            self.upgrade_due = None;
        }
        Ok(Outgoing {
            mailbox: self.peer_keys.mailbox(),
            envelope,
            id: message.id,
        })
    }

    /// Seals a message in the compact form (version 3, `crate::compact`) for a radio link. Only
    /// at version 2, and not while the conversation owes an upgrade step (it would not fit):
    /// [`ConversationError::NotUpgraded`] says to send it the usual way.
    pub fn seal_compact_as(
        &mut self,
        content_type: ContentType,
        content: Vec<u8>,
        automatic: bool,
        now_ms: u64,
    ) -> Result<Outgoing, ConversationError> {
        let Version::V2 { ratchet, .. } = &mut self.version else {
            return Err(ConversationError::NotUpgraded);
        };
        if self.upgrade_due.is_some() {
            return Err(ConversationError::NotUpgraded);
        }
        let message = Message {
            automatic,
            id: MessageId([0; 16]),
            sent_at_ms: now_ms,
            content_type,
            content,
            rotation: self.pending.as_ref().map(KeySet::offer),
            rotation_ack: self.ack_due,
            reply_to: None,
        };
        let envelope = crate::compact::seal(&message, ratchet, &self.contact_key.public(), &self.peer)?;
        self.v2_due = false;
        self.ack_due = None;
        Ok(Outgoing {
            mailbox: self.peer_keys.mailbox(),
            id: crate::compact::message_id(&envelope),
            envelope,
        })
    }

    /// Opens, verifies and applies an envelope found in one of my mailboxes. Version-1 messages
    /// are not checked for duplicates: that is the caller's [`ReplayWindow`] or store; the
    /// ratchet refuses repeated version-2 messages itself. `rng` makes new ratchet keys.
    pub fn open(
        &mut self,
        mailbox: &MailboxId,
        envelope: &[u8],
        now_ms: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Incoming, ConversationError> {
        let keys = self.keys_for(mailbox).ok_or(ConversationError::UnknownMailbox)?;
        let via_serial = keys.serial;
        let ratcheted = matches!(
            envelope.first(),
            Some(&envelope::ENVELOPE_V2 | &crate::compact::ENVELOPE_COMPACT)
        );
        let (message, version_changed, upgrade_refused) = if ratcheted {
            let message = self.open_v2(envelope, rng)?;
            let changed = self.peer_moved_to_v2(message.sent_at_ms);
            (message, changed, None)
        } else {
            let message = envelope::open(envelope, &keys.conversation)?.verify(&self.peer)?;
            // Version 1 written after the peer's first version-2 message is a downgrade; written
            // before it (late through a retiring mailbox or another server), it is still good.
            if let Version::V2 {
                peer_v2_since_ms: Some(since),
                ..
            } = self.version
                && message.sent_at_ms > since
            {
                return Err(ConversationError::Downgrade);
            }
            let (changed, refused) = self.take_upgrade_step(&message, rng);
            (message, changed, refused)
        };

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
            version_changed,
            upgrade_refused,
        })
    }

    fn open_v2(&mut self, sealed: &[u8], rng: &mut impl CryptoRng) -> Result<Message, ConversationError> {
        let me = self.contact_key.public();
        let ratchet = match &mut self.version {
            Version::Accepted { ratchet, .. } | Version::V2 { ratchet, .. } => ratchet,
            _ => return Err(ConversationError::NotUpgraded),
        };
        if sealed.first() == Some(&crate::compact::ENVELOPE_COMPACT) {
            return Ok(crate::compact::open(sealed, ratchet, &self.peer, &me, rng)?);
        }
        Ok(envelope::open_v2(sealed, ratchet, &self.peer, &me, rng)?)
    }

    /// After a version-2 message from the peer, written at `sent_at_ms` by its clock: I send
    /// version 2 too, and refuse version 1 written after it.
    fn peer_moved_to_v2(&mut self, sent_at_ms: u64) -> Option<VersionStatus> {
        let post_quantum = match &self.version {
            Version::Accepted { accept, .. } => accept_is_post_quantum(accept),
            Version::V2 {
                peer_v2_since_ms: None,
                post_quantum,
                ..
            } => *post_quantum,
            _ => return None,
        };
        let ratchet = match core::mem::replace(&mut self.version, Version::V1) {
            Version::Accepted { ratchet, .. } | Version::V2 { ratchet, .. } => ratchet,
            other => {
                self.version = other;
                return None;
            }
        };
        self.version = Version::V2 {
            ratchet,
            peer_v2_since_ms: Some(sent_at_ms),
            post_quantum,
        };
        self.upgrade_due = None;
        Some(self.version.status())
    }

    /// Applies an upgrade step carried by a version-1 control message.
    fn take_upgrade_step(
        &mut self,
        message: &Message,
        rng: &mut impl CryptoRng,
    ) -> (Option<VersionStatus>, Option<UpgradeError>) {
        if message.content_type != ContentType::CONTROL || message.content.is_empty() {
            return (None, None);
        }
        let Ok(step) = UpgradeMessage::from_bytes(&message.content) else {
            return (None, None);
        };
        let result = match &step {
            UpgradeMessage::Offer { ratchet, .. } => self.take_offer(&step, *ratchet, rng),
            UpgradeMessage::Accept { .. } => self.take_accept(&step, rng),
        };
        match result {
            Ok(true) => (Some(self.version.status()), None),
            Ok(false) => (None, None),
            Err(e) => (None, Some(e)),
        }
    }

    fn take_offer(
        &mut self,
        offer: &UpgradeMessage,
        offered_key: [u8; 32],
        rng: &mut impl CryptoRng,
    ) -> Result<bool, UpgradeError> {
        let me = self.contact_key.public();
        match &self.version {
            // Crossed offers: the one from the smaller contact key stands.
            Version::Offered { .. } if me.as_bytes() < self.peer.as_bytes() => return Ok(false),
            Version::Accepted { accept, .. } if accepted_key(accept) == Some(offered_key) => {
                // The peer repeats the offer: it missed my accept.
                self.upgrade_due = Some(accept.clone());
                return Ok(false);
            }
            Version::V2 { .. } => return Ok(false),
            _ => {}
        }
        let (ratchet, accept) = upgrade::accept(offer, &self.peer, &me, rng)?;
        self.upgrade_due = Some(accept.clone());
        self.version = Version::Accepted { ratchet, accept };
        Ok(true)
    }

    fn take_accept(&mut self, accept: &UpgradeMessage, rng: &mut impl CryptoRng) -> Result<bool, UpgradeError> {
        let Version::Offered { secrets, .. } = &self.version else {
            return Ok(false);
        };
        let post_quantum = secrets.pq.is_some();
        let ratchet = upgrade::complete(secrets.clone(), accept, &self.contact_key.public(), &self.peer, rng)?;
        self.version = Version::V2 {
            ratchet,
            peer_v2_since_ms: None,
            post_quantum,
        };
        self.upgrade_due = None;
        self.v2_due = true;
        Ok(true)
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

fn accepted_key(accept: &UpgradeMessage) -> Option<[u8; 32]> {
    match accept {
        UpgradeMessage::Accept { offer, .. } => Some(*offer),
        _ => None,
    }
}

fn accept_is_post_quantum(accept: &UpgradeMessage) -> bool {
    matches!(accept, UpgradeMessage::Accept { pq: Some(_), .. })
}

/// Stored form version: 1 had no version state (it reads as [`VersionStatus::V1`]).
const STATE_VERSION: u8 = 2;

impl Encode for Conversation {
    fn encode(&self, w: &mut Writer) {
        w.u8(STATE_VERSION);
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
        self.version.encode(w);
        w.option(self.upgrade_due.as_ref(), |w, step| {
            w.bytes(&step.to_bytes());
        });
        w.bool(self.v2_due);
    }
}

impl Decode for Conversation {
    const WHAT: &'static str = "conversation";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("conversation version")?;
        if version != 1 && version != STATE_VERSION {
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
        let (version_state, upgrade_due, v2_due) = if version == 1 {
            (Version::V1, None, false)
        } else {
            (
                Version::decode(r)?,
                r.option("upgrade step due", |r| {
                    UpgradeMessage::from_bytes(r.bytes(4096, "upgrade step due")?)
                })?,
                r.bool("v2 message due")?,
            )
        };
        Ok(Self {
            contact_key,
            peer,
            current,
            pending,
            retiring,
            peer_keys,
            ack_due,
            version: version_state,
            upgrade_due,
            v2_due,
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
        crate::testing::conversation_pair(rng)
    }

    fn deliver(to: &mut Conversation, out: &Outgoing) -> Incoming {
        to.open(
            &out.mailbox,
            &out.envelope,
            1000,
            &mut TestRng::new(out.envelope[5].into()),
        )
        .unwrap()
    }

    fn control(from: &mut Conversation, rng: &mut TestRng) -> Outgoing {
        from.seal(ContentType::CONTROL, Vec::new(), 10, rng).unwrap()
    }

    /// Runs the upgrade between two version-1 conversations: `a` offers.
    fn upgrade(a: &mut Conversation, b: &mut Conversation, post_quantum: bool, rng: &mut TestRng) {
        assert!(a.offer_upgrade(post_quantum, 10, rng));
        assert!(a.control_due());
        let offer = control(a, rng);
        assert_eq!(offer.envelope[0], 1, "offers travel in version 1");
        let got = deliver(b, &offer);
        assert_eq!(got.version_changed, Some(VersionStatus::Accepted));
        let accept = control(b, rng);
        assert_eq!(accept.envelope[0], 1, "so do accepts");
        assert_eq!(
            deliver(a, &accept).version_changed,
            Some(VersionStatus::V2 { post_quantum })
        );
        // B still sends version 1 until A's first version-2 message reaches it.
        let b_v1 = b.seal(ContentType::TEXT, b"still v1".to_vec(), 11, rng).unwrap();
        assert_eq!(b_v1.envelope[0], 1);
        assert!(a.control_due(), "A owes B a first version-2 message");
        let first = control(a, rng);
        assert_eq!(first.envelope[0], 2);
        assert_eq!(
            deliver(a, &b_v1).message.content,
            b"still v1",
            "in flight: still accepted"
        );
        assert_eq!(
            deliver(b, &first).version_changed,
            Some(VersionStatus::V2 { post_quantum })
        );
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
        assert_eq!(
            a.open(&old_a_mailbox, &b2.envelope, 5, &mut rng)
                .unwrap()
                .message
                .content,
            b"b2"
        );
        assert!(a.drop_retired(&old_a_mailbox));
        assert_eq!(
            a.open(&old_a_mailbox, &b2.envelope, 5, &mut rng).unwrap_err(),
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
    fn an_upgrade_moves_both_sides_to_version_2_and_refuses_version_1_after() {
        for post_quantum in [true, false] {
            let mut rng = TestRng::new(20 + u64::from(post_quantum));
            let (mut a, mut b) = pair(&mut rng);
            upgrade(&mut a, &mut b, post_quantum, &mut rng);
            for a_sends in [true, false] {
                let (from, to) = if a_sends { (&mut a, &mut b) } else { (&mut b, &mut a) };
                let m = from.seal(ContentType::TEXT, b"v2".to_vec(), 12, &mut rng).unwrap();
                assert_eq!(m.envelope[0], 2);
                assert_eq!(deliver(to, &m).message.content, b"v2");
                assert_eq!(
                    to.open(&m.mailbox, &m.envelope, 13, &mut rng).unwrap_err(),
                    ConversationError::Envelope(EnvelopeError::Ratchet(crate::ratchet::RatchetError::Replay))
                );
            }
            // Whoever kept a copy of B's version-1 keys cannot talk to A in version 1 any more;
            // a version-1 message B wrote before its first version-2 one still opens.
            let mut old_b = b.clone();
            old_b.version = Version::V1;
            let late = old_b.seal(ContentType::TEXT, b"late".to_vec(), 11, &mut rng).unwrap();
            let forged = old_b
                .seal(ContentType::TEXT, b"downgrade".to_vec(), 14, &mut rng)
                .unwrap();
            assert_eq!(
                a.open(&forged.mailbox, &forged.envelope, 14, &mut rng).unwrap_err(),
                ConversationError::Downgrade
            );
            assert_eq!(deliver(&mut a, &late).message.content, b"late");
            // The stored form keeps the ratchet.
            let mut b2 = Conversation::from_bytes(&b.to_bytes()).unwrap();
            assert_eq!(b2.to_bytes(), b.to_bytes());
            let m = b2
                .seal(ContentType::TEXT, b"after restart".to_vec(), 15, &mut rng)
                .unwrap();
            assert_eq!(deliver(&mut a, &m).message.content, b"after restart");
        }
    }

    #[test]
    fn a_version_1_peer_ignores_the_offer_and_the_conversation_goes_on() {
        let mut rng = TestRng::new(22);
        let (mut a, mut b) = pair(&mut rng);
        a.offer_upgrade(true, 10, &mut rng);
        let offer = control(&mut a, &mut rng);
        // An old node opens the control message and drops its content: nothing is answered.
        let got = deliver(&mut b, &offer);
        b.version = Version::V1;
        b.upgrade_due = None;
        assert_eq!(got.message.content_type, ContentType::CONTROL);
        assert_eq!(
            a.version_status(),
            VersionStatus::Offered {
                since_ms: 10,
                post_quantum: true
            }
        );
        assert!(!a.wants_offer(10 + REOFFER_MS - 1), "not offered again at once");
        assert!(a.wants_offer(10 + REOFFER_MS));
        let m = b.seal(ContentType::TEXT, b"v1 still".to_vec(), 20, &mut rng).unwrap();
        assert_eq!(deliver(&mut a, &m).message.content, b"v1 still");
        let m = a.seal(ContentType::TEXT, b"me too".to_vec(), 21, &mut rng).unwrap();
        assert_eq!(m.envelope[0], 1, "no version 2 without an accept");
        assert_eq!(deliver(&mut b, &m).message.content, b"me too");
    }

    #[test]
    fn crossed_offers_end_in_one_upgrade() {
        let mut rng = TestRng::new(23);
        let (mut a, mut b) = pair(&mut rng);
        a.offer_upgrade(true, 10, &mut rng);
        b.offer_upgrade(true, 10, &mut rng);
        let (from_a, from_b) = (control(&mut a, &mut rng), control(&mut b, &mut rng));
        deliver(&mut a, &from_b);
        deliver(&mut b, &from_a);
        // Exactly one side accepted; its accept completes the other's offer.
        let (acceptor, offerer) = if a.version_status() == VersionStatus::Accepted {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        assert!(matches!(offerer.version_status(), VersionStatus::Offered { .. }));
        let accept = control(acceptor, &mut rng);
        deliver(offerer, &accept);
        let first = control(offerer, &mut rng);
        deliver(acceptor, &first);
        assert_eq!(a.version_status(), VersionStatus::V2 { post_quantum: true });
        assert_eq!(b.version_status(), VersionStatus::V2 { post_quantum: true });
        let m = a
            .seal(ContentType::TEXT, b"one ratchet".to_vec(), 30, &mut rng)
            .unwrap();
        assert_eq!(deliver(&mut b, &m).message.content, b"one ratchet");
    }

    #[test]
    fn rotation_still_needs_the_acknowledgement_in_version_2() {
        let mut rng = TestRng::new(24);
        let (mut a, mut b) = pair(&mut rng);
        upgrade(&mut a, &mut b, false, &mut rng);
        let old = a.current().mailbox();
        a.rotate(&mut rng).unwrap();
        let offer = a.seal(ContentType::TEXT, b"rotating".to_vec(), 40, &mut rng).unwrap();
        assert_eq!(deliver(&mut b, &offer).peer_rotated, Some(1));
        assert_eq!(a.current().serial, 0, "not before the acknowledgement");
        let ack = control(&mut b, &mut rng);
        assert_ne!(ack.mailbox, old, "B deposits in A's new mailbox");
        assert_eq!(deliver(&mut a, &ack).rotation_confirmed, Some(1));
        assert_eq!(a.current().serial, 1);
    }

    #[test]
    fn a_repeated_offer_gets_the_same_accept_again() {
        let mut rng = TestRng::new(25);
        let (mut a, mut b) = pair(&mut rng);
        a.offer_upgrade(false, 10, &mut rng);
        let offer = control(&mut a, &mut rng);
        deliver(&mut b, &offer);
        let accept = control(&mut b, &mut rng);
        // The accept is lost; a day later A offers again with the same keys.
        assert!(a.offer_upgrade(false, 10 + REOFFER_MS, &mut rng));
        let again = control(&mut a, &mut rng);
        deliver(&mut b, &again);
        let accept2 = control(&mut b, &mut rng);
        assert_eq!(
            deliver(&mut a, &accept2).version_changed,
            Some(VersionStatus::V2 { post_quantum: false })
        );
        assert_eq!(
            deliver(&mut a, &accept).version_changed,
            None,
            "the first copy changes nothing"
        );
    }

    #[test]
    fn version_1_state_reads_as_version_1() {
        let mut rng = TestRng::new(26);
        let (a, _) = pair(&mut rng);
        let mut bytes = a.to_bytes();
        // Version 1 of the stored form ended after the acknowledgement field.
        bytes[0] = 1;
        bytes.truncate(bytes.len() - 3);
        let old = Conversation::from_bytes(&bytes).unwrap();
        assert_eq!(old.version_status(), VersionStatus::V1);
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
