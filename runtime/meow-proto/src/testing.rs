//! A deterministic random generator for tests and test-vector generation. Not for real keys.

pub use crate::crypto::CounterRng as TestRng;

use crate::conversation::{Conversation, KeySet, PeerKeys};
use crate::keys::ContactKey;

/// Two ends of a fresh version-1 conversation, as two cards would make them.
pub fn conversation_pair(rng: &mut TestRng) -> (Conversation, Conversation) {
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
