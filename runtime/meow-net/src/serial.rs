//! Serial lines: a tty opened raw at a chosen speed, as a byte-stream [`Link`], and pseudo-
//! terminal pairs for simulated devices and tests. The datagram framing on top is
//! `crate::radio` (KISS with a CRC on a bare line, an RNode's KISS, Meshtastic's stream API).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::termios::{self, OptionalActions};
use smol::Async;

use crate::transport::Link;

/// The speed used when an address names none.
pub const DEFAULT_BAUD: u32 = 115_200;

/// A serial device and its speed, written `PATH[:BAUD]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSpec {
    /// The device, e.g. `/dev/ttyUSB0`.
    pub path: PathBuf,
    /// Bits per second.
    pub baud: u32,
}

impl SerialSpec {
    /// Parses `PATH[:BAUD]` (a path may hold colons: only a numeric last part is a speed).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a serial device path is needed, e.g. /dev/ttyUSB0:115200".into());
        }
        let (path, baud) = match s.rsplit_once(':') {
            Some((p, b)) if !p.is_empty() && !b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()) => {
                let baud = b.parse::<u32>().map_err(|_| format!("speed {b} is too large"))?;
                if baud == 0 {
                    return Err("a speed of 0 baud".into());
                }
                (p, baud)
            }
            _ => (s, DEFAULT_BAUD),
        };
        Ok(Self {
            path: PathBuf::from(path),
            baud,
        })
    }
}

impl std::fmt::Display for SerialSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.baud)
    }
}

/// Sets `file` raw (no echo, no line editing, no translation, 8 bits) at `baud`.
fn make_raw(file: &File, baud: u32) -> io::Result<()> {
    let mut t = termios::tcgetattr(file)?;
    t.make_raw();
    // Ignore modem control lines (a USB radio has no carrier detect) and enable the receiver.
    t.control_modes |= termios::ControlModes::CLOCAL | termios::ControlModes::CREAD;
    t.set_speed(baud)?;
    termios::tcsetattr(file, OptionalActions::Now, &t)?;
    Ok(())
}

fn open_tty(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
}

fn with_path(path: &Path, what: &str) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |e| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
}

/// Opens the serial device of `spec` raw, as a byte-stream link.
pub fn open(spec: &SerialSpec) -> io::Result<Link> {
    let file = open_tty(&spec.path).map_err(with_path(&spec.path, "opening"))?;
    make_raw(&file, spec.baud).map_err(with_path(&spec.path, "setting up (is it a serial device?)"))?;
    file_link(file)
}

/// A link over an open file (a tty or a pseudo-terminal master).
fn file_link(file: File) -> io::Result<Link> {
    let file = Arc::new(Async::new(file)?);
    let reader = ArcFile(file.clone());
    let writer = ArcFile(file);
    Ok(Link::from_stream(
        Box::pin(reader),
        Box::pin(writer),
        usize::MAX,
        Box::new(|| {}),
    ))
}

/// A pseudo-terminal pair: the master as a link (the simulated device's end, or one end of a
/// simulated cable) and the path of the slave, which a program opens like a serial device.
/// The slave stays open through the returned [`File`] too (set raw), so the master never reads
/// end-of-file while the program under test has not opened it yet or reopens it.
pub fn pty() -> io::Result<(Link, PathBuf, File)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    let slave = open_tty(&path)?;
    make_raw(&slave, DEFAULT_BAUD)?;
    Ok((file_link(File::from(master))?, path, slave))
}

/// A shared handle to an async file that reads and writes through `&File`.
struct ArcFile(Arc<Async<File>>);

impl futures_lite::AsyncRead for ArcFile {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut &*self.0).poll_read(cx, buf)
    }
}

impl futures_lite::AsyncWrite for ArcFile {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut &*self.0).poll_write(cx, buf)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut &*self.0).poll_flush(cx)
    }

    fn poll_close(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut &*self.0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn specs_parse_with_and_without_a_speed() {
        assert_eq!(
            SerialSpec::parse("/dev/ttyUSB0:9600").unwrap(),
            SerialSpec {
                path: "/dev/ttyUSB0".into(),
                baud: 9600
            }
        );
        assert_eq!(SerialSpec::parse("/dev/ttyACM0").unwrap().baud, DEFAULT_BAUD);
        assert_eq!(
            SerialSpec::parse("/dev/serial/by-id/usb-RAK:x").unwrap().path,
            PathBuf::from("/dev/serial/by-id/usb-RAK:x")
        );
        assert!(SerialSpec::parse("").is_err());
        assert!(SerialSpec::parse("/dev/tty:0").is_err());
    }

    #[test]
    fn a_pty_carries_every_byte_value_raw() {
        smol::block_on(async {
            let (mut master, path, _keep) = pty().unwrap();
            let mut line = open(&SerialSpec { path, baud: 9600 }).unwrap();
            let all: Vec<u8> = (0..=255u8).collect();
            line.writer.write_all(&all).await.unwrap();
            let mut got = vec![0u8; 256];
            master.reader.read_exact(&mut got).await.unwrap();
            assert_eq!(got, all, "no translation of CR, NL or control bytes");
            master.writer.write_all(b"\r\n\x03\x04").await.unwrap();
            let mut back = [0u8; 4];
            line.reader.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"\r\n\x03\x04");
        });
    }

    #[test]
    fn a_missing_device_is_named() {
        let e = open(&SerialSpec::parse("/nonexistent/ttyUSB9").unwrap()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ttyUSB9"), "{e}");
        let e = open(&SerialSpec::parse("/dev/null").unwrap()).unwrap_err();
        assert!(e.to_string().contains("is it a serial device"), "{e}");
    }
}
