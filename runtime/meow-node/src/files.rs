//! Files in and out (the format is `meow_proto::file`). Sending seals every chunk and queues
//! them in one durable write, so a crash, a server away or a restart only delays them: the
//! outbox delivers what is left. Receiving stores each chunk in the vault as it comes (in the
//! same write as the message's id, so a crash loses neither or both); when the last one is in,
//! the whole file's SHA-256 is checked and one inbox item says a file arrived (content type
//! `file`, a JSON description: [`FileRecord::describe`]). The chunks stay in the vault,
//! encrypted like everything else, until the file is deleted; [`Node::read_file`] reads them.
//!
//! Bounds against a hostile contact: a file larger than the home's limit is refused at its
//! first chunk, a contact has at most [`MAX_PARTIAL_PER_CONTACT`] files on their way in, and a
//! transfer without a new chunk for [`STALE_MS`] is dropped.

use std::collections::BTreeMap;

use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::envelope::ContentType;
use meow_proto::file::{FileChunk, FileMeta, TransferId};
use meow_store::vault::{Vault, VaultBatch};

use crate::messaging::Queued;
use crate::records::{InboxItem, OutboxItem};
use crate::{Node, NodeError, Result, Table};

/// Largest file a home sends or takes in unless told otherwise ([`Node::set_file_limit`]).
pub const DEFAULT_MAX_FILE: u64 = 64 * 1024 * 1024;
/// Files one contact may have on their way in at once.
pub const MAX_PARTIAL_PER_CONTACT: usize = 8;
/// A transfer with no new chunk for this long is dropped: the sender's server has let its
/// messages expire by then.
pub const STALE_MS: u64 = crate::REPLAY_WINDOW_MS;

const RECORD: u8 = b'f';
const PART: u8 = b'p';

/// A file received, or on its way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// The contact it comes from.
    pub contact: u64,
    /// What the sender says it is.
    pub meta: FileMeta,
    /// Which chunks are in (a bit per chunk).
    have: Vec<u8>,
    /// How many chunks are in.
    pub received: u32,
    /// When the first chunk came, Unix ms.
    pub first_ms: u64,
    /// When the last chunk came, Unix ms.
    pub last_ms: u64,
}

impl FileRecord {
    fn new(contact: u64, meta: FileMeta, now: u64) -> Self {
        let have = vec![0; meta.chunks().div_ceil(8) as usize];
        Self {
            contact,
            meta,
            have,
            received: 0,
            first_ms: now,
            last_ms: now,
        }
    }

    /// Whether every chunk is in (and the digest was checked: a file whose digest fails is
    /// dropped, never kept complete).
    pub fn complete(&self) -> bool {
        self.received == self.meta.chunks()
    }

    fn has(&self, index: u32) -> bool {
        self.have[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    fn mark(&mut self, index: u32) {
        self.have[(index / 8) as usize] |= 1 << (index % 8);
        self.received += 1;
    }

    /// What plugins, recipes and `meow inbox --json` see of the file: its id (for
    /// `meow file save`), name, media type, size and SHA-256.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.meta.id.to_hex(),
            "name": self.meta.name,
            "media_type": self.meta.media_type,
            "size": self.meta.size,
            "sha256": meow_proto::codec::to_hex(&self.meta.digest),
        })
    }
}

impl Encode for FileRecord {
    fn encode(&self, w: &mut Writer) {
        // The description is encoded as in a chunk.
        w.u8(1).varint(self.contact);
        self.meta.encode(w);
        w.bytes(&self.have).varint(self.received.into());
        w.varint(self.first_ms).varint(self.last_ms);
    }
}

impl Decode for FileRecord {
    const WHAT: &'static str = "file record";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("file record version")?;
        if version != 1 {
            return Err(DecodeError::UnsupportedVersion {
                what: "file record",
                version,
            });
        }
        let contact = r.varint("file contact")?;
        let meta = FileMeta::decode(r)?;
        let have = r.bytes(meta.chunks().div_ceil(8) as usize, "chunks in")?.to_vec();
        if have.len() != meta.chunks().div_ceil(8) as usize {
            return Err(DecodeError::Invalid {
                what: "chunks in",
                reason: "not one bit per chunk",
            });
        }
        Ok(Self {
            contact,
            received: r.varint_max(meta.chunks().into(), "chunks received")? as u32,
            meta,
            have,
            first_ms: r.varint("first chunk time")?,
            last_ms: r.varint("last chunk time")?,
        })
    }
}

fn ensure_complete(record: &FileRecord) -> Result<()> {
    if record.complete() {
        return Ok(());
    }
    Err(NodeError::FileIncomplete {
        id: record.meta.id.to_hex(),
        received: record.received,
        chunks: record.meta.chunks(),
    })
}

fn record_key(contact: u64, id: &TransferId) -> Vec<u8> {
    [&contact.to_be_bytes()[..], &[RECORD], &id.0].concat()
}

fn part_key(contact: u64, id: &TransferId, index: u32) -> Vec<u8> {
    [&contact.to_be_bytes()[..], &[PART], &id.0, &index.to_be_bytes()].concat()
}

/// The keys of the file table that belong to `contact` (to move them with it).
pub(crate) fn keys_of(contact: u64, keys: &[Vec<u8>]) -> impl Iterator<Item = &Vec<u8>> {
    keys.iter()
        .filter(move |k| k.get(..8) == Some(&contact.to_be_bytes()[..]))
}

/// What a poll's chunks change, written in the poll's batch.
#[derive(Default)]
pub(crate) struct FileIntake {
    records: BTreeMap<(u64, TransferId), Option<FileRecord>>,
    /// Chunks by their key, with the contact they come from.
    parts: BTreeMap<Vec<u8>, (u64, Vec<u8>)>,
    dropped: Vec<(u64, FileMeta)>,
}

impl FileIntake {
    /// Puts what was taken in into `b`.
    pub(crate) fn write(self, node: &Node, b: &mut VaultBatch<'_>) {
        let mut rng = node.env.rng();
        for ((contact, id), record) in &self.records {
            let home = node.home_of(*contact);
            match record {
                Some(r) => b.put_in(home, Table::Files, &record_key(*contact, id), &r.to_bytes(), &mut rng),
                None => b.delete(Table::Files, &record_key(*contact, id)),
            }
        }
        for (key, (contact, data)) in &self.parts {
            b.put_in(node.home_of(*contact), Table::Files, key, data, &mut rng);
        }
        for (contact, meta) in &self.dropped {
            for index in 0..meta.chunks() {
                b.delete(Table::Files, &part_key(*contact, &meta.id, index));
            }
        }
    }
}

impl Node {
    /// The largest file this home sends or takes in.
    pub fn set_file_limit(&mut self, bytes: u64) {
        self.file_limit = bytes;
    }

    /// The largest file this home sends or takes in.
    pub fn file_limit(&self) -> u64 {
        self.file_limit
    }

    /// Splits `data` into chunks to `to` and queues them all in one durable write; returns the
    /// file's description and the outbox items to deliver ([`crate::sync::deliver_all`]). With
    /// `by`, the chunks are marked automatic and count against that program's outbox quota.
    pub fn queue_file(
        &mut self,
        to: &str,
        name: &str,
        media_type: &str,
        data: &[u8],
        by: Option<&str>,
    ) -> Result<(FileMeta, Vec<OutboxItem>)> {
        let id = TransferId::random(&mut self.env.rng());
        let meta = FileMeta::describe(id, name, media_type, data)?;
        let items = self.queue_described(to, &meta, data, by)?;
        Ok((meta, items))
    }

    /// Like [`Node::queue_file`], for a file already described (`meta` must describe `data`).
    pub fn queue_described(
        &mut self,
        to: &str,
        meta: &FileMeta,
        data: &[u8],
        by: Option<&str>,
    ) -> Result<Vec<OutboxItem>> {
        let contact = self.contact_id(to)?;
        if data.len() as u64 > self.file_limit {
            return Err(NodeError::FileTooLarge {
                size: data.len() as u64,
                limit: self.file_limit,
            });
        }
        if !meta.matches(data) {
            return Err(NodeError::Internal("a file's description does not match its data"));
        }
        let messages = FileChunk::split(meta, data)
            .into_iter()
            .map(|chunk| Queued {
                automatic: by.is_some(),
                by: by.map(str::to_owned),
                ..Queued::new(contact, ContentType::FILE, chunk.to_bytes())
            })
            .collect();
        let items = self.queue_all(messages)?;
        tracing::info!(contact = to, file = %meta.id, size = data.len(), chunks = meta.chunks(), "file queued");
        Ok(items)
    }

    /// Takes in one chunk from contact `cid`: `Ok(Some)` the inbox item when it completes its
    /// file, `Ok(None)` when more are to come (or it was a duplicate), `Err` why it was dropped.
    pub(crate) fn take_chunk(
        &mut self,
        cid: u64,
        content: &[u8],
        intake: &mut FileIntake,
        item: InboxItem,
    ) -> Result<std::result::Result<Option<InboxItem>, String>> {
        let chunk = match FileChunk::from_bytes(content) {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("file chunk: {e}"))),
        };
        let now = self.env.now_ms();
        let key = (cid, chunk.meta.id);
        let mut record = match self.file_record(cid, &chunk.meta.id, intake)? {
            Some(r) => r,
            None => match self.admit(cid, &chunk.meta, intake, now)? {
                Ok(()) => FileRecord::new(cid, chunk.meta.clone(), now),
                Err(why) => return Ok(Err(why)),
            },
        };
        if record.meta != chunk.meta {
            return Ok(Err(format!(
                "file {}: a chunk disagrees with the file's description",
                chunk.meta.id
            )));
        }
        if record.complete() || record.has(chunk.index) {
            return Ok(Ok(None));
        }
        record.mark(chunk.index);
        record.last_ms = now;
        intake
            .parts
            .insert(part_key(cid, &chunk.meta.id, chunk.index), (cid, chunk.data));
        if !record.complete() {
            intake.records.insert(key, Some(record));
            return Ok(Ok(None));
        }
        let data = assemble(&self.vault, &record, |k| intake.parts.get(k).map(|(_, d)| d.clone()))?;
        if !record.meta.matches(&data) {
            intake.records.insert(key, None);
            let prefix = part_key(cid, &record.meta.id, 0);
            intake
                .parts
                .retain(|k, _| k[..prefix.len() - 4] != prefix[..prefix.len() - 4]);
            intake.dropped.push((cid, record.meta.clone()));
            return Ok(Err(format!(
                "file {}: its content does not match its SHA-256",
                record.meta.id
            )));
        }
        let described = record.describe().to_string().into_bytes();
        intake.records.insert(key, Some(record));
        Ok(Ok(Some(InboxItem {
            content_type: ContentType::FILE,
            content: described,
            ..item
        })))
    }

    /// The record of a transfer, from this poll's intake or the vault.
    fn file_record(&self, cid: u64, id: &TransferId, intake: &FileIntake) -> Result<Option<FileRecord>> {
        if let Some(r) = intake.records.get(&(cid, *id)) {
            return Ok(r.clone());
        }
        Ok(self
            .vault
            .get(Table::Files, &record_key(cid, id))?
            .map(|b| FileRecord::from_bytes(&b))
            .transpose()?)
    }

    /// Whether a new transfer from `cid` may start: within the size limit, and the contact
    /// under its number of files on their way in (stale ones are dropped first).
    fn admit(
        &self,
        cid: u64,
        meta: &FileMeta,
        intake: &mut FileIntake,
        now: u64,
    ) -> Result<std::result::Result<(), String>> {
        if meta.size > self.file_limit {
            return Ok(Err(format!(
                "file {} of {} bytes: larger than this home takes ({} bytes)",
                meta.id, meta.size, self.file_limit
            )));
        }
        let mut partial = 0;
        for r in self.file_records(Some(cid))? {
            let pending = intake.records.get(&(cid, r.meta.id)).cloned().unwrap_or(Some(r));
            let Some(r) = pending.filter(|r| !r.complete()) else {
                continue;
            };
            if r.last_ms + STALE_MS < now {
                tracing::info!(file = %r.meta.id, "a file that stopped coming is dropped");
                intake.records.insert((cid, r.meta.id), None);
                intake.dropped.push((cid, r.meta));
            } else {
                partial += 1;
            }
        }
        if partial >= MAX_PARTIAL_PER_CONTACT {
            return Ok(Err(format!(
                "file {}: this contact already has {partial} files on their way in",
                meta.id
            )));
        }
        Ok(Ok(()))
    }

    /// Files received and on their way in (of one contact, or all), oldest first.
    pub fn file_records(&self, contact: Option<u64>) -> Result<Vec<FileRecord>> {
        records(&self.vault, contact)
    }

    /// The file with this id (its hex, or a unique prefix of it).
    pub fn file(&self, id: &str) -> Result<FileRecord> {
        find(&self.vault, id)
    }

    /// The whole content of a received file, checked against its SHA-256 again.
    pub fn read_file(&self, record: &FileRecord) -> Result<Vec<u8>> {
        ensure_complete(record)?;
        let data = assemble(&self.vault, record, |_| None)?;
        if !record.meta.matches(&data) {
            return Err(NodeError::DamagedRecord(
                "a received file no longer matches its SHA-256",
            ));
        }
        Ok(data)
    }

    /// Deletes a file (received or on its way in) and its chunks.
    pub fn delete_file(&mut self, record: &FileRecord) -> Result<()> {
        let mut b = self.vault.batch();
        b.delete(Table::Files, &record_key(record.contact, &record.meta.id));
        for index in 0..record.meta.chunks() {
            b.delete(Table::Files, &part_key(record.contact, &record.meta.id, index));
        }
        b.commit()?;
        Ok(())
    }
}

/// The file's bytes, chunk after chunk, from `pending` or the vault.
fn assemble(vault: &Vault, record: &FileRecord, pending: impl Fn(&[u8]) -> Option<Vec<u8>>) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(record.meta.size as usize);
    for index in 0..record.meta.chunks() {
        let key = part_key(record.contact, &record.meta.id, index);
        match pending(&key) {
            Some(d) => data.extend_from_slice(&d),
            None => data.extend_from_slice(&chunk(vault, &key)?),
        }
    }
    Ok(data)
}

fn chunk(vault: &Vault, key: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    vault
        .get(Table::Files, key)?
        .ok_or(NodeError::DamagedRecord("a chunk of a received file is missing"))
}

/// Files received and on their way in (of one contact, or all) in the open compartments,
/// oldest first.
pub fn records(vault: &Vault, contact: Option<u64>) -> Result<Vec<FileRecord>> {
    let mut out = Vec::new();
    for k in vault.keys(Table::Files).iter().filter(|k| k.get(8) == Some(&RECORD)) {
        if contact.is_some_and(|c| k.get(..8) != Some(&c.to_be_bytes()[..])) {
            continue;
        }
        if let Some(b) = vault.get(Table::Files, k)? {
            out.push(FileRecord::from_bytes(&b)?);
        }
    }
    out.sort_by_key(|r| r.first_ms);
    Ok(out)
}

/// The file with this id (its hex, or a unique prefix of it).
pub fn find(vault: &Vault, id: &str) -> Result<FileRecord> {
    let id = id.to_ascii_lowercase();
    let mut found = records(vault, None)?
        .into_iter()
        .filter(|r| !id.is_empty() && r.meta.id.to_hex().starts_with(&id));
    match (found.next(), found.next()) {
        (Some(r), None) => Ok(r),
        (None, _) => Err(NodeError::UnknownFile(id)),
        (Some(_), Some(_)) => Err(NodeError::AmbiguousFile(id)),
    }
}

/// Bytes `offset..offset + len` of a received file (fewer at its end), reading only the
/// chunks that hold them.
pub fn read_range(vault: &Vault, record: &FileRecord, offset: u64, len: usize) -> Result<Vec<u8>> {
    ensure_complete(record)?;
    let end = offset.saturating_add(len as u64).min(record.meta.size);
    let chunk_len = meow_proto::file::CHUNK_LEN as u64;
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut at = offset;
    while at < end {
        let data = chunk(
            vault,
            &part_key(record.contact, &record.meta.id, (at / chunk_len) as u32),
        )?;
        let from = (at % chunk_len) as usize;
        let to = data.len().min(from + (end - at) as usize);
        out.extend_from_slice(&data[from..to]);
        at += (to - from) as u64;
    }
    Ok(out)
}
