//! Decoys (spec §1.2.5): compartments of generated contacts and conversations that nobody can
//! open, so that finding hidden data in a home proves nothing.
//!
//! A decoy is written by the code that writes real compartments: contacts made by the real
//! invitation exchange (with a generated peer), inbox items and duplicate-detection records
//! encoded as real ones, ids from the same allocator. The vault then forgets its key. The same
//! generator makes the cover of a real compartment when it takes the place of a decoy, so a
//! real compartment is a decoy's worth of generated records plus the hidden contacts.

use meow_proto::codec::Encode;
use meow_proto::crypto::{self, CryptoRng};
use meow_proto::invitation::{self, CardOptions};
use meow_proto::{Address, ContentType, MessageId, ServerKey, ServerRef};
use meow_store::vault::Compartment;

use crate::records::{ContactRecord, InboxItem, Origin, PrivacyPolicy};
use crate::{Node, REPLAY_WINDOW_MS, Result, Table};

/// Decoy units a new home gets: between these, uniformly.
pub const DECOYS: std::ops::RangeInclusive<usize> = 2..=5;
/// Contacts in one decoy: between these, uniformly.
pub const CONTACTS: std::ops::RangeInclusive<usize> = 1..=5;
/// Messages from one decoy contact: between these, uniformly.
pub const MESSAGES: std::ops::RangeInclusive<usize> = 0..=40;

/// What one decoy holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Messages per generated contact.
    pub messages: Vec<usize>,
}

fn uniform(range: &std::ops::RangeInclusive<usize>, rng: &mut impl CryptoRng) -> usize {
    range.start() + crypto::random_below(range.end() - range.start() + 1, rng)
}

impl Plan {
    /// A random plan; with `real` contacts already in the compartment, that many fewer
    /// generated ones (at least none), so that a real compartment's size follows the decoys'.
    pub fn draw(real: usize, rng: &mut impl CryptoRng) -> Plan {
        let contacts = uniform(&CONTACTS, rng).saturating_sub(real);
        Plan {
            messages: (0..contacts).map(|_| uniform(&MESSAGES, rng)).collect(),
        }
    }
}

const SYLLABLES: [&str; 16] = [
    "ka", "ri", "mo", "na", "el", "to", "su", "li", "an", "ve", "do", "ra", "mi", "jo", "se", "lu",
];
const WORDS: [&str; 24] = [
    "ok", "yes", "see", "you", "later", "thanks", "when", "are", "we", "meeting", "today", "the", "train", "is",
    "late", "call", "me", "tomorrow", "at", "home", "good", "night", "send", "it",
];

fn name(rng: &mut impl CryptoRng) -> String {
    let n = uniform(&(2..=4), rng);
    (0..n).map(|_| SYLLABLES[uniform(&(0..=15), rng)]).collect()
}

fn text(rng: &mut impl CryptoRng) -> Vec<u8> {
    // Mostly short lines, now and then a long one, as chats go.
    let words = if uniform(&(0..=9), rng) == 0 {
        uniform(&(20..=120), rng)
    } else {
        uniform(&(1..=12), rng)
    };
    let w: Vec<&str> = (0..words).map(|_| WORDS[uniform(&(0..=23), rng)]).collect();
    w.join(" ").into_bytes()
}

/// A server someone could use: a home server on a local network.
fn server(rng: &mut impl CryptoRng) -> ServerRef {
    let host = format!(
        "192.168.{}.{}:{}",
        uniform(&(0..=9), rng),
        uniform(&(2..=250), rng),
        7600 + uniform(&(0..=99), rng)
    );
    ServerRef {
        address: Address::Tcp(host),
        key: ServerKey::generate(rng).public(),
    }
}

impl Node {
    /// Makes the decoys of a new home.
    pub(crate) fn make_decoys(&mut self) -> Result<()> {
        let mut rng = self.env.rng();
        for _ in 0..uniform(&DECOYS, &mut rng) {
            let c = self.vault.new_decoy(&mut rng)?;
            let plan = Plan::draw(0, &mut rng);
            let written = self.write_generated(c, &plan);
            self.vault.lock(c);
            written?;
        }
        Ok(())
    }

    /// Adds a plan's generated contacts and messages to an open compartment, as if they were
    /// the user's (benchmarks and tests use it to fill a home quickly).
    pub fn add_generated(&mut self, c: Compartment, plan: &Plan) -> Result<()> {
        for contact in self.write_generated(c, plan)? {
            self.contacts.insert(contact.id, contact);
        }
        self.rebuild_routes();
        Ok(())
    }

    /// Writes a plan's generated contacts and messages into compartment `c` (a decoy, the
    /// cover of a new compartment) and returns the contacts.
    pub(crate) fn write_generated(&mut self, c: Compartment, plan: &Plan) -> Result<Vec<ContactRecord>> {
        let mut rng = self.env.rng();
        let now = self.env.now_ms();
        let mine = CardOptions {
            servers: match self.card_options() {
                Ok(o) => o.servers,
                Err(_) => vec![server(&mut rng)],
            },
            nickname: self.display_name().map(str::to_owned),
            now: now / 1000,
            ttl: self.profile.card_ttl_secs,
            classical_start: false,
        };
        let vault = self.vault.clone();
        let mut b = vault.batch();
        let mut made = Vec::new();
        for &messages in &plan.messages {
            // Half of them on my server, the others on a server of their own.
            let mut servers = mine.servers.clone();
            if uniform(&(0..=1), &mut rng) == 1 {
                servers = vec![server(&mut rng)];
            }
            let peer = CardOptions {
                nickname: Some(name(&mut rng)),
                servers,
                ..mine.clone()
            };
            let (_, card) = invitation::invite(&peer, false, &mut rng);
            let (conversation, _) = invitation::answer(&card, &mine, &mut rng)?;
            let added_ms = now.saturating_sub(uniform(&(0..=90), &mut rng) as u64 * 86_400_000);
            let contact = ContactRecord {
                id: self.fresh_id(),
                name: card.body.nickname.clone().unwrap_or_default(),
                conversation,
                servers: card.body.servers.clone(),
                policy: PrivacyPolicy::ServerBased,
                added_ms,
                dropped_unsigned: 0,
                via_public_card: false,
                classical_start: card.body.classical_start,
                route: crate::records::RouteOptions::default(),
            };
            b.put_in(
                c,
                Table::Contacts,
                &contact.id.to_be_bytes(),
                &contact.to_bytes(),
                &mut rng,
            );
            let contact_name = contact.name.clone();
            let contact_id = contact.id;
            made.push(contact);
            for _ in 0..messages {
                let received_ms = added_ms + (now - added_ms) * uniform(&(0..=1000), &mut rng) as u64 / 1000;
                let item = InboxItem {
                    seq: self.fresh_id(),
                    from: contact_name.clone(),
                    contact: contact_id,
                    message: MessageId(crypto::random_bytes(&mut rng)),
                    sent_at_ms: received_ms.saturating_sub(uniform(&(0..=5000), &mut rng) as u64),
                    received_ms,
                    content_type: ContentType::TEXT,
                    content: text(&mut rng),
                    read: true,
                    origin: Origin::Contact,
                    automatic: false,
                    reply_to: None,
                };
                if received_ms + REPLAY_WINDOW_MS > now {
                    b.put_in(
                        c,
                        Table::Seen,
                        &Self::seen_key(contact_id, &item.message),
                        &item.sent_at_ms.to_be_bytes(),
                        &mut rng,
                    );
                }
                b.put_in(c, Table::Inbox, &item.seq.to_be_bytes(), &item.to_bytes(), &mut rng);
            }
        }
        b.commit()?;
        Ok(made)
    }
}
