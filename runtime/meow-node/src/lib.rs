//! The headless MEOW node: one identity's encrypted home, its contacts and conversations, the
//! outbox and inbox, and the conversations with servers. The `meow` CLI and the plugin runtime
//! are thin layers over it.
//!
//! State changes are synchronous methods on [`Node`] (fast, durable before they return); network
//! work is in [`sync`], which holds the node only between network calls so a daemon can share it.

#![forbid(unsafe_code)]

pub mod compartments;
mod contacts;
pub mod decoy;
pub mod devices;
pub mod direct;
pub mod doctor;
mod env;
mod error;
mod events;
pub mod files;
pub mod groups;
pub mod matriochka;
mod messaging;
pub use meow_net::pool;
pub mod records;
pub mod sync;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub use contacts::{Accepted, PendingInvitation};
pub use env::Env;
pub use error::{NodeError, Result};
pub use events::NodeEvent;
use meow_proto::codec::{Decode, Encode};
use meow_proto::crypto::KdfParams;
use meow_proto::{BroadcastKey, LookupKey, MailboxId, ServerCard, UserKey};
use meow_store::vault::{self, Vault};
pub use meow_store::vault::{Table, VaultBatch};
pub use messaging::{AUTOMATIC, Queued, RETIRE_GRACE_MS, Received};
pub use records::{ContactRecord, EventRecord, InboxItem, Origin, OutboxItem, PrivacyPolicy, RouteOptions};
use records::{Counters, InvitationRecord, Profile, ServerRecord};

use crate::pool::Pool;

const PROFILE_KEY: &[u8] = b"profile";
const COUNTERS_KEY: &[u8] = b"counters";
/// How long message ids are remembered for duplicate detection (and older messages refused):
/// the longest a server keeps a message, plus clock skew.
pub const REPLAY_WINDOW_MS: u64 = 15 * 86_400 * 1000;
/// How long a card stays valid by default.
pub const DEFAULT_CARD_TTL_SECS: u64 = 7 * 86_400;
/// Messages the outbox holds at most unless told otherwise ([`Node::set_outbox_limit`]).
pub const DEFAULT_OUTBOX_LIMIT: usize = 10_000;
/// Events kept for bots at most: past this, the oldest are dropped (with a warning), so that a
/// home read for months by `meow inbox` alone does not grow without bound.
pub const MAX_PENDING_EVENTS: usize = 10_000;

/// Where a mailbox's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Contact(u64),
    Invitation([u8; 32]),
    /// This device's mailbox for what the user's other devices send it.
    Device,
}

/// Options for a new home.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Password hashing parameters.
    pub kdf: KdfParams,
    /// The nickname suggested on my cards.
    pub display_name: Option<String>,
    /// Make decoy compartments (docs/HIDDEN.md): on by default; a sensor with little storage
    /// and nothing to hide may go without (a few hundred KiB).
    pub decoys: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::DEFAULT,
            display_name: None,
            decoys: true,
        }
    }
}

/// An open home.
pub struct Node {
    vault: Arc<Vault>,
    profile: Profile,
    counters: Counters,
    servers: Vec<ServerRecord>,
    contacts: BTreeMap<u64, ContactRecord>,
    invitations: BTreeMap<[u8; 32], InvitationRecord>,
    routes: HashMap<MailboxId, Vec<Route>>,
    pool: Arc<Pool>,
    /// Outbox sequence numbers and who queued each (for quotas).
    outbox: BTreeMap<u64, Option<String>>,
    outbox_limit: usize,
    /// The largest file sent or taken in.
    file_limit: u64,
    /// Whether upgrade offers to version 2 carry an X-Wing key (the post-quantum start).
    post_quantum: bool,
    /// Sequence numbers of the stored events, oldest first.
    events: std::collections::BTreeSet<u64>,
    event_signal: Option<smol::channel::Sender<()>>,
    /// Gets a value when the set of mailboxes to poll changes (a long poll should start over).
    plan_signal: Option<smol::channel::Sender<()>>,
    /// A digest of the mailboxes polled, to see when they change.
    planned: u64,
    /// Where contacts said they can be reached directly (memory only).
    presence: direct::PresenceMap,
    /// The largest contact or inbox id in use ([`Node::fresh_id`]).
    last_id: u64,
    /// The catalog, server trust and default policy.
    matriochka: matriochka::State,
    /// This device and the user's others, once a second device is linked.
    devices: Option<std::sync::Mutex<devices::DeviceState>>,
    env: Env,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.vault.dir().display())
    }
}

/// Now, Unix ms, on the system clock (a home reads its own [`Env`]).
pub fn now_ms() -> u64 {
    meow_net::now_ms()
}

/// The sequence number in a record key (8 bytes, big-endian).
fn key_seq(k: &[u8]) -> Result<u64> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| NodeError::DamagedRecord("a record key is not a sequence number"))
}

/// Checks a contact, group or plugin name.
pub fn check_name(name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(NodeError::BadName(name.to_owned()))
    }
}

impl Node {
    /// Creates a new home in `dir`.
    pub fn init(dir: &Path, password: &[u8], opts: InitOptions) -> Result<Node> {
        Self::init_with(dir, password, opts, Env::system())
    }

    /// [`Node::init`] with a given clock and generator.
    pub fn init_with(dir: &Path, password: &[u8], opts: InitOptions, env: Env) -> Result<Node> {
        if let Some(n) = &opts.display_name {
            check_name(n)?;
        }
        let mut rng = env.rng();
        let profile = Profile {
            user_key: UserKey::generate(&mut rng),
            broadcast_key: BroadcastKey::generate(&mut rng),
            display_name: opts.display_name.clone(),
            card_ttl_secs: DEFAULT_CARD_TTL_SECS,
            created_ms: env.now_ms(),
        };
        Self::create(dir, password, opts, env, profile, &[])
    }

    /// A new home for a device joining a user's others: their profile and servers (encoded
    /// server records), from the welcome ([`devices::link`]).
    pub(crate) fn init_joined(
        dir: &Path,
        password: &[u8],
        opts: InitOptions,
        env: Env,
        profile: Profile,
        servers: &[Vec<u8>],
    ) -> Result<Node> {
        let servers = servers
            .iter()
            .map(|s| ServerRecord::from_bytes(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Self::create(dir, password, opts, env, profile, &servers)
    }

    fn create(
        dir: &Path,
        password: &[u8],
        opts: InitOptions,
        env: Env,
        profile: Profile,
        servers: &[ServerRecord],
    ) -> Result<Node> {
        let mut rng = env.rng();
        let decoys = opts.decoys;
        let vault = Vault::create(dir, password, opts.kdf, &mut rng)?;
        let counters = Counters {
            next_inbox: 1,
            next_outbox: 1,
            next_contact: 1,
            ..Counters::default()
        };
        let mut b = vault.batch();
        b.put(Table::Profile, PROFILE_KEY, &profile.to_bytes(), &mut rng);
        b.put(Table::State, COUNTERS_KEY, &counters.to_bytes(), &mut rng);
        for s in servers {
            b.put(
                Table::Servers,
                s.card.address.to_string().as_bytes(),
                &s.to_bytes(),
                &mut rng,
            );
        }
        b.commit()?;
        let mut node = Self::load(vault, env)?;
        if decoys {
            node.make_decoys()?;
            node.vault.scrub()?;
        } else {
            let mut b = node.vault.batch();
            b.put(Table::State, compartments::NO_DECOYS_KEY, &[], &mut node.env.rng());
            b.commit()?;
        }
        Ok(node)
    }

    /// Opens the home in `dir`.
    pub fn open(dir: &Path, password: &[u8]) -> Result<Node> {
        Self::open_with(dir, password, Env::system())
    }

    /// [`Node::open`] with a given clock and generator.
    pub fn open_with(dir: &Path, password: &[u8], env: Env) -> Result<Node> {
        Self::load(Vault::open(dir, password)?, env)
    }

    /// The home's clock and generator.
    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Whether `dir` holds a home.
    pub fn exists(dir: &Path) -> bool {
        vault::exists(dir)
    }

    fn load(vault: Vault, env: Env) -> Result<Node> {
        let profile = match vault.get(Table::Profile, PROFILE_KEY)? {
            Some(b) => Profile::from_bytes(&b)?,
            None => return Err(NodeError::DamagedRecord("the home has no profile record")),
        };
        let counters = match vault.get(Table::State, COUNTERS_KEY)? {
            Some(b) => Counters::from_bytes(&b)?,
            None => Counters::default(),
        };
        let mut servers: Vec<ServerRecord> = vault
            .scan(Table::Servers)?
            .iter()
            .map(|(_, v)| ServerRecord::from_bytes(v))
            .collect::<Result<_, _>>()?;
        servers.sort_by_key(|s| s.added_ms);
        let contacts = vault
            .scan(Table::Contacts)?
            .iter()
            .map(|(_, v)| ContactRecord::from_bytes(v).map(|c| (c.id, c)))
            .collect::<Result<_, _>>()?;
        let invitations = vault
            .scan(Table::Invitations)?
            .iter()
            .map(|(_, v)| InvitationRecord::from_bytes(v).map(|i| (i.id.0, i)))
            .collect::<Result<_, _>>()?;
        let outbox = vault
            .scan(Table::Outbox)?
            .iter()
            .map(|(_, v)| OutboxItem::from_bytes(v).map(|i| (i.seq, i.by)))
            .collect::<Result<_, _>>()?;
        let events = vault
            .scan(Table::Events)?
            .iter()
            .map(|(k, _)| key_seq(k))
            .collect::<Result<_, _>>()?;
        let matriochka = matriochka::State::load(&vault, env.now_ms())?;
        let devices =
            devices::DeviceState::load(&vault, profile.user_key.public(), env.now_ms())?.map(std::sync::Mutex::new);
        let mut node = Node {
            vault: Arc::new(vault),
            profile,
            counters,
            servers,
            contacts,
            invitations,
            routes: HashMap::new(),
            pool: Arc::new(Pool::new(env.client_options())),
            outbox,
            outbox_limit: DEFAULT_OUTBOX_LIMIT,
            file_limit: files::DEFAULT_MAX_FILE,
            post_quantum: true,
            presence: Default::default(),
            events,
            event_signal: None,
            plan_signal: None,
            planned: 0,
            last_id: 0,
            matriochka,
            devices,
            env,
        };
        node.note_ids(None)?;
        node.rebuild_routes();
        node.prune_seen()?;
        Ok(node)
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        self.vault.dir()
    }

    /// The vault, for layers that keep their own records (plugin key-value stores, recipes).
    pub fn vault(&self) -> Arc<Vault> {
        self.vault.clone()
    }

    /// The connection pool.
    pub fn pool(&self) -> Arc<Pool> {
        self.pool.clone()
    }

    /// The user's public identity key.
    pub fn user_public(&self) -> meow_proto::UserPublic {
        self.profile.user_key.public()
    }

    /// My servers' records, first added first.
    pub(crate) fn servers_records(&self) -> &[ServerRecord] {
        &self.servers
    }

    /// The key my broadcasts are signed with (give it to a server operator as `--operator`).
    pub fn broadcast_key(&self) -> &BroadcastKey {
        &self.profile.broadcast_key
    }

    /// The nickname on my cards.
    pub fn display_name(&self) -> Option<&str> {
        self.profile.display_name.as_deref()
    }

    /// Every lookup key whose mailbox may hold mail for this device, with what it is for:
    /// invitations waiting for an answer, the conversations this device holds (all of them with
    /// one device), and this device's own mailbox for the user's other devices.
    fn polled_keys(&self) -> Vec<(LookupKey, Route)> {
        let mut keys: Vec<(LookupKey, Route)> = self
            .invitations
            .values()
            .map(|i| (i.keys.keys.lookup.clone(), Route::Invitation(i.id.0)))
            .collect();
        for c in self.contacts.values().filter(|c| self.holds(c.id)) {
            keys.extend(c.conversation.lookup_keys().map(|k| (k.clone(), Route::Contact(c.id))));
        }
        if let Some(d) = self.device_state() {
            keys.push((d.this.mailbox(), Route::Device));
        }
        keys
    }

    fn rebuild_routes(&mut self) {
        let mut routes: HashMap<MailboxId, Vec<Route>> = HashMap::new();
        for (k, route) in self.polled_keys() {
            routes.entry(MailboxId::of(&k.public())).or_default().push(route);
        }
        self.routes = routes;
        self.note_plan();
    }

    /// Signals a change of the mailboxes to poll, if they changed.
    pub(crate) fn note_plan(&mut self) {
        use std::hash::{Hash, Hasher};
        let mut ids: Vec<&MailboxId> = self.routes.keys().collect();
        ids.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ids.hash(&mut h);
        let digest = h.finish();
        if digest != self.planned {
            self.planned = digest;
            if let Some(s) = &self.plan_signal {
                let _ = s.try_send(());
            }
        }
    }

    /// Gets a value on `signal` whenever the mailboxes to poll change (a new invitation, a
    /// contact, a rotation): a long poll that waits on the old set should start again.
    pub fn set_plan_signal(&mut self, signal: smol::channel::Sender<()>) {
        self.plan_signal = Some(signal);
    }

    fn put_counters(&self, b: &mut VaultBatch<'_>) {
        b.put(
            Table::State,
            COUNTERS_KEY,
            &self.counters.to_bytes(),
            &mut self.env.rng(),
        );
    }

    fn put_contact(&self, b: &mut VaultBatch<'_>, c: &ContactRecord) {
        b.put(Table::Contacts, &c.id.to_be_bytes(), &c.to_bytes(), &mut self.env.rng());
        self.sync_contact(b, c);
    }

    // ------------------------------------------------------------------ servers

    /// Adds a server (its card text).
    pub fn add_server(&mut self, text: &str) -> Result<ServerCard> {
        let card = ServerCard::from_text(text)?;
        if self.servers.iter().any(|s| s.card.address == card.address) {
            return Err(NodeError::ServerExists(card.address.to_string()));
        }
        let rec = ServerRecord {
            card: card.clone(),
            added_ms: self.env.now_ms(),
            via: String::new(),
        };
        let mut b = self.vault.batch();
        b.put(
            Table::Servers,
            card.address.to_string().as_bytes(),
            &rec.to_bytes(),
            &mut self.env.rng(),
        );
        b.commit()?;
        self.servers.push(rec);
        Ok(card)
    }

    /// Adds a server, or updates the address of a known one with the same key.
    pub fn ensure_server(&mut self, card: &ServerCard) -> Result<bool> {
        if self.servers.iter().any(|s| s.card == *card) {
            return Ok(false);
        }
        let mut b = self.vault.batch();
        let old = self.servers.iter().find(|s| s.card.key == card.key);
        if let Some(old) = old {
            b.delete(Table::Servers, old.card.address.to_string().as_bytes());
        }
        let rec = ServerRecord {
            card: card.clone(),
            added_ms: self.env.now_ms(),
            via: old.map(|o| o.via.clone()).unwrap_or_default(),
        };
        b.put(
            Table::Servers,
            card.address.to_string().as_bytes(),
            &rec.to_bytes(),
            &mut self.env.rng(),
        );
        b.commit()?;
        match self.servers.iter_mut().find(|s| s.card.key == card.key) {
            Some(s) => s.card = card.clone(),
            None => self.servers.push(rec),
        }
        Ok(true)
    }

    /// Removes a server by address or name.
    pub fn remove_server(&mut self, which: &str) -> Result<ServerCard> {
        let i = self
            .servers
            .iter()
            .position(|s| s.card.address.to_string() == which || s.card.name == which)
            .ok_or_else(|| NodeError::UnknownServer(which.to_owned()))?;
        let mut b = self.vault.batch();
        b.delete(Table::Servers, self.servers[i].card.address.to_string().as_bytes());
        b.commit()?;
        Ok(self.servers.remove(i).card)
    }

    /// My servers, most preferred first.
    pub fn servers(&self) -> Vec<ServerCard> {
        self.servers.iter().map(|s| s.card.clone()).collect()
    }

    /// Sets (or clears, with `None`) the link through which this home reaches the server at
    /// `address` for link sessions; `meow sensor` then uses it without `--link`.
    pub fn set_server_via(
        &mut self,
        address: &meow_proto::Address,
        via: Option<&meow_net::port::LinkAddress>,
    ) -> Result<()> {
        let rec = self
            .servers
            .iter_mut()
            .find(|s| s.card.address == *address)
            .ok_or_else(|| NodeError::UnknownServer(address.to_string()))?;
        let mut updated = rec.clone();
        updated.via = via.map(ToString::to_string).unwrap_or_default();
        let mut b = self.vault.batch();
        b.put(
            Table::Servers,
            address.to_string().as_bytes(),
            &updated.to_bytes(),
            &mut self.env.rng(),
        );
        b.commit()?;
        *rec = updated;
        Ok(())
    }

    /// The link recorded for the server with `key`, if any (as the user wrote it).
    pub fn server_via(&self, key: &meow_proto::ServerPublic) -> Option<String> {
        self.servers
            .iter()
            .find(|s| s.card.key == *key && !s.via.is_empty())
            .map(|s| s.via.clone())
    }

    fn my_server_refs(&self) -> Result<Vec<meow_proto::ServerRef>> {
        if self.servers.is_empty() {
            return Err(NodeError::NoServers);
        }
        Ok(self.servers.iter().map(|s| s.card.server_ref()).collect())
    }

    // ------------------------------------------------------------------ events

    /// Starts recording events for bots (the runtime calls this when it starts): from now on,
    /// what any command receives on this home is kept until the runtime hands it on. Events
    /// from before the first call are not recorded, so a first `meow run` does not replay the
    /// whole history to its plugins.
    pub fn record_events_from_now(&mut self) -> Result<()> {
        if self.counters.record_events {
            return Ok(());
        }
        self.counters.record_events = true;
        let mut b = self.vault.batch();
        self.put_counters(&mut b);
        b.commit()?;
        Ok(())
    }

    /// Gets a value on `signal` whenever new events are stored.
    pub fn set_event_signal(&mut self, signal: smol::channel::Sender<()>) {
        self.event_signal = Some(signal);
    }

    /// Adds event records to a batch (if events are recorded), dropping the oldest past the
    /// bound. The caller commits and then calls `signal_events`.
    pub(crate) fn record_events(&mut self, b: &mut VaultBatch<'_>, records: Vec<EventRecord>) {
        if !self.counters.record_events || records.is_empty() {
            return;
        }
        for r in records {
            let seq = self.counters.next_event;
            self.counters.next_event += 1;
            let home = match &r {
                // With the message it is about (a hidden contact's, in its compartment).
                EventRecord::Message { inbox } => b.pending_owner(Table::Inbox, &inbox.to_be_bytes()),
                _ => None,
            }
            .unwrap_or_else(|| self.vault.main());
            b.put_in(
                home,
                Table::Events,
                &seq.to_be_bytes(),
                &r.to_bytes(),
                &mut self.env.rng(),
            );
            self.events.insert(seq);
        }
        let mut dropped = 0;
        while self.events.len() > MAX_PENDING_EVENTS {
            if let Some(old) = self.events.pop_first() {
                b.delete(Table::Events, &old.to_be_bytes());
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "{MAX_PENDING_EVENTS} events wait for plugins and recipes (is `meow run` stopped?): the oldest are dropped"
            );
        }
    }

    pub(crate) fn signal_events(&self) {
        if let Some(s) = &self.event_signal {
            let _ = s.try_send(());
        }
    }

    /// Up to `max` stored events, oldest first, with what they report (an event whose inbox
    /// item was deleted since reports nothing and is only returned for removal).
    pub fn pending_events(&self, max: usize) -> Result<Vec<(u64, Option<NodeEvent>)>> {
        let mut out = Vec::new();
        for &seq in self.events.iter().take(max) {
            let Some(bytes) = self.vault.get(Table::Events, &seq.to_be_bytes())? else {
                out.push((seq, None));
                continue;
            };
            let event = match EventRecord::from_bytes(&bytes)? {
                EventRecord::Message { inbox } => self
                    .vault
                    .get(Table::Inbox, &inbox.to_be_bytes())?
                    .map(|b| InboxItem::from_bytes(&b))
                    .transpose()?
                    .map(NodeEvent::Message),
                EventRecord::ContactAdded { name, via_public_card } => {
                    Some(NodeEvent::ContactAdded { name, via_public_card })
                }
                EventRecord::DeviceLinked { device } => Some(NodeEvent::DeviceLinked { device }),
                EventRecord::DeviceRevoked { device } => Some(NodeEvent::DeviceRevoked { device }),
            };
            out.push((seq, event));
        }
        Ok(out)
    }

    /// Events stored and not yet handed on.
    pub fn events_waiting(&self) -> usize {
        self.events.len()
    }

    /// Forgets events handed on.
    pub fn events_done(&mut self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut b = self.vault.batch();
        for seq in seqs {
            b.delete(Table::Events, &seq.to_be_bytes());
        }
        b.commit()?;
        for seq in seqs {
            self.events.remove(seq);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ duplicates

    pub(crate) fn seen_key(contact: u64, id: &meow_proto::MessageId) -> Vec<u8> {
        let mut k = contact.to_be_bytes().to_vec();
        k.extend_from_slice(&id.0);
        k
    }

    fn already_seen(&self, contact: u64, id: &meow_proto::MessageId) -> Result<bool> {
        Ok(self.vault.get(Table::Seen, &Self::seen_key(contact, id))?.is_some())
    }

    fn prune_seen(&self) -> Result<()> {
        let floor = self.env.now_ms().saturating_sub(REPLAY_WINDOW_MS);
        let mut b = self.vault.batch();
        for (k, v) in self.vault.scan(Table::Seen)? {
            let t = v
                .get(..8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if t < floor {
                b.delete(Table::Seen, &k);
            }
        }
        if !b.is_empty() {
            b.commit()?;
        }
        Ok(())
    }
}
