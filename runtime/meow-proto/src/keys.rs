//! The key pairs of MEOW (spec §2), each its own type so one can never stand in for another.
//!
//! | spec | secret            | public                  | algorithm | use                                   |
//! |------|-------------------|-------------------------|-----------|---------------------------------------|
//! | Ukp  | [`UserKey`]         | [`UserPublic`]          | Ed25519   | local identity, device certificates   |
//! | Ckp  | [`ContactKey`]      | [`ContactPublic`]       | Ed25519   | signs what goes to one contact        |
//! | Ekp  | [`ConversationKey`] | [`ConversationPublic`]  | X25519    | messages are sealed to it (rotates)   |
//! | Lkp  | [`LookupKey`]       | [`LookupPublic`]        | Ed25519   | names a mailbox, signs polls (rotates)|
//! | Skp  | [`ServerKey`]       | [`ServerPublic`]        | X25519    | requests are sealed to the server     |
//! | Dkp  | [`DeviceKey`]       | [`DevicePublic`]        | Ed25519   | device sync and revocation            |
//!
//! plus [`BroadcastKey`] (signs emergency broadcasts; the server operator holds one) and
//! [`GroupKey`] (a group's owner signs the group's information with it).
//!
//! Secrets zeroize on drop and their `Debug` shows only the public half. Public keys have a
//! stable text form `<kind>:<base64url>` (for example `contact:3q2-7w…`), parsed back by `FromStr`.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto::{self, CryptoError, CryptoRng, DhSecret, Domain, SigningSecret};

/// A public key's text or bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text does not start with the expected `<kind>:` prefix.
    #[error("expected a {expected} key (text starting with \"{expected}:\")")]
    WrongKind {
        /// The kind expected.
        expected: &'static str,
    },
    /// The text is not base64url of 32 bytes.
    #[error("malformed {kind} key text")]
    Malformed {
        /// The kind expected.
        kind: &'static str,
    },
    /// The bytes are not a valid key of this kind.
    #[error("invalid {kind} key")]
    Invalid {
        /// The kind expected.
        kind: &'static str,
    },
}

fn key_text(kind: &str, bytes: &[u8; 32]) -> String {
    format!("{kind}:{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn parse_key_text(kind: &'static str, text: &str) -> Result<[u8; 32], KeyError> {
    let body = text
        .trim()
        .strip_prefix(kind)
        .and_then(|t| t.strip_prefix(':'))
        .ok_or(KeyError::WrongKind { expected: kind })?;
    let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| KeyError::Malformed { kind })?;
    raw.try_into().map_err(|_| KeyError::Malformed { kind })
}

/// A short human-checkable fingerprint: the first 8 bytes of SHA-256, hex, in groups of four.
pub fn fingerprint(bytes: &[u8; 32]) -> String {
    let h = crypto::sha256(&[b"meow/v1/fingerprint\0", bytes]);
    h[..8]
        .chunks(2)
        .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
        .collect::<Vec<_>>()
        .join("-")
}

macro_rules! public_key_common {
    ($public:ident, $kind:literal, $valid:expr) => {
        #[doc = concat!("The public half of a ", $kind, " key: 32 bytes, text form `", $kind, ":<base64url>`.")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $public([u8; 32]);

        impl $public {
            /// The key kind used in the text form and in errors.
            pub const KIND: &'static str = $kind;

            /// Checks and wraps raw key bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
                let valid: fn(&[u8; 32]) -> bool = $valid;
                if valid(&bytes) {
                    Ok(Self(bytes))
                } else {
                    Err(KeyError::Invalid { kind: $kind })
                }
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The text form, `kind:base64url`.
            pub fn to_text(&self) -> String {
                key_text($kind, &self.0)
            }

            /// A short fingerprint for people to compare.
            pub fn fingerprint(&self) -> String {
                fingerprint(&self.0)
            }
        }

        impl fmt::Display for $public {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_text())
            }
        }

        impl fmt::Debug for $public {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($public), self.to_text())
            }
        }

        impl FromStr for $public {
            type Err = KeyError;
            fn from_str(s: &str) -> Result<Self, KeyError> {
                Self::from_bytes(parse_key_text($kind, s)?)
            }
        }

        impl Encode for $public {
            fn encode(&self, w: &mut Writer) {
                w.raw(&self.0);
            }
        }

        impl Decode for $public {
            const WHAT: &'static str = concat!($kind, " key");
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Self::from_bytes(r.array(Self::WHAT)?).map_err(|_| DecodeError::BadKey { what: Self::WHAT })
            }
        }
    };
}

macro_rules! signing_key {
    ($(#[$doc:meta])* $secret:ident, $public:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $secret(SigningSecret);

        impl $secret {
            /// A new random key pair.
            pub fn generate(rng: &mut impl CryptoRng) -> Self {
                Self(SigningSecret::generate(rng))
            }

            /// The key pair for a 32-byte secret seed.
            pub fn from_seed(seed: &[u8; 32]) -> Self {
                Self(SigningSecret::from_seed(seed))
            }

            /// The secret seed, for encrypted storage only.
            pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
                self.0.seed()
            }

            /// The public half.
            pub fn public(&self) -> $public {
                $public(self.0.public())
            }

            /// Signs `parts` under a domain-separation string.
            pub fn sign(&self, domain: Domain, parts: &[&[u8]]) -> [u8; crypto::SIGNATURE_LEN] {
                self.0.sign(domain, parts)
            }
        }

        impl fmt::Debug for $secret {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<secret>, {})", stringify!($secret), self.public())
            }
        }

        public_key_common!($public, $kind, crypto::is_valid_verifying_key);

        impl $public {
            /// Verifies a signature made by the matching secret key under `domain`.
            pub fn verify(
                &self,
                domain: Domain,
                parts: &[&[u8]],
                signature: &[u8; crypto::SIGNATURE_LEN],
            ) -> Result<(), CryptoError> {
                crypto::verify(&self.0, domain, parts, signature)
            }
        }
    };
}

macro_rules! dh_key {
    ($(#[$doc:meta])* $secret:ident, $public:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $secret(DhSecret);

        impl $secret {
            /// A new random key pair.
            pub fn generate(rng: &mut impl CryptoRng) -> Self {
                Self(DhSecret::generate(rng))
            }

            /// The key pair for these secret bytes.
            pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
                Self(DhSecret::from_bytes(bytes))
            }

            /// The secret bytes, for encrypted storage only.
            pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
                self.0.to_bytes()
            }

            /// The public half.
            pub fn public(&self) -> $public {
                $public(self.0.public())
            }

            /// The underlying X25519 secret, for HPKE.
            #[allow(dead_code, reason = "relay keys open Sphinx layers, not HPKE")]
            pub(crate) fn dh(&self) -> &DhSecret {
                &self.0
            }
        }

        impl fmt::Debug for $secret {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<secret>, {})", stringify!($secret), self.public())
            }
        }

        // Every 32-byte string is an X25519 public key; HPKE rejects the low-order ones when used.
        public_key_common!($public, $kind, |b| b != &[0u8; 32]);
    };
}

signing_key!(
    /// The user's own identity key pair (spec Ukp). Never leaves the device.
    #[doc(alias = "Ukp")]
    UserKey, UserPublic, "user"
);
signing_key!(
    /// The identity under which one contact knows me (spec Ckp): one per contact, never rotated.
    /// It signs every message and card I send to that contact.
    #[doc(alias = "Ckp")]
    ContactKey, ContactPublic, "contact"
);
dh_key!(
    /// The encryption key pair of one conversation (spec Ekp): messages to me are sealed to its
    /// public half. Rotatable; a rotation takes effect once the peer acknowledged it.
    #[doc(alias = "Ekp")]
    ConversationKey, ConversationPublic, "conversation"
);
signing_key!(
    /// The lookup key pair of one conversation (spec Lkp): its public half names my mailbox for
    /// that contact on a server, its secret signs polls. Rotatable like the [`ConversationKey`].
    #[doc(alias = "Lkp")]
    LookupKey, LookupPublic, "lookup"
);
dh_key!(
    /// A server's key pair (spec Skp): clients seal requests and sessions to it.
    #[doc(alias = "Skp")]
    ServerKey, ServerPublic, "server"
);
dh_key!(
    /// A relay key of a server for one key epoch (docs/PROTOCOL.md §22): Matriochka senders
    /// wrap each layer of an onion to it. Deleted when its epoch is over, so a packet captured
    /// today cannot be opened with what the server holds next week.
    RelayKey, RelayPublic, "relay"
);
signing_key!(
    /// A server's identity in the server catalog (spec §5.1): it signs the server's descriptor.
    ServerIdentity, ServerIdentityPublic, "server-identity"
);
signing_key!(
    /// One device of a user (spec Dkp), for synchronisation and revocation between devices.
    #[doc(alias = "Dkp")]
    DeviceKey, DevicePublic, "device"
);
signing_key!(
    /// Signs emergency broadcasts (spec §1.7). A server's operator key is one of these.
    BroadcastKey, BroadcastPublic, "broadcast"
);
signing_key!(
    /// Held by a group's owner: signs the group's information (name, epoch, members), so that
    /// members can tell a genuine update from the owner (spec §1.6).
    GroupKey, GroupPublic, "group"
);

impl ConversationPublic {
    /// Reads a key that must be valid for HPKE; used where the decoder itself can not tell.
    pub fn is_usable(&self) -> bool {
        self.0 != [0u8; 32]
    }
}

/// The server-side name of a mailbox: the first 16 bytes of SHA-256 over the lookup public key.
/// Depositors only need this; polling needs the full [`LookupPublic`] and its signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub [u8; 16]);

impl MailboxId {
    /// Size on the wire.
    pub const LEN: usize = 16;

    /// The mailbox named by a lookup key.
    pub fn of(lookup: &LookupPublic) -> Self {
        let h = crypto::sha256(&[b"meow/v1/mailbox\0", lookup.as_bytes()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        Self(id)
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxId({})", URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Display for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl Encode for MailboxId {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
}

impl Decode for MailboxId {
    const WHAT: &'static str = "mailbox id";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self(r.array(Self::WHAT)?))
    }
}

/// A 64-byte Ed25519 signature on the wire.
pub type Signature = [u8; crypto::SIGNATURE_LEN];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestRng;

    #[test]
    fn text_form_round_trips_and_names_its_kind() {
        let mut rng = TestRng::new(9);
        let k = ContactKey::generate(&mut rng);
        let text = k.public().to_text();
        assert!(text.starts_with("contact:"));
        assert_eq!(text.parse::<ContactPublic>().unwrap(), k.public());
        assert_eq!(
            text.parse::<LookupPublic>(),
            Err(KeyError::WrongKind { expected: "lookup" })
        );
        assert!(matches!(
            "contact:abc".parse::<ContactPublic>(),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn debug_never_shows_secret_bytes() {
        let k = ConversationKey::from_secret_bytes([0x42; 32]);
        let shown = format!("{k:?}");
        assert!(shown.contains("<secret>"));
        assert!(!shown.contains(&URL_SAFE_NO_PAD.encode([0x42u8; 32])));
        let c = ContactKey::from_seed(&[0x42; 32]);
        assert!(!format!("{c:?}").contains("42, 42"));
    }

    #[test]
    fn mailbox_id_depends_on_the_lookup_key() {
        let mut rng = TestRng::new(2);
        let a = LookupKey::generate(&mut rng).public();
        let b = LookupKey::generate(&mut rng).public();
        assert_ne!(MailboxId::of(&a), MailboxId::of(&b));
        assert_eq!(MailboxId::of(&a), MailboxId::of(&a));
    }
}
