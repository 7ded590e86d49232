//! Transports for MEOW: links by address kind (TCP, in-process memory), stream framing, the
//! session client (its sans-IO core and async shell), sealed datagrams, and the datagram
//! ports that carry them: UDP, serial lines and LoRa radios (RNode, Meshtastic).
//!
//! Framing lives here and nowhere else: on a stream, every frame is a big-endian `u32` length
//! followed by that many bytes ([`frame`]). The encryption inside frames is
//! `meow_proto::session`; this crate only moves bytes.

#![forbid(unsafe_code)]

pub mod client;
pub mod client_core;
pub mod datagram;
pub mod frame;
pub mod gateway;
pub mod pool;
pub mod port;
pub mod radio;
pub mod serial;
pub mod transport;

pub use client::{ClientError, ClientOptions, CloseReason, PollResult, ServerClient};
pub use client_core::ClientCore;
pub use pool::Pool;
pub use transport::{Closer, Link, LinkReader, LinkWriter, MemoryListener, MemoryNetwork, Transports};

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
