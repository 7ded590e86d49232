//! Version 1 homes, converted to version 2 on their first open.
//!
//! Version 1 had one wrapped key in its header and one keyspace `records` whose keys began with
//! an 8-byte prefix per table. The conversion reads every record with the version 1 keys,
//! writes it into the main compartment of a version 2 layout (keeping the same compartment key,
//! so the integrity mark stays valid), makes that durable, and only then replaces the header;
//! the old keyspace is dropped on the next open. Stopped at any point, it starts again.

use std::path::Path;

use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use meow_proto::codec::{Decode, DecodeError, Reader};
use meow_proto::crypto::{self, AeadKey, CryptoRng, KdfParams, NONCE_LEN, SecretKey};
use zeroize::Zeroizing;

use super::cell::{Cell, unit_tag};
use super::header::{Header, SLOTS, SlotIndex, read_params};
use super::{CELLS, MAIN_KEY, META_FILE, Table, write_atomic};
use crate::StoreError;

/// The version byte of a version 1 header.
pub(crate) const VERSION: u8 = 1;
/// The version 1 keyspace.
pub(crate) const RECORDS: &str = "records";
const WRAP_AAD: &[u8] = b"meow/v1/vault-key";

/// A version 1 header.
pub(crate) struct Meta {
    params: KdfParams,
    salt: [u8; 16],
    nonce: [u8; NONCE_LEN],
    wrapped: Vec<u8>,
}

impl Decode for Meta {
    const WHAT: &'static str = "version 1 vault header";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array::<9>("magic")?;
        r.u8("version")?;
        Ok(Self {
            params: read_params(r)?,
            salt: r.array("salt")?,
            nonce: r.array("nonce")?,
            wrapped: r.bytes(64, "wrapped key")?.to_vec(),
        })
    }
}

/// Converts the version 1 home in `dir` (whose header is `meta_bytes`).
pub(crate) fn convert(
    dir: &Path,
    password: &[u8],
    meta_bytes: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<(), StoreError> {
    let meta = Meta::from_bytes(meta_bytes).map_err(|e| StoreError::Corrupt(format!("{}: {e}", META_FILE)))?;
    let kek = AeadKey::new(&crypto::argon2id(password, &meta.salt, meta.params)?);
    let key = Zeroizing::new(
        kek.open(&meta.nonce, WRAP_AAD, &meta.wrapped)
            .map_err(|_| StoreError::WrongPassword)?,
    );
    let key = SecretKey::from_bytes(
        key.as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("vault key".into()))?,
    );
    let mut header = Header::random(meta.params, rng);
    let slot = crypto::random_below(SLOTS, rng) as SlotIndex;
    header.seal(slot, &header.slot_key(password)?, &key, rng);
    copy_records(dir, &key, &Cell::new(&key, unit_tag(&header.salt, slot)), rng)?;
    write_atomic(&dir.join(META_FILE), &meow_proto::codec::Encode::to_bytes(&header))?;
    tracing::info!("converted the home at {} to vault format 2", dir.display());
    Ok(())
}

/// Copies every version 1 record into `cell`, durably.
fn copy_records(dir: &Path, key: &SecretKey, cell: &Cell, rng: &mut impl CryptoRng) -> Result<(), StoreError> {
    let db = crate::open_database(Database::builder(dir.join("data")).worker_threads(1), dir, "the home")?;
    if db.keyspace_exists(CELLS) {
        // A conversion that stopped before its header was written: start again.
        db.delete_keyspace(db.keyspace(CELLS, KeyspaceCreateOptions::default)?)?;
    }
    let old = db.keyspace(RECORDS, KeyspaceCreateOptions::default)?;
    let new = db.keyspace(CELLS, KeyspaceCreateOptions::default)?;
    let index = key.expand(b"meow/v1/vault-index");
    let data = AeadKey::new(&key.expand(b"meow/v1/vault-data"));
    let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
    for (table, _) in Table::ALL {
        for kv in old.prefix(table_prefix(&index, table)) {
            let (pk, sealed) = kv.into_inner()?;
            let (k, v) = open_v1(&data, &pk, &sealed)?;
            let npk = cell.physical_key(table, &k);
            batch.insert(&new, npk, cell.seal(&npk, table, &k, &v, rng));
        }
    }
    let pk = cell.physical_key(Table::State, MAIN_KEY);
    batch.insert(&new, pk, cell.seal(&pk, Table::State, MAIN_KEY, &[], rng));
    batch.commit()?;
    db.persist(PersistMode::SyncAll)?;
    Ok(())
}

fn table_prefix(index: &SecretKey, table: Table) -> [u8; 8] {
    let prefix = index.expand(&[b"table\0".as_slice(), &[table as u8]].concat());
    let mut p = [0u8; 8];
    p.copy_from_slice(&prefix.as_bytes()[..8]);
    p
}

fn open_v1(data: &AeadKey, pk: &[u8], sealed: &[u8]) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), StoreError> {
    let damaged =
        || StoreError::Corrupt("a version 1 vault record does not decrypt; the home was not converted".into());
    let nonce: [u8; NONCE_LEN] = sealed
        .get(..NONCE_LEN)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(damaged)?;
    let plain = Zeroizing::new(data.open(&nonce, pk, &sealed[NONCE_LEN..]).map_err(|_| damaged())?);
    let mut r = Reader::new(&plain);
    let key = r.bytes(plain.len(), "record key").map_err(|_| damaged())?.to_vec();
    Ok((key, Zeroizing::new(r.rest().to_vec())))
}

/// Writes a version 1 home, as meow 0.1 did, for the conversion's tests.
#[cfg(test)]
pub(crate) fn write_v1(dir: &Path, password: &[u8], records: &[(Table, &[u8], &[u8])], rng: &mut impl CryptoRng) {
    use meow_proto::codec::Writer;
    std::fs::create_dir_all(dir).unwrap();
    let key = SecretKey::generate(rng);
    let salt: [u8; 16] = crypto::random_bytes(rng);
    let nonce: [u8; NONCE_LEN] = crypto::random_bytes(rng);
    let params = KdfParams::TESTING;
    let kek = AeadKey::new(&crypto::argon2id(password, &salt, params).unwrap());
    let mut w = Writer::with_capacity(128);
    w.raw(b"MEOWVAULT").u8(VERSION);
    w.varint(params.memory_kib.into())
        .varint(params.iterations.into())
        .varint(params.parallelism.into());
    w.raw(&salt)
        .raw(&nonce)
        .bytes(&kek.seal(&nonce, WRAP_AAD, key.as_bytes()));
    std::fs::write(dir.join(META_FILE), w.into_bytes()).unwrap();
    let db = Database::builder(dir.join("data")).open().unwrap();
    let ks = db.keyspace(RECORDS, KeyspaceCreateOptions::default).unwrap();
    let index = key.expand(b"meow/v1/vault-index");
    let data = AeadKey::new(&key.expand(b"meow/v1/vault-data"));
    for (table, k, v) in records {
        let item = index.expand(&[b"record\0".as_slice(), &[*table as u8], k].concat());
        let mut pk = [0u8; 24];
        pk[..8].copy_from_slice(&table_prefix(&index, *table));
        pk[8..].copy_from_slice(&item.as_bytes()[..16]);
        let mut plain = Writer::with_capacity(64);
        plain.bytes(k).raw(v);
        let n: [u8; NONCE_LEN] = crypto::random_bytes(rng);
        let mut sealed = n.to_vec();
        sealed.extend_from_slice(&data.seal(&n, &pk, &plain.into_bytes()));
        ks.insert(pk, sealed).unwrap();
    }
    db.persist(PersistMode::SyncAll).unwrap();
}
