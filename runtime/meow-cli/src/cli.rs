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
    /// The home directory (an encrypted vault). Default: ~/.meow
    #[arg(long, global = true, env = "MEOW_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Read the home's password from this file (else MEOW_PASSWORD, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Also open the hidden compartment whose password is in this file (else
    /// MEOW_COMPARTMENT_PASSWORD) for this command; `meow hide` and `meow unlock` prompt for it
    /// otherwise. A saved password defeats hidden contacts: see docs/HIDDEN.md.
    #[arg(long, global = true, value_name = "FILE")]
    pub compartment_password_file: Option<PathBuf>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors in the log.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new home: an identity in an encrypted vault.
    #[command(after_help = "Example:\n  MEOW_HOME=./alice meow init --name alice")]
    Init(InitArgs),
    /// Manage the servers this home reads its mail on.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow servers add \"$(meow server card --data ./srv)\"\n  meow servers list --json\n  meow servers remove home"
    )]
    Servers(ServersCmd),
    /// Make an invitation card for a new contact (file, text, QR).
    #[command(
        after_help = "Examples:\n  meow invite bob --out bob.meowcard      binary card file\n  meow invite bob --qr                    QR code in the terminal\n  meow invite bob --out bob.png           QR code as a PNG image"
    )]
    Invite(InviteArgs),
    /// Accept a card: answer an invitation, or finish one of mine with its answer.
    #[command(
        after_help = "Examples:\n  meow accept bob.meowcard --name bob --out answer.meowcard\n  meow accept answer.meowcard\n  meow accept 'meow:card:TUVPV0MB…'"
    )]
    Accept(AcceptArgs),
    /// List contacts and invitations waiting for an answer; `meow contacts policy` sets how
    /// messages to one travel.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  meow contacts --json\n  meow contacts policy bob matriochka --hops 3 --delay 300ms\n  meow contacts policy --default matriochka"
    )]
    Contacts(ContactsArgs),
    /// The same as `meow contacts policy`.
    #[command(
        after_help = "Examples:\n  meow policy bob direct-preferred\n  meow policy bob matriochka --hops 4 --delay 1s\n  meow policy bob server\n\nmeow.yaml of a home that accepts direct links:\n  direct:\n    listen: 192.168.1.20:7071"
    )]
    Policy(PolicyArgs),
    /// Send a text message or a file to a contact.
    #[command(
        after_help = "Examples:\n  meow send bob 'see you at 8'\n  echo 'from a script' | meow send bob -\n  meow send bob --file report.pdf\n  meow send bob --file scan.bin --as 'scan 2026-12-07.png' --type image/png\n  meow send bob 'yes, at 8' --reply-to 3fa2c1\n\nA file travels in chunks of 112 KiB, each an end-to-end encrypted message; what is not\ndelivered now stays in the outbox and goes with the next send, inbox or run. The\nreceiving home checks its SHA-256 and shows it in `meow inbox`; `meow file save` writes it\nout. Files up to limits.file_size in meow.yaml (64 MiB by default).\n\nExit status 75 means the message was queued (server unreachable): it is\ndelivered by the next send, inbox or run."
    )]
    Send(SendArgs),
    /// Files received (and on their way in): list, save to disk, delete.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow file list\n  meow file save 3fa2 ~/Downloads/\n  meow file save 3fa2 report.pdf --force\n  meow file delete 3fa2\n\nA file is named by its id (the start of it is enough) as `meow inbox` and\n`meow file list` show it. Received files stay in the encrypted home until deleted."
    )]
    File(FileCmd),
    /// Fetch, store and print new messages.
    #[command(after_help = "Examples:\n  meow inbox\n  meow inbox --wait 30 --json")]
    Inbox(InboxArgs),
    /// The running daemon: server, plugins, recipes, what waits in the outbox.
    #[command(after_help = "Examples:\n  meow status\n  meow status --json")]
    Status(JsonArgs),
    /// Move a contact into a hidden compartment, under a password of its own.
    #[command(
        after_help = "Examples:\n  meow hide alice --new        a new compartment (asks its password twice)\n  meow hide bob                into the compartment the password opens\n\nUnder the main password a hidden contact does not exist; every home also holds decoy\ncompartments nobody can open, so hidden data proves nothing. Unlock every compartment\nyou keep before making a new one: a new compartment takes the place of one that is not\nopen, and meow cannot tell a locked compartment from a decoy. See docs/HIDDEN.md."
    )]
    Hide(HideArgs),
    /// Unlock a hidden compartment in the running daemon: its contacts are polled and shown.
    #[command(
        after_help = "Example:\n  meow unlock                  asks the compartment password\n  MEOW_COMPARTMENT_PASSWORD=… meow unlock"
    )]
    Unlock,
    /// Lock the hidden compartments again: their contacts leave memory; messages wait at servers.
    #[command(after_help = "Example:\n  meow lock")]
    Lock,
    /// Your devices: link a new one, list, rename, and choose which one holds a conversation.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow device link                       on a device you have: prints a link card\n  meow device join 'meow:link:…' --name laptop    on the new one (an empty home)\n  meow device list\n  meow device take bob                   this device now speaks with bob\n\nEvery device is equal and sees every message. Each conversation has one holder, the\ndevice that opens and seals its messages; the others send through it. See docs/DEVICES.md."
    )]
    Device(DeviceCmd),
    /// Rotate my conversation and lookup keys for a contact (effective once they acknowledge).
    #[command(after_help = "Example:\n  meow rotate bob")]
    Rotate(NameArg),
    /// Run a MEOW server in the foreground, or print its card.
    Server(ServerCmd),
    /// Groups: create, add and remove members, send, list, leave.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow group create friends\n  meow group add friends bob\n  meow group send friends 'dinner at 8'\n\nThe creator owns the group and relays every post to the members, each copy\nsealed to that member's own keys: members need not know each other."
    )]
    Group(GroupCmd),
    /// Send an emergency broadcast to every user of your server.
    #[command(
        after_help = "Example:\n  meow broadcast 'water is back on in the east wing'\n\nOnly the server's operator may broadcast, unless the server runs with\n--allow-broadcast (then anyone may, within a rate limit). `meow broadcast-key`\nprints the key an operator configures with `meow server --operator KEY`."
    )]
    Broadcast {
        /// The text (at most 1024 bytes).
        text: String,
    },
    /// Print this home's broadcast key (for `meow server --operator KEY`).
    #[command(after_help = "Example:\n  meow server --data ./srv --operator \"$(meow broadcast-key)\"")]
    BroadcastKey,
    /// The "free for chat" user directory: publish yourself, search, draw at random.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow directory publish --description 'chess, any level' --tag chess\n  meow directory search chess\n  meow accept '<the card text of an entry>' --name chessfan"
    )]
    Directory(DirectoryCmd),
    /// Recipes: check, dry-run, traces, reload.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow recipe check recipes/*.yaml\n  meow recipe test recipes/sensor-alert.yaml --event hot.yaml\n  meow recipe trace sensor-alert"
    )]
    Recipe(RecipeCmd),
    /// A simulated IoT sensor: report readings to a contact every few seconds.
    #[command(
        after_help = "Example:\n  MEOW_HOME=./sensor meow sensor --to hub --every 5s\n\nEach reading is compact JSON ({\"t\":21.4,\"h\":41,\"n\":3}) sealed in the\nsmallest envelope class: 176 bytes, one LoRa frame when sent per packet.\nWith --link udp:HOST:PORT (or serial:/dev/ttyUSB0, rnode:/dev/ttyACM0,sf=9,\nmeshtastic:/dev/ttyACM0), readings go through a link session with the\ngateway in the compact form: 110 bytes on the air each. See docs/OFF-GRID.md."
    )]
    Sensor(SensorArgs),
    /// The main job, with no setup: a hub runtime (server, plugins, recipes), a sensor and an
    /// owner, in a demo folder, showing the flow as it happens.
    #[command(after_help = "Example:\n  cargo run --release -- demo\n  meow demo --seconds 60 --dir ./meow-demo")]
    Demo(DemoArgs),
    /// Run the daemon: the embedded server, plugins and recipes of a meow.yaml.
    #[command(
        after_help = "Examples:\n  meow run                          uses ./meow.yaml if present\n  meow run --config examples/chat-bot/meow.yaml --watch\n\nWhile it runs, other meow commands on the same home go through it\n(a control socket in the home), so `meow send`, `meow inbox`… keep working."
    )]
    Run(RunArgs),
    /// Build, pin, list and reload plugins.
    #[command(
        subcommand,
        after_help = "Examples:\n  meow plugin build plugins\n  meow plugin pin plugins/responder\n  meow plugin list"
    )]
    Plugin(PluginCmd),
    /// Check a home (or a server's data folder) for damage: every record, the integrity mark.
    #[command(
        after_help = "Examples:\n  meow doctor                        the home (MEOW_HOME, asks its password)\n  meow doctor --server ./srv         a server's data folder (stop the server first)\n  meow doctor --accept-loss          accept a home that lost writes, as it is now\n\nA home or server whose journal lost writes (a truncated or overwritten file)\nrefuses to open until it is restored from a backup or accepted as it is."
    )]
    Doctor(DoctorArgs),
    /// Benchmarks (run them from a release build).
    #[command(
        subcommand,
        after_help = "Examples:\n  cargo run --release -p meow-cli -- bench server\n  cargo run --release -p meow-cli -- bench plugins\n  cargo run --release -p meow-cli -- bench group"
    )]
    Bench(BenchCmd),
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Server throughput and latency (deposit -> poll -> ack, durable), against Mosquitto when installed.
    #[command(after_help = "Example:\n  cargo run --release -p meow-cli -- bench server")]
    Server(BenchServerArgs),
    /// How long a password takes to try against a home: wrong, a decoy's, a real compartment's
    /// (they must not differ beyond noise), against Argon2id alone.
    #[command(
        after_help = "Example:\n  cargo run --release -p meow-cli -- bench vault\n\nUses the default Argon2id parameters (64 MiB, 3 passes), as homes do."
    )]
    Vault {
        /// Rounds (the range of their medians is reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        rounds: u64,
        /// Tries of each password per round.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        tries: u64,
    },
    /// Several devices: linking one to a home with history, and syncing each message.
    #[command(
        after_help = "Example:\n  cargo run --release -p meow-cli -- bench devices --contacts 100 --messages 10000"
    )]
    Devices {
        /// Contacts of the home.
        #[arg(long, default_value_t = 100)]
        contacts: usize,
        /// Messages in its inbox before the first link.
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Devices linked one after the other, each measured.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Messages received afterwards, to measure syncing each.
        #[arg(long, default_value_t = 500)]
        synced: usize,
    },
    /// One group message to many members: time and bytes on the wire.
    #[command(after_help = "Example:\n  cargo run --release -p meow-cli -- bench group --members 100")]
    Group {
        /// Members in the group.
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Sends measured (the best is reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Bytes on a radio link for a 20-byte sensor reading: the compact form in a link session
    /// and a sealed datagram, counted by a UDP relay on 127.0.0.1 in front of a running server.
    #[command(
        after_help = "Example:\n  cargo run --release -p meow-cli -- bench lora\n\nThe last line is `on-air bytes: N`: the frame that carries one reading."
    )]
    Lora {
        /// Readings sent each way.
        #[arg(long, default_value_t = 3)]
        readings: usize,
    },
    /// Matriochka: a global passive observer's linking accuracy and anonymity-set entropy as
    /// the mean per-hop delay grows (simulated on virtual time), relay throughput against the
    /// X25519 baseline, the latency three relays add, and bytes per packet.
    #[command(
        after_help = "Example:\n  cargo run --release -p meow-cli -- bench matriochka\n\nThe observer logs every packet on every link (time and link; sizes are all equal) and\ntraces each delivered message back through the relays, weighting each earlier packet by the\nexponential delay density: the best attack on a continuous-time mix."
    )]
    Matriochka {
        /// Repetitions of each measurement (the range is reported).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        runs: u64,
        /// Senders in the observer simulation (each to its own recipient).
        #[arg(long, default_value_t = 32)]
        senders: usize,
        /// Relays in the observer simulation.
        #[arg(long, default_value_t = 6)]
        relays: usize,
        /// Simulated seconds of traffic.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Packets per throughput measurement.
        #[arg(long, default_value_t = 20_000)]
        packets: usize,
    },
    /// Plugin dispatch cost (WASM and Lua) and `meow run` start-up time with 10 instances.
    #[command(
        after_help = "Example:\n  cargo run --release -p meow-cli -- plugin build plugins\n  cargo run --release -p meow-cli -- bench plugins"
    )]
    Plugins {
        /// Where the built plugin bundles are.
        #[arg(long, default_value = "target/plugins")]
        bundles: PathBuf,
        /// Events per measurement.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
    },
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
    after_help = "Examples:\n  meow server --data ./srv --listen 127.0.0.1:7070 --name home\n  meow server --data ./srv --relay --peer other.server   relay Matriochka packets\n  meow server --data ./srv --listen 0.0.0.0:7070 --udp 0.0.0.0:7070 --allow-broadcast\n  meow server --data ./srv --serial /dev/ttyUSB0:115200 --radio rnode:/dev/ttyACM0,sf=9\n  meow server card --data ./srv --out home.server"
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
    #[command(
        after_help = "Examples:\n  meow server card --data ./srv\n  meow server card --data ./srv --address 192.168.1.10:7070 --out home.server"
    )]
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
    /// Also serve sealed datagrams and link sessions on this serial line (KISS frames with a
    /// CRC-16; the other end runs `meow sensor --link serial:PATH`). Repeatable.
    #[arg(long, value_name = "PATH[:BAUD]")]
    pub serial: Vec<String>,
    /// Also serve them through a LoRa radio: an RNode or KISS TNC
    /// (`rnode:PATH[:BAUD][,sf=7,bw=125k,cr=5,freq=868.1M,power=14,duty=1%]`) or a Meshtastic
    /// device (`meshtastic:PATH[:BAUD][,channel=0,duty=1%]`). The radio keeps to its duty
    /// cycle, queuing what would exceed it. Repeatable. See docs/OFF-GRID.md.
    #[arg(long, value_name = "rnode:…|meshtastic:…")]
    pub radio: Vec<String>,
    /// Announce the server on the local network (DNS-SD over multicast DNS, `_meow._tcp`)
    /// so `meow servers discover` finds it on an isolated Wi-Fi; a server on 127.0.0.1 is
    /// announced on loopback only.
    #[arg(long)]
    pub announce: bool,
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
    /// Most connections from one source address.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Most connections still in their handshake; past it the oldest (from the same address
    /// first) is closed to make room, so idle sockets cannot lock good clients out.
    #[arg(long, default_value_t = 512)]
    pub max_unauthenticated: usize,
    /// Time a new connection has to complete its handshake.
    #[arg(long, default_value = "3s")]
    pub handshake_timeout: String,
    /// Envelope bytes the whole store may hold (0: no limit).
    #[arg(long, default_value = "1GiB")]
    pub max_store: String,
    /// Deposits one source address may make per minute (0: no limit).
    #[arg(long, default_value_t = 6000)]
    pub address_deposits: u32,
    /// Envelope bytes one source address may deposit per minute (0: no limit).
    #[arg(long, default_value = "64MiB")]
    pub address_deposit_bytes: String,
    /// Deposits one session may make per minute (0: no limit).
    #[arg(long, default_value_t = 3000)]
    pub session_deposits: u32,
    /// Envelope bytes one session may deposit per minute (0: no limit).
    #[arg(long, default_value = "32MiB")]
    pub session_deposit_bytes: String,
    /// Mailboxes one source address may create per hour by depositing into them (0: no limit).
    #[arg(long, default_value_t = 2000)]
    pub new_mailboxes_per_hour: u32,
    /// Threads serving connections (0: one per core). The store's writer and fsync threads come
    /// on top.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Relay Matriochka onion packets for anyone (docs/PROTOCOL.md §22): the server peels one
    /// layer, holds the packet for the delay the sender chose (at most --relay-max-delay) and
    /// hands it on. Its descriptor in the server catalog says so.
    #[arg(long, help_heading = "Matriochka relay and catalog")]
    pub relay: bool,
    /// Packets relayed per second at most.
    #[arg(long, default_value_t = 2000, help_heading = "Matriochka relay and catalog")]
    pub relay_rate: u32,
    /// The longest a relayed packet is held.
    #[arg(long, default_value = "60s", help_heading = "Matriochka relay and catalog")]
    pub relay_max_delay: String,
    /// The life of a relay key: packets are opened with the key of the epoch they arrive in,
    /// and a key is deleted (with the replay tags it saw) when its epoch is over.
    #[arg(long, default_value = "1h", help_heading = "Matriochka relay and catalog")]
    pub relay_epoch: String,
    /// Another server to exchange catalogs with (its card, file or text); repeat for several.
    /// Servers learn of each other from there on.
    #[arg(long = "peer", value_name = "CARD", help_heading = "Matriochka relay and catalog")]
    pub peers: Vec<String>,
    /// Time between two catalog exchanges.
    #[arg(long, default_value = "5m", help_heading = "Matriochka relay and catalog")]
    pub gossip_interval: String,
    /// The address other servers and clients reach this one on, for its catalog descriptor
    /// (default: the card's, i.e. --listen).
    #[arg(long, value_name = "ADDRESS", help_heading = "Matriochka relay and catalog")]
    pub advertise: Option<String>,
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

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The nickname suggested on your cards.
    #[arg(long)]
    pub name: Option<String>,
    /// How the home is protected.
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// How a new home's vault is protected.
#[derive(Debug, Args)]
pub struct VaultArgs {
    /// Argon2id memory in MiB (default 64).
    #[arg(long, default_value_t = 64)]
    pub kdf_memory_mib: u32,
    /// Argon2id passes (default 3).
    #[arg(long, default_value_t = 3)]
    pub kdf_passes: u32,
    /// Make no decoy compartments. Decoys (generated contacts nobody can open) are what make
    /// hidden contacts deniable: without them, any hidden data proves there is some. Only for
    /// a device with little storage and nothing to hide.
    #[arg(long)]
    pub no_decoys: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServersCmd {
    /// Add a server from its card (a file or the `meow:server:…` text).
    #[command(
        after_help = "Examples:\n  meow servers add \"$(meow server card --data ./srv)\"\n  meow servers add home.server --via serial:/dev/ttyUSB0:115200\n  meow servers add home.server --via rnode:/dev/ttyACM0,sf=9"
    )]
    Add {
        /// Card file or text.
        card: String,
        /// Reach this server for link sessions (`meow sensor`) through this link:
        /// `serial:PATH[:BAUD]`, `rnode:PATH[:BAUD][,options]`, `meshtastic:PATH[:BAUD][,options]`
        /// or `udp:HOST:PORT`. The card's own address still serves everything else.
        #[arg(long, value_name = "LINK")]
        via: Option<String>,
    },
    /// List servers.
    #[command(after_help = "Example:\n  meow servers list --json")]
    List(JsonArgs),
    /// Remove a server by name or address.
    #[command(after_help = "Example:\n  meow servers remove 127.0.0.1:7070")]
    Remove {
        /// Name or address.
        server: String,
    },
    /// Find servers announced on the local network (`meow server --announce`), for an
    /// isolated Wi-Fi with no internet. Each one found is asked to prove it holds the key its
    /// card names; compare that key's fingerprint with the one its owner shows you before
    /// `meow servers add`: anyone on the network can announce anything.
    #[command(
        after_help = "Examples:\n  meow servers discover\n  meow servers discover --wait 10s --json\n  meow servers add \"$(meow servers discover --json | jq -r '.[0].card')\""
    )]
    Discover(DiscoverArgs),
    /// The server catalog: the servers your servers know (gossiped among them), which relay
    /// Matriochka packets, and which you trust to start a route.
    #[command(after_help = "Examples:\n  meow servers catalog\n  meow servers catalog --refresh --json")]
    Catalog {
        /// Fetch it from your servers first.
        #[arg(long)]
        refresh: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Trust a server to be the first relay of your Matriochka routes. Your own servers are
    /// trusted unless you untrust them.
    #[command(
        after_help = "Examples:\n  meow servers trust relay-one\n  meow servers trust 3f2a9c…   (a key fingerprint from `meow servers catalog`)"
    )]
    Trust {
        /// Its name, address or key fingerprint.
        server: String,
    },
    /// Stop trusting a server to start routes (polls of your `matriochka` contacts' mailboxes
    /// then skip it too).
    #[command(after_help = "Example:\n  meow servers untrust home")]
    Untrust {
        /// Its name, address or key fingerprint.
        server: String,
    },
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// How long to listen for announcements.
    #[arg(long, default_value = "3s")]
    pub wait: String,
    /// Listen on the loopback interface only (servers announced from this machine on 127.0.0.1).
    #[arg(long)]
    pub loopback: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ContactsArgs {
    /// What to do (nothing: list them).
    #[command(subcommand)]
    pub cmd: Option<ContactsCmd>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ContactsCmd {
    /// Choose how messages to a contact travel.
    #[command(
        after_help = "Examples:\n  meow contacts policy bob matriochka\n  meow contacts policy bob matriochka --hops 4 --delay 1s\n  meow contacts policy bob direct-preferred\n  meow contacts policy --default matriochka     new contacts get it"
    )]
    Policy(PolicyArgs),
    /// Give a contact another name (on every device of yours).
    #[command(after_help = "Example:\n  meow contacts rename bob robert")]
    Rename {
        /// The contact.
        name: String,
        /// Its new name.
        new: String,
    },
    /// Forget a contact (on every device of yours); what it sent stays in the inbox.
    #[command(
        after_help = "Example:\n  meow contacts remove bob\n\nThe contact is not told: its messages simply stop being read. To talk again, exchange\ncards again."
    )]
    Remove {
        /// The contact.
        name: String,
    },
}

/// How messages to a contact travel (spec §1.2.4):
///
/// - `server`: through the contact's servers (the default);
/// - `direct-preferred`: straight to its device when it said where (only such a contact
///   learns where this home listens, while `meow run` has `direct:` in meow.yaml), through
///   its servers otherwise;
/// - `matriochka`: through an onion route of relay servers (docs/PROTOCOL.md §22): the first
///   relay one you trust (your own server run with `--relay`, or one marked with `meow
///   servers trust`), the middle ones drawn from the server catalog, each holding the packet
///   for a random delay. It never falls back: with no route, messages wait in the outbox.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The contact, then the policy; with --default, the policy alone.
    #[arg(value_name = "CONTACT")]
    pub name: String,
    /// server, direct-preferred or matriochka.
    #[arg(value_parser = ["server", "direct-preferred", "matriochka"])]
    pub policy: Option<String>,
    /// Relays on each Matriochka route, 1 to 5 (default 3).
    #[arg(long, value_name = "N")]
    pub hops: Option<u8>,
    /// The mean delay each relay holds a packet for (e.g. 200ms, 2s; default 200ms): longer
    /// delays mix your packets with more of everyone else's.
    #[arg(long, value_name = "MEAN")]
    pub delay: Option<String>,
    /// Set the policy new contacts get, instead of one contact's.
    #[arg(long)]
    pub default: bool,
}

/// `meow device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Make a one-time link card for a new device, wait for it, and compare codes.
    #[command(
        after_help = "Example:\n  meow device link --qr\n\nThe card is good for 10 minutes and one device. When the new device asks to join, both\nshow a six-digit code: confirm only if they are the same (a card someone else saw gives\nanother code). Works with or without `meow run` on this home."
    )]
    Link {
        /// Also show the card as a QR code.
        #[arg(long)]
        qr: bool,
        /// How long to wait for the new device, seconds (at most the card's 10 minutes).
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Join the home a link card comes from: this home (which must not exist yet) becomes one
    /// of its devices.
    #[command(
        after_help = "Example:\n  MEOW_HOME=./laptop meow device join 'meow:link:…' --name laptop\n\nAsks for this device's own password, shows the six-digit code to compare with the other\ndevice, then receives the home: contacts, conversations, messages."
    )]
    Join {
        /// The link card's text (or a file holding it).
        card: String,
        /// This device's name, as the others list it.
        #[arg(long)]
        name: String,
        /// How long to wait for the other device, seconds.
        #[arg(long, default_value_t = 600)]
        wait: u64,
        /// How this device's home is protected.
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// The user's devices: name, id, when linked and last heard from; this one first.
    #[command(after_help = "Examples:\n  meow device list\n  meow device list --json")]
    List(JsonArgs),
    /// Rename a device (by name or the start of its id), on every device.
    #[command(after_help = "Example:\n  meow device rename 3fa2c1d0 kitchen-pi")]
    Rename {
        /// The device.
        device: String,
        /// Its new name.
        name: String,
    },
    /// Make this device the holder of a conversation (it opens and seals its messages).
    #[command(
        after_help = "Example:\n  meow device take bob\n\nWorks when the holder released it, or has been silent for 10 minutes."
    )]
    Take {
        /// The contact.
        contact: String,
    },
    /// Revoke a device (a lost or stolen one): it reads nothing new and cannot revoke back.
    #[command(
        after_help = "Example:\n  meow device revoke laptop\n\nAsks for the home's password as it was when its second device was linked (or\nMEOW_REVOCATION_PASSWORD): a stolen device, even unlocked, does not have it. The\nothers stop syncing with the device, take over its conversations and rotate every\nconversation's keys; the device wipes its home when it hears of it."
    )]
    Revoke {
        /// The device: its name or the start of its id.
        device: String,
    },
    /// Give up holding a conversation, for another device to take.
    #[command(after_help = "Example:\n  meow device release bob")]
    Release {
        /// The contact.
        contact: String,
    },
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// What you will call this contact.
    pub name: String,
    /// Write the card here: `.png` writes a QR code image, `.txt` the text form, anything else
    /// the binary card.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also draw the card as a QR code in the terminal.
    #[arg(long)]
    pub qr: bool,
    /// Ask the contact for a classical start: for a home behind a small link (LoRa), where the
    /// 1.2 KB each way of a post-quantum start does not fit (docs/PROTOCOL.md §17.2).
    #[arg(long)]
    pub classical_start: bool,
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The card: a file, `-` for stdin, or the `meow:card:…` text.
    pub card: String,
    /// Your name for the new contact (default: the nickname on the card).
    #[arg(long)]
    pub name: Option<String>,
    /// Write your answer card here (same formats as `invite --out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Ask the contact for a classical start: for a home behind a small link (LoRa), where the
    /// 1.2 KB each way of a post-quantum start does not fit (docs/PROTOCOL.md §17.2).
    #[arg(long)]
    pub classical_start: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The contact.
    pub name: String,
    /// The text; `-` reads standard input.
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    pub text: Option<String>,
    /// Send this file instead of a text.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The file's name as the contact sees it (default: its own name).
    #[arg(long = "as", value_name = "NAME", requires = "file")]
    pub file_name: Option<String>,
    /// The file's media type (default: guessed from the name, e.g. image/png).
    #[arg(long = "type", value_name = "TYPE", requires = "file")]
    pub media_type: Option<String>,
    /// Answer a message (a thread): its id, or the start of it (`meow inbox --all --json`).
    #[arg(long, value_name = "ID", conflicts_with = "file")]
    pub reply_to: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FileCmd {
    /// Files received and on their way in (with how many chunks are in).
    #[command(after_help = "Example:\n  meow file list --json")]
    List(JsonArgs),
    /// Write a received file to disk (into a folder under its own name, or to a path).
    #[command(after_help = "Examples:\n  meow file save 3fa2 .\n  meow file save 3fa2 copy.pdf --force")]
    Save {
        /// The file's id, or the start of it.
        id: String,
        /// A folder, or the file to write [default: the current folder].
        path: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Delete a received file from the home.
    #[command(after_help = "Example:\n  meow file delete 3fa2")]
    Delete {
        /// The file's id, or the start of it.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// Machine-readable output (a JSON array).
    #[arg(long)]
    pub json: bool,
    /// Wait up to this many seconds for a message if none is waiting.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Show every stored message, not only new ones.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct HideArgs {
    /// The contact.
    pub name: String,
    /// Make a new compartment if the password opens none (without it, a password that opens
    /// nothing is an error, so a typo never makes a compartment).
    #[arg(long)]
    pub new: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The contact.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The runtime configuration (default: ./meow.yaml if it exists, else built-in defaults).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Reload plugins and recipes when their files change.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Write a new plugin that answers "hello", in Rust, Lua, Python or JavaScript.
    #[command(
        after_help = "Examples:\n  meow plugin new greeter --lang lua\n  meow plugin new weather --lang python --dir bots/weather\n\n\
Then `meow plugin build` (Rust: cargo and the wasm32-wasip2 target; Python: `pip install\n\
componentize-py`; JavaScript: `npm install -g @bytecodealliance/componentize-js`) or, for Lua,\n\
`meow plugin pin`. docs/PLUGINS.md walks through each language."
    )]
    New {
        /// The plugin's name (lowercase letters, digits, '-' and '_').
        name: String,
        /// Its language.
        #[arg(long, value_enum, default_value = "lua")]
        lang: crate::plugin_new::Lang,
        /// The folder to write (default: ./NAME); it must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build plugin sources into pinned bundles: Rust (Cargo.toml), Python (app.py), JavaScript
    /// (bot.js), an already-built component (the manifest's entry), or Lua (copied).
    #[command(
        after_help = "Examples:\n  meow plugin build plugins              every plugin under plugins/\n  meow plugin build plugins/echo --out ~/.meow/plugins\n  meow plugin build bots/fast --js-engine quickjs\n\n\
A JavaScript plugin is built against the WIT its imports name: `meow:bot/…@0.1.x` (exports\n\
`init`, `handle`) or `@0.2.x` (exports `start`, `handle`); the host loads both. QuickJS\n\
(componentize-qjs: `npm install -g componentize-qjs`) builds 0.2 only: its own export is\n\
named `init`. Its components are smaller and start faster than StarlingMonkey's."
    )]
    Build {
        /// Plugin folders, or folders containing plugin folders.
        #[arg(default_value = "plugins")]
        sources: Vec<PathBuf>,
        /// Where bundles go.
        #[arg(long, default_value = "target/plugins")]
        out: PathBuf,
        /// The JavaScript engine a JS plugin is built with.
        #[arg(long, value_enum, default_value = "starlingmonkey")]
        js_engine: crate::cmd_plugin::JsEngine,
    },
    /// Compile a component into the runtime's cache format (what `meow run` starts in a child
    /// process, so that the compiler's memory is returned when it exits).
    #[command(
        hide = true,
        after_help = "Example (what `meow run` does itself):\n  meow plugin compile-wasm echo.wasm echo.cwasm"
    )]
    CompileWasm {
        /// The component.
        input: PathBuf,
        /// Where the compiled code goes.
        output: PathBuf,
    },
    /// Write the entry file's SHA-256 into a plugin.yaml (after editing the plugin).
    #[command(after_help = "Example:\n  meow plugin pin plugins/ping")]
    Pin {
        /// The plugin folder.
        dir: PathBuf,
    },
    /// List the plugin instances of the running daemon.
    #[command(after_help = "Example:\n  meow plugin list --json")]
    List(JsonArgs),
    /// Reload a plugin instance from disk (rolls back if the new version fails to start).
    #[command(after_help = "Example:\n  meow plugin reload echo")]
    Reload {
        /// The instance name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a group you own.
    #[command(after_help = "Example:\n  meow group create friends")]
    Create {
        /// Its name.
        name: String,
    },
    /// Add a contact to a group you own (every member is told).
    #[command(after_help = "Example:\n  meow group add friends bob")]
    Add {
        /// The group.
        group: String,
        /// The contact.
        contact: String,
    },
    /// Remove a member from a group you own (they receive nothing more from it).
    #[command(after_help = "Example:\n  meow group remove friends bob")]
    Remove {
        /// The group.
        group: String,
        /// The member.
        contact: String,
    },
    /// Send text to a group (one copy per member, each sealed for that member).
    #[command(after_help = "Example:\n  meow group send friends 'dinner at 8'")]
    Send {
        /// The group.
        group: String,
        /// The text; `-` reads standard input.
        text: String,
    },
    /// List your groups and their members.
    #[command(after_help = "Example:\n  meow group list --json")]
    List(JsonArgs),
    /// Leave a group (its owner dissolves it).
    #[command(after_help = "Example:\n  meow group leave friends")]
    Leave {
        /// The group.
        group: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCmd {
    /// Publish (or update) your "free for chat" entry, with a public card people can accept.
    #[command(
        after_help = "Example:\n  meow directory publish --description 'chess, any level' --tag chess --tag games"
    )]
    Publish {
        /// What you say about yourself (at most 280 bytes).
        #[arg(long)]
        description: String,
        /// A word to be found by (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Search entries by words (every word must match).
    #[command(
        after_help = "Example:\n  meow directory search chess\n  meow accept '<the card text of an entry>' --name chessfan"
    )]
    Search {
        /// The words.
        words: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Draw entries at random.
    #[command(after_help = "Example:\n  meow directory random --count 3")]
    Random {
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove your entry.
    #[command(after_help = "Example:\n  meow directory withdraw")]
    Withdraw,
}

#[derive(Debug, Subcommand)]
pub enum RecipeCmd {
    /// Check recipe files (syntax, keys, templates; contacts too when the home can be read).
    #[command(after_help = "Example:\n  meow recipe check recipes/*.yaml")]
    Check {
        /// Recipe files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Dry-run a recipe against a sample event: what would it do? Nothing is sent.
    #[command(
        after_help = "Example:\n  meow recipe test recipes/sensor-alert.yaml --event hot.yaml\n  (hot.yaml: message: { from: sensor, text: '{\"t\": 31.5}' })\n  meow recipe test recipes/morning.yaml --event hi.yaml --at '2026-12-02 08:30'\n  (the same event at the same --at always gives the same report)"
    )]
    Test {
        /// The recipe.
        file: PathBuf,
        /// The sample event (YAML).
        #[arg(long)]
        event: PathBuf,
        /// When the event happens (local time 'YYYY-MM-DD HH:MM' or 'YYYY-MM-DD HH:MM:SS', or RFC 3339 with an
        /// offset); it sets `now` in templates and which schedule fires. Default: now.
        #[arg(long, value_name = "TIME", value_parser = crate::util::parse_time_ms)]
        at: Option<u64>,
    },
    /// Show the last runs of a recipe, step by step.
    #[command(after_help = "Example:\n  meow recipe trace sensor-alert")]
    Trace {
        /// The recipe's name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List the recipes the running daemon loaded.
    #[command(after_help = "Example:\n  meow recipe list")]
    List,
    /// Make the running daemon read its recipe files again
    ///
    /// Use it after an edit, a new file, or a new contact that a recipe names. All or nothing: if
    /// one file fails its checks, the error is printed and the recipes already running stay. Runs
    /// in progress finish as they started.
    #[command(after_help = "Example:\n  meow recipe reload")]
    Reload,
}

#[derive(Debug, Args)]
pub struct SensorArgs {
    /// The contact receiving the readings.
    #[arg(long)]
    pub to: String,
    /// Time between readings.
    #[arg(long, default_value = "5s")]
    pub every: String,
    /// Stop after this many readings.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Reading from which a heat spike (over 30 °C) is simulated.
    #[arg(long, default_value_t = 6)]
    pub hot_at: u64,
    /// Send each reading through a link session with this gateway (the contact's server,
    /// started with --udp, --serial or --radio), in the compact form: 110 bytes on the air for
    /// a 20-byte reading. One of `udp:HOST:PORT`, `serial:PATH[:BAUD]`,
    /// `rnode:PATH[:BAUD][,sf=…,bw=…,cr=…,freq=…,power=…,duty=…]` or
    /// `meshtastic:PATH[:BAUD][,channel=…,to=!NODE,duty=…]`. Readings that cannot go (the link is
    /// down) wait in the outbox and go first once it is back. The conversation must be at
    /// version 2 (after one exchange); until then readings go the usual way.
    #[arg(long, value_name = "LINK")]
    pub link: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check this server data folder instead of the home.
    #[arg(long, value_name = "DIR")]
    pub server: Option<PathBuf>,
    /// After the report, accept a store that lost writes as it is now (what was lost stays lost).
    #[arg(long)]
    pub accept_loss: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo homes here (default: a new temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How long the demo runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Where the built plugins are (built on first run if missing).
    #[arg(long)]
    pub plugins: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every command, down to the leaves, says what it does and shows an example.
    #[test]
    fn every_command_has_an_about_and_an_example() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            let help = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
            if !help.contains("Example") {
                missing.push(format!("{path}: no example"));
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
    }
}
