//! Which sync records each change writes, and what a record from another device does here.
//!
//! | kind           | key              | value                                                  |
//! |----------------|------------------|--------------------------------------------------------|
//! | `contact`      | peer key `[32]`  | name, servers, policy, route, flags (last writer wins) |
//! | `conversation` | peer key `[32]`  | holder `[8]` ‖ ratchet state (written by its holder)   |
//! | `inbox`        | message id `[16]`| peer `[32]` (zeros: a broadcast) ‖ inbox item          |
//! | `sent`         | draft id `[16]`  | a [`Draft`], deleted once the holder sent it            |
//! | `group`        | group id `[16]`  | the group, its owner and members named by their keys   |
//! | `setting`      | `device/<id>`    | a [`super::DeviceEntry`]                               |
//!
//! Hidden compartments are not synced: their contacts stay on the device that holds their
//! password (docs/DEVICES.md says why).

use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::envelope::ContentType;
use meow_proto::sync::batch::Batch;
use meow_proto::sync::replica::Applied;
use meow_proto::sync::{DeviceId, Kind, SyncRecord};
use meow_proto::{Conversation, MessageId, ServerRef};
use meow_store::vault::VaultBatch;

use super::DeviceState;
use crate::messaging::Queued;
use crate::records::{ContactRecord, InboxItem, PrivacyPolicy, RouteOptions};
use crate::{Node, NodeEvent, Result, Table};

/// A message written on a device that does not hold its conversation: the holder seals and
/// sends it, then marks it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// To whom (the contact's key).
    pub peer: [u8; 32],
    /// What the content is.
    pub content_type: ContentType,
    /// The content.
    pub content: Vec<u8>,
    /// Sent by a program.
    pub automatic: bool,
    /// The message it answers.
    pub reply_to: Option<MessageId>,
}

impl Encode for Draft {
    fn encode(&self, w: &mut Writer) {
        w.u8(1).raw(&self.peer).u16(self.content_type.0).bytes(&self.content);
        w.bool(self.automatic);
        w.option(self.reply_to.as_ref(), |w, id| {
            w.raw(&id.0);
        });
    }
}

impl Decode for Draft {
    const WHAT: &'static str = "draft";
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        r.version(1, "draft")?;
        Ok(Self {
            peer: r.array("draft peer")?,
            content_type: ContentType(r.u16("draft type")?),
            content: r.bytes(meow_proto::sync::MAX_VALUE, "draft content")?.to_vec(),
            automatic: r.bool("draft automatic")?,
            reply_to: r.option("draft reply", |r| Ok(MessageId(r.array("draft reply")?)))?,
        })
    }
}

/// A contact's settings as they sync (not its local id, not its ratchet).
fn contact_meta(c: &ContactRecord) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(1).string(&c.name);
    w.list(&c.servers, |w, s| s.encode(w));
    w.u8(c.policy.to_u8()).varint(c.added_ms);
    w.bool(c.via_public_card).bool(c.classical_start);
    c.route.encode(&mut w);
    w.into_bytes()
}

/// Applies synced settings to a contact (its ratchet is left alone).
fn apply_meta(c: &mut ContactRecord, b: &[u8]) -> std::result::Result<(), DecodeError> {
    let mut r = Reader::new(b);
    r.version(1, "contact settings")?;
    c.name = r.string(64 * 1024, "contact name")?.to_owned();
    c.servers = r.list(16, "contact servers", ServerRef::decode)?;
    c.policy = PrivacyPolicy::from_u8(r.u8("policy")?)?;
    c.added_ms = r.varint("added")?;
    c.via_public_card = r.bool("via public card")?;
    c.classical_start = r.bool("classical start")?;
    c.route = RouteOptions::decode(&mut r)?;
    Ok(())
}

fn split_holder(v: &[u8]) -> Option<(DeviceId, &[u8])> {
    let (holder, state) = v.split_at_checked(8)?;
    Some((DeviceId(holder.try_into().ok()?), state))
}

impl Node {
    /// Writes what changed of a contact for the other devices: its settings when they differ
    /// from the log's, its ratchet when this device holds it.
    pub(crate) fn sync_contact(&self, b: &mut VaultBatch<'_>, c: &ContactRecord) {
        if self.devices.is_none() || self.hidden_in(c.id).is_some() {
            return;
        }
        let Some(d) = self.device_state() else { return };
        let key = *c.conversation.peer.as_bytes();
        let meta = contact_meta(c);
        let meta_changed = d.replica.get(Kind::Contact, &key) != Some(meta.as_slice());
        let me = d.this.id();
        let peer = &c.conversation.peer;
        let state = d
            .may_hold(peer)
            .then(|| [&me.0[..], &c.conversation.to_bytes()].concat());
        let state_changed = state
            .as_ref()
            .is_some_and(|s| d.replica.get(Kind::Conversation, &key) != Some(s.as_slice()));
        let epoch = d.leases.get(&key).map_or_else(|| d.epoch_of(peer), |l| l.epoch);
        drop(d);
        if meta_changed {
            self.note_sync(b, Kind::Contact, &key, Some(meta));
        }
        if state_changed {
            self.note_sync_epoch(b, Kind::Conversation, &key, state, epoch);
        }
    }

    /// Writes a group for the other devices: its record with the owner and the members named
    /// by their contact keys instead of this home's ids (last writer wins).
    pub(crate) fn sync_group(&self, b: &mut VaultBatch<'_>, g: &crate::groups::GroupRecord) {
        if self.devices.is_none() {
            return;
        }
        let key_of = |id: u64| {
            self.contacts
                .get(&id)
                .map_or([0; 32], |c| *c.conversation.peer.as_bytes())
        };
        let mut w = Writer::new();
        w.u8(1).bytes(&g.to_bytes()).raw(&key_of(g.owner_contact));
        w.list(&g.members, |w, (_, id)| {
            w.raw(&key_of(*id));
        });
        self.note_sync(b, Kind::Group, &g.id, Some(w.into_bytes()));
    }

    /// Stores a group from another device, its owner and members mapped to this home's ids.
    fn store_synced_group(&mut self, b: &mut VaultBatch<'_>, v: &[u8]) -> Result<()> {
        let mut r = Reader::new(v);
        r.version(1, "synced group")?;
        let mut g = crate::groups::GroupRecord::from_bytes(r.bytes(1 << 20, "group")?)?;
        let id_of = |n: &Node, key: [u8; 32]| n.contact_by_key(&key).map_or(0, |c| c.id);
        g.owner_contact = id_of(self, r.array("group owner")?);
        let members = r.list(10_000, "group members", |r| r.array::<32>("group member"))?;
        for ((_, id), key) in g.members.iter_mut().zip(members) {
            *id = id_of(self, key);
        }
        b.put(Table::Groups, &g.id, &g.to_bytes(), &mut self.env.rng());
        Ok(())
    }

    /// Writes a plugin instance's key-value change (`key` as the runtime stores it) for the
    /// other devices; nothing with one device.
    pub fn sync_kv(&self, b: &mut VaultBatch<'_>, key: &[u8], value: Option<&[u8]>) {
        self.note_sync(b, Kind::PluginKv, key, value.map(<[u8]>::to_vec));
    }

    /// Writes a received message for the other devices.
    pub(crate) fn sync_inbox(&self, b: &mut VaultBatch<'_>, item: &InboxItem) {
        if self.devices.is_none() || self.hidden_in(item.contact).is_some() {
            return;
        }
        let peer = self
            .contacts
            .get(&item.contact)
            .map_or([0; 32], |c| *c.conversation.peer.as_bytes());
        let local = InboxItem {
            seq: 0,
            contact: 0,
            ..item.clone()
        };
        let value = [&peer[..], &local.to_bytes()].concat();
        self.note_sync(b, Kind::Inbox, &item.message.0, Some(value));
    }

    /// Messages for conversations another device holds become drafts that device sends; the
    /// rest is returned to be sealed here.
    pub(crate) fn take_drafts(&self, messages: Vec<Queued>) -> Result<Vec<Queued>> {
        if self.devices.is_none() {
            return Ok(messages);
        }
        let (mine, theirs): (Vec<_>, Vec<_>) = messages.into_iter().partition(|m| self.holds(m.contact));
        if theirs.is_empty() {
            return Ok(mine);
        }
        let vault = self.vault.clone();
        let mut b = vault.batch();
        for m in theirs {
            let Some(c) = self.contacts.get(&m.contact) else {
                continue;
            };
            let draft = Draft {
                peer: *c.conversation.peer.as_bytes(),
                content_type: m.content_type,
                content: m.content,
                automatic: m.automatic,
                reply_to: m.reply_to,
            };
            let id = MessageId::random(&mut self.env.rng());
            self.note_sync(&mut b, Kind::Sent, &id.0, Some(draft.to_bytes()));
        }
        b.commit()?;
        Ok(mine)
    }

    /// Applies a batch from another device: its records, and its acknowledgement. Returns the
    /// events of devices linked and revoked. Synced messages raise no event for this device's
    /// plugins and recipes: they were handled on the device that received them.
    pub(crate) fn apply_batch(&mut self, from: DeviceId, batch: Batch) -> Result<Vec<NodeEvent>> {
        let now = self.env.now_ms();
        let mut rng = self.env.rng();
        let vault = self.vault.clone();
        let mut b = vault.batch();
        let mut won = Vec::new();
        {
            let Some(mut d) = self.device_state() else {
                return Ok(Vec::new());
            };
            apply_records(&mut d, from, batch, now, &mut b, &mut won, &mut rng);
        }
        for r in &won {
            self.apply_effect(&mut b, r)?;
        }
        let events = self.record_device_events(&mut b);
        b.commit()?;
        if !events.is_empty() {
            self.signal_events();
        }
        // Which mailboxes to poll follows contacts, their holders and the leases (settings).
        let routes = won
            .iter()
            .any(|r| matches!(r.kind, Kind::Contact | Kind::Conversation | Kind::Setting));
        if routes {
            self.rebuild_routes();
        }
        self.send_pending_drafts()?;
        tracing::debug!(from = %from.to_hex(), changed = won.len(), "sync batch applied");
        Ok(events)
    }

    fn apply_effect(&mut self, b: &mut VaultBatch<'_>, r: &SyncRecord) -> Result<()> {
        let contact = <[u8; 32]>::try_from(r.key.as_slice()).ok();
        match (r.kind, &r.value, contact) {
            (Kind::Contact | Kind::Conversation, Some(_), Some(key)) => self.upsert_contact(b, &key),
            (Kind::Contact, None, Some(key)) => {
                self.remove_synced_contact(b, &key);
                Ok(())
            }
            (Kind::Inbox, Some(v), _) if r.key.len() == 16 => self.store_synced_inbox(b, v),
            (Kind::Group, Some(v), _) => self.store_synced_group(b, v),
            (Kind::PluginKv, Some(v), _) => {
                b.put(Table::Kv, &r.key, v, &mut self.env.rng());
                Ok(())
            }
            (Kind::PluginKv, None, _) => {
                b.delete(Table::Kv, &r.key);
                Ok(())
            }
            // Drafts and rotations owed are acted on from the log's state (`send_pending_drafts`,
            // `rotate_owed`); devices, revocations and the lease secret by `observe`.
            _ => Ok(()),
        }
    }

    /// Makes the local contact match the log: settings from its contact record, ratchet from
    /// its conversation record (unless this device holds it).
    fn upsert_contact(&mut self, b: &mut VaultBatch<'_>, key: &[u8; 32]) -> Result<()> {
        let (meta, state, me) = {
            let Some(d) = self.device_state() else { return Ok(()) };
            let meta = d.replica.get(Kind::Contact, key).map(<[u8]>::to_vec);
            let state = d.replica.get(Kind::Conversation, key).map(<[u8]>::to_vec);
            (meta, state, d.this.id())
        };
        let (Some(meta), Some(state)) = (meta, state) else {
            return Ok(()); // the other half comes later
        };
        let Some((holder, state)) = split_holder(&state) else {
            return Ok(());
        };
        let existing = self.contact_by_key(key).cloned();
        let mut contact = match existing {
            Some(c) => c,
            None => ContactRecord {
                id: self.fresh_id(),
                name: String::new(),
                conversation: Conversation::from_bytes(state)?,
                servers: Vec::new(),
                policy: PrivacyPolicy::ServerBased,
                added_ms: 0,
                dropped_unsigned: 0,
                via_public_card: false,
                classical_start: false,
                route: RouteOptions::default(),
            },
        };
        if holder != me {
            contact.conversation = Conversation::from_bytes(state)?;
        }
        apply_meta(&mut contact, &meta)?;
        contact.name = self.free_name(&contact.name, contact.id);
        b.put(
            Table::Contacts,
            &contact.id.to_be_bytes(),
            &contact.to_bytes(),
            &mut self.env.rng(),
        );
        self.contacts.insert(contact.id, contact);
        Ok(())
    }

    /// `name`, or `name-2`, `name-3`… if another contact has it here.
    fn free_name(&self, name: &str, id: u64) -> String {
        let taken = |n: &str| self.contacts.values().any(|c| c.name == n && c.id != id);
        if !taken(name) {
            return name.to_owned();
        }
        (2..)
            .map(|i| format!("{name}-{i}"))
            .find(|n| !taken(n))
            .unwrap_or_default()
    }

    fn remove_synced_contact(&mut self, b: &mut VaultBatch<'_>, key: &[u8; 32]) {
        let found = self.contact_by_key(key).map(|c| c.id);
        if let Some(id) = found {
            b.delete(Table::Contacts, &id.to_be_bytes());
            self.contacts.remove(&id);
        }
    }

    fn store_synced_inbox(&mut self, b: &mut VaultBatch<'_>, v: &[u8]) -> Result<()> {
        let Some((peer, item)) = v.split_at_checked(32) else {
            return Ok(());
        };
        let mut item = InboxItem::from_bytes(item)?;
        item.contact = self.contact_by_key(peer).map_or(0, |c| c.id);
        if let Some(c) = self.contacts.get(&item.contact) {
            item.from = c.name.clone();
        }
        item.seq = self.fresh_id();
        b.put(
            Table::Inbox,
            &item.seq.to_be_bytes(),
            &item.to_bytes(),
            &mut self.env.rng(),
        );
        self.signal_events();
        Ok(())
    }

    /// Seals and queues the drafts (of any device, this one's included) of the conversations
    /// this device holds, and deletes them from the log. Returns how many it queued.
    pub(crate) fn send_pending_drafts(&mut self) -> Result<usize> {
        let drafts: Vec<(Vec<u8>, Draft)> = match self.device_state() {
            Some(d) => d
                .replica
                .values(Kind::Sent)
                .filter_map(|(key, v)| Some((key.to_vec(), Draft::from_bytes(v).ok()?)))
                .collect(),
            None => return Ok(0),
        };
        let mut sent = 0;
        for (key, draft) in drafts {
            let contact = self.contact_by_key(&draft.peer).map(|c| c.id);
            let Some(contact) = contact.filter(|c| self.holds(*c)) else {
                continue;
            };
            let queued = Queued {
                automatic: draft.automatic,
                reply_to: draft.reply_to,
                ..Queued::new(contact, draft.content_type, draft.content)
            };
            self.queue_all(vec![queued])?;
            self.commit_sync(Kind::Sent, &key, None, 0)?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// Applies a batch's records to the replica; records kept go in `b`, winners in `won`.
fn apply_records(
    d: &mut DeviceState,
    from: DeviceId,
    batch: Batch,
    now: u64,
    b: &mut VaultBatch<'_>,
    won: &mut Vec<SyncRecord>,
    rng: &mut impl meow_proto::CryptoRng,
) {
    let progress = d.progress.entry(from).or_default();
    for (device, n) in &batch.known {
        let k = progress.known.entry(*device).or_default();
        *k = (*k).max(*n);
    }
    progress.last_seen_ms = Some(now);
    for r in batch.records {
        match d.replica.apply(r.clone(), now) {
            Applied::Won => {
                DeviceState::keep(b, &r, rng);
                d.observe(&r, true);
                won.push(r);
            }
            Applied::Lost => {
                DeviceState::keep(b, &r, rng);
                d.observe(&r, false);
            }
            Applied::Duplicate | Applied::Gap { .. } => {}
        }
    }
    d.put_progress(b, from, rng);
}
