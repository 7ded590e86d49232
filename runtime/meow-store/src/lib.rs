//! Durable storage for MEOW, on fjall.
//!
//! - [`server`]: a server's mailboxes, broadcasts and directory. Writes go through
//!   [`server::ServerStore::commit`] with an fsync, so a server acknowledges a deposit only once it
//!   is on disk; callers batch many operations into one commit (group commit).
//! - [`vault`]: a client's encrypted home: everything is sealed under a key derived from the
//!   password with Argon2id before it reaches fjall.

#![forbid(unsafe_code)]

pub mod server;
pub mod vault;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (disk full, I/O error, corrupt files).
    #[error("storage: {0}")]
    Engine(#[from] fjall::Error),
    /// A stored record does not decode: the files were changed or damaged.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    /// Another process holds this directory.
    #[error("{0} is in use by another process")]
    Locked(String),
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The password does not open this vault.
    #[error("wrong password")]
    WrongPassword,
    /// The directory holds no vault.
    #[error("no MEOW home at {0} (run `meow init` first)")]
    NoVault(String),
    /// A vault already exists.
    #[error("a MEOW home already exists at {0}")]
    VaultExists(String),
    /// A cryptographic failure while sealing or opening.
    #[error("vault crypto: {0}")]
    Crypto(#[from] meow_proto::crypto::CryptoError),
}
