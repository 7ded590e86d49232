//! Matriochka: onion packets peeled with a fixed relay key, hop instructions, and server
//! descriptors with every check. Must never panic; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::catalog::UncheckedDescriptor;
use meow_proto::codec::{Decode, Encode};
use meow_proto::onion::{self, Instruction, OnionPacket};
use meow_proto::RelayKey;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            if let Ok(packet) = OnionPacket::from_bytes(rest.to_vec()) {
                let key = RelayKey::from_secret_bytes([7; 32]);
                if let Ok(peeled) = onion::peel(&packet, &key) {
                    if let Some(next) = peeled.next {
                        assert_eq!(next.as_bytes().len(), packet.as_bytes().len());
                    }
                }
            }
        }
        1 => {
            if let Ok(i) = Instruction::from_bytes(rest) {
                assert_eq!(i.to_bytes(), rest);
            }
        }
        _ => {
            if let Ok(d) = UncheckedDescriptor::from_bytes(rest) {
                assert_eq!(d.to_bytes(), rest);
                let _ = d.check(1_800_000_000);
            }
        }
    }
});
