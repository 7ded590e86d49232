//! The compact envelope: its byte count, round trips with every optional field, padding that is
//! checked, and changes that are refused without touching the ratchet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;
use crate::codec::Encode;
use crate::crypto::{CounterRng, DhSecret, SecretKey};
use crate::envelope::RotationOffer;
use crate::keys::{ContactKey, ConversationKey, LookupKey};

struct Pair {
    sensor: Ratchet,
    hub: Ratchet,
    me: ContactPublic,
    peer: ContactPublic,
    rng: CounterRng,
}

fn pair(seed: u64) -> Pair {
    let mut rng = CounterRng::new(seed);
    let root = SecretKey::generate(&mut rng);
    let (a, b) = (DhSecret::generate(&mut rng), DhSecret::generate(&mut rng));
    let (a_pub, b_pub) = (a.public(), b.public());
    Pair {
        sensor: Ratchet::start_first(&root, a, b_pub).unwrap(),
        hub: Ratchet::start_second(&root, b, a_pub, &mut rng).unwrap(),
        me: ContactKey::generate(&mut rng).public(),
        peer: ContactKey::generate(&mut rng).public(),
        rng,
    }
}

fn reading(content: &[u8]) -> Message {
    Message {
        id: MessageId([0; 16]),
        sent_at_ms: 1_800_000_000_000,
        content_type: ContentType::JSON,
        content: content.to_vec(),
        rotation: None,
        rotation_ack: None,
        automatic: false,
        reply_to: None,
    }
}

#[test]
fn a_20_byte_reading_takes_83_bytes() {
    let mut p = pair(1);
    let r = reading(br#"{"t":21.50,"h":40.2}"#);
    // body: flags 1 + time 6 + type 1 + content 20 = 28, padded to 32.
    assert_eq!(encode_body(&r).len(), 28);
    let env = seal(&r, &mut p.sensor, &p.me, &p.peer).unwrap();
    // version 1 + key 32 + pn 1 + n 1 + body 32 + tag 16.
    assert_eq!(env.len(), 83);
    let opened = open(&env, &mut p.hub, &p.me, &p.peer, &mut p.rng).unwrap();
    assert_eq!(
        opened,
        Message {
            id: message_id(&env),
            ..r
        }
    );
}

#[test]
fn rotation_fields_and_the_automatic_mark_survive() {
    let mut p = pair(2);
    let mut rng = CounterRng::new(9);
    let m = Message {
        rotation: Some(RotationOffer {
            serial: 7,
            conversation: ConversationKey::generate(&mut rng).public(),
            lookup: LookupKey::generate(&mut rng).public(),
        }),
        rotation_ack: Some(3),
        automatic: true,
        reply_to: None,
        ..reading(&[7; COMPACT_MAX_CONTENT])
    };
    let env = seal(&m, &mut p.sensor, &p.me, &p.peer).unwrap();
    assert!(env.len() <= COMPACT_MAX, "{}", env.len());
    let opened = open(&env, &mut p.hub, &p.me, &p.peer, &mut p.rng).unwrap();
    assert_eq!(
        opened,
        Message {
            id: message_id(&env),
            ..m
        }
    );
}

#[test]
fn a_reply_names_the_message_it_answers() {
    let mut p = pair(3);
    let m = Message {
        reply_to: Some(MessageId([5; 16])),
        ..reading(b"ack")
    };
    let env = seal(&m, &mut p.sensor, &p.me, &p.peer).unwrap();
    let opened = open(&env, &mut p.hub, &p.me, &p.peer, &mut p.rng).unwrap();
    assert_eq!(opened.reply_to, Some(MessageId([5; 16])));
}

#[test]
fn too_large_is_refused_before_the_ratchet_moves() {
    let mut p = pair(3);
    let before = p.sensor.to_bytes();
    let err = seal(&reading(&[1; 200]), &mut p.sensor, &p.me, &p.peer).unwrap_err();
    assert!(matches!(err, EnvelopeError::TooLarge { .. }), "{err}");
    assert_eq!(p.sensor.to_bytes(), before);
}

#[test]
fn the_wrong_pair_of_contacts_or_a_changed_byte_opens_nothing() {
    let mut p = pair(4);
    let env = seal(&reading(b"21.4"), &mut p.sensor, &p.me, &p.peer).unwrap();
    let before = p.hub.to_bytes();
    assert!(
        open(&env, &mut p.hub, &p.peer, &p.me, &mut p.rng).is_err(),
        "sender and recipient swapped"
    );
    for i in 0..env.len() {
        let mut bad = env.clone();
        bad[i] ^= 0x20;
        assert!(open(&bad, &mut p.hub, &p.me, &p.peer, &mut p.rng).is_err(), "byte {i}");
    }
    assert_eq!(p.hub.to_bytes(), before);
    open(&env, &mut p.hub, &p.me, &p.peer, &mut p.rng).unwrap();
}

#[test]
fn padding_is_canonical() {
    for len in 0..40 {
        let body = vec![0xAB; len];
        let padded = pad(&body);
        assert_eq!(padded.len() % BLOCK, 0);
        assert_eq!(unpad(&padded).unwrap(), &body[..]);
    }
    assert!(unpad(&[0; 16]).is_err(), "no marker");
    assert!(unpad(&[1; 16]).is_err(), "no marker at the end");
    let mut two_blocks = vec![0u8; 32];
    two_blocks[0] = 0x80;
    assert!(unpad(&two_blocks).is_err(), "a whole block of padding too many");
}

#[test]
fn layouts_a_server_refuses() {
    assert!(check_layout(&[]).is_err());
    assert!(check_layout(&[ENVELOPE_COMPACT; 10]).is_err());
    assert!(check_layout(&vec![ENVELOPE_COMPACT; COMPACT_MAX + 1]).is_err());
    assert!(check_layout(&[2; 100]).is_err());
    check_layout(&[ENVELOPE_COMPACT; COMPACT_MIN]).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_content_that_fits_round_trips(
        content in prop::collection::vec(any::<u8>(), 0..=COMPACT_MAX_CONTENT),
        time in any::<u64>(),
        kind in any::<u16>(),
    ) {
        let mut p = pair(5);
        let m = Message { sent_at_ms: time, content_type: ContentType(kind), ..reading(&content) };
        let env = seal(&m, &mut p.sensor, &p.me, &p.peer).unwrap();
        prop_assert!(env.len() <= COMPACT_MAX);
        let opened = open(&env, &mut p.hub, &p.me, &p.peer, &mut p.rng).unwrap();
        prop_assert_eq!(opened, Message { id: message_id(&env), ..m });
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut p = pair(6);
        let _ = open(&bytes, &mut p.hub, &p.me, &p.peer, &mut p.rng);
        let _ = unpad(&bytes);
        let _ = decode_body(&bytes, MessageId([0; 16]));
    }
}
