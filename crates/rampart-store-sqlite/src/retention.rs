//! Legal holds and retention deletion. The hold predicates are defined once here, as SQL
//! over a document aliased `d`, so every deleting transaction (a document or collection
//! delete, a retention batch, an erasure) checks the same holds in the same transaction
//! that deletes. SQLite runs one write transaction at a time, so a hold committed before a
//! deleting transaction starts is always seen by it, and one placed after waits for it.

use async_trait::async_trait;
use rampart_store::{
    Audit, BatchAudit, ExpiredCount, HoldScope, LegalHold, RetentionRule, RetentionStore, StoreError, StoreResult,
};
use rampart_types::{CollectionName, HoldId, Timestamp};
use rusqlite::{params, OptionalExtension, Row};

use crate::{internal, map_err, parse_col, SqliteStore};

/// The active holds that cover the document aliased `d` (its subject or its collection),
/// as a condition on a `legal_holds h` row. Reuse it in any deleting statement.
pub const HOLD_COVERS_DOCUMENT: &str = "h.released_at IS NULL
    AND ((h.scope = 'collection' AND h.target = d.collection)
      OR (h.scope = 'subject' AND d.subject_id IS NOT NULL AND h.target = d.subject_id))";

/// Whether the document aliased `d` is under an active legal hold: `AND NOT {HELD_DOCUMENT}`
/// keeps held documents out of a deleting statement.
pub fn held_document() -> String {
    format!("EXISTS (SELECT 1 FROM legal_holds h WHERE {HOLD_COVERS_DOCUMENT})")
}

/// The expiry of the document aliased `d` in the collection aliased `c` under the rule
/// bound as `?1` (now, ms), `?2` (default days) and `?3` (PII days): its collection's
/// period, else the PII one for PII collections and documents naming a subject, else the
/// default. A NULL period keeps the document (the comparison is then NULL, never true).
const EXPIRED: &str = "d.created_at <= ?1 - 86400000 * COALESCE(c.retention_days,
        CASE WHEN c.pii_fields <> '[]' OR d.subject_id IS NOT NULL THEN ?3 ELSE ?2 END)";

/// The first active hold covering the stored document `seq`, if any.
pub(crate) fn hold_on_document(tx: &rusqlite::Connection, seq: i64) -> StoreResult<Option<HoldId>> {
    tx.prepare_cached(&format!(
        "SELECT h.id FROM documents d JOIN legal_holds h ON {HOLD_COVERS_DOCUMENT}
         WHERE d.seq = ?1 ORDER BY h.created_at, h.id LIMIT 1"
    ))
    .map_err(map_err)?
    .query_row(params![seq], |r| r.get::<_, String>(0))
    .optional()
    .map_err(map_err)
    .map(|id| id.map(HoldId::from_stored))
}

/// The first active hold on the collection or on a subject with documents in it, if any.
pub(crate) fn hold_on_collection(tx: &rusqlite::Connection, collection: &str) -> StoreResult<Option<HoldId>> {
    tx.prepare_cached(
        "SELECT h.id FROM legal_holds h WHERE h.released_at IS NULL
           AND ((h.scope = 'collection' AND h.target = ?1)
             OR (h.scope = 'subject' AND h.target IN
                   (SELECT subject_id FROM documents WHERE collection = ?1 AND subject_id IS NOT NULL)))
         ORDER BY h.created_at, h.id LIMIT 1",
    )
    .map_err(map_err)?
    .query_row(params![collection], |r| r.get::<_, String>(0))
    .optional()
    .map_err(map_err)
    .map(|id| id.map(HoldId::from_stored))
}

/// The first active hold on the subject, or on a collection holding one of its documents,
/// if any: what an erasure must not override.
pub(crate) fn hold_on_subject(tx: &rusqlite::Connection, subject: &str) -> StoreResult<Option<HoldId>> {
    tx.prepare_cached(
        "SELECT h.id FROM legal_holds h WHERE h.released_at IS NULL
           AND ((h.scope = 'subject' AND h.target = ?1)
             OR (h.scope = 'collection' AND h.target IN
                   (SELECT collection FROM documents WHERE subject_id = ?1)))
         ORDER BY h.created_at, h.id LIMIT 1",
    )
    .map_err(map_err)?
    .query_row(params![subject], |r| r.get::<_, String>(0))
    .optional()
    .map_err(map_err)
    .map(|id| id.map(HoldId::from_stored))
}

const HOLD_COLUMNS: &str = "id, scope, target, reason, created_by, created_at, released_at, released_by";

fn hold_from_row(r: &Row<'_>) -> rusqlite::Result<LegalHold> {
    let scope: String = r.get(1)?;
    Ok(LegalHold {
        id: HoldId::from_stored(r.get(0)?),
        scope: parse_col(scope, |s| HoldScope::parse(s).ok_or("unknown hold scope"))?,
        target: r.get(2)?,
        reason: r.get(3)?,
        created_by: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        released_at: r.get::<_, Option<i64>>(6)?.map(Timestamp::from_millis),
        released_by: r.get(7)?,
    })
}

fn get_hold_in(c: &rusqlite::Connection, id: &str) -> StoreResult<Option<LegalHold>> {
    c.prepare_cached(&format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE id = ?1"))
        .map_err(map_err)?
        .query_row(params![id], hold_from_row)
        .optional()
        .map_err(map_err)
}

fn days(d: Option<u32>) -> Option<i64> {
    d.map(i64::from)
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn place_legal_hold(&self, hold: LegalHold, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            if hold.scope == HoldScope::Collection {
                let exists = tx
                    .query_row("SELECT 1 FROM collections WHERE name = ?1", params![hold.target], |_| Ok(()))
                    .optional()
                    .map_err(map_err)?;
                if exists.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            tx.execute(
                &format!("INSERT INTO legal_holds ({HOLD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)"),
                params![
                    hold.id.as_str(),
                    hold.scope.as_str(),
                    hold.target,
                    hold.reason,
                    hold.created_by,
                    hold.created_at.as_millis()
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn release_legal_hold(&self, id: &HoldId, by: &str, at: Timestamp, audit: Audit) -> StoreResult<LegalHold> {
        let (id, by) = (id.as_str().to_owned(), by.to_owned());
        self.write(audit, move |tx| {
            let n = tx
                .execute(
                    "UPDATE legal_holds SET released_at = ?2, released_by = ?3 WHERE id = ?1 AND released_at IS NULL",
                    params![id, at.as_millis(), by],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            get_hold_in(tx, &id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn get_legal_hold(&self, id: &HoldId) -> StoreResult<Option<LegalHold>> {
        let id = id.as_str().to_owned();
        self.read(move |c| get_hold_in(c, &id)).await
    }

    async fn list_legal_holds(&self, include_released: bool) -> StoreResult<Vec<LegalHold>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE ?1 OR released_at IS NULL ORDER BY created_at, id"
                ))
                .map_err(map_err)?;
            let rows = stmt.query_map(params![include_released], hold_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn count_expired_documents(&self, rule: RetentionRule) -> StoreResult<Vec<ExpiredCount>> {
        let held = held_document();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT d.collection, d.subject_id IS NOT NULL, count(*),
                            coalesce(sum(CASE WHEN {held} THEN 1 ELSE 0 END), 0), min(d.created_at)
                     FROM documents d JOIN collections c ON c.name = d.collection
                     WHERE {EXPIRED}
                     GROUP BY d.collection, d.subject_id IS NOT NULL
                     ORDER BY d.collection, d.subject_id IS NOT NULL"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![rule.now.as_millis(), days(rule.default_days), days(rule.pii_days)], |r| {
                    Ok(ExpiredCount {
                        collection: parse_col(r.get(0)?, CollectionName::parse)?,
                        with_subject: r.get(1)?,
                        expired: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                        held: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                        oldest_created_at: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn delete_expired_documents(
        &self,
        collection: &CollectionName,
        rule: RetentionRule,
        limit: usize,
        audit: BatchAudit,
    ) -> StoreResult<u64> {
        let collection = collection.as_str().to_owned();
        let limit = i64::try_from(limit).map_err(internal)?;
        let held = held_document();
        self.write_audited_by(move |tx| {
            // Expiry and holds are decided here, in the deleting transaction.
            let seqs: Vec<i64> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT d.seq FROM documents d JOIN collections c ON c.name = d.collection
                         WHERE d.collection = ?4 AND {EXPIRED} AND NOT {held}
                         ORDER BY d.seq LIMIT ?5"
                    ))
                    .map_err(map_err)?;
                let rows = stmt
                    .query_map(
                        params![rule.now.as_millis(), days(rule.default_days), days(rule.pii_days), collection, limit],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)?
            };
            if seqs.is_empty() {
                return Ok((0, Vec::new()));
            }
            let mut index = tx.prepare_cached("DELETE FROM doc_index WHERE doc_seq = ?1").map_err(map_err)?;
            let mut docs = tx.prepare_cached("DELETE FROM documents WHERE seq = ?1").map_err(map_err)?;
            for seq in &seqs {
                index.execute(params![seq]).map_err(map_err)?;
                docs.execute(params![seq]).map_err(map_err)?;
            }
            let n = u64::try_from(seqs.len()).unwrap_or(u64::MAX);
            Ok((n, audit(n)))
        })
        .await
    }
}
