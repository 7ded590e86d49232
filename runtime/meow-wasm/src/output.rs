//! A guest's stdout and stderr: each line goes to the instance's log (stdout at info, stderr at
//! warn) through the host's logging, which is rate-limited per instance; so `println!`,
//! `print()` and `console.log` show up, and so does the message a guest prints when it panics
//! or raises before it traps. A line is cut at [`MAX_LINE`] bytes; a line left without its
//! newline is logged when the call returns ([`GuestOutput::finish_line`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use meow_plugin::{Host, Level};
use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line logged; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 1024;
/// Lines kept for a trap's explanation: enough to hold a short Python traceback.
const KEPT_LINES: usize = 12;
/// What one write may carry (the guest splits larger ones).
const WRITE_BUDGET: usize = 64 * 1024;

/// One of a guest's output streams.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    host: Host,
    stream: &'static str,
    level: Level,
    line: Arc<Mutex<Vec<u8>>>,
    /// The last lines logged, hints (`note: …`) left out: a trap's explanation quotes
    /// stderr's (Rust: where it panicked and the message; Python: the exception).
    last: Arc<Mutex<Vec<String>>>,
}

impl GuestOutput {
    /// The guest's stdout, logged at info.
    pub(crate) fn stdout(host: Host) -> Self {
        Self::new(host, "stdout", Level::Info)
    }

    /// The guest's stderr, logged at warn.
    pub(crate) fn stderr(host: Host) -> Self {
        Self::new(host, "stderr", Level::Warn)
    }

    fn new(host: Host, stream: &'static str, level: Level) -> Self {
        Self {
            host,
            stream,
            level,
            line: Arc::new(Mutex::new(Vec::new())),
            last: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// What the last lines since the previous call of this say: a Python traceback's exception
    /// line if there is one (the lines after it are componentize-py's own panic), else the last
    /// two lines joined.
    pub(crate) fn take_last(&self) -> Option<String> {
        let lines = std::mem::take(&mut *self.last.lock());
        let traceback = lines
            .iter()
            .rposition(|l| l.starts_with("Traceback (most recent call last)"));
        let exception = traceback.and_then(|at| lines[at + 1..].iter().find(|l| !l.starts_with(char::is_whitespace)));
        match exception {
            Some(line) => Some(line.trim().to_owned()),
            None => (!lines.is_empty()).then(|| {
                let tail = &lines[lines.len().saturating_sub(2)..];
                tail.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
            }),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut line = self.line.lock();
        for &b in bytes {
            if b == b'\n' {
                self.emit(&line);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }

    /// Logs what is left of a line without its newline.
    pub(crate) fn finish_line(&self) {
        let mut line = self.line.lock();
        if !line.is_empty() {
            self.emit(&line);
            line.clear();
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if !text.trim().is_empty() {
            self.host.log(self.level, &format!("{}: {text}", self.stream));
            if !text.starts_with("note: ") {
                let mut last = self.last.lock();
                if last.len() == KEPT_LINES {
                    last.remove(0);
                }
                last.push(text.to_owned());
            }
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
