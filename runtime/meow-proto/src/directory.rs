//! "Free for chat" directory entries (spec §1.9): a public card, a short description and tags,
//! signed by the card's contact key so only its publisher can replace or withdraw it.
//!
//! ```text
//! entry    = card:bytes | description:bytes | tags:list<bytes> | expires:varint | signature:[64]
//! signature = Ed25519(card's ContactKey, "meow/v1/directory-entry" 0x00 | all fields before it)
//! withdraw = contact:[32] | entry_id:[32] | signature:[64]
//!            over "meow/v1/directory-withdraw" 0x00 | contact | entry_id
//! ```
//! An entry's id is SHA-256 over its bytes; a withdrawal names it, so replaying an old withdrawal
//! cannot remove a newer entry.

use crate::card::{Card, CardError, CardRole, UncheckedCard};
use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{self, Domain, SIGNATURE_LEN};
use crate::keys::{ContactKey, ContactPublic, Signature};

/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 280;
/// Most tags on an entry.
pub const MAX_TAGS: usize = 8;
/// Longest tag, in bytes.
pub const MAX_TAG: usize = 32;

/// Why a directory object is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The embedded card is not valid.
    #[error("directory entry card: {0}")]
    Card(#[from] CardError),
    /// The card is not a public card.
    #[error("directory entry card must be a public card")]
    NotPublic,
    /// The entry's signature does not verify.
    #[error("directory entry signature does not verify")]
    BadSignature,
    /// The entry has expired.
    #[error("directory entry expired")]
    Expired,
}

/// A verified directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The public card to answer.
    pub card: Card,
    /// What the publisher says about themselves.
    pub description: String,
    /// Lowercase words to search on.
    pub tags: Vec<String>,
    /// Expiry, Unix seconds.
    pub expires: u64,
    signature: Signature,
}

fn signed_fields(card: &[u8], description: &str, tags: &[String], expires: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(card).string(description);
    w.list(tags, |w, t| {
        w.string(t);
    });
    w.varint(expires);
    w.into_bytes()
}

impl DirectoryEntry {
    /// Signs an entry with the key of its public card.
    pub fn sign(key: &ContactKey, card: Card, description: &str, tags: &[String], expires: u64) -> Self {
        let tags: Vec<String> = tags.iter().map(|t| t.to_lowercase()).collect();
        let fields = signed_fields(card.as_bytes(), description, &tags, expires);
        let signature = key.sign(Domain::DIRECTORY_ENTRY, &[&fields]);
        Self {
            card,
            description: description.to_owned(),
            tags,
            expires,
            signature,
        }
    }

    /// The publisher's key.
    pub fn publisher(&self) -> &ContactPublic {
        &self.card.contact
    }

    /// SHA-256 over the entry's bytes.
    pub fn id(&self) -> [u8; 32] {
        crypto::sha256(&[b"meow/v1/directory-entry-id\0", &self.to_bytes()])
    }
}

impl Encode for DirectoryEntry {
    fn encode(&self, w: &mut Writer) {
        w.raw(&signed_fields(
            self.card.as_bytes(),
            &self.description,
            &self.tags,
            self.expires,
        ));
        w.raw(&self.signature);
    }
}

/// A directory entry read from the wire, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedEntry {
    card: Vec<u8>,
    description: String,
    tags: Vec<String>,
    expires: u64,
    signature: Signature,
}

impl Encode for UncheckedEntry {
    fn encode(&self, w: &mut Writer) {
        w.raw(&signed_fields(&self.card, &self.description, &self.tags, self.expires));
        w.raw(&self.signature);
    }
}

impl From<DirectoryEntry> for UncheckedEntry {
    fn from(e: DirectoryEntry) -> Self {
        Self {
            card: e.card.as_bytes().to_vec(),
            description: e.description,
            tags: e.tags,
            expires: e.expires,
            signature: e.signature,
        }
    }
}

impl UncheckedEntry {
    /// Verifies the card, that it is public, the entry signature and expiry at `now` (Unix s).
    pub fn check(self, now: u64) -> Result<DirectoryEntry, DirectoryError> {
        let card = UncheckedCard::from_bytes(&self.card)?.check(now)?;
        if card.body.role != CardRole::Public {
            return Err(DirectoryError::NotPublic);
        }
        let fields = signed_fields(&self.card, &self.description, &self.tags, self.expires);
        card.contact
            .verify(Domain::DIRECTORY_ENTRY, &[&fields], &self.signature)
            .map_err(|_| DirectoryError::BadSignature)?;
        if now >= self.expires {
            return Err(DirectoryError::Expired);
        }
        Ok(DirectoryEntry {
            card,
            description: self.description,
            tags: self.tags,
            expires: self.expires,
            signature: self.signature,
        })
    }
}

impl Decode for UncheckedEntry {
    const WHAT: &'static str = "directory entry";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let card = r.bytes(crate::card::MAX_CARD_LEN, "entry card")?.to_vec();
        let description = r.string(MAX_DESCRIPTION, "description")?.to_owned();
        let tags = r.list(MAX_TAGS, "tags", |r| Ok(r.string(MAX_TAG, "tag")?.to_owned()))?;
        let expires = r.varint("entry expiry")?;
        let signature = r.array::<SIGNATURE_LEN>("entry signature")?;
        Ok(Self {
            card,
            description,
            tags,
            expires,
            signature,
        })
    }
}

/// A signed request to remove one directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// The publisher.
    pub contact: ContactPublic,
    /// The entry removed.
    pub entry_id: [u8; 32],
    signature: Signature,
}

impl Withdrawal {
    /// Signs the withdrawal of `entry`.
    pub fn sign(key: &ContactKey, entry_id: [u8; 32]) -> Self {
        let contact = key.public();
        let signature = key.sign(Domain::DIRECTORY_WITHDRAW, &[contact.as_bytes(), &entry_id]);
        Self {
            contact,
            entry_id,
            signature,
        }
    }

    /// Verifies the signature.
    pub fn check(&self) -> Result<(), DirectoryError> {
        self.contact
            .verify(
                Domain::DIRECTORY_WITHDRAW,
                &[self.contact.as_bytes(), &self.entry_id],
                &self.signature,
            )
            .map_err(|_| DirectoryError::BadSignature)
    }
}

impl Encode for Withdrawal {
    fn encode(&self, w: &mut Writer) {
        self.contact.encode(w);
        w.raw(&self.entry_id).raw(&self.signature);
    }
}

impl Decode for Withdrawal {
    const WHAT: &'static str = "withdrawal";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            contact: ContactPublic::decode(r)?,
            entry_id: r.array("entry id")?,
            signature: r.array("withdrawal signature")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardBody;
    use crate::keys::{ConversationKey, LookupKey};
    use crate::testing::TestRng;

    fn entry(role: CardRole) -> (ContactKey, DirectoryEntry) {
        let mut rng = TestRng::new(4);
        let key = ContactKey::generate(&mut rng);
        let card = Card::sign(
            &key,
            CardBody {
                role,
                conversation: ConversationKey::generate(&mut rng).public(),
                lookup: LookupKey::generate(&mut rng).public(),
                servers: vec![],
                nickname: Some("weatherbot".into()),
                created: 100,
                expires: 10_000,
                answers: None,
                classical_start: false,
            },
        );
        let e = DirectoryEntry::sign(
            &key,
            card,
            "I tell the weather",
            &["Weather".into(), "bot".into()],
            5_000,
        );
        (key, e)
    }

    #[test]
    fn entry_round_trip_and_checks() {
        let (key, e) = entry(CardRole::Public);
        assert_eq!(e.tags, vec!["weather", "bot"]);
        let back = UncheckedEntry::from_bytes(&e.to_bytes()).unwrap().check(200).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            UncheckedEntry::from_bytes(&e.to_bytes()).unwrap().check(6_000),
            Err(DirectoryError::Expired)
        );
        let w = Withdrawal::sign(&key, e.id());
        Withdrawal::from_bytes(&w.to_bytes()).unwrap().check().unwrap();
    }

    #[test]
    fn invitation_cards_are_not_directory_cards() {
        let (_, e) = entry(CardRole::Invitation);
        assert_eq!(
            UncheckedEntry::from_bytes(&e.to_bytes()).unwrap().check(200),
            Err(DirectoryError::NotPublic)
        );
    }

    #[test]
    fn tampered_description_fails() {
        let (_, e) = entry(CardRole::Public);
        let mut bytes = e.to_bytes();
        let card_len = e.card.as_bytes().len();
        let at = card_len + 4; // inside the description
        bytes[at] ^= 0x20;
        let res = UncheckedEntry::from_bytes(&bytes).map(|u| u.check(200));
        assert!(matches!(res, Ok(Err(DirectoryError::BadSignature))), "{res:?}");
    }
}
