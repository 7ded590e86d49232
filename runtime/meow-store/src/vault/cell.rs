//! How one compartment's records are named and sealed on disk.
//!
//! A record's physical key is `unit tag (4) || PRF(compartment index key, table || key) (16)`.
//! The unit tag is derived from the header's salt and the slot's index, so anyone can tell which
//! records belong together (and the home can clear a decoy it no longer knows the key of), but
//! not which table a record is in, nor whether a unit is a decoy or a real compartment: there
//! is no per-table prefix. A record's value is `nonce || AES-256-GCM(table, key, value,
//! padding)` with the physical key as associated data, padded to one of a few sizes
//! ([`BUCKETS`]), so sizes say little about contents.

use meow_proto::codec::{Reader, Writer};
use meow_proto::crypto::{self, AeadKey, CryptoRng, NONCE_LEN, SecretKey, TAG_LEN};
use zeroize::Zeroizing;

use super::Table;
use super::header::SlotIndex;

/// The length of a unit tag.
pub(crate) const TAG: usize = 4;
/// The length of a physical key.
pub(crate) const KEY: usize = TAG + 16;
/// The sizes a sealed value is padded to; larger values are padded to a multiple of the last.
pub const BUCKETS: [usize; 5] = [128, 512, 2048, 8192, 32768];

/// A physical key.
pub(crate) type PhysicalKey = [u8; KEY];

/// The unit tag of slot `index` in a home whose header has `salt`.
pub(crate) fn unit_tag(salt: &[u8; 16], index: SlotIndex) -> [u8; TAG] {
    let h = crypto::sha256(&[b"meow/v2/vault-unit", salt, &[index]]);
    let mut t = [0u8; TAG];
    t.copy_from_slice(&h[..TAG]);
    t
}

/// The size a sealed value of `len` bytes (nonce, ciphertext and tag) is padded to.
pub fn bucket(len: usize) -> usize {
    let last = BUCKETS[BUCKETS.len() - 1];
    BUCKETS
        .iter()
        .copied()
        .find(|&b| b >= len)
        .unwrap_or_else(|| len.div_ceil(last) * last)
}

/// The keys of one open compartment.
pub(crate) struct Cell {
    pub(crate) tag: [u8; TAG],
    index: SecretKey,
    data: AeadKey,
}

impl Cell {
    /// The keys derived from a compartment's key for the unit `tag`.
    pub(crate) fn new(key: &SecretKey, tag: [u8; TAG]) -> Self {
        Self {
            tag,
            index: key.expand(b"meow/v2/vault-index"),
            data: AeadKey::new(&key.expand(b"meow/v2/vault-data")),
        }
    }

    /// Where `(table, key)` is stored.
    pub(crate) fn physical_key(&self, table: Table, key: &[u8]) -> PhysicalKey {
        let item = crypto::hmac_sha256(&self.index, &[&[table as u8], key].concat());
        let mut pk = [0u8; KEY];
        pk[..TAG].copy_from_slice(&self.tag);
        pk[TAG..].copy_from_slice(&item.as_bytes()[..KEY - TAG]);
        pk
    }

    /// Seals a record, padded to its bucket.
    pub(crate) fn seal(
        &self,
        pk: &PhysicalKey,
        table: Table,
        key: &[u8],
        value: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Vec<u8> {
        let mut plain = Writer::with_capacity(key.len() + value.len() + 16);
        plain.u8(table as u8).bytes(key).bytes(value);
        let mut plain = Zeroizing::new(plain.into_bytes());
        let sealed_len = NONCE_LEN + plain.len() + TAG_LEN;
        let padded = plain.len() + bucket(sealed_len) - sealed_len;
        plain.resize(padded, 0);
        let nonce: [u8; NONCE_LEN] = crypto::random_bytes(rng);
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plain);
        self.data.seal_in_place(&nonce, pk, &mut out, NONCE_LEN);
        out
    }

    /// Opens a record of this compartment: its table byte, key and value; `None` if it is not
    /// one (another unit's, random bytes, or damaged).
    pub(crate) fn open(&self, pk: &[u8], sealed: &[u8]) -> Option<(u8, Vec<u8>, Zeroizing<Vec<u8>>)> {
        let nonce: [u8; NONCE_LEN] = sealed.get(..NONCE_LEN)?.try_into().ok()?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        self.data.open_in_place(&nonce, pk, &mut buf, NONCE_LEN).ok()?;
        parse_plain(&buf[NONCE_LEN..])
    }

    /// Seals arbitrary plaintext as a record would be (for the fuzz target).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn seal_raw(&self, pk: &PhysicalKey, plain: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; NONCE_LEN];
        out.extend_from_slice(plain);
        self.data.seal_in_place(&[0; NONCE_LEN], pk, &mut out, NONCE_LEN);
        out
    }
}

/// A record's plaintext: `table | bytes(key) | bytes(value) | padding`.
fn parse_plain(plain: &[u8]) -> Option<(u8, Vec<u8>, Zeroizing<Vec<u8>>)> {
    let mut r = Reader::new(plain);
    let table = r.u8("table").ok()?;
    let key = r.bytes(usize::MAX, "record key").ok()?.to_vec();
    let value = Zeroizing::new(r.bytes(usize::MAX, "record value").ok()?.to_vec());
    Some((table, key, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::testing::TestRng;

    #[test]
    fn buckets_and_round_trip() {
        assert_eq!(bucket(1), 128);
        assert_eq!(bucket(128), 128);
        assert_eq!(bucket(129), 512);
        assert_eq!(bucket(40_000), 65_536);
        let mut rng = TestRng::new(1);
        let key = SecretKey::generate(&mut rng);
        let cell = Cell::new(&key, unit_tag(&[1; 16], 2));
        let other = Cell::new(&SecretKey::generate(&mut rng), cell.tag);
        let pk = cell.physical_key(Table::Inbox, b"k");
        assert_ne!(pk, cell.physical_key(Table::Outbox, b"k"), "the table is in the key");
        assert_eq!(pk[..TAG], cell.tag);
        for len in [0, 90, 100, 5000] {
            let sealed = cell.seal(&pk, Table::Inbox, b"k", &vec![9; len], &mut rng);
            assert!(BUCKETS.contains(&sealed.len()), "{len} -> {}", sealed.len());
            let (t, k, v) = cell.open(&pk, &sealed).unwrap();
            assert_eq!((t, k.as_slice(), v.len()), (Table::Inbox as u8, b"k".as_slice(), len));
            assert!(other.open(&pk, &sealed).is_none());
            assert!(cell.open(&cell.physical_key(Table::Inbox, b"j"), &sealed).is_none());
        }
    }
}
