//! Files for people and programs: `meow send --file`, `meow file list|save|delete`, the
//! `files` capability of plugins and the `send_file` / `save_file` recipe actions all come
//! here. The node does the protocol (`meow_node::files`); this module reads and writes the
//! files on disk, checks sizes before reading, and never overwrites a file unless told to.

use std::io::Write;
use std::path::{Path, PathBuf};

use meow_node::Node;
use meow_node::files::FileRecord;
use meow_node::sync;
use meow_proto::file::FileMeta;
use smol::lock::Mutex;

use crate::error::{Result, RuntimeError};
use crate::views::{DeliveryView, FileView};

impl FileView {
    /// The view of a received file (or one on its way in) from `contact`.
    pub fn of(r: &FileRecord, contact: String) -> Self {
        Self {
            received: r.received,
            complete: r.complete(),
            first_ms: r.first_ms,
            last_ms: r.last_ms,
            ..Self::sent(&r.meta, contact)
        }
    }

    /// The view of a file sent to `contact`.
    pub fn sent(meta: &FileMeta, contact: String) -> Self {
        Self {
            id: meta.id.to_hex(),
            contact,
            name: meta.name.clone(),
            media_type: meta.media_type.clone(),
            size: meta.size,
            sha256: meow_proto::codec::to_hex(&meta.digest),
            received: meta.chunks(),
            chunks: meta.chunks(),
            complete: true,
            first_ms: 0,
            last_ms: 0,
        }
    }
}

/// What to send: a file on disk, under its own name or another.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The contact.
    pub to: &'a str,
    /// The file on disk.
    pub path: &'a Path,
    /// The name the contact sees (default: the file's own).
    pub name: Option<&'a str>,
    /// Its media type (default: guessed from the name).
    pub media_type: Option<&'a str>,
    /// The program sending it, if any (marked automatic, counted against its quota).
    pub by: Option<&'a str>,
}

/// What became of a file sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The file.
    pub file: FileView,
    /// Queued messages delivered first.
    pub earlier: usize,
    /// What became of its last chunk.
    pub delivery: DeliveryView,
}

/// Sends a file from disk; what was queued before goes first.
pub async fn send(node: &Mutex<Node>, out: Outgoing<'_>) -> Result<Sent> {
    let limit = node.lock().await.file_limit();
    let name = match out.name {
        Some(n) => n.to_owned(),
        None => out
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| RuntimeError::Invalid(format!("{}: not a file", out.path.display())))?,
    };
    let data = read_capped(out.path, limit)?;
    let media_type = out
        .media_type
        .unwrap_or_else(|| meow_proto::file::media_type_for(&name));
    let earlier = sync::flush_outbox(node, false).await?;
    let (meta, delivery) = sync::send_file(node, out.to, (&name, media_type), &data, out.by).await?;
    Ok(Sent {
        file: FileView::sent(&meta, out.to.to_owned()),
        earlier: earlier.delivered,
        delivery: DeliveryView::from(delivery),
    })
}

/// The whole of a file, refused before reading when it is larger than `limit`.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let context = || format!("reading {}", path.display());
    let meta = std::fs::metadata(path).map_err(RuntimeError::io(context()))?;
    if !meta.is_file() {
        return Err(RuntimeError::Invalid(format!("{}: not a regular file", path.display())));
    }
    if meta.len() > limit {
        return Err(meow_node::NodeError::FileTooLarge {
            size: meta.len(),
            limit,
        }
        .into());
    }
    std::fs::read(path).map_err(RuntimeError::io(context()))
}

/// Files received and on their way in, oldest first.
pub fn list(node: &Node) -> Result<Vec<FileView>> {
    Ok(node
        .file_records(None)?
        .iter()
        .map(|r| FileView::of(r, contact_name(node, r.contact)))
        .collect())
}

/// The view of the file `id` names.
pub fn find(node: &Node, id: &str) -> Result<(FileRecord, FileView)> {
    let r = node.file(id)?;
    let view = FileView::of(&r, contact_name(node, r.contact));
    Ok((r, view))
}

fn contact_name(node: &Node, id: u64) -> String {
    node.contacts()
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// Writes received file `id` to `path` (a folder: under the file's own name, which the
/// protocol keeps free of directory parts). An existing file is kept unless `overwrite`; the
/// content is checked against its SHA-256 before anything is written, and written whole or
/// not at all (a temporary file renamed into place), readable by the owner only.
pub fn save(node: &Node, id: &str, path: &Path, overwrite: bool) -> Result<(FileView, PathBuf)> {
    let (record, view) = find(node, id)?;
    let data = node.read_file(&record)?;
    let target = if path.is_dir() {
        path.join(&record.meta.name)
    } else {
        path.to_owned()
    };
    write_new(&target, &data, overwrite)?;
    Ok((view, target))
}

/// Writes `data` to `target` atomically; refuses an existing file unless `overwrite`.
pub fn write_new(target: &Path, data: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite && target.exists() {
        return Err(RuntimeError::Invalid(format!(
            "{} exists (choose another path, or overwrite it with --force)",
            target.display()
        )));
    }
    let context = || format!("writing {}", target.display());
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(".meow-part");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    if let Err(e) = result.and_then(|()| std::fs::rename(&tmp, target)) {
        // What was written of it is of no use; the error says why.
        let _ = std::fs::remove_file(&tmp);
        return Err(RuntimeError::io(context())(e));
    }
    Ok(())
}

/// Deletes received file `id` and its chunks.
pub fn delete(node: &mut Node, id: &str) -> Result<FileView> {
    let (record, view) = find(node, id)?;
    node.delete_file(&record)?;
    Ok(view)
}
