//! Helpers: temporary folders, running `meow` processes, waiting for files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `meow` binary built by this package.
pub fn meow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_meow"))
}

/// A fresh folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("meow-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `f` returns Some, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `meow server` process on 127.0.0.1 with a free port.
pub struct ServerProc {
    pub proc: Proc,
    pub card: meow_proto::ServerCard,
}

impl ServerProc {
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        let last_run = data.join("last-run.json");
        let _ = std::fs::remove_file(&last_run);
        let child = Command::new(meow_bin())
            .args(["-q", "server", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc(child);
        let text = wait_for("the server card", Duration::from_secs(20), || {
            std::fs::read_to_string(&last_run).ok()
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let key = meow_server::load_or_create_key(data).unwrap().public();
        let card = meow_proto::ServerCard {
            name: v["name"].as_str().unwrap().into(),
            address: v["address"].as_str().unwrap().into(),
            key,
        };
        Self { proc, card }
    }

    pub fn address(&self) -> String {
        self.card.address.clone()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}
