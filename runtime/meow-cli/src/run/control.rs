//! The control socket: while `meow run` holds a home, other `meow` commands on that home talk to
//! it here instead of failing on the storage lock. A Unix socket in the home, owner-only.
//!
//! Protocol: one JSON line `{"argv": [...], "data": [...]}` in, one JSON line (a `Reply`) out.

use std::path::{Path, PathBuf};

use anyhow::Context;
use futures_lite::io::BufReader;
use futures_lite::{AsyncBufReadExt, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use crate::cmd_home::Reply;

/// The socket's file name in the home.
pub const SOCKET: &str = "control.sock";

/// A command forwarded to the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The command line, program name first.
    pub argv: Vec<String>,
    /// Input read by the client: a card file or standard input.
    pub data: Option<Vec<u8>>,
}

/// The socket path of a home.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET)
}

/// Sends a command to the daemon running on `home`, if there is one.
pub fn forward(home: &Path, req: &Request) -> anyhow::Result<Option<Reply>> {
    let path = socket_path(home);
    if !path.exists() {
        return Ok(None);
    }
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(&path) else {
        // A socket left by a daemon that died: not ours to use.
        return Ok(None);
    };
    use std::io::{BufRead, Write};
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).context("talking to the running meow")?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .context("reading the running meow's answer")?;
    let reply: Reply = serde_json::from_str(&reply).context("the running meow answered something unreadable")?;
    Ok(Some(reply))
}

/// Serves the socket: each connection carries one request, answered by `handle`.
pub async fn serve<F, Fut>(listener: smol::net::unix::UnixListener, handle: F)
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Reply> + Send,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        smol::spawn(async move {
            let mut reader = BufReader::new(stream.clone());
            let mut line = String::new();
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(req) => handle(req).await,
                Err(e) => Reply {
                    error: Some(format!("bad control request: {e}")),
                    code: 1,
                    ..Reply::default()
                },
            };
            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
            out.push(b'\n');
            let mut w = stream;
            let _ = w.write_all(&out).await;
        })
        .detach();
    }
}

/// Binds the socket (owner-only), replacing a stale one.
pub fn bind(home: &Path) -> anyhow::Result<smol::net::unix::UnixListener> {
    let path = socket_path(home);
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!("another `meow run` is already running on {}", home.display());
        }
        std::fs::remove_file(&path).with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let listener =
        std::os::unix::net::UnixListener::bind(&path).with_context(|| format!("creating {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(smol::net::unix::UnixListener::try_from(listener)?)
}
