//! Command-line arguments. Every command's `--help` says what it does and shows an example.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// meow: a MEOW messaging runtime for bots, sensors and automations, with its server.
#[derive(Debug, Parser)]
#[command(
    name = "meow",
    version,
    about,
    long_about = "meow: a MEOW messaging runtime for bots, sensors and automations, with its server.\n\n\
MEOW has no central identity: a key pair is an identity, and every contact knows you under a\n\
different key. Messages are end-to-end encrypted and stored on servers you choose.",
    after_help = "Examples:\n  meow server --data ./srv --listen 127.0.0.1:7070   run a server\n  meow server card --data ./srv                      print its card for clients"
)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a MEOW server in the foreground, or print its card.
    Server(ServerCmd),
    /// Benchmarks (run them from a release build).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Server throughput and latency (deposit -> poll -> ack, durable), against Mosquitto when installed.
    #[command(after_help = "Example:\n  cargo run --release -p meow-cli -- bench server")]
    Server(BenchServerArgs),
}

#[derive(Debug, Args)]
pub struct BenchServerArgs {
    /// Messages in the throughput run.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Content bytes per message.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Producer/consumer connection pairs.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Deposits in flight per producer.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Total rate of the latency run (messages per second).
    #[arg(long, default_value_t = 10_000)]
    pub latency_rate: u64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
    /// Mailboxes in the memory run.
    #[arg(long, default_value_t = 50_000)]
    pub mailboxes: u64,
    /// Skip the Mosquitto comparison.
    #[arg(long)]
    pub no_mosquitto: bool,
}

/// Run a MEOW server: durable mailboxes, emergency broadcast and the user directory.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  meow server --data ./srv --listen 127.0.0.1:7070 --name home\n  meow server --data ./srv --listen 0.0.0.0:7070 --udp 0.0.0.0:7070 --allow-broadcast\n  meow server card --data ./srv --out home.server"
)]
pub struct ServerCmd {
    #[command(subcommand)]
    pub action: Option<ServerAction>,
    #[command(flatten)]
    pub run: ServerRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// Print the server card (name, address, public key) that clients add with `meow servers add`.
    Card(ServerCardArgs),
}

#[derive(Debug, Args)]
pub struct ServerRunArgs {
    /// Directory for the server's key and store (created if missing).
    #[arg(long, default_value = "meow-server", env = "MEOW_SERVER_DATA")]
    pub data: PathBuf,
    /// TCP address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Also answer sealed datagrams (serial/LoRa gateways, UDP clients) on this UDP address.
    #[arg(long)]
    pub udp: Option<SocketAddr>,
    /// Name shown to clients.
    #[arg(long, default_value = "meow")]
    pub name: String,
    /// Let any user broadcast (rate limited); otherwise only operator keys may.
    #[arg(long)]
    pub allow_broadcast: bool,
    /// A broadcast key allowed to broadcast without limit (`meow broadcast-key` prints yours).
    #[arg(long = "operator", value_name = "KEY")]
    pub operators: Vec<String>,
    /// How long messages are kept (e.g. 14d, 36h).
    #[arg(long, default_value = "14d")]
    pub ttl: String,
    /// How long broadcasts are kept.
    #[arg(long, default_value = "24h")]
    pub broadcast_ttl: String,
    /// Most messages one mailbox may hold.
    #[arg(long, default_value_t = 10_000)]
    pub max_messages: u64,
    /// Most simultaneous connections.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
}

#[derive(Debug, Args)]
pub struct ServerCardArgs {
    /// The server's data directory.
    #[arg(long, default_value = "meow-server", env = "MEOW_SERVER_DATA")]
    pub data: PathBuf,
    /// Address clients should use (default: the address the server last listened on).
    #[arg(long)]
    pub address: Option<String>,
    /// Write the card to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}
