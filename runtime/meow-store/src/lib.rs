//! Durable storage for MEOW, on fjall.
//!
//! - [`server`]: a server's mailboxes, broadcasts and directory. Writes go through
//!   [`server::ServerStore::commit`] with an fsync, so a server acknowledges a deposit only once it
//!   is on disk; callers batch many operations into one commit (group commit).
//! - [`vault`]: a client's encrypted home: everything is sealed under a key derived from the
//!   password with Argon2id before it reaches fjall, in compartments (main, hidden, decoys)
//!   that look alike on disk.

#![forbid(unsafe_code)]

pub mod mark;
pub mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod vault;

/// Opens the fjall database at `path`. fjall 3.1 stops with a panic (an assertion in its journal
/// reader) on some overwritten journals instead of returning an error; that panic is caught here
/// and becomes [`StoreError::Damaged`] for `what`, so a damaged store is one line, not a crash.
/// The panic hook is quiet meanwhile: the message would be a backtrace, not an explanation.
pub(crate) fn open_database(
    builder: fjall::DatabaseBuilder<fjall::Database>,
    dir: &std::path::Path,
    what: &str,
) -> Result<fjall::Database, StoreError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.open()));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(fjall::Error::Locked)) => Err(StoreError::Locked(dir.display().to_string())),
        Ok(Err(fjall::Error::JournalRecovery(e))) => Err(StoreError::Damaged {
            what: format!("{what} at {}", dir.display()),
            problem: format!("its journal lost writes: a record in it does not read ({e:?})"),
        }),
        Ok(Err(e)) => Err(StoreError::Engine(e)),
        Err(_) => Err(StoreError::Damaged {
            what: format!("{what} at {}", dir.display()),
            problem: "its journal lost writes: a record in it was overwritten and does not read".into(),
        }),
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The store lost writes or its integrity mark is gone (what happened, in one line).
    #[error("{what} is damaged: {problem}; restore it from a backup, or see `meow doctor`")]
    Damaged {
        /// Which store.
        what: String,
        /// What is wrong.
        problem: String,
    },
    /// The password given for a hidden compartment is the main password.
    #[error("that is the main password, not a compartment's")]
    MainPassword,
    /// The password opens a hidden compartment, not the home.
    #[error(
        "this password opens a hidden compartment, not the home: give the main password, and this one as a compartment password"
    )]
    NotMain,
    /// A new compartment's password opens a compartment already.
    #[error("this password opens a compartment already: unlock it instead")]
    CompartmentExists,
    /// A write was aimed at a compartment that was locked meanwhile.
    #[error("that compartment was locked meanwhile: unlock it and try again")]
    NotOpen,
    /// Every slot of the vault is in use by an open compartment.
    #[error("every compartment slot of this home is open: lock one first")]
    NoFreeSlot,
    /// A cryptographic failure while sealing or opening.
    #[error("vault crypto: {0}")]
    Crypto(#[from] meow_proto::crypto::CryptoError),
}
