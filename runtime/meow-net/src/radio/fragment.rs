//! Splitting datagrams larger than one radio frame, and putting them back together.
//!
//! A datagram that fits a frame goes as it is (no byte added). A larger one goes as up to 16
//! fragments, each `FRAGMENT tag index·16+last payload`: 3 bytes of header, `tag` the same
//! for all fragments of one datagram. No MEOW datagram starts with `FRAGMENT` (sealed
//! datagrams start with their version, link frames with a letter), and one that did would be
//! sent as fragments, so a receiver never confuses the two. Incomplete datagrams are dropped
//! after a minute, and at most 64 are kept at once.

use std::collections::HashMap;
use std::io;

use crate::port::PortPeer;

/// The first byte of a fragment.
pub const FRAGMENT: u8 = 0xF0;
/// Bytes of header per fragment.
pub const HEADER: usize = 3;
/// Most fragments of one datagram.
pub const MAX_PARTS: usize = 16;
/// Incomplete datagrams kept at once.
const MAX_PARTIAL: usize = 64;
/// How long an incomplete datagram waits for its other fragments, ms.
const PARTIAL_MS: u64 = 60_000;

/// The largest datagram a link of frames of `frame_mtu` bytes carries.
pub const fn max_datagram(frame_mtu: usize) -> usize {
    (frame_mtu - HEADER) * MAX_PARTS
}

/// The frames that carry `datagram` over frames of at most `frame_mtu` bytes.
pub fn split(datagram: &[u8], frame_mtu: usize, tag: u8) -> io::Result<Vec<Vec<u8>>> {
    if datagram.len() <= frame_mtu && datagram.first() != Some(&FRAGMENT) {
        return Ok(vec![datagram.to_vec()]);
    }
    let chunk = frame_mtu.saturating_sub(HEADER).max(1);
    let parts = datagram.len().div_ceil(chunk).max(1);
    if parts > MAX_PARTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a {}-byte datagram is more than {MAX_PARTS} frames of {frame_mtu} bytes",
                datagram.len()
            ),
        ));
    }
    Ok(datagram
        .chunks(chunk)
        .enumerate()
        .map(|(i, piece)| {
            let mut f = Vec::with_capacity(HEADER + piece.len());
            f.extend_from_slice(&[FRAGMENT, tag, ((i as u8) << 4) | (parts as u8 - 1)]);
            f.extend_from_slice(piece);
            f
        })
        .collect())
}

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    started_ms: u64,
}

/// Fragments waiting for the rest of their datagram.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: HashMap<(PortPeer, u8), Partial>,
    /// Fragments or datagrams given up on.
    pub dropped: u64,
}

impl Reassembly {
    /// Takes one frame from `from`: the datagram it is or completes, if any.
    pub fn push(&mut self, from: PortPeer, frame: Vec<u8>, now_ms: u64) -> Option<Vec<u8>> {
        if frame.first() != Some(&FRAGMENT) {
            return Some(frame);
        }
        let (Some(&tag), Some(&pos)) = (frame.get(1), frame.get(2)) else {
            self.dropped += 1;
            return None;
        };
        let (index, count) = (usize::from(pos >> 4), usize::from(pos & 0x0F) + 1);
        self.expire(now_ms);
        let entry = self.partial.entry((from, tag)).or_insert_with(|| Partial {
            parts: vec![None; count],
            started_ms: now_ms,
        });
        if entry.parts.len() != count || index >= count {
            // Another datagram reused the tag: start again with this one.
            *entry = Partial {
                parts: vec![None; count],
                started_ms: now_ms,
            };
            self.dropped += 1;
            if index >= count {
                return None;
            }
        }
        entry.parts[index] = Some(frame[HEADER..].to_vec());
        if entry.parts.iter().all(Option::is_some) {
            let done = self.partial.remove(&(from, tag))?;
            return Some(done.parts.into_iter().flatten().flatten().collect());
        }
        None
    }

    fn expire(&mut self, now_ms: u64) {
        let before = self.partial.len();
        self.partial
            .retain(|_, p| now_ms.saturating_sub(p.started_ms) < PARTIAL_MS);
        while self.partial.len() >= MAX_PARTIAL {
            let Some(oldest) = self.partial.iter().min_by_key(|(_, p)| p.started_ms).map(|(k, _)| *k) else {
                break;
            };
            self.partial.remove(&oldest);
        }
        self.dropped += (before - self.partial.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_datagrams_go_as_they_are_and_large_ones_come_back_whole() {
        assert_eq!(split(b"small", 233, 0).unwrap(), vec![b"small".to_vec()]);
        let big: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        let frames = split(&big, 233, 9).unwrap();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() <= 233));
        let mut r = Reassembly::default();
        let peer = PortPeer::Node(7);
        // Out of order, with another sender's fragment in between.
        assert_eq!(r.push(peer, frames[2].clone(), 0), None);
        assert_eq!(r.push(PortPeer::Node(8), frames[0].clone(), 0), None);
        assert_eq!(r.push(peer, frames[0].clone(), 0), None);
        assert_eq!(r.push(peer, frames[1].clone(), 0), Some(big));
        let starts_like_one = [FRAGMENT, 1, 2];
        let f = split(&starts_like_one, 233, 1).unwrap();
        assert_eq!(r.push(peer, f[0].clone(), 0), Some(starts_like_one.to_vec()));
    }

    #[test]
    fn too_large_and_stale_are_refused() {
        assert!(split(&[0; 5000], 233, 0).is_err());
        assert_eq!(max_datagram(233), 3680);
        let mut r = Reassembly::default();
        let frames = split(&[1; 400], 233, 3).unwrap();
        assert_eq!(r.push(PortPeer::Line, frames[0].clone(), 0), None);
        assert_eq!(
            r.push(PortPeer::Line, frames[1].clone(), PARTIAL_MS + 1),
            None,
            "the first part expired"
        );
        assert_eq!(r.dropped, 1);
        assert_eq!(r.push(PortPeer::Line, vec![FRAGMENT], 0), None);
        assert_eq!(
            r.push(PortPeer::Line, vec![FRAGMENT, 0, 0x31], 0),
            None,
            "index past the count"
        );
    }
}
