//! Rendez-vous cards: binary and text forms, every check. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::UncheckedCard;

fuzz_target!(|data: &[u8]| {
    if let Ok(card) = UncheckedCard::from_file_contents(data) {
        let _ = card.check(1_800_000_000);
    }
    if let Ok(card) = UncheckedCard::from_bytes(data) {
        if let Ok(card) = card.check_signature() {
            // A card that verifies must re-encode to the same bytes.
            assert_eq!(card.as_bytes(), data);
        }
    }
});
