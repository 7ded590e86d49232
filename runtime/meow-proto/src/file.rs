//! Files larger than one message. A file travels as chunks, each an ordinary message of
//! content type [`ContentType::FILE`](crate::envelope::ContentType::FILE) in the conversation:
//! each chunk is end-to-end encrypted, signed, padded and acknowledged like any message, and
//! goes through the outbox and the server's mailbox like one. Every chunk carries the whole
//! description ([`FileMeta`]), so chunks may arrive in any order, over days and restarts, and
//! the first one to arrive tells the receiver what to expect; the SHA-256 of the whole file
//! checks what was put together.
//!
//! The chunk size is fixed by the protocol ([`CHUNK_LEN`]), so the number of chunks and each
//! chunk's length follow from the file's size: a receiver refuses a chunk whose length or index
//! does not fit, and a sender cannot make it store more than the size it announced.
//!
//! ```
//! use meow_proto::codec::{Decode, Encode};
//! use meow_proto::file::{FileChunk, FileMeta, TransferId};
//!
//! let data = vec![7u8; 300_000];
//! let meta = FileMeta::describe(TransferId([1; 16]), "log.txt", "text/plain", &data).unwrap();
//! let chunks = FileChunk::split(&meta, &data);
//! assert_eq!(chunks.len(), 3);
//! let again = FileChunk::from_bytes(&chunks[2].to_bytes()).unwrap();
//! assert_eq!(again.meta, meta);
//! assert_eq!(again.data.len(), 300_000 - 2 * meow_proto::file::CHUNK_LEN);
//! ```

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::crypto;

/// Bytes of file data in every chunk but the last. With the chunk's header and the message's
/// own fields it fits the largest padding class with room to spare (a rotation offer with a
/// post-quantum key may travel in the same message).
pub const CHUNK_LEN: usize = 112 * 1024;
/// Longest file name, in bytes.
pub const MAX_NAME: usize = 255;
/// Longest media type, in bytes.
pub const MAX_MEDIA_TYPE: usize = 127;
/// Largest file the format can describe (chunk indexes fit in 32 bits with room to spare).
pub const MAX_FILE_SIZE: u64 = 1 << 40;
/// Version of the chunk format.
const FORMAT: u8 = 1;

/// Names one transfer between two people (random, chosen by the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub [u8; 16]);

impl TransferId {
    /// A fresh random id.
    pub fn random(rng: &mut impl crypto::CryptoRng) -> Self {
        let mut id = [0; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        crate::codec::to_hex(&self.0)
    }

    /// Reads lowercase or uppercase hex of exactly 16 bytes.
    pub fn from_hex(s: &str) -> Option<Self> {
        crate::codec::from_hex(s).map(Self)
    }
}

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a file cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The name is not a plain file name.
    #[error("file name {0:?}: {1}")]
    BadName(String, &'static str),
    /// The media type is not `type/subtype`.
    #[error("media type {0:?} is not type/subtype")]
    BadMediaType(String),
    /// Larger than the format allows.
    #[error("file of {0} bytes: larger than the format allows ({MAX_FILE_SIZE})")]
    TooLarge(u64),
}

/// What a file is: the same in every chunk of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The transfer.
    pub id: TransferId,
    /// A plain file name (no directory part): a receiver may save under it.
    pub name: String,
    /// Its media type, e.g. `application/pdf`.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub digest: [u8; 32],
}

impl FileMeta {
    /// Describes `data` for sending under `name`, checking the name and media type.
    pub fn describe(id: TransferId, name: &str, media_type: &str, data: &[u8]) -> Result<Self, FileError> {
        check_name(name).map_err(|why| FileError::BadName(name.to_owned(), why))?;
        if !is_media_type(media_type) {
            return Err(FileError::BadMediaType(media_type.to_owned()));
        }
        let size = data.len() as u64;
        if size > MAX_FILE_SIZE {
            return Err(FileError::TooLarge(size));
        }
        Ok(Self {
            id,
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            size,
            digest: crypto::sha256(&[data]),
        })
    }

    /// How many chunks the file travels in (an empty file: one empty chunk).
    pub fn chunks(&self) -> u32 {
        // At most MAX_FILE_SIZE / CHUNK_LEN + 1, well below u32::MAX.
        (self.size.div_ceil(CHUNK_LEN as u64).max(1)) as u32
    }

    /// The length of chunk `index` (`None` past the last).
    pub fn chunk_len(&self, index: u32) -> Option<usize> {
        if index >= self.chunks() {
            return None;
        }
        let start = u64::from(index) * CHUNK_LEN as u64;
        Some((self.size - start).min(CHUNK_LEN as u64) as usize)
    }

    /// Whether `data` is the file described (its size and digest).
    pub fn matches(&self, data: &[u8]) -> bool {
        data.len() as u64 == self.size && crypto::sha256(&[data]) == self.digest
    }
}

/// One chunk of a file, as carried in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    /// What the file is.
    pub meta: FileMeta,
    /// Which chunk, from 0.
    pub index: u32,
    /// Its bytes: [`FileMeta::chunk_len`] of them.
    pub data: Vec<u8>,
}

impl FileChunk {
    /// The chunks of `data`, which `meta` describes.
    pub fn split(meta: &FileMeta, data: &[u8]) -> Vec<FileChunk> {
        let pieces: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(CHUNK_LEN).collect()
        };
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| FileChunk {
                meta: meta.clone(),
                index: i as u32,
                data: piece.to_vec(),
            })
            .collect()
    }
}

impl Encode for FileMeta {
    fn encode(&self, w: &mut Writer) {
        w.raw(&self.id.0).varint(self.size).raw(&self.digest);
        w.string(&self.name).string(&self.media_type);
    }
}

impl Decode for FileMeta {
    const WHAT: &'static str = "file description";

    /// Reads a description, refusing a name that is not a plain file name and a media type
    /// that is not `type/subtype`.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = TransferId(r.array("transfer id")?);
        let size = r.varint_max(MAX_FILE_SIZE, "file size")?;
        let digest = r.array("file digest")?;
        let name = r.string(MAX_NAME, "file name")?.to_owned();
        check_name(&name).map_err(|reason| invalid("file name", reason))?;
        let media_type = r.string(MAX_MEDIA_TYPE, "media type")?.to_owned();
        if !is_media_type(&media_type) {
            return Err(invalid("media type", "not type/subtype"));
        }
        Ok(Self {
            id,
            name,
            media_type,
            size,
            digest,
        })
    }
}

impl Encode for FileChunk {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT);
        self.meta.encode(w);
        w.varint(self.index.into()).bytes(&self.data);
    }
}

impl Decode for FileChunk {
    const WHAT: &'static str = "file chunk";

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let format = r.u8("file chunk format")?;
        if format != FORMAT {
            return Err(DecodeError::UnsupportedVersion {
                what: "file chunk",
                version: format,
            });
        }
        let meta = FileMeta::decode(r)?;
        let index = r.varint_max(u32::MAX.into(), "chunk index")? as u32;
        let expected = meta
            .chunk_len(index)
            .ok_or(invalid("chunk index", "past the file's last chunk"))?;
        let data = r.bytes(CHUNK_LEN, "chunk data")?;
        if data.len() != expected {
            return Err(invalid("chunk data", "not the length the file's size gives this chunk"));
        }
        Ok(Self {
            meta,
            index,
            data: data.to_vec(),
        })
    }
}

fn invalid(what: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::Invalid { what, reason }
}

/// Why `name` is not a plain file name, if it is not: it must be 1 to [`MAX_NAME`] bytes, with
/// no directory separator, control character or leading dot, so that saving under it cannot
/// leave the folder chosen or hide the file.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("must be 1 to 255 bytes");
    }
    if name.starts_with('.') {
        return Err("must not start with a dot");
    }
    if name.chars().any(|c| c == '/' || c == '\\' || c.is_control()) {
        return Err("must not hold a slash, a backslash or a control character");
    }
    if name.trim() != name {
        return Err("must not start or end with a space");
    }
    Ok(())
}

/// Whether `s` looks like `type/subtype` (RFC 6838's restricted names, parameters not allowed).
fn is_media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    s.len() <= MAX_MEDIA_TYPE && matches!(s.split_once('/'), Some((a, b)) if token(a) && token(b))
}

/// A media type guessed from a file name's extension (`application/octet-stream` if unknown).
pub fn media_type_for(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "log") => "text/plain",
        Some("csv") => "text/csv",
        Some("md") => "text/markdown",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        Some("wasm") => "application/wasm",
        Some("yaml" | "yml") => "application/yaml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: usize) -> (FileMeta, Vec<u8>) {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        (
            FileMeta::describe(TransferId([9; 16]), "a.bin", "application/octet-stream", &data).unwrap(),
            data,
        )
    }

    #[test]
    fn chunk_lengths_follow_from_the_size() {
        for (size, count, last) in [(0, 1, 0), (1, 1, 1), (CHUNK_LEN, 1, CHUNK_LEN), (CHUNK_LEN + 1, 2, 1)] {
            let (m, data) = meta(size);
            assert_eq!(m.chunks(), count, "size {size}");
            assert_eq!(m.chunk_len(count - 1), Some(last));
            assert_eq!(m.chunk_len(count), None);
            let chunks = FileChunk::split(&m, &data);
            assert_eq!(chunks.len(), count as usize);
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
            assert!(m.matches(&joined));
        }
    }

    #[test]
    fn round_trip_and_a_fixed_vector() {
        let (m, data) = meta(3);
        let chunk = &FileChunk::split(&m, &data)[0];
        let bytes = chunk.to_bytes();
        // format, id, size, digest, name, media type, index, data
        let mut expected = vec![1];
        expected.extend([9; 16]);
        expected.push(3);
        expected.extend(crypto::sha256(&[&[0, 1, 2]]));
        expected.extend(b"\x05a.bin\x18application/octet-stream\x00\x03\x00\x01\x02");
        assert_eq!(bytes, expected);
        assert_eq!(FileChunk::from_bytes(&bytes).unwrap(), *chunk);
    }

    #[test]
    fn a_chunk_that_does_not_fit_its_size_is_refused() {
        let (m, data) = meta(CHUNK_LEN + 10);
        let mut chunks = FileChunk::split(&m, &data);
        let mut long = chunks.pop().unwrap();
        long.data.push(0);
        assert_eq!(
            FileChunk::from_bytes(&long.to_bytes()),
            Err(invalid("chunk data", "not the length the file's size gives this chunk"))
        );
        let mut past = chunks.pop().unwrap();
        past.index = 2;
        assert_eq!(
            FileChunk::from_bytes(&past.to_bytes()),
            Err(invalid("chunk index", "past the file's last chunk"))
        );
    }

    #[test]
    fn names_that_could_leave_a_folder_are_refused() {
        for bad in [
            "",
            "../x",
            "a/b",
            "a\\b",
            ".hidden",
            "..",
            "a\nb",
            " a",
            &"x".repeat(256),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
            let id = TransferId([0; 16]);
            assert!(matches!(
                FileMeta::describe(id, bad, "text/plain", b""),
                Err(FileError::BadName(..))
            ));
        }
        let (mut m, data) = meta(1);
        m.name = "../../etc/passwd".into();
        let chunk = FileChunk::split(&m, &data).remove(0);
        assert!(matches!(
            FileChunk::from_bytes(&chunk.to_bytes()),
            Err(DecodeError::Invalid { what: "file name", .. })
        ));
        assert_eq!(TransferId::from_hex(&m.id.to_hex()), Some(m.id));
        assert_eq!(TransferId::from_hex("zz"), None);
        for good in ["report.pdf", "é t é.txt", "a..b"] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn media_types() {
        assert!(is_media_type("image/png"));
        assert!(is_media_type("application/vnd.api+json"));
        for bad in ["", "text", "text/", "/x", "text/plain; charset=utf-8", "a/b/c"] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
        assert_eq!(media_type_for("Photo.JPG"), "image/jpeg");
        assert_eq!(media_type_for("noext"), "application/octet-stream");
    }
}
