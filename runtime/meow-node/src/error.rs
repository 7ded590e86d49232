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
#[non_exhaustive]
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
    /// No compartment opens with the password given.
    #[error("no compartment opens with this password (to make a new one, say so: `meow hide CONTACT --new`)")]
    NoCompartment,
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
    /// The outbox holds its maximum of messages waiting for delivery.
    #[error("the outbox is full ({limit} messages wait for delivery): nothing more is queued until servers take some")]
    OutboxFull {
        /// The bound.
        limit: usize,
    },
    /// A file is larger than this home sends or takes in.
    #[error("a file of {size} bytes is larger than this home's limit ({limit} bytes; meow.yaml `files: max_size`)")]
    FileTooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file cannot be described for sending.
    #[error(transparent)]
    File(#[from] meow_proto::file::FileError),
    /// No file has this id.
    #[error("no file {0:?} (see `meow file list`)")]
    UnknownFile(String),
    /// Several files start with this id.
    #[error("several files start with {0:?}: give more of the id")]
    AmbiguousFile(String),
    /// A file is still on its way in.
    #[error("file {id} is still on its way in ({received} of {chunks} chunks)")]
    FileIncomplete {
        /// The file.
        id: String,
        /// Chunks in.
        received: u32,
        /// Chunks in all.
        chunks: u32,
    },
    /// A stored record is missing or its key is damaged.
    #[error("damaged home: {0}; `meow doctor` says more")]
    DamagedRecord(&'static str),
    /// A broadcast text is too long.
    #[error("a broadcast is at most {max} bytes ({len} given)")]
    BroadcastTooLong {
        /// The limit.
        max: usize,
        /// The text's length.
        len: usize,
    },
    /// The directory needs a public card and there is none.
    #[error("you have no public card (make one with `meow invite --public`)")]
    NoPublicCard,
    /// Nothing to withdraw from the directory.
    #[error("you have no directory entry")]
    NoDirectoryEntry,
    /// An answer card that answers no invitation of mine.
    #[error(
        "this answer does not match any invitation of mine (it was made for another home, or the invitation was already answered)"
    )]
    UnmatchedAnswer,
    /// A card accepted before.
    #[error("this card was already accepted: the contact is {0:?}")]
    AlreadyAccepted(String),
    /// A card without a nickname, and no name given.
    #[error("the card has no nickname: choose a name with --name NAME")]
    NoNickname,
    /// Something this version does not do yet.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A value given is out of bounds or ambiguous.
    #[error("{0}")]
    Invalid(String),
    /// Linking, listing or syncing the user's devices failed (the sentence says why).
    #[error("{0}")]
    Device(String),
    /// No configured server matches.
    #[error("no server {0:?} (see `meow servers list`)")]
    UnknownServer(String),
    /// No group has this name.
    #[error("unknown group {0:?} (see `meow group list`)")]
    UnknownGroup(String),
    /// A group already has this name.
    #[error("a group named {0:?} already exists")]
    GroupExists(String),
    /// Changing members needs the group's owner.
    #[error("only the owner of {0:?} can change its members")]
    NotGroupOwner(String),
    /// The contact is a member already.
    #[error("{contact} is already in {group}")]
    AlreadyMember {
        /// The contact.
        contact: String,
        /// The group.
        group: String,
    },
    /// The contact is not a member.
    #[error("{contact} is not in {group}")]
    NotMember {
        /// The contact.
        contact: String,
        /// The group.
        group: String,
    },
    /// A broken invariant: a bug, reported instead of a panic.
    #[error("internal error: {0} (please report it)")]
    Internal(&'static str),
    /// I left the group (or it was dissolved, or I was removed).
    #[error("you are no longer in {0:?}")]
    LeftGroup(String),
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
