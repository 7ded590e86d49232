//! Conformance: the checked-in test vectors (decode -> re-encode byte for byte, crypto checks,
//! malformed inputs failing with the right error) and property-based round trips of every wire type.
//!
//! The vectors are generated deterministically by `generate()` below. The test regenerates them and
//! compares with the files, so an encoding change cannot go unnoticed; set
//! `MEOW_REGENERATE_VECTORS=1` to rewrite the files after an intended change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bolt4;
mod proptests;
mod vectors;
