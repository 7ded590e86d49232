//! The network side of the node: delivering the outbox and fetching mail. These functions take
//! the node behind a lock and hold it only between network calls, so a daemon can keep serving
//! plugins while a long poll waits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use meow_net::ClientError;
use meow_proto::codec::{Decode, Encode};
use meow_proto::directory::DirectoryEntry;
use meow_proto::envelope::ContentType;
use meow_proto::wire::MAX_MAILBOXES_PER_REQUEST;
use meow_proto::{LookupKey, MailboxId, ServerCard};
use smol::lock::Mutex;

use crate::records::OutboxItem;
use crate::{Node, NodeError, NodeEvent, Result, Table};

/// What became of a message handed to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A server of the recipient has it on disk.
    Delivered {
        /// The server's address.
        server: meow_proto::Address,
    },
    /// No server of the recipient could take it: it waits in the outbox.
    Queued {
        /// Why.
        reason: String,
    },
    /// Another of the user's devices holds the conversation: the message went to it as a draft
    /// through the sync log, and it sends it (docs/DEVICES.md).
    Handed,
}

/// Seals `content` to `name`, queues it, and tries to deliver it now.
pub async fn send(node: &Mutex<Node>, name: &str, content_type: ContentType, content: Vec<u8>) -> Result<Delivery> {
    renew_leases(node).await;
    let items = node.lock().await.queue_message(name, content_type, content)?;
    deliver_message(node, items).await
}

/// Queues a file to `to` in chunks (see [`Node::queue_file`]) and tries to deliver them now;
/// what the outbox keeps goes with the next sync. Returns the file's description and what
/// became of its last chunk.
pub async fn send_file(
    node: &Mutex<Node>,
    to: &str,
    file: (&str, &str),
    data: &[u8],
    by: Option<&str>,
) -> Result<(meow_proto::file::FileMeta, Delivery)> {
    let (name, media_type) = file;
    let (meta, items) = node.lock().await.queue_file(to, name, media_type, data, by)?;
    Ok((meta, deliver_message(node, items).await?))
}

/// Delivers what [`Node::queue_message`] queued, each item to the first of its servers that
/// takes it (the outbox updated either way); what became of the message (the last item).
pub async fn deliver_message(node: &Mutex<Node>, items: Vec<OutboxItem>) -> Result<Delivery> {
    if items.is_empty() {
        // Handed to the device that holds the conversation: the draft goes to it now.
        sync_devices(node).await;
        return Ok(Delivery::Handed);
    }
    let mut r = deliver_all(node, items).await?;
    r.pop().ok_or(NodeError::Internal("deliver_all answered no item"))
}

/// Delivers an item [`Node::queue_compact`] queued through a gateway link; what crossed the link
/// when the gateway took it. An item the link does not take stays in the outbox, for the next
/// send or sync (over any transport).
pub async fn deliver_over_link(
    node: &Mutex<Node>,
    item: OutboxItem,
    gateway: &mut meow_net::gateway::GatewayClient,
) -> Result<std::result::Result<meow_net::gateway::Airtime, ClientError>> {
    let result = gateway.deposit(item.mailbox, &item.envelope).await;
    let mut n = node.lock().await;
    match &result {
        Ok(_) => n.outbox_settle(&[item.seq], Vec::new())?,
        Err(e) => {
            let reason = format!("gateway link: {e}");
            n.outbox_settle(&[], vec![(item, reason)])?
        }
    }
    Ok(result)
}

/// What a flush through a gateway link did.
#[derive(Debug, Default)]
pub struct LinkFlush {
    /// Items the gateway took, in outbox order, with what each cost on the link.
    pub delivered: Vec<(OutboxItem, meow_net::gateway::Airtime)>,
    /// Why the flush stopped, if it did before the end (the item stays in the outbox).
    pub stopped: Option<ClientError>,
    /// Items still in the outbox for this gateway.
    pub waiting: usize,
}

/// Delivers, oldest first, every outbox item the gateway's server can take (those for a
/// contact whose servers include it), through the link; stops at the first failure, so that
/// while the link is down each call costs one attempt and nothing is reordered. What waited
/// while the link was down goes before what was queued since.
pub async fn flush_over_link(node: &Mutex<Node>, gateway: &mut meow_net::gateway::GatewayClient) -> Result<LinkFlush> {
    let key = *gateway.server();
    let items: Vec<OutboxItem> = node
        .lock()
        .await
        .outbox(false)?
        .into_iter()
        .filter(|i| i.servers.iter().any(|s| s.key == key))
        .collect();
    let mut flush = LinkFlush {
        waiting: items.len(),
        ..LinkFlush::default()
    };
    for item in items {
        match gateway.deposit(item.mailbox, &item.envelope).await {
            Ok(air) => {
                node.lock().await.outbox_settle(&[item.seq], Vec::new())?;
                flush.waiting -= 1;
                flush.delivered.push((item, air));
            }
            Err(e) => {
                let reason = format!("gateway link: {e}");
                node.lock().await.outbox_settle(&[], vec![(item, reason)])?;
                flush.stopped = Some(e);
                break;
            }
        }
    }
    Ok(flush)
}

/// Why an item stays in the outbox.
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    #[error("the contact lists no server")]
    NoServer,
    #[error(transparent)]
    Refused(ClientError),
    #[error("no Matriochka route: {0}")]
    NoRoute(String),
    #[error("the first relay did not take the packet: {0}")]
    Relay(ClientError),
}

/// The way one outbox item goes.
enum Path {
    /// Its contact's servers, after its direct link if it has one.
    Servers(Option<(meow_proto::Address, meow_proto::ServerPublic)>),
    /// A Matriochka route (or why there is none: then it waits).
    Onion(std::result::Result<crate::matriochka::OnionPlan, String>),
}

/// Hands an item to the first relay of its route; never any other way.
async fn try_onion(
    pool: &crate::pool::Pool,
    item: &OutboxItem,
    plan: std::result::Result<crate::matriochka::OnionPlan, String>,
) -> std::result::Result<meow_proto::Address, Undelivered> {
    let plan = plan.map_err(Undelivered::NoRoute)?;
    let (address, key) = &plan.first;
    let sent = async { pool.get(address, key).await?.forward(plan.packet).await }.await;
    match sent {
        Ok(()) => {
            tracing::debug!(to = %item.label, relays = ?plan.relays, "handed to a Matriochka route");
            Ok(address.clone())
        }
        Err(e) => {
            if matches!(
                e,
                ClientError::Closed(_) | ClientError::Timeout | ClientError::Connect { .. }
            ) {
                pool.drop_client(address).await;
            }
            Err(Undelivered::Relay(e))
        }
    }
}

async fn try_path(
    pool: &crate::pool::Pool,
    item: &OutboxItem,
    path: Path,
) -> (std::result::Result<meow_proto::Address, Undelivered>, Option<u64>) {
    match path {
        Path::Servers(direct) => try_direct_then_servers(pool, item, direct).await,
        Path::Onion(plan) => (try_onion(pool, item, plan).await, None),
    }
}

/// Asks my trusted servers, in order, for the server catalog, and keeps it; how many servers
/// it holds.
pub async fn refresh_catalog(node: &Mutex<Node>) -> Result<usize> {
    let (servers, pool) = {
        let n = node.lock().await;
        let trusted: Vec<ServerCard> = n.servers().into_iter().filter(|s| n.is_trusted(&s.key)).collect();
        (trusted, n.pool())
    };
    let mut last = None;
    for s in &servers {
        let asked = async { pool.get(&s.address, &s.key).await?.catalog(None).await }.await;
        match asked {
            Ok(descriptors) => return node.lock().await.take_catalog(&descriptors),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map(NodeError::from).unwrap_or(NodeError::NoServers))
}

/// Deposits one item over the contact's direct link when there is one, else (or when that
/// fails) on its servers; also the contact whose direct route failed, if one did.
async fn try_direct_then_servers(
    pool: &crate::pool::Pool,
    item: &OutboxItem,
    route: Option<(meow_proto::Address, meow_proto::ServerPublic)>,
) -> (std::result::Result<meow_proto::Address, Undelivered>, Option<u64>) {
    let Some((address, key)) = route else {
        return (try_servers(pool, item).await, None);
    };
    let direct = async {
        let client = pool.get(&address, &key).await?;
        client.deposit(item.mailbox, item.envelope.clone()).await
    }
    .await;
    match direct {
        Ok(()) => (Ok(address), None),
        Err(e) => {
            pool.drop_client(&address).await;
            tracing::info!(to = %item.label, error = %e, "direct link failed; the contact's servers carry it");
            (try_servers(pool, item).await, Some(item.contact))
        }
    }
}

/// Deposits one item on the first of its servers that takes it: the server, or the last reason.
async fn try_servers(
    pool: &crate::pool::Pool,
    item: &OutboxItem,
) -> std::result::Result<meow_proto::Address, Undelivered> {
    let mut reason = Undelivered::NoServer;
    for s in &item.servers {
        let result = async {
            let client = pool.get(&s.address, &s.key).await?;
            client.deposit(item.mailbox, item.envelope.clone()).await
        }
        .await;
        match result {
            Ok(()) => return Ok(s.address.clone()),
            Err(e) => {
                if matches!(e, ClientError::Closed(_) | ClientError::Timeout) {
                    pool.drop_client(&s.address).await;
                }
                tracing::debug!(server = %s.address, error = %e, "deposit failed");
                reason = Undelivered::Refused(e);
            }
        }
    }
    Err(reason)
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
    let labels: Vec<String> = items.iter().map(|i| i.label.clone()).collect();
    let mut report = FlushReport::default();
    for (label, d) in labels.into_iter().zip(deliver_all(node, items).await?) {
        match d {
            Delivery::Delivered { .. } if label.starts_with(crate::messaging::AUTOMATIC) => report.automatic += 1,
            Delivery::Delivered { .. } => report.delivered += 1,
            Delivery::Queued { reason } => report.queued.push((label, reason)),
            Delivery::Handed => {}
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
    /// What went to the user's other devices.
    pub device_sync: crate::devices::net::Flushed,
}

async fn fetch_server(
    node: &Mutex<Node>,
    server: &ServerCard,
    keys: &[LookupKey],
    wait: Duration,
    report: &mut FetchReport,
    empty: &mut HashSet<MailboxId>,
) -> Result<(), ClientError> {
    let (pool, keys) = {
        let n = node.lock().await;
        (n.pool(), n.poll_keys_for(&server.key, keys))
    };
    let keys = keys.as_slice();
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
            let after = node.lock().await.broadcasts_seen(&server.address.to_string());
            let got = client.poll(&refs, 512, wait, after).await?;
            wait = Duration::ZERO;
            nonempty.extend(got.messages.iter().map(|m| m.mailbox));
            let more = got.more;
            let received = node
                .lock()
                .await
                .receive(&server.address.to_string(), got.messages, got.broadcasts)
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
    renew_leases(node).await;
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
                report.unreachable.push((server.address.to_string(), e.to_string()));
            }
        }
    }
    // Retire old keys only when every server was reached and found their mailbox empty.
    if report.unreachable.is_empty()
        && let Some(empty) = empty
    {
        node.lock().await.retire_drained(&empty)?;
    }
    // What receiving queued (acknowledgements, group relays) goes out now.
    flush_outbox(node, true).await?;
    report.device_sync = sync_devices(node).await;
    Ok(report)
}

/// Takes or renews this device's conversation leases; a failure is logged (without a lease the
/// device neither opens nor seals in the conversation, so nothing is at risk).
async fn renew_leases(node: &Mutex<Node>) {
    if let Err(e) = crate::devices::net::renew(node).await {
        tracing::warn!(error = %e, "renewing the conversation leases failed; it is tried again at the next sync");
    }
}

/// Sends the user's other devices what they lack; a failure is logged (the records stay, and go
/// with the next sync).
async fn sync_devices(node: &Mutex<Node>) -> crate::devices::net::Flushed {
    crate::devices::net::flush(node).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "syncing with the other devices failed; it is tried again at the next sync");
        Default::default()
    })
}

/// Publishes an emergency broadcast on my first reachable server, signed with my broadcast key;
/// returns the server's id for it.
pub async fn broadcast(node: &Mutex<Node>, text: &str) -> Result<(String, u64)> {
    let (servers, key, pool, env) = {
        let n = node.lock().await;
        (n.servers(), n.broadcast_key().clone(), n.pool(), n.env().clone())
    };
    if servers.is_empty() {
        return Err(NodeError::NoServers);
    }
    let max = meow_proto::broadcast::MAX_BROADCAST_TEXT;
    if text.len() > max {
        return Err(NodeError::BroadcastTooLong { max, len: text.len() });
    }
    let b = meow_proto::broadcast::Broadcast::sign(&key, env.now_ms() / 1000, text);
    let mut last = None;
    for s in &servers {
        match pool.get(&s.address, &s.key).await {
            Ok(client) => match client.broadcast(b.clone()).await {
                Ok(id) => return Ok((s.address.to_string(), id)),
                // A refusal is an answer: other servers would have their own rules.
                Err(e @ ClientError::Server { .. }) => return Err(e.into()),
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
    }
    Err(last.map(NodeError::from).unwrap_or(NodeError::NoServers))
}

/// Sends content to a group and delivers the copies; returns each copy's fate.
pub async fn group_send(
    node: &Mutex<Node>,
    group: &str,
    content_type: ContentType,
    content: Vec<u8>,
) -> Result<Vec<Delivery>> {
    group_send_as(node, group, content_type, content, None).await
}

/// [`group_send`] for a program (`by`: the plugin instance or recipe), marked automatic.
pub async fn group_send_as(
    node: &Mutex<Node>,
    group: &str,
    content_type: ContentType,
    content: Vec<u8>,
    by: Option<&str>,
) -> Result<Vec<Delivery>> {
    let items = node.lock().await.group_post_as(group, content_type, content, by)?;
    deliver_all(node, items).await
}

/// Delivers outbox items concurrently, so that their deposits share the servers' group commits,
/// then records every outcome in one write; returns each one's fate, in order.
pub async fn deliver_all(node: &Mutex<Node>, items: Vec<OutboxItem>) -> Result<Vec<Delivery>> {
    // With several devices, the state this sealing wrote (and any draft) reaches the others
    // before a message leaves: a device that takes a conversation later must not seal with an
    // older state. If they cannot be told, the messages wait in the outbox.
    if let Err(e) = crate::devices::net::flush(node).await {
        tracing::warn!(error = %e, "syncing with the other devices failed; the messages wait");
        let reason = format!("your other devices could not be told first: {e}");
        return Ok(items
            .iter()
            .map(|_| Delivery::Queued { reason: reason.clone() })
            .collect());
    }
    let onion = crate::records::PrivacyPolicy::Matriochka;
    let stale = {
        let n = node.lock().await;
        items.iter().any(|i| n.item_policy(i) == onion) && n.catalog_stale()
    };
    if stale && let Err(e) = refresh_catalog(node).await {
        tracing::info!(error = %e, "the server catalog could not be refreshed; routes use the one kept");
    }
    let (pool, paths) = {
        let n = node.lock().await;
        let paths: Vec<Path> = items
            .iter()
            .map(|i| match n.item_policy(i) {
                p if p == onion => Path::Onion(n.onion_plan(i)),
                _ => Path::Servers(n.direct_route(i.contact)),
            })
            .collect();
        (n.pool(), paths)
    };
    let attempts: Vec<_> = items
        .iter()
        .zip(paths)
        .map(|(item, path)| Box::pin(try_path(&pool, item, path)))
        .collect();
    let results = join_all(attempts).await;
    let failed_direct: Vec<u64> = results.iter().filter_map(|(_, f)| *f).collect();
    let results: Vec<_> = results.into_iter().map(|(r, _)| r).collect();
    if !failed_direct.is_empty() {
        let mut n = node.lock().await;
        for cid in failed_direct {
            n.direct_failed(cid);
        }
    }
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for (item, r) in items.into_iter().zip(results) {
        match r {
            Ok(server) => {
                done.push(item.seq);
                out.push(Delivery::Delivered { server });
            }
            Err(reason) => {
                let reason = reason.to_string();
                out.push(Delivery::Queued { reason: reason.clone() });
                failed.push((item, reason));
            }
        }
    }
    node.lock().await.outbox_settle(&done, failed)?;
    Ok(out)
}

/// Polls futures together until all are done; their outputs in order.
pub(crate) async fn join_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match std::pin::Pin::new(&mut *f).poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

const DIRECTORY_ENTRY_KEY: &[u8] = b"directory-entry";

/// Publishes (or replaces) my "free for chat" entry on my first server, with my public card.
pub async fn directory_publish(
    node: &Mutex<Node>,
    description: &str,
    tags: &[String],
) -> Result<(String, DirectoryEntry)> {
    let (entry, servers, pool) = {
        let mut n = node.lock().await;
        let (card, key) = match n.public_card() {
            Some(c) => c,
            None => {
                n.invite("directory", true)?;
                n.public_card().ok_or(NodeError::NoPublicCard)?
            }
        };
        let expires = card.body.expires;
        let entry = DirectoryEntry::sign(&key, card, description, tags, expires);
        let vault = n.vault();
        let mut b = vault.batch();
        b.put(Table::State, DIRECTORY_ENTRY_KEY, &entry.to_bytes(), &mut n.env().rng());
        b.commit()?;
        (entry, n.servers(), n.pool())
    };
    let server = servers.first().ok_or(NodeError::NoServers)?;
    let client = pool.get(&server.address, &server.key).await?;
    client.directory_publish(entry.clone()).await?;
    Ok((server.address.to_string(), entry))
}

/// Withdraws my directory entry.
pub async fn directory_withdraw(node: &Mutex<Node>) -> Result<String> {
    let (entry, key, servers, pool) = {
        let n = node.lock().await;
        let bytes = n
            .vault()
            .get(Table::State, DIRECTORY_ENTRY_KEY)?
            .ok_or(NodeError::NoDirectoryEntry)?;
        let entry = meow_proto::directory::UncheckedEntry::from_bytes(&bytes)?
            .check(0)
            .map_err(|_| NodeError::DamagedRecord("the stored directory entry does not verify"))?;
        let key = n.public_card().map(|(_, k)| k).ok_or(NodeError::NoPublicCard)?;
        (entry, key, n.servers(), n.pool())
    };
    let server = servers.first().ok_or(NodeError::NoServers)?;
    let client = pool.get(&server.address, &server.key).await?;
    client
        .directory_withdraw(meow_proto::directory::Withdrawal::sign(&key, entry.id()))
        .await?;
    let vault = node.lock().await.vault();
    let mut b = vault.batch();
    b.delete(Table::State, DIRECTORY_ENTRY_KEY);
    b.commit()?;
    Ok(server.address.to_string())
}

/// Searches (or, with no words, samples at random) the directory of my first server; returns the
/// entries that check out.
pub async fn directory_search(node: &Mutex<Node>, words: Option<&str>, limit: u32) -> Result<Vec<DirectoryEntry>> {
    let (servers, pool, env) = {
        let n = node.lock().await;
        (n.servers(), n.pool(), n.env().clone())
    };
    let server = servers.first().ok_or(NodeError::NoServers)?;
    let client = pool.get(&server.address, &server.key).await?;
    let found = match words {
        Some(w) => client.directory_search(w, limit).await?,
        None => client.directory_random(limit).await?,
    };
    let now = env.now_ms() / 1000;
    Ok(found.into_iter().filter_map(|e| e.check(now).ok()).collect())
}
