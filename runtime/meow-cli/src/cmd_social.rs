//! Groups, broadcasts and the directory, from the command line.

use anyhow::Context;
use meow_node::Node;
use meow_node::groups::member_names;
use meow_node::sync::{self, Delivery};
use meow_proto::codec::Encode;
use meow_proto::envelope::ContentType;
use serde_json::json;
use smol::lock::Mutex;

use crate::cli::{DirectoryCmd, GroupCmd};
use crate::cmd_home::Reply;

fn summary(deliveries: &[Delivery]) -> String {
    let queued = deliveries
        .iter()
        .filter(|d| matches!(d, Delivery::Queued { .. }))
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

pub async fn group(node: &Mutex<Node>, cmd: GroupCmd, stdin: Option<String>) -> anyhow::Result<Reply> {
    let mut r = Reply::default();
    match cmd {
        GroupCmd::Create { name } => {
            node.lock().await.create_group(&name)?;
            r.out = format!("created group {name}; add members with `meow group add {name} CONTACT`\n");
        }
        GroupCmd::Add { group, contact } => {
            let items = node.lock().await.group_add(&group, &contact)?;
            let d = sync::deliver_all(node, items).await?;
            r.out = format!("added {contact} to {group}: members told ({})\n", summary(&d));
        }
        GroupCmd::Remove { group, contact } => {
            let items = node.lock().await.group_remove(&group, &contact)?;
            let d = sync::deliver_all(node, items).await?;
            r.out = format!("removed {contact} from {group} ({})\n", summary(&d));
        }
        GroupCmd::Send { group, text } => {
            let text = if text == "-" {
                stdin.context("no standard input")?
            } else {
                text
            };
            let d = sync::group_send(node, &group, ContentType::TEXT, text.into_bytes()).await?;
            r.err = format!("sent to {group}: {}\n", summary(&d));
        }
        GroupCmd::Leave { group } => {
            let items = node.lock().await.group_leave(&group)?;
            let d = sync::deliver_all(node, items).await?;
            r.out = format!("left {group} ({})\n", summary(&d));
        }
        GroupCmd::List(args) => {
            let groups = node.lock().await.groups()?;
            if args.json {
                let v: Vec<_> = groups
                    .iter()
                    .map(|g| json!({"name": g.name, "owner": g.is_owner(), "members": member_names(g), "left": g.left, "epoch": g.epoch}))
                    .collect();
                r.out = serde_json::to_string_pretty(&v)? + "\n";
            } else if groups.is_empty() {
                r.err = "no groups (create one with `meow group create NAME`)\n".into();
            } else {
                for g in groups {
                    let role = match (g.is_owner(), g.left) {
                        (_, true) => "left",
                        (true, _) => "owner",
                        (false, _) => "member",
                    };
                    r.out.push_str(&format!(
                        "{:<16} {role:<7} members: {}\n",
                        g.name,
                        member_names(&g).join(", ")
                    ));
                }
            }
        }
    }
    Ok(r)
}

pub async fn broadcast(node: &Mutex<Node>, text: &str) -> anyhow::Result<Reply> {
    let (server, id) = sync::broadcast(node, text).await?;
    Ok(Reply {
        err: format!("broadcast {id} accepted by {server}\n"),
        ..Reply::default()
    })
}

pub async fn broadcast_key(node: &Mutex<Node>) -> anyhow::Result<Reply> {
    Ok(Reply {
        out: format!("{}\n", node.lock().await.broadcast_key().public()),
        ..Reply::default()
    })
}

fn entry_json(e: &meow_proto::directory::DirectoryEntry) -> serde_json::Value {
    json!({
        "nickname": e.card.body.nickname,
        "description": e.description,
        "tags": e.tags,
        "fingerprint": e.publisher().fingerprint(),
        "card": e.card.to_text(),
    })
}

pub async fn directory(node: &Mutex<Node>, cmd: DirectoryCmd) -> anyhow::Result<Reply> {
    let mut r = Reply::default();
    let list = |r: &mut Reply, entries: Vec<meow_proto::directory::DirectoryEntry>, json: bool| -> anyhow::Result<()> {
        if json {
            r.out = serde_json::to_string_pretty(&entries.iter().map(entry_json).collect::<Vec<_>>())? + "\n";
        } else if entries.is_empty() {
            r.err = "no entry found\n".into();
        } else {
            for e in &entries {
                let nick = e.card.body.nickname.clone().unwrap_or_else(|| "(no name)".into());
                r.out.push_str(&format!(
                    "{nick} [{}]: {}\n  {}\n",
                    e.tags.join(", "),
                    e.description,
                    e.card.to_text()
                ));
            }
            r.err = "to start a contact: meow accept '<card text>' --name NAME\n".into();
        }
        Ok(())
    };
    match cmd {
        DirectoryCmd::Publish { description, tags } => {
            let (server, entry) = sync::directory_publish(node, &description, &tags).await?;
            r.out = format!("published on {server}: {}\n", entry.description);
            r.err = format!(
                "entry of {} bytes; people who accept its card become your contacts\n",
                entry.to_bytes().len()
            );
        }
        DirectoryCmd::Search { words, json } => {
            let entries = sync::directory_search(node, Some(&words.join(" ")), 20).await?;
            list(&mut r, entries, json)?;
        }
        DirectoryCmd::Random { count, json } => {
            let entries = sync::directory_search(node, None, count).await?;
            list(&mut r, entries, json)?;
        }
        DirectoryCmd::Withdraw => {
            let server = sync::directory_withdraw(node).await?;
            r.out = format!("withdrawn from {server}\n");
        }
    }
    Ok(r)
}
