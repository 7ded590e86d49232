//! The decoders of a home's files: the vault header (versions 2 and 1) and a record's plaintext.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    meow_store::vault::fuzzing::header(data);
    meow_store::vault::fuzzing::record(data);
});
