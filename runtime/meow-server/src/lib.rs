//! The MEOW server: durable store-and-forward mailboxes, emergency broadcast and the "free for
//! chat" directory, over encrypted TCP sessions and sealed UDP datagrams.
//!
//! [`Server::start`] runs a server on its own executor threads and returns a [`ServerHandle`];
//! `meow server` runs one in the foreground and `meow run` embeds one.

#![forbid(unsafe_code)]

pub mod config;
pub mod doctor;
pub mod engine;
pub mod gossip;
pub mod links;
mod listener;
pub mod relay;
pub mod shared;
pub mod shell;
pub mod writer;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{Budget, Limits, ServerConfig};
use meow_proto::{ServerCard, ServerKey};
use meow_store::server::ServerStore;
use smol::Executor;
use smol::channel::{Sender, bounded, unbounded};

use crate::engine::Engine;
use crate::listener::Context;
use crate::shared::Shared;
use crate::writer::Writer;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data directory or key file could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] meow_store::StoreError),
    /// A key file is damaged.
    #[error("server key file {0} is damaged (expected 32 bytes)")]
    BadKey(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// The server's key, created in `dir` on first use (file `server.key`, owner-only).
pub fn load_or_create_key(dir: &Path) -> Result<ServerKey, ServerError> {
    load_or_create_secret(dir, "server.key").map(ServerKey::from_secret_bytes)
}

/// The 32 secret bytes in `dir/file`, made at random (owner-only) on first use.
pub(crate) fn load_or_create_secret(dir: &Path, file: &str) -> Result<[u8; 32], ServerError> {
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let path = dir.join(file);
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| ServerError::BadKey(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = meow_proto::crypto::random_bytes(&mut meow_proto::os_rng());
            write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

/// Writes a file readable by its owner only, durably (write to a temporary file, fsync, rename).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), ServerError> {
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io_err(format!("writing {}", tmp.display())))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    udp_addr: Option<SocketAddr>,
    ports: Vec<(String, Arc<dyn meow_net::port::DatagramPort>)>,
    card: ServerCard,
    stop: Sender<()>,
    threads: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    write_queue: Sender<writer::WriteOp>,
    executor: Option<Arc<Executor<'static>>>,
    relay: Option<Arc<relay::Relay>>,
    catalog: Arc<gossip::CatalogService>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerHandle({})", self.addr)
    }
}

impl ServerHandle {
    /// The TCP address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The UDP address bound, if any.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// The serial lines and radios it serves, by the name they were given, with their
    /// counters and airtime budgets.
    pub fn link_status(&self) -> Vec<(String, meow_net::port::PortStatus)> {
        self.ports.iter().map(|(n, p)| (n.clone(), p.status())).collect()
    }

    /// The serial lines and radios it serves, by name (to read their status later).
    pub fn links(&self) -> Vec<(String, Arc<dyn meow_net::port::DatagramPort>)> {
        self.ports.clone()
    }

    /// What its Matriochka relay has done (`None` when it does not relay).
    pub fn relay_stats(&self) -> Option<relay::RelayStats> {
        self.relay.as_ref().map(|r| r.stats())
    }

    /// Its Matriochka relay, if it relays (to read its counters later).
    pub fn relay(&self) -> Option<Arc<relay::Relay>> {
        self.relay.clone()
    }

    /// Its catalog service: its own descriptor and the servers it knows.
    pub fn catalog(&self) -> &gossip::CatalogService {
        &self.catalog
    }

    /// The card clients use to reach this server.
    pub fn card(&self) -> &ServerCard {
        &self.card
    }

    /// Stops accepting, closes connections, lets the writer finish its batch, and returns.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        for _ in 0..self.threads.len() {
            let _ = self.stop.try_send(());
        }
        self.stop.close();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Dropping the executor drops every task, and with them the writer queue's senders.
        self.executor = None;
        // Operations already queued are still committed; nothing new is accepted.
        self.write_queue.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The store opened under `cfg`, the state its connections share (broadcasts and directory
/// entries loaded) and its writer: what a server runs on, whoever drives it (the threads of
/// [`Server::start`], or a test stepping the [`Engine`] itself).
pub fn open_store(cfg: &ServerConfig) -> Result<(ServerStore, Arc<Shared>, Writer), ServerError> {
    let store = ServerStore::open(&cfg.data_dir)?;
    let shared = Arc::new(Shared::default());
    shared.load(store.load_broadcasts()?, store.load_directory()?, cfg.clock.now_secs());
    let writer = Writer::new(
        store.clone(),
        cfg.limits.clone(),
        cfg.message_ttl.as_secs(),
        shared.clone(),
        cfg.clock.clone(),
    )?;
    Ok((store, shared, writer))
}

/// Entry point.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Opens the store, binds the listeners and starts serving on background threads.
    pub fn start(cfg: ServerConfig) -> Result<ServerHandle, ServerError> {
        let key = load_or_create_key(&cfg.data_dir)?;
        let (store, shared, writer) = open_store(&cfg)?;
        tracing::info!(mailboxes = writer.mailbox_count(), "store opened");
        let (write_tx, write_rx) = unbounded();
        let writer = std::thread::Builder::new()
            .name("meow-writer".into())
            .spawn(move || writer.run(write_rx))
            .map_err(io_err("starting the writer thread"))?;

        let tcp = std::net::TcpListener::bind(cfg.listen).map_err(io_err(format!("listening on {}", cfg.listen)))?;
        let addr = tcp.local_addr().map_err(io_err("reading the bound address"))?;
        let udp = match cfg.listen_udp {
            Some(a) => Some(std::net::UdpSocket::bind(a).map_err(io_err(format!("listening on udp {a}")))?),
            None => None,
        };
        let udp_addr = udp.as_ref().and_then(|u| u.local_addr().ok());
        let mut ports = Vec::new();
        for address in &cfg.links {
            // Opened again by itself when the device goes away and comes back.
            let port = smol::block_on(meow_net::radio::Reopening::open(address.clone(), cfg.clock.clone()))
                .map_err(io_err(format!("opening the link {address}")))?;
            ports.push((address.to_string(), port as Arc<dyn meow_net::port::DatagramPort>));
        }
        let card = ServerCard {
            name: cfg.name.clone(),
            address: match &cfg.memory {
                Some((_, name)) => meow_proto::Address::Memory(name.clone()),
                None => meow_proto::Address::Tcp(addr.to_string()),
            },
            key: key.public(),
        };
        let threads = if cfg.threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            cfg.threads
        };

        let now_ms = cfg.clock.now_ms();
        let relay = match &cfg.relay {
            Some(r) => Some(Arc::new(
                relay::Relay::open(&cfg.data_dir, r.clone(), now_ms).map_err(io_err("opening the relay keys"))?,
            )),
            None => None,
        };
        let catalog = Arc::new(
            gossip::CatalogService::open(&cfg.data_dir, cfg.gossip.clone(), card.clone(), relay.clone(), now_ms)
                .map_err(io_err("opening the server catalog"))?,
        );
        let pool = Arc::new(meow_net::Pool::new(meow_net::ClientOptions {
            transports: match &cfg.memory {
                Some((net, _)) => meow_net::Transports::with_memory(net.clone()),
                None => meow_net::Transports::system(),
            },
            clock: cfg.clock.clone(),
            rng: cfg.rng.clone(),
        }));
        let cfg = Arc::new(cfg);
        let mut engine = Engine::new(cfg.clone(), store, shared.clone()).with_catalog(catalog.clone());
        if let Some(r) = &relay {
            engine = engine.with_relay(r.clone());
        }
        let ctx = Arc::new(Context {
            shell: shell::Shell {
                engine,
                writer: write_tx.clone(),
                shared,
            },
            key,
            connections: Default::default(),
            seen_datagrams: Default::default(),
            links: Default::default(),
        });
        let ex = Arc::new(Executor::new());
        let listener = smol::net::TcpListener::try_from(tcp).map_err(io_err("registering the listener"))?;
        ex.spawn(listener::accept_loop(ctx.clone(), listener, Arc::downgrade(&ex)))
            .detach();
        if let Some((net, name)) = &cfg.memory {
            ex.spawn(listener::memory_loop(
                ctx.clone(),
                net.listen(name),
                Arc::downgrade(&ex),
            ))
            .detach();
        }
        if let Some(u) = udp {
            let socket = smol::net::UdpSocket::try_from(u).map_err(io_err("registering the udp socket"))?;
            let port = Arc::new(meow_net::port::UdpPort::new(socket));
            ex.spawn(listener::datagram_loop(
                ctx.clone(),
                port,
                "udp".into(),
                Arc::downgrade(&ex),
            ))
            .detach();
        }
        for (name, port) in &ports {
            let serve = listener::datagram_loop(ctx.clone(), port.clone(), name.clone(), Arc::downgrade(&ex));
            ex.spawn(serve).detach();
        }
        let sweeper_ctx = ctx.clone();
        let sweep_interval = cfg.sweep_interval.max(Duration::from_millis(10));
        let clock = cfg.clock.clone();
        ex.spawn(async move {
            loop {
                clock.sleep(sweep_interval).await;
                sweeper_ctx.shell.sweep();
            }
        })
        .detach();
        ex.spawn(gossip::run(catalog.clone(), pool.clone(), cfg.clock.clone()))
            .detach();
        if let Some(r) = &relay {
            let (deposit_ctx, clock) = (ctx.clone(), cfg.clock.clone());
            let deposit = move |mailbox, envelope| {
                let (ctx, now) = (deposit_ctx.clone(), clock.now_secs());
                async move {
                    let source = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
                    let change = writer::Change::Deposit {
                        mailbox,
                        envelope,
                        now,
                        source,
                    };
                    ctx.shell.commit(change).await.map(drop)
                }
            };
            let queue = relay::run(r.clone(), pool.clone(), cfg.clock.clone(), deposit, Arc::downgrade(&ex));
            ex.spawn(queue).detach();
        }
        drop(ctx);

        let (stop, stop_rx) = bounded::<()>(threads);
        let mut handles = Vec::new();
        for i in 0..threads {
            let (ex, stop_rx) = (ex.clone(), stop_rx.clone());
            let h = std::thread::Builder::new()
                .name(format!("meow-server-{i}"))
                .spawn(move || {
                    let _ = smol::block_on(ex.run(stop_rx.recv()));
                })
                .map_err(io_err("starting server threads"))?;
            handles.push(h);
        }
        let links: Vec<&str> = ports.iter().map(|(n, _)| n.as_str()).collect();
        tracing::info!(%addr, udp = ?udp_addr, ?links, threads, "server listening");
        Ok(ServerHandle {
            addr,
            udp_addr,
            ports,
            card,
            stop,
            threads: handles,
            writer: Some(writer),
            write_queue: write_tx,
            executor: Some(ex),
            relay,
            catalog,
        })
    }
}
