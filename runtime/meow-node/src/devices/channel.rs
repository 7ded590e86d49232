//! The channel between two devices of one user (PROTOCOL.md §25), "on the same principle as the
//! user to user communication" (spec §2.6): each part of a sync payload is the content of an
//! ordinary version-1 envelope, sealed with HPKE to the receiving device's own X25519 key and
//! signed by the sending device's `DeviceKey`, padded to a size class, deposited in the receiving
//! device's mailbox on the user's server. Only that device can open it, so a revoked device reads
//! nothing the others send afterwards, whatever it kept.
//!
//! Each device has a mailbox of its own (its lookup key is its alone; the others know its
//! public half from the log). Conversation leases are named by lookup keys every device derives
//! from the user's lease secret, and a joining device's mailboxes from the link card's secret.

use meow_proto::crypto::hkdf_sha256;
use meow_proto::envelope::{self, ContentType, EnvelopeError, Message};
use meow_proto::{ContactKey, ContactPublic, ConversationKey, ConversationPublic, CryptoRng, DeviceKey, DevicePublic};
use meow_proto::{LookupKey, MessageId};
use zeroize::Zeroizing;

/// The largest part of a payload one envelope carries.
pub(crate) fn max_part() -> usize {
    envelope::max_content_len() - 64
}

fn derive_lookup(secret: &[u8; 32], label: &[u8], context: &[u8]) -> LookupKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    let info = [label, b"\x00", context].concat();
    hkdf_sha256(None, secret, &info, seed.as_mut());
    LookupKey::from_seed(&seed)
}

/// The lease of the conversation with `peer` (PROTOCOL.md §25), under the user's current
/// lease secret.
pub(crate) fn lease_key(lease_secret: &[u8; 32], peer: &ContactPublic) -> LookupKey {
    derive_lookup(lease_secret, b"meow/v1/device-lease", peer.as_bytes())
}

/// Where a joining device leaves its request (`b"join"`) and finds its welcome (`b"welcome"`).
pub(crate) fn link_mailbox(link_secret: &[u8; 32], which: &[u8]) -> LookupKey {
    derive_lookup(link_secret, b"meow/v1/device-link-mailbox", which)
}

/// Cuts `payload` into parts (named by a random id) and seals each from `from` to `to`.
pub(crate) fn seal_payload(
    payload: &[u8],
    from: &DeviceKey,
    to: &ConversationPublic,
    now_ms: u64,
    rng: &mut impl CryptoRng,
) -> Result<Vec<Vec<u8>>, EnvelopeError> {
    let id: [u8; 8] = meow_proto::crypto::random_bytes(rng);
    meow_proto::sync::batch::split(payload, id, max_part())
        .into_iter()
        .map(|part| seal(part, from, to, now_ms, rng))
        .collect()
}

/// Seals one part from `from` to the device whose X25519 key is `to`.
pub(crate) fn seal(
    part: Vec<u8>,
    from: &DeviceKey,
    to: &ConversationPublic,
    now_ms: u64,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, EnvelopeError> {
    let message = Message {
        id: MessageId::random(rng),
        sent_at_ms: now_ms,
        content_type: ContentType::SYNC,
        content: part,
        rotation: None,
        rotation_ack: None,
        automatic: true,
        reply_to: None,
    };
    envelope::seal(&message, &signer(from), to, rng)
}

/// The envelope signer of a device: its `DeviceKey`, as the envelope format names its signer.
fn signer(device: &DeviceKey) -> ContactKey {
    ContactKey::from_seed(&device.seed())
}

/// A device's key as the envelope format names a sender (the same Ed25519 key).
pub(crate) fn as_sender(device: &DevicePublic) -> Option<ContactPublic> {
    ContactPublic::from_bytes(*device.as_bytes()).ok()
}

/// Opens an envelope sent to `me` by one of `senders`: the sender and the part, if it opens,
/// verifies against one of them and is a sync part.
pub(crate) fn open(envelope: &[u8], me: &ConversationKey, senders: &[DevicePublic]) -> Option<(DevicePublic, Vec<u8>)> {
    let unverified = envelope::open(envelope, me).ok()?;
    for s in senders {
        let Some(sender) = as_sender(s) else { continue };
        if let Ok(m) = unverified.clone().verify(&sender) {
            return (m.content_type == ContentType::SYNC).then_some((*s, m.content));
        }
    }
    None
}
