//! The headless MEOW node: one identity's encrypted home, its contacts and conversations, the
//! outbox and inbox, and the conversations with servers. The `meow` CLI and the plugin runtime
//! are thin layers over it.
//!
//! State changes are synchronous methods on [`Node`] (fast, durable before they return); network
//! work is in [`sync`], which holds the node only between network calls so a daemon can share it.

#![forbid(unsafe_code)]

mod contacts;
mod error;
mod events;
pub mod groups;
mod messaging;
pub mod pool;
pub mod records;
pub mod sync;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

pub use contacts::{Accepted, PendingInvitation};
pub use error::{NodeError, Result};
pub use events::NodeEvent;
use meow_proto::codec::{Decode, Encode};
use meow_proto::crypto::KdfParams;
use meow_proto::{BroadcastKey, MailboxId, ServerCard, UserKey};
pub use meow_store::vault::Table;
use meow_store::vault::{self, Vault, VaultBatch};
pub use messaging::{AUTOMATIC, RETIRE_GRACE_MS, Received};
pub use records::{ContactRecord, InboxItem, Origin, PrivacyPolicy};
use records::{Counters, InvitationRecord, Profile, ServerRecord};

use crate::pool::Pool;

const PROFILE_KEY: &[u8] = b"profile";
const COUNTERS_KEY: &[u8] = b"counters";
/// How long message ids are remembered for duplicate detection (and older messages refused):
/// the longest a server keeps a message, plus clock skew.
pub const REPLAY_WINDOW_MS: u64 = 15 * 86_400 * 1000;
/// How long a card stays valid by default.
pub const DEFAULT_CARD_TTL_SECS: u64 = 7 * 86_400;

/// Where a mailbox's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Contact(u64),
    Invitation([u8; 32]),
}

/// Options for a new home.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Password hashing parameters.
    pub kdf: KdfParams,
    /// The nickname suggested on my cards.
    pub display_name: Option<String>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            kdf: KdfParams::DEFAULT,
            display_name: None,
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
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.vault.dir().display())
    }
}

/// Now, Unix ms.
pub fn now_ms() -> u64 {
    meow_net::now_ms()
}

fn rng() -> impl meow_proto::CryptoRng {
    meow_proto::os_rng()
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
        if let Some(n) = &opts.display_name {
            check_name(n)?;
        }
        let vault = Vault::create(dir, password, opts.kdf, &mut rng())?;
        let profile = Profile {
            user_key: UserKey::generate(&mut rng()),
            broadcast_key: BroadcastKey::generate(&mut rng()),
            display_name: opts.display_name,
            card_ttl_secs: DEFAULT_CARD_TTL_SECS,
            created_ms: now_ms(),
        };
        let counters = Counters {
            next_inbox: 1,
            next_outbox: 1,
            next_contact: 1,
            ..Counters::default()
        };
        let mut b = vault.batch();
        b.put(Table::Profile, PROFILE_KEY, &profile.to_bytes(), &mut rng());
        b.put(Table::State, COUNTERS_KEY, &counters.to_bytes(), &mut rng());
        b.commit()?;
        Self::load(vault)
    }

    /// Opens the home in `dir`.
    pub fn open(dir: &Path, password: &[u8]) -> Result<Node> {
        Self::load(Vault::open(dir, password)?)
    }

    /// Whether `dir` holds a home.
    pub fn exists(dir: &Path) -> bool {
        vault::exists(dir)
    }

    fn load(vault: Vault) -> Result<Node> {
        let profile = match vault.get(Table::Profile, PROFILE_KEY)? {
            Some(b) => Profile::from_bytes(&b)?,
            None => return Err(NodeError::Invalid("the home has no profile record".into())),
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
        let mut node = Node {
            vault: Arc::new(vault),
            profile,
            counters,
            servers,
            contacts,
            invitations,
            routes: HashMap::new(),
            pool: Arc::new(Pool::default()),
        };
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

    /// The key my broadcasts are signed with (give it to a server operator as `--operator`).
    pub fn broadcast_key(&self) -> &BroadcastKey {
        &self.profile.broadcast_key
    }

    /// The nickname on my cards.
    pub fn display_name(&self) -> Option<&str> {
        self.profile.display_name.as_deref()
    }

    fn rebuild_routes(&mut self) {
        let mut routes: HashMap<MailboxId, Vec<Route>> = HashMap::new();
        for inv in self.invitations.values() {
            routes
                .entry(inv.keys.keys.mailbox())
                .or_default()
                .push(Route::Invitation(inv.id.0));
        }
        for c in self.contacts.values() {
            for k in c.conversation.lookup_keys() {
                routes
                    .entry(MailboxId::of(&k.public()))
                    .or_default()
                    .push(Route::Contact(c.id));
            }
        }
        self.routes = routes;
    }

    fn put_counters(&self, b: &mut VaultBatch<'_>) {
        b.put(Table::State, COUNTERS_KEY, &self.counters.to_bytes(), &mut rng());
    }

    fn put_contact(&self, b: &mut VaultBatch<'_>, c: &ContactRecord) {
        b.put(Table::Contacts, &c.id.to_be_bytes(), &c.to_bytes(), &mut rng());
    }

    // ------------------------------------------------------------------ servers

    /// Adds a server (its card text).
    pub fn add_server(&mut self, text: &str) -> Result<ServerCard> {
        let card = ServerCard::from_text(text)?;
        if self.servers.iter().any(|s| s.card.address == card.address) {
            return Err(NodeError::ServerExists(card.address));
        }
        let rec = ServerRecord {
            card: card.clone(),
            added_ms: now_ms(),
        };
        let mut b = self.vault.batch();
        b.put(Table::Servers, card.address.as_bytes(), &rec.to_bytes(), &mut rng());
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
        if let Some(old) = self.servers.iter().find(|s| s.card.key == card.key) {
            b.delete(Table::Servers, old.card.address.as_bytes());
        }
        let rec = ServerRecord {
            card: card.clone(),
            added_ms: now_ms(),
        };
        b.put(Table::Servers, card.address.as_bytes(), &rec.to_bytes(), &mut rng());
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
            .position(|s| s.card.address == which || s.card.name == which)
            .ok_or_else(|| NodeError::Invalid(format!("no server {which:?} (see `meow servers list`)")))?;
        let mut b = self.vault.batch();
        b.delete(Table::Servers, self.servers[i].card.address.as_bytes());
        b.commit()?;
        Ok(self.servers.remove(i).card)
    }

    /// My servers, most preferred first.
    pub fn servers(&self) -> Vec<ServerCard> {
        self.servers.iter().map(|s| s.card.clone()).collect()
    }

    fn my_server_refs(&self) -> Result<Vec<meow_proto::ServerRef>> {
        if self.servers.is_empty() {
            return Err(NodeError::NoServers);
        }
        Ok(self.servers.iter().map(|s| s.card.server_ref()).collect())
    }

    // ------------------------------------------------------------------ duplicates

    fn seen_key(contact: u64, id: &meow_proto::MessageId) -> Vec<u8> {
        let mut k = contact.to_be_bytes().to_vec();
        k.extend_from_slice(&id.0);
        k
    }

    fn already_seen(&self, contact: u64, id: &meow_proto::MessageId) -> Result<bool> {
        Ok(self.vault.get(Table::Seen, &Self::seen_key(contact, id))?.is_some())
    }

    fn prune_seen(&self) -> Result<()> {
        let floor = now_ms().saturating_sub(REPLAY_WINDOW_MS);
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
