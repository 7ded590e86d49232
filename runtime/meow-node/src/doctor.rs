//! `meow doctor` for a home: opens the vault whatever its integrity mark says, decrypts and
//! decodes every record, and says what it found.

use std::path::Path;

use meow_proto::codec::Decode;
use meow_store::vault::{Table, Vault};

use crate::records::{ContactRecord, EventRecord, InboxItem, OutboxItem};
use crate::{NodeError, Result};

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What was checked, one line each.
    pub found: Vec<String>,
    /// What is wrong, one line each (empty: healthy).
    pub problems: Vec<String>,
}

/// Decodes the records of one table with `decode`, counting the ones that fail.
fn check_table(vault: &Vault, table: Table, name: &str, decode: fn(&[u8]) -> bool, r: &mut Report) -> Result<()> {
    let records = vault.scan(table)?;
    let undecodable = records.iter().filter(|(_, v)| !decode(v)).count();
    r.found.push(format!("{name}: {} record(s)", records.len()));
    if undecodable > 0 {
        r.problems
            .push(format!("{name}: {undecodable} record(s) do not decode"));
    }
    Ok(())
}

fn any(_: &[u8]) -> bool {
    true
}

/// Checks the home in `dir`; with `accept`, a home that lost writes is accepted as it is now
/// (its integrity mark is reset) once the report is made.
pub fn check(dir: &Path, password: &[u8], accept: bool) -> Result<Report> {
    let mut r = Report::default();
    let vault = match Vault::inspect(dir, password) {
        Ok(v) => v,
        // The storage engine cannot read the journal at all: nothing to accept, only to restore.
        Err(meow_store::StoreError::Damaged { problem, .. }) => {
            r.problems
                .push(format!("the vault: {problem}; only a backup can bring it back"));
            return Ok(r);
        }
        Err(e) => return Err(e.into()),
    };
    let integrity = vault.integrity();
    match integrity.problem() {
        Some(p) => r.problems.push(format!("the vault: {p}")),
        None => r
            .found
            .push(format!("integrity mark: ok (generation {})", integrity.generation)),
    }
    if vault.undecryptable() > 0 {
        r.problems.push(format!(
            "the vault: {} record(s) do not decrypt (changed or damaged); the others are checked below",
            vault.undecryptable()
        ));
    }
    for (table, name) in Table::ALL {
        let decode: fn(&[u8]) -> bool = match table {
            Table::Contacts => |b| ContactRecord::from_bytes(b).is_ok(),
            Table::Outbox => |b| OutboxItem::from_bytes(b).is_ok(),
            Table::Inbox => |b| InboxItem::from_bytes(b).is_ok(),
            Table::Events => |b| EventRecord::from_bytes(b).is_ok(),
            _ => any,
        };
        check_table(&vault, table, name, decode, &mut r)?;
    }
    if vault.count(Table::Profile) == 0 {
        r.problems.push("the home has no profile record".into());
    }
    if accept && !r.problems.is_empty() {
        vault.accept_as_is().map_err(NodeError::from)?;
        r.found
            .push("accepted as it is: the integrity mark now matches the vault (what was lost stays lost)".into());
    }
    Ok(r)
}
