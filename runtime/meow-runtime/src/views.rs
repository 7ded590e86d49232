//! What the control API returns: plain data, serializable, with no secrets in it. The CLI
//! formats these for people (or prints them as JSON); an embedding program reads them directly.

use serde::{Deserialize, Serialize};

/// A server this home uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerView {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its key (text form).
    pub key: String,
    /// Its key's fingerprint.
    pub fingerprint: String,
    /// Its card (text form).
    pub card: String,
    /// The link this home reaches it through for link sessions, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl From<&meow_proto::ServerCard> for ServerView {
    fn from(c: &meow_proto::ServerCard) -> Self {
        Self {
            name: c.name.clone(),
            address: c.address.to_string(),
            key: c.key.to_text(),
            fingerprint: c.key.fingerprint(),
            card: c.to_text(),
            via: None,
        }
    }
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    /// My name for them.
    pub name: String,
    /// Their contact key (text form).
    pub their_key: String,
    /// Its fingerprint.
    pub fingerprint: String,
    /// My contact key for them (text form).
    pub my_key: String,
    /// Their servers' addresses.
    pub servers: Vec<String>,
    /// The privacy policy.
    pub policy: String,
    /// Where the contact can be reached directly now, if it said so (`direct-preferred`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
    /// My current key serial.
    pub key_serial: u32,
    /// My rotation waiting for their acknowledgement.
    pub rotation_pending: Option<u32>,
    /// Messages in their mailbox that were not signed by them.
    pub dropped_unsigned: u64,
    /// The conversation's protocol version, for people ("v2 (double ratchet, ...)").
    pub protocol: String,
    /// Found me through my directory card.
    pub via_directory: bool,
    /// Added at, Unix ms.
    pub added_ms: u64,
    /// In a hidden compartment (shown because it is unlocked).
    #[serde(default)]
    pub hidden: bool,
    /// Matriochka relays per route to them.
    #[serde(default)]
    pub hops: u8,
    /// Mean delay per relay on routes to them, ms.
    #[serde(default)]
    pub mean_delay_ms: u32,
}

/// A server of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogView {
    /// Its name (not unique: compare keys).
    pub name: String,
    /// Where it is reached.
    pub addresses: Vec<String>,
    /// Its session key's fingerprint (the key on its card).
    pub fingerprint: String,
    /// Its identity key (text form): the key that signs its descriptors.
    pub identity: String,
    /// Whether it relays Matriochka packets.
    pub relays: bool,
    /// The longest delay it holds a packet for, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u32>,
    /// Whether routes may start at it.
    pub trusted: bool,
    /// One of this home's servers.
    pub mine: bool,
    /// Its descriptor's sequence number.
    pub sequence: u64,
    /// When its descriptor expires, Unix s.
    pub expires_at: u64,
}

impl From<&meow_node::matriochka::CatalogEntry> for CatalogView {
    fn from(e: &meow_node::matriochka::CatalogEntry) -> Self {
        let b = &e.descriptor.body;
        Self {
            name: b.name.clone(),
            addresses: b.addresses.iter().map(ToString::to_string).collect(),
            fingerprint: b.session_key.fingerprint(),
            identity: e.descriptor.identity.to_text(),
            relays: b.relay.is_some(),
            max_delay_ms: b.relay.as_ref().map(|r| r.max_delay_ms),
            trusted: e.trusted,
            mine: e.mine,
            sequence: b.sequence,
            expires_at: b.expires_at,
        }
    }
}

/// A Matriochka route shape for people.
pub fn describe_route(r: meow_node::RouteOptions) -> String {
    format!("{} hops, mean delay {} ms", r.hops, r.mean_delay_ms)
}

/// An invitation waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    /// The name the contact will have.
    pub name: String,
    /// A public (directory) card.
    pub public: bool,
    /// Valid until, Unix seconds.
    pub expires: u64,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum DeliveryView {
    /// A server of the recipient holds it.
    Delivered {
        /// That server.
        server: String,
    },
    /// It waits in the outbox.
    Queued {
        /// Why.
        reason: String,
    },
    /// Another of the user's devices holds the conversation and sends it (docs/DEVICES.md).
    Handed,
}

impl From<meow_node::sync::Delivery> for DeliveryView {
    fn from(d: meow_node::sync::Delivery) -> Self {
        match d {
            meow_node::sync::Delivery::Delivered { server } => DeliveryView::Delivered {
                server: server.to_string(),
            },
            meow_node::sync::Delivery::Queued { reason } => DeliveryView::Queued { reason },
            meow_node::sync::Delivery::Handed => DeliveryView::Handed,
        }
    }
}

/// Where a received message came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OriginView {
    /// A contact.
    Contact,
    /// A contact, in a group.
    Group {
        /// The group.
        group: String,
    },
    /// A server's emergency broadcast.
    Broadcast {
        /// The server.
        server: String,
        /// From the server's operator.
        from_operator: bool,
        /// The signer's key (text form).
        signer: String,
        /// Its fingerprint.
        signer_fingerprint: String,
    },
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Local order.
    pub seq: u64,
    /// Who sent it.
    pub from: String,
    /// Its id (hex).
    pub id: String,
    /// Sender's clock, Unix ms.
    pub sent_at_ms: u64,
    /// Arrival, Unix ms.
    pub received_ms: u64,
    /// Content type name.
    pub content_type: String,
    /// The content as text, when it is text or JSON.
    pub text: Option<String>,
    /// Content length.
    pub bytes: usize,
    /// Sent by a program.
    pub automatic: bool,
    /// Where it came from.
    pub origin: OriginView,
    /// The id (hex) of the message it answers, if it is a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl From<&meow_node::InboxItem> for MessageView {
    fn from(i: &meow_node::InboxItem) -> Self {
        use meow_proto::ContentType;
        let origin = match &i.origin {
            meow_node::Origin::Contact => OriginView::Contact,
            meow_node::Origin::Group { name, .. } => OriginView::Group { group: name.clone() },
            meow_node::Origin::Broadcast {
                server,
                from_operator,
                signer,
            } => OriginView::Broadcast {
                server: server.clone(),
                from_operator: *from_operator,
                signer: signer.to_text(),
                signer_fingerprint: signer.fingerprint(),
            },
        };
        Self {
            seq: i.seq,
            from: i.from.clone(),
            id: i.message.to_hex(),
            sent_at_ms: i.sent_at_ms,
            received_ms: i.received_ms,
            content_type: i.content_type.name(),
            // A file's message is its JSON description (`meow_node::files::FileRecord::describe`).
            text: matches!(
                i.content_type,
                ContentType::TEXT | ContentType::JSON | ContentType::FILE
            )
            .then(|| String::from_utf8_lossy(&i.content).into_owned()),
            bytes: i.content.len(),
            automatic: i.automatic,
            origin,
            reply_to: i.reply_to.map(|id| id.to_hex()),
        }
    }
}

/// A file received, on its way in, or just sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    /// Its id (hex): `meow file save ID`.
    pub id: String,
    /// Who sent it (or, for a file sent, to whom).
    pub contact: String,
    /// Its name.
    pub name: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file (hex).
    pub sha256: String,
    /// Chunks in.
    pub received: u32,
    /// Chunks in all.
    pub chunks: u32,
    /// Every chunk is in and the digest matched.
    pub complete: bool,
    /// When its first chunk came, Unix ms (0 for a file sent).
    pub first_ms: u64,
    /// When its last chunk came, Unix ms.
    pub last_ms: u64,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// I own it.
    pub owner: bool,
    /// Its members.
    pub members: Vec<String>,
    /// I left it (or was removed).
    pub left: bool,
    /// Its membership epoch.
    pub epoch: u64,
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// The publisher's nickname.
    pub nickname: Option<String>,
    /// Their description.
    pub description: String,
    /// Their tags.
    pub tags: Vec<String>,
    /// Their key's fingerprint.
    pub fingerprint: String,
    /// The card to accept.
    pub card: String,
}

impl From<&meow_proto::directory::DirectoryEntry> for EntryView {
    fn from(e: &meow_proto::directory::DirectoryEntry) -> Self {
        Self {
            nickname: e.card.body.nickname.clone(),
            description: e.description.clone(),
            tags: e.tags.clone(),
            fingerprint: e.publisher().fingerprint(),
            card: e.card.to_text(),
        }
    }
}

/// A plugin instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceView {
    /// The instance.
    pub instance: String,
    /// `plugin@version` (or `native`).
    pub plugin: String,
    /// How it is doing.
    pub status: crate::Status,
}

/// A loaded recipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipeView {
    /// Its name.
    pub name: String,
    /// Its trigger kinds.
    pub triggers: Vec<String>,
    /// Runs in progress.
    pub running: usize,
}

/// One recipe file checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// The file.
    pub file: String,
    /// Its recipe, if it loads.
    pub recipe: Option<String>,
    /// Its trigger kinds.
    pub triggers: Vec<String>,
    /// Its actions.
    pub actions: usize,
    /// What is wrong, if anything.
    pub error: Option<String>,
}

/// The daemon's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The home.
    pub home: String,
    /// The embedded server's address, if any.
    pub server: Option<String>,
    /// Plugin instances.
    pub instances: Vec<InstanceView>,
    /// Recipes.
    pub recipes: Vec<RecipeView>,
    /// Messages in the outbox.
    pub outbox: usize,
    /// Events waiting for plugins and recipes.
    pub events_waiting: usize,
    /// The embedded server's serial lines and radios.
    #[serde(default)]
    pub links: Vec<LinkView>,
    /// The embedded server's Matriochka relay, when it relays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayView>,
}

/// What the embedded server's Matriochka relay has done since it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayView {
    /// Packets taken.
    pub accepted: u64,
    /// Packets handed to the next relay.
    pub forwarded: u64,
    /// Envelopes deposited (here or on the target server).
    pub delivered: u64,
    /// Replays dropped.
    pub replays: u64,
    /// Packets refused (not for its keys, malformed, over its rate).
    pub refused: u64,
    /// Packets dropped after every attempt to hand them on failed.
    pub lost: u64,
    /// Packets held now, waiting for their delay.
    pub held: usize,
}

/// A serial line or radio of the embedded server: what it carried and its airtime budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    /// The link as configured (`rnode:/dev/ttyACM0:115200`).
    pub link: String,
    /// Datagrams sent and their bytes.
    pub sent: (u64, u64),
    /// Datagrams received and their bytes.
    pub received: (u64, u64),
    /// Frames dropped (bad CRC, framing, incomplete fragments).
    pub dropped: u64,
    /// Datagrams waiting for airtime.
    pub queued: usize,
    /// Airtime used, ms.
    pub airtime_used_ms: u64,
    /// Airtime left this hour and the hourly budget, ms (radios only).
    pub airtime_left_ms: Option<(u64, u64)>,
}

impl LinkView {
    /// The view of a port's status.
    pub fn new(link: String, s: &meow_net::port::PortStatus) -> Self {
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        Self {
            link,
            sent: s.sent,
            received: s.received,
            dropped: s.dropped,
            queued: s.queued,
            airtime_used_ms: ms(s.airtime_used),
            airtime_left_ms: s.airtime.map(|(left, budget)| (ms(left), ms(budget))),
        }
    }
}
