//! Hidden compartments (spec §1.2.5): contacts under passwords of their own.
//!
//! A home opens with its main password and sees only the main compartment. Unlocking a
//! compartment loads its contacts, their outbox and events, and from then on they behave like
//! any contact: polled, shown, given to plugins. Locking forgets them again (nothing of them
//! stays in memory) and rewrites the store ([`meow_store::vault::Vault::scrub`]) so that its
//! files show no order of recent writes. Hiding a contact moves its records (the contact, its
//! messages, its duplicate-detection records, its outbox and events, the groups it is in, and
//! plugin state whose key names it, [`kv_key_mentions`])
//! into a compartment; a new compartment takes the place of a decoy and gets a decoy's worth of
//! generated cover. See docs/HIDDEN.md for what this protects and what it does not.

use meow_proto::codec::{Decode, Reader, Writer};
use meow_store::StoreError;
use meow_store::vault::Compartment;

use crate::decoy::Plan;
use crate::groups::GroupRecord;
use crate::records::{ContactRecord, EventRecord, InboxItem, OutboxItem};
use crate::{Node, NodeError, Result, Table, key_seq};

/// The record (in the main compartment's [`Table::State`]) of a home made without decoys: there,
/// a new compartment never takes the place of a unit with records (each is a compartment).
pub(crate) const NO_DECOYS_KEY: &[u8] = b"no-decoys";

/// The prefix of the record (in a compartment's [`Table::State`]) listing its cover's generated
/// contacts. Logical keys are shared by all open compartments (a write goes to the one holding
/// the key), so each compartment's record has a key of its own: the prefix and a fresh id.
const COVER_KEY: &[u8] = b"cover/";

/// Whether a plugin's key-value key is about contact `name`: one of its `/`-separated parts is
/// the name (`seen/alice`). Such state moves with the contact when it is hidden, and is written
/// into its compartment while it is unlocked.
pub fn kv_key_mentions(key: &str, name: &str) -> bool {
    key.split('/').any(|part| part == name)
}

/// What hiding a contact did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hidden {
    /// The compartment it is in now.
    pub compartment: Compartment,
    /// The compartment was made for this (the password opened none).
    pub created: bool,
    /// Records moved with the contact (its messages and the rest).
    pub moved: usize,
}

impl Node {
    /// A new local id (contacts, inbox items): the clock in milliseconds times 1 024, or one
    /// more than the last id if that is larger (below 2^53 until the year 2248, so JSON readers
    /// keep it exact). Ids therefore say when, like the records they name do, and nothing about
    /// how many others exist.
    pub(crate) fn fresh_id(&mut self) -> u64 {
        self.last_id = (self.last_id + 1).max(self.env.now_ms() << 10);
        self.last_id
    }

    /// Notes ids in use, so that [`Node::fresh_id`] stays above them.
    pub(crate) fn note_ids(&mut self, c: Option<Compartment>) -> Result<()> {
        for table in [Table::Contacts, Table::Inbox] {
            let keys = match c {
                Some(c) => self.vault.keys_in(c, table),
                None => self.vault.keys(table),
            };
            for k in keys {
                self.last_id = self.last_id.max(key_seq(&k)?);
            }
        }
        Ok(())
    }

    /// The compartment holding contact `id`: the main one unless it is hidden.
    pub(crate) fn home_of(&self, id: u64) -> Compartment {
        self.vault
            .owner(Table::Contacts, &id.to_be_bytes())
            .unwrap_or_else(|| self.vault.main())
    }

    /// The hidden compartment holding a contact, if it is hidden.
    pub fn compartment_of(&self, contact: &str) -> Result<Option<Compartment>> {
        Ok(self.hidden_in(self.contact(contact)?.id))
    }

    /// The hidden compartment holding contact `id`, if it is hidden.
    pub fn hidden_in(&self, id: u64) -> Option<Compartment> {
        let c = self.home_of(id);
        (c != self.vault.main()).then_some(c)
    }

    /// How many (shown) contacts an unlocked compartment holds.
    pub fn contacts_in(&self, c: Compartment) -> usize {
        self.contacts
            .keys()
            .filter(|id| self.hidden_in(**id) == Some(c))
            .count()
    }

    /// The unlocked hidden compartments.
    pub fn compartments(&self) -> Vec<Compartment> {
        self.vault.hidden()
    }

    /// Unlocks the compartment `password` opens and loads its contacts; returns it and how
    /// many contacts it holds. A password that opens nothing is [`NodeError::NoCompartment`].
    pub fn unlock(&mut self, password: &[u8]) -> Result<(Compartment, usize)> {
        let c = match self.vault.unlock(password) {
            Ok(c) => c,
            Err(StoreError::WrongPassword) => return Err(NodeError::NoCompartment),
            Err(e) => return Err(e.into()),
        };
        Ok((c, self.load_compartment(c)?))
    }

    /// The generated contacts of a compartment's cover (never loaded: not polled, not shown).
    fn cover(&self, c: Compartment) -> Result<Vec<u64>> {
        let Some(bytes) = self
            .vault
            .scan_in(c, Table::State)?
            .into_iter()
            .find(|(k, _)| k.starts_with(COVER_KEY))
            .map(|(_, v)| v)
        else {
            return Ok(Vec::new());
        };
        let mut r = Reader::new(&bytes);
        Ok(r.list(1024, "cover contacts", |r| r.varint("cover contact"))?)
    }

    fn load_compartment(&mut self, c: Compartment) -> Result<usize> {
        let mut n = 0;
        let cover = self.cover(c)?;
        for (_, v) in self.vault.scan_in(c, Table::Contacts)? {
            let contact = ContactRecord::from_bytes(&v)?;
            if cover.contains(&contact.id) {
                continue;
            }
            if self.contacts.insert(contact.id, contact).is_none() {
                n += 1;
            }
        }
        for (_, v) in self.vault.scan_in(c, Table::Outbox)? {
            let item = OutboxItem::from_bytes(&v)?;
            self.outbox.insert(item.seq, item.by);
        }
        for (k, _) in self.vault.scan_in(c, Table::Events)? {
            self.events.insert(key_seq(&k)?);
        }
        self.note_ids(Some(c))?;
        self.rebuild_routes();
        self.prune_seen()?;
        Ok(n)
    }

    /// Locks a hidden compartment: its contacts (and their direct addresses), outbox and events
    /// leave memory, its keys are forgotten, and the store is rewritten. Returns how many
    /// contacts it showed.
    pub fn lock(&mut self, c: Compartment) -> Result<usize> {
        if c == self.vault.main() {
            return Ok(0);
        }
        let ids = |table| -> Result<Vec<u64>> { self.vault.keys_in(c, table).iter().map(|k| key_seq(k)).collect() };
        let (contacts, outbox, events) = (ids(Table::Contacts)?, ids(Table::Outbox)?, ids(Table::Events)?);
        let shown = contacts.iter().filter(|id| self.contacts.remove(id).is_some()).count();
        for id in &contacts {
            // Where they said they can be reached directly: memory only, gone with them.
            self.presence.remove(id);
        }
        for seq in &outbox {
            self.outbox.remove(seq);
        }
        for seq in &events {
            self.events.remove(seq);
        }
        self.vault.lock(c);
        self.rebuild_routes();
        self.vault.scrub()?;
        Ok(shown)
    }

    /// Locks every hidden compartment.
    pub fn lock_all(&mut self) -> Result<usize> {
        let mut n = 0;
        for c in self.vault.hidden() {
            n += self.lock(c)?;
        }
        Ok(n)
    }

    /// Moves `contact` into the compartment `password` opens; with `create`, a password that
    /// opens none makes a new compartment (in the place of a decoy, or of a compartment that is
    /// locked now: unlock the ones you keep first). The compartment stays unlocked.
    pub fn hide(&mut self, contact: &str, password: &[u8], create: bool) -> Result<Hidden> {
        let id = self.contact(contact)?.id;
        let (c, created) = match self.vault.unlock(password) {
            Ok(c) => {
                self.load_compartment(c)?;
                (c, false)
            }
            Err(StoreError::WrongPassword) if create => {
                let decoys = self.vault.get(Table::State, NO_DECOYS_KEY)?.is_none();
                let (c, _) = self.vault.new_compartment(password, decoys, &mut self.env.rng())?;
                let plan = Plan::draw(1, &mut self.env.rng());
                let cover: Vec<u64> = self.write_generated(c, &plan)?.iter().map(|k| k.id).collect();
                let mut w = Writer::with_capacity(8 * cover.len() + 2);
                w.list(&cover, |w, id| {
                    w.varint(*id);
                });
                let key = [COVER_KEY, &self.fresh_id().to_be_bytes()].concat();
                let mut b = self.vault.batch();
                b.put_in(c, Table::State, &key, &w.into_bytes(), &mut self.env.rng());
                b.commit()?;
                (c, true)
            }
            Err(StoreError::WrongPassword) => return Err(NodeError::NoCompartment),
            Err(e) => return Err(e.into()),
        };
        let moved = self.move_contact(id, c)?;
        self.vault.scrub()?;
        Ok(Hidden {
            compartment: c,
            created,
            moved,
        })
    }

    /// Moves contact `id` and what belongs to it into compartment `c`.
    fn move_contact(&mut self, id: u64, c: Compartment) -> Result<usize> {
        let mut rng = self.env.rng();
        let mut b = self.vault.batch();
        let mut inbox = std::collections::HashSet::new();
        let mut moved = 0;
        let mut put = |b: &mut meow_store::vault::VaultBatch<'_>, table, k: &[u8], v: &[u8]| {
            b.put_in(c, table, k, v, &mut rng);
            moved += 1;
        };
        let contact_key = id.to_be_bytes();
        if let Some(v) = self.vault.get(Table::Contacts, &contact_key)? {
            put(&mut b, Table::Contacts, &contact_key, &v);
        }
        for (k, v) in self.vault.scan(Table::Inbox)? {
            let item = InboxItem::from_bytes(&v)?;
            if item.contact == id {
                inbox.insert(item.seq);
                put(&mut b, Table::Inbox, &k, &v);
            }
        }
        for (k, v) in self.vault.scan(Table::Seen)? {
            if k.get(..8) == Some(&id.to_be_bytes()[..]) {
                put(&mut b, Table::Seen, &k, &v);
            }
        }
        let file_keys = self.vault.keys(Table::Files);
        for k in crate::files::keys_of(id, &file_keys) {
            if let Some(v) = self.vault.get(Table::Files, k)? {
                put(&mut b, Table::Files, k, &v);
            }
        }
        for (k, v) in self.vault.scan(Table::Outbox)? {
            if OutboxItem::from_bytes(&v)?.contact == id {
                put(&mut b, Table::Outbox, &k, &v);
            }
        }
        for (k, v) in self.vault.scan(Table::Events)? {
            if matches!(EventRecord::from_bytes(&v), Ok(EventRecord::Message { inbox: s }) if inbox.contains(&s)) {
                put(&mut b, Table::Events, &k, &v);
            }
        }
        let name = self.contacts.get(&id).map(|c| c.name.clone()).unwrap_or_default();
        for (k, v) in self.vault.scan(Table::Kv)? {
            // `instance \0 key`: plugin state about the contact goes with it.
            let key = k.iter().position(|b| *b == 0).map(|at| &k[at + 1..]);
            if key.is_some_and(|key| kv_key_mentions(&String::from_utf8_lossy(key), &name)) {
                put(&mut b, Table::Kv, &k, &v);
            }
        }
        for (k, v) in self.vault.scan(Table::Groups)? {
            let g = GroupRecord::from_bytes(&v)?;
            if g.owner_contact == id || g.members.iter().any(|(_, m)| *m == id) {
                put(&mut b, Table::Groups, &k, &v);
            }
        }
        b.commit()?;
        Ok(moved)
    }
}
