//! Messages as state: sealing into the outbox, and taking what servers hand over into the inbox.
//! Everything here is synchronous and durable before it returns; [`crate::sync`] does the network.

use std::collections::{BTreeSet, HashSet};

use meow_proto::codec::{Decode, Encode};
use meow_proto::conversation::ConversationError;
use meow_proto::envelope::{self, ContentType, EnvelopeError};
use meow_proto::invitation;
use meow_proto::ratchet::RatchetError;
use meow_proto::wire::{BroadcastItem, StoredMessage};
use meow_proto::{LookupKey, MailboxId, MessageId, ServerCard, ServerRef};

use crate::records::{ContactRecord, EventRecord, InboxItem, Origin, OutboxItem};
use crate::{Node, NodeEvent, REPLAY_WINDOW_MS, Result, Route, Table};

/// Retired keys are dropped once their mailbox was found empty this long after the rotation.
pub const RETIRE_GRACE_MS: u64 = 10 * 60 * 1000;
/// Label prefix of outbox items the node queued by itself (key rotation offers and acks).
pub const AUTOMATIC: &str = "(automatic) ";
/// Longest wait between delivery attempts.
const MAX_BACKOFF_MS: u64 = 3600 * 1000;

/// What one message opened to.
struct Taken {
    item: Option<InboxItem>,
    events: Vec<NodeEvent>,
    /// Group relays to queue: member, whether the post was automatic, payload.
    sends: Vec<(u64, bool, meow_proto::group::GroupPayload)>,
}

/// What taking in a poll result did.
#[derive(Debug, Default)]
pub struct Received {
    /// What happened.
    pub events: Vec<NodeEvent>,
    /// Messages now safely stored (or discarded), to delete at the server.
    pub acks: Vec<(LookupKey, Vec<u64>)>,
}

/// A message to seal and queue.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The contact.
    pub contact: u64,
    /// What `content` is.
    pub content_type: ContentType,
    /// The content.
    pub content: Vec<u8>,
    /// Sent by a program: marked as automatic in the message.
    pub automatic: bool,
    /// The plugin instance or recipe that asked (counts against its outbox quota).
    pub by: Option<String>,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
}

impl Queued {
    /// A message the node sends on its own account (key updates, group upkeep), or for a person.
    pub fn new(contact: u64, content_type: ContentType, content: Vec<u8>) -> Self {
        Self {
            contact,
            content_type,
            content,
            automatic: false,
            by: None,
            reply_to: None,
        }
    }
}

impl Node {
    /// Seals a message to `name` and queues it durably; returns the outbox items to deliver: the
    /// message last, after what the conversation owes first (an offer of version 2).
    pub fn queue_message(
        &mut self,
        name: &str,
        content_type: ContentType,
        content: Vec<u8>,
    ) -> Result<Vec<OutboxItem>> {
        let id = self.contact_id(name)?;
        self.queue_all(vec![Queued::new(id, content_type, content)])
    }

    /// Like [`Node::queue_message`] for a message a program sends: marked automatic, and counted
    /// against the outbox quota of `by` (a plugin instance or recipe).
    pub fn queue_automatic(
        &mut self,
        name: &str,
        content_type: ContentType,
        content: Vec<u8>,
        by: &str,
    ) -> Result<Vec<OutboxItem>> {
        let contact = self.contact_id(name)?;
        self.queue_all(vec![Queued {
            automatic: true,
            by: Some(by.to_owned()),
            ..Queued::new(contact, content_type, content)
        }])
    }

    /// Queues a message to `name` that answers message `reply_to` (the receiver shows it as a
    /// reply); with `by`, as a program's (automatic, counted against its quota).
    pub fn queue_reply(
        &mut self,
        name: &str,
        (content_type, content): (ContentType, Vec<u8>),
        reply_to: MessageId,
        by: Option<&str>,
    ) -> Result<Vec<OutboxItem>> {
        let contact = self.contact_id(name)?;
        self.queue_all(vec![Queued {
            automatic: by.is_some(),
            by: by.map(str::to_owned),
            reply_to: Some(reply_to),
            ..Queued::new(contact, content_type, content)
        }])
    }

    pub(crate) fn queue_to(&mut self, id: u64, content_type: ContentType, content: Vec<u8>) -> Result<OutboxItem> {
        let mut items = self.queue_all(vec![Queued::new(id, content_type, content)])?;
        items
            .pop()
            .ok_or(crate::NodeError::Internal("queue_all queued no item"))
    }

    /// Seals several messages and queues them in one durable write (one fsync for all).
    pub(crate) fn queue_many(&mut self, messages: Vec<(u64, ContentType, Vec<u8>)>) -> Result<Vec<OutboxItem>> {
        self.queue_all(messages.into_iter().map(|(c, t, m)| Queued::new(c, t, m)).collect())
    }

    /// Seals and queues messages in one durable write. Refused as a whole when the outbox would
    /// grow past its bound (key updates excepted: they are small and keep conversations alive).
    pub(crate) fn queue_all(&mut self, messages: Vec<Queued>) -> Result<Vec<OutboxItem>> {
        let messages = self.take_drafts(messages)?;
        let adding = messages
            .iter()
            .filter(|m| m.content_type != ContentType::CONTROL)
            .count();
        if adding > 0 && self.outbox.len() + adding > self.outbox_limit {
            return Err(crate::NodeError::OutboxFull {
                limit: self.outbox_limit,
            });
        }
        let messages = self.with_upgrade_offers(messages);
        self.queue_relays(messages)
    }

    /// Puts a version-2 offer in front of the messages to each contact still on version 1 (and
    /// not offered in the last day). The offer's secrets are stored with the messages.
    fn with_upgrade_offers(&mut self, messages: Vec<Queued>) -> Vec<Queued> {
        let now = self.env.now_ms();
        let mut out = Vec::with_capacity(messages.len() + 1);
        for m in messages {
            if self.offer_upgrade_to(m.contact, now) {
                out.push(Queued::new(m.contact, ContentType::CONTROL, Vec::new()));
            }
            out.push(m);
        }
        out
    }

    /// Makes the conversation with `contact` owe a version-2 offer if it should send one now
    /// (see `Conversation::wants_offer`); returns whether it does.
    fn offer_upgrade_to(&mut self, contact: u64, now: u64) -> bool {
        let Some(c) = self.contacts.get_mut(&contact) else {
            return false;
        };
        let pq = self.post_quantum && !c.classical_start;
        let offered = c.conversation.offer_upgrade(pq, now, &mut self.env.rng());
        if offered {
            tracing::info!(contact = %c.name, post_quantum = pq, "offering conversation version 2");
        }
        offered
    }

    /// Queues without the outbox bound: for copies that would be lost if refused.
    fn queue_relays(&mut self, messages: Vec<Queued>) -> Result<Vec<OutboxItem>> {
        let mut contacts = std::collections::BTreeMap::new();
        let mut items = Vec::with_capacity(messages.len());
        for m in messages {
            let id = m.contact;
            let contact = match contacts.get_mut(&id) {
                Some(c) => c,
                None => contacts.entry(id).or_insert(self.contacts[&id].clone()),
            };
            let out = contact.conversation.seal_as(
                m.content_type,
                m.content,
                (m.automatic, m.reply_to),
                self.env.now_ms(),
                &mut self.env.rng(),
            )?;
            let label = if m.content_type == ContentType::CONTROL {
                format!("{AUTOMATIC}key update for {}", contact.name)
            } else {
                contact.name.clone()
            };
            let servers = contact.servers.clone();
            let mut item = self.new_outbox_item(id, label, out.id, out.mailbox, servers, out.envelope);
            item.by = m.by;
            items.push(item);
        }
        self.store_queued(contacts, items)
    }

    /// Seals a message to `name` in the compact form (for a radio link: `meow_proto::compact`)
    /// and queues it durably, as [`Node::queue_message`] does; `None` when the conversation is
    /// not at version 2 yet (or owes an upgrade step), so the message goes the usual way. Queued
    /// like any message, it is delivered by the next sync if the link does not take it.
    pub fn queue_compact(
        &mut self,
        name: &str,
        content_type: ContentType,
        content: Vec<u8>,
    ) -> Result<Option<OutboxItem>> {
        let id = self.contact_id(name)?;
        if !self.holds(id) {
            return Ok(None); // the usual way: a draft for the device that holds it
        }
        if self.outbox.len() >= self.outbox_limit {
            return Err(crate::NodeError::OutboxFull {
                limit: self.outbox_limit,
            });
        }
        let mut contact = self.contacts[&id].clone();
        let out = match contact
            .conversation
            .seal_compact_as(content_type, content, false, self.env.now_ms())
        {
            Ok(out) => out,
            Err(meow_proto::ConversationError::NotUpgraded) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (name, servers) = (contact.name.clone(), contact.servers.clone());
        let item = self.new_outbox_item(id, name, out.id, out.mailbox, servers, out.envelope);
        let contacts = std::collections::BTreeMap::from([(id, contact)]);
        Ok(self.store_queued(contacts, vec![item])?.pop())
    }

    /// Writes sealed messages and their contacts' new states in one batch.
    fn store_queued(
        &mut self,
        contacts: std::collections::BTreeMap<u64, ContactRecord>,
        items: Vec<OutboxItem>,
    ) -> Result<Vec<OutboxItem>> {
        let mut b = self.vault.batch();
        for c in contacts.values() {
            self.put_contact(&mut b, c);
        }
        for item in &items {
            b.put_in(
                self.home_of(item.contact),
                Table::Outbox,
                &item.seq.to_be_bytes(),
                &item.to_bytes(),
                &mut self.env.rng(),
            );
        }
        self.put_counters(&mut b);
        b.commit()?;
        self.contacts.extend(contacts);
        for item in &items {
            self.outbox.insert(item.seq, item.by.clone());
        }
        Ok(items)
    }

    /// Messages waiting in the outbox: all of them, or those queued by `by`.
    pub fn outbox_len(&self, by: Option<&str>) -> usize {
        match by {
            None => self.outbox.len(),
            Some(b) => self.outbox.values().filter(|v| v.as_deref() == Some(b)).count(),
        }
    }

    /// Runs `f` (which makes a card: an invitation or an answer) with my cards asking for a
    /// classical start if `classical`; with `false`, the home's setting stands.
    pub fn with_classical_start<T>(&mut self, classical: bool, f: impl FnOnce(&mut Node) -> T) -> T {
        let before = self.post_quantum;
        self.post_quantum = before && !classical;
        let out = f(self);
        self.post_quantum = before;
        out
    }

    /// The most messages the outbox holds (people, plugins and recipes alike).
    pub fn set_outbox_limit(&mut self, limit: usize) {
        self.outbox_limit = limit;
    }

    /// Whether offers to move a contact to conversation version 2 carry an X-Wing key (the
    /// default: a post-quantum start, whose offer and answer are 1.2 KB each). Off gives a classical
    /// start with steps of a few dozen bytes, for homes that reach their server over a small link.
    /// Off also marks the cards I make from then on (a version-3 flag), so a contact made from
    /// one offers classically too.
    pub fn set_post_quantum_upgrades(&mut self, on: bool) {
        self.post_quantum = on;
    }

    /// A fresh outbox item under the next outbox sequence number (the caller stores the counters).
    pub(crate) fn new_outbox_item(
        &mut self,
        contact: u64,
        label: String,
        message: MessageId,
        mailbox: MailboxId,
        servers: Vec<ServerRef>,
        envelope: Vec<u8>,
    ) -> OutboxItem {
        let seq = self.counters.next_outbox;
        self.counters.next_outbox += 1;
        OutboxItem {
            seq,
            contact,
            label,
            message,
            mailbox,
            servers,
            envelope,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            created_ms: self.env.now_ms(),
            by: None,
        }
    }

    /// The outbox, oldest first; with `due_only`, only items whose retry time has come.
    pub fn outbox(&self, due_only: bool) -> Result<Vec<OutboxItem>> {
        let now = self.env.now_ms();
        let mut items: Vec<OutboxItem> = self
            .vault
            .scan(Table::Outbox)?
            .iter()
            .map(|(_, v)| OutboxItem::from_bytes(v))
            .collect::<Result<_, _>>()?;
        items.retain(|i| !due_only || i.next_attempt_ms <= now);
        items.sort_by_key(|i| i.seq);
        Ok(items)
    }

    /// Records delivery attempts in one write: delivered items are forgotten, failed ones kept
    /// with a backoff (1 s, 2 s, 4 s … up to an hour, ±25 %) and their reason.
    pub fn outbox_settle(&mut self, done: &[u64], failed: Vec<(OutboxItem, String)>) -> Result<()> {
        if done.is_empty() && failed.is_empty() {
            return Ok(());
        }
        let mut b = self.vault.batch();
        for seq in done {
            b.delete(Table::Outbox, &seq.to_be_bytes());
        }
        for (mut item, error) in failed {
            item.attempts = item.attempts.saturating_add(1);
            let base = 1000u64.saturating_mul(1 << item.attempts.min(12)).min(MAX_BACKOFF_MS);
            let jitter = u64::from(u16::from_le_bytes(meow_proto::crypto::random_bytes(
                &mut self.env.rng(),
            ))) % (base / 2 + 1);
            item.next_attempt_ms = self.env.now_ms() + base * 3 / 4 + jitter;
            item.last_error = Some(error);
            b.put(
                Table::Outbox,
                &item.seq.to_be_bytes(),
                &item.to_bytes(),
                &mut self.env.rng(),
            );
        }
        b.commit()?;
        for seq in done {
            self.outbox.remove(seq);
        }
        Ok(())
    }

    /// Where to poll: my servers, and every lookup key whose mailbox may hold mail for me.
    pub fn poll_plan(&self) -> (Vec<ServerCard>, Vec<LookupKey>) {
        // With several devices, only the holder of a conversation reads its mailboxes.
        let mut keys: Vec<LookupKey> = self.polled_keys().into_iter().map(|(k, _)| k).collect();
        let mut seen = HashSet::new();
        keys.retain(|k| seen.insert(MailboxId::of(&k.public())));
        (self.servers(), keys)
    }

    /// The highest broadcast id already seen from a server.
    pub fn broadcasts_seen(&self, server: &str) -> u64 {
        self.counters.broadcasts_seen.get(server).copied().unwrap_or(0)
    }

    fn lookup_key_for(&self, mailbox: &MailboxId) -> Option<LookupKey> {
        self.poll_plan()
            .1
            .into_iter()
            .find(|k| &MailboxId::of(&k.public()) == mailbox)
    }

    /// Takes in what one server returned: opens, verifies, drops duplicates, stores durably, and
    /// says which messages may now be deleted at the server.
    pub fn receive(
        &mut self,
        server: &str,
        messages: Vec<StoredMessage>,
        broadcasts: Vec<BroadcastItem>,
    ) -> Result<Received> {
        let mut out = Received::default();
        let mut touched = BTreeSet::new();
        let mut seen: Vec<(u64, meow_proto::MessageId, u64)> = Vec::new();
        let mut group_sends = Vec::new();
        let mut inbox = Vec::new();
        let mut acks: Vec<(MailboxId, u64)> = Vec::new();
        let mut new_contacts = Vec::new();
        let mut files = crate::files::FileIntake::default();
        for m in messages {
            acks.push((m.mailbox, m.seq));
            let routes = self.routes.get(&m.mailbox).cloned().unwrap_or_default();
            let mut handled = false;
            let mut last_err = None;
            for route in &routes {
                match *route {
                    Route::Device => {
                        if let Some(events) = self.take_device_part(&m.envelope)? {
                            out.events.extend(events);
                            handled = true;
                            break;
                        }
                    }
                    Route::Invitation(id) => {
                        if let Some(name) = self.take_answer(id, &m.envelope)? {
                            let public = self.invitations.contains_key(&id);
                            out.events.push(NodeEvent::ContactAdded {
                                name: name.clone(),
                                via_public_card: public,
                            });
                            new_contacts.push((name, public));
                            handled = true;
                            break;
                        }
                    }
                    Route::Contact(cid) => match self.take_message(cid, &m, &mut touched, &mut seen, &mut files)? {
                        Ok(taken) => {
                            handled = true;
                            inbox.extend(taken.item);
                            out.events.extend(taken.events);
                            group_sends.extend(taken.sends);
                            break;
                        }
                        Err(e) => last_err = Some((cid, e)),
                    },
                }
            }
            if !handled
                && let Some((cid, e)) = last_err
                && let Some(c) = self.contacts.get_mut(&cid)
            {
                c.dropped_unsigned += u64::from(e == ConversationError::Envelope(EnvelopeError::NotFromContact));
                touched.insert(cid);
                tracing::warn!(contact = %c.name, reason = %e, "message discarded");
                out.events.push(NodeEvent::Dropped {
                    contact: c.name.clone(),
                    reason: e.to_string(),
                });
            }
        }
        self.take_broadcasts(server, broadcasts, &mut inbox);
        let vault = self.vault.clone();
        let mut b = vault.batch();
        for (cid, id, sent_at) in &seen {
            b.put_in(
                self.home_of(*cid),
                Table::Seen,
                &Self::seen_key(*cid, id),
                &sent_at.to_be_bytes(),
                &mut self.env.rng(),
            );
        }
        let mut records = Vec::new();
        for mut item in inbox {
            item.seq = self.fresh_id();
            b.put_in(
                self.home_of(item.contact),
                Table::Inbox,
                &item.seq.to_be_bytes(),
                &item.to_bytes(),
                &mut self.env.rng(),
            );
            self.sync_inbox(&mut b, &item);
            records.push(EventRecord::Message { inbox: item.seq });
            out.events.push(NodeEvent::Message(item));
        }
        records.extend(new_contacts.iter().map(|(name, public)| EventRecord::ContactAdded {
            name: name.clone(),
            via_public_card: *public,
        }));
        self.record_events(&mut b, records);
        files.write(self, &mut b);
        for cid in &touched {
            if let Some(c) = self.contacts.get(cid) {
                self.put_contact(&mut b, c);
            }
        }
        self.put_counters(&mut b);
        b.commit()?;
        self.signal_events();
        self.rebuild_routes();
        if !group_sends.is_empty() {
            // Relays of a member's post: what the outbox bound refuses is lost for the other
            // members, so it is the one place the bound gives way.
            let copies = group_sends
                .into_iter()
                .map(|(cid, automatic, p)| Queued {
                    automatic,
                    ..Queued::new(cid, ContentType::GROUP, p.to_bytes())
                })
                .collect();
            self.queue_relays(copies)?;
        }
        self.after_receive(&touched, &new_contacts, &mut out)?;
        out.acks = self.group_acks(acks);
        Ok(out)
    }

    /// Queues what the conversation owes after receiving: rotation acknowledgements, and the
    /// rotation offer to contacts that came through my public card.
    fn after_receive(
        &mut self,
        touched: &BTreeSet<u64>,
        new_contacts: &[(String, bool)],
        out: &mut Received,
    ) -> Result<()> {
        let now = self.env.now_ms();
        for id in touched {
            // Owed through control_due() below, like an acknowledgement.
            self.offer_upgrade_to(*id, now);
        }
        let mut owe: Vec<u64> = touched
            .iter()
            .copied()
            .filter(|id| self.contacts[id].conversation.control_due())
            .collect();
        for (name, public) in new_contacts {
            if *public {
                owe.push(self.contact_id(name)?);
            }
        }
        for id in owe {
            if let Some(serial) = self.contacts[&id].conversation.ack_due() {
                out.events.push(NodeEvent::PeerRotated {
                    contact: self.contacts[&id].name.clone(),
                    serial,
                });
            }
            self.queue_to(id, ContentType::CONTROL, Vec::new())?;
        }
        Ok(())
    }

    fn group_acks(&self, acks: Vec<(MailboxId, u64)>) -> Vec<(LookupKey, Vec<u64>)> {
        let mut out: Vec<(MailboxId, LookupKey, Vec<u64>)> = Vec::new();
        for (mailbox, seq) in acks {
            if let Some(entry) = out.iter_mut().find(|(m, _, _)| *m == mailbox) {
                entry.2.push(seq);
            } else if let Some(key) = self.lookup_key_for(&mailbox) {
                out.push((mailbox, key, vec![seq]));
            }
        }
        out.into_iter().map(|(_, k, s)| (k, s)).collect()
    }

    /// Reads an answer card arriving in an invitation's mailbox; `None` if it is not one.
    fn take_answer(&mut self, id: [u8; 32], sealed: &[u8]) -> Result<Option<String>> {
        let Some(inv) = self.invitations.get(&id) else {
            return Ok(None);
        };
        let Ok(unverified) = envelope::open(sealed, &inv.keys.keys.conversation) else {
            return Ok(None);
        };
        match invitation::read_answer(unverified, self.env.now_ms() / 1000) {
            Ok(card) if card.body.answers == Some(inv.id) => Ok(Some(self.complete_invitation(id, &card)?)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::debug!(error = %e, "not an answer to my invitation");
                Ok(None)
            }
        }
    }

    /// Opens one message for a contact: `Ok(Some)` new, `Ok(None)` duplicate or control,
    /// `Err` not for this contact.
    fn take_message(
        &mut self,
        cid: u64,
        m: &StoredMessage,
        touched: &mut BTreeSet<u64>,
        seen: &mut Vec<(u64, meow_proto::MessageId, u64)>,
        files: &mut crate::files::FileIntake,
    ) -> Result<Result<Taken, ConversationError>> {
        let nothing = || Taken {
            item: None,
            events: Vec::new(),
            sends: Vec::new(),
        };
        let Some(contact) = self.contacts.get_mut(&cid) else {
            return Ok(Err(ConversationError::UnknownMailbox));
        };
        let now = self.env.now_ms();
        let incoming = match contact
            .conversation
            .open(&m.mailbox, &m.envelope, now, &mut self.env.rng())
        {
            Ok(i) => i,
            // A version-2 message the ratchet already opened: a repeated deposit, like a known id.
            Err(ConversationError::Envelope(EnvelopeError::Ratchet(RatchetError::Replay))) => return Ok(Ok(nothing())),
            Err(e) => return Ok(Err(e)),
        };
        touched.insert(cid);
        let (name, msg) = (contact.name.clone(), incoming.message);
        if let Some(serial) = incoming.rotation_confirmed {
            tracing::info!(contact = %name, serial, "key rotation confirmed");
        }
        if let Some(status) = incoming.version_changed {
            tracing::info!(contact = %name, "conversation: {}", status.describe());
        }
        if let Some(e) = incoming.upgrade_refused {
            tracing::warn!(contact = %name, error = %e, "upgrade step refused; the conversation stays as it was");
        }
        if msg.sent_at_ms + REPLAY_WINDOW_MS < now {
            tracing::warn!(contact = %name, "message older than the replay window discarded");
            return Ok(Ok(nothing()));
        }
        if seen.iter().any(|(c, id, _)| *c == cid && *id == msg.id) || self.already_seen(cid, &msg.id)? {
            return Ok(Ok(nothing()));
        }
        // Recorded in the same batch as the inbox item, so a crash loses neither or both.
        seen.push((cid, msg.id, msg.sent_at_ms));
        // Control messages only carry rotation fields; an answer card arriving through a
        // contact's mailbox was already applied by `accept`.
        if msg.content_type == ContentType::CONTROL || msg.content_type == ContentType::CONTACT_ANSWER {
            return Ok(Ok(nothing()));
        }
        if msg.content_type == crate::direct::PRESENCE {
            self.take_presence(cid, &msg.content);
            return Ok(Ok(nothing()));
        }
        let mut item = InboxItem {
            seq: 0,
            from: name,
            contact: cid,
            message: msg.id,
            sent_at_ms: msg.sent_at_ms,
            received_ms: now,
            content_type: msg.content_type,
            content: msg.content,
            read: false,
            origin: Origin::Contact,
            automatic: msg.automatic,
            reply_to: msg.reply_to,
        };
        if item.content_type == ContentType::FILE {
            let content = std::mem::take(&mut item.content);
            let from = item.from.clone();
            return Ok(Ok(match self.take_chunk(cid, &content, files, item)? {
                Ok(done) => Taken {
                    item: done,
                    ..nothing()
                },
                Err(reason) => {
                    tracing::warn!(contact = %from, %reason, "file chunk dropped");
                    Taken {
                        events: vec![NodeEvent::Dropped { contact: from, reason }],
                        ..nothing()
                    }
                }
            }));
        }
        if item.content_type == ContentType::GROUP {
            let g = self.take_group(cid, &item.from, &item.content, &item)?;
            return Ok(Ok(Taken {
                item: g.item,
                events: g.events,
                sends: g.sends,
            }));
        }
        Ok(Ok(Taken {
            item: Some(item),
            events: Vec::new(),
            sends: Vec::new(),
        }))
    }

    fn take_broadcasts(&mut self, server: &str, broadcasts: Vec<BroadcastItem>, inbox: &mut Vec<InboxItem>) {
        let mut seen = self.broadcasts_seen(server);
        for item in broadcasts {
            if item.id <= seen {
                continue;
            }
            seen = item.id;
            let Ok(b) = item.broadcast.check() else {
                tracing::warn!(server, "broadcast with a bad signature discarded");
                continue;
            };
            inbox.push(InboxItem {
                seq: 0,
                from: if item.from_operator {
                    format!("operator of {server}")
                } else {
                    b.signer.fingerprint()
                },
                contact: 0,
                message: meow_proto::MessageId([0; 16]),
                sent_at_ms: b.sent_at * 1000,
                received_ms: self.env.now_ms(),
                content_type: ContentType::TEXT,
                content: b.text.into_bytes(),
                read: false,
                origin: Origin::Broadcast {
                    server: server.to_owned(),
                    from_operator: item.from_operator,
                    signer: b.signer,
                },
                automatic: false,
                reply_to: None,
            });
        }
        self.counters.broadcasts_seen.insert(server.to_owned(), seen);
    }

    /// Drops retired keys whose mailboxes were just found empty on every server, once the grace
    /// period after the rotation has passed.
    pub fn retire_drained(&mut self, empty: &HashSet<MailboxId>) -> Result<()> {
        let now = self.env.now_ms();
        let mut changed = Vec::new();
        for c in self.contacts.values_mut() {
            let drained: Vec<MailboxId> = c
                .conversation
                .retiring()
                .iter()
                .filter(|r| r.since_ms + RETIRE_GRACE_MS <= now && empty.contains(&r.keys.mailbox()))
                .map(|r| r.keys.mailbox())
                .collect();
            if drained
                .iter()
                .fold(false, |acc, m| c.conversation.drop_retired(m) | acc)
            {
                changed.push(c.id);
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let mut b = self.vault.batch();
        for id in &changed {
            self.put_contact(&mut b, &self.contacts[id]);
        }
        b.commit()?;
        self.rebuild_routes();
        Ok(())
    }

    /// Inbox items, oldest first; with `unread_only`, only those not shown yet.
    pub fn inbox(&self, unread_only: bool) -> Result<Vec<InboxItem>> {
        let mut items: Vec<InboxItem> = self
            .vault
            .scan(Table::Inbox)?
            .iter()
            .map(|(_, v)| InboxItem::from_bytes(v))
            .collect::<Result<_, _>>()?;
        // A compartment's cover (generated contacts) is never shown.
        items.retain(|i| (!unread_only || !i.read) && (i.contact == 0 || self.contacts.contains_key(&i.contact)));
        items.sort_by_key(|i| i.seq);
        Ok(items)
    }

    /// Marks inbox items as shown.
    pub fn mark_read(&mut self, items: &[InboxItem]) -> Result<()> {
        let mut b = self.vault.batch();
        for i in items.iter().filter(|i| !i.read) {
            let mut i = i.clone();
            i.read = true;
            b.put(Table::Inbox, &i.seq.to_be_bytes(), &i.to_bytes(), &mut self.env.rng());
        }
        b.commit()?;
        Ok(())
    }
}
