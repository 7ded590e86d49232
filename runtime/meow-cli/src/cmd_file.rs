//! `meow file` and `meow send --file`: the requests they make and how their answers print.

use anyhow::bail;
use meow_runtime::control::{Request, Response};
use meow_runtime::views::{DeliveryView, FileView};

use crate::cli::FileCmd;
use crate::cmd_home::Reply;

/// The request of a `meow file` command.
pub fn request(c: &FileCmd) -> Request {
    match c {
        FileCmd::List(_) => Request::Files,
        FileCmd::Save { id, path, force } => Request::FileSave {
            file: id.clone(),
            path: crate::cmd_home::absolute(path.as_deref().unwrap_or(std::path::Path::new("."))),
            overwrite: *force,
        },
        FileCmd::Delete { id } => Request::FileDelete { file: id.clone() },
    }
}

/// A size for people: `5.0 MiB`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} bytes"),
    }
}

/// The inbox line of a file that arrived (its message is a JSON description).
pub fn described(json: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return format!("<a file: {json}>");
    };
    let id = v["file"].as_str().unwrap_or_default();
    format!(
        "file {} ({}, {}): meow file save {}",
        v["name"].as_str().unwrap_or("?"),
        size(v["size"].as_u64().unwrap_or_default()),
        v["media_type"].as_str().unwrap_or("?"),
        &id[..id.len().min(8)]
    )
}

fn line(f: &FileView) -> String {
    let state = if f.complete {
        "complete".to_owned()
    } else {
        format!("{} of {} chunks in", f.received, f.chunks)
    };
    format!(
        "{}  {:<24} {:>10}  from {:<12} {state}",
        &f.id[..8],
        f.name,
        size(f.size),
        f.contact
    )
}

/// Prints what became of a file sent.
pub fn sent(r: &mut Reply, to: &str, file: FileView, earlier: usize, delivery: DeliveryView) {
    r.line(format!(
        "file {} ({}, {} chunk(s)) to {to}: id {}",
        file.name,
        size(file.size),
        file.chunks,
        &file.id[..8]
    ));
    crate::cmd_home::sent(r, to, earlier, delivery);
}

/// Prints the answer to a `meow file` command.
pub fn show(r: &mut Reply, c: &FileCmd, resp: Response) -> anyhow::Result<()> {
    match (c, resp) {
        (FileCmd::List(a), Response::Files(files)) => {
            if a.json {
                return r.json(&files);
            }
            if files.is_empty() {
                r.note("no files (a file a contact sends shows in `meow inbox` once it is whole)");
            }
            for f in &files {
                r.line(line(f));
            }
        }
        (FileCmd::Save { .. }, Response::FileSaved { file, path }) => r.line(format!(
            "saved {} ({}, SHA-256 checked) to {}",
            file.name,
            size(file.size),
            path.display()
        )),
        (FileCmd::Delete { .. }, Response::FileDeleted(f)) => {
            r.line(format!("deleted {} ({}) from {}", f.name, &f.id[..8], f.contact))
        }
        (_, other) => bail!("internal: unexpected answer {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_inbox_lines() {
        assert_eq!(size(100), "100 bytes");
        assert_eq!(size(5 * 1024 * 1024 + 1), "5.0 MiB");
        let json = r#"{"file":"0123456789abcdef0123456789abcdef","name":"a.pdf","media_type":"application/pdf","size":2048,"sha256":"00"}"#;
        assert_eq!(
            described(json),
            "file a.pdf (2.0 KiB, application/pdf): meow file save 01234567"
        );
        assert_eq!(described("nope"), "<a file: nope>");
    }
}
