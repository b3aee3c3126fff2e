//! Consistent online snapshots for backups, and the key-store side of a restore. Keys are
//! never part of a data snapshot: they travel in a separate key-store file.

use std::path::Path;

use rampart_store::{KeyRecord, StoreError, StoreResult};
use rusqlite::{params, Connection};

use crate::{map_err, SqliteStore};

fn io(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

impl SqliteStore {
    /// Writes a transactionally consistent copy of the database to `path` while writes go
    /// on (`VACUUM INTO` reads one snapshot), then strips the data keys out of the copy.
    pub async fn snapshot_into(&self, path: &Path) -> StoreResult<()> {
        let target = path.to_owned();
        if target.exists() {
            std::fs::remove_file(&target).map_err(io)?;
        }
        let p = target.display().to_string();
        self.read(move |c| c.execute("VACUUM INTO ?1", params![p]).map(|_| ()).map_err(map_err)).await?;
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&target).map_err(map_err)?;
            conn.pragma_update(None, "secure_delete", "ON").map_err(map_err)?;
            conn.execute_batch("DELETE FROM data_keys; VACUUM;").map_err(map_err)
        })
        .await
        .map_err(|e| StoreError::Internal(Box::new(e)))?
    }
}

/// Puts `keys` into a restored database file (which holds none) and returns it ready to open.
pub fn install_keys(db: &Path, keys: &[KeyRecord]) -> StoreResult<()> {
    let mut conn = Connection::open(db).map_err(map_err)?;
    let tx = conn.transaction().map_err(map_err)?;
    tx.execute("DELETE FROM data_keys", []).map_err(map_err)?;
    for k in keys {
        tx.execute(
            "INSERT INTO data_keys (key_id, kind, owner, kek_version, wrapped, created_at, successor)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                k.key_id,
                k.kind.as_str(),
                k.owner,
                k.kek_version,
                k.wrapped,
                k.created_at.as_millis(),
                k.successor
            ],
        )
        .map_err(map_err)?;
    }
    tx.commit().map_err(map_err)
}

/// `PRAGMA integrity_check` and a count of documents, on a file not otherwise in use.
pub fn check_file(db: &Path) -> StoreResult<(bool, u64)> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
    let verdict: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(map_err)?;
    let docs: i64 = conn.query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).map_err(map_err)?;
    Ok((verdict == "ok", u64::try_from(docs).unwrap_or(0)))
}
