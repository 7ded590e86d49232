//! What happened while the node worked: the events plugins and recipes react to.

use crate::records::InboxItem;

/// Something that happened in the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A message was received and stored (direct, group or broadcast: see `item.origin`).
    Message(InboxItem),
    /// A contact was added (an answer to my invitation, or someone answering my public card).
    ContactAdded {
        /// My name for them.
        name: String,
        /// They found me through my public (directory) card.
        via_public_card: bool,
    },
    /// The contact acknowledged my key rotation: the new keys are now current.
    RotationConfirmed {
        /// The contact.
        contact: String,
        /// The rotation's serial.
        serial: u32,
    },
    /// The contact rotated its keys; I switched and will acknowledge.
    PeerRotated {
        /// The contact.
        contact: String,
        /// The rotation's serial.
        serial: u32,
    },
    /// A group I am in changed (I joined, members changed, I was removed).
    GroupChanged {
        /// The group's name.
        group: String,
        /// What changed, in words.
        change: String,
    },
    /// One of the user's devices was linked (this one's own link included).
    DeviceLinked {
        /// Its name.
        device: String,
    },
    /// One of the user's devices was revoked.
    DeviceRevoked {
        /// Its name.
        device: String,
    },
    /// A message was discarded.
    Dropped {
        /// Whose mailbox it arrived in.
        contact: String,
        /// Why.
        reason: String,
    },
}
