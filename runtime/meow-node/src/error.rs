//! The node's errors: each says in one line what went wrong and, where it helps, what to do.

use meow_proto::card::CardError;
use meow_proto::codec::DecodeError;
use meow_proto::conversation::ConversationError;
use meow_proto::envelope::EnvelopeError;
use meow_proto::invitation::InvitationError;
use meow_proto::server_card::ServerCardError;
use meow_store::StoreError;

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The home is locked by another process.
    #[error("this home is in use by another meow process (is `meow run` running on it?)")]
    Locked,
    /// Opening or writing the vault failed.
    #[error(transparent)]
    Store(StoreError),
    /// A stored record is damaged.
    #[error("damaged record in the home: {0}")]
    Damaged(#[from] DecodeError),
    /// A card is not usable.
    #[error(transparent)]
    Card(#[from] CardError),
    /// An invitation step failed.
    #[error(transparent)]
    Invitation(#[from] InvitationError),
    /// A server card is not usable.
    #[error(transparent)]
    ServerCard(#[from] ServerCardError),
    /// No contact has this name.
    #[error("unknown contact {0:?} (see `meow contacts`)")]
    UnknownContact(String),
    /// A contact already has this name.
    #[error("a contact named {0:?} already exists")]
    ContactExists(String),
    /// The name cannot be used.
    #[error("invalid name {0:?}: use 1 to 64 characters without spaces or control characters")]
    BadName(String),
    /// The home has no server.
    #[error("no server configured: add one with `meow servers add <server card>`")]
    NoServers,
    /// The server is already known.
    #[error("server {0} is already configured")]
    ServerExists(String),
    /// A message could not be sealed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// A conversation operation was refused.
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    /// A server could not be used.
    #[error(transparent)]
    Network(#[from] meow_net::ClientError),
    /// Something else that can't be used as given.
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for NodeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Locked(_) => NodeError::Locked,
            e => NodeError::Store(e),
        }
    }
}

/// Result of node operations.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;
