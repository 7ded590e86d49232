//! Link sessions: the byte counts, the replay window, frames of other sessions, stale opens, and
//! the LoRa accounting of a 20-byte reading end to end (compact envelope inside a deposit frame).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;
use crate::crypto::CounterRng;

const NOW: u64 = 1_800_000_000;

fn session(seed: u64, mailboxes: Vec<MailboxId>) -> (ClientLink, ServerLink, ServerKey) {
    let mut rng = CounterRng::new(seed);
    let gateway = ServerKey::generate(&mut rng);
    let (opener, open) = LinkOpener::new(&gateway.public(), mailboxes, NOW, &mut rng).unwrap();
    let opened = accept(&gateway, &open, NOW, SessionId([9, 8, 7, 6])).unwrap();
    (opener.finish(&opened.answer).unwrap(), opened.link, gateway)
}

#[test]
fn an_open_and_its_answer_are_small() {
    let mut rng = CounterRng::new(1);
    let gateway = ServerKey::generate(&mut rng);
    let (_, open) = LinkOpener::new(&gateway.public(), vec![MailboxId([1; 16])], NOW, &mut rng).unwrap();
    // type 1 + enc 32 + (time 5 + count 1 + mailbox 16) + tag 16.
    assert_eq!(open.len(), 71);
    let opened = accept(&gateway, &open, NOW, SessionId([0; 4])).unwrap();
    // type 1 + session 4 + tag 16.
    assert_eq!(opened.answer.len(), 21);
    assert_eq!(
        accept(&gateway, &open, NOW + MAX_SKEW_SECS + 1, SessionId([0; 4])).err(),
        Some(LinkError::Stale)
    );
    let other = ServerKey::generate(&mut rng);
    assert_eq!(
        accept(&other, &open, NOW, SessionId([0; 4])).err(),
        Some(LinkError::Decrypt)
    );
}

#[test]
fn frames_out_of_order_open_once_within_the_window() {
    let (mut client, mut server, _) = session(2, vec![MailboxId([2; 16])]);
    let frames: Vec<(u32, Vec<u8>)> = (0..100).map(|i| client.deposit(0, &[i as u8; 40]).unwrap()).collect();
    // 1..=100 sent; deliver 100, then 40 and 37 (63 back: inside the window), 36 (64 back: outside).
    assert_eq!(server.open_frame(&frames[99].1).unwrap().0, 100);
    assert_eq!(server.open_frame(&frames[39].1).unwrap().0, 40);
    assert_eq!(server.open_frame(&frames[39].1).err(), Some(LinkError::Replay));
    assert_eq!(server.open_frame(&frames[36].1).unwrap().0, 37);
    assert_eq!(
        server.open_frame(&frames[35].1).err(),
        Some(LinkError::Replay),
        "older than the window"
    );
    assert_eq!(server.open_frame(&frames[99].1).err(), Some(LinkError::Replay));
}

#[test]
fn a_changed_frame_or_another_session_changes_nothing() {
    let (mut client, mut server, _) = session(3, vec![MailboxId([3; 16])]);
    let (_, frame) = client.deposit(0, b"hello").unwrap();
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 1;
        assert!(server.open_frame(&bad).is_err(), "byte {i}");
    }
    let (mut other, _, _) = session(4, vec![MailboxId([3; 16])]);
    let (_, foreign) = other.deposit(0, b"hello").unwrap();
    assert!(server.open_frame(&foreign).is_err(), "same session id, other keys");
    server.open_frame(&frame).unwrap();
}

#[test]
fn answers_are_bound_to_their_frame() {
    let (mut client, server, _) = session(5, vec![MailboxId([5; 16])]);
    let (c1, _) = client.deposit(0, b"a").unwrap();
    let (c2, _) = client.deposit(0, b"b").unwrap();
    let a1 = server.answer(c1, LinkStatus::Deposited);
    assert_eq!(a1.len(), HEADER_LEN + 1 + TAG_LEN);
    assert_eq!(client.read_answer(c1, &a1).unwrap(), LinkStatus::Deposited);
    assert!(client.read_answer(c2, &a1).is_err(), "the answer to another frame");
    let refused = server.answer(c2, LinkStatus::Refused(ErrorCode::MailboxFull));
    assert_eq!(
        client.read_answer(c2, &refused).unwrap(),
        LinkStatus::Refused(ErrorCode::MailboxFull)
    );
    let (_, f3) = client.deposit(0, b"c").unwrap();
    let unknown = unknown_session(&f3).unwrap();
    assert_eq!(client.read_answer(3, &unknown).err(), Some(LinkError::UnknownSession));
}

#[test]
fn too_many_mailboxes_are_refused() {
    let mut rng = CounterRng::new(6);
    let gateway = ServerKey::generate(&mut rng);
    let many = vec![MailboxId([0; 16]); MAX_MAILBOXES + 1];
    assert_eq!(
        LinkOpener::new(&gateway.public(), many, NOW, &mut rng).err(),
        Some(LinkError::TooManyMailboxes)
    );
}

/// The figure docs/PROTOCOL.md §7 and BENCHMARKS.md give: a 20-byte reading, end-to-end
/// encrypted and authenticated, its mailbox hidden from the radio, in 110 bytes on the air.
#[test]
fn a_20_byte_reading_crosses_the_radio_in_at_most_120_bytes() {
    use crate::envelope::{ContentType, Message, MessageId};
    let mut rng = CounterRng::new(7);
    let root = crate::crypto::SecretKey::generate(&mut rng);
    let (a, b) = (
        crate::crypto::DhSecret::generate(&mut rng),
        crate::crypto::DhSecret::generate(&mut rng),
    );
    let (a_pub, b_pub) = (a.public(), b.public());
    let mut sensor = crate::ratchet::Ratchet::start_first(&root, a, b_pub).unwrap();
    let mut hub = crate::ratchet::Ratchet::start_second(&root, b, a_pub, &mut rng).unwrap();
    let (me, peer) = (
        crate::keys::ContactKey::generate(&mut rng).public(),
        crate::keys::ContactKey::generate(&mut rng).public(),
    );
    let reading = br#"{"t":21.50,"h":40.2}"#;
    let message = Message {
        id: MessageId([0; 16]),
        sent_at_ms: NOW * 1000,
        content_type: ContentType::JSON,
        content: reading.to_vec(),
        rotation: None,
        rotation_ack: None,
        automatic: false,
        reply_to: None,
    };
    let envelope = crate::compact::seal(&message, &mut sensor, &me, &peer).unwrap();
    let mailbox = MailboxId([8; 16]);
    let (mut client, mut server, _) = session(8, vec![mailbox]);
    let (counter, frame) = client.deposit(client.alias(&mailbox).unwrap(), &envelope).unwrap();
    assert!(frame.len() <= 120, "{} bytes on the air", frame.len());
    assert_eq!(frame.len(), DEPOSIT_OVERHEAD + 83);
    assert!(
        !frame.windows(16).any(|w| w == mailbox.0),
        "the mailbox is not on the air"
    );
    assert!(!frame.windows(reading.len()).any(|w| w == reading), "nor the reading");

    let (
        n,
        LinkRequest::Deposit {
            alias,
            envelope: stored,
        },
    ) = server.open_frame(&frame).unwrap();
    assert_eq!((n, server.mailbox(alias)), (counter, Some(mailbox)));
    let opened = crate::compact::open(&stored, &mut hub, &me, &peer, &mut rng).unwrap();
    assert_eq!(opened.content, reading);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever order frames arrive in (with repeats), each opens at most once, and every frame
    /// within the window of the newest opens.
    #[test]
    fn the_replay_window_accepts_each_counter_once(order in prop::collection::vec(1u32..200, 1..150)) {
        let (mut client, mut server, _) = session(9, vec![MailboxId([9; 16])]);
        let frames: Vec<Vec<u8>> = (0..200).map(|_| client.deposit(0, b"x").unwrap().1).collect();
        let mut opened = std::collections::BTreeSet::new();
        let mut newest = 0;
        for c in order {
            let result = server.open_frame(&frames[c as usize - 1]);
            let expect = !opened.contains(&c) && (c > newest || newest - c < REPLAY_WINDOW);
            prop_assert_eq!(result.is_ok(), expect, "counter {} newest {}", c, newest);
            if result.is_ok() {
                opened.insert(c);
                newest = newest.max(c);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let (client, mut server, gateway) = session(10, vec![MailboxId([1; 16])]);
        let _ = server.open_frame(&bytes);
        let _ = client.read_answer(1, &bytes);
        let _ = accept(&gateway, &bytes, NOW, SessionId([0; 4]));
        let _ = read_header(&bytes);
        let _ = unknown_session(&bytes);
    }
}
