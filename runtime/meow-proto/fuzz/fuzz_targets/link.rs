//! Link sessions and compact envelopes (what a radio delivers): arbitrary bytes as an open, a
//! frame, an answer and a compact envelope must never panic; and arbitrary delivery scripts of
//! real frames (reordered, repeated, changed) must open each frame at most once and only within
//! the replay window.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::compact;
use meow_proto::crypto::{DhSecret, SecretKey};
use meow_proto::keys::{ContactKey, MailboxId, ServerKey};
use meow_proto::link::{self, LinkOpener, REPLAY_WINDOW, SessionId};
use meow_proto::ratchet::Ratchet;
use meow_proto::testing::TestRng;

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut rng = TestRng::new(3);
    let gateway = ServerKey::from_secret_bytes([6; 32]);
    let _ = link::accept(&gateway, data, NOW, SessionId([0; 4]));
    let (opener, open) = LinkOpener::new(&gateway.public(), vec![MailboxId([1; 16])], NOW, &mut rng).unwrap();
    let opened = link::accept(&gateway, &open, NOW, SessionId([1; 4])).unwrap();
    let mut server = opened.link;
    let mut client = opener.finish(&opened.answer).unwrap();
    let _ = server.open_frame(data);
    let _ = client.read_answer(1, data);
    let _ = link::unknown_session(data);

    let root = SecretKey::generate(&mut rng);
    let (a, b) = (DhSecret::generate(&mut rng), DhSecret::generate(&mut rng));
    let (a_pub, b_pub) = (a.public(), b.public());
    let mut hub = Ratchet::start_second(&root, b, a_pub, &mut rng).unwrap();
    let _ = Ratchet::start_first(&root, a, b_pub);
    let (me, peer) = (ContactKey::generate(&mut rng).public(), ContactKey::generate(&mut rng).public());
    let _ = compact::open(data, &mut hub, &me, &peer, &mut rng);

    // The script: each byte delivers (or changes) one of 64 frames.
    let frames: Vec<Vec<u8>> = (0..64).map(|i| client.deposit(0, &[i as u8; 8]).unwrap().1).collect();
    let mut opened = [false; 64];
    let mut newest = 0u32;
    for &op in data {
        let i = usize::from(op % 64);
        let counter = i as u32 + 1;
        if op & 0x40 != 0 {
            let mut changed = frames[i].clone();
            let at = usize::from(op) % changed.len();
            changed[at] ^= 0x01;
            assert!(server.open_frame(&changed).is_err(), "a changed frame opened");
            continue;
        }
        let fresh = !opened[i] && (counter > newest || newest - counter < REPLAY_WINDOW);
        assert_eq!(server.open_frame(&frames[i]).is_ok(), fresh, "frame {counter}, newest {newest}");
        if fresh {
            opened[i] = true;
            newest = newest.max(counter);
        }
    }
});
