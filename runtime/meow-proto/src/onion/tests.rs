//! Onion packets: sizes per hop, what one relay can read, tampering, replay tags, bad routes.

use super::*;
use crate::keys::ServerKey;
use crate::testing::TestRng;

struct Relay {
    key: RelayKey,
    server: ServerPublic,
    address: Address,
}

fn relays(rng: &mut TestRng, n: usize) -> Vec<Relay> {
    (0..n)
        .map(|i| Relay {
            key: RelayKey::generate(rng),
            server: ServerKey::generate(rng).public(),
            address: Address::Tcp(format!("relay-{i}.example:7070")),
        })
        .collect()
}

const MAILBOX: MailboxId = MailboxId([0xab; 16]);

fn envelope(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ 0x5a).collect()
}

/// A route through `relays`, delivering `env` into [`MAILBOX`] at the last one.
fn route(relays: &[Relay], env: &[u8]) -> Vec<RouteHop> {
    relays
        .iter()
        .enumerate()
        .map(|(i, r)| RouteHop {
            relay: r.key.public(),
            instruction: match relays.get(i + 1) {
                Some(next) => Instruction::Forward {
                    next: next.server,
                    address: next.address.clone(),
                    delay_ms: 100 * (i as u32 + 1),
                },
                None => Instruction::Deliver {
                    delay_ms: 7,
                    target: None,
                    mailbox: MAILBOX,
                    envelope: env.to_vec(),
                },
            },
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_packet_keeps_its_size_at_every_hop_in_every_class() {
    let mut rng = TestRng::new(1);
    for (class, &size) in SIZE_CLASSES.iter().enumerate() {
        for hops in 1..=MAX_HOPS {
            let rs = relays(&mut rng, hops);
            let mut packet = wrap(&route(&rs, &envelope(size)), &mut rng).unwrap();
            let len = packet_len(class as u8).unwrap();
            assert_eq!(packet.as_bytes().len(), len);
            assert_eq!(packet.class(), class as u8);
            for (i, r) in rs.iter().enumerate() {
                let p = peel(&packet, &r.key).unwrap();
                assert_eq!(p.instruction, route(&rs, &envelope(size))[i].instruction);
                match p.next {
                    Some(next) => {
                        assert_eq!(next.as_bytes().len(), len, "class {class}, hop {i} of {hops}");
                        packet = next;
                    }
                    None => assert_eq!(i, hops - 1),
                }
            }
        }
    }
    assert_eq!(packet_len(0), Some(1010), "the documented size of a class-0 packet");
}

#[test]
fn a_relay_learns_its_next_hop_and_nothing_else() {
    let mut rng = TestRng::new(2);
    let rs = relays(&mut rng, 3);
    let env = envelope(512);
    let first = wrap(&route(&rs, &env), &mut rng).unwrap();
    let captured = peel(&first, &rs[0].key).unwrap().next.unwrap();

    // The middle relay's key opens the packet captured on its way in...
    let secret = rs[1].key.secret_bytes();
    let layer = sphinx::peel::<X25519Group>(&secret, &captured.onion(), &associated(captured.class())).unwrap();
    let instruction = Instruction::from_bytes(&layer.payload).unwrap();
    assert_eq!(
        instruction,
        Instruction::Forward {
            next: rs[2].server,
            address: rs[2].address.clone(),
            delay_ms: 200
        }
    );
    // ...and everything it reveals (its instruction, the next packet) holds no trace of the
    // relay before it, the mailbox, the last relay's instruction or the envelope.
    let next = layer.next.unwrap();
    let revealed = [layer.payload.as_slice(), &next.point, &next.field, &next.hmac].concat();
    for secret_part in [
        rs[0].address.to_string().as_bytes(),
        rs[1].address.to_string().as_bytes(),
        rs[0].server.as_bytes(),
        &MAILBOX.0,
        &env[..32],
        &env[200..232],
    ] {
        assert!(!contains(&revealed, secret_part), "revealed {secret_part:02x?}");
    }
    // The whole unwrapped field (what a curious relay holds after its XOR) has none of it either,
    // beyond its own instruction.
    let shared = layer.shared_secret;
    let mut whole = vec![0u8; 2 * captured.onion().field.len()];
    whole[..captured.onion().field.len()].copy_from_slice(&captured.onion().field);
    crate::crypto::onion::chacha20_xor(&crate::crypto::onion::hmac(b"rho", &[shared.as_slice()]), 0, &mut whole);
    assert!(!contains(&whole, &MAILBOX.0));
    assert!(!contains(&whole, &env[..32]));
    assert!(!contains(&whole, rs[0].address.to_string().as_bytes()));

    // It cannot open the layers of the other relays.
    assert!(matches!(
        peel(&first, &rs[1].key),
        Err(OnionError::Sphinx(SphinxError::BadMac))
    ));
    let onward = peel(&captured, &rs[1].key).unwrap().next.unwrap();
    assert!(peel(&onward, &rs[1].key).is_err());
    // And the packets in and out share no bytes a watcher could match (beyond version and class).
    assert!(!contains(onward.as_bytes(), &captured.as_bytes()[2..34]));
    assert!(!contains(onward.as_bytes(), &captured.as_bytes()[100..132]));
}

#[test]
fn a_byte_changed_anywhere_is_refused_by_the_next_relay() {
    let mut rng = TestRng::new(3);
    let rs = relays(&mut rng, 2);
    let packet = wrap(&route(&rs, &envelope(176)), &mut rng).unwrap();
    for at in [2, 40, 500, packet.as_bytes().len() - 40, packet.as_bytes().len() - 1] {
        let mut bytes = packet.as_bytes().to_vec();
        bytes[at] ^= 0x20;
        let changed = OnionPacket::from_bytes(bytes).unwrap();
        assert!(peel(&changed, &rs[0].key).is_err(), "byte {at}");
    }
    // Changed after the first relay: the second refuses it.
    let next = peel(&packet, &rs[0].key).unwrap().next.unwrap();
    let mut bytes = next.into_bytes();
    bytes[300] ^= 1;
    let changed = OnionPacket::from_bytes(bytes).unwrap();
    assert!(matches!(
        peel(&changed, &rs[1].key),
        Err(OnionError::Sphinx(SphinxError::BadMac))
    ));
}

#[test]
fn the_replay_tag_is_the_same_for_a_resent_packet_and_differs_otherwise() {
    let mut rng = TestRng::new(4);
    let rs = relays(&mut rng, 1);
    let r = route(&rs, &envelope(176));
    let a = wrap(&r, &mut rng).unwrap();
    let b = wrap(&r, &mut rng).unwrap();
    let tag_a = peel(&a, &rs[0].key).unwrap().tag;
    assert_eq!(peel(&a.clone(), &rs[0].key).unwrap().tag, tag_a);
    assert_ne!(peel(&b, &rs[0].key).unwrap().tag, tag_a, "a new session key, a new tag");
}

#[test]
fn bad_routes_and_packets_are_refused_with_a_reason() {
    let mut rng = TestRng::new(5);
    let rs = relays(&mut rng, 6);
    assert_eq!(
        wrap(&route(&rs, &envelope(176)), &mut rng).unwrap_err(),
        OnionError::RouteLength(6)
    );
    assert_eq!(wrap(&[], &mut rng).unwrap_err(), OnionError::RouteLength(0));
    let mut r = route(&rs[..2], &envelope(176));
    r.reverse();
    assert_eq!(wrap(&r, &mut rng).unwrap_err(), OnionError::RouteShape);
    let mut long = route(&rs[..2], &envelope(176));
    if let Instruction::Forward { address, .. } = &mut long[0].instruction {
        *address = Address::Tcp(format!("{}.example:1", "a".repeat(80)));
    }
    assert!(matches!(wrap(&long, &mut rng), Err(OnionError::LongAddress(_))));
    assert_eq!(
        wrap(&route(&rs[..1], &envelope(MAX_ENVELOPE + 1)), &mut rng).unwrap_err(),
        OnionError::TooLarge(MAX_ENVELOPE + 1)
    );
    for bad in [vec![], vec![2, 0], vec![1, 9], vec![1, 0, 0], vec![1; 1011]] {
        assert!(OnionPacket::from_bytes(bad).is_err());
    }
}
