//! Entry points for the cargo-fuzz targets (feature `fuzzing`): the decoders of a home's files,
//! which a thief or an examiner can change at will.

use meow_proto::codec::{Decode, Encode};
use meow_proto::crypto::SecretKey;

use super::Table;
use super::cell::{Cell, unit_tag};
use super::header::{Header, SlotKey};
use super::legacy::Meta;

/// Decodes a header: never a panic, and what decodes encodes back to the same bytes (one
/// encoding per value); trying a key against it is an answer, not a crash.
pub fn header(data: &[u8]) {
    if let Ok(h) = Header::from_bytes(data) {
        assert_eq!(h.to_bytes(), data, "a header decodes from a non-canonical encoding");
        let key = SlotKey::from_key(&SecretKey::from_bytes([7; 32]));
        let _ = h.open(&key);
    }
    let _ = Meta::from_bytes(data);
}

/// Parses arbitrary plaintext as a record's (it is sealed first with a fixed key, so the AEAD
/// lets it through): never a panic, and what parses seals and opens back to the same record.
pub fn record(data: &[u8]) {
    let cell = Cell::new(&SecretKey::from_bytes([9; 32]), unit_tag(&[1; 16], 0));
    let pk = cell.physical_key(Table::Inbox, b"fuzz");
    if let Some((t, k, v)) = cell.open(&pk, &cell.seal_raw(&pk, data))
        && let Some(table) = Table::from_u8(t)
    {
        let mut rng = meow_proto::os_rng();
        let again = cell.open(&pk, &cell.seal(&pk, table, &k, &v, &mut rng));
        assert_eq!(
            again.map(|(t2, k2, v2)| (t2, k2, v2.to_vec())),
            Some((t, k, v.to_vec()))
        );
    }
}
