//! The network side of several devices: sending each other device the records it lacks
//! ([`flush`]), and the two ends of linking ([`link_wait`], [`link_welcome`], [`join`]). Like
//! [`crate::sync`], these hold the node only between network calls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meow_proto::LookupKey;
use meow_proto::codec::Encode;
use meow_proto::devices::link::{JoinRequest, ShortCode};
use meow_proto::lease::LeaseOp;
use meow_proto::sync::batch::Batch;
use meow_proto::sync::{DeviceId, Kind};
use meow_proto::{MailboxId, ServerCard};
use smol::lock::Mutex;

use super::channel;
use super::link::{Joining, Linking};
use crate::{Node, NodeError, Result};

/// Records sent to one device in one flush at most (the rest goes with the next).
const MAX_RECORDS_PER_FLUSH: usize = 2000;
/// After this long without an acknowledgement, what was sent is sent again.
const RESEND_MS: u64 = 60_000;

/// What one flush sends one device.
struct Outgoing {
    device: DeviceId,
    mailbox: MailboxId,
    envelopes: Vec<Vec<u8>>,
    sent: BTreeMap<DeviceId, u64>,
    told: BTreeMap<DeviceId, u64>,
}

impl Node {
    /// What to send each other device now: the records it has not acknowledged (and was not
    /// sent recently), or a bare acknowledgement when this device learned something since it
    /// last told it.
    fn sync_plan(&self) -> Result<Vec<Outgoing>> {
        let Some(mut d) = self.device_state() else {
            return Ok(Vec::new());
        };
        let now = self.env.now_ms();
        let mut rng = self.env.rng();
        let known = d.replica.known();
        let mut out = Vec::new();
        for peer in d.peers() {
            let id = peer.id();
            let p = d.progress.entry(id).or_default().clone();
            let mut base = p.known.clone();
            if now.saturating_sub(p.sent_ms) < RESEND_MS {
                for (dev, n) in &p.sent {
                    let b = base.entry(*dev).or_default();
                    *b = (*b).max(*n);
                }
            }
            let mut records = d.replica.missing_for(&base);
            records.truncate(MAX_RECORDS_PER_FLUSH);
            if records.is_empty() && p.told == known {
                continue;
            }
            let mut sent = base;
            for r in &records {
                let s = sent.entry(r.device).or_default();
                *s = (*s).max(r.seq);
            }
            let payload = Batch {
                known: known.clone(),
                records,
            }
            .to_bytes();
            let envelopes = channel::seal_payload(&payload, &d.this.key, &peer.dh, now, &mut rng)?;
            let mailbox = MailboxId::of(&peer.mailbox);
            out.push(Outgoing {
                device: id,
                mailbox,
                envelopes,
                sent,
                told: known.clone(),
            });
        }
        Ok(out)
    }

    fn note_flushed(&self, o: &Outgoing) {
        let now = self.env.now_ms();
        if let Some(mut d) = self.device_state() {
            let p = d.progress.entry(o.device).or_default();
            p.sent = o.sent.clone();
            p.sent_ms = now;
            p.told = o.told.clone();
        }
    }

    fn first_server(&self) -> Result<ServerCard> {
        self.servers().into_iter().next().ok_or(NodeError::NoServers)
    }
}

/// What a [`flush`] sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Envelopes deposited.
    pub envelopes: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// Sends each of the user's other devices what it lacks, through the home's first server.
/// Nothing to do with one device.
pub async fn flush(node: &Mutex<Node>) -> Result<Flushed> {
    let (plan, server, pool) = {
        let n = node.lock().await;
        if !n.has_devices() {
            return Ok(Flushed::default());
        }
        (n.sync_plan()?, n.first_server()?, n.pool())
    };
    let mut sent = Flushed::default();
    if plan.is_empty() {
        return Ok(sent);
    }
    let client = pool.get(&server.address, &server.key).await?;
    // Each device's envelopes in order, the devices side by side (pipelined on one session).
    let deposits: Vec<_> = plan
        .iter()
        .map(|o| {
            let client = &client;
            Box::pin(async move {
                for e in &o.envelopes {
                    client.deposit(o.mailbox, e.clone()).await?;
                }
                Ok::<_, meow_net::ClientError>(())
            })
        })
        .collect();
    let results = crate::sync::join_all(deposits).await;
    let n = node.lock().await;
    for (o, r) in plan.iter().zip(results) {
        r?;
        n.note_flushed(o);
        sent.envelopes += o.envelopes.len();
        sent.bytes += o.envelopes.iter().map(Vec::len).sum::<usize>();
    }
    Ok(sent)
}

/// Polls `key`'s mailbox on `server` until `take` accepts something or `timeout` passes;
/// acknowledges everything it read.
async fn poll_until<T>(
    node_pool: &meow_net::pool::Pool,
    server: &ServerCard,
    key: &LookupKey,
    timeout: Duration,
    mut take: impl FnMut(&[u8]) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + timeout;
    let client = node_pool.get(&server.address, &server.key).await?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let got = client.poll(&[key], 512, left.min(Duration::from_secs(20)), 0).await?;
        let seqs: Vec<u64> = got.messages.iter().map(|m| m.seq).collect();
        let mut found = None;
        for m in &got.messages {
            if found.is_none() {
                found = take(&m.envelope)?;
            }
        }
        if !seqs.is_empty() {
            client.ack(&[(key, seqs)]).await?;
        }
        if found.is_some() {
            return Ok(found);
        }
    }
}

/// On the existing device: waits up to `timeout` for the join request of `linking`'s card;
/// returns it with the short code to show.
pub async fn link_wait(node: &Mutex<Node>, linking: &Linking, timeout: Duration) -> Result<(JoinRequest, ShortCode)> {
    link_poll(node, linking, timeout)
        .await?
        .ok_or_else(|| NodeError::Device("no device asked to join before the card expired".into()))
}

/// [`link_wait`], answering `None` when no request came within `wait`.
pub async fn link_poll(
    node: &Mutex<Node>,
    linking: &Linking,
    wait: Duration,
) -> Result<Option<(JoinRequest, ShortCode)>> {
    let (server, pool, env) = {
        let n = node.lock().await;
        (n.first_server()?, n.pool(), n.env().clone())
    };
    let key = linking.join_mailbox();
    poll_until(&pool, &server, &key, wait, |e| Ok(linking.open(e, env.now_ms()))).await
}

/// On the existing device, once the person confirmed the code: adds the device and sends it
/// the welcome.
/// `password` is the home's: the first link derives the revocation key from it (docs/DEVICES.md).
pub async fn link_welcome(
    node: &Mutex<Node>,
    linking: &Linking,
    request: &JoinRequest,
    password: &[u8],
) -> Result<usize> {
    node.lock().await.become_multi_device(password)?;
    // The conversations' leases are taken before the new device learns of them.
    renew_leases(node, true).await?;
    let (mailbox, envelopes, server, pool) = {
        let mut n = node.lock().await;
        let (mailbox, envelopes) = n.welcome(linking, request)?;
        (mailbox, envelopes, n.first_server()?, n.pool())
    };
    let client = pool.get(&server.address, &server.key).await?;
    let bytes = envelopes.iter().map(Vec::len).sum();
    for e in envelopes {
        client.deposit(mailbox, e).await?;
    }
    // The other devices learn of the new one now.
    flush(node).await?;
    Ok(bytes)
}

/// On the new device: sends the join request, then waits up to `timeout` for the welcome;
/// `confirm` is called with the short code as soon as the request is sent, and the welcome is
/// used only if it says yes. Returns the welcome's bytes for [`Joining::finish`].
pub async fn join(
    mut joining: Joining,
    mailbox: MailboxId,
    request: Vec<u8>,
    pool: &meow_net::pool::Pool,
    timeout: Duration,
    confirm: impl FnOnce() -> bool,
) -> Result<(Joining, Vec<u8>)> {
    let server = joining.server()?;
    let client = pool.get(&server.address, &server.key).await?;
    client.deposit(mailbox, request).await?;
    if !confirm() {
        return Err(NodeError::Device("not confirmed: nothing was joined".into()));
    }
    let key = joining.welcome_mailbox();
    let welcome = poll_until(pool, &server, &key, timeout, |e| joining.take_part(e)).await?;
    let welcome = welcome
        .ok_or_else(|| NodeError::Device("the other device sent no welcome in time (did it confirm?)".into()))?;
    Ok((joining, welcome))
}

/// One lease to ask the server for.
struct LeaseAsk {
    peer: [u8; 32],
    key: LookupKey,
    expect: u64,
}

impl Node {
    /// The leases this device should take or renew now: those of the conversations it holds
    /// (or that no device holds yet) not granted in the last minute.
    fn lease_plan(&self, force: bool) -> Vec<LeaseAsk> {
        let Some(d) = self.device_state() else {
            return Vec::new();
        };
        let now = self.env.now_ms();
        self.contacts
            .values()
            .filter(|c| self.hidden_in(c.id).is_none() && d.may_hold(&c.conversation.peer))
            .filter(|c| {
                force
                    || d.leases
                        .get(c.conversation.peer.as_bytes())
                        .is_none_or(|l| now.saturating_sub(l.renewed_ms) >= super::RENEW_MS)
            })
            .map(|c| LeaseAsk {
                peer: *c.conversation.peer.as_bytes(),
                key: d.lease_key(&c.conversation.peer),
                expect: d
                    .leases
                    .get(c.conversation.peer.as_bytes())
                    .map_or_else(|| d.epoch_of(&c.conversation.peer), |l| l.epoch),
            })
            .collect()
    }

    /// Takes in the server's answer about the lease of the conversation with `peer`. A grant of
    /// a new epoch writes the conversation's state under it (this device is now its holder); a
    /// refusal means another device holds it.
    fn lease_answer(&mut self, peer: [u8; 32], answer: meow_proto::lease::LeaseAnswer) -> Result<()> {
        let now = self.env.now_ms();
        let contact = self.contact_by_key(&peer).cloned();
        let Some(contact) = contact else { return Ok(()) };
        let new_epoch = {
            let Some(mut d) = self.device_state() else {
                return Ok(());
            };
            if !answer.granted {
                if d.leases.remove(&peer).is_some() {
                    tracing::info!(contact = %contact.name, "another device holds this conversation now");
                }
                return Ok(());
            }
            let before = d.epoch_of(&contact.conversation.peer);
            d.leases.insert(
                peer,
                super::LeaseHeld {
                    epoch: answer.epoch,
                    renewed_ms: now,
                },
            );
            answer.epoch != before
        };
        if new_epoch {
            let state = [&self.this_device()?.0[..], &contact.conversation.to_bytes()].concat();
            self.commit_sync(Kind::Conversation, &peer, Some(state), answer.epoch)?;
        }
        self.rebuild_routes();
        Ok(())
    }

    fn this_device(&self) -> Result<DeviceId> {
        self.device_state()
            .map(|d| d.this.id())
            .ok_or_else(|| NodeError::Device("this home has one device: link another with `meow device link`".into()))
    }
}

/// Takes or renews the leases of the conversations this device holds (at most once a minute
/// each), then sends the drafts waiting for them. Nothing to do with one device.
pub async fn renew(node: &Mutex<Node>) -> Result<()> {
    renew_leases(node, false).await
}

async fn renew_leases(node: &Mutex<Node>, force: bool) -> Result<()> {
    let (plan, me, server, pool) = {
        let n = node.lock().await;
        if !n.has_devices() {
            return Ok(());
        }
        (n.lease_plan(force), n.this_device()?, n.first_server()?, n.pool())
    };
    if !plan.is_empty() {
        let client = pool.get(&server.address, &server.key).await?;
        for ask in plan {
            let mut answer = client.lease(&ask.key, me, ask.expect, LeaseOp::Take).await?;
            if !answer.granted && answer.holder == Some(me) {
                // Granted before under a newer epoch this device did not record (a crash).
                answer = client.lease(&ask.key, me, answer.epoch, LeaseOp::Take).await?;
            }
            node.lock().await.lease_answer(ask.peer, answer)?;
        }
    }
    let mut n = node.lock().await;
    n.send_pending_drafts()?;
    n.rotate_owed()?;
    Ok(())
}

/// Makes this device the holder of the conversation with `name`. It succeeds when no device
/// holds it, when its holder released it, or when its holder has been silent for ten minutes
/// (the lease is broken); otherwise the error says which device holds it.
pub async fn take(node: &Mutex<Node>, name: &str) -> Result<()> {
    let (peer, key, expect, me, server, pool) = {
        let n = node.lock().await;
        let c = n.contact(name)?;
        let peer = c.conversation.peer;
        let d = n
            .device_state()
            .ok_or_else(|| NodeError::Device("this home has one device".into()))?;
        let key = d.lease_key(&peer);
        let expect = d.epoch_of(&peer);
        drop(d);
        (peer, key, expect, n.this_device()?, n.first_server()?, n.pool())
    };
    let client = pool.get(&server.address, &server.key).await?;
    let answer = client.lease(&key, me, expect, LeaseOp::Take).await?;
    if !answer.granted {
        let who = match answer.holder {
            Some(h) => node.lock().await.device_name(h),
            None => "no device".to_owned(),
        };
        return Err(NodeError::Device(format!(
            "{name} is held by {who} (active {} s ago): take it once that device releases it \
             (`meow device release {name}` there), or after {} minutes of silence",
            answer.idle_secs,
            meow_proto::lease::LEASE_BREAK_SECS / 60
        )));
    }
    // The previous holder sent its last state before releasing (or before it fell silent):
    // read it before sealing anything.
    crate::sync::fetch(node, Duration::ZERO).await?;
    node.lock().await.lease_answer(*peer.as_bytes(), answer)?;
    Ok(())
}

/// Revokes device `which` with the key derived from `password` (docs/DEVICES.md): the others
/// stop syncing with it, take over the conversations it held under new lease keys, and rotate
/// every conversation's keys away from it; it is told, and wipes itself when it hears (best
/// effort: a device kept offline never hears, and its keys stop working anyway). Returns the
/// revoked device's name.
pub async fn revoke(node: &Mutex<Node>, which: &str, password: &[u8]) -> Result<String> {
    let (entry, envelopes_for, server, pool) = {
        let mut n = node.lock().await;
        let (entry, record) = n.revoke_device(which, password)?;
        let d = n.device_state().ok_or(NodeError::Internal("no device state"))?;
        let payload = Batch {
            known: BTreeMap::new(),
            records: vec![record],
        }
        .to_bytes();
        let mut rng = n.env().rng();
        let now = n.env().now_ms();
        let envelopes = channel::seal_payload(&payload, &d.this.key, &entry.dh, now, &mut rng)?;
        drop(d);
        (entry, envelopes, n.first_server()?, n.pool())
    };
    // Tell the revoked device (best effort), then take over and rotate.
    let client = pool.get(&server.address, &server.key).await?;
    for e in envelopes_for {
        if let Err(e) = client.deposit(MailboxId::of(&entry.mailbox), e).await {
            tracing::info!(error = %e, "the revoked device could not be told; its keys stop working anyway");
        }
    }
    renew_leases(node, true).await?;
    crate::sync::fetch(node, Duration::ZERO).await?;
    Ok(entry.name)
}

/// Gives up the conversation with `name`: this device stops sealing in it, sends its last
/// state to the others, then releases the lease so that another device may take it at once.
pub async fn release(node: &Mutex<Node>, name: &str) -> Result<()> {
    // A device that just started holds no lease in memory yet: it renews what it holds first.
    renew(node).await?;
    let (key, epoch, me, server, pool) = {
        let n = node.lock().await;
        let c = n.contact(name)?;
        let peer = *c.conversation.peer.as_bytes();
        let mut d = n
            .device_state()
            .ok_or_else(|| NodeError::Device("this home has one device".into()))?;
        let held = d
            .leases
            .remove(&peer)
            .ok_or_else(|| NodeError::Device(format!("this device does not hold {name}")))?;
        let key = d.lease_key(&c.conversation.peer);
        drop(d);
        // The last state, held by no device: nobody claims it on their own; `take` does.
        let state = [&super::NO_HOLDER.0[..], &c.conversation.to_bytes()].concat();
        n.commit_sync(Kind::Conversation, &peer, Some(state), held.epoch)?;
        (key, held.epoch, n.this_device()?, n.first_server()?, n.pool())
    };
    node.lock().await.rebuild_routes();
    flush(node).await?;
    let client = pool.get(&server.address, &server.key).await?;
    let answer = client.lease(&key, me, epoch, LeaseOp::Release).await?;
    if !answer.granted {
        return Err(NodeError::Device(format!(
            "{name} was not this device's any more: nothing to release"
        )));
    }
    Ok(())
}
