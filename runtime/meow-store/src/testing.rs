//! For tests only (feature `testing`): damage a store on disk the way a crash, a full disk or a
//! bad card would, to check that opening it says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// The journal files of a fjall store below `dir`.
fn journals(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            journals(&p, out);
        } else if p.extension().is_some_and(|x| x == "jnl") {
            out.push(p);
        }
    }
}

/// Damages the used part of the largest journal below `dir` (a vault or a server store): cuts
/// it in half, or overwrites 64 bytes in its middle.
pub fn damage_journal(dir: &Path, truncate: bool) {
    damage_journal_at(dir, truncate, 500);
}

/// [`damage_journal`] at `per_mille` thousandths of the journal's used part.
pub fn damage_journal_at(dir: &Path, truncate: bool, per_mille: usize) {
    let mut js = Vec::new();
    journals(dir, &mut js);
    let j = js
        .iter()
        .max_by_key(|p| p.metadata().unwrap().len())
        .expect("a journal");
    let mut bytes = std::fs::read(j).unwrap();
    let used = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let at = used * per_mille.min(1000) / 1000;
    if truncate {
        bytes.truncate(at);
    } else {
        let end = (at + 64).min(bytes.len());
        for b in &mut bytes[at..end] {
            *b ^= 0xff;
        }
    }
    std::fs::write(j, &bytes).unwrap();
}

/// Whether any file under `dir` contains `needle` (a secret that must not be on disk).
pub fn grep(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            grep(&p, needle)
        } else {
            std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

/// Copies the folder `from` to `to`, files and folders.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}
