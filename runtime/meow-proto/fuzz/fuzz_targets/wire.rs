//! Server request and response frames: decode, and re-encode byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meow_proto::codec::{Decode, Encode};
use meow_proto::wire::{RequestFrame, ResponseFrame};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = RequestFrame::from_bytes(data) {
        assert_eq!(f.to_bytes(), data, "canonical request encoding");
    }
    if let Ok(f) = ResponseFrame::from_bytes(data) {
        assert_eq!(f.to_bytes(), data, "canonical response encoding");
    }
});
