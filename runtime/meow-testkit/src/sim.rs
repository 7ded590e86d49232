//! A simulated world on virtual time.
//!
//! [`SimServer`] drives the server's sans-IO rules ([`meow_server::engine::Engine`]) and its
//! writer on the calling thread: a request is answered at once, committed at once, or parked
//! (a long poll); [`SimServer::step`] answers the parked polls a commit or the clock has
//! released and runs the sweep when it is due; [`SimServer::run_until_quiet`] moves the clock
//! from timer to timer until nothing is left to do. Fourteen days of expiry take microseconds.
//!
//! [`World`] is a virtual clock, a seeded generator and an in-process network: the real,
//! threaded [`meow_server::Server`] and real homes ([`meow_node::Node`]) run on it without a
//! socket, and the test moves the clock.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use meow_clock::{Clock, VirtualClock};
use meow_net::{MemoryNetwork, Transports};
use meow_node::{Env, InitOptions, Node};
use meow_proto::crypto::{KdfParams, SharedRng};
use meow_proto::wire::{Request, Response};
use meow_proto::{MailboxId, ServerCard};
use meow_server::engine::{Action, Engine, Parked, Peer};
use meow_server::writer::{Change, Writer};
use meow_server::{ServerConfig, ServerHandle};

/// What a request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Its answer.
    Now(Response),
    /// A long poll, parked under this id: its answer comes from [`SimServer::step`].
    Later(u64),
}

struct Waiting {
    id: u64,
    parked: Parked,
    woken: bool,
}

/// The server's rules and store, driven on one thread on a virtual clock.
pub struct SimServer {
    engine: Engine,
    writer: Writer,
    clock: VirtualClock,
    parked: Vec<Waiting>,
    next_id: u64,
    next_sweep_ms: u64,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimServer({} parked)", self.parked.len())
    }
}

impl SimServer {
    /// A server with default limits (changed by `configure`) in a fresh folder, on `clock`.
    pub fn new(clock: &VirtualClock, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("meow-sim-server-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary folder: {e}"));
        let mut cfg = ServerConfig::new(dir.path().to_owned(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.clock = clock.shared();
        cfg.rng = SharedRng::seeded(1);
        configure(&mut cfg);
        let (store, shared, writer) =
            meow_server::open_store(&cfg).unwrap_or_else(|e| panic!("the server's store: {e}"));
        let engine = Engine::new(Arc::new(cfg), store, shared);
        let next_sweep_ms = engine.next_sweep(clock.now_ms());
        Self {
            engine,
            writer,
            clock: clock.clone(),
            parked: Vec::new(),
            next_id: 1,
            next_sweep_ms,
            _dir: dir,
        }
    }

    /// A client's context: a session with this channel binding, from 127.0.0.1.
    pub fn peer(&self, binding: [u8; 32]) -> Peer {
        let max = self.engine.config().limits.max_mailboxes_per_connection;
        Peer::new(binding, IpAddr::from([127, 0, 0, 1]), max)
    }

    /// Handles one request now.
    pub fn request(&mut self, peer: &Peer, request: Request) -> Reply {
        match self.engine.handle(self.clock.now_ms(), peer, request) {
            Action::Reply(r) => Reply::Now(r),
            Action::Commit(change, answer) => Reply::Now(answer.response(self.commit(change))),
            Action::Park(parked) => {
                let id = self.next_id;
                self.next_id += 1;
                self.parked.push(Waiting {
                    id,
                    parked,
                    woken: false,
                });
                Reply::Later(id)
            }
        }
    }

    fn commit(&mut self, change: Change) -> Result<meow_server::writer::Outcome, meow_server::writer::Refusal> {
        let woken: Option<Vec<MailboxId>> = match &change {
            Change::Deposit { mailbox, .. } => Some(vec![*mailbox]),
            Change::Broadcast { .. } => None,
            _ => Some(vec![]),
        };
        let outcome = self
            .writer
            .commit_now(vec![change])
            .pop()
            .unwrap_or_else(|| unreachable!());
        if outcome.is_ok() {
            for w in &mut self.parked {
                w.woken |= woken
                    .as_ref()
                    .is_none_or(|ms| ms.iter().any(|m| w.parked.mailboxes.contains(m)));
            }
        }
        outcome
    }

    /// Answers the parked polls that are due (woken by a commit, or past their deadline), and
    /// sweeps if it is time.
    pub fn step(&mut self) -> Vec<(u64, Response)> {
        let now = self.clock.now_ms();
        if now >= self.next_sweep_ms {
            let sweep = self.engine.sweep(now);
            let _ = self.writer.commit_now(vec![sweep]);
            self.next_sweep_ms = self.engine.next_sweep(now);
        }
        let (due, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|w| w.woken || w.parked.until_ms <= now);
        self.parked = waiting;
        due.into_iter()
            .map(|w| (w.id, self.engine.read(now, &w.parked)))
            .collect()
    }

    /// The next time something is due: a parked poll's deadline or the sweep.
    pub fn next_timer(&self) -> u64 {
        self.parked
            .iter()
            .map(|w| w.parked.until_ms)
            .chain([self.next_sweep_ms])
            .min()
            .unwrap_or(self.next_sweep_ms)
    }

    /// Steps, moving the clock from timer to timer, until nothing is due before `until_ms`;
    /// returns every parked poll answered on the way. The clock ends at `until_ms`.
    pub fn run_until(&mut self, until_ms: u64) -> Vec<(u64, Response)> {
        let mut answered = self.step();
        // Each step answers what is due and moves the sweep past now: the next timer is later.
        while self.next_timer() <= until_ms {
            self.clock.set(self.next_timer());
            answered.extend(self.step());
        }
        self.clock.set(until_ms);
        answered.extend(self.step());
        answered
    }

    /// [`SimServer::run_until`] `d` from now.
    pub fn run_for(&mut self, d: Duration) -> Vec<(u64, Response)> {
        self.run_until(self.clock.now_ms() + d.as_millis() as u64)
    }

    /// Steps until nothing is woken and no parked poll remains (the clock moves to their
    /// deadlines); returns what was answered.
    pub fn run_until_quiet(&mut self) -> Vec<(u64, Response)> {
        let mut answered = self.step();
        while let Some(deadline) = self.parked.iter().map(|w| w.parked.until_ms).min() {
            self.clock.set(deadline);
            answered.extend(self.step());
        }
        answered
    }
}

/// A virtual clock, a seeded generator and an in-process network, with real servers and homes
/// on it.
#[derive(Debug, Clone)]
pub struct World {
    /// The clock every party reads.
    pub clock: VirtualClock,
    /// The network servers listen on.
    pub network: MemoryNetwork,
    seed: u64,
}

/// A server running in the world, and its folder.
#[derive(Debug)]
pub struct WorldServer {
    /// The running server.
    pub handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl WorldServer {
    /// Its card (a `mem:` address).
    pub fn card(&self) -> &ServerCard {
        self.handle.card()
    }
}

impl World {
    /// A world at `start_ms` (Unix ms), its randomness from `seed`.
    pub fn new(start_ms: u64, seed: u64) -> Self {
        Self {
            clock: VirtualClock::new(start_ms),
            network: MemoryNetwork::new(),
            seed,
        }
    }

    /// The environment of a party: this world's clock, a generator of its own (from the
    /// world's seed and `party`), this world's network.
    pub fn env(&self, party: u64) -> Env {
        Env {
            clock: self.clock.shared(),
            rng: SharedRng::seeded(self.seed.wrapping_mul(1_000_003).wrapping_add(party)),
            transports: Transports::with_memory(self.network.clone()),
        }
    }

    /// Starts a real server listening as `mem:NAME` on this world's clock, in a fresh folder
    /// (`configure` changes its defaults).
    pub fn server(&self, name: &str, configure: impl FnOnce(&mut ServerConfig)) -> WorldServer {
        let dir = tempfile::Builder::new()
            .prefix("meow-world-server-")
            .tempdir()
            .unwrap_or_else(|e| panic!("a temporary folder: {e}"));
        let handle = self.server_at(name, dir.path(), configure);
        WorldServer { handle, _dir: dir }
    }

    /// Starts a real server listening as `mem:NAME` with its data in `dir` (the same folder
    /// again is the same server after a restart: same key, same mail).
    pub fn server_at(
        &self,
        name: &str,
        dir: &std::path::Path,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> ServerHandle {
        let mut cfg = ServerConfig::new(dir.to_owned(), std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        cfg.clock = self.clock.shared();
        cfg.rng = SharedRng::seeded(self.seed ^ 0x5e5e);
        cfg.memory = Some((self.network.clone(), name.to_owned()));
        cfg.threads = 1;
        configure(&mut cfg);
        meow_server::Server::start(cfg).unwrap_or_else(|e| panic!("the server: {e}"))
    }

    /// A new home named `name` in `dir`, on this world (small Argon2 parameters).
    pub fn home(&self, dir: &std::path::Path, name: &str, party: u64) -> Node {
        let opts = InitOptions {
            kdf: KdfParams::TESTING,
            display_name: Some(name.to_owned()),
            decoys: true,
        };
        Node::init_with(&dir.join(name), b"world", opts, self.env(party)).unwrap_or_else(|e| panic!("home {name}: {e}"))
    }
}
