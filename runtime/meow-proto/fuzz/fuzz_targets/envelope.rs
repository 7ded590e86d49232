//! Envelopes and messages: opening with a fixed key, verification, message decoding; version-2
//! envelopes against a ratchet; upgrade steps, both decoded alone and carried (as a contact
//! would send them) in a control message to a conversation, which must never panic or break.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::codec::{Decode, Encode};
use meow_proto::crypto::{DhSecret, SecretKey};
use meow_proto::envelope::{self, ContentType, Message};
use meow_proto::ratchet::Ratchet;
use meow_proto::testing::{self, TestRng};
use meow_proto::upgrade::UpgradeMessage;
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
    if let Ok(step) = UpgradeMessage::from_bytes(data) {
        assert_eq!(step.to_bytes(), data, "canonical encoding");
    }
    let mut rng = TestRng::new(3);
    let root = SecretKey::from_bytes([4; 32]);
    let peer = DhSecret::from_bytes([5; 32]).public();
    if let Ok(mut ratchet) = Ratchet::start_first(&root, DhSecret::from_bytes([6; 32]), peer) {
        let _ = envelope::open_v2(data, &mut ratchet, &sender, &sender, &mut rng);
    }
    // The contact sends these bytes as a control message's content (an upgrade step, or not).
    let (mut a, mut b) = testing::conversation_pair(&mut rng);
    a.offer_upgrade(data.first().is_some_and(|b| b & 1 == 1), 0, &mut rng);
    let offer = a.seal(ContentType::CONTROL, Vec::new(), 1, &mut rng).unwrap();
    let _ = b.open(&offer.mailbox, &offer.envelope, 2, &mut rng);
    let Ok(sent) = b.seal(ContentType::CONTROL, data.to_vec(), 3, &mut rng) else { return };
    let _ = a.open(&sent.mailbox, &sent.envelope, 4, &mut rng);
    // Unless the contact itself sent a bogus accept (its own loss), the two can still talk.
    if matches!(UpgradeMessage::from_bytes(data), Ok(UpgradeMessage::Accept { .. })) {
        return;
    }
    let m = a.seal(ContentType::TEXT, b"still".to_vec(), 5, &mut rng).unwrap();
    let got = b.open(&m.mailbox, &m.envelope, 6, &mut rng).expect("a conversation survives any step");
    assert_eq!(got.message.content, b"still");
});
