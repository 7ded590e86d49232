//! The integrity mark: a witness, outside the database, of how far its writes have come.
//!
//! fjall recovers a damaged journal by cutting it at the first bad entry, silently: a journal
//! truncated or overwritten in the middle opens "fine" with the writes after the damage gone.
//! So every commit also stores a generation number (one more than the last) inside the batch,
//! and once the batch is durable the generation is written to the mark file beside the
//! database. On open, a database whose generation is below its mark has lost writes.
//!
//! The mark needs no fsync of its own: it is written only after the journal's fsync, so it can
//! lag behind the database (a crash right after a commit) but never run ahead of it; it is
//! synced when the store closes. It has two slots, written alternately, so a torn write of one
//! leaves the other. Each slot is sealed by a [`Seal`]: the vault's encrypts it (no plaintext
//! count of writes on disk), the server's checksums it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// How a mark slot is sealed and opened.
pub trait Seal: Send + Sync {
    /// The size of a sealed slot.
    const LEN: usize;
    /// Seals a generation.
    fn seal(&self, generation: u64) -> Vec<u8>;
    /// Opens a slot, if it is intact.
    fn open(&self, slot: &[u8]) -> Option<u64>;
}

/// What the mark says about a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Integrity {
    /// The generation inside the store.
    pub generation: u64,
    /// The generation of the mark, if there is a readable one.
    pub mark: Option<u64>,
    /// The mark file exists but no slot of it is intact.
    pub mark_damaged: bool,
}

impl Integrity {
    /// What is wrong, in one line, if anything.
    pub fn problem(&self) -> Option<String> {
        match (self.mark, self.mark_damaged) {
            (Some(m), _) if m > self.generation => Some(format!(
                "its journal lost its last {} write(s): it was truncated or overwritten (the store is at \
                 generation {}, its integrity mark at {m})",
                m - self.generation,
                self.generation
            )),
            (None, true) => Some("its integrity mark is damaged".into()),
            (None, false) if self.generation > 0 => Some(format!(
                "its integrity mark is missing (the store is at generation {})",
                self.generation
            )),
            _ => None,
        }
    }
}

/// The mark file of a store.
#[derive(Debug)]
pub struct Mark<S: Seal> {
    path: PathBuf,
    file: File,
    seal: S,
}

impl<S: Seal> Mark<S> {
    /// Reads the mark at `path` (the highest intact slot), and opens it for writing.
    pub fn open(path: &Path, seal: S) -> Result<(Self, Option<u64>, bool), StoreError> {
        let io = |e| StoreError::Io {
            context: format!("opening {}", path.display()),
            source: e,
        };
        let existed = path.exists();
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(path).map_err(io)?;
        let mut bytes = vec![0u8; 2 * S::LEN];
        let got = read_at_most(&file, &mut bytes).map_err(io)?;
        let slots = (0..2)
            .filter(|i| (i + 1) * S::LEN <= got)
            .filter_map(|i| seal.open(&bytes[i * S::LEN..(i + 1) * S::LEN]));
        let generation = slots.max();
        let damaged = existed && got > 0 && generation.is_none();
        Ok((
            Self {
                path: path.to_owned(),
                file,
                seal,
            },
            generation,
            damaged,
        ))
    }

    /// Records that `generation` is durable in the store.
    pub fn write(&self, generation: u64) -> Result<(), StoreError> {
        let slot = (generation % 2) as usize;
        self.file
            .write_all_at(&self.seal.seal(generation), (slot * S::LEN) as u64)
            .map_err(|e| StoreError::Io {
                context: format!("writing {}", self.path.display()),
                source: e,
            })
    }

    /// Writes `generation` to both slots and syncs: after a check accepted the store as it is.
    pub fn reset(&self, generation: u64) -> Result<(), StoreError> {
        let sealed = self.seal.seal(generation);
        for slot in 0..2 {
            self.file
                .write_all_at(&sealed, (slot * S::LEN) as u64)
                .map_err(|e| StoreError::Io {
                    context: format!("writing {}", self.path.display()),
                    source: e,
                })?;
        }
        self.sync()
    }

    /// Makes the mark durable (when the store closes).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|e| StoreError::Io {
            context: format!("syncing {}", self.path.display()),
            source: e,
        })
    }
}

fn read_at_most(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A checksummed slot: the generation and the first 8 bytes of its SHA-256 under a domain.
#[derive(Debug, Clone, Copy)]
pub struct Checksum;

impl Checksum {
    fn sum(generation: u64) -> [u8; 8] {
        let h = meow_proto::crypto::sha256(&[b"meow/v1/store-mark", &generation.to_le_bytes()]);
        let mut out = [0u8; 8];
        out.copy_from_slice(&h[..8]);
        out
    }
}

impl Seal for Checksum {
    const LEN: usize = 16;

    fn seal(&self, generation: u64) -> Vec<u8> {
        let mut out = generation.to_le_bytes().to_vec();
        out.extend_from_slice(&Self::sum(generation));
        out
    }

    fn open(&self, slot: &[u8]) -> Option<u64> {
        let generation = u64::from_le_bytes(slot.get(..8)?.try_into().ok()?);
        (slot.get(8..16)? == Self::sum(generation)).then_some(generation)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_highest_intact_slot_wins_and_damage_is_seen() {
        let dir = crate::server::tests::tempdir();
        let path = dir.path().join("mark");
        let (m, g, damaged) = Mark::open(&path, Checksum).unwrap();
        assert_eq!((g, damaged), (None, false), "a new mark");
        for generation in 1..=5 {
            m.write(generation).unwrap();
        }
        drop(m);
        let (_, g, _) = Mark::open(&path, Checksum).unwrap();
        assert_eq!(g, Some(5));
        // A torn slot (the last write) leaves the other one.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[16 + 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (_, g, damaged) = Mark::open(&path, Checksum).unwrap();
        assert_eq!((g, damaged), (Some(4), false));
        // Both slots gone.
        std::fs::write(&path, [0xabu8; 32]).unwrap();
        let (_, g, damaged) = Mark::open(&path, Checksum).unwrap();
        assert_eq!((g, damaged), (None, true));
        let i = Integrity {
            generation: 3,
            mark: None,
            mark_damaged: true,
        };
        assert!(i.problem().unwrap().contains("damaged"));
        let i = Integrity {
            generation: 3,
            mark: Some(7),
            mark_damaged: false,
        };
        assert!(i.problem().unwrap().contains("lost its last 4 write(s)"));
        let i = Integrity {
            generation: 8,
            mark: Some(7),
            mark_damaged: false,
        };
        assert_eq!(i.problem(), None, "a mark behind the store is a crash, not a loss");
    }

    proptest::proptest! {
        /// Whatever the mark file holds (any length, any bytes), opening it does not panic,
        /// and a generation is read only from an intact slot.
        #[test]
        fn any_mark_file_opens_without_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48)) {
            let dir = crate::server::tests::tempdir();
            let path = dir.path().join("mark");
            std::fs::write(&path, &bytes).unwrap();
            let (_, g, damaged) = Mark::open(&path, Checksum).unwrap();
            if let Some(g) = g {
                let sealed = Checksum.seal(g);
                proptest::prop_assert!(bytes.chunks_exact(16).take(2).any(|slot| slot == sealed.as_slice()));
            }
            proptest::prop_assert_eq!(damaged, !bytes.is_empty() && g.is_none());
        }
    }
}
