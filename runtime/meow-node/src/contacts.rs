//! Contacts: invitations, answers, the contact list and key rotation.

use meow_proto::card::{Card, CardRole, UncheckedCard};
use meow_proto::codec::Encode;
use meow_proto::invitation::{self, CardOptions, InvitationError};
use meow_proto::{ContactPublic, envelope};

use crate::records::{ContactRecord, InvitationRecord};
use crate::{Node, NodeError, Result, Route, Table, check_name};

/// What accepting a card did.
#[derive(Debug, Clone)]
pub enum Accepted {
    /// I answered an invitation (or a public card): the contact is usable now. The answer card is
    /// also queued to the inviter's mailbox; hand it over yourself if they have no server access.
    Answered {
        /// My name for the new contact.
        name: String,
        /// My answer card.
        answer: Box<Card>,
    },
    /// The card answered one of my invitations: the contact is complete.
    Completed {
        /// My name for the new contact.
        name: String,
    },
    /// That answer was already applied (it came through my mailbox first).
    AlreadyDone {
        /// The contact's name.
        name: String,
    },
}

/// An invitation waiting for its answer, for listing.
#[derive(Debug, Clone)]
pub struct PendingInvitation {
    /// What the contact will be called.
    pub name: String,
    /// A public (directory) card.
    pub public: bool,
    /// Expiry, Unix seconds.
    pub expires: u64,
}

impl Node {
    fn name_taken(&self, name: &str) -> bool {
        self.contacts.values().any(|c| c.name == name) || self.invitations.values().any(|i| i.name == name && !i.public)
    }

    fn contact_with_peer(&self, peer: &ContactPublic) -> Option<&ContactRecord> {
        self.contacts.values().find(|c| &c.conversation.peer == peer)
    }

    pub(crate) fn card_options(&self) -> Result<CardOptions> {
        Ok(CardOptions {
            servers: self.my_server_refs()?,
            nickname: self.profile.display_name.clone(),
            now: self.env.now_ms() / 1000,
            ttl: self.profile.card_ttl_secs,
            classical_start: !self.post_quantum,
        })
    }

    /// Makes an invitation card for a future contact I will call `name`; with `public`, a card
    /// anyone may answer (for the directory), and `name` prefixes the contacts it creates.
    pub fn invite(&mut self, name: &str, public: bool) -> Result<Card> {
        check_name(name)?;
        if !public && self.name_taken(name) {
            return Err(NodeError::ContactExists(name.to_owned()));
        }
        let (keys, card) = invitation::invite(&self.card_options()?, public, &mut self.env.rng());
        let rec = InvitationRecord {
            name: name.to_owned(),
            keys,
            card: card.as_bytes().to_vec(),
            id: card.id(),
            public,
            expires: card.body.expires,
        };
        let mut b = self.vault.batch();
        b.put(Table::Invitations, &rec.id.0, &rec.to_bytes(), &mut self.env.rng());
        b.commit()?;
        self.routes
            .entry(rec.keys.keys.mailbox())
            .or_default()
            .push(Route::Invitation(rec.id.0));
        self.invitations.insert(rec.id.0, rec);
        self.note_plan();
        Ok(card)
    }

    /// My invitations still waiting for an answer.
    pub fn pending_invitations(&self) -> Vec<PendingInvitation> {
        self.invitations
            .values()
            .map(|i| PendingInvitation {
                name: i.name.clone(),
                public: i.public,
                expires: i.expires,
            })
            .collect()
    }

    /// My public card for the directory, if I made one (the newest).
    pub fn public_card(&self) -> Option<(Card, meow_proto::ContactKey)> {
        self.invitations
            .values()
            .filter(|i| i.public)
            .max_by_key(|i| i.expires)
            .and_then(|i| {
                let card = UncheckedCard::from_bytes(&i.card).ok()?.check_signature().ok()?;
                Some((card, i.keys.contact_key.clone()))
            })
    }

    /// Accepts a card: answers an invitation, or completes mine with its answer.
    pub fn accept(&mut self, data: &[u8], name: Option<&str>) -> Result<Accepted> {
        let card = UncheckedCard::from_file_contents(data)?.check(self.env.now_ms() / 1000)?;
        match card.body.role {
            CardRole::Invitation | CardRole::Public => self.answer_card(&card, name),
            CardRole::Answer => {
                let invitation = card.body.answers.ok_or(InvitationError::NotAnAnswer)?;
                if !self.invitations.contains_key(&invitation.0) {
                    if let Some(c) = self.contact_with_peer(&card.contact) {
                        return Ok(Accepted::AlreadyDone { name: c.name.clone() });
                    }
                    return Err(NodeError::UnmatchedAnswer);
                }
                let name = self.complete_invitation(invitation.0, &card)?;
                Ok(Accepted::Completed { name })
            }
        }
    }

    fn answer_card(&mut self, card: &Card, name: Option<&str>) -> Result<Accepted> {
        if let Some(c) = self.contact_with_peer(&card.contact) {
            return Err(NodeError::AlreadyAccepted(c.name.clone()));
        }
        let name = match name.or(card.body.nickname.as_deref()) {
            Some(n) => n.to_owned(),
            None => {
                return Err(NodeError::NoNickname);
            }
        };
        check_name(&name)?;
        if self.name_taken(&name) {
            return Err(NodeError::ContactExists(name));
        }
        let (conversation, answer) = invitation::answer(card, &self.card_options()?, &mut self.env.rng())?;
        let message = invitation::answer_message(&answer, self.env.now_ms(), &mut self.env.rng());
        let envelope = envelope::seal(
            &message,
            &conversation.contact_key,
            &card.body.conversation,
            &mut self.env.rng(),
        )?;
        let contact = ContactRecord {
            id: self.fresh_id(),
            name: name.clone(),
            conversation,
            servers: card.body.servers.clone(),
            policy: self.default_policy().0,
            added_ms: self.env.now_ms(),
            dropped_unsigned: 0,
            via_public_card: false,
            classical_start: card.body.classical_start || answer.body.classical_start,
            route: self.default_policy().1,
        };
        let item = self.new_outbox_item(
            contact.id,
            format!("answer card to {name}"),
            message.id,
            meow_proto::MailboxId::of(&card.body.lookup),
            card.body.servers.clone(),
            envelope,
        );
        let mut b = self.vault.batch();
        self.put_contact(&mut b, &contact);
        b.put(
            Table::Outbox,
            &item.seq.to_be_bytes(),
            &item.to_bytes(),
            &mut self.env.rng(),
        );
        self.put_counters(&mut b);
        b.commit()?;
        self.outbox.insert(item.seq, None);
        self.contacts.insert(contact.id, contact);
        self.rebuild_routes();
        Ok(Accepted::Answered {
            name,
            answer: Box::new(answer),
        })
    }

    /// Completes invitation `id` with its answer card; returns the new contact's name.
    pub(crate) fn complete_invitation(&mut self, id: [u8; 32], answer: &Card) -> Result<String> {
        let inv = self.invitations.get(&id).cloned().ok_or(InvitationError::NotAnAnswer)?;
        if let Some(c) = self.contact_with_peer(&answer.contact) {
            return Ok(c.name.clone());
        }
        let my_card = UncheckedCard::from_bytes(&inv.card)?.check_signature()?;
        let mut conversation = invitation::complete(&inv.keys, &my_card, answer)?;
        let name = if inv.public {
            self.guest_name(&inv.name, answer.body.nickname.as_deref())
        } else {
            inv.name.clone()
        };
        if inv.public {
            // Everyone answering a public card shares its first keys: move this contact to
            // private keys at once (the offer rides on the first message to them).
            conversation.rotate(&mut self.env.rng())?;
        }
        let contact = ContactRecord {
            id: self.fresh_id(),
            name: name.clone(),
            conversation,
            servers: answer.body.servers.clone(),
            policy: self.default_policy().0,
            added_ms: self.env.now_ms(),
            dropped_unsigned: 0,
            via_public_card: inv.public,
            classical_start: answer.body.classical_start || my_card.body.classical_start,
            route: self.default_policy().1,
        };
        let mut b = self.vault.batch();
        self.put_contact(&mut b, &contact);
        if !inv.public {
            b.delete(Table::Invitations, &id);
        }
        self.put_counters(&mut b);
        b.commit()?;
        self.contacts.insert(contact.id, contact);
        if !inv.public {
            self.invitations.remove(&id);
        }
        self.rebuild_routes();
        Ok(name)
    }

    fn guest_name(&self, prefix: &str, nickname: Option<&str>) -> String {
        let base = nickname.filter(|n| check_name(n).is_ok()).unwrap_or(prefix);
        if !self.name_taken(base) {
            return base.to_owned();
        }
        (2..)
            .map(|i| format!("{base}-{i}"))
            .find(|n| !self.name_taken(n))
            .unwrap_or_else(|| base.to_owned())
    }

    /// All contacts, by name.
    pub fn contacts(&self) -> Vec<&ContactRecord> {
        let mut v: Vec<_> = self.contacts.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The contact called `name`.
    pub fn contact(&self, name: &str) -> Result<&ContactRecord> {
        self.contacts
            .values()
            .find(|c| c.name == name)
            .ok_or_else(|| NodeError::UnknownContact(name.to_owned()))
    }

    pub(crate) fn contact_id(&self, name: &str) -> Result<u64> {
        self.contact(name).map(|c| c.id)
    }

    /// Starts a rotation of my conversation and lookup keys for `name`; returns its serial. The
    /// offer travels with the next message (call [`crate::sync::send`] with a control message, or
    /// any message).
    pub fn rotate(&mut self, name: &str) -> Result<u32> {
        let id = self.contact_id(name)?;
        if !self.holds(id) {
            return Err(NodeError::Device(format!(
                "{name} is held by another of your devices: rotate there (`meow device list`)"
            )));
        }
        let mut contact = self.contacts[&id].clone();
        let serial = contact.conversation.rotate(&mut self.env.rng())?;
        let mut b = self.vault.batch();
        self.put_contact(&mut b, &contact);
        b.commit()?;
        self.contacts.insert(id, contact);
        self.rebuild_routes();
        Ok(serial)
    }

    /// Removes a contact: the conversation is forgotten here (and on the user's other devices);
    /// what it sent stays in the inbox. The contact is not told. Refused while the contact is
    /// in one of my groups.
    pub fn remove_contact(&mut self, name: &str) -> Result<()> {
        let id = self.contact_id(name)?;
        if self.hidden_in(id).is_some() {
            return Err(NodeError::Invalid(format!(
                "{name} is in a hidden compartment: hidden contacts are not removed from the main one"
            )));
        }
        if let Some(g) = self
            .groups()?
            .into_iter()
            .find(|g| !g.left && (g.owner_contact == id || g.members.iter().any(|(_, m)| *m == id)))
        {
            return Err(NodeError::Invalid(format!(
                "{name} is in group {}: remove them from it (or leave it) first",
                g.name
            )));
        }
        let peer = *self.contacts[&id].conversation.peer.as_bytes();
        let vault = self.vault.clone();
        let mut b = vault.batch();
        b.delete(Table::Contacts, &id.to_be_bytes());
        self.note_sync(&mut b, meow_proto::sync::Kind::Contact, &peer, None);
        b.commit()?;
        self.contacts.remove(&id);
        self.rebuild_routes();
        Ok(())
    }

    /// Renames a contact.
    pub fn rename(&mut self, old: &str, new: &str) -> Result<()> {
        check_name(new)?;
        if self.name_taken(new) {
            return Err(NodeError::ContactExists(new.to_owned()));
        }
        let id = self.contact_id(old)?;
        let mut contact = self.contacts[&id].clone();
        contact.name = new.to_owned();
        let mut b = self.vault.batch();
        self.put_contact(&mut b, &contact);
        b.commit()?;
        self.contacts.insert(id, contact);
        Ok(())
    }
}
