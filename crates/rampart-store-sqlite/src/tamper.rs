//! Edits of a database file that only someone with disk access could make. Tests outside
//! this crate use them to show each one is found (the chain, the AEAD, the signed head);
//! they never open the database themselves. Compiled only with the `tamper` feature, which
//! only dev-dependencies enable.

use std::path::Path;

use rusqlite::{params, Connection};

pub use rampart_store::tamper::AuditEdit;

use crate::{map_err, StoreResult};

fn open(db: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(db).map_err(map_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(map_err)?;
    Ok(conn)
}

/// The sealed (or, in an unencrypted collection, plain) body of a document as stored.
pub fn document_body(db: &Path, id: &str) -> StoreResult<Vec<u8>> {
    open(db)?.query_row("SELECT body FROM documents WHERE id = ?1", [id], |r| r.get(0)).map_err(map_err)
}

pub fn set_document_body(db: &Path, id: &str, body: &[u8]) -> StoreResult<()> {
    open(db)?.execute("UPDATE documents SET body = ?1 WHERE id = ?2", params![body, id]).map_err(map_err)?;
    Ok(())
}

/// Transplants one document's stored body onto another.
pub fn copy_document_body(db: &Path, from: &str, to: &str) -> StoreResult<()> {
    open(db)?
        .execute("UPDATE documents SET body = (SELECT body FROM documents WHERE id = ?1) WHERE id = ?2", [from, to])
        .map_err(map_err)?;
    Ok(())
}

pub fn edit_audit(db: &Path, edit: &AuditEdit) -> StoreResult<()> {
    let conn = open(db)?;
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| conn.execute(sql, p).map(|_| ()).map_err(map_err);
    match edit {
        AuditEdit::ChangeDetails(seq) => run("UPDATE audit_log SET details = '{\"k\":1}' WHERE seq = ?1", &[seq]),
        AuditEdit::ChangeIp(seq, ip) => run("UPDATE audit_log SET ip_address = ?2 WHERE seq = ?1", &[seq, ip]),
        AuditEdit::Remove(seq) => run("DELETE FROM audit_log WHERE seq = ?1", &[seq]),
        AuditEdit::Swap(a, b) => {
            run("UPDATE audit_log SET seq = -seq WHERE seq IN (?1, ?2)", &[a, b])?;
            run("UPDATE audit_log SET seq = CASE seq WHEN -?1 THEN ?2 ELSE ?1 END WHERE seq IN (-?1, -?2)", &[a, b])
        }
        AuditEdit::InsertAt(seq) => {
            run("UPDATE audit_log SET seq = seq + 1000000 WHERE seq >= ?1", &[seq])?;
            run("UPDATE audit_log SET seq = seq - 999999 WHERE seq >= 1000000", &[])?;
            run(
                "INSERT INTO audit_log SELECT ?1, timestamp, 'login', 'mallory', ip_address, 1, details, request_id, \
                 prev_hash, hash FROM audit_log WHERE seq = ?1 - 1",
                &[seq],
            )
        }
        AuditEdit::TruncateFrom(seq) => run("DELETE FROM audit_log WHERE seq >= ?1", &[seq]),
        AuditEdit::Forge(seq) => run("UPDATE audit_log SET user = 'mallory', hash = prev_hash WHERE seq = ?1", &[seq]),
        AuditEdit::RemoveHead => run("DELETE FROM meta WHERE key = 'audit_head'", &[]),
    }
}

/// While on, every audit append fails as a full or broken disk would.
pub fn fail_audit_appends(db: &Path, on: bool) -> StoreResult<()> {
    let sql = if on {
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"
    } else {
        "DROP TRIGGER no_audit;"
    };
    open(db)?.execute_batch(sql).map_err(map_err)
}

/// The queued webhook deliveries as stored: (endpoint, event id, payload JSON text).
pub fn webhook_outbox(db: &Path) -> StoreResult<Vec<(String, String, String)>> {
    let conn = open(db)?;
    let mut stmt = conn.prepare("SELECT endpoint, event_id, payload FROM webhook_outbox").map_err(map_err)?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(map_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
}

/// The highest seq in the audit table, whatever the signed head says.
pub fn max_audit_seq(db: &Path) -> StoreResult<i64> {
    open(db)?.query_row("SELECT coalesce(max(seq), 0) FROM audit_log", [], |r| r.get(0)).map_err(map_err)
}

/// Backdates documents' `created_at` by `days` (a running server's clock is real, so tests
/// of retention age stored data this way, as someone with the database could).
pub fn age_documents(db: &Path, ids: &[String], days: i64) -> StoreResult<()> {
    let conn = open(db)?;
    for id in ids {
        conn.execute("UPDATE documents SET created_at = created_at - ?1 * 86400000 WHERE id = ?2", params![days, id])
            .map_err(map_err)?;
    }
    Ok(())
}

/// The ids of the documents stored in `collection`, read straight from the file (works on
/// the database of a killed server).
pub fn document_ids(db: &Path, collection: &str) -> StoreResult<Vec<String>> {
    let conn = open(db)?;
    let mut stmt = conn.prepare("SELECT id FROM documents WHERE collection = ?1 ORDER BY id").map_err(map_err)?;
    let rows = stmt.query_map([collection], |r| r.get(0)).map_err(map_err)?;
    rows.collect::<rusqlite::Result<Vec<String>>>().map_err(map_err)
}
