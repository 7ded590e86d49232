//! The vault's header (`vault.meta`): the Argon2id parameters, one salt, and a fixed number of
//! key slots.
//!
//! Each slot is `nonce || AES-256-GCM(kek, compartment key)` with the slot's index in the
//! associated data, where `kek` is Argon2id of a password and the salt. The main compartment,
//! every hidden compartment and every decoy holds one slot; every other slot is random bytes of
//! the same length. A sealed slot and random bytes cannot be told apart without the password, so
//! the header says nothing about how many compartments exist: every home's header has the same
//! size and the same shape. Opening derives the key once and tries every slot, whatever it
//! finds, so the work does not depend on which slot (if any) the password opens.

use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::crypto::{self, AeadKey, CryptoRng, KdfParams, NONCE_LEN, SecretKey, TAG_LEN};
use zeroize::Zeroizing;

use crate::StoreError;

/// The header's magic string: every home has it, real compartments or not.
const MAGIC: &[u8; 9] = b"MEOWVAULT";
/// This format's version (version 1 had one wrapped key and per-table key prefixes).
pub(crate) const VERSION: u8 = 2;
/// The number of key slots: the main compartment and up to seven others.
pub const SLOTS: usize = 8;
/// The length of one slot.
pub(crate) const SLOT_LEN: usize = NONCE_LEN + 32 + TAG_LEN;
const SLOT_AAD: &[u8] = b"meow/v2/vault-slot";

/// A slot's place in the header.
pub(crate) type SlotIndex = u8;

/// The decoded header.
#[derive(Clone)]
pub(crate) struct Header {
    pub(crate) params: KdfParams,
    pub(crate) salt: [u8; 16],
    pub(crate) slots: [[u8; SLOT_LEN]; SLOTS],
}

impl Encode for Header {
    fn encode(&self, w: &mut Writer) {
        w.raw(MAGIC).u8(VERSION);
        w.varint(self.params.memory_kib.into())
            .varint(self.params.iterations.into())
            .varint(self.params.parallelism.into());
        w.raw(&self.salt);
        for s in &self.slots {
            w.raw(s);
        }
    }
}

impl Decode for Header {
    const WHAT: &'static str = "vault header";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<9>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic { what: "vault" });
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion { what: "vault", version });
        }
        let params = read_params(r)?;
        let salt = r.array("salt")?;
        let mut slots = [[0u8; SLOT_LEN]; SLOTS];
        for s in &mut slots {
            *s = r.array("key slot")?;
        }
        Ok(Self { params, salt, slots })
    }
}

/// Reads the three Argon2id parameters (the same encoding in versions 1 and 2).
pub(crate) fn read_params(r: &mut Reader<'_>) -> Result<KdfParams, DecodeError> {
    let mut u32f = |w| Ok::<u32, DecodeError>(r.varint_max(u32::MAX.into(), w)? as u32);
    Ok(KdfParams {
        memory_kib: u32f("kdf memory")?,
        iterations: u32f("kdf iterations")?,
        parallelism: u32f("kdf parallelism")?,
    })
}

/// The version byte of a header, if it has the magic string.
pub(crate) fn version_of(bytes: &[u8]) -> Option<u8> {
    (bytes.get(..MAGIC.len())? == MAGIC).then(|| bytes.get(MAGIC.len()).copied())?
}

/// The key that opens slots for one password.
pub(crate) struct SlotKey(AeadKey);

impl Header {
    /// A header whose every slot is random.
    pub(crate) fn random(params: KdfParams, rng: &mut impl CryptoRng) -> Self {
        let mut slots = [[0u8; SLOT_LEN]; SLOTS];
        for s in &mut slots {
            rng.fill_bytes(s);
        }
        Self {
            params,
            salt: crypto::random_bytes(rng),
            slots,
        }
    }

    /// The slot key for `password` (one Argon2id run).
    pub(crate) fn slot_key(&self, password: &[u8]) -> Result<SlotKey, StoreError> {
        Ok(SlotKey(AeadKey::new(&crypto::argon2id(
            password,
            &self.salt,
            self.params,
        )?)))
    }

    /// The slot `key` opens and the compartment key in it. Every slot is tried, and the first
    /// match is kept without stopping early, so the work is the same for every outcome.
    pub(crate) fn open(&self, key: &SlotKey) -> Option<(SlotIndex, SecretKey)> {
        let mut found = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(k) = open_slot(key, i as SlotIndex, slot) {
                found = found.or(Some((i as SlotIndex, k)));
            }
        }
        found
    }

    /// Seals `compartment` into slot `index` under `key`.
    pub(crate) fn seal(&mut self, index: SlotIndex, key: &SlotKey, compartment: &SecretKey, rng: &mut impl CryptoRng) {
        let nonce: [u8; NONCE_LEN] = crypto::random_bytes(rng);
        let sealed = key.0.seal(&nonce, &slot_aad(index), compartment.as_bytes());
        let slot = &mut self.slots[usize::from(index)];
        slot[..NONCE_LEN].copy_from_slice(&nonce);
        slot[NONCE_LEN..].copy_from_slice(&sealed);
    }

    /// Fills slot `index` with random bytes again.
    #[cfg(test)]
    pub(crate) fn clear(&mut self, index: SlotIndex, rng: &mut impl CryptoRng) {
        rng.fill_bytes(&mut self.slots[usize::from(index)]);
    }
}

impl SlotKey {
    /// A slot key nobody can derive from a password: a decoy's, forgotten once it is written.
    pub(crate) fn random(rng: &mut impl CryptoRng) -> Self {
        Self::from_key(&SecretKey::generate(rng))
    }

    /// The slot key for a derived key.
    pub(crate) fn from_key(key: &SecretKey) -> Self {
        Self(AeadKey::new(key))
    }
}

fn slot_aad(index: SlotIndex) -> Vec<u8> {
    [SLOT_AAD, &[index]].concat()
}

fn open_slot(key: &SlotKey, index: SlotIndex, slot: &[u8; SLOT_LEN]) -> Option<SecretKey> {
    let nonce: [u8; NONCE_LEN] = slot[..NONCE_LEN].try_into().ok()?;
    let plain = Zeroizing::new(key.0.open(&nonce, &slot_aad(index), &slot[NONCE_LEN..]).ok()?);
    Some(SecretKey::from_bytes(plain.as_slice().try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::testing::TestRng;

    #[test]
    fn a_password_opens_its_slot_only_and_the_header_round_trips() {
        let mut rng = TestRng::new(7);
        let mut h = Header::random(KdfParams::TESTING, &mut rng);
        let main = SecretKey::generate(&mut rng);
        let hidden = SecretKey::generate(&mut rng);
        h.seal(3, &h.slot_key(b"main").unwrap(), &main, &mut rng);
        h.seal(6, &h.slot_key(b"hidden").unwrap(), &hidden, &mut rng);
        let h = Header::from_bytes(&h.to_bytes()).unwrap();
        let (i, k) = h.open(&h.slot_key(b"main").unwrap()).unwrap();
        assert_eq!((i, k.as_bytes()), (3, main.as_bytes()));
        let (i, k) = h.open(&h.slot_key(b"hidden").unwrap()).unwrap();
        assert_eq!((i, k.as_bytes()), (6, hidden.as_bytes()));
        assert!(h.open(&h.slot_key(b"nope").unwrap()).is_none());
        // A slot sealed for one index does not open at another.
        let mut moved = h.clone();
        moved.slots[5] = moved.slots[3];
        moved.clear(3, &mut rng);
        assert!(moved.open(&moved.slot_key(b"main").unwrap()).is_none());
    }

    #[test]
    fn every_header_has_the_same_length() {
        let mut rng = TestRng::new(8);
        let empty = Header::random(KdfParams::DEFAULT, &mut rng).to_bytes();
        let mut full = Header::random(KdfParams::DEFAULT, &mut rng);
        for i in 0..SLOTS as u8 {
            full.seal(i, &SlotKey::random(&mut rng), &SecretKey::generate(&mut rng), &mut rng);
        }
        assert_eq!(empty.len(), full.to_bytes().len());
        assert_eq!(version_of(&empty), Some(VERSION));
        assert_eq!(version_of(b"MEOWVAUL"), None);
    }
}
