//! What plugins react to. The hosts turn these into WIT values or Lua tables.

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEvent {
    /// Message id (hex), for replies.
    pub id: String,
    /// The sender's contact name.
    pub sender: String,
    /// "text", "json", "binary", …
    pub content_type: String,
    /// The content.
    pub body: Vec<u8>,
    /// The content as text, when it is text or JSON.
    pub text: Option<String>,
    /// Sender's clock, Unix ms.
    pub sent_at: u64,
    /// The group, if it was sent to one.
    pub group: Option<String>,
    /// Sent by a program (another bot), not a person. Instances only see such messages when
    /// `accept_automatic: true` is set for them in meow.yaml.
    pub automatic: bool,
    /// The id (hex) of the message it answers, if it is a reply.
    pub reply_to: Option<String>,
}

/// An emergency broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastEvent {
    /// The server's address.
    pub server: String,
    /// Signed by the server's operator.
    pub from_operator: bool,
    /// The text.
    pub text: String,
    /// Sent at, Unix ms.
    pub sent_at: u64,
}

/// An event delivered to plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The runtime started, or the instance was (re)loaded.
    Startup,
    /// A message arrived.
    Message(MessageEvent),
    /// One of the instance's timers fired.
    Timer {
        /// Its id.
        id: u64,
        /// Its name.
        name: String,
    },
    /// A contact was added.
    ContactAdded {
        /// Its name.
        name: String,
        /// Found through the directory.
        via_directory: bool,
    },
    /// A broadcast arrived.
    Broadcast(BroadcastEvent),
    /// A message arrived on an MQTT topic the instance subscribed to.
    Mqtt {
        /// The topic it was published on.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
    },
    /// One of the user's devices was linked or revoked (docs/DEVICES.md).
    Device {
        /// `linked` or `revoked`.
        change: String,
        /// The device's name.
        device: String,
    },
}

impl Event {
    /// The event's kind, as used in logs and Lua handler names (`on_<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Startup => "startup",
            Event::Message(_) => "message",
            Event::Timer { .. } => "timer",
            Event::ContactAdded { .. } => "contact_added",
            Event::Broadcast(_) => "broadcast",
            Event::Mqtt { .. } => "mqtt",
            Event::Device { .. } => "device",
        }
    }
}
