//! The MEOW protocol core: keys, rendez-vous cards, envelopes, conversations with key rotation,
//! server requests, the session handshake and per-packet sealing, padding size classes.
//!
//! Sans-IO: this crate takes bytes, the current time and a random generator, and returns bytes.
//! It opens no socket or file and reads no clock. The wire format is written down in
//! `docs/PROTOCOL.md`; test vectors live in `runtime/meow-proto/vectors/`.
//!
//! All cryptography goes through [`crypto`], the only module that names cryptographic crates.

#![forbid(unsafe_code)]

pub mod address;
pub mod broadcast;
pub mod card;
pub mod catalog;
pub mod codec;
pub mod compact;
pub mod conversation;
pub mod crypto;
pub mod datagram;
pub mod devices;
pub mod directory;
pub mod envelope;
pub mod file;
pub mod group;
pub mod invitation;
pub mod keys;
pub mod lease;
pub mod link;
pub mod onion;
pub mod padding;
pub mod presence;
pub mod qr;
pub mod ratchet;
pub mod server_card;
pub mod session;
pub mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod upgrade;
pub mod wire;

pub use address::{Address, LinkKind};
pub use card::{Card, CardError, CardRole, ServerRef, UncheckedCard};
pub use codec::{Decode, DecodeError, Encode};
pub use conversation::{Conversation, ConversationError, Incoming, KeySet, Outgoing, PeerKeys, ReplayWindow};
pub use crypto::{CryptoRng, os_rng};
pub use envelope::{ContentType, EnvelopeError, Message, MessageId};
pub use keys::{
    BroadcastKey, BroadcastPublic, ContactKey, ContactPublic, ConversationKey, ConversationPublic, DeviceKey,
    DevicePublic, GroupKey, GroupPublic, KeyError, LookupKey, LookupPublic, MailboxId, RelayKey, RelayPublic,
    ServerIdentity, ServerIdentityPublic, ServerKey, ServerPublic, UserKey, UserPublic,
};
pub use server_card::ServerCard;
