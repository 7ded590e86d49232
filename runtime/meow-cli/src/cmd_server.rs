//! `meow server`: run a server in the foreground; `meow server card`: print its card.

use std::path::Path;

use anyhow::{Context, bail};
use meow_proto::{BroadcastPublic, ServerCard};
use meow_server::{Server, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::cli::{ServerAction, ServerCardArgs, ServerCmd, ServerRunArgs};
use crate::util::{parse_duration, wait_for_shutdown_signal};

/// What `meow server card` needs to know about the last run.
#[derive(Debug, Serialize, Deserialize)]
struct LastRun {
    name: String,
    address: String,
}

pub fn run(cmd: ServerCmd) -> anyhow::Result<()> {
    match cmd.action {
        Some(ServerAction::Card(args)) => card(args),
        None => serve(cmd.run),
    }
}

fn config(args: &ServerRunArgs) -> anyhow::Result<ServerConfig> {
    let mut cfg = ServerConfig::new(args.data.clone(), args.listen);
    cfg.listen_udp = args.udp;
    for s in &args.serial {
        let spec = meow_net::serial::SerialSpec::parse(s)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--serial {s}"))?;
        cfg.links.push(meow_net::port::LinkAddress::Serial(spec));
    }
    for r in &args.radio {
        let link: meow_net::port::LinkAddress = r
            .parse()
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("--radio {r}"))?;
        if !link.is_radio() {
            bail!("--radio {r}: a radio is rnode:… or meshtastic:… (a bare line goes with --serial)");
        }
        cfg.links.push(link);
    }
    cfg.name = args.name.clone();
    cfg.allow_broadcast = args.allow_broadcast;
    cfg.message_ttl = parse_duration(&args.ttl).context("--ttl")?;
    cfg.broadcast_ttl = parse_duration(&args.broadcast_ttl).context("--broadcast-ttl")?;
    let size = |text: &str, flag: &str| {
        meow_yaml::size(text)
            .map_err(anyhow::Error::msg)
            .context(flag.to_owned())
    };
    let l = &mut cfg.limits;
    l.max_messages_per_mailbox = args.max_messages;
    l.max_connections = args.max_connections;
    l.max_connections_per_address = args.max_connections_per_address;
    l.max_unauthenticated = args.max_unauthenticated;
    l.handshake_timeout = parse_duration(&args.handshake_timeout).context("--handshake-timeout")?;
    l.max_store_bytes = size(&args.max_store, "--max-store")?;
    let minute = std::time::Duration::from_secs(60);
    l.address_deposits = meow_server::Budget {
        count: args.address_deposits,
        bytes: size(&args.address_deposit_bytes, "--address-deposit-bytes")?,
        window: minute,
    };
    l.session_deposits = meow_server::Budget {
        count: args.session_deposits,
        bytes: size(&args.session_deposit_bytes, "--session-deposit-bytes")?,
        window: minute,
    };
    l.new_mailboxes_per_hour = args.new_mailboxes_per_hour;
    cfg.threads = args.threads;
    for k in &args.operators {
        let key: BroadcastPublic = k.parse().with_context(|| format!("--operator {k}"))?;
        cfg.operators.push(key);
    }
    relay_config(args, &mut cfg)?;
    Ok(cfg)
}

/// The relay and catalog options.
fn relay_config(args: &ServerRunArgs, cfg: &mut ServerConfig) -> anyhow::Result<()> {
    if args.relay {
        let epoch = parse_duration(&args.relay_epoch).context("--relay-epoch")?;
        if epoch.as_secs() < u64::from(meow_proto::catalog::MIN_EPOCH_SECS) {
            bail!("--relay-epoch is at least {} s", meow_proto::catalog::MIN_EPOCH_SECS);
        }
        cfg.relay = Some(meow_server::relay::RelayConfig {
            max_delay: parse_duration(&args.relay_max_delay).context("--relay-max-delay")?,
            epoch,
            per_second: args.relay_rate,
            ..Default::default()
        });
    }
    cfg.gossip.interval = parse_duration(&args.gossip_interval).context("--gossip-interval")?;
    for p in &args.peers {
        let bytes = crate::cmd_home::read_card_arg(p).with_context(|| format!("--peer {p}"))?;
        let text = String::from_utf8(bytes).context("a server card is text")?;
        let card = ServerCard::from_text(text.trim()).with_context(|| format!("--peer {p}"))?;
        cfg.gossip.peers.push(card);
    }
    if let Some(a) = &args.advertise {
        cfg.gossip.advertise = Some(a.parse().map_err(|e| anyhow::anyhow!("--advertise {a}: {e}"))?);
    }
    Ok(())
}

fn serve(args: ServerRunArgs) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    let server = Server::start(cfg).context("starting the server")?;
    let card = server.card().clone();
    let last = LastRun {
        name: card.name.clone(),
        address: card.address.to_string(),
    };
    // Atomically: a reader (`meow server card`, a test) never sees half a file.
    meow_server::write_private(&args.data.join("last-run.json"), &serde_json::to_vec_pretty(&last)?)
        .context("writing last-run.json")?;
    tracing::info!(name = %card.name, address = %card.address, key = %card.key, "meow server ready");
    if args.relay {
        tracing::info!(
            identity = %server.catalog().own().identity,
            "relaying Matriochka packets; servers and clients find this relay in the catalog"
        );
    }
    tracing::info!(
        "server card (clients add it with `meow servers add`): {}",
        card.to_text()
    );
    let _announcement = match args.announce {
        true => Some(
            meow_discover::announce(&card, args.listen, meow_discover::Scope::for_listen(args.listen))
                .context("announcing on the local network")?,
        ),
        false => None,
    };
    wait_for_shutdown_signal()?;
    for (name, s) in server.link_status() {
        tracing::info!(link = %name, sent = ?s.sent, received = ?s.received, dropped = s.dropped, airtime_used = ?s.airtime_used, "link totals");
    }
    if let Some(r) = server.relay_stats() {
        tracing::info!(
            accepted = r.accepted,
            forwarded = r.forwarded,
            delivered = r.delivered,
            replays = r.replays,
            refused = r.refused,
            lost = r.lost,
            "relay totals"
        );
    }
    tracing::info!("shutting down");
    server.shutdown();
    Ok(())
}

/// A server found on the local network, and whether it proved it holds its card's key.
#[derive(Debug, Serialize)]
struct Discovered {
    name: String,
    address: String,
    fingerprint: String,
    card: String,
    /// It completed a handshake under the card's key.
    verified: bool,
}

/// `meow servers discover`.
pub fn discover(args: &crate::cli::DiscoverArgs) -> anyhow::Result<()> {
    let wait = parse_duration(&args.wait).context("--wait")?;
    let scope = if args.loopback {
        meow_discover::Scope::Loopback
    } else {
        meow_discover::Scope::Network
    };
    let found = meow_discover::discover(wait, scope)?;
    let list: Vec<Discovered> = smol::block_on(async {
        let mut list = Vec::new();
        for f in found {
            // A handshake proves the server at that address holds the key the card names.
            let verified = meow_net::ServerClient::connect(&f.card.address, &f.card.key)
                .await
                .is_ok();
            list.push(Discovered {
                name: f.card.name.clone(),
                address: f.card.address.to_string(),
                fingerprint: f.card.key.fingerprint(),
                card: f.card.to_text(),
                verified,
            });
        }
        list
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        eprintln!(
            "no server announced itself within {} (servers announce with `meow server --announce`)",
            args.wait
        );
    }
    for d in &list {
        let proof = if d.verified {
            "answers under this key"
        } else {
            "does NOT answer under this key: do not add it"
        };
        println!("{:<16} {:<24} key {} ({proof})", d.name, d.address, d.fingerprint);
        println!(
            "  compare the key with its owner's, then: meow servers add '{}'",
            d.card
        );
    }
    Ok(())
}

fn card(args: ServerCardArgs) -> anyhow::Result<()> {
    if !args.data.join("server.key").exists() {
        bail!(
            "no server in {} (start one with `meow server --data {}` first)",
            args.data.display(),
            args.data.display()
        );
    }
    let key = meow_server::load_or_create_key(&args.data)?;
    let last: Option<LastRun> = std::fs::read(args.data.join("last-run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let address = match (&args.address, &last) {
        (Some(a), _) => a.clone(),
        (None, Some(l)) => reachable(&l.address),
        (None, None) => bail!("the server has never run; pass --address HOST:PORT"),
    };
    let name = last.map(|l| l.name).unwrap_or_else(|| "meow".into());
    let address = address.parse().with_context(|| format!("--address {address}"))?;
    let card = ServerCard {
        name,
        address,
        key: key.public(),
    };
    write_out(args.out.as_deref(), &card.to_text())
}

/// A listening address clients can use: an unspecified IP becomes 127.0.0.1.
fn reachable(address: &str) -> String {
    match address.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            eprintln!("note: the server listens on all interfaces; the card says 127.0.0.1 (use --address for others)");
            format!("127.0.0.1:{}", a.port())
        }
        _ => address.to_owned(),
    }
}

/// Writes `text` to a file, or prints it.
pub fn write_out(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}
