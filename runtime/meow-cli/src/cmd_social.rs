//! Groups, broadcasts and the directory: printing their answers.

use anyhow::bail;
use meow_runtime::control::Response;
use meow_runtime::views::{DeliveryView, EntryView};

use crate::cli::{Command, DirectoryCmd, GroupCmd};
use crate::cmd_home::Reply;

fn summary(deliveries: &[DeliveryView]) -> String {
    let queued = deliveries
        .iter()
        .filter(|d| matches!(d, DeliveryView::Queued { .. }))
        .count();
    match (deliveries.len(), queued) {
        (0, _) => "nobody to send to".into(),
        (n, 0) => format!("{n} cop{} delivered", if n == 1 { "y" } else { "ies" }),
        (n, q) => format!(
            "{} of {n} delivered, {q} queued (retried on the next send, inbox or run)",
            n - q
        ),
    }
}

fn entries(r: &mut Reply, entries: &[EntryView], json: bool) -> anyhow::Result<()> {
    if json {
        return r.json(&entries);
    }
    if entries.is_empty() {
        r.note("no entry found");
        return Ok(());
    }
    for e in entries {
        let nick = e.nickname.clone().unwrap_or_else(|| "(no name)".into());
        r.line(format!(
            "{nick} [{}]: {}\n  {}",
            e.tags.join(", "),
            e.description,
            e.card
        ));
    }
    r.note("to start a contact: meow accept '<card text>' --name NAME");
    Ok(())
}

/// Prints the answer to a group, broadcast or directory command.
pub fn show(r: &mut Reply, c: &Command, resp: Response) -> anyhow::Result<()> {
    match (c, resp) {
        (Command::Group(GroupCmd::Create { name }), Response::GroupCreated { .. }) => r.line(format!(
            "created group {name}; add members with `meow group add {name} CONTACT`"
        )),
        (Command::Group(g), Response::GroupDelivered { deliveries }) => {
            let s = summary(&deliveries);
            match g {
                GroupCmd::Add { group, contact } => r.line(format!("added {contact} to {group}: members told ({s})")),
                GroupCmd::Remove { group, contact } => r.line(format!("removed {contact} from {group} ({s})")),
                GroupCmd::Send { group, .. } => r.note(format!("sent to {group}: {s}")),
                GroupCmd::Leave { group } => r.line(format!("left {group} ({s})")),
                _ => bail!("internal: unexpected group answer"),
            }
        }
        (Command::Group(GroupCmd::List(a)), Response::Groups(groups)) => {
            if a.json {
                return r.json(&groups);
            }
            if groups.is_empty() {
                r.note("no groups (create one with `meow group create NAME`)");
            }
            for g in groups {
                let role = match (g.owner, g.left) {
                    (_, true) => "left",
                    (true, _) => "owner",
                    (false, _) => "member",
                };
                r.line(format!("{:<16} {role:<7} members: {}", g.name, g.members.join(", ")));
            }
        }
        (_, Response::Broadcasted { server, id }) => r.note(format!("broadcast {id} accepted by {server}")),
        (_, Response::BroadcastKey { key }) => r.line(key),
        (
            _,
            Response::DirectoryPublished {
                server,
                description,
                bytes,
            },
        ) => {
            r.line(format!("published on {server}: {description}"));
            r.note(format!(
                "entry of {bytes} bytes; people who accept its card become your contacts"
            ));
        }
        (Command::Directory(d), Response::Directory(found)) => {
            let json = matches!(
                d,
                DirectoryCmd::Search { json: true, .. } | DirectoryCmd::Random { json: true, .. }
            );
            entries(r, &found, json)?;
        }
        (_, Response::DirectoryWithdrawn { server }) => r.line(format!("withdrawn from {server}")),
        (_, other) => bail!("internal: unexpected answer {other:?}"),
    }
    Ok(())
}
