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

/// A free TCP port on 127.0.0.1 (for servers that must come back on the same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a server process's log goes: nowhere, or to the file `MEOW_E2E_SERVER_LOG` names
/// (for debugging a test: `MEOW_E2E_SERVER_LOG=/tmp/s.log RUST_LOG=debug cargo test …`).
fn server_log() -> Stdio {
    match std::env::var_os("MEOW_E2E_SERVER_LOG") {
        Some(path) => std::fs::File::create(path).map_or(Stdio::null(), Stdio::from),
        None => Stdio::null(),
    }
}

impl ServerProc {
    pub fn start(data: &Path, extra: &[&str]) -> Self {
        Self::start_on(data, 0, extra)
    }

    pub fn start_on(data: &Path, port: u16, extra: &[&str]) -> Self {
        Self::spawn(data, port, extra, None)
    }

    /// A server whose debug log of its relay (`meow_server::relay`) goes to `log`.
    pub fn start_logged(data: &Path, port: u16, extra: &[&str], log: &Path) -> Self {
        Self::spawn(data, port, extra, Some(log))
    }

    fn spawn(data: &Path, port: u16, extra: &[&str], log: Option<&Path>) -> Self {
        let last_run = data.join("last-run.json");
        let _ = std::fs::remove_file(&last_run);
        let mut command = Command::new(meow_bin());
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                command
                    .env("RUST_LOG", "warn,meow_server::relay=debug")
                    .args(["server", "--data"])
                    .stderr(Stdio::from(file));
            }
            None => {
                command.args(["-q", "server", "--data"]).stderr(server_log());
            }
        }
        let child = command
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
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
            address: v["address"].as_str().unwrap().parse().unwrap(),
            key,
        };
        Self { proc, card }
    }

    /// The server's `host:port`.
    pub fn address(&self) -> String {
        self.card.address.to_string()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

/// One `meow` home used through the command line.
pub struct Home {
    pub dir: PathBuf,
    pub password: String,
}

/// What a `meow` run printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "meow failed: {}{}", self.stdout, self.stderr);
        &self.stdout
    }

    /// Asserts failure with a single-line error containing `needle`.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "exit status; stderr: {}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().filter(|l| l.starts_with("meow: ")).collect();
        assert_eq!(lines.len(), 1, "one error line expected: {:?}", self.stderr);
        assert!(lines[0].contains(needle), "{:?} does not mention {needle:?}", lines[0]);
    }
}

impl Home {
    /// `meow init` in `dir` with small Argon2id parameters.
    pub fn init(dir: PathBuf, nickname: &str) -> Self {
        let h = Self {
            dir,
            password: format!("pw-{nickname}"),
        };
        h.meow(&["init", "--name", nickname, "--kdf-memory-mib", "1", "--kdf-passes", "1"])
            .ok();
        h
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(meow_bin());
        c.env("MEOW_HOME", &self.dir)
            .env("MEOW_PASSWORD", &self.password)
            .env_remove("RUST_LOG");
        c
    }

    pub fn meow(&self, args: &[&str]) -> Out {
        self.run(self.command().args(args))
    }

    /// `meow` with these arguments and more variables in its environment.
    pub fn meow_env(&self, vars: &[(&str, &str)], args: &[&str]) -> Out {
        let mut c = self.command();
        for (k, v) in vars {
            c.env(k, v);
        }
        self.run(c.args(args))
    }

    /// `meow` with these arguments and no home or password in the environment.
    pub fn run_raw(&self, args: &[&str]) -> Out {
        let mut c = Command::new(meow_bin());
        c.env_remove("MEOW_HOME").env_remove("MEOW_PASSWORD").args(args);
        self.run(&mut c)
    }

    /// `meow` run from the folder `cwd` (for commands given with relative paths).
    pub fn meow_in(&self, cwd: &Path, args: &[&str]) -> Out {
        self.run(self.command().args(args).current_dir(cwd))
    }

    fn run(&self, c: &mut Command) -> Out {
        let o = c.stdin(Stdio::null()).output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// What a `--json` command that prints an array printed.
    pub fn json_list(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(self.meow(args).ok()).unwrap();
        v.as_array().unwrap().clone()
    }

    /// Texts of all stored messages (inbox --all --json after fetching).
    pub fn texts(&self) -> Vec<String> {
        self.json_list(&["inbox", "--all", "--json"])
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }
}

/// Whether any file under `dir` contains `needle`.
pub fn grep(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(hit) = grep(&p, needle) {
                return Some(hit);
            }
        } else if std::fs::read(&p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
        {
            return Some(p);
        }
    }
    None
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Builds the first-party plugins once per test run; returns the bundle folder. Like the demo,
/// it adds the `wasm32-wasip2` target when the toolchain lacks it, so that the README's test
/// command works on a fresh machine.
pub fn plugins() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = repo().join("target/plugins");
            let build = || {
                Command::new(meow_bin())
                    .args(["plugin", "build"])
                    .arg(repo().join("plugins"))
                    .arg("--out")
                    .arg(&out)
                    .output()
                    .unwrap()
            };
            let mut o = build();
            if !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("rustup target add wasm32-wasip2") {
                let _ = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status();
                o = build();
            }
            assert!(
                o.status.success(),
                "building plugins failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            out
        })
        .clone()
}

/// A `meow run` process on a home, with its log captured in a file.
pub struct Daemon {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(home: &Home, config: &Path) -> Self {
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = home
            .command()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,fjall=warn,lsm_tree=warn")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut d = Self { proc: Proc(child), log };
        wait_for("the daemon's control socket", Duration::from_secs(30), || {
            if let Ok(Some(status)) = d.proc.0.try_wait() {
                panic!("meow run exited ({status}):\n{}", d.log_text());
            }
            home.dir.join("control.sock").exists().then_some(())
        });
        d
    }

    /// The daemon's log so far, without colours.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log_text().contains(needle) {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {needle:?} in the daemon log; its last lines, newest first:\n{}",
                tail.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's resident memory, KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then the exit status and how long the daemon took to exit.
    pub fn terminate_timed(mut self) -> (i32, Duration) {
        let pid = self.proc.0.id() as i32;
        let t = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let status = self.proc.0.wait().unwrap();
        (status.code().unwrap_or(-1), t.elapsed())
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> i32 {
        let pid = self.proc.0.id() as i32;
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let status = self.proc.0.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

/// Waits until `home` has received a message whose text satisfies `pred`; returns all texts.
pub fn wait_for_text(home: &Home, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
    wait_for(what, Duration::from_secs(30), || {
        let texts = home.texts();
        texts.iter().any(|t| pred(t)).then_some(texts)
    })
}

/// A hub home with the given contacts (made through its running daemon), and its config file
/// holding `base` (the server and poll settings; recipes are added by each test).
pub fn hub_with_contacts(tmp: &TempDir, names: &[&str]) -> (Home, Vec<Home>, PathBuf, String) {
    let hub = Home::init(tmp.path().join("hub"), "hub");
    let homes: Vec<Home> = names.iter().map(|n| Home::init(tmp.path().join(n), n)).collect();
    let config = tmp.path().join("meow.yaml");
    let base = format!(
        "version: 1\nserver:\n  listen: 127.0.0.1:{}\npoll_wait: 1s\n",
        free_port()
    );
    std::fs::write(&config, &base).unwrap();

    // Contacts first (recipes name them): the hub invites through its running daemon.
    let daemon = Daemon::start(&hub, &config);
    let servers: serde_json::Value = serde_json::from_str(hub.meow(&["servers", "list", "--json"]).ok()).unwrap();
    let card = servers[0]["card"].as_str().unwrap().to_owned();
    for (name, home) in names.iter().zip(&homes) {
        home.meow(&["servers", "add", &card]).ok();
        let inv = tmp.path().join(format!("{name}.meowcard"));
        hub.meow(&["invite", name, "--out", inv.to_str().unwrap()]).ok();
        home.meow(&["accept", inv.to_str().unwrap(), "--name", "hub"]).ok();
    }
    wait_for("the contacts at the hub", Duration::from_secs(30), || {
        let c: serde_json::Value = serde_json::from_str(&hub.meow(&["contacts", "--json"]).stdout).ok()?;
        let have: Vec<&str> = c["contacts"]
            .as_array()?
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        names.iter().all(|n| have.contains(n)).then_some(())
    });
    assert_eq!(daemon.terminate(), 0);
    (hub, homes, config, base)
}

/// A bot home with plugin instances in its meow.yaml, and a user home.
pub struct Setup {
    pub tmp: TempDir,
    pub bot: Home,
    pub user: Home,
    pub config: PathBuf,
}

/// `instances` is the `plugins:` list of meow.yaml; `{local}` names a folder for local plugins.
pub fn setup(tag: &str, instances: &str) -> Setup {
    let tmp = TempDir::new(tag);
    let bot = Home::init(tmp.path().join("bot"), "bot");
    let user = Home::init(tmp.path().join("user"), "user");
    let local = tmp.path().join("local-plugins");
    std::fs::create_dir_all(&local).unwrap();
    let config = tmp.path().join("meow.yaml");
    let instances = instances.replace("{local}", &local.display().to_string());
    std::fs::write(
        &config,
        format!(
            "version: 1\nserver:\n  listen: 127.0.0.1:{}\nplugin_dirs: [{}, {}]\npoll_wait: 1s\nplugins:\n{instances}",
            free_port(),
            plugins().display(),
            local.display()
        ),
    )
    .unwrap();
    Setup { tmp, bot, user, config }
}

impl Setup {
    /// The bot invites the user through the running daemon; the user accepts.
    pub fn pair(&self) {
        self.pair_with(&self.user, "user");
    }

    /// The bot invites `home` (named `name` at the bot) through the running daemon, and `home`,
    /// using the bot's server, accepts.
    pub fn pair_with(&self, home: &Home, name: &str) {
        let servers: serde_json::Value =
            serde_json::from_str(self.bot.meow(&["servers", "list", "--json"]).ok()).unwrap();
        home.meow(&["servers", "add", servers[0]["card"].as_str().unwrap()])
            .ok();
        let inv = self.tmp.path().join(format!("{name}.meowcard"));
        self.bot.meow(&["invite", name, "--out", inv.to_str().unwrap()]).ok();
        home.meow(&["accept", inv.to_str().unwrap(), "--name", "bot"]).ok();
    }

    pub fn local(&self) -> PathBuf {
        self.tmp.path().join("local-plugins")
    }

    /// A Lua plugin `name` in the local plugins folder, asking for `capabilities`, pinned.
    pub fn lua_plugin(&self, name: &str, code: &str, capabilities: &str) {
        let dir = self.local().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.lua")), code).unwrap();
        std::fs::write(
            dir.join("plugin.yaml"),
            format!("name: {name}\nversion: 0.1.0\nkind: lua\nentry: {name}.lua\ncapabilities: [{capabilities}]\n"),
        )
        .unwrap();
        self.bot.meow(&["plugin", "pin", dir.to_str().unwrap()]).ok();
    }
}

/// Two homes `a` and `b` in `tmp`, contacts of each other through `server` (`a` invites `b`):
/// each knows the other by the other's name.
pub fn contacts_through(tmp: &TempDir, server: &ServerProc, a: &str, b: &str) -> (Home, Home) {
    let (ha, hb) = (Home::init(tmp.path().join(a), a), Home::init(tmp.path().join(b), b));
    for h in [&ha, &hb] {
        h.meow(&["servers", "add", &server.card.to_text()]).ok();
    }
    let inv = tmp.path().join(format!("{b}.meowcard"));
    ha.meow(&["invite", b, "--out", inv.to_str().unwrap()]).ok();
    hb.meow(&["accept", inv.to_str().unwrap(), "--name", a]).ok();
    (ha, hb)
}

/// Copies the files of a folder.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A home-less `meow` for commands that need no home (`plugin new`, `plugin build`, `recipe
/// check`), run with [`Home::meow_in`] in a folder of `tmp`.
pub fn cli(tmp: &TempDir) -> Home {
    Home {
        dir: tmp.path().join("none"),
        password: "x".into(),
    }
}

/// An external tool (`componentize-py`, `mosquitto`): its path from the PATH or /usr/sbin
/// (Debian's place for daemons). When it is missing the test says it skips, unless the
/// environment variable `require` is `1` (`.ci/run` sets it after installing the tool): then
/// the test fails.
pub fn tool_or_skip(tool: &str, install: &str, require: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var(require).is_ok_and(|v| v == "1");
        assert!(!required, "{tool} is required here ({require}=1): {install}");
        eprintln!("skipped: {tool} is not installed ({install})");
    }
    found
}
