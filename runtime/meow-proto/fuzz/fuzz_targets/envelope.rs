//! Envelopes and messages: opening with a fixed key, verification, message decoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::codec::{Decode, Encode};
use meow_proto::envelope::{self, Message};
use meow_proto::{ContactKey, ConversationKey};

fuzz_target!(|data: &[u8]| {
    let recipient = ConversationKey::from_secret_bytes([7; 32]);
    let sender = ContactKey::from_seed(&[8; 32]).public();
    if let Ok(unverified) = envelope::open(data, &recipient) {
        let _ = unverified.verify(&sender);
    }
    if let Ok(m) = Message::from_bytes(data) {
        assert_eq!(m.to_bytes(), data, "canonical encoding");
    }
});
