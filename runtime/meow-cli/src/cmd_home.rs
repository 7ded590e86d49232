//! The home commands: each becomes a typed [`Request`], runs in the daemon that holds the home
//! (over its control socket) or on the home directly, and its [`Response`] is printed here.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use meow_node::Node;
use meow_proto::card::Card;
use meow_runtime::control::{self, AcceptView, Answer, ControlError, Password, Request, Response};
use meow_runtime::views::{CatalogView, ContactView, DeliveryView, MessageView, OriginView};
use smol::lock::Mutex;

use crate::cli::{
    Command, ContactsArgs, ContactsCmd, DirectoryCmd, GroupCmd, PluginCmd, PolicyArgs, RecipeCmd, ServersCmd,
};
use crate::util::format_time;

/// Exit status of `send` when the message was queued instead of delivered.
pub const EXIT_QUEUED: u8 = 75;

/// What a command prints and how it exits.
#[derive(Debug, Default, Clone)]
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
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }

    pub fn note(&mut self, s: impl AsRef<str>) {
        self.err.push_str(s.as_ref());
        self.err.push('\n');
    }

    pub fn json(&mut self, v: &impl serde::Serialize) -> anyhow::Result<()> {
        self.line(serde_json::to_string_pretty(v)?);
        Ok(())
    }

    pub fn fail(&mut self, error: impl Into<String>) {
        self.code = 1;
        self.error = Some(error.into());
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
    bail!("{arg}: no such file, and not a card text (meow:card:… or meow:server:…)")
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

/// A card this home just made, from its text form.
fn parse_card(text: &str) -> anyhow::Result<Card> {
    Ok(meow_proto::UncheckedCard::from_text(text)?.check_signature()?)
}

fn text_arg(text: &str) -> anyhow::Result<String> {
    if text == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the message from stdin")
    } else {
        Ok(text.to_owned())
    }
}

pub fn absolute(p: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_owned())
}

/// The request a home command makes (reading its files and standard input here); `None` for
/// commands that do not work on a home.
pub fn request(c: &Command, compartment_file: Option<&Path>) -> anyhow::Result<Option<Request>> {
    let compartment = |creating| -> anyhow::Result<Password> {
        Ok(Password(
            crate::util::compartment_password(compartment_file, creating)?.to_string(),
        ))
    };
    Ok(Some(match c {
        Command::Hide(a) => Request::Hide {
            name: a.name.clone(),
            password: compartment(a.new)?,
            create: a.new,
        },
        Command::Unlock => Request::Unlock {
            password: compartment(false)?,
        },
        Command::Lock => Request::Lock { password: None },
        Command::Servers(ServersCmd::Add { card, via }) => Request::ServerAdd {
            card: String::from_utf8(read_card_arg(card)?).context("a server card is text")?,
            via: via.clone(),
        },
        Command::Servers(ServersCmd::List(_)) => Request::ServerList,
        Command::Servers(ServersCmd::Remove { server }) => Request::ServerRemove { server: server.clone() },
        Command::Invite(a) => Request::Invite {
            name: a.name.clone(),
            classical_start: a.classical_start,
        },
        Command::Accept(a) => Request::Accept {
            card: read_card_arg(&a.card)?,
            name: a.name.clone(),
            classical_start: a.classical_start,
        },
        Command::Contacts(ContactsArgs {
            cmd: Some(ContactsCmd::Policy(p)),
            ..
        })
        | Command::Policy(p) => policy_request(p)?,
        Command::Contacts(ContactsArgs {
            cmd: Some(ContactsCmd::Rename { name, new }),
            ..
        }) => Request::ContactRename {
            name: name.clone(),
            new: new.clone(),
        },
        Command::Contacts(ContactsArgs {
            cmd: Some(ContactsCmd::Remove { name }),
            ..
        }) => Request::ContactRemove { name: name.clone() },
        Command::Contacts(_) => Request::Contacts,
        Command::Servers(ServersCmd::Catalog { refresh, .. }) => Request::ServerCatalog { refresh: *refresh },
        Command::Servers(ServersCmd::Trust { server }) => Request::ServerTrust {
            server: server.clone(),
            trusted: true,
        },
        Command::Servers(ServersCmd::Untrust { server }) => Request::ServerTrust {
            server: server.clone(),
            trusted: false,
        },
        Command::Send(a) => match (&a.file, &a.text) {
            (Some(path), _) => Request::SendFile {
                to: a.name.clone(),
                path: absolute(path),
                name: a.file_name.clone(),
                media_type: a.media_type.clone(),
            },
            (None, Some(text)) => Request::Send {
                to: a.name.clone(),
                text: text_arg(text)?,
                reply_to: a.reply_to.clone(),
            },
            (None, None) => bail!("give a text or --file PATH"),
        },
        Command::File(f) => crate::cmd_file::request(f),
        Command::Inbox(a) => Request::Inbox {
            wait_secs: a.wait,
            all: a.all,
        },
        Command::Rotate(a) => Request::Rotate { name: a.name.clone() },
        Command::Device(d) => match crate::cmd_device::request(d)? {
            Some(r) => r,
            None => return Ok(None),
        },
        Command::Group(g) => match g {
            GroupCmd::Create { name } => Request::GroupCreate { name: name.clone() },
            GroupCmd::Add { group, contact } => Request::GroupAdd {
                group: group.clone(),
                contact: contact.clone(),
            },
            GroupCmd::Remove { group, contact } => Request::GroupRemove {
                group: group.clone(),
                contact: contact.clone(),
            },
            GroupCmd::Send { group, text } => Request::GroupSend {
                group: group.clone(),
                text: text_arg(text)?,
            },
            GroupCmd::Leave { group } => Request::GroupLeave { group: group.clone() },
            GroupCmd::List(_) => Request::GroupList,
        },
        Command::Broadcast { text } => Request::Broadcast { text: text.clone() },
        Command::BroadcastKey => Request::BroadcastKey,
        Command::Directory(d) => match d {
            DirectoryCmd::Publish { description, tags } => Request::DirectoryPublish {
                description: description.clone(),
                tags: tags.clone(),
            },
            DirectoryCmd::Search { words, .. } => Request::DirectorySearch { words: words.join(" ") },
            DirectoryCmd::Random { count, .. } => Request::DirectoryRandom { count: *count },
            DirectoryCmd::Withdraw => Request::DirectoryWithdraw,
        },
        Command::Recipe(RecipeCmd::Trace { name, .. }) => Request::RecipeTrace { name: name.clone() },
        Command::Recipe(RecipeCmd::List) => Request::RecipeList,
        Command::Recipe(RecipeCmd::Reload) => Request::RecipeReload,
        Command::Recipe(RecipeCmd::Check { files }) => Request::RecipeCheck {
            files: files.iter().map(|f| absolute(f)).collect(),
        },
        Command::Recipe(RecipeCmd::Test { file, event, at }) => Request::RecipeTest {
            file: absolute(file),
            event: absolute(event),
            at_ms: *at,
        },
        Command::Plugin(PluginCmd::List(_)) => Request::PluginList,
        Command::Plugin(PluginCmd::Reload { name }) => Request::PluginReload { name: name.clone() },
        Command::Status(_) => Request::Status,
        _ => return Ok(None),
    }))
}

/// Runs a request in the daemon holding `home`, or on the home itself; with `compartment`,
/// the hidden compartment it opens is unlocked for the request (and locked again after it,
/// unless it was unlocked before).
pub fn call(
    home: &Path,
    pw_file: Option<&Path>,
    compartment: Option<Password>,
    request: Request,
) -> anyhow::Result<Answer> {
    let explicit = matches!(
        request,
        Request::Hide { .. } | Request::Unlock { .. } | Request::Lock { .. }
    );
    let compartment = compartment.filter(|_| !explicit);
    if let Some(pw) = &compartment {
        match control::forward(home, &Request::Unlock { password: pw.clone() })? {
            None => {}
            Some(Err(e)) => return Ok(Err(e)),
            Some(Ok(unlocked)) => {
                let answer = control::forward(home, &request)?;
                if !matches!(unlocked, Response::Unlocked { already: true, .. }) {
                    control::forward(
                        home,
                        &Request::Lock {
                            password: Some(pw.clone()),
                        },
                    )?;
                }
                return answer.context("the daemon went away");
            }
        }
    }
    if let Some(answer) = control::forward(home, &request)? {
        return Ok(answer);
    }
    if matches!(request, Request::Unlock { .. } | Request::Lock { .. }) {
        bail!(
            "no `meow run` holds this home: `meow unlock` and `meow lock` work on a running daemon; \
             for one command, give the compartment password (MEOW_COMPARTMENT_PASSWORD or \
             --compartment-password-file)"
        );
    }
    let password = crate::util::password(pw_file, false)?;
    let node = Mutex::new(Node::open(home, password.as_bytes())?);
    drop(password);
    if let Some(pw) = &compartment
        && let Err(e) = smol::block_on(node.lock()).unlock(pw.0.as_bytes())
    {
        return Ok(Err(ControlError::from(meow_runtime::RuntimeError::from(e))));
    }
    let answer = smol::block_on(meow_runtime::handle_direct(&node, request)).map_err(ControlError::from);
    // A home opened for one command is closed with its compartments locked (and scrubbed).
    smol::block_on(node.lock()).lock_all()?;
    Ok(answer)
}

/// Formats the answer to a home command.
pub fn show(c: &Command, answer: Answer) -> anyhow::Result<Reply> {
    let mut r = Reply::default();
    let response = match answer {
        Ok(resp) => resp,
        Err(e) => {
            r.fail(e.message);
            return Ok(r);
        }
    };
    match (c, response) {
        (Command::Servers(ServersCmd::List(a)), Response::Servers(list)) => {
            if a.json {
                r.json(&list)?;
            } else if list.is_empty() {
                r.note("no servers (add one with `meow servers add <card>`)");
            }
            if !a.json {
                for s in list {
                    let via = s.via.map(|v| format!(" via {v}")).unwrap_or_default();
                    r.line(format!("{:<16} {:<24} key {}{via}", s.name, s.address, s.fingerprint));
                }
            }
        }
        (_, Response::ServerAdded(s)) => r.line(format!(
            "added server {} at {} (key {}){}",
            s.name,
            s.address,
            s.fingerprint,
            s.via.map(|v| format!("; link sessions go via {v}")).unwrap_or_default()
        )),
        (_, Response::PolicySet {
            name,
            before,
            after,
            route,
        }) => {
            let route = route.map(|r| format!(", {r}")).unwrap_or_default();
            r.line(format!("{name}: {after}{route} (was {before})"));
            if after == "matriochka" {
                r.note("messages to them wait in the outbox whenever no route through trusted relays can be made");
            }
        }
        (Command::Servers(ServersCmd::Catalog { json, .. }), Response::Catalog { servers, fetched_ms }) => {
            if *json {
                r.json(&serde_json::json!({"servers": servers, "fetched_ms": fetched_ms}))?;
                return Ok(r);
            }
            catalog_lines(&mut r, &servers, fetched_ms);
        }
        (_, Response::ServerTrusted { name, trusted }) => r.line(if trusted {
            format!("{name} is trusted: Matriochka routes may start there")
        } else {
            format!("{name} is not trusted: routes no longer start there")
        }),
        (_, Response::Hidden { name, created, moved }) => {
            r.line(format!(
                "{name} is hidden{} ({moved} records moved); under the main password it does not exist",
                if created { " in a new compartment" } else { "" }
            ));
            r.note("the compartment stays unlocked in a running daemon until `meow lock`");
        }
        (_, Response::Unlocked { contacts, already }) => r.line(format!(
            "{} a compartment: {contacts} contact(s) shown and polled until `meow lock`",
            if already { "already unlocked:" } else { "unlocked" }
        )),
        (_, Response::Locked { compartments, contacts }) => r.line(format!(
            "locked {compartments} compartment(s): {contacts} contact(s) hidden again"
        )),
        (_, Response::ServerRemoved(s)) => r.line(format!("removed server {} ({})", s.name, s.address)),
        (Command::Invite(a), Response::Invitation { card, expires }) => {
            if let Some(out) = &a.out {
                write_card(out, &parse_card(&card)?)?;
                r.note(format!("invitation for {} written to {}", a.name, out.display()));
            }
            r.line(&card);
            if a.qr {
                r.line(meow_proto::qr::terminal(&card)?);
            }
            r.note(format!(
                "give this card to {} (file, text or QR); their answer completes the contact (valid until {} UTC)",
                a.name,
                format_time(expires * 1000)
            ));
        }
        (Command::Accept(a), Response::Accepted(view)) => accepted(&mut r, a.out.as_deref(), view)?,
        (Command::Contacts(a), Response::Contacts { contacts, invitations }) => {
            if a.json {
                r.json(&serde_json::json!({"contacts": contacts, "invitations": invitations}))?;
                return Ok(r);
            }
            // For people, a Matriochka policy says the shape of its routes.
            let contacts: Vec<ContactView> = contacts
                .into_iter()
                .map(|mut c| {
                    if c.policy == "matriochka" {
                        c.policy = format!("matriochka, {} hops, mean delay {} ms", c.hops, c.mean_delay_ms);
                    }
                    c
                })
                .collect();
            if contacts.is_empty() && invitations.is_empty() {
                r.note("no contacts yet (start with `meow invite NAME`)");
            }
            for c in contacts {
                let rot = c
                    .rotation_pending
                    .map(|p| format!(", rotation {p} pending"))
                    .unwrap_or_default();
                let direct = c.direct.map(|d| format!(", reachable directly at {d}")).unwrap_or_default();
                let hidden = if c.hidden { ", hidden" } else { "" };
                r.line(format!(
                    "{:<16} {}  via {} ({}{direct}){rot}, {}{hidden}",
                    c.name,
                    c.fingerprint,
                    c.servers.join(", "),
                    c.policy,
                    c.protocol
                ));
            }
            for p in invitations {
                let kind = if p.public { "public card" } else { "invitation" };
                r.line(format!(
                    "{:<16} ({kind} waiting for an answer, until {} UTC)",
                    p.name,
                    format_time(p.expires * 1000)
                ));
            }
        }
        (Command::Send(a), Response::Sent { earlier, delivery }) => sent(&mut r, &a.name, earlier, delivery),
        (
            Command::Inbox(a),
            Response::Inbox {
                items,
                earlier,
                completed,
                unreachable,
            },
        ) => {
            if earlier > 0 {
                r.note(format!("delivered {earlier} queued message(s)"));
            }
            if a.json {
                r.json(&items)?;
            } else {
                for i in &items {
                    r.line(item_line(i));
                }
                if items.is_empty() && unreachable.is_empty() {
                    r.note("no new messages");
                }
            }
            for name in completed {
                r.note(format!("contact {name} completed (their answer arrived)"));
            }
            if let Some((server, reason)) = unreachable.first() {
                r.fail(format!(
                    "cannot fetch from server {server}: {reason} (nothing was lost; try again later)"
                ));
            }
        }
        (Command::Contacts(_), Response::ContactChanged { message }) => r.line(message),
        (Command::Device(_), resp @ (Response::Devices(_) | Response::DeviceDone { .. })) => {
            crate::cmd_device::show(&mut r, c, resp)?
        }
        (Command::Rotate(a), Response::Rotated { serial, delivery }) => match delivery {
            DeliveryView::Delivered { .. } => r.line(format!(
                "rotation {serial} for {} started; it takes effect when {} acknowledges it",
                a.name, a.name
            )),
            DeliveryView::Queued { reason } => r.line(format!(
                "rotation {serial} for {} started; the offer is queued ({reason}) and takes effect when {} acknowledges it",
                a.name, a.name
            )),
            DeliveryView::Handed => r.line(format!(
                "{} is held by another of your devices: rotate there",
                a.name
            )),
        },
        (Command::Status(a), Response::Status(s)) => {
            if a.json {
                r.json(&s)?;
            } else {
                r.line(format!("home     {}", s.home));
                r.line(format!("server   {}", s.server.as_deref().unwrap_or("none (not embedded)")));
                r.line(format!("outbox   {} message(s) waiting", s.outbox));
                for l in &s.links {
                    r.line(format!("link     {}", link_line(l)));
                }
                if let Some(v) = &s.relay {
                    r.line(format!(
                        "relay    {} taken, {} forwarded, {} delivered, {} held; {} replays and {} refused dropped, {} lost",
                        v.accepted, v.forwarded, v.delivered, v.held, v.replays, v.refused, v.lost
                    ));
                }
                r.line(format!("events   {} waiting for plugins and recipes", s.events_waiting));
                r.line(format!("plugins  {}", s.instances.len()));
                for i in &s.instances {
                    r.line(format!("  {}", crate::cmd_plugin::instance_line(i)));
                }
                r.line(format!(
                    "recipes  {}",
                    s.recipes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        (Command::Send(a), Response::FileSent { file, earlier, delivery }) => {
            crate::cmd_file::sent(&mut r, &a.name, file, earlier, delivery)
        }
        (Command::File(f), resp) => crate::cmd_file::show(&mut r, f, resp)?,
        (c @ (Command::Group(_) | Command::Broadcast { .. } | Command::BroadcastKey | Command::Directory(_)), resp) => {
            crate::cmd_social::show(&mut r, c, resp)?
        }
        (Command::Recipe(cmd), resp) => crate::cmd_recipe::show(&mut r, cmd, resp)?,
        (Command::Plugin(cmd), resp) => crate::cmd_plugin::show(&mut r, cmd, resp)?,
        (_, other) => bail!("internal: unexpected answer {other:?}"),
    }
    Ok(r)
}

fn accepted(r: &mut Reply, out: Option<&Path>, view: AcceptView) -> anyhow::Result<()> {
    match view {
        AcceptView::Answered {
            name,
            answer,
            delivered,
        } => {
            if let Some(out) = out {
                write_card(out, &parse_card(&answer)?)?;
            }
            r.line(format!("added contact {name}"));
            if delivered {
                r.note(format!(
                    "your answer was delivered to {name}'s server; you can write to {name} now"
                ));
            } else {
                r.note(format!(
                    "could not reach {name}'s server yet: hand over your answer card, or it is sent later"
                ));
            }
            match out {
                Some(out) => r.note(format!("answer card written to {}", out.display())),
                None => r.line(answer),
            }
        }
        AcceptView::Completed { name } => r.line(format!("contact {name} completed: you can write to {name} now")),
        AcceptView::AlreadyDone { name } => r.line(format!(
            "contact {name} was already completed (its answer came through your server)"
        )),
    }
    Ok(())
}

/// Notes what became of a message (or a file's last chunk) to `to`; a queued one sets the
/// exit status.
pub fn sent(r: &mut Reply, to: &str, earlier: usize, delivery: DeliveryView) {
    if earlier > 0 {
        r.note(format!("delivered {earlier} queued message(s)"));
    }
    match delivery {
        DeliveryView::Delivered { server } => r.note(format!("sent to {to} (via {server})")),
        DeliveryView::Handed => r.note(format!(
            "handed to your device that holds the conversation with {to}: it sends it at its next sync"
        )),
        DeliveryView::Queued { reason } => {
            r.code = EXIT_QUEUED;
            r.error = Some(format!(
                "queued for {to}: {reason}; it is delivered by the next send, inbox or run"
            ));
        }
    }
}

/// One line per message for people.
pub fn item_line(i: &MessageView) -> String {
    let body = match &i.text {
        Some(t) if i.content_type == "file" => crate::cmd_file::described(t),
        Some(t) => t.clone(),
        None => format!("<{} bytes of {}>", i.bytes, i.content_type),
    };
    let who = match &i.origin {
        OriginView::Contact => i.from.clone(),
        OriginView::Group { group } => format!("{} in #{group}", i.from),
        OriginView::Broadcast {
            from_operator: true,
            server,
            ..
        } => format!("BROADCAST from the operator of {server}"),
        OriginView::Broadcast {
            signer_fingerprint,
            server,
            ..
        } => format!("BROADCAST from {signer_fingerprint} on {server}"),
    };
    let auto = if i.automatic { " (automatic)" } else { "" };
    let re = i
        .reply_to
        .as_deref()
        .map(|id| format!(" (re {})", &id[..id.len().min(8)]))
        .unwrap_or_default();
    format!("[{}] {who}{auto}{re}: {body}", format_time(i.sent_at_ms))
}

/// One `meow status` line for a serial line or radio.
fn link_line(l: &meow_runtime::views::LinkView) -> String {
    let budget = match l.airtime_left_ms {
        Some((left, budget)) => format!(
            ", airtime left {:.1} s of {:.0} s this hour ({} waiting)",
            left as f64 / 1000.0,
            budget as f64 / 1000.0,
            l.queued
        ),
        None => String::new(),
    };
    format!(
        "{}: {} sent ({} bytes), {} received ({} bytes), {} dropped{budget}",
        l.link, l.sent.0, l.sent.1, l.received.0, l.received.1, l.dropped
    )
}

/// The request of `meow contacts policy` (and `meow policy`).
fn policy_request(p: &PolicyArgs) -> anyhow::Result<Request> {
    let (name, policy) = match (&p.policy, p.default) {
        (Some(policy), false) => (p.name.clone(), policy.clone()),
        (None, true) => (String::new(), p.name.clone()),
        (None, false) => anyhow::bail!(
            "say which policy: meow contacts policy {} server|direct-preferred|matriochka",
            p.name
        ),
        (Some(_), true) => {
            anyhow::bail!("with --default, give the policy alone: meow contacts policy --default matriochka")
        }
    };
    let delay_ms = match &p.delay {
        Some(d) => Some(u32::try_from(crate::util::parse_duration(d)?.as_millis()).context("that delay is too long")?),
        None => None,
    };
    Ok(Request::SetPolicy {
        name,
        policy,
        hops: p.hops,
        delay_ms,
        default: p.default,
    })
}

/// The catalog for people: one line per server.
fn catalog_lines(r: &mut Reply, servers: &[CatalogView], fetched_ms: u64) {
    if fetched_ms == 0 {
        r.note("the catalog was never fetched: `meow servers catalog --refresh`");
    } else {
        r.note(format!("fetched {} UTC", format_time(fetched_ms)));
    }
    if servers.is_empty() {
        r.note("no server known yet (servers learn each other through `meow server --peer CARD`)");
    }
    for s in servers {
        let relay = match s.max_delay_ms {
            Some(d) => format!("relay (delays up to {d} ms)"),
            None => "no relay".to_owned(),
        };
        let marks = [(s.mine, "mine"), (s.trusted, "trusted")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>()
            .join(", ");
        r.line(format!(
            "{:<16} {:<24} key {}  {relay}{}",
            s.name,
            s.addresses.first().map_or("", |a| a.as_str()),
            s.fingerprint,
            if marks.is_empty() {
                String::new()
            } else {
                format!("  [{marks}]")
            }
        ));
    }
}
