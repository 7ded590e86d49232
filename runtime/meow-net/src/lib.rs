//! Transports for MEOW: stream framing, the TCP client, and sealed datagrams over UDP.
//!
//! Framing lives here and nowhere else: on a stream, every frame is a big-endian `u32` length
//! followed by that many bytes ([`frame`]). The encryption inside frames is
//! `meow_proto::session`; this crate only moves bytes.

#![forbid(unsafe_code)]

pub mod client;
pub mod datagram;
pub mod frame;

pub use client::{ClientError, PollResult, ServerClient};

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, Unix seconds (the shells' clock; the protocol core never reads one).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
