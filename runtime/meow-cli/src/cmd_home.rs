//! The home commands: init, servers, invite, accept, contacts, send, inbox, rotate.
//!
//! Each handler works on a node behind a lock and returns its output as a [`Reply`], so the same
//! code serves the terminal directly and, while `meow run` holds the home, the control socket.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use meow_node::sync::{self, Delivery};
use meow_node::{Accepted, InboxItem, Node, Origin};
use meow_proto::card::Card;
use meow_proto::envelope::ContentType;
use serde_json::json;
use smol::lock::Mutex;

use crate::cli::{AcceptArgs, InboxArgs, InviteArgs, JsonArgs, SendArgs, ServersCmd};
use crate::util::format_time;

/// Exit status of `send` when the message was queued instead of delivered.
pub const EXIT_QUEUED: u8 = 75;

/// What a command prints and how it exits.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// Standard output.
    pub out: String,
    /// Standard error (notes and warnings).
    pub err: String,
    /// Exit status.
    pub code: u8,
    /// A one-line error, if the command failed.
    pub error: Option<String>,
}

impl Reply {
    fn line(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }

    fn note(&mut self, s: impl AsRef<str>) {
        self.err.push_str(s.as_ref());
        self.err.push('\n');
    }

    /// Prints the reply and returns the exit status.
    pub fn emit(self) -> u8 {
        use std::io::Write;
        let _ = std::io::stdout().write_all(self.out.as_bytes());
        let _ = std::io::stderr().write_all(self.err.as_bytes());
        if let Some(e) = &self.error {
            eprintln!("meow: {e}");
        }
        self.code
    }
}

/// Reads a card argument: a file, `-` for stdin, or text.
pub fn read_card_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    if arg == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        return Ok(b);
    }
    let p = Path::new(arg);
    if p.is_file() {
        let data = std::fs::read(p).with_context(|| format!("reading {arg}"))?;
        if data.starts_with(b"\x89PNG") {
            bail!("{arg} is a QR image: scan it and pass the text it holds (meow:card:…), or use the card file");
        }
        return Ok(data);
    }
    if arg.trim_start().starts_with("meow:") {
        return Ok(arg.as_bytes().to_vec());
    }
    bail!("{arg}: no such file, and not a card text (meow:card:…)")
}

/// Writes a card in the format the file name asks for.
pub fn write_card(path: &Path, card: &Card) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let data = match ext {
        "png" => meow_proto::qr::png(&card.to_text())?,
        "txt" => format!("{}\n", card.to_text()).into_bytes(),
        _ => card.as_bytes().to_vec(),
    };
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

pub async fn servers(node: &Mutex<Node>, cmd: ServersCmd) -> anyhow::Result<Reply> {
    let mut r = Reply::default();
    match cmd {
        ServersCmd::Add { card } => {
            let text = String::from_utf8(read_card_arg(&card)?).context("a server card is text")?;
            let card = node.lock().await.add_server(&text)?;
            r.line(format!(
                "added server {} at {} (key {})",
                card.name,
                card.address,
                card.key.fingerprint()
            ));
        }
        ServersCmd::List(JsonArgs { json }) => {
            let servers = node.lock().await.servers();
            if json {
                let v: Vec<_> = servers
                    .iter()
                    .map(|s| json!({"name": s.name, "address": s.address, "key": s.key.to_text(), "card": s.to_text()}))
                    .collect();
                r.line(serde_json::to_string_pretty(&v)?);
            } else if servers.is_empty() {
                r.note("no servers (add one with `meow servers add <card>`)");
            } else {
                for s in servers {
                    r.line(format!("{:<16} {:<24} key {}", s.name, s.address, s.key.fingerprint()));
                }
            }
        }
        ServersCmd::Remove { server } => {
            let card = node.lock().await.remove_server(&server)?;
            r.line(format!("removed server {} ({})", card.name, card.address));
        }
    }
    Ok(r)
}

pub async fn invite(node: &Mutex<Node>, args: InviteArgs) -> anyhow::Result<Reply> {
    let card = node.lock().await.invite(&args.name, false)?;
    let mut r = Reply::default();
    if let Some(out) = &args.out {
        write_card(out, &card)?;
        r.note(format!("invitation for {} written to {}", args.name, out.display()));
    }
    r.line(card.to_text());
    if args.qr {
        r.line(meow_proto::qr::terminal(&card.to_text())?);
    }
    r.note(format!(
        "give this card to {} (file, text or QR); their answer completes the contact (valid until {} UTC)",
        args.name,
        format_time(card.body.expires * 1000)
    ));
    Ok(r)
}

pub async fn accept(node: &Mutex<Node>, args: AcceptArgs, data: Vec<u8>) -> anyhow::Result<Reply> {
    let accepted = node.lock().await.accept(&data, args.name.as_deref())?;
    let mut r = Reply::default();
    match accepted {
        Accepted::Answered { name, answer } => {
            if let Some(out) = &args.out {
                write_card(out, &answer)?;
            }
            let report = sync::flush_outbox(node, false).await?;
            r.line(format!("added contact {name}"));
            if report.queued.is_empty() {
                r.note(format!(
                    "your answer was delivered to {name}'s server; you can write to {name} now"
                ));
            } else {
                r.note(format!(
                    "could not reach {name}'s server yet: hand over your answer card, or it is sent later"
                ));
            }
            match &args.out {
                Some(out) => r.note(format!("answer card written to {}", out.display())),
                None => r.line(answer.to_text()),
            }
        }
        Accepted::Completed { name } => r.line(format!("contact {name} completed: you can write to {name} now")),
        Accepted::AlreadyDone { name } => r.line(format!(
            "contact {name} was already completed (its answer came through your server)"
        )),
    }
    Ok(r)
}

pub async fn contacts(node: &Mutex<Node>, args: JsonArgs) -> anyhow::Result<Reply> {
    let n = node.lock().await;
    let mut r = Reply::default();
    let list: Vec<_> = n
        .contacts()
        .into_iter()
        .map(|c| {
            let conv = &c.conversation;
            json!({
                "name": c.name,
                "their_key": conv.peer.to_text(),
                "fingerprint": conv.peer.fingerprint(),
                "my_key": conv.contact_key.public().to_text(),
                "servers": c.servers.iter().map(|s| s.address.clone()).collect::<Vec<_>>(),
                "policy": c.policy.name(),
                "key_serial": conv.current().serial,
                "rotation_pending": conv.pending().map(|p| p.serial),
                "dropped_unsigned": c.dropped_unsigned,
                "via_directory": c.via_public_card,
                "added": format_time(c.added_ms),
            })
        })
        .collect();
    let pending = n.pending_invitations();
    if args.json {
        let inv: Vec<_> = pending
            .iter()
            .map(|p| json!({"name": p.name, "public": p.public, "expires": format_time(p.expires * 1000)}))
            .collect();
        r.line(serde_json::to_string_pretty(
            &json!({"contacts": list, "invitations": inv}),
        )?);
        return Ok(r);
    }
    if list.is_empty() && pending.is_empty() {
        r.note("no contacts yet (start with `meow invite NAME`)");
    }
    for c in n.contacts() {
        let conv = &c.conversation;
        let rot = conv
            .pending()
            .map(|p| format!(", rotation {} pending", p.serial))
            .unwrap_or_default();
        let servers: Vec<_> = c.servers.iter().map(|s| s.address.as_str()).collect();
        r.line(format!(
            "{:<16} {}  via {} ({}){rot}",
            c.name,
            conv.peer.fingerprint(),
            servers.join(", "),
            c.policy.name()
        ));
    }
    for p in pending {
        let kind = if p.public { "public card" } else { "invitation" };
        r.line(format!(
            "{:<16} ({kind} waiting for an answer, until {} UTC)",
            p.name,
            format_time(p.expires * 1000)
        ));
    }
    Ok(r)
}

pub async fn send(node: &Mutex<Node>, args: SendArgs, text: String) -> anyhow::Result<Reply> {
    // Whatever waits in the outbox goes first.
    let earlier = sync::flush_outbox(node, false).await?;
    let mut r = Reply::default();
    if earlier.delivered > 0 {
        r.note(format!("delivered {} queued message(s)", earlier.delivered));
    }
    match sync::send(node, &args.name, ContentType::TEXT, text.into_bytes()).await? {
        Delivery::Delivered { server } => r.note(format!("sent to {} (via {server})", args.name)),
        Delivery::Queued { reason } => {
            r.code = EXIT_QUEUED;
            r.error = Some(format!(
                "queued for {}: {reason}; it is delivered by the next send, inbox or run",
                args.name
            ));
        }
    }
    Ok(r)
}

fn item_json(i: &InboxItem) -> serde_json::Value {
    let text = matches!(i.content_type, ContentType::TEXT | ContentType::JSON)
        .then(|| String::from_utf8_lossy(&i.content).into_owned());
    let origin = match &i.origin {
        Origin::Contact => json!({"kind": "contact"}),
        Origin::Group { name, .. } => json!({"kind": "group", "group": name}),
        Origin::Broadcast {
            server,
            from_operator,
            signer,
        } => {
            json!({"kind": "broadcast", "server": server, "from_operator": from_operator, "signer": signer.to_text()})
        }
    };
    json!({
        "seq": i.seq,
        "from": i.from,
        "id": i.message.to_hex(),
        "sent_at": format_time(i.sent_at_ms),
        "received_at": format_time(i.received_ms),
        "type": i.content_type.name(),
        "text": text,
        "bytes": i.content.len(),
        "origin": origin,
    })
}

/// One line per message for people.
pub fn item_line(i: &InboxItem) -> String {
    let body = match i.content_type {
        ContentType::TEXT | ContentType::JSON => String::from_utf8_lossy(&i.content).into_owned(),
        t => format!("<{} bytes of {}>", i.content.len(), t.name()),
    };
    let who = match &i.origin {
        Origin::Contact => i.from.clone(),
        Origin::Group { name, .. } => format!("{} in #{name}", i.from),
        Origin::Broadcast {
            from_operator: true,
            server,
            ..
        } => format!("BROADCAST from the operator of {server}"),
        Origin::Broadcast { signer, server, .. } => format!("BROADCAST from {} on {server}", signer.fingerprint()),
    };
    format!("[{}] {who}: {body}", format_time(i.sent_at_ms))
}

pub async fn inbox(node: &Mutex<Node>, args: InboxArgs) -> anyhow::Result<Reply> {
    let mut r = Reply::default();
    let flushed = sync::flush_outbox(node, false).await?;
    if flushed.delivered > 0 {
        r.note(format!("delivered {} queued message(s)", flushed.delivered));
    }
    // Wait (up to --wait) for something to show: a poll may return with only key updates.
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait);
    let report = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let report = sync::fetch(node, left).await?;
        let visible = report
            .events
            .iter()
            .any(|e| matches!(e, meow_node::NodeEvent::Message(_)));
        if visible || left.is_zero() || !report.unreachable.is_empty() || args.all {
            break report;
        }
    };
    let items = node.lock().await.inbox(!args.all)?;
    if args.json {
        let v: Vec<_> = items.iter().map(item_json).collect();
        r.line(serde_json::to_string_pretty(&v)?);
    } else {
        for i in &items {
            r.line(item_line(i));
        }
        if items.is_empty() && report.unreachable.is_empty() {
            r.note("no new messages");
        }
    }
    node.lock().await.mark_read(&items)?;
    for e in &report.events {
        if let meow_node::NodeEvent::ContactAdded { name, .. } = e {
            r.note(format!("contact {name} completed (their answer arrived)"));
        }
    }
    if let Some((server, reason)) = report.unreachable.first() {
        r.code = 1;
        r.error = Some(format!(
            "cannot fetch from server {server}: {reason} (nothing was lost; try again later)"
        ));
    }
    Ok(r)
}

pub async fn rotate(node: &Mutex<Node>, name: &str) -> anyhow::Result<Reply> {
    let serial = node.lock().await.rotate(name)?;
    let mut r = Reply::default();
    // The offer rides on a control message so the contact learns of it without waiting.
    match sync::send(node, name, ContentType::CONTROL, Vec::new()).await? {
        Delivery::Delivered { .. } => {
            r.line(format!("rotation {serial} for {name} started; it takes effect when {name} acknowledges it"))
        }
        Delivery::Queued { reason } => r.line(format!(
            "rotation {serial} for {name} started; the offer is queued ({reason}) and takes effect when {name} acknowledges it"
        )),
    }
    Ok(r)
}
