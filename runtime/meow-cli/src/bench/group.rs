//! `meow bench group`: one group message to many members — time to seal and deposit every copy,
//! and bytes on the wire.

use std::time::{Duration, Instant};

use anyhow::Context;
use meow_node::sync::{self, Delivery};
use meow_node::{InitOptions, Node};
use meow_proto::codec::Encode;
use meow_proto::crypto::{KdfParams, TAG_LEN};
use meow_proto::envelope::ContentType;
use meow_proto::wire::{Request, RequestFrame};
use smol::lock::Mutex;

/// Bytes a deposit takes on a session: length prefix, the encrypted request frame, its tag.
fn wire_bytes(item: &meow_node::records::OutboxItem) -> usize {
    let frame = RequestFrame {
        id: 1,
        request: Request::Deposit {
            mailbox: item.mailbox,
            envelope: item.envelope.clone(),
        },
    };
    4 + frame.to_bytes().len() + TAG_LEN
}

/// Runs the benchmark.
pub fn run(members: usize, size: usize, rounds: usize) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("meow-bench-group-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let server = meow_server::Server::start(meow_server::ServerConfig::new(
        base.join("server"),
        "127.0.0.1:0".parse()?,
    ))?;
    let card = server.card().to_text();
    let init = |name: &str| -> anyhow::Result<Mutex<Node>> {
        let opts = InitOptions {
            kdf: KdfParams::TESTING,
            display_name: Some(name.into()),
            decoys: true,
        };
        let mut n = Node::init(&base.join(name), b"bench", opts)?;
        n.add_server(&card)?;
        Ok(Mutex::new(n))
    };
    println!("setting up an owner and {members} members on an in-process server…");
    let owner = init("owner")?;
    let result = smol::block_on(async {
        let mut homes = Vec::new();
        for i in 0..members {
            let name = format!("m{i}");
            let home = init(&name)?;
            let invitation = owner.lock().await.invite(&name, false)?;
            home.lock()
                .await
                .accept(invitation.to_text().as_bytes(), Some("owner"))?;
            sync::flush_outbox(&home, false).await?;
            homes.push(home);
        }
        sync::fetch(&owner, Duration::ZERO).await?;
        owner.lock().await.create_group("bench")?;
        for i in 0..members {
            let items = owner.lock().await.group_add("bench", &format!("m{i}"))?;
            sync::deliver_all(&owner, items).await?;
        }
        let text = "x".repeat(size);
        let mut best = Duration::MAX;
        let mut total_bytes = 0;
        let mut envelope = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let items = owner
                .lock()
                .await
                .group_post("bench", ContentType::TEXT, text.clone().into_bytes())?;
            total_bytes = items.iter().map(wire_bytes).sum::<usize>();
            envelope = items.first().map_or(0, |i| i.envelope.len());
            let delivered = sync::deliver_all(&owner, items).await?;
            best = best.min(t.elapsed());
            anyhow::ensure!(
                delivered.iter().all(|d| matches!(d, Delivery::Delivered { .. })),
                "some copies were queued"
            );
        }
        // Every member received it.
        let mut received = 0;
        for h in &homes {
            let r = sync::fetch(h, Duration::ZERO).await?;
            received += usize::from(
                r.events
                    .iter()
                    .any(|e| matches!(e, meow_node::NodeEvent::Message(i) if i.content.len() == size)),
            );
        }
        anyhow::Ok((best, total_bytes, envelope, received))
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&base);
    let (best, bytes, envelope, received) = result.context("group benchmark")?;
    println!(
        "group send of {size} bytes to {members} members: {:.1} ms (best of {rounds}: seal {members} copies + {members} durable deposits), {} bytes on the wire ({} per member, {envelope}-byte envelopes); received by {received}/{members}",
        best.as_secs_f64() * 1000.0,
        bytes,
        bytes / members.max(1)
    );
    Ok(())
}
