//! What a home stores in its vault, and the canonical encoding of each record.
//!
//! Every record starts with a version byte so its layout can evolve.

use std::collections::BTreeMap;

use meow_proto::card::{CardId, ServerRef};
use meow_proto::codec::{Decode, DecodeError, Encode, Reader, Writer};
use meow_proto::conversation::{Conversation, KeySet};
use meow_proto::envelope::{ContentType, MessageId};
use meow_proto::invitation::NewContact;
use meow_proto::{BroadcastKey, BroadcastPublic, ContactKey, MailboxId, ServerCard, UserKey};

fn version(r: &mut Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    versions(r, what, 1).map(drop)
}

/// The reader of a server reference in a record of version `v` (typed addresses from 2 on).
fn server_ref(v: u8) -> fn(&mut Reader<'_>) -> Result<ServerRef, DecodeError> {
    if v >= 2 {
        ServerRef::decode
    } else {
        ServerRef::decode_v1
    }
}

/// Reads a version byte from 1 up to `latest`.
fn versions(r: &mut Reader<'_>, what: &'static str, latest: u8) -> Result<u8, DecodeError> {
    match r.u8(what)? {
        v @ 1.. if v <= latest => Ok(v),
        version => Err(DecodeError::UnsupportedVersion { what, version }),
    }
}

fn string(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    Ok(r.string(64 * 1024, what)?.to_owned())
}

fn u32v(r: &mut Reader<'_>, what: &'static str) -> Result<u32, DecodeError> {
    Ok(r.varint_max(u32::MAX.into(), what)? as u32)
}

/// The home's identity and settings.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The user's own key (spec Ukp).
    pub user_key: UserKey,
    /// Signs my broadcasts.
    pub broadcast_key: BroadcastKey,
    /// The nickname suggested on my cards.
    pub display_name: Option<String>,
    /// How long my cards stay valid, seconds.
    pub card_ttl_secs: u64,
    /// Creation time, Unix ms.
    pub created_ms: u64,
}

impl Encode for Profile {
    fn encode(&self, w: &mut Writer) {
        w.u8(1)
            .raw(self.user_key.seed().as_slice())
            .raw(self.broadcast_key.seed().as_slice());
        w.option(self.display_name.as_ref(), |w, n| {
            w.string(n);
        });
        w.varint(self.card_ttl_secs).varint(self.created_ms);
    }
}

impl Decode for Profile {
    const WHAT: &'static str = "profile";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "profile")?;
        Ok(Self {
            user_key: UserKey::from_seed(&r.array("user key")?),
            broadcast_key: BroadcastKey::from_seed(&r.array("broadcast key")?),
            display_name: r.option("display name", |r| string(r, "display name"))?,
            card_ttl_secs: r.varint("card ttl")?,
            created_ms: r.varint("created")?,
        })
    }
}

/// Counters and per-server marks.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Next inbox sequence number.
    pub next_inbox: u64,
    /// Next outbox sequence number.
    pub next_outbox: u64,
    /// Next contact id.
    pub next_contact: u64,
    /// Highest broadcast id seen per server address.
    pub broadcasts_seen: BTreeMap<String, u64>,
    /// Next event sequence number (version 2).
    pub next_event: u64,
    /// A runtime (`meow run`) has used this home, so events are recorded for its bots even
    /// when another command fetches the mail (version 2).
    pub record_events: bool,
}

impl Encode for Counters {
    fn encode(&self, w: &mut Writer) {
        w.u8(2)
            .varint(self.next_inbox)
            .varint(self.next_outbox)
            .varint(self.next_contact);
        let seen: Vec<_> = self.broadcasts_seen.iter().collect();
        w.list(&seen, |w, (a, id)| {
            w.string(a).varint(**id);
        });
        w.varint(self.next_event).bool(self.record_events);
    }
}

impl Decode for Counters {
    const WHAT: &'static str = "counters";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = versions(r, "counters", 2)?;
        let next_inbox = r.varint("next inbox")?;
        let next_outbox = r.varint("next outbox")?;
        let next_contact = r.varint("next contact")?;
        let seen = r.list(1024, "broadcasts seen", |r| Ok((string(r, "server")?, r.varint("id")?)))?;
        let (next_event, record_events) = match v {
            1 => (1, false),
            _ => (r.varint("next event")?, r.bool("record events")?),
        };
        Ok(Self {
            next_inbox,
            next_outbox,
            next_contact,
            broadcasts_seen: seen.into_iter().collect(),
            next_event,
            record_events,
        })
    }
}

/// A server I use (my mail is read there; my cards list it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRecord {
    /// The card.
    pub card: ServerCard,
    /// When it was added, Unix ms.
    pub added_ms: u64,
    /// The link this home reaches it through for link sessions (`serial:…`, `rnode:…`,
    /// `meshtastic:…`, `udp:…`), as the user wrote it; empty for none.
    pub via: String,
}

impl Encode for ServerRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(2);
        self.card.encode(w);
        w.varint(self.added_ms);
        w.string(&self.via);
    }
}

impl Decode for ServerRecord {
    const WHAT: &'static str = "server record";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = versions(r, "server record", 2)?;
        Ok(Self {
            card: ServerCard::decode(r)?,
            added_ms: r.varint("added")?,
            via: if v >= 2 { string(r, "via")? } else { String::new() },
        })
    }
}

/// How messages to a contact travel (spec §1.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrivacyPolicy {
    /// Through the contact's servers.
    #[default]
    ServerBased,
    /// Direct peer-to-peer when possible, falling back to servers.
    DirectPreferred,
    /// Through a Matriochka onion route whose first relay is trusted; never falls back.
    Matriochka,
}

impl PrivacyPolicy {
    /// Name for output.
    pub fn name(self) -> &'static str {
        match self {
            PrivacyPolicy::ServerBased => "server",
            PrivacyPolicy::DirectPreferred => "direct",
            PrivacyPolicy::Matriochka => "matriochka",
        }
    }

    /// Reads a policy name as people write it.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "server" | "server-based" => PrivacyPolicy::ServerBased,
            "direct" | "direct-preferred" => PrivacyPolicy::DirectPreferred,
            "matriochka" => PrivacyPolicy::Matriochka,
            _ => return None,
        })
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            PrivacyPolicy::ServerBased => 0,
            PrivacyPolicy::DirectPreferred => 1,
            PrivacyPolicy::Matriochka => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            0 => PrivacyPolicy::ServerBased,
            1 => PrivacyPolicy::DirectPreferred,
            2 => PrivacyPolicy::Matriochka,
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "privacy policy",
                    value: value.into(),
                });
            }
        })
    }
}

/// A contact: what I call them, the conversation state, where to reach them.
#[derive(Debug, Clone)]
pub struct ContactRecord {
    /// Stable local id.
    pub id: u64,
    /// My name for them (unique in this home).
    pub name: String,
    /// Keys and rotation state.
    pub conversation: Conversation,
    /// Their servers, most preferred first.
    pub servers: Vec<ServerRef>,
    /// How messages travel.
    pub policy: PrivacyPolicy,
    /// When the contact was made, Unix ms.
    pub added_ms: u64,
    /// Messages dropped because they were not signed by this contact.
    pub dropped_unsigned: u64,
    /// Made from my public (directory) card.
    pub via_public_card: bool,
    /// Their card or mine asked for a classical start (version 3): my offers to move this
    /// conversation to version 2 carry no X-Wing key.
    pub classical_start: bool,
    /// The shape of Matriochka routes to them (version 4), used when the policy is
    /// `matriochka`.
    pub route: RouteOptions,
}

/// The shape of a Matriochka route: how many relays, and the mean of each one's delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOptions {
    /// Relays on the route, 1 to 5 (the first trusted, the last the contact's server when it
    /// relays).
    pub hops: u8,
    /// The mean delay each relay holds the packet for, ms (drawn from an exponential
    /// distribution per hop and message).
    pub mean_delay_ms: u32,
}

impl Default for RouteOptions {
    fn default() -> Self {
        Self {
            hops: 3,
            mean_delay_ms: 200,
        }
    }
}

impl RouteOptions {
    /// Checks the bounds.
    pub fn check(self) -> Result<Self, String> {
        if !(1..=meow_proto::onion::MAX_HOPS as u8).contains(&self.hops) {
            return Err(format!(
                "a route has 1 to {} relays, not {}",
                meow_proto::onion::MAX_HOPS,
                self.hops
            ));
        }
        if self.mean_delay_ms > 600_000 {
            return Err(format!(
                "a mean delay of {} ms is more than 10 minutes",
                self.mean_delay_ms
            ));
        }
        Ok(self)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.hops).varint(self.mean_delay_ms.into());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let opts = Self {
            hops: r.u8("route hops")?,
            mean_delay_ms: r.varint_max(u32::MAX.into(), "route delay")? as u32,
        };
        opts.check().map_err(|_| DecodeError::UnknownValue {
            what: "route options",
            value: opts.hops.into(),
        })
    }
}

impl Encode for ContactRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(4).varint(self.id).string(&self.name);
        w.bytes(&self.conversation.to_bytes());
        w.list(&self.servers, |w, s| s.encode(w));
        w.u8(self.policy.to_u8())
            .varint(self.added_ms)
            .varint(self.dropped_unsigned)
            .bool(self.via_public_card)
            .bool(self.classical_start);
        self.route.encode(w);
    }
}

impl Decode for ContactRecord {
    const WHAT: &'static str = "contact record";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // Version 4: route options; 3: the card's classical start; 2: servers with typed
        // addresses; 1: plain TCP `host:port`.
        let v = versions(r, "contact record", 4)?;
        Ok(Self {
            id: r.varint("contact id")?,
            name: string(r, "contact name")?,
            conversation: Conversation::from_bytes(r.bytes(64 * 1024, "conversation")?)?,
            servers: r.list(16, "contact servers", server_ref(v))?,
            policy: PrivacyPolicy::from_u8(r.u8("policy")?)?,
            added_ms: r.varint("added")?,
            dropped_unsigned: r.varint("dropped")?,
            via_public_card: r.bool("via public card")?,
            classical_start: v >= 3 && r.bool("classical start")?,
            route: if v >= 4 {
                RouteOptions::decode(r)?
            } else {
                RouteOptions::default()
            },
        })
    }
}

/// An invitation of mine waiting for its answer (or my public card, answered many times).
#[derive(Debug, Clone)]
pub struct InvitationRecord {
    /// What I will call the contact (for a public card: a prefix for generated names).
    pub name: String,
    /// The keys promised on the card.
    pub keys: NewContact,
    /// The card itself.
    pub card: Vec<u8>,
    /// Its id.
    pub id: CardId,
    /// A public card (stays after being answered).
    pub public: bool,
    /// Expiry, Unix s.
    pub expires: u64,
}

impl Encode for InvitationRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(1).string(&self.name);
        w.raw(self.keys.contact_key.seed().as_slice());
        w.varint(self.keys.keys.serial.into());
        w.raw(self.keys.keys.conversation.secret_bytes().as_slice())
            .raw(self.keys.keys.lookup.seed().as_slice());
        w.bytes(&self.card)
            .raw(&self.id.0)
            .bool(self.public)
            .varint(self.expires);
    }
}

impl Decode for InvitationRecord {
    const WHAT: &'static str = "invitation record";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "invitation record")?;
        let name = string(r, "invitation name")?;
        let contact_key = ContactKey::from_seed(&r.array("contact key")?);
        let serial = u32v(r, "serial")?;
        let conversation = meow_proto::ConversationKey::from_secret_bytes(r.array("conversation key")?);
        let lookup = meow_proto::LookupKey::from_seed(&r.array("lookup key")?);
        Ok(Self {
            name,
            keys: NewContact {
                contact_key,
                keys: KeySet {
                    serial,
                    conversation,
                    lookup,
                },
            },
            card: r.bytes(8192, "card")?.to_vec(),
            id: CardId(r.array("card id")?),
            public: r.bool("public")?,
            expires: r.varint("expires")?,
        })
    }
}

/// A sealed envelope waiting to be deposited.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    /// Outbox sequence number (delivery order).
    pub seq: u64,
    /// The contact it goes to (0 for an answer to an invitation).
    pub contact: u64,
    /// Who it is for, for people.
    pub label: String,
    /// The message id.
    pub message: MessageId,
    /// The recipient's mailbox.
    pub mailbox: MailboxId,
    /// The recipient's servers.
    pub servers: Vec<ServerRef>,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time, Unix ms.
    pub next_attempt_ms: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// Queued at, Unix ms.
    pub created_ms: u64,
    /// The plugin instance or recipe that queued it (`plugin:NAME`, `recipe:NAME`); `None` for
    /// a person's message or the node's own key updates. Version 2 of the record.
    pub by: Option<String>,
}

impl Encode for OutboxItem {
    fn encode(&self, w: &mut Writer) {
        w.u8(2)
            .varint(self.seq)
            .varint(self.contact)
            .string(&self.label)
            .raw(&self.message.0);
        self.mailbox.encode(w);
        w.list(&self.servers, |w, s| s.encode(w));
        w.bytes(&self.envelope)
            .varint(self.attempts.into())
            .varint(self.next_attempt_ms);
        w.option(self.last_error.as_ref(), |w, e| {
            w.string(e);
        });
        w.varint(self.created_ms);
        w.option(self.by.as_ref(), |w, b| {
            w.string(b);
        });
    }
}

impl Decode for OutboxItem {
    const WHAT: &'static str = "outbox item";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = versions(r, "outbox item", 2)?;
        Ok(Self {
            seq: r.varint("seq")?,
            contact: r.varint("contact")?,
            label: string(r, "label")?,
            message: MessageId(r.array("message id")?),
            mailbox: MailboxId::decode(r)?,
            servers: r.list(16, "servers", server_ref(v))?,
            envelope: r.bytes(meow_proto::padding::MAX_ENVELOPE, "envelope")?.to_vec(),
            attempts: u32v(r, "attempts")?,
            next_attempt_ms: r.varint("next attempt")?,
            last_error: r.option("last error", |r| string(r, "last error"))?,
            created_ms: r.varint("created")?,
            by: match v {
                1 => None,
                _ => r.option("queued by", |r| string(r, "queued by"))?,
            },
        })
    }
}

/// Where a received item came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A contact, directly.
    Contact,
    /// A contact, in a group.
    Group {
        /// The group's id.
        group: [u8; 16],
        /// The group's name.
        name: String,
    },
    /// A server's emergency broadcast.
    Broadcast {
        /// The server's address.
        server: String,
        /// Signed by the server's operator.
        from_operator: bool,
        /// The signer.
        signer: BroadcastPublic,
    },
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// Local order.
    pub seq: u64,
    /// Sender's name (for broadcasts: the signer's fingerprint).
    pub from: String,
    /// Sender contact id (0 for broadcasts).
    pub contact: u64,
    /// Message id.
    pub message: MessageId,
    /// Sender's clock, Unix ms.
    pub sent_at_ms: u64,
    /// Arrival, Unix ms.
    pub received_ms: u64,
    /// Content type.
    pub content_type: ContentType,
    /// Content.
    pub content: Vec<u8>,
    /// Already shown.
    pub read: bool,
    /// Direct, group or broadcast.
    pub origin: Origin,
    /// Sent by a program, not a person (the message's automatic flag). Version 2 of the record.
    pub automatic: bool,
    /// The id of the message it answers, if it is a reply. Version 3 of the record.
    pub reply_to: Option<MessageId>,
}

impl Encode for InboxItem {
    fn encode(&self, w: &mut Writer) {
        w.u8(3)
            .varint(self.seq)
            .string(&self.from)
            .varint(self.contact)
            .raw(&self.message.0);
        w.varint(self.sent_at_ms)
            .varint(self.received_ms)
            .varint(self.content_type.0.into());
        w.bytes(&self.content).bool(self.read);
        match &self.origin {
            Origin::Contact => {
                w.u8(0);
            }
            Origin::Group { group, name } => {
                w.u8(1).raw(group).string(name);
            }
            Origin::Broadcast {
                server,
                from_operator,
                signer,
            } => {
                w.u8(2).string(server).bool(*from_operator);
                signer.encode(w);
            }
        }
        w.bool(self.automatic);
        w.option(self.reply_to.as_ref(), |w, id| {
            w.raw(&id.0);
        });
    }
}

impl Decode for InboxItem {
    const WHAT: &'static str = "inbox item";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = versions(r, "inbox item", 3)?;
        let seq = r.varint("seq")?;
        let from = string(r, "from")?;
        let contact = r.varint("contact")?;
        let message = MessageId(r.array("message id")?);
        let sent_at_ms = r.varint("sent at")?;
        let received_ms = r.varint("received")?;
        let content_type = ContentType(r.varint_max(u16::MAX.into(), "content type")? as u16);
        let content = r.bytes(meow_proto::padding::MAX_ENVELOPE, "content")?.to_vec();
        let read = r.bool("read")?;
        let origin = match r.u8("origin")? {
            0 => Origin::Contact,
            1 => Origin::Group {
                group: r.array("group")?,
                name: string(r, "group name")?,
            },
            2 => Origin::Broadcast {
                server: string(r, "server")?,
                from_operator: r.bool("from operator")?,
                signer: BroadcastPublic::decode(r)?,
            },
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "origin",
                    value: value.into(),
                });
            }
        };
        let automatic = v >= 2 && r.bool("automatic")?;
        let reply_to = match v {
            3.. => r.option("reply to", |r| Ok(MessageId(r.array("id replied to")?)))?,
            _ => None,
        };
        Ok(Self {
            seq,
            from,
            contact,
            message,
            sent_at_ms,
            received_ms,
            content_type,
            content,
            read,
            origin,
            automatic,
            reply_to,
        })
    }
}

/// Something bots must hear of, stored in the same write as what it reports, so that it
/// reaches them whichever command fetched the mail (`meow inbox` as well as the daemon's own
/// polling) and after a crash. The runtime deletes each once it has handed it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRecord {
    /// The inbox item with this sequence number arrived.
    Message {
        /// Its inbox sequence number.
        inbox: u64,
    },
    /// A contact was added.
    ContactAdded {
        /// My name for them.
        name: String,
        /// Through my public (directory) card.
        via_public_card: bool,
    },
    /// One of the user's devices was linked.
    DeviceLinked {
        /// Its name.
        device: String,
    },
    /// One of the user's devices was revoked.
    DeviceRevoked {
        /// Its name.
        device: String,
    },
}

impl Encode for EventRecord {
    fn encode(&self, w: &mut Writer) {
        w.u8(1);
        match self {
            EventRecord::Message { inbox } => {
                w.u8(0).varint(*inbox);
            }
            EventRecord::ContactAdded { name, via_public_card } => {
                w.u8(1).string(name).bool(*via_public_card);
            }
            EventRecord::DeviceLinked { device } => {
                w.u8(2).string(device);
            }
            EventRecord::DeviceRevoked { device } => {
                w.u8(3).string(device);
            }
        }
    }
}

impl Decode for EventRecord {
    const WHAT: &'static str = "event";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        version(r, "event")?;
        Ok(match r.u8("event kind")? {
            0 => EventRecord::Message {
                inbox: r.varint("inbox seq")?,
            },
            1 => EventRecord::ContactAdded {
                name: string(r, "contact name")?,
                via_public_card: r.bool("via public card")?,
            },
            2 => EventRecord::DeviceLinked {
                device: string(r, "device name")?,
            },
            3 => EventRecord::DeviceRevoked {
                device: string(r, "device name")?,
            },
            value => {
                return Err(DecodeError::UnknownValue {
                    what: "event kind",
                    value: value.into(),
                });
            }
        })
    }
}
