//! Server configuration: addresses, retention, quotas and who may broadcast.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use meow_proto::BroadcastPublic;
use meow_proto::padding::MAX_ENVELOPE;

/// Everything a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the key and the store live.
    pub data_dir: PathBuf,
    /// TCP address to listen on.
    pub listen: SocketAddr,
    /// UDP address for sealed datagrams, if any.
    pub listen_udp: Option<SocketAddr>,
    /// Serial lines and radios that carry sealed datagrams and link sessions (`serial:`,
    /// `rnode:`, `meshtastic:`), opened at start.
    pub links: Vec<meow_net::port::LinkAddress>,
    /// The server's name, shown to clients.
    pub name: String,
    /// How long a message is kept before it expires.
    pub message_ttl: Duration,
    /// How long a broadcast is kept.
    pub broadcast_ttl: Duration,
    /// How often expired messages, broadcasts and directory entries are removed.
    pub sweep_interval: Duration,
    /// Keys allowed to broadcast without limit (the operator's).
    pub operators: Vec<BroadcastPublic>,
    /// Whether anyone else may broadcast (rate limited).
    pub allow_broadcast: bool,
    /// Quotas and timeouts.
    pub limits: Limits,
    /// Executor threads (0: one per core).
    pub threads: usize,
    /// The clock: message times, expiry, rate windows, long-poll and sweep timers.
    pub clock: meow_clock::SharedClock,
    /// The random generator (session keys, directory samples).
    pub rng: meow_proto::crypto::SharedRng,
    /// Also listen on an in-process network under a name; the card then gives that address.
    pub memory: Option<(meow_net::MemoryNetwork, String)>,
    /// Relay Matriochka packets (`meow server --relay`), with these bounds; `None`: refuse them.
    pub relay: Option<crate::relay::RelayConfig>,
    /// How the server catalog is kept and gossiped.
    pub gossip: crate::gossip::GossipConfig,
}

/// Quotas and timeouts that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest envelope accepted.
    pub max_envelope: usize,
    /// Messages one mailbox may hold.
    pub max_messages_per_mailbox: u64,
    /// Envelope bytes one mailbox may hold.
    pub max_bytes_per_mailbox: u64,
    /// Mailboxes one connection may open.
    pub max_mailboxes_per_connection: usize,
    /// Simultaneous connections.
    pub max_connections: usize,
    /// Requests one connection may have in flight.
    pub max_in_flight: usize,
    /// Time allowed for the handshake.
    pub handshake_timeout: Duration,
    /// A connection silent for this long (beyond any long poll) is closed.
    pub idle_timeout: Duration,
    /// Longest long poll.
    pub max_poll_wait: Duration,
    /// Time allowed to write a response to a slow reader.
    pub write_timeout: Duration,
    /// User broadcasts per source address per hour (when open broadcast is on).
    pub user_broadcasts_per_hour: u32,
    /// Directory entries held.
    pub max_directory_entries: usize,
    /// Longest directory entry lifetime.
    pub max_entry_lifetime: Duration,
    /// Envelope bytes the whole store may hold (0: no limit).
    pub max_store_bytes: u64,
    /// Deposits one source address may make per window, and their bytes (0: no limit).
    pub address_deposits: Budget,
    /// Deposits one session may make per window, and their bytes (0: no limit).
    pub session_deposits: Budget,
    /// Mailboxes one source address may create by depositing into them, per hour (0: no limit).
    pub new_mailboxes_per_hour: u32,
    /// Connections from one source address at once.
    pub max_connections_per_address: usize,
    /// Connections that have not finished their handshake, at most: past it, the oldest such
    /// connection (from the same address first) is closed to make room.
    pub max_unauthenticated: usize,
}

/// A budget of deposits over a window: a count and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Deposits per window (0: no limit).
    pub count: u32,
    /// Envelope bytes per window (0: no limit).
    pub bytes: u64,
    /// The window.
    pub window: Duration,
}

impl Budget {
    /// No limit.
    pub const UNLIMITED: Budget = Budget {
        count: 0,
        bytes: 0,
        window: Duration::from_secs(60),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope: MAX_ENVELOPE,
            max_messages_per_mailbox: 10_000,
            max_bytes_per_mailbox: 64 * 1024 * 1024,
            max_mailboxes_per_connection: 4096,
            max_connections: 4096,
            max_in_flight: 256,
            handshake_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(120),
            max_poll_wait: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            user_broadcasts_per_hour: 3,
            max_directory_entries: 10_000,
            max_entry_lifetime: Duration::from_secs(30 * 86_400),
            max_store_bytes: 1 << 30,
            address_deposits: Budget {
                count: 6000,
                bytes: 64 << 20,
                window: Duration::from_secs(60),
            },
            session_deposits: Budget {
                count: 3000,
                bytes: 32 << 20,
                window: Duration::from_secs(60),
            },
            new_mailboxes_per_hour: 2000,
            max_connections_per_address: 256,
            max_unauthenticated: 512,
        }
    }
}

impl ServerConfig {
    /// A configuration with defaults for `data_dir`, listening on `listen`.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            listen_udp: None,
            links: Vec::new(),
            name: "meow".into(),
            message_ttl: Duration::from_secs(14 * 86_400),
            broadcast_ttl: Duration::from_secs(86_400),
            sweep_interval: Duration::from_secs(60),
            operators: Vec::new(),
            allow_broadcast: false,
            limits: Limits::default(),
            threads: 0,
            clock: meow_clock::SystemClock::shared(),
            rng: meow_proto::crypto::SharedRng::os(),
            memory: None,
            relay: None,
            gossip: crate::gossip::GossipConfig::default(),
        }
    }
}
