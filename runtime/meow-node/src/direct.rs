//! Direct links (spec §1.2.3): presence announcements between contacts who prefer them, and
//! the routes they give.
//!
//! A home that accepts direct links tells each contact whose policy is `direct-preferred`
//! where it can be reached and under which key, in a presence message: an ordinary message of
//! the conversation (content type [`PRESENCE`]), so only that contact can read it and the
//! server sees one more padded envelope. The spec puts presence in a flag on polls; riding in
//! the conversation gives the same confidentiality (sealed to the peer) without teaching the
//! server who is online. Each contact gets a key of its own, fresh for each run of the daemon
//! and known to that contact only through the conversation: completing a handshake under it
//! proves the listener to the contact and the contact to the listener, so the direct session
//! is keyed to the two contacts, not to any server. Messages over the link are the same envelopes as through a server (sealed and
//! signed by the conversation); a direct deposit only counts once the peer stored it, and
//! anything that does not go direct falls back to the contact's servers.

use std::collections::HashMap;

use meow_proto::codec::{Decode, Encode};
use meow_proto::envelope::ContentType;
use meow_proto::wire::StoredMessage;
use meow_proto::{Address, MailboxId, ServerPublic};

use crate::messaging::Received;
use crate::records::{OutboxItem, PrivacyPolicy};
use crate::{Node, Result};

/// The content type of a presence message.
pub const PRESENCE: ContentType = ContentType::PRESENCE;
/// How long a direct route is left alone after it failed, ms.
const FAILED_BACKOFF_MS: u64 = 30_000;

pub use meow_proto::presence::Presence;

/// What a home knows of a contact's presence.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    presence: Presence,
    failed_until_ms: u64,
}

/// Presence learned from contacts, by contact id (memory only: each run announces again).
pub(crate) type PresenceMap = HashMap<u64, Known>;

impl Node {
    /// Sets how messages to `name` travel; returns the previous policy.
    pub fn set_policy(&mut self, name: &str, policy: PrivacyPolicy) -> Result<PrivacyPolicy> {
        let id = self.contact_id(name)?;
        let mut c = self.contacts[&id].clone();
        let before = c.policy;
        c.policy = policy;
        let mut b = self.vault.batch();
        self.put_contact(&mut b, &c);
        b.commit()?;
        self.contacts.insert(id, c);
        if policy != PrivacyPolicy::DirectPreferred {
            self.presence.remove(&id);
        }
        Ok(before)
    }

    /// The contacts whose policy is `direct-preferred`.
    pub fn direct_contacts(&self) -> Vec<String> {
        self.contacts
            .values()
            .filter(|c| c.policy == PrivacyPolicy::DirectPreferred)
            .map(|c| c.name.clone())
            .collect()
    }

    /// Seals each contact's presence to it (marked automatic) and queues them in one write;
    /// contacts that are not `direct-preferred` are skipped: they never learn where I am.
    pub fn queue_presence(&mut self, presences: &[(String, Presence)]) -> Result<Vec<OutboxItem>> {
        let queued = presences
            .iter()
            .filter_map(|(name, p)| {
                let c = self.contacts.values().find(|c| c.name == *name)?;
                (c.policy == PrivacyPolicy::DirectPreferred).then(|| crate::messaging::Queued {
                    automatic: true,
                    ..crate::messaging::Queued::new(c.id, PRESENCE, p.to_bytes())
                })
            })
            .collect();
        self.queue_all(queued)
    }

    /// Takes a presence message from contact `cid` (ignored unless the contact is
    /// `direct-preferred` here: a policy is also who may make me connect out).
    pub(crate) fn take_presence(&mut self, cid: u64, content: &[u8]) {
        let Some(c) = self.contacts.get(&cid) else { return };
        if c.policy != PrivacyPolicy::DirectPreferred {
            return;
        }
        match Presence::from_bytes(content) {
            Ok(presence) => {
                tracing::info!(contact = %c.name, addresses = presence.addresses.len(), "contact reachable directly");
                self.presence.insert(
                    cid,
                    Known {
                        presence,
                        failed_until_ms: 0,
                    },
                );
            }
            Err(e) => tracing::warn!(contact = %c.name, error = %e, "unreadable presence ignored"),
        }
    }

    /// Where to reach contact `cid` directly now, if it announced itself, its presence has not
    /// expired and the route did not just fail.
    pub fn direct_route(&self, cid: u64) -> Option<(Address, ServerPublic)> {
        let now = self.env.now_ms();
        let c = self.contacts.get(&cid)?;
        let k = self.presence.get(&cid)?;
        let usable =
            c.policy == PrivacyPolicy::DirectPreferred && k.presence.expires_ms > now && k.failed_until_ms <= now;
        let address = k.presence.addresses.first()?;
        usable.then(|| (address.clone(), k.presence.key))
    }

    /// The direct address known for `name`, for display.
    pub fn direct_address(&self, name: &str) -> Option<String> {
        let id = self.contact_id(name).ok()?;
        self.direct_route(id).map(|(a, _)| a.to_string())
    }

    /// Notes that the direct route to `cid` failed: servers carry its messages for a while.
    pub fn direct_failed(&mut self, cid: u64) {
        let until = self.env.now_ms() + FAILED_BACKOFF_MS;
        if let Some(k) = self.presence.get_mut(&cid) {
            k.failed_until_ms = until;
        }
    }

    /// Takes an envelope contact `from` deposited over its direct link, as if fetched from a
    /// server. `None` when the mailbox is not one of `from`'s, or `from` is not
    /// `direct-preferred` (the link refuses it); otherwise what receiving did, stored before
    /// this returns.
    pub fn receive_direct(&mut self, from: &str, mailbox: MailboxId, envelope: Vec<u8>) -> Result<Option<Received>> {
        let Ok(id) = self.contact_id(from) else {
            return Ok(None);
        };
        let preferred = self.contacts[&id].policy == PrivacyPolicy::DirectPreferred;
        let theirs = self
            .routes
            .get(&mailbox)
            .is_some_and(|routes| routes.iter().any(|r| matches!(r, crate::Route::Contact(c) if *c == id)));
        if !(preferred && theirs) {
            return Ok(None);
        }
        let message = StoredMessage {
            mailbox,
            seq: 0,
            received_at: self.env.now_ms() / 1000,
            envelope,
        };
        self.receive("direct", vec![message], Vec::new()).map(Some)
    }
}
