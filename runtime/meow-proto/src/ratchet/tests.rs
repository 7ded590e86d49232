//! The ratchet's promises, each tried: both sides may send first, forward secrecy,
//! post-compromise security, out-of-order and lost messages within the window, replays refused,
//! failed opens that change nothing, and the stored state surviving a round trip mid-conversation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;
use crate::crypto::CounterRng;

const AD: &[u8] = b"meow/v2 test conversation";

fn pair(seed: u64) -> (Ratchet, Ratchet, CounterRng) {
    let mut rng = CounterRng::new(seed);
    let root = SecretKey::generate(&mut rng);
    let (a, b) = (DhSecret::generate(&mut rng), DhSecret::generate(&mut rng));
    let (a_pub, b_pub) = (a.public(), b.public());
    let alice = Ratchet::start_first(&root, a, b_pub).unwrap();
    let bob = Ratchet::start_second(&root, b, a_pub, &mut rng).unwrap();
    (alice, bob, rng)
}

fn say(from: &mut Ratchet, to: &mut Ratchet, text: &[u8], rng: &mut CounterRng) {
    let sealed = from.seal(AD, text, rng).unwrap();
    assert_eq!(to.open(AD, &sealed, rng).unwrap().as_slice(), text);
}

fn state(r: &Ratchet) -> Vec<u8> {
    r.to_bytes()
}

#[test]
fn either_side_may_send_first_and_both_at_once() {
    let (mut alice, mut bob, mut rng) = pair(1);
    say(&mut bob, &mut alice, b"bob first", &mut rng);
    say(&mut alice, &mut bob, b"alice answers", &mut rng);

    let (mut alice, mut bob, mut rng) = pair(2);
    let from_a = alice.seal(AD, b"crossing a", &mut rng).unwrap();
    let from_b = bob.seal(AD, b"crossing b", &mut rng).unwrap();
    assert_eq!(bob.open(AD, &from_a, &mut rng).unwrap().as_slice(), b"crossing a");
    assert_eq!(alice.open(AD, &from_b, &mut rng).unwrap().as_slice(), b"crossing b");
    for i in 0..5u8 {
        say(&mut alice, &mut bob, &[i; 3], &mut rng);
        say(&mut bob, &mut alice, &[i; 4], &mut rng);
    }
}

#[test]
fn a_copy_of_the_state_opens_nothing_sent_before_it() {
    let (mut alice, mut bob, mut rng) = pair(3);
    let old: Vec<Vec<u8>> = (0..3u8).map(|i| alice.seal(AD, &[i], &mut rng).unwrap()).collect();
    for m in &old {
        bob.open(AD, m, &mut rng).unwrap();
    }
    let mut stolen = bob.clone();
    for m in &old {
        assert!(
            stolen.open(AD, m, &mut rng).is_err(),
            "an opened message's key is erased"
        );
    }
    // A message delivered late stays openable (its key is kept as skipped), and only once.
    let late = alice.seal(AD, b"late", &mut rng).unwrap();
    let after = alice.seal(AD, b"after", &mut rng).unwrap();
    bob.open(AD, &after, &mut rng).unwrap();
    assert_eq!(bob.open(AD, &late, &mut rng).unwrap().as_slice(), b"late");
    assert_eq!(bob.open(AD, &late, &mut rng), Err(RatchetError::Replay));
}

#[test]
fn a_copy_of_the_state_stops_opening_after_one_round_trip() {
    let (mut alice, mut bob, mut rng) = pair(4);
    say(&mut alice, &mut bob, b"hello", &mut rng);
    let mut stolen = alice.clone();
    // While nobody changed direction, the copy reads along (the symmetric chain).
    let next = bob.seal(AD, b"read by the thief", &mut rng).unwrap();
    assert!(stolen.clone().open(AD, &next, &mut rng).is_ok());
    alice.open(AD, &next, &mut rng).unwrap();
    say(&mut alice, &mut bob, b"healing", &mut rng);
    let secret = bob.seal(AD, b"after the round trip", &mut rng).unwrap();
    assert_eq!(
        stolen.open(AD, &secret, &mut rng),
        Err(RatchetError::NotForUs),
        "a fresh DH secret on each side shuts the copy out"
    );
    assert_eq!(
        alice.open(AD, &secret, &mut rng).unwrap().as_slice(),
        b"after the round trip"
    );
}

#[test]
fn failed_opens_change_nothing() {
    let (mut alice, mut bob, mut rng) = pair(5);
    let m = alice.seal(AD, b"body", &mut rng).unwrap();
    let before = state(&bob);
    let mut tampered = m.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(bob.open(AD, &tampered, &mut rng), Err(RatchetError::Tampered));
    let mut bad_header = m.clone();
    bad_header[3] ^= 1;
    assert_eq!(bob.open(AD, &bad_header, &mut rng), Err(RatchetError::NotForUs));
    assert_eq!(bob.open(b"other ad", &m, &mut rng), Err(RatchetError::NotForUs));
    assert_eq!(bob.open(AD, &m[..OVERHEAD - 1], &mut rng), Err(RatchetError::Malformed));
    assert_eq!(state(&bob), before);
    assert_eq!(bob.open(AD, &m, &mut rng).unwrap().as_slice(), b"body");
}

#[test]
fn a_tampered_new_chain_does_not_advance_the_root() {
    // The header of a new chain opens, the body does not: no DH step may remain.
    let (mut alice, mut bob, mut rng) = pair(6);
    say(&mut alice, &mut bob, b"one", &mut rng);
    let reply = bob.seal(AD, b"two", &mut rng).unwrap();
    let before = state(&alice);
    let mut tampered = reply.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(alice.open(AD, &tampered, &mut rng), Err(RatchetError::Tampered));
    assert_eq!(state(&alice), before);
    assert_eq!(alice.open(AD, &reply, &mut rng).unwrap().as_slice(), b"two");
}

#[test]
fn skipping_is_bounded() {
    let (mut alice, mut bob, mut rng) = pair(7);
    for _ in 0..=MAX_SKIP {
        alice.seal(AD, b"lost", &mut rng).unwrap();
    }
    let far = alice.seal(AD, b"too far", &mut rng).unwrap();
    assert_eq!(bob.open(AD, &far, &mut rng), Err(RatchetError::TooFarAhead));

    let (mut alice, mut bob, mut rng) = pair(8);
    for _ in 0..MAX_SKIP {
        alice.seal(AD, b"lost", &mut rng).unwrap();
    }
    let just = alice.seal(AD, b"just within", &mut rng).unwrap();
    assert_eq!(bob.open(AD, &just, &mut rng).unwrap().as_slice(), b"just within");
    assert_eq!(bob.skipped_count(), MAX_SKIP as usize);
}

#[test]
fn the_skipped_store_forgets_the_oldest_first() {
    let (mut alice, mut bob, mut rng) = pair(9);
    let first = alice.seal(AD, b"oldest", &mut rng).unwrap();
    // Three chains of MAX_SKIP lost messages each, the direction changing between them.
    for round in 0..3 {
        for _ in 0..MAX_SKIP - 1 {
            alice.seal(AD, b"lost", &mut rng).unwrap();
        }
        say(&mut alice, &mut bob, b"arrives", &mut rng);
        say(&mut bob, &mut alice, &[round], &mut rng);
        assert!(bob.skipped_count() <= MAX_SKIPPED);
    }
    assert_eq!(bob.skipped_count(), MAX_SKIPPED);
    assert_eq!(bob.open(AD, &first, &mut rng), Err(RatchetError::NotForUs), "forgotten");
}

#[test]
fn the_stored_state_round_trips_mid_conversation() {
    let (mut alice, mut bob, mut rng) = pair(10);
    say(&mut alice, &mut bob, b"1", &mut rng);
    let skipped = alice.seal(AD, b"skipped", &mut rng).unwrap();
    say(&mut alice, &mut bob, b"2", &mut rng);
    say(&mut bob, &mut alice, b"3", &mut rng);
    let mut bob = Ratchet::from_bytes(&bob.to_bytes()).unwrap();
    let mut alice = Ratchet::from_bytes(&alice.to_bytes()).unwrap();
    assert_eq!(bob.to_bytes(), Ratchet::from_bytes(&bob.to_bytes()).unwrap().to_bytes());
    assert_eq!(bob.open(AD, &skipped, &mut rng).unwrap().as_slice(), b"skipped");
    say(&mut alice, &mut bob, b"4", &mut rng);
    say(&mut bob, &mut alice, b"5", &mut rng);
}

#[test]
fn damaged_states_are_refused() {
    let (alice, _, _) = pair(11);
    let bytes = alice.to_bytes();
    for cut in 0..bytes.len() {
        assert!(Ratchet::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut other_version = bytes.clone();
    other_version[0] = 9;
    assert!(Ratchet::from_bytes(&other_version).is_err());
}

#[test]
fn a_low_order_ratchet_key_is_refused_without_a_step() {
    let (mut alice, bob, mut rng) = pair(12);
    // Bob's first header, rewritten by a forger who knows his header key to carry the zero point.
    let header = Header {
        dh: [0; 32],
        pn: 0,
        n: 0,
    };
    let mut forged = HeaderKey::new(bob.hk_send.as_ref().unwrap()).seal(AD, &header.to_bytes(), &mut rng);
    forged.extend_from_slice(&[0u8; 40]);
    let before = state(&alice);
    assert_eq!(alice.open(AD, &forged, &mut rng), Err(RatchetError::BadKey));
    assert_eq!(state(&alice), before);
    assert!(Ratchet::start_first(&SecretKey::from_bytes([1; 32]), DhSecret::generate(&mut rng), [0; 32]).is_err());
}

#[test]
fn the_state_debug_shows_no_key() {
    let (alice, _, _) = pair(13);
    let text = format!("{alice:?}");
    assert!(text.starts_with("Ratchet(") && !text.contains("Secret"), "{text}");
}

/// A sealed message and whether it is in the compact form.
type Sealed = (Vec<u8>, bool);

/// Seals in the compact form or with header encryption; opens whichever it is.
fn seal_as(r: &mut Ratchet, compact: bool, text: &[u8], rng: &mut CounterRng) -> Sealed {
    let m = if compact {
        r.seal_compact(AD, text).unwrap()
    } else {
        r.seal(AD, text, rng).unwrap()
    };
    (m, compact)
}

fn open_as(r: &mut Ratchet, (m, compact): &Sealed, rng: &mut CounterRng) -> Result<Vec<u8>, RatchetError> {
    let plain = if *compact {
        r.open_compact(AD, m, rng)
    } else {
        r.open(AD, m, rng)
    };
    plain.map(|p| p.to_vec())
}

#[test]
fn the_compact_form_shares_the_chains_with_the_encrypted_headers() {
    let (mut alice, mut bob, mut rng) = pair(21);
    let m = alice.seal_compact(AD, b"21.5").unwrap();
    // key 32 + pn 1 + n 1 + body 4 + tag 16.
    assert_eq!(m.len(), 32 + 1 + 1 + 4 + 16);
    assert_eq!(bob.open_compact(AD, &m, &mut rng).unwrap().as_slice(), b"21.5");
    assert_eq!(bob.open_compact(AD, &m, &mut rng).err(), Some(RatchetError::Replay));
    say(&mut alice, &mut bob, b"then encrypted headers", &mut rng);
    let answer = bob.seal_compact(AD, b"ack").unwrap();
    assert_eq!(alice.open_compact(AD, &answer, &mut rng).unwrap().as_slice(), b"ack");
    say(&mut bob, &mut alice, b"and back", &mut rng);
    let late: Vec<Vec<u8>> = (0..3u8).map(|i| alice.seal_compact(AD, &[i]).unwrap()).collect();
    for m in late.iter().rev() {
        bob.open_compact(AD, m, &mut rng).unwrap();
    }
    // An encrypted-header message is not a compact one, and the other way round.
    let he = alice.seal(AD, b"x", &mut rng).unwrap();
    assert!(bob.open_compact(AD, &he, &mut rng).is_err());
    let compact = alice.seal_compact(AD, b"y").unwrap();
    assert!(bob.open(AD, &compact, &mut rng).is_err());
    assert_eq!(bob.open_compact(AD, &compact, &mut rng).unwrap().as_slice(), b"y");
}

#[test]
fn a_forged_compact_message_changes_nothing() {
    let (mut alice, mut bob, mut rng) = pair(22);
    say(&mut alice, &mut bob, b"hello", &mut rng);
    let before = state(&bob);
    let mut m = alice.seal_compact(AD, b"reading").unwrap();
    let mut forged = m.clone();
    forged[3] ^= 1; // another ratchet key: a new chain that does not open
    assert!(bob.open_compact(AD, &forged, &mut rng).is_err());
    let last = m.len() - 1;
    m[last] ^= 1;
    assert_eq!(bob.open_compact(AD, &m, &mut rng).err(), Some(RatchetError::Tampered));
    assert_eq!(
        bob.open_compact(AD, &[0; 40], &mut rng).err(),
        Some(RatchetError::Malformed)
    );
    assert_eq!(state(&bob), before);
}

#[test]
fn a_copy_of_the_state_opens_no_earlier_compact_message() {
    let (mut alice, mut bob, mut rng) = pair(23);
    let old: Vec<Vec<u8>> = (0..3u8).map(|i| alice.seal_compact(AD, &[i]).unwrap()).collect();
    for m in &old {
        bob.open_compact(AD, m, &mut rng).unwrap();
    }
    let mut stolen = bob.clone();
    assert!(old.iter().all(|m| stolen.open_compact(AD, m, &mut rng).is_err()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the order and losses, every message delivered opens to what was sent, exactly
    /// once, and the conversation goes on afterwards.
    #[test]
    fn any_order_and_losses_within_the_window(
        seed in any::<u64>(),
        script in prop::collection::vec((any::<bool>(), 1usize..4), 1..8),
        order in any::<u64>(),
        lose in prop::collection::vec(any::<bool>(), 32),
    ) {
        let (mut alice, mut bob, mut rng) = pair(seed);
        // Each turn one side sends a few messages; deliveries of a turn are shuffled.
        for (turn, (from_alice, count)) in script.iter().enumerate() {
            let (from, to) = if *from_alice { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
            let mut sent: Vec<(Vec<u8>, Vec<u8>)> = (0..*count)
                .map(|i| {
                    let text = vec![turn as u8, i as u8];
                    (from.seal(AD, &text, &mut rng).unwrap(), text)
                })
                .collect();
            let rot = (order as usize + turn) % sent.len();
            sent.rotate_left(rot);
            for (k, (m, text)) in sent.iter().enumerate() {
                if lose[(turn * 4 + k) % lose.len()] && k + 1 < sent.len() {
                    continue;
                }
                let opened = to.open(AD, m, &mut rng).unwrap();
                prop_assert_eq!(opened.as_slice(), text.as_slice());
                prop_assert_eq!(to.open(AD, m, &mut rng).err(), Some(RatchetError::Replay));
            }
        }
        say(&mut alice, &mut bob, b"still talking", &mut rng);
        say(&mut bob, &mut alice, b"yes", &mut rng);
    }

    /// The same with each message in either form, chosen at random.
    #[test]
    fn any_order_and_losses_in_mixed_forms(
        seed in any::<u64>(),
        script in prop::collection::vec((any::<bool>(), 1usize..4), 1..8),
        order in any::<u64>(),
        lose in prop::collection::vec(any::<bool>(), 32),
        compact in prop::collection::vec(any::<bool>(), 32),
    ) {
        let (mut alice, mut bob, mut rng) = pair(seed);
        for (turn, (from_alice, count)) in script.iter().enumerate() {
            let (from, to) = if *from_alice { (&mut alice, &mut bob) } else { (&mut bob, &mut alice) };
            let mut sent: Vec<(Sealed, Vec<u8>)> = (0..*count)
                .map(|i| {
                    let text = vec![turn as u8, i as u8];
                    (seal_as(from, compact[(turn * 4 + i) % 32], &text, &mut rng), text)
                })
                .collect();
            let rot = (order as usize + turn) % sent.len();
            sent.rotate_left(rot);
            for (k, (m, text)) in sent.iter().enumerate() {
                if lose[(turn * 4 + k) % lose.len()] && k + 1 < sent.len() {
                    continue;
                }
                prop_assert_eq!(open_as(to, m, &mut rng), Ok(text.clone()));
                prop_assert_eq!(open_as(to, m, &mut rng).err(), Some(RatchetError::Replay));
            }
        }
        say(&mut alice, &mut bob, b"still talking", &mut rng);
        say(&mut bob, &mut alice, b"yes", &mut rng);
    }

    /// No input makes the message or state decoder panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let (mut alice, _, mut rng) = pair(14);
        let _ = alice.open(AD, &bytes, &mut rng);
        let _ = alice.open_compact(AD, &bytes, &mut rng);
        let _ = Ratchet::from_bytes(&bytes);
    }
}
