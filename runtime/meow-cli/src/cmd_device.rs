//! `meow device`: linking a new device (both ends, run on the home itself), and the requests
//! that list, rename, take and release (through a running daemon or on the home).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use meow_node::devices::link::Joining;
use meow_node::devices::net;
use meow_node::{Env, Node};
use meow_proto::devices::link::LinkCard;
use meow_runtime::control::{self, Password, Request, Response};
use smol::lock::Mutex;

use crate::cli::{Command, DeviceCmd, VaultArgs};
use crate::cmd_home::Reply;
use crate::util;

/// The request for a device subcommand, or `None` for linking (run on the home directly).
pub fn request(d: &DeviceCmd) -> anyhow::Result<Option<Request>> {
    Ok(Some(match d {
        DeviceCmd::Revoke { device } => Request::DeviceRevoke {
            device: device.clone(),
            password: Password(util::revocation_password()?.to_string()),
        },
        DeviceCmd::List(_) => Request::Devices,
        DeviceCmd::Rename { device, name } => Request::DeviceRename {
            device: device.clone(),
            name: name.clone(),
        },
        DeviceCmd::Take { contact } => Request::DeviceTake {
            contact: contact.clone(),
        },
        DeviceCmd::Release { contact } => Request::DeviceRelease {
            contact: contact.clone(),
        },
        DeviceCmd::Link { .. } | DeviceCmd::Join { .. } => return Ok(None),
    }))
}

/// Prints the answer to a device request.
pub fn show(r: &mut Reply, c: &Command, resp: Response) -> anyhow::Result<()> {
    match (c, resp) {
        (Command::Device(DeviceCmd::List(a)), Response::Devices(list)) => {
            if a.json {
                return r.json(&list);
            }
            if list.is_empty() {
                r.note("this home is one device: link another with `meow device link`");
            }
            for d in list {
                let seen = match (d.this, d.last_seen_ms) {
                    (true, _) => "this device".to_owned(),
                    (false, Some(ms)) => format!("last heard {} UTC", util::format_time(ms)),
                    (false, None) => "not heard from since this started".to_owned(),
                };
                let id = d.id.get(..8).unwrap_or(&d.id);
                r.line(format!(
                    "{:<20} {id}  linked {} UTC  {seen}",
                    d.name,
                    util::format_time(d.added_ms)
                ));
            }
        }
        (_, Response::DeviceDone { message }) => r.line(message),
        _ => bail!("internal: unexpected device answer"),
    }
    Ok(())
}

/// Asks the person on the terminal (or whatever stdin gives) to confirm the short code.
fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "Yes")
}

/// Prints a link card for the person to carry to the new device.
fn show_card(text: &str, qr: bool) -> anyhow::Result<()> {
    println!("{text}");
    if qr {
        println!("{}", meow_proto::qr::terminal(text)?);
    }
    eprintln!("on the new device: meow device join '<this card>' --name NAME (valid 10 minutes, once)");
    Ok(())
}

/// The answer of the running daemon to `request`, or why it failed.
fn ask_daemon(home: &Path, request: &Request) -> anyhow::Result<Response> {
    match control::forward(home, request)? {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => bail!("{}", e.message),
        None => bail!("the running meow went away"),
    }
}

/// `meow device link` through the running daemon: the same steps, each a request.
fn link_through_daemon(home: &Path, card: String, qr: bool, wait: Duration) -> anyhow::Result<()> {
    show_card(&card, qr)?;
    let deadline = std::time::Instant::now() + wait;
    let (name, code) = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            bail!("no device asked to join before the card expired");
        }
        let wait_secs = left.as_secs().clamp(1, 20) as u32;
        if let Response::LinkAsked { asked: Some(asked) } = ask_daemon(home, &Request::DeviceLinkWait { wait_secs })? {
            break asked;
        }
    };
    eprintln!("device {name:?} asks to join; its code: {code}");
    let accept = confirm(&format!("does {name:?} show the code {code}?"));
    let answer = ask_daemon(home, &Request::DeviceLinkConfirm { accept })?;
    if let Response::DeviceDone { message } = answer {
        if !accept {
            bail!("{message}");
        }
        println!("{message}");
    }
    Ok(())
}

/// `meow device link`: makes a card, waits for the new device, compares codes, welcomes it
/// (through `meow run` when it holds the home).
pub fn link(home: &Path, pw_file: Option<&Path>, qr: bool, wait: Duration) -> anyhow::Result<()> {
    let password = util::password(pw_file, false)?;
    let wait = wait.min(Duration::from_millis(meow_proto::devices::link::LINK_LIFETIME_MS));
    let start = Request::DeviceLinkStart {
        password: Password(password.to_string()),
    };
    match control::forward(home, &start)? {
        Some(Ok(Response::LinkCard { card })) => return link_through_daemon(home, card, qr, wait),
        Some(Ok(_)) => bail!("internal: unexpected answer from the running meow"),
        Some(Err(e)) => bail!("{}", e.message),
        None => {}
    }
    let node = Mutex::new(Node::open(home, password.as_bytes())?);
    smol::block_on(async {
        let linking = node.lock().await.start_link()?;
        show_card(&linking.card.to_text(), qr)?;
        let (request, code) = net::link_wait(&node, &linking, wait).await?;
        eprintln!("device {:?} asks to join; its code: {code}", request.name);
        if !confirm(&format!("does {:?} show the code {code}?", request.name)) {
            bail!("not confirmed: the device was not linked");
        }
        let bytes = net::link_welcome(&node, &linking, &request, password.as_bytes()).await?;
        eprintln!("sent the home to {:?} ({bytes} bytes)", request.name);
        println!("linked {}", request.name);
        Ok(())
    })
}

/// `meow device join`: asks to join, shows the code, and becomes a device of the home.
pub fn join(
    home: &Path,
    pw_file: Option<&Path>,
    (card, name): (&str, &str),
    wait: Duration,
    vault: &VaultArgs,
) -> anyhow::Result<()> {
    if Node::exists(home) {
        bail!(
            "a home already exists at {}: join from an empty one (MEOW_HOME=./new-device)",
            home.display()
        );
    }
    let text = if card.trim_start().starts_with("meow:link:") {
        card.to_owned()
    } else {
        std::fs::read_to_string(card).with_context(|| format!("reading the link card {card}"))?
    };
    let card = LinkCard::from_text(&text).context("the link card")?;
    let password = util::password(pw_file, true)?;
    let env = Env::system();
    let (joining, mailbox, request, code) = Joining::start(card, name, &env)?;
    let pool = meow_net::pool::Pool::new(env.client_options());
    let (joining, welcome) = smol::block_on(net::join(joining, mailbox, request, &pool, wait, || {
        eprintln!("this device's code: {code}");
        confirm(&format!("does the other device show the code {code}?"))
    }))?;
    let node = joining.finish(
        home,
        password.as_bytes(),
        &welcome,
        crate::init_options(vault, None),
        env,
    )?;
    println!(
        "joined: this home is now device {name} of user {} ({} contacts, {} messages)",
        node.user_public().fingerprint(),
        node.contacts().len(),
        node.inbox(false)?.len()
    );
    Ok(())
}
