//! Rendez-vous cards (spec §3.1): what two people exchange to become contacts.
//!
//! A card carries the [`ContactPublic`] its author will use with the reader, the initial
//! [`ConversationPublic`] and [`LookupPublic`] to reach the author, the author's preferred servers,
//! an optional nickname hint, its creation and expiry times, and a signature by the contact key.
//!
//! Parsing gives an [`UncheckedCard`] that cannot be used: [`UncheckedCard::check`] first verifies
//! the signature over every byte (so any change anywhere is reported as a bad signature, never as a
//! parse error), then decodes the body, then checks the validity period.
//!
//! Encodings: the binary form (a `.meowcard` file), a copy-pasteable text form
//! `meow:card:<base64url>`, and a QR code of the text form (see [`crate::qr`]).

use core::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::address::Address;
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{self, Domain, SIGNATURE_LEN};
use crate::keys::{ContactKey, ContactPublic, ConversationPublic, LookupPublic, ServerPublic};

/// Magic bytes at the start of every standalone MEOW object.
pub const MAGIC: &[u8; 4] = b"MEOW";
/// Object type byte of a card.
const CARD_TYPE: u8 = b'C';
/// Newest card format version: written only for a card that carries flags (a classical start);
/// every other card is written as version 2, which older readers understand.
pub const CARD_VERSION: u8 = 3;
/// The version of a card without flags.
const PLAIN_VERSION: u8 = 2;
/// Card flag (version 3): the author starts conversations classically.
const FLAG_CLASSICAL_START: u8 = 0x01;
/// Prefix of the text form.
pub const CARD_TEXT_PREFIX: &str = "meow:card:";
/// Largest card accepted, in bytes.
pub const MAX_CARD_LEN: usize = 4096;
/// Most servers a card may list.
pub const MAX_SERVERS: usize = 8;
/// Longest server address, in bytes.
pub use crate::address::MAX_ADDRESS_LEN;
/// Longest nickname hint, in bytes.
pub const MAX_NICKNAME_LEN: usize = 64;

const HEADER_LEN: usize = 6;
const SIGNER_END: usize = HEADER_LEN + 32;
const MIN_CARD_LEN: usize = SIGNER_END + SIGNATURE_LEN;

/// Why a card is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// The input is too short or too long to be a card.
    #[error("not a MEOW card: {len} bytes (a card is {MIN_CARD_LEN} to {MAX_CARD_LEN} bytes)")]
    BadLength {
        /// The length found.
        len: usize,
    },
    /// The text form is not `meow:card:` followed by base64url.
    #[error("not a MEOW card text (expected \"{CARD_TEXT_PREFIX}\" followed by base64url)")]
    BadText,
    /// The signature does not verify: the card was changed or was not made by its key.
    #[error("card signature does not verify: the card was altered or is forged")]
    BadSignature,
    /// Signed, but by a version of MEOW this one does not read.
    #[error("card version {0} is not supported (this program reads version {CARD_VERSION})")]
    UnsupportedVersion(u8),
    /// Signed, but the content breaks the format (a bug in the program that made it).
    #[error("card content is malformed: {0}")]
    Malformed(DecodeError),
    /// The card is past its expiry time.
    #[error("card expired {ago} s ago")]
    Expired {
        /// Seconds since expiry.
        ago: u64,
    },
    /// The card's creation time is in the future (beyond the allowed clock skew).
    #[error("card is not valid yet (created {ahead} s in the future)")]
    NotYetValid {
        /// Seconds ahead.
        ahead: u64,
    },
}

/// Clock skew tolerated on a card's creation time, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 600;

/// What a card is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRole {
    /// An invitation: whoever reads it may answer with a card of their own.
    Invitation,
    /// An answer to one invitation (its id is in [`CardBody::answers`]).
    Answer,
    /// A public card (directory entry): anyone may answer it, many times.
    Public,
}

impl CardRole {
    fn to_u8(self) -> u8 {
        match self {
            CardRole::Invitation => 0,
            CardRole::Answer => 1,
            CardRole::Public => 2,
        }
    }

    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(CardRole::Invitation),
            1 => Ok(CardRole::Answer),
            2 => Ok(CardRole::Public),
            value => Err(DecodeError::UnknownValue {
                what: "card role",
                value: value.into(),
            }),
        }
    }
}

/// A server a card's author reads their mail on: its address and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    /// Where and how it is reached.
    pub address: Address,
    /// The server's public key.
    pub key: ServerPublic,
}

impl Encode for ServerRef {
    fn encode(&self, w: &mut Writer) {
        self.address.encode(w);
        self.key.encode(w);
    }
}

impl Decode for ServerRef {
    const WHAT: &'static str = "server";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            address: Address::decode(r)?,
            key: ServerPublic::decode(r)?,
        })
    }
}

impl ServerRef {
    /// Reads a version-1 card's server: a plain `host:port` string, always TCP.
    pub fn decode_v1(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            address: Address::decode_v1(r)?,
            key: ServerPublic::decode(r)?,
        })
    }
}

/// The identifier of a card: SHA-256 over its bytes. An answer names the invitation it answers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId(pub [u8; 32]);

impl CardId {
    /// The id of the card made of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(crypto::sha256(&[b"meow/v1/card-id\0", bytes]))
    }
}

impl fmt::Debug for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardId({})", crate::keys::fingerprint(&self.0))
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::keys::fingerprint(&self.0))
    }
}

/// The fields of a card, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardBody {
    /// What the card is for.
    pub role: CardRole,
    /// Where the reader seals messages to the author.
    pub conversation: ConversationPublic,
    /// The author's mailbox for the reader.
    pub lookup: LookupPublic,
    /// The author's preferred servers, most preferred first.
    pub servers: Vec<ServerRef>,
    /// A name the author suggests the reader calls them.
    pub nickname: Option<String>,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Expiry time, Unix seconds.
    pub expires: u64,
    /// For an answer: the invitation it answers.
    pub answers: Option<CardId>,
    /// The author reaches its server over a small link (LoRa) and starts conversations
    /// classically: the reader's offer to move to version 2 should carry no X-Wing key (1.2 KB).
    /// Written as a version-3 flag; false on older cards.
    pub classical_start: bool,
}

impl CardBody {
    fn flags(&self) -> u8 {
        if self.classical_start { FLAG_CLASSICAL_START } else { 0 }
    }

    /// The lowest version that carries every field: one encoding per card.
    fn version(&self) -> u8 {
        if self.flags() == 0 { PLAIN_VERSION } else { CARD_VERSION }
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.role.to_u8());
        self.conversation.encode(w);
        self.lookup.encode(w);
        w.list(&self.servers, |w, s| s.encode(w));
        w.option(self.nickname.as_ref(), |w, n| {
            w.string(n);
        });
        w.varint(self.created).varint(self.expires);
        w.option(self.answers.as_ref(), |w, id| {
            w.raw(&id.0);
        });
        if self.version() >= 3 {
            w.u8(self.flags());
        }
    }

    fn decode(r: &mut Reader<'_>, version: u8) -> Result<Self, DecodeError> {
        let role = CardRole::from_u8(r.u8("card role")?)?;
        let conversation = ConversationPublic::decode(r)?;
        let lookup = LookupPublic::decode(r)?;
        let server = if version == 1 {
            ServerRef::decode_v1
        } else {
            ServerRef::decode
        };
        let servers = r.list(MAX_SERVERS, "card servers", server)?;
        let nickname = r.option("nickname", |r| Ok(r.string(MAX_NICKNAME_LEN, "nickname")?.to_owned()))?;
        let created = r.varint("created")?;
        let expires = r.varint("expires")?;
        let answers = r.option("answers", |r| Ok(CardId(r.array("answers")?)))?;
        let classical_start = if version >= 3 { read_flags(r)? } else { false };
        if (role == CardRole::Answer) != answers.is_some() {
            return Err(DecodeError::Invalid {
                what: "answers",
                reason: "present exactly on answer cards",
            });
        }
        if expires <= created {
            return Err(DecodeError::Invalid {
                what: "expires",
                reason: "not after creation",
            });
        }
        Ok(Self {
            role,
            conversation,
            lookup,
            servers,
            nickname,
            created,
            expires,
            answers,
            classical_start,
        })
    }
}

/// A version-3 card's flags: known bits only, and at least one (a card without flags is
/// written as version 2).
fn read_flags(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
    match r.u8("card flags")? {
        FLAG_CLASSICAL_START => Ok(true),
        0 => Err(DecodeError::Invalid {
            what: "card flags",
            reason: "none set: such a card is written as version 2",
        }),
        _ => Err(DecodeError::Invalid {
            what: "card flags",
            reason: "unknown flag",
        }),
    }
}

/// A checked card: signature verified, body decoded, within its validity period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The author's contact key for the reader; it signed this card.
    pub contact: ContactPublic,
    /// The signed fields.
    pub body: CardBody,
    id: CardId,
    bytes: Vec<u8>,
}

impl Card {
    /// Signs `body` with `key` and returns the card.
    pub fn sign(key: &ContactKey, body: CardBody) -> Card {
        let mut w = Writer::with_capacity(256);
        w.raw(MAGIC).u8(CARD_TYPE).u8(body.version());
        key.public().encode(&mut w);
        body.encode(&mut w);
        let signature = key.sign(Domain::CARD, &[w.as_slice()]);
        w.raw(&signature);
        let bytes = w.into_bytes();
        Card {
            contact: key.public(),
            id: CardId::of(&bytes),
            body,
            bytes,
        }
    }

    /// The binary form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The text form, `meow:card:<base64url>`.
    pub fn to_text(&self) -> String {
        format!("{CARD_TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(&self.bytes))
    }

    /// The card's identifier.
    pub fn id(&self) -> CardId {
        self.id
    }

    /// Whether the card is valid at `now` (Unix seconds).
    pub fn check_time(&self, now: u64) -> Result<(), CardError> {
        if self.body.created > now + CLOCK_SKEW_SECS {
            return Err(CardError::NotYetValid {
                ahead: self.body.created - now,
            });
        }
        if now >= self.body.expires {
            return Err(CardError::Expired {
                ago: now - self.body.expires,
            });
        }
        Ok(())
    }
}

/// A card as read from a file or text: nothing in it may be used until [`Self::check`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedCard {
    bytes: Vec<u8>,
}

impl UncheckedCard {
    /// Wraps the binary form (only the length is looked at).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CardError> {
        if !(MIN_CARD_LEN..=MAX_CARD_LEN).contains(&bytes.len()) {
            return Err(CardError::BadLength { len: bytes.len() });
        }
        Ok(Self { bytes: bytes.to_vec() })
    }

    /// Reads the text form; surrounding whitespace and line breaks inside are ignored.
    pub fn from_text(text: &str) -> Result<Self, CardError> {
        let compact: String = text.split_whitespace().collect();
        let body = compact.strip_prefix(CARD_TEXT_PREFIX).ok_or(CardError::BadText)?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| CardError::BadText)?;
        Self::from_bytes(&bytes)
    }

    /// Reads either form: text if it starts with the text prefix, binary otherwise.
    pub fn from_file_contents(data: &[u8]) -> Result<Self, CardError> {
        match core::str::from_utf8(data) {
            Ok(text) if text.trim_start().starts_with(CARD_TEXT_PREFIX) => Self::from_text(text),
            _ => Self::from_bytes(data),
        }
    }

    /// Verifies the signature over every byte, then decodes, then checks the time at `now`.
    pub fn check(self, now: u64) -> Result<Card, CardError> {
        let card = self.check_signature()?;
        card.check_time(now)?;
        Ok(card)
    }

    /// Verifies the signature and decodes, without looking at the time (to show an expired card).
    pub fn check_signature(self) -> Result<Card, CardError> {
        let signed_len = self.bytes.len() - SIGNATURE_LEN;
        let (signed, sig) = self.bytes.split_at(signed_len);
        let signer: [u8; 32] = signed[HEADER_LEN..SIGNER_END]
            .try_into()
            .map_err(|_| CardError::BadSignature)?;
        let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| CardError::BadSignature)?;
        crypto::verify(&signer, Domain::CARD, &[signed], &sig).map_err(|_| CardError::BadSignature)?;

        let mut r = Reader::new(signed);
        if &r.array::<4>("magic").map_err(CardError::Malformed)? != MAGIC
            || r.u8("type").map_err(CardError::Malformed)? != CARD_TYPE
        {
            return Err(CardError::Malformed(DecodeError::BadMagic { what: "card" }));
        }
        let version = r.u8("version").map_err(CardError::Malformed)?;
        if !(1..=CARD_VERSION).contains(&version) {
            return Err(CardError::UnsupportedVersion(version));
        }
        let contact = ContactPublic::decode(&mut r).map_err(CardError::Malformed)?;
        let body = CardBody::decode(&mut r, version).map_err(CardError::Malformed)?;
        r.finish("card").map_err(CardError::Malformed)?;
        Ok(Card {
            contact,
            body,
            id: CardId::of(&self.bytes),
            bytes: self.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ConversationKey, LookupKey, ServerKey};
    use crate::testing::TestRng;

    pub(crate) fn sample(rng: &mut TestRng) -> (ContactKey, Card) {
        let key = ContactKey::generate(rng);
        let body = CardBody {
            role: CardRole::Invitation,
            conversation: ConversationKey::generate(rng).public(),
            lookup: LookupKey::generate(rng).public(),
            servers: vec![ServerRef {
                address: Address::Tcp("127.0.0.1:7070".into()),
                key: ServerKey::generate(rng).public(),
            }],
            nickname: Some("alice".into()),
            created: 1_700_000_000,
            expires: 1_700_000_000 + 86_400,
            answers: None,
            classical_start: false,
        };
        let card = Card::sign(&key, body);
        (key, card)
    }

    #[test]
    fn binary_and_text_round_trip() {
        let (_, card) = sample(&mut TestRng::new(1));
        let back = UncheckedCard::from_bytes(card.as_bytes())
            .unwrap()
            .check(1_700_000_100)
            .unwrap();
        assert_eq!(back, card);
        let text = card.to_text();
        let back = UncheckedCard::from_text(&format!("  {text}\n"))
            .unwrap()
            .check(1_700_000_100)
            .unwrap();
        assert_eq!(back, card);
        let back = UncheckedCard::from_file_contents(text.as_bytes())
            .unwrap()
            .check(1_700_000_100)
            .unwrap();
        assert_eq!(back, card);
    }

    #[test]
    fn every_single_byte_change_is_a_bad_signature() {
        let (_, card) = sample(&mut TestRng::new(2));
        for i in 0..card.as_bytes().len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bytes = card.as_bytes().to_vec();
                bytes[i] ^= flip;
                let err = UncheckedCard::from_bytes(&bytes)
                    .unwrap()
                    .check(1_700_000_100)
                    .unwrap_err();
                assert_eq!(err, CardError::BadSignature, "byte {i} flip {flip:#x}");
                assert!(err.to_string().contains("signature does not verify"));
            }
        }
    }

    #[test]
    fn expiry_and_future_cards_are_refused() {
        let (_, card) = sample(&mut TestRng::new(3));
        let u = UncheckedCard::from_bytes(card.as_bytes()).unwrap();
        assert_eq!(
            u.clone().check(1_700_000_000 + 86_400),
            Err(CardError::Expired { ago: 0 })
        );
        assert!(matches!(u.check(1_600_000_000), Err(CardError::NotYetValid { .. })));
    }

    /// `card` with its flags byte (the last signed byte) set to `flags`, signed again.
    fn with_flags(key: &ContactKey, card: &Card, flags: u8) -> Vec<u8> {
        let mut signed = card.as_bytes()[..card.as_bytes().len() - SIGNATURE_LEN].to_vec();
        *signed.last_mut().unwrap() = flags;
        let sig = key.sign(Domain::CARD, &[&signed]);
        signed.extend_from_slice(&sig);
        signed
    }

    #[test]
    fn a_classical_start_is_a_version_3_flag_and_nothing_else_changes_version() {
        let (key, plain) = sample(&mut TestRng::new(5));
        assert_eq!(plain.as_bytes()[5], 2, "a card without flags stays version 2");
        let body = CardBody {
            classical_start: true,
            ..plain.body.clone()
        };
        let card = Card::sign(&key, body);
        assert_eq!(card.as_bytes()[5], 3);
        assert_eq!(card.as_bytes().len(), plain.as_bytes().len() + 1);
        let back = UncheckedCard::from_bytes(card.as_bytes())
            .unwrap()
            .check(1_700_000_100)
            .unwrap();
        assert!(back.body.classical_start);
        assert_eq!(back, card);
        for (flags, reason) in [(0, "none set"), (0x02, "unknown flag"), (0x03, "unknown flag")] {
            let bytes = with_flags(&key, &card, flags);
            let err = UncheckedCard::from_bytes(&bytes)
                .unwrap()
                .check(1_700_000_100)
                .unwrap_err();
            assert!(
                matches!(err, CardError::Malformed(DecodeError::Invalid { what: "card flags", reason: r }) if r.starts_with(reason)),
                "{flags:#x}: {err:?}"
            );
        }
    }

    #[test]
    fn lengths_and_text_are_checked_before_anything() {
        assert_eq!(
            UncheckedCard::from_bytes(&[0; 10]),
            Err(CardError::BadLength { len: 10 })
        );
        assert_eq!(UncheckedCard::from_text("meow:card:!!!"), Err(CardError::BadText));
        assert_eq!(UncheckedCard::from_text("hello"), Err(CardError::BadText));
    }
}
