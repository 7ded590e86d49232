//! Several devices of one user (docs/DEVICES.md, PROTOCOL.md §25): this device's keys, the
//! user's other devices, and the sync log that makes them converge.
//!
//! A home with one device has no device state and writes no sync record: nothing costs anything
//! until a second device is linked ([`link`]). From then on, every change that another device
//! must see writes a record in the same vault batch as the change itself, so a crash loses
//! neither or both; the records go to the other devices at the next sync ([`net`]).
//!
//! Each conversation has one *holder*: the device that advances its ratchet, polls its mailboxes
//! and sends in it. The others read what it receives and sends from the sync log, and what they
//! send goes through it as a draft. A contact sees one identity and cannot tell which device
//! spoke.

pub(crate) mod channel;
pub mod link;
pub mod net;
mod records;
mod revoke;

use std::collections::BTreeMap;

use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::sync::batch::{Batch, Reassembly};
use meow_proto::sync::replica::{Applied, Replica};
use meow_proto::sync::{DeviceId, Kind, SyncRecord};
use meow_proto::{
    ContactPublic, ConversationKey, ConversationPublic, DeviceKey, DevicePublic, LookupKey, LookupPublic,
};
use meow_store::vault::{Vault, VaultBatch};
use zeroize::Zeroizing;

use crate::{Node, NodeError, Result, Table};

pub use records::Draft;

/// This device's record in the vault.
const THIS_KEY: &[u8] = b"this";
/// Prefix of the keys of sync records: `r` ‖ device ‖ seq (big-endian).
const RECORD_PREFIX: u8 = b'r';
/// Prefix of what each other device acknowledged: `p` ‖ device.
const PROGRESS_PREFIX: u8 = b'p';
/// Prefix of the sync-log keys naming a device (kind setting).
pub(crate) const DEVICE_SETTING: &[u8] = b"device/";
/// The sync-log key of the public revocation key (kind setting; a device pins the one it
/// joined with, so a later record cannot replace it).
pub(crate) const REVOCATION_KEY: &[u8] = b"revocation-key";
/// The sync-log key of the lease secret (kind setting).
pub(crate) const LEASE_SECRET: &[u8] = b"lease-secret";
/// Longest device name.
pub const MAX_DEVICE_NAME: usize = 64;

/// One of the user's devices, as the sync log names it (kind setting, key `device/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Its signing key (envelopes between devices are signed with it).
    pub public: DevicePublic,
    /// Its X25519 key (envelopes to it are sealed to it).
    pub dh: ConversationPublic,
    /// Its mailbox's lookup key (the others deposit there; only it can read).
    pub mailbox: LookupPublic,
    /// The name the person gave it.
    pub name: String,
    /// When it was linked, Unix ms.
    pub added_ms: u64,
}

impl DeviceEntry {
    /// Its id.
    pub fn id(&self) -> DeviceId {
        DeviceId::of(&self.public)
    }
}

impl Encode for DeviceEntry {
    fn encode(&self, w: &mut Writer) {
        w.u8(1).raw(self.public.as_bytes()).raw(self.dh.as_bytes());
        w.raw(self.mailbox.as_bytes()).string(&self.name).varint(self.added_ms);
    }
}

impl Decode for DeviceEntry {
    const WHAT: &'static str = "device entry";
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        r.version(1, "device entry")?;
        let public = DevicePublic::decode(r)?;
        let dh = ConversationPublic::from_bytes(r.array("device dh key")?).map_err(|_| DecodeError::Invalid {
            what: "device entry",
            reason: "not an X25519 key",
        })?;
        let mailbox = LookupPublic::from_bytes(r.array("device mailbox")?).map_err(|_| DecodeError::Invalid {
            what: "device entry",
            reason: "not a lookup key",
        })?;
        Ok(Self {
            public,
            dh,
            mailbox,
            name: r.string(MAX_DEVICE_NAME, "device name")?.to_owned(),
            added_ms: r.varint("device added")?,
        })
    }
}

/// One device as `meow device list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// Its id, in hex.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it is the device this home is.
    pub this: bool,
    /// When it was linked, Unix ms.
    pub added_ms: u64,
    /// When something last came from it, Unix ms (this session; `None` if nothing yet).
    pub last_seen_ms: Option<u64>,
}

/// This device's secrets (zeroized on drop), the user's shared sync secret, and the public
/// revocation key this device trusts (pinned when it joined: the log cannot change it).
pub(crate) struct ThisDevice {
    pub(crate) key: DeviceKey,
    pub(crate) dh: ConversationKey,
    pub(crate) mailbox: LookupKey,
    pub(crate) sync_secret: Zeroizing<[u8; 32]>,
    pub(crate) revocation: [u8; 32],
}

impl ThisDevice {
    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(1).raw(self.key.seed().as_slice());
        w.raw(self.dh.secret_bytes().as_slice())
            .raw(self.mailbox.seed().as_slice());
        w.raw(self.sync_secret.as_slice()).raw(&self.revocation);
        Zeroizing::new(w.into_bytes())
    }

    fn from_bytes(b: &[u8]) -> std::result::Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        r.version(1, "this device")?;
        let key = DeviceKey::from_seed(&Zeroizing::new(r.array("device key")?));
        let dh = ConversationKey::from_secret_bytes(r.array("device dh key")?);
        let mailbox = LookupKey::from_seed(&Zeroizing::new(r.array("device mailbox")?));
        let sync_secret = Zeroizing::new(r.array("sync secret")?);
        let revocation = r.array("revocation key")?;
        r.finish("this device")?;
        Ok(Self {
            key,
            dh,
            mailbox,
            sync_secret,
            revocation,
        })
    }

    pub(crate) fn id(&self) -> DeviceId {
        DeviceId::of(&self.key.public())
    }

    pub(crate) fn mailbox(&self) -> LookupKey {
        self.mailbox.clone()
    }

    /// This device as the log names it.
    pub(crate) fn entry(&self, name: String, added_ms: u64) -> DeviceEntry {
        DeviceEntry {
            public: self.key.public(),
            dh: self.dh.public(),
            mailbox: self.mailbox.public(),
            name,
            added_ms,
        }
    }
}

/// What another device acknowledged, and what was sent to it since.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// How far it said it knows each stream.
    pub(crate) known: BTreeMap<DeviceId, u64>,
    /// How far we sent it each stream (this session): not sent again before it is due.
    pub(crate) sent: BTreeMap<DeviceId, u64>,
    /// When `sent` was last raised, ms (a resend is due a while after).
    pub(crate) sent_ms: u64,
    /// Our own `known` when we last told it, to send a bare acknowledgement only when it grew.
    pub(crate) told: BTreeMap<DeviceId, u64>,
    /// When something last came from it, ms.
    pub(crate) last_seen_ms: Option<u64>,
}

fn encode_known(known: &BTreeMap<DeviceId, u64>) -> Vec<u8> {
    let mut w = Writer::new();
    meow_proto::sync::batch::write_known(&mut w, known);
    w.into_bytes()
}

fn decode_known(b: &[u8]) -> std::result::Result<BTreeMap<DeviceId, u64>, DecodeError> {
    meow_proto::sync::batch::read_known(&mut Reader::new(b))
}

/// A conversation lease this device holds on the user's server (PROTOCOL.md §25).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseHeld {
    pub(crate) epoch: u64,
    /// When the server last granted it, ms (this device's clock).
    pub(crate) renewed_ms: u64,
}

/// The holder named by the last state of a released conversation: no device.
pub(crate) const NO_HOLDER: DeviceId = DeviceId([0; 8]);

/// A holder renews its leases this often (at its syncs).
pub(crate) const RENEW_MS: u64 = 60_000;
/// A holder stops sealing when its lease was last granted this long ago: well inside the
/// server's break time, so that two devices never seal in one conversation.
pub(crate) const FENCE_MS: u64 = meow_proto::lease::LEASE_BREAK_SECS * 1000 / 2;

/// The device state of a home with several devices.
pub(crate) struct DeviceState {
    pub(crate) this: ThisDevice,
    pub(crate) replica: Replica,
    pub(crate) progress: BTreeMap<DeviceId, Progress>,
    pub(crate) parts: Reassembly,
    /// The leases this device holds, by the contact's key (memory only: renewed after a
    /// restart before anything is sealed).
    pub(crate) leases: BTreeMap<[u8; 32], LeaseHeld>,
    /// Every device the log ever named, under its latest name: a deletion in the log does not
    /// remove a device, only a revocation does.
    pub(crate) seen: BTreeMap<DeviceId, DeviceEntry>,
    /// The devices revoked by a revocation that checks (both signatures, the pinned key).
    pub(crate) revoked: BTreeMap<DeviceId, DeviceEntry>,
    /// The user, whose key signs rosters and revocations.
    pub(crate) user: meow_proto::UserPublic,
    /// Devices linked and revoked since the caller last took them ([`Node::record_device_events`]).
    pub(crate) news: Vec<crate::NodeEvent>,
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceState({})", self.this.id().to_hex())
    }
}

fn record_key(r: &SyncRecord) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(RECORD_PREFIX);
    k.extend_from_slice(&r.device.0);
    k.extend_from_slice(&r.seq.to_be_bytes());
    k
}

fn progress_key(d: DeviceId) -> Vec<u8> {
    let mut k = vec![PROGRESS_PREFIX];
    k.extend_from_slice(&d.0);
    k
}

pub(crate) fn device_setting(id: DeviceId) -> Vec<u8> {
    [DEVICE_SETTING, id.to_hex().as_bytes()].concat()
}

impl DeviceState {
    /// Loads the device state of a home, if it has one.
    pub(crate) fn load(vault: &Vault, user: meow_proto::UserPublic, now_ms: u64) -> Result<Option<Self>> {
        let Some(this) = vault.get(Table::Devices, THIS_KEY)? else {
            return Ok(None);
        };
        let this = ThisDevice::from_bytes(&this)?;
        let mut records = Vec::new();
        let mut progress = BTreeMap::new();
        for (k, v) in vault.scan(Table::Devices)? {
            match k.first() {
                Some(&RECORD_PREFIX) => records.push(SyncRecord::from_bytes(&v)?),
                Some(&PROGRESS_PREFIX) if k.len() == 9 => {
                    let id = DeviceId(
                        k[1..]
                            .try_into()
                            .map_err(|_| NodeError::DamagedRecord("device progress"))?,
                    );
                    let known = decode_known(&v)?;
                    progress.insert(
                        id,
                        Progress {
                            known,
                            ..Progress::default()
                        },
                    );
                }
                _ => {}
            }
        }
        records.sort_by_key(|r| (r.device, r.seq));
        let mut state = Self {
            progress,
            ..Self::create(this, user)
        };
        for r in records {
            match state.replica.apply(r.clone(), now_ms) {
                Applied::Gap { expected } => {
                    tracing::warn!(expected, "the sync log has a gap in the vault; later records wait");
                }
                applied => state.observe(&r, applied == Applied::Won),
            }
        }
        state.news.clear(); // told when they happened
        Ok(Some(state))
    }

    /// A new state for a device that starts a multi-device home, or joins one.
    pub(crate) fn create(this: ThisDevice, user: meow_proto::UserPublic) -> Self {
        Self {
            replica: Replica::new(this.id()),
            this,
            progress: BTreeMap::new(),
            parts: Reassembly::default(),
            leases: BTreeMap::new(),
            seen: BTreeMap::new(),
            revoked: BTreeMap::new(),
            user,
            news: Vec::new(),
        }
    }

    /// Notes what an applied record says about the user's devices.
    pub(crate) fn observe(&mut self, r: &SyncRecord, won: bool) {
        let (Kind::Setting, Some(v)) = (r.kind, &r.value) else {
            return;
        };
        if r.key.starts_with(DEVICE_SETTING) {
            if let Ok(e) = DeviceEntry::from_bytes(v)
                && (won || !self.seen.contains_key(&e.id()))
            {
                if !self.seen.contains_key(&e.id()) {
                    self.news
                        .push(crate::NodeEvent::DeviceLinked { device: e.name.clone() });
                }
                self.seen.insert(e.id(), e);
            }
        } else if r.key == LEASE_SECRET && won {
            // Leases under the old secret name nothing any more: take them again.
            self.leases.clear();
        } else if r.key.starts_with(revoke::REVOKED_SETTING) {
            match revoke::check(v, &self.user, &self.this.revocation) {
                Ok(e) => {
                    if !self.revoked.contains_key(&e.id()) {
                        self.news
                            .push(crate::NodeEvent::DeviceRevoked { device: e.name.clone() });
                    }
                    self.revoked.insert(e.id(), e);
                }
                Err(e) => tracing::warn!(error = %e, "a revocation in the sync log does not check; ignored"),
            }
        }
    }

    /// Stores this device's secrets in a batch.
    pub(crate) fn put_this(&self, b: &mut VaultBatch<'_>, rng: &mut impl meow_proto::CryptoRng) {
        b.put(Table::Devices, THIS_KEY, &self.this.to_bytes(), rng);
    }

    /// Writes a record of this device and stores it in the batch; returns it.
    pub(crate) fn write(
        &mut self,
        b: &mut VaultBatch<'_>,
        (kind, key, value, epoch): (Kind, &[u8], Option<Vec<u8>>, u64),
        now_ms: u64,
        rng: &mut impl meow_proto::CryptoRng,
    ) -> SyncRecord {
        let record = self.replica.write(kind, key, value, epoch, now_ms);
        Self::keep(b, &record, rng);
        self.observe(&record, true);
        record
    }

    /// Stores a record applied from another device.
    pub(crate) fn keep(b: &mut VaultBatch<'_>, record: &SyncRecord, rng: &mut impl meow_proto::CryptoRng) {
        b.put(Table::Devices, &record_key(record), &record.to_bytes(), rng);
    }

    /// Stores what `device` acknowledged.
    pub(crate) fn put_progress(&self, b: &mut VaultBatch<'_>, device: DeviceId, rng: &mut impl meow_proto::CryptoRng) {
        if let Some(p) = self.progress.get(&device) {
            b.put(Table::Devices, &progress_key(device), &encode_known(&p.known), rng);
        }
    }

    /// Every device of the user (this one included), from the sync log.
    pub(crate) fn entries(&self) -> Vec<DeviceEntry> {
        self.seen
            .values()
            .filter(|e| !self.revoked.contains_key(&e.id()))
            .cloned()
            .collect()
    }

    /// The user's other devices.
    pub(crate) fn peers(&self) -> Vec<DeviceEntry> {
        let me = self.this.id();
        self.entries().into_iter().filter(|e| e.id() != me).collect()
    }

    /// Which device holds the conversation with `peer` (the writer of its latest state).
    pub(crate) fn holder_of(&self, peer: &ContactPublic) -> Option<DeviceId> {
        let v = self.replica.get(Kind::Conversation, peer.as_bytes())?;
        Some(DeviceId(v.get(..8)?.try_into().ok()?))
    }

    /// The secret the conversations' lease keys derive from: the latest one in the log (a
    /// revocation writes a new one), else the one this device got when it joined.
    pub(crate) fn lease_secret(&self) -> Zeroizing<[u8; 32]> {
        let secret = self
            .replica
            .get(Kind::Setting, LEASE_SECRET)
            .and_then(|v| v.try_into().ok())
            .unwrap_or(*self.this.sync_secret);
        Zeroizing::new(secret)
    }

    /// The lookup key naming the lease of the conversation with `peer`, under the current
    /// lease secret.
    pub(crate) fn lease_key(&self, peer: &ContactPublic) -> LookupKey {
        channel::lease_key(&self.lease_secret(), peer)
    }

    /// The lease epoch of the latest state of the conversation with `peer`.
    pub(crate) fn epoch_of(&self, peer: &ContactPublic) -> u64 {
        self.replica
            .order(Kind::Conversation, peer.as_bytes())
            .map_or(0, |(epoch, _)| epoch)
    }

    /// Whether this device is the conversation's holder, or may become it on its own: no device
    /// wrote its state yet (a new contact), or its holder was revoked. A released conversation
    /// is taken only by `take`.
    pub(crate) fn may_hold(&self, peer: &ContactPublic) -> bool {
        self.holder_of(peer)
            .is_none_or(|h| h == self.this.id() || self.revoked.contains_key(&h))
    }

    /// Whether this device may seal and open in the conversation with `peer` at `now`: it is
    /// the holder and its lease was granted recently enough.
    pub(crate) fn holds(&self, peer: &ContactPublic, now: u64) -> bool {
        self.may_hold(peer)
            && self
                .leases
                .get(peer.as_bytes())
                .is_some_and(|l| now.saturating_sub(l.renewed_ms) < FENCE_MS)
    }
}

impl Node {
    /// Whether this home has several devices.
    pub fn has_devices(&self) -> bool {
        self.devices.is_some()
    }

    /// The device state, locked (`None` with one device). The lock is held only within a call.
    pub(crate) fn device_state(&self) -> Option<std::sync::MutexGuard<'_, DeviceState>> {
        let m = self.devices.as_ref()?;
        Some(m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The user's devices, this one first.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        let Some(d) = self.device_state() else {
            return Vec::new();
        };
        let me = d.this.id();
        let mut out: Vec<DeviceInfo> = d
            .entries()
            .into_iter()
            .map(|e| DeviceInfo {
                id: e.id().to_hex(),
                this: e.id() == me,
                last_seen_ms: d.progress.get(&e.id()).and_then(|p| p.last_seen_ms),
                name: e.name,
                added_ms: e.added_ms,
            })
            .collect();
        out.sort_by_key(|i| (!i.this, i.added_ms));
        out
    }

    /// Renames one of the user's devices (by name or id prefix) on every device.
    pub fn rename_device(&self, which: &str, name: &str) -> Result<()> {
        check_device_name(name)?;
        let entry = self.find_device(which)?;
        if entry.name != name && self.devices().iter().any(|d| d.name == name) {
            return Err(NodeError::Device(format!("a device is already called {name}")));
        }
        let renamed = DeviceEntry {
            name: name.to_owned(),
            ..entry
        };
        let mut b = self.vault.batch();
        self.note_sync(
            &mut b,
            Kind::Setting,
            &device_setting(renamed.id()),
            Some(renamed.to_bytes()),
        );
        b.commit()?;
        Ok(())
    }

    /// The name of device `id`, or its id when the log does not name it.
    pub(crate) fn device_name(&self, id: DeviceId) -> String {
        self.device_state()
            .and_then(|d| d.seen.get(&id).map(|e| e.name.clone()))
            .unwrap_or_else(|| format!("device {}", id.to_hex()))
    }

    /// The device named `which` (its name, or the start of its id).
    pub(crate) fn find_device(&self, which: &str) -> Result<DeviceEntry> {
        let d = self.device_state().ok_or_else(|| {
            NodeError::Device("this home has one device: link another with `meow device link`".into())
        })?;
        let found: Vec<DeviceEntry> = d
            .entries()
            .into_iter()
            .filter(|e| e.name == which || (which.len() >= 4 && e.id().to_hex().starts_with(which)))
            .collect();
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (Some(one), None) => Ok(one),
            (None, _) => Err(NodeError::Device(format!("no device is called {which}"))),
            _ => Err(NodeError::Device(format!(
                "{which} names several devices: give more of the id"
            ))),
        }
    }

    /// Records the devices linked and revoked since last asked as events for plugins and
    /// recipes (in `b`), and returns them.
    pub(crate) fn record_device_events(&mut self, b: &mut VaultBatch<'_>) -> Vec<crate::NodeEvent> {
        let news = match self.device_state() {
            Some(mut d) => std::mem::take(&mut d.news),
            None => return Vec::new(),
        };
        let records = news
            .iter()
            .filter_map(|e| match e {
                crate::NodeEvent::DeviceLinked { device } => {
                    Some(crate::EventRecord::DeviceLinked { device: device.clone() })
                }
                crate::NodeEvent::DeviceRevoked { device } => {
                    Some(crate::EventRecord::DeviceRevoked { device: device.clone() })
                }
                _ => None,
            })
            .collect();
        self.record_events(b, records);
        news
    }

    /// [`Node::record_device_events`] in a write of its own, for changes made on this device.
    pub(crate) fn tell_device_news(&mut self) -> Result<()> {
        let vault = self.vault.clone();
        let mut b = vault.batch();
        let told = self.record_device_events(&mut b);
        b.commit()?;
        if !told.is_empty() {
            self.signal_events();
        }
        Ok(())
    }

    /// The contact whose key is `peer`.
    pub(crate) fn contact_by_key(&self, peer: &[u8]) -> Option<&crate::ContactRecord> {
        self.contacts.values().find(|c| c.conversation.peer.as_bytes() == peer)
    }

    /// Writes one sync record on its own, durably (nothing with one device).
    pub(crate) fn commit_sync(&self, kind: Kind, key: &[u8], value: Option<Vec<u8>>, epoch: u64) -> Result<()> {
        let vault = self.vault.clone();
        let mut b = vault.batch();
        self.note_sync_epoch(&mut b, kind, key, value, epoch);
        b.commit()?;
        Ok(())
    }

    /// Writes a sync record in `b` when the home has several devices (nothing otherwise);
    /// returns it.
    pub(crate) fn note_sync(
        &self,
        b: &mut VaultBatch<'_>,
        kind: Kind,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Option<SyncRecord> {
        self.note_sync_epoch(b, kind, key, value, 0)
    }

    pub(crate) fn note_sync_epoch(
        &self,
        b: &mut VaultBatch<'_>,
        kind: Kind,
        key: &[u8],
        value: Option<Vec<u8>>,
        epoch: u64,
    ) -> Option<SyncRecord> {
        let now = self.env.now_ms();
        let mut rng = self.env.rng();
        let mut d = self.device_state()?;
        Some(d.write(b, (kind, key, value, epoch), now, &mut rng))
    }

    /// Takes in an envelope from this device's mailbox: a part of a batch from another device.
    /// Returns `None` if it is not one (left for the caller to report), else the events of the
    /// devices linked and revoked.
    pub(crate) fn take_device_part(&mut self, envelope: &[u8]) -> Result<Option<Vec<crate::NodeEvent>>> {
        let whole = {
            let Some(mut d) = self.device_state() else {
                return Ok(None);
            };
            let senders: Vec<DevicePublic> = d.peers().iter().map(|p| p.public).collect();
            let Some((sender, part)) = channel::open(envelope, &d.this.dh, &senders) else {
                return Ok(None);
            };
            match d.parts.add(&part) {
                Ok(Some(whole)) => Some((DeviceId::of(&sender), whole)),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "a sync part from another device is malformed; dropped");
                    None
                }
            }
        };
        let Some((from, whole)) = whole else {
            return Ok(Some(Vec::new()));
        };
        match Batch::from_bytes(&whole) {
            Ok(batch) if self.revoked_by(&batch) => Err(self.wipe_revoked()),
            Ok(batch) => self.apply_batch(from, batch).map(Some),
            Err(e) => {
                tracing::warn!(error = %e, "a sync batch from another device is malformed; dropped");
                Ok(Some(Vec::new()))
            }
        }
    }

    fn revoked_by(&self, batch: &Batch) -> bool {
        let Some(d) = self.device_state() else { return false };
        revoke::revokes_me(&batch.records, d.this.id(), &d.user, &d.this.revocation)
    }

    /// Whether this device holds the conversation with contact `id` (always, with one device).
    pub(crate) fn holds(&self, id: u64) -> bool {
        let (Some(d), Some(c)) = (self.device_state(), self.contacts.get(&id)) else {
            return true;
        };
        d.holds(&c.conversation.peer, self.env.now_ms())
    }
}

/// Checks a device name: 1 to 64 characters, no control character.
pub fn check_device_name(name: &str) -> Result<()> {
    let ok = !name.trim().is_empty() && name.len() <= MAX_DEVICE_NAME && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(NodeError::Device(format!(
            "a device name has 1 to {MAX_DEVICE_NAME} bytes and no control character"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meow_proto::testing::TestRng;

    /// Every decoder of this module's records, on whatever bytes: an error or a value, never a
    /// panic (they read what other devices send, after the envelope checked who sent it).
    fn decode_all(bytes: &[u8]) {
        let _ = DeviceEntry::from_bytes(bytes);
        let _ = ThisDevice::from_bytes(bytes);
        let _ = Draft::from_bytes(bytes);
        let _ = link::Welcome::from_bytes(bytes);
        let _ = decode_known(bytes);
        let _ = revoke::check(bytes, &meow_proto::UserKey::from_seed(&[1; 32]).public(), &[2; 32]);
    }

    #[test]
    fn record_decoders_take_any_bytes() {
        let mut rng = TestRng::new(11);
        let entry = DeviceEntry {
            public: DeviceKey::generate(&mut rng).public(),
            dh: ConversationKey::generate(&mut rng).public(),
            mailbox: LookupKey::generate(&mut rng).public(),
            name: "laptop".into(),
            added_ms: 5,
        };
        assert_eq!(DeviceEntry::from_bytes(&entry.to_bytes()), Ok(entry.clone()));
        let draft = Draft {
            peer: [3; 32],
            content_type: meow_proto::ContentType::TEXT,
            content: b"hello".to_vec(),
            automatic: false,
            reply_to: Some(meow_proto::MessageId([4; 16])),
        };
        assert_eq!(Draft::from_bytes(&draft.to_bytes()), Ok(draft.clone()));
        let known = encode_known(&BTreeMap::from([(DeviceId([1; 8]), 3)]));
        for valid in [entry.to_bytes(), draft.to_bytes(), known] {
            for cut in 0..valid.len() {
                decode_all(&valid[..cut]);
            }
            for _ in 0..2000 {
                let mut v = valid.clone();
                let i = meow_proto::crypto::random_below(v.len(), &mut rng);
                v[i] ^= 1 << meow_proto::crypto::random_below(8, &mut rng);
                decode_all(&v);
            }
        }
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| meow_proto::crypto::random_below(256, &mut rng) as u8)
                .collect();
            decode_all(&junk);
        }
    }
}
