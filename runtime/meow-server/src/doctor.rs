//! `meow doctor --server` for a server's data folder: its key, its store's integrity mark, and
//! every mailbox's statistics against the messages really stored.

use std::path::Path;

use meow_store::server::ServerStore;

use crate::ServerError;

/// What a check found: lines found, and problems (empty: healthy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What was checked, one line each.
    pub found: Vec<String>,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

/// Checks the server data in `dir` (the server must not be running); with `accept`, a store
/// that lost writes is accepted as it is now.
pub fn check(dir: &Path, accept: bool) -> Result<Report, ServerError> {
    let mut r = Report::default();
    match std::fs::read(dir.join("server.key")) {
        Ok(k) if k.len() == 32 => r.found.push("server key: ok".into()),
        Ok(_) => r.problems.push("server.key is damaged (expected 32 bytes)".into()),
        Err(e) => r.problems.push(format!("server.key cannot be read: {e}")),
    }
    let store = match ServerStore::inspect(dir) {
        Ok(s) => s,
        // The storage engine cannot read the journal at all: nothing to accept, only to restore.
        Err(meow_store::StoreError::Damaged { problem, .. }) => {
            r.problems
                .push(format!("the store: {problem}; only a backup can bring it back"));
            return Ok(r);
        }
        Err(e) => return Err(e.into()),
    };
    let integrity = store.integrity();
    match integrity.problem() {
        Some(p) => r.problems.push(format!("the store: {p}")),
        None => r
            .found
            .push(format!("integrity mark: ok (generation {})", integrity.generation)),
    }
    let stats = store.load_mailboxes()?;
    let (stored, bad) = store.count_messages()?;
    let messages: u64 = stored.values().map(|s| s.count).sum();
    let bytes: u64 = stored.values().map(|s| s.bytes).sum();
    r.found.push(format!(
        "{} mailbox(es), {messages} message(s), {bytes} envelope bytes",
        stored.len()
    ));
    if bad > 0 {
        r.problems.push(format!("{bad} message record(s) are damaged"));
    }
    let mismatched = stored
        .iter()
        .filter(|(m, found)| {
            stats
                .get(*m)
                .is_none_or(|s| s.count != found.count || s.bytes != found.bytes)
        })
        .count()
        + stats.keys().filter(|m| !stored.contains_key(*m)).count();
    if mismatched > 0 {
        r.problems.push(format!(
            "{mismatched} mailbox(es) hold other messages than their statistics say"
        ));
    }
    r.found.push(format!("{} broadcast(s)", store.load_broadcasts()?.len()));
    r.found
        .push(format!("{} directory entr(ies)", store.load_directory()?.len()));
    if accept && !r.problems.is_empty() {
        store.accept_as_is()?;
        r.found
            .push("accepted as it is: the integrity mark now matches the store (what was lost stays lost)".into());
    }
    Ok(r)
}
