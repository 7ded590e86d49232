//! Double Ratchet: arbitrary stored states and messages, and arbitrary conversations (who sends,
//! in which form — encrypted headers or compact —, what is delivered, dropped, repeated or
//! changed) checked against what was sent: every unchanged message opens once to its plaintext,
//! a repeat is refused, a changed one never opens.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::codec::Decode;
use meow_proto::crypto::{DhSecret, SecretKey};
use meow_proto::ratchet::{MAX_SKIPPED, Ratchet, RatchetError};
use meow_proto::testing::TestRng;

const AD: &[u8] = b"fuzz";

fn pair(rng: &mut TestRng) -> [Ratchet; 2] {
    let root = SecretKey::generate(rng);
    let (a, b) = (DhSecret::generate(rng), DhSecret::generate(rng));
    let (a_pub, b_pub) = (a.public(), b.public());
    let alice = Ratchet::start_first(&root, a, b_pub).unwrap();
    [alice, Ratchet::start_second(&root, b, a_pub, rng).unwrap()]
}

fuzz_target!(|data: &[u8]| {
    let mut rng = TestRng::new(1);
    if let Ok(mut state) = Ratchet::from_bytes(data) {
        let _ = state.seal(AD, b"x", &mut rng);
    }
    let mut parties = pair(&mut rng);
    let _ = parties[0].open(AD, data, &mut rng);
    let _ = parties[0].open_compact(AD, data, &mut rng);
    // The script: each pair of bytes is (operation, argument).
    let mut sent: Vec<(usize, Vec<u8>, Vec<u8>, bool, bool)> = Vec::new();
    for op in data.chunks_exact(2) {
        let compact = op[0] & 4 != 0;
        let open = |r: &mut Ratchet, m: &[u8], rng: &mut TestRng, compact: bool| {
            if compact { r.open_compact(AD, m, rng) } else { r.open(AD, m, rng) }
        };
        match op[0] % 4 {
            0 | 1 => {
                let from = usize::from(op[0] % 4 == 1);
                let text = vec![op[1]; usize::from(op[1] % 32)];
                let msg = if compact {
                    parties[from].seal_compact(AD, &text).unwrap()
                } else {
                    parties[from].seal(AD, &text, &mut rng).unwrap()
                };
                sent.push((from, msg, text, false, compact));
            }
            2 if !sent.is_empty() => {
                let i = usize::from(op[1]) % sent.len();
                let many = sent.len() > MAX_SKIPPED;
                let (from, msg, text, opened, compact) = &mut sent[i];
                let result = open(&mut parties[1 - *from], msg, &mut rng, *compact);
                match (*opened, result) {
                    (false, Ok(plain)) => {
                        assert_eq!(plain.as_slice(), text.as_slice(), "message {i}");
                        *opened = true;
                    }
                    (true, Err(RatchetError::Replay | RatchetError::NotForUs)) => {}
                    // A compact header names no chain: a repeat from an older chain is tried as
                    // a new chain, which does not open.
                    (true, Err(RatchetError::Tampered)) if *compact => {}
                    (false, Err(RatchetError::TooFarAhead)) => {}
                    (false, Err(RatchetError::NotForUs)) if many => {}
                    (false, Err(RatchetError::Tampered)) if many && *compact => {}
                    (was, other) => panic!("message {i} (opened before: {was}) gave {other:?}"),
                }
            }
            3 if !sent.is_empty() => {
                let i = usize::from(op[1]) % sent.len();
                let (from, msg, _, _, compact) = &sent[i];
                let mut changed = msg.clone();
                let at = usize::from(op[1]) % changed.len();
                changed[at] ^= 0x80;
                let result = open(&mut parties[1 - *from], &changed, &mut rng, *compact);
                assert!(result.is_err(), "a changed message opened");
            }
            _ => {}
        }
    }
});
