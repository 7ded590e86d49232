//! The network side of the node: delivering the outbox and fetching mail. These functions take
//! the node behind a lock and hold it only between network calls, so a daemon can keep serving
//! plugins while a long poll waits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use meow_net::ClientError;
use meow_proto::envelope::ContentType;
use meow_proto::wire::MAX_MAILBOXES_PER_REQUEST;
use meow_proto::{LookupKey, MailboxId, ServerCard};
use smol::lock::Mutex;

use crate::records::OutboxItem;
use crate::{Node, NodeError, NodeEvent, Result};

/// What became of a message handed to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A server of the recipient has it on disk.
    Delivered {
        /// The server's address.
        server: String,
    },
    /// No server of the recipient could take it: it waits in the outbox.
    Queued {
        /// Why.
        reason: String,
    },
}

/// Seals `content` to `name`, queues it, and tries to deliver it now.
pub async fn send(node: &Mutex<Node>, name: &str, content_type: ContentType, content: Vec<u8>) -> Result<Delivery> {
    let item = node.lock().await.queue_message(name, content_type, content)?;
    deliver(node, item).await
}

/// Tries each of the recipient's servers in order; updates the outbox either way.
pub async fn deliver(node: &Mutex<Node>, item: OutboxItem) -> Result<Delivery> {
    let pool = node.lock().await.pool();
    let mut reason = String::from("the contact lists no server");
    for s in &item.servers {
        let result = async {
            let client = pool.get(&s.address, &s.key).await?;
            client.deposit(item.mailbox, item.envelope.clone()).await
        }
        .await;
        match result {
            Ok(()) => {
                node.lock().await.outbox_done(item.seq)?;
                return Ok(Delivery::Delivered {
                    server: s.address.clone(),
                });
            }
            Err(e) => {
                if matches!(e, ClientError::Closed(_) | ClientError::Timeout) {
                    pool.drop_client(&s.address).await;
                }
                tracing::debug!(server = %s.address, error = %e, "deposit failed");
                reason = e.to_string();
            }
        }
    }
    node.lock().await.outbox_failed(item, &reason)?;
    Ok(Delivery::Queued { reason })
}

/// What a flush of the outbox did.
#[derive(Debug, Default, Clone)]
pub struct FlushReport {
    /// Delivered now (user messages).
    pub delivered: usize,
    /// Delivered now (automatic key updates).
    pub automatic: usize,
    /// Still waiting, with the last reason.
    pub queued: Vec<(String, String)>,
}

/// Delivers what waits in the outbox (with `due_only`, only items whose retry time has come).
pub async fn flush_outbox(node: &Mutex<Node>, due_only: bool) -> Result<FlushReport> {
    let items = node.lock().await.outbox(due_only)?;
    let mut report = FlushReport::default();
    for item in items {
        let label = item.label.clone();
        let automatic = label.starts_with(crate::messaging::AUTOMATIC);
        match deliver(node, item).await? {
            Delivery::Delivered { .. } if automatic => report.automatic += 1,
            Delivery::Delivered { .. } => report.delivered += 1,
            Delivery::Queued { reason } => report.queued.push((label, reason)),
        }
    }
    Ok(report)
}

/// What a fetch did.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// What happened, in order.
    pub events: Vec<NodeEvent>,
    /// Servers that could not be reached, with the reason.
    pub unreachable: Vec<(String, String)>,
}

async fn fetch_server(
    node: &Mutex<Node>,
    server: &ServerCard,
    keys: &[LookupKey],
    wait: Duration,
    report: &mut FetchReport,
    empty: &mut HashSet<MailboxId>,
) -> Result<(), ClientError> {
    let pool = node.lock().await.pool();
    let client = pool.get(&server.address, &server.key).await?;
    let mut wait = wait;
    // With no mailbox yet, still poll: broadcasts arrive that way, and the wait is honoured.
    let chunks: Vec<&[LookupKey]> = if keys.is_empty() {
        vec![&[]]
    } else {
        keys.chunks(MAX_MAILBOXES_PER_REQUEST).collect()
    };
    for chunk in chunks {
        let refs: Vec<&LookupKey> = chunk.iter().collect();
        let mut nonempty = HashSet::new();
        loop {
            let after = node.lock().await.broadcasts_seen(&server.address);
            let got = client.poll(&refs, 512, wait, after).await?;
            wait = Duration::ZERO;
            nonempty.extend(got.messages.iter().map(|m| m.mailbox));
            let more = got.more;
            let received = node
                .lock()
                .await
                .receive(&server.address, got.messages, got.broadcasts)
                .map_err(|e| ClientError::Protocol(format!("storing received messages: {e}")))?;
            if !received.acks.is_empty() {
                let acks: Vec<(&LookupKey, Vec<u64>)> = received.acks.iter().map(|(k, s)| (k, s.clone())).collect();
                client.ack(&acks).await?;
            }
            report.events.extend(received.events);
            if !more {
                break;
            }
        }
        for k in chunk {
            let m = MailboxId::of(&k.public());
            if !nonempty.contains(&m) {
                empty.insert(m);
            }
        }
    }
    Ok(())
}

/// Polls every server of mine once, storing and acknowledging what arrives. With `wait`, the
/// first poll waits up to that long for something to arrive.
pub async fn fetch(node: &Mutex<Node>, wait: Duration) -> Result<FetchReport> {
    let (servers, keys) = node.lock().await.poll_plan();
    if servers.is_empty() {
        return Err(NodeError::NoServers);
    }
    let mut report = FetchReport::default();
    let mut empty: Option<HashSet<MailboxId>> = None;
    let deadline = Instant::now() + wait;
    for (i, server) in servers.iter().enumerate() {
        // Only the first server's poll waits; the others are checked right after.
        let w = if i == 0 {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        let mut server_empty = HashSet::new();
        match fetch_server(node, server, &keys, w, &mut report, &mut server_empty).await {
            Ok(()) => {
                empty = Some(match empty {
                    None => server_empty,
                    Some(e) => e.intersection(&server_empty).copied().collect(),
                });
            }
            Err(e) => {
                node.lock().await.pool().drop_client(&server.address).await;
                report.unreachable.push((server.address.clone(), e.to_string()));
            }
        }
    }
    // Retire old keys only when every server was reached and found their mailbox empty.
    if report.unreachable.is_empty()
        && let Some(empty) = empty
    {
        node.lock().await.retire_drained(&empty)?;
    }
    Ok(report)
}
