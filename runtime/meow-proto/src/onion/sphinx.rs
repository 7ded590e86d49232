//! Sphinx (Danezis and Goldberg, 2009) exactly as BOLT #4 specifies it for the Lightning onion,
//! over any [`OnionGroup`]: shared secrets from the blinded ephemeral key, the `rho`/`mu`/`pad`
//! keys, the ChaCha20-obfuscated routing field with its per-hop HMAC chain, and the filler that
//! keeps the field the same length at every hop.
//!
//! The field holds, for each hop, `length:bigsize | payload | hmac:[32]`; a hop finds its own
//! entry at the front, the HMAC for the next hop after it, and shifts the rest forward, filling
//! the end from its key stream. Every byte of the field is under the hop's HMAC, so a packet
//! changed anywhere on the way is refused by the next honest hop (no tagging attack gets past
//! it), and since the field never changes length, no hop learns where it is on the route.
//!
//! Checked against BOLT #4's published test vector (`onion-test.json`) on secp256k1 by the
//! `bolt4` test, and against MEOW's own vectors on X25519.

use zeroize::Zeroizing;

use crate::crypto::onion::{MAC_LEN, OnionGroup, chacha20_xor, hmac, hmac_verify};
use crate::crypto::{CryptoError, sha256};

/// Why a Sphinx packet could not be made or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SphinxError {
    /// The hops' entries do not fit in the routing field.
    #[error("the route's instructions take {needed} bytes, the routing field holds {room}")]
    TooLong {
        /// Bytes the entries need.
        needed: usize,
        /// Bytes the field has.
        room: usize,
    },
    /// A public key is not a valid point, or gives a degenerate secret.
    #[error("invalid key in the route or packet")]
    BadKey,
    /// The packet's HMAC does not verify under this key: not for us, or changed on the way.
    #[error("the packet's MAC does not verify (not for this key, or changed on the way)")]
    BadMac,
    /// The entry for this hop is malformed.
    #[error("malformed hop entry")]
    Malformed,
}

impl From<CryptoError> for SphinxError {
    fn from(_: CryptoError) -> Self {
        SphinxError::BadKey
    }
}

/// One hop of a route: its public key, and the payload only it will read.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The hop's public key (an encoded point of the group).
    pub public: &'a [u8],
    /// What the hop reads (without its length prefix).
    pub payload: &'a [u8],
}

/// A Sphinx packet without its version byte: the ephemeral point, the routing field and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onion {
    /// The (blinded) ephemeral public key.
    pub point: Vec<u8>,
    /// The obfuscated routing field.
    pub field: Vec<u8>,
    /// The HMAC over the field and the associated data.
    pub hmac: [u8; MAC_LEN],
}

/// What a hop reads in a packet.
#[derive(Debug)]
pub struct Peeled {
    /// The hop's payload.
    pub payload: Vec<u8>,
    /// The packet for the next hop; `None` at the last hop (its next HMAC is all zeros).
    pub next: Option<Onion>,
    /// The secret shared with the sender (its hash makes the replay tag).
    pub shared_secret: Zeroizing<[u8; 32]>,
}

fn key(label: &[u8], secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(hmac(label, &[secret]))
}

/// Length of the BOLT #1 `bigsize` encoding of `v`.
pub fn bigsize_len(v: u64) -> usize {
    match v {
        0..0xfd => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

fn write_bigsize(v: u64, out: &mut Vec<u8>) {
    match bigsize_len(v) {
        1 => out.push(v as u8),
        3 => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        5 => {
            out.push(0xfe);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Reads a minimal `bigsize`: the value and the bytes it took.
fn read_bigsize(buf: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = buf.split_first()?;
    let (v, n) = match first {
        0xfd => (u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)), 3),
        0xfe => (u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)), 5),
        0xff => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 9),
        small => (u64::from(small), 1),
    };
    (bigsize_len(v) == n).then_some((v, n))
}

/// The bytes a hop's entry takes in the field.
pub fn entry_len(payload_len: usize) -> usize {
    bigsize_len(payload_len as u64) + payload_len + MAC_LEN
}

/// A secret shared with one hop, erased when dropped.
type Secret = Zeroizing<[u8; 32]>;

/// The shared secret with each hop, and the first hop's ephemeral point.
fn shared_secrets<G: OnionGroup>(session: &[u8; 32], hops: &[Hop<'_>]) -> Result<(Vec<u8>, Vec<Secret>), SphinxError> {
    let first = G::public(session)?;
    let mut ephemeral = first.clone();
    let mut blinds: Vec<Zeroizing<[u8; 32]>> = Vec::with_capacity(hops.len());
    let mut secrets = Vec::with_capacity(hops.len());
    for hop in hops {
        let mut point = G::multiply(hop.public, session)?;
        for b in &blinds {
            point = G::multiply(&point, b)?;
        }
        let secret = Zeroizing::new(sha256(&[&point]));
        let blind = Zeroizing::new(sha256(&[&ephemeral, secret.as_slice()]));
        ephemeral = G::multiply(&ephemeral, &blind)?;
        blinds.push(blind);
        secrets.push(secret);
    }
    Ok((first, secrets))
}

/// The filler: what the hops before the last append to the field, as the last one will see it.
fn filler(secrets: &[Zeroizing<[u8; 32]>], entries: &[usize], field_len: usize) -> Vec<u8> {
    let mut filler = Vec::new();
    let mut pos = 0;
    for (secret, &len) in secrets.iter().zip(entries).take(entries.len().saturating_sub(1)) {
        let start = field_len - pos;
        pos += len;
        filler.resize(pos, 0);
        chacha20_xor(&key(b"rho", secret), start as u64, &mut filler);
    }
    filler
}

/// Builds a packet carrying each hop's payload, for a field of `field_len` bytes.
pub fn construct<G: OnionGroup>(
    session: &[u8; 32],
    hops: &[Hop<'_>],
    associated: &[u8],
    field_len: usize,
) -> Result<Onion, SphinxError> {
    let entries: Vec<usize> = hops.iter().map(|h| entry_len(h.payload.len())).collect();
    let needed: usize = entries.iter().sum();
    if needed > field_len || hops.is_empty() {
        return Err(SphinxError::TooLong {
            needed,
            room: field_len,
        });
    }
    let (point, secrets) = shared_secrets::<G>(session, hops)?;
    let filler = filler(&secrets, &entries, field_len);
    let mut field = vec![0u8; field_len];
    chacha20_xor(&key(b"pad", session), 0, &mut field);
    let mut next_hmac = [0u8; MAC_LEN];
    let mut entry = Vec::new();
    for (i, hop) in hops.iter().enumerate().rev() {
        let shift = entries[i];
        field.copy_within(..field_len - shift, shift);
        entry.clear();
        write_bigsize(hop.payload.len() as u64, &mut entry);
        entry.extend_from_slice(hop.payload);
        entry.extend_from_slice(&next_hmac);
        field[..shift].copy_from_slice(&entry);
        chacha20_xor(&key(b"rho", &secrets[i]), 0, &mut field);
        if i == hops.len() - 1 {
            field[field_len - filler.len()..].copy_from_slice(&filler);
        }
        next_hmac = hmac(key(b"mu", &secrets[i]).as_slice(), &[&field, associated]);
    }
    Ok(Onion {
        point,
        field,
        hmac: next_hmac,
    })
}

/// Opens the layer of `onion` meant for the holder of `secret`.
pub fn peel<G: OnionGroup>(secret: &[u8; 32], onion: &Onion, associated: &[u8]) -> Result<Peeled, SphinxError> {
    let shared = Zeroizing::new(sha256(&[&G::multiply(&onion.point, secret)?]));
    if !hmac_verify(key(b"mu", &shared).as_slice(), &[&onion.field, associated], &onion.hmac) {
        return Err(SphinxError::BadMac);
    }
    let len = onion.field.len();
    let mut buf = Zeroizing::new(vec![0u8; 2 * len]);
    buf[..len].copy_from_slice(&onion.field);
    chacha20_xor(&key(b"rho", &shared), 0, &mut buf);
    let (payload_len, n) = read_bigsize(&buf).ok_or(SphinxError::Malformed)?;
    let payload_len = usize::try_from(payload_len).map_err(|_| SphinxError::Malformed)?;
    // BOLT #4: lengths 0 and 1 are reserved; an entry must fit in the field.
    if payload_len < 2 || n + payload_len + MAC_LEN > len {
        return Err(SphinxError::Malformed);
    }
    let payload = buf[n..n + payload_len].to_vec();
    let at = n + payload_len;
    let next_hmac: [u8; MAC_LEN] = buf[at..at + MAC_LEN].try_into().map_err(|_| SphinxError::Malformed)?;
    let next = if next_hmac == [0u8; MAC_LEN] {
        None
    } else {
        let blind = Zeroizing::new(sha256(&[&onion.point, shared.as_slice()]));
        Some(Onion {
            point: G::multiply(&onion.point, &blind)?,
            field: buf[at + MAC_LEN..at + MAC_LEN + len].to_vec(),
            hmac: next_hmac,
        })
    };
    Ok(Peeled {
        payload,
        next,
        shared_secret: shared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigsize_is_minimal_both_ways() {
        for v in [0u64, 0xfc, 0xfd, 0xffff, 0x1_0000, 0xffff_ffff, 0x1_0000_0000] {
            let mut out = Vec::new();
            write_bigsize(v, &mut out);
            assert_eq!(out.len(), bigsize_len(v));
            assert_eq!(read_bigsize(&out), Some((v, out.len())));
        }
        assert_eq!(read_bigsize(&[0xfd, 0x00, 0xfc]), None, "not minimal");
        assert_eq!(read_bigsize(&[0xfe, 0, 0]), None, "short");
    }
}
