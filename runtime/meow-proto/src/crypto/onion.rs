//! The primitives of the Sphinx construction as BOLT #4 specifies it (the Lightning onion):
//! ChaCha20 key streams under a zero nonce, HMAC-SHA256 with arbitrary keys, and the group the
//! onion's ephemeral keys live in.
//!
//! The construction ([`crate::onion`]) is written once over [`OnionGroup`]: MEOW runs it on
//! X25519 ([`X25519Group`]), and a test runs the very same code on secp256k1 against BOLT #4's
//! published test vector. Everything the group must give is a base-point multiplication and a
//! scalar multiplication of an encoded point; blinding then works on any group, because
//! multiplications by several scalars commute (for X25519 too: each X25519 call clamps its
//! scalar, and the product of clamped scalars is the same whatever the order).

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use hmac::{KeyInit, Mac};

use super::CryptoError;

/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// XORs `buf` with the ChaCha20 (RFC 8439) key stream of `key` under the all-zero 96-bit
/// nonce, starting `offset` bytes into the stream. With a zeroed `buf` this *is* the stream.
pub fn chacha20_xor(key: &[u8; 32], offset: u64, buf: &mut [u8]) {
    let mut cipher = ChaCha20::new(key.into(), &[0u8; 12].into());
    cipher.seek(offset);
    cipher.apply_keystream(buf);
}

/// HMAC-SHA256 (RFC 2104) under a key of any length, over the concatenation of `parts`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // HMAC takes keys of every length.
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is HMAC-SHA256 of `parts` under `key`, compared in constant time.
pub fn hmac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8; MAC_LEN]) -> bool {
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(tag).is_ok()
}

/// The group the onion's ephemeral keys live in: points encoded in `POINT_LEN` bytes, 32-byte
/// scalars.
pub trait OnionGroup {
    /// Length of an encoded point.
    const POINT_LEN: usize;

    /// The point of the secret `scalar` (a multiplication of the base point).
    fn public(scalar: &[u8; 32]) -> Result<Vec<u8>, CryptoError>;

    /// `scalar` times the encoded `point`; an invalid point or a result that gives away the
    /// secret (the identity, a point of small order) is an error.
    fn multiply(point: &[u8], scalar: &[u8; 32]) -> Result<Vec<u8>, CryptoError>;
}

/// X25519 (RFC 7748): MEOW's onion group. Public keys are the servers' relay keys.
#[derive(Debug, Clone, Copy)]
pub struct X25519Group;

impl OnionGroup for X25519Group {
    const POINT_LEN: usize = 32;

    fn public(scalar: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        Ok(x25519_dalek::x25519(*scalar, x25519_dalek::X25519_BASEPOINT_BYTES).to_vec())
    }

    fn multiply(point: &[u8], scalar: &[u8; 32]) -> Result<Vec<u8>, CryptoError> {
        let point: [u8; 32] = point.try_into().map_err(|_| CryptoError::BadPublicKey)?;
        let out = x25519_dalek::x25519(*scalar, point);
        // All zeros: the point had small order, and the "shared" secret is known to everyone.
        if out == [0u8; 32] {
            return Err(CryptoError::BadPublicKey);
        }
        Ok(out.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_matches_rfc_8439_and_seeks() {
        // RFC 8439 §2.4.2: key 00..1f, nonce 000000000000004a00000000, counter 1. With a zero
        // nonce we check the stream's own consistency instead: a seek equals skipping bytes.
        let key = [7u8; 32];
        let mut whole = [0u8; 200];
        chacha20_xor(&key, 0, &mut whole);
        let mut tail = [0u8; 100];
        chacha20_xor(&key, 100, &mut tail);
        assert_eq!(&whole[100..], &tail);
        // RFC 8439 §A.1 test vector #1: all-zero key and nonce, counter 0.
        let mut block = [0u8; 64];
        chacha20_xor(&[0; 32], 0, &mut block);
        assert_eq!(
            block[..16],
            [
                0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28
            ]
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let tag = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            tag[..8],
            [0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e],
            "RFC 4231 test case 2"
        );
        assert!(hmac_verify(b"Jefe", &[b"what do ya want for nothing?"], &tag));
        assert!(!hmac_verify(b"Jeff", &[b"what do ya want for nothing?"], &tag));
    }

    #[test]
    fn x25519_blinding_commutes() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let pa = X25519Group::public(&a).unwrap();
        let one = X25519Group::multiply(&X25519Group::multiply(&pa, &b).unwrap(), &c).unwrap();
        let pb = X25519Group::public(&b).unwrap();
        let two = X25519Group::multiply(&X25519Group::multiply(&pb, &c).unwrap(), &a).unwrap();
        assert_eq!(one, two);
        assert!(
            X25519Group::multiply(&[0u8; 32], &a).is_err(),
            "a small-order point is refused"
        );
    }
}
