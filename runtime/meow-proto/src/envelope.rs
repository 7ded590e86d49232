//! User messages and the envelope that carries them (spec §4.1).
//!
//! A [`Message`] is signed by the sender's [`ContactKey`] for that contact, then sealed with HPKE to
//! the recipient's current [`ConversationPublic`] and padded to a size class. The envelope is what a
//! server stores in a mailbox; it sees only its size class.
//!
//! ```text
//! envelope  = version:u8 (=1) | enc:[32] | AEAD(plaintext) (ciphertext || tag:[16])
//! plaintext = body_len:varint | body | signature:[64] | zero padding to the class size
//! signature = Ed25519(ContactKey, "meow/v1/message" 0x00 | recipient ConversationPublic | body)
//! body      = flags:u8 | id:[16] | sent_at_ms:varint | content_type:varint | content:bytes
//!             | rotation offer (if flags & 1) | rotation ack (if flags & 2)
//! ```
//!
//! Opening gives an [`UnverifiedMessage`]; its content is reachable only through
//! [`UnverifiedMessage::verify`] with the contact's key, so a message not signed by the matching
//! contact can never be used by mistake (spec §1.5, §2.2).

use core::fmt;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer, varint_len};
use crate::crypto::{self, CryptoRng, Domain, ENC_LEN, SIGNATURE_LEN, TAG_LEN};
use crate::keys::{ContactKey, ContactPublic, ConversationKey, ConversationPublic, LookupPublic};
use crate::padding;
use crate::ratchet::{self, Ratchet, RatchetError};

/// Envelope format version 1: HPKE to the conversation key, signed by the contact key.
pub const ENVELOPE_VERSION: u8 = 1;
/// Envelope format version 2: a Double Ratchet message ([`seal_v2`]).
pub const ENVELOPE_V2: u8 = 2;
/// Bytes a version-2 envelope adds around its plaintext.
pub const ENVELOPE_V2_OVERHEAD: usize = 1 + ratchet::OVERHEAD;
const V2_AD_LABEL: &[u8] = b"meow/v2/envelope";
const HPKE_INFO: &[u8] = b"meow/v1/envelope";
/// Bytes an envelope adds around its plaintext.
pub const ENVELOPE_OVERHEAD: usize = 1 + ENC_LEN + TAG_LEN;

/// Why a message could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The message does not fit the largest size class.
    #[error("message too large: {len} bytes of content, at most {max}")]
    TooLarge {
        /// Content length.
        len: usize,
        /// Largest content accepted.
        max: usize,
    },
    /// The envelope's size or layout is wrong.
    #[error("malformed envelope: {0}")]
    Malformed(DecodeError),
    /// Decryption failed: not sealed to this key, or tampered with.
    #[error("envelope does not decrypt with this conversation key")]
    Decrypt,
    /// Decrypted, but not signed by the contact it claims to come from: discarded.
    #[error("message is not signed by this contact's key: discarded")]
    NotFromContact,
    /// The recipient key is unusable.
    #[error("invalid recipient conversation key")]
    BadRecipient,
    /// A version-2 envelope the conversation's ratchet refused.
    #[error("version 2 envelope refused: {0}")]
    Ratchet(#[from] RatchetError),
}

/// A message identifier: 16 random bytes chosen by the sender, used to drop duplicates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A new random id.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        Self(crypto::random_bytes(rng))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        crate::codec::to_hex(&self.0)
    }

    /// Reads 32 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        crate::codec::from_hex(s).map(Self)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What the content of a message is. Unknown values are carried through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentType(pub u16);

impl ContentType {
    /// UTF-8 text for people.
    pub const TEXT: ContentType = ContentType(0);
    /// Opaque bytes.
    pub const BINARY: ContentType = ContentType(1);
    /// A JSON document (machine to machine).
    pub const JSON: ContentType = ContentType(2);
    /// No user content: carries only a rotation offer or acknowledgement.
    pub const CONTROL: ContentType = ContentType(3);
    /// An answer card sent back through the inviter's mailbox.
    pub const CONTACT_ANSWER: ContentType = ContentType(4);
    /// A group message or group control (see the node's group module).
    pub const GROUP: ContentType = ContentType(5);
    /// Where the sender can be reached directly (see [`crate::presence`]).
    pub const PRESENCE: ContentType = ContentType(6);
    /// A chunk of a file (see [`crate::file`]).
    pub const FILE: ContentType = ContentType(7);
    /// Part of a sync payload between two devices of one user (PROTOCOL.md §25).
    pub const SYNC: ContentType = ContentType(8);

    /// A short name for logs and JSON output.
    pub fn name(&self) -> String {
        match self.0 {
            0 => "text".into(),
            1 => "binary".into(),
            2 => "json".into(),
            3 => "control".into(),
            4 => "contact-answer".into(),
            5 => "group".into(),
            6 => "presence".into(),
            7 => "file".into(),
            8 => "sync".into(),
            n => format!("type-{n}"),
        }
    }
}

/// New keys offered by the sender for the conversation (spec §2.3, §2.4): the recipient switches to
/// them at once and acknowledges; the sender keeps the old ones until the acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationOffer {
    /// Increases by one with each rotation of this conversation.
    pub serial: u32,
    /// The sender's new conversation key.
    pub conversation: ConversationPublic,
    /// The sender's new lookup key.
    pub lookup: LookupPublic,
}

const FLAG_ROTATION: u8 = 1;
const FLAG_ROTATION_ACK: u8 = 2;
pub(crate) const FLAG_AUTOMATIC: u8 = 4;
const FLAG_REPLY: u8 = 8;

/// A user message: what is signed and sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender-chosen unique id.
    pub id: MessageId,
    /// Sender's clock, Unix milliseconds.
    pub sent_at_ms: u64,
    /// What `content` is.
    pub content_type: ContentType,
    /// The content.
    pub content: Vec<u8>,
    /// New keys of the sender, if rotating.
    pub rotation: Option<RotationOffer>,
    /// The serial of a rotation of the recipient that the sender acknowledges.
    pub rotation_ack: Option<u32>,
    /// Sent by a program (a plugin or a recipe), not typed by a person: RFC 3834's
    /// `Auto-Submitted: auto-replied` in one bit. Bots do not answer such messages by default,
    /// which ends loops between two auto-answering homes.
    pub automatic: bool,
    /// The id of the message this one answers (a thread): set by replies, shown by the
    /// receiver beside the message it answers. Added within version 1 (flags bit 3).
    pub reply_to: Option<MessageId>,
}

impl Encode for Message {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.flags())
            .raw(&self.id.0)
            .varint(self.sent_at_ms)
            .varint(self.content_type.0.into());
        w.bytes(&self.content);
        self.encode_optional_fields(w);
    }
}

impl Message {
    /// The flags byte: which optional fields follow, and the automatic mark.
    pub(crate) fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.rotation.is_some() {
            flags |= FLAG_ROTATION;
        }
        if self.rotation_ack.is_some() {
            flags |= FLAG_ROTATION_ACK;
        }
        if self.automatic {
            flags |= FLAG_AUTOMATIC;
        }
        if self.reply_to.is_some() {
            flags |= FLAG_REPLY;
        }
        flags
    }

    /// The rotation offer, the acknowledgement and the id replied to, those present.
    pub(crate) fn encode_optional_fields(&self, w: &mut Writer) {
        if let Some(r) = &self.rotation {
            w.varint(r.serial.into());
            r.conversation.encode(w);
            r.lookup.encode(w);
        }
        if let Some(serial) = self.rotation_ack {
            w.varint(serial.into());
        }
        if let Some(id) = &self.reply_to {
            w.raw(&id.0);
        }
    }
}

/// Reads a flags byte, refusing unknown flags.
pub(crate) fn read_flags(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    let flags = r.u8("message flags")?;
    if flags & !(FLAG_ROTATION | FLAG_ROTATION_ACK | FLAG_AUTOMATIC | FLAG_REPLY) != 0 {
        return Err(DecodeError::UnknownValue {
            what: "message flags",
            value: flags.into(),
        });
    }
    Ok(flags)
}

/// The optional fields of a message body.
pub(crate) struct OptionalFields {
    pub rotation: Option<RotationOffer>,
    pub rotation_ack: Option<u32>,
    pub reply_to: Option<MessageId>,
}

/// Reads the rotation offer, acknowledgement and id replied to that `flags` announce.
pub(crate) fn read_optional_fields(flags: u8, r: &mut Reader<'_>) -> Result<OptionalFields, DecodeError> {
    let rotation = if flags & FLAG_ROTATION != 0 {
        Some(RotationOffer {
            serial: r.varint_max(u32::MAX.into(), "rotation serial")? as u32,
            conversation: ConversationPublic::decode(r)?,
            lookup: LookupPublic::decode(r)?,
        })
    } else {
        None
    };
    let rotation_ack = if flags & FLAG_ROTATION_ACK != 0 {
        Some(r.varint_max(u32::MAX.into(), "rotation ack")? as u32)
    } else {
        None
    };
    let reply_to = if flags & FLAG_REPLY != 0 {
        Some(MessageId(r.array("id replied to")?))
    } else {
        None
    };
    Ok(OptionalFields {
        rotation,
        rotation_ack,
        reply_to,
    })
}

impl Decode for Message {
    const WHAT: &'static str = "message";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = read_flags(r)?;
        let id = MessageId(r.array("message id")?);
        let sent_at_ms = r.varint("sent_at")?;
        let content_type = ContentType(r.varint_max(u16::MAX.into(), "content type")? as u16);
        let content = r.bytes(padding::MAX_ENVELOPE, "content")?.to_vec();
        let OptionalFields {
            rotation,
            rotation_ack,
            reply_to,
        } = read_optional_fields(flags, r)?;
        Ok(Self {
            id,
            sent_at_ms,
            content_type,
            content,
            rotation,
            rotation_ack,
            automatic: flags & FLAG_AUTOMATIC != 0,
            reply_to,
        })
    }
}

/// Bytes of plaintext around the body: its length prefix and the signature.
fn plaintext_len(body_len: usize) -> usize {
    varint_len(body_len as u64) + body_len + SIGNATURE_LEN
}

/// The largest content a message without rotation fields can carry.
pub fn max_content_len() -> usize {
    // body = 1 flag + 16 id + up to 10 time + up to 3 type + length prefix + content
    let capacity = padding::MAX_ENVELOPE - ENVELOPE_OVERHEAD - SIGNATURE_LEN - 3;
    capacity - (1 + 16 + 10 + 3 + 3)
}

/// The envelope size a message would be sealed into.
pub fn sealed_size(message: &Message) -> Option<usize> {
    let body_len = message.to_bytes().len();
    padding::class_for(ENVELOPE_OVERHEAD + plaintext_len(body_len))
}

/// Signs `message` with `sender` and seals it to `recipient`, padded to its size class.
pub fn seal(
    message: &Message,
    sender: &ContactKey,
    recipient: &ConversationPublic,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, EnvelopeError> {
    let body = message.to_bytes();
    let class = padding::class_for(ENVELOPE_OVERHEAD + plaintext_len(body.len())).ok_or(EnvelopeError::TooLarge {
        len: message.content.len(),
        max: max_content_len(),
    })?;
    let signature = sender.sign(Domain::MESSAGE, &[recipient.as_bytes(), &body]);
    let mut plain = Writer::with_capacity(class);
    plain.bytes(&body).raw(&signature);
    let mut plain = plain.into_bytes();
    plain.resize(class - ENVELOPE_OVERHEAD, 0);

    let (enc, ciphertext) = crypto::hpke_seal(recipient.as_bytes(), HPKE_INFO, &[ENVELOPE_VERSION], &plain, rng)
        .map_err(|_| EnvelopeError::BadRecipient)?;
    let mut out = Vec::with_capacity(class);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&enc);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// What a version-2 envelope authenticates besides itself: its version and who writes to whom.
fn v2_ad(sender: &ContactPublic, recipient: &ContactPublic) -> Vec<u8> {
    ratchet_ad(V2_AD_LABEL, ENVELOPE_V2, sender, recipient)
}

/// The ratchet's associated data for an envelope form: `label || version || sender || recipient`.
pub(crate) fn ratchet_ad(label: &[u8], version: u8, sender: &ContactPublic, recipient: &ContactPublic) -> Vec<u8> {
    let mut ad = Vec::with_capacity(label.len() + 1 + 64);
    ad.extend_from_slice(label);
    ad.push(version);
    ad.extend_from_slice(sender.as_bytes());
    ad.extend_from_slice(recipient.as_bytes());
    ad
}

/// The envelope size a message would be sealed into as version 2.
pub fn sealed_size_v2(message: &Message) -> Option<usize> {
    let body_len = message.to_bytes().len();
    padding::class_for(ENVELOPE_V2_OVERHEAD + varint_len(body_len as u64) + body_len)
}

/// Seals `message` with the conversation's ratchet, padded to its size class:
/// `version (=2) | ratchet message`, whose plaintext is `body:bytes | zero padding`. No signature:
/// only the holder of the ratchet, started from the two signed cards' keys, can make one.
pub fn seal_v2(
    message: &Message,
    ratchet: &mut Ratchet,
    sender: &ContactPublic,
    recipient: &ContactPublic,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, EnvelopeError> {
    let body = message.to_bytes();
    let class = sealed_size_v2(message).ok_or(EnvelopeError::TooLarge {
        len: message.content.len(),
        max: max_content_len(),
    })?;
    let mut plain = Writer::with_capacity(class);
    plain.bytes(&body);
    let mut plain = zeroize::Zeroizing::new(plain.into_bytes());
    plain.resize(class - ENVELOPE_V2_OVERHEAD, 0);
    let sealed = ratchet.seal(&v2_ad(sender, recipient), &plain, rng)?;
    let mut out = Vec::with_capacity(class);
    out.push(ENVELOPE_V2);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a version-2 envelope from `sender` to me (`recipient`). The ratchet changes only if the
/// whole message is good.
pub fn open_v2(
    envelope: &[u8],
    ratchet: &mut Ratchet,
    sender: &ContactPublic,
    recipient: &ContactPublic,
    rng: &mut impl CryptoRng,
) -> Result<Message, EnvelopeError> {
    check_layout(envelope)?;
    if envelope[0] != ENVELOPE_V2 {
        return Err(EnvelopeError::Malformed(DecodeError::UnsupportedVersion {
            what: "version 2 envelope",
            version: envelope[0],
        }));
    }
    let mut next = ratchet.clone();
    let plain = next.open(&v2_ad(sender, recipient), &envelope[1..], rng)?;
    let mut r = Reader::new(&plain);
    let body = r.bytes(plain.len(), "message body").map_err(EnvelopeError::Malformed)?;
    if r.rest().iter().any(|&b| b != 0) {
        return Err(EnvelopeError::Malformed(DecodeError::Invalid {
            what: "padding",
            reason: "not zero",
        }));
    }
    let message = Message::from_bytes(body).map_err(EnvelopeError::Malformed)?;
    *ratchet = next;
    Ok(message)
}

/// Checks an envelope's outer layout (what a server can check): version and size class.
pub fn check_layout(envelope: &[u8]) -> Result<(), EnvelopeError> {
    let Some(&version) = envelope.first() else {
        return Err(EnvelopeError::Malformed(DecodeError::Truncated { what: "envelope" }));
    };
    if version == crate::compact::ENVELOPE_COMPACT {
        return crate::compact::check_layout(envelope);
    }
    if version != ENVELOPE_VERSION && version != ENVELOPE_V2 {
        return Err(EnvelopeError::Malformed(DecodeError::UnsupportedVersion {
            what: "envelope",
            version,
        }));
    }
    if !padding::is_class_size(envelope.len()) {
        return Err(EnvelopeError::Malformed(DecodeError::Invalid {
            what: "envelope",
            reason: "size is not a padding class",
        }));
    }
    Ok(())
}

/// Decrypts an envelope with one of my conversation keys. The result is unusable until verified.
pub fn open(envelope: &[u8], recipient: &ConversationKey) -> Result<UnverifiedMessage, EnvelopeError> {
    check_layout(envelope)?;
    if envelope[0] != ENVELOPE_VERSION {
        return Err(EnvelopeError::Malformed(DecodeError::UnsupportedVersion {
            what: "version 1 envelope",
            version: envelope[0],
        }));
    }
    let enc: [u8; ENC_LEN] = envelope[1..1 + ENC_LEN]
        .try_into()
        .map_err(|_| EnvelopeError::Decrypt)?;
    let plain = crypto::hpke_open(
        recipient.dh(),
        &enc,
        HPKE_INFO,
        &[ENVELOPE_VERSION],
        &envelope[1 + ENC_LEN..],
    )
    .map_err(|_| EnvelopeError::Decrypt)?;
    let mut r = Reader::new(&plain);
    let body = r
        .bytes(plain.len(), "message body")
        .map_err(EnvelopeError::Malformed)?
        .to_vec();
    let signature: [u8; SIGNATURE_LEN] = r.array("signature").map_err(EnvelopeError::Malformed)?;
    if r.rest().iter().any(|&b| b != 0) {
        return Err(EnvelopeError::Malformed(DecodeError::Invalid {
            what: "padding",
            reason: "not zero",
        }));
    }
    Ok(UnverifiedMessage {
        recipient: recipient.public(),
        body,
        signature,
    })
}

/// A decrypted message whose signature has not been checked yet (cloned to try several
/// possible senders).
#[derive(Debug, Clone)]
pub struct UnverifiedMessage {
    recipient: ConversationPublic,
    body: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
}

impl UnverifiedMessage {
    /// For a self-introducing message (an answer card sent to an invitation's mailbox): the card
    /// bytes it claims to carry, so that the card's key can then verify the message. Nothing else
    /// of an unverified message is reachable.
    pub fn peek_introduction(&self) -> Option<Vec<u8>> {
        let m = Message::from_bytes(&self.body).ok()?;
        (m.content_type == ContentType::CONTACT_ANSWER).then_some(m.content)
    }

    /// For a device-link message (a join request, a part of a welcome): the sync part it claims
    /// to carry, which names its signer once whole; the message is verified against that key
    /// before anything in it is used.
    pub fn peek_sync_part(&self) -> Option<Vec<u8>> {
        let m = Message::from_bytes(&self.body).ok()?;
        (m.content_type == ContentType::SYNC).then_some(m.content)
    }

    /// Checks the signature against the contact's key, then decodes the message.
    pub fn verify(self, sender: &ContactPublic) -> Result<Message, EnvelopeError> {
        sender
            .verify(
                Domain::MESSAGE,
                &[self.recipient.as_bytes(), &self.body],
                &self.signature,
            )
            .map_err(|_| EnvelopeError::NotFromContact)?;
        Message::from_bytes(&self.body).map_err(EnvelopeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::LookupKey;
    use crate::testing::TestRng;

    fn msg(content: &[u8]) -> Message {
        Message {
            id: MessageId([7; 16]),
            sent_at_ms: 1_700_000_000_123,
            content_type: ContentType::TEXT,
            content: content.to_vec(),
            rotation: None,
            rotation_ack: None,
            automatic: false,
            reply_to: None,
        }
    }

    #[test]
    fn seal_open_verify() {
        let mut rng = TestRng::new(5);
        let alice = ContactKey::generate(&mut rng);
        let bob_conv = ConversationKey::generate(&mut rng);
        let m = Message {
            rotation: Some(RotationOffer {
                serial: 1,
                conversation: ConversationKey::generate(&mut rng).public(),
                lookup: LookupKey::generate(&mut rng).public(),
            }),
            rotation_ack: Some(4),
            automatic: true,
            reply_to: Some(MessageId([3; 16])),
            ..msg(b"hello bob")
        };
        let env = seal(&m, &alice, &bob_conv.public(), &mut rng).unwrap();
        assert!(padding::is_class_size(env.len()));
        let got = open(&env, &bob_conv).unwrap().verify(&alice.public()).unwrap();
        assert_eq!(got, m);
    }

    #[test]
    fn wrong_signer_is_discarded() {
        let mut rng = TestRng::new(6);
        let alice = ContactKey::generate(&mut rng);
        let mallory = ContactKey::generate(&mut rng);
        let bob_conv = ConversationKey::generate(&mut rng);
        let env = seal(&msg(b"hi"), &mallory, &bob_conv.public(), &mut rng).unwrap();
        let err = open(&env, &bob_conv).unwrap().verify(&alice.public()).unwrap_err();
        assert_eq!(err, EnvelopeError::NotFromContact);
    }

    #[test]
    fn wrong_key_or_tamper_fails_to_decrypt() {
        let mut rng = TestRng::new(7);
        let alice = ContactKey::generate(&mut rng);
        let bob_conv = ConversationKey::generate(&mut rng);
        let other = ConversationKey::generate(&mut rng);
        let mut env = seal(&msg(b"hi"), &alice, &bob_conv.public(), &mut rng).unwrap();
        assert_eq!(open(&env, &other).unwrap_err(), EnvelopeError::Decrypt);
        env[60] ^= 1;
        assert_eq!(open(&env, &bob_conv).unwrap_err(), EnvelopeError::Decrypt);
    }

    #[test]
    fn short_text_fits_the_lora_class_and_size_classes_grow() {
        let mut rng = TestRng::new(8);
        let alice = ContactKey::generate(&mut rng);
        let bob = ConversationKey::generate(&mut rng);
        let small = seal(&msg(&[b'x'; 30]), &alice, &bob.public(), &mut rng).unwrap();
        assert_eq!(small.len(), padding::LORA_CLASS);
        let big = seal(&msg(&[b'x'; 1024]), &alice, &bob.public(), &mut rng).unwrap();
        assert_eq!(big.len(), 2048);
        let max = seal(&msg(&vec![0; max_content_len()]), &alice, &bob.public(), &mut rng).unwrap();
        assert_eq!(max.len(), padding::MAX_ENVELOPE);
        let err = seal(&msg(&vec![0; max_content_len() + 200]), &alice, &bob.public(), &mut rng).unwrap_err();
        assert!(matches!(err, EnvelopeError::TooLarge { .. }));
    }
}
