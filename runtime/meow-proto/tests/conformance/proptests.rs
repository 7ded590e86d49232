//! Property tests: every wire type survives encode -> decode -> encode, and no input makes a
//! decoder panic.

use meow_proto::codec::{Decode, Encode};
use meow_proto::envelope::{ContentType, Message, MessageId, RotationOffer};
use meow_proto::keys::{ConversationKey, LookupKey};
use meow_proto::testing::TestRng;
use meow_proto::wire::{AckItem, MailboxAuth, Request, RequestFrame, Response, ResponseFrame, StoredMessage};
use meow_proto::{MailboxId, UncheckedCard};
use proptest::prelude::*;

fn lookup(seed: u64) -> LookupKey {
    LookupKey::generate(&mut TestRng::new(seed))
}

fn message() -> impl Strategy<Value = Message> {
    (
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<Option<(u32, u64)>>(),
        any::<Option<u32>>(),
        any::<bool>(),
    )
        .prop_map(|(id, t, ct, content, rot, ack, automatic)| Message {
            id: MessageId(id),
            sent_at_ms: t,
            content_type: ContentType(ct),
            content,
            rotation: rot.map(|(serial, seed)| {
                let mut rng = TestRng::new(seed);
                RotationOffer {
                    serial,
                    conversation: ConversationKey::generate(&mut rng).public(),
                    lookup: LookupKey::generate(&mut rng).public(),
                }
            }),
            rotation_ack: ack,
            automatic,
            reply_to: None,
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<[u8; 16]>(), prop::collection::vec(any::<u8>(), 0..600)).prop_map(|(m, envelope)| Request::Deposit {
            mailbox: MailboxId(m),
            envelope
        }),
        (
            prop::collection::vec((any::<u64>(), any::<bool>(), any::<[u8; 32]>()), 0..5),
            any::<u32>(),
            any::<u32>(),
            any::<u64>()
        )
            .prop_map(|(ms, limit, wait_ms, after)| Request::Poll {
                mailboxes: ms
                    .into_iter()
                    .map(|(seed, prove, binding)| {
                        let k = lookup(seed);
                        if prove {
                            MailboxAuth::prove(&k, &binding)
                        } else {
                            MailboxAuth::proven(&k)
                        }
                    })
                    .collect(),
                limit,
                wait_ms,
                broadcasts_after: after,
            }),
        (prop::collection::vec((any::<u64>(), prop::collection::vec(any::<u64>(), 0..20)), 0..4)).prop_map(|items| {
            Request::Ack {
                items: items
                    .into_iter()
                    .map(|(seed, seqs)| AckItem {
                        auth: MailboxAuth::proven(&lookup(seed)),
                        seqs,
                    })
                    .collect(),
            }
        }),
        ("[a-z ]{0,40}", any::<u32>()).prop_map(|(query, limit)| Request::DirectorySearch { query, limit }),
        any::<u32>().prop_map(|count| Request::DirectoryRandom { count }),
        Just(Request::Info),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        Just(Response::Deposited),
        Just(Response::Acked),
        any::<u64>().prop_map(|id| Response::Broadcasted { id }),
        (
            prop::collection::vec(
                (
                    any::<[u8; 16]>(),
                    any::<u64>(),
                    any::<u64>(),
                    prop::collection::vec(any::<u8>(), 0..200)
                ),
                0..5
            ),
            any::<bool>()
        )
            .prop_map(|(items, more)| Response::Messages {
                items: items
                    .into_iter()
                    .map(|(m, seq, received_at, envelope)| StoredMessage {
                        mailbox: MailboxId(m),
                        seq,
                        received_at,
                        envelope
                    })
                    .collect(),
                broadcasts: vec![],
                more,
            }),
        ".{0,100}".prop_map(|message| Response::Error {
            code: meow_proto::wire::ErrorCode::NotAuthorized,
            message
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn messages_round_trip(m in message()) {
        let bytes = m.to_bytes();
        let back = Message::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn requests_round_trip(id in any::<u64>(), request in request()) {
        let f = RequestFrame { id, request };
        let bytes = f.to_bytes();
        prop_assert_eq!(RequestFrame::from_bytes(&bytes).unwrap(), f);
    }

    #[test]
    fn responses_round_trip(id in any::<u64>(), response in response()) {
        let f = ResponseFrame { id, response };
        let bytes = f.to_bytes();
        prop_assert_eq!(ResponseFrame::from_bytes(&bytes).unwrap(), f);
    }

    #[test]
    fn group_payloads_round_trip(group in any::<[u8; 16]>(), from in "[a-z]{1,20}", content in prop::collection::vec(any::<u8>(), 0..200), kind in 0u8..3) {
        use meow_proto::group::GroupPayload;
        let p = match kind {
            0 => GroupPayload::Post { group, content_type: ContentType::TEXT, content },
            1 => GroupPayload::Relay { group, from, content_type: ContentType::JSON, content },
            _ => GroupPayload::Leave { group },
        };
        let bytes = p.to_bytes();
        prop_assert_eq!(GroupPayload::from_bytes(&bytes).unwrap(), p);
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = RequestFrame::from_bytes(&bytes);
        let _ = ResponseFrame::from_bytes(&bytes);
        let _ = Message::from_bytes(&bytes);
        let _ = meow_proto::Conversation::from_bytes(&bytes);
        let _ = meow_proto::group::GroupPayload::from_bytes(&bytes);
        let _ = UncheckedCard::from_bytes(&bytes).map(|c| c.check(0));
        let _ = meow_proto::upgrade::UpgradeMessage::from_bytes(&bytes);
        let _ = meow_proto::ratchet::Ratchet::from_bytes(&bytes);
        let _ = meow_proto::catalog::UncheckedDescriptor::from_bytes(&bytes).map(|d| d.check(1_800_000_000));
        if let Ok(i) = meow_proto::onion::Instruction::from_bytes(&bytes) {
            prop_assert_eq!(i.to_bytes(), bytes.clone(), "an instruction re-encodes as it came");
        }
    }

    /// Any packet of an onion size, peeled with some key: refused cleanly, never a panic.
    #[test]
    fn onion_packets_of_any_content_are_refused_cleanly(class in 0u8..3, fill in any::<u64>(), key in any::<[u8; 32]>()) {
        let len = meow_proto::onion::packet_len(class).unwrap();
        let mut rng = TestRng::new(fill);
        let mut bytes = vec![0u8; len];
        for chunk in bytes.chunks_mut(32) {
            let r: [u8; 32] = meow_proto::crypto::random_bytes(&mut rng);
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        bytes[0] = meow_proto::onion::VERSION;
        bytes[1] = class;
        let packet = meow_proto::onion::OnionPacket::from_bytes(bytes).unwrap();
        let r = meow_proto::onion::peel(&packet, &meow_proto::RelayKey::from_secret_bytes(key));
        prop_assert!(r.is_err(), "a random packet does not pass the MAC");
    }

    #[test]
    fn upgrade_steps_round_trip(
        kind in any::<bool>(),
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        pq in any::<Option<u8>>(),
    ) {
        use meow_proto::crypto::{PQ_ENC_LEN, PQ_PUBLIC_LEN};
        use meow_proto::upgrade::UpgradeMessage;
        let step = if kind {
            UpgradeMessage::Offer { ratchet: a, pq: pq.map(|x| vec![x; PQ_PUBLIC_LEN]) }
        } else {
            UpgradeMessage::Accept { offer: a, ratchet: b, pq: pq.map(|x| vec![x; PQ_ENC_LEN]) }
        };
        let bytes = step.to_bytes();
        prop_assert_eq!(UpgradeMessage::from_bytes(&bytes).unwrap(), step);
        prop_assert!(UpgradeMessage::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }

    /// A conversation's stored form survives every stage of the upgrade.
    #[test]
    fn conversation_states_round_trip(seed in any::<u64>(), steps in 0usize..6) {
        use meow_proto::conversation::Conversation;
        let mut rng = TestRng::new(seed);
        let (mut a, mut b) = meow_proto::testing::conversation_pair(&mut rng);
        a.offer_upgrade(seed % 2 == 0, 0, &mut rng);
        for i in 0..steps {
            let (from, to) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
            let out = from.seal(ContentType::CONTROL, Vec::new(), 1, &mut rng).unwrap();
            to.open(&out.mailbox, &out.envelope, 2, &mut rng).unwrap();
            for c in [&*from, &*to] {
                let bytes = c.to_bytes();
                prop_assert_eq!(Conversation::from_bytes(&bytes).unwrap().to_bytes(), bytes);
            }
        }
    }
}
