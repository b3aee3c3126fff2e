//! Legal holds and retention deletion. The hold predicates are defined once here, as SQL
//! over a document aliased `d`, so every deleting transaction (a document or collection
//! delete, a retention batch, an erasure) checks the same holds in the same transaction
//! that deletes.
//!
//! Several nodes write at once, and under READ COMMITTED a hold committed by another node
//! after a deleting statement's snapshot would not be seen by it. So every deleting
//! transaction takes the holds gate shared (`lock_holds_shared`) before it checks, and
//! placing a hold takes it exclusively: a placement waits for the deletions in flight, and
//! every deletion that starts after it sees the hold.

use async_trait::async_trait;
use postgres::{GenericClient, Row, Transaction};
use rampart_store::{
    Audit, BatchAudit, ExpiredCount, HoldScope, LegalHold, RetentionRule, RetentionStore, StoreError, StoreResult,
};
use rampart_types::{CollectionName, HoldId, Timestamp};

use crate::{internal, map_err, parse_col, PostgresStore};

/// The active holds that cover the document aliased `d` (its subject or its collection),
/// as a condition on a `legal_holds h` row. Reuse it in any deleting statement, after
/// `lock_holds_shared`.
pub const HOLD_COVERS_DOCUMENT: &str = "h.released_at IS NULL
    AND ((h.scope = 'collection' AND h.target = d.collection)
      OR (h.scope = 'subject' AND d.subject_id IS NOT NULL AND h.target = d.subject_id))";

/// Whether the document aliased `d` is under an active legal hold: `AND NOT {held_document()}`
/// keeps held documents out of a deleting statement.
pub fn held_document() -> String {
    format!("EXISTS (SELECT 1 FROM legal_holds h WHERE {HOLD_COVERS_DOCUMENT})")
}

/// Takes the holds gate shared until commit: call it in every transaction that deletes
/// documents, before checking holds.
pub fn lock_holds_shared(tx: &mut Transaction<'_>) -> StoreResult<()> {
    tx.execute("SELECT pg_advisory_xact_lock_shared(hashtext('rampart:legal-holds'))", &[]).map_err(map_err)?;
    Ok(())
}

fn lock_holds_exclusive(tx: &mut Transaction<'_>) -> StoreResult<()> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:legal-holds'))", &[]).map_err(map_err)?;
    Ok(())
}

/// Expiry of the document aliased `d` in the collection aliased `c` under the rule bound
/// as `$1` (now, ms), `$2` (default days) and `$3` (PII days); see `RetentionRule`. A NULL
/// period keeps the document (the comparison is then NULL, never true).
const EXPIRED: &str = "d.created_at <= $1::BIGINT - 86400000 * COALESCE(c.retention_days,
        CASE WHEN c.pii_fields <> '[]' OR d.subject_id IS NOT NULL THEN $3::BIGINT ELSE $2::BIGINT END)";

/// The first active hold covering the stored document `seq`, if any (gate taken).
pub(crate) fn hold_on_document(tx: &mut Transaction<'_>, seq: i64) -> StoreResult<Option<HoldId>> {
    lock_holds_shared(tx)?;
    let sql = format!(
        "SELECT h.id FROM documents d JOIN legal_holds h ON {HOLD_COVERS_DOCUMENT}
         WHERE d.seq = $1 ORDER BY h.created_at, h.id LIMIT 1"
    );
    let row = tx.query_opt(&sql, &[&seq]).map_err(map_err)?;
    Ok(row.map(|r| HoldId::from_stored(r.get(0))))
}

/// The first active hold on the collection or on a subject with documents in it (gate taken).
pub(crate) fn hold_on_collection(tx: &mut Transaction<'_>, collection: &str) -> StoreResult<Option<HoldId>> {
    lock_holds_shared(tx)?;
    let row = tx
        .query_opt(
            "SELECT h.id FROM legal_holds h WHERE h.released_at IS NULL
               AND ((h.scope = 'collection' AND h.target = $1)
                 OR (h.scope = 'subject' AND h.target IN
                       (SELECT subject_id FROM documents WHERE collection = $1 AND subject_id IS NOT NULL)))
             ORDER BY h.created_at, h.id LIMIT 1",
            &[&collection],
        )
        .map_err(map_err)?;
    Ok(row.map(|r| HoldId::from_stored(r.get(0))))
}

/// The first active hold on the subject, or on a collection holding one of its documents,
/// if any (gate taken): what an erasure must not override.
pub(crate) fn hold_on_subject(tx: &mut Transaction<'_>, subject: &str) -> StoreResult<Option<HoldId>> {
    lock_holds_shared(tx)?;
    let row = tx
        .query_opt(
            "SELECT h.id FROM legal_holds h WHERE h.released_at IS NULL
               AND ((h.scope = 'subject' AND h.target = $1)
                 OR (h.scope = 'collection' AND h.target IN
                       (SELECT collection FROM documents WHERE subject_id = $1)))
             ORDER BY h.created_at, h.id LIMIT 1",
            &[&subject],
        )
        .map_err(map_err)?;
    Ok(row.map(|r| HoldId::from_stored(r.get(0))))
}

const HOLD_COLUMNS: &str = "id, scope, target, reason, created_by, created_at, released_at, released_by";

fn hold_from_row(r: &Row) -> StoreResult<LegalHold> {
    Ok(LegalHold {
        id: HoldId::from_stored(r.get(0)),
        scope: parse_col(r.get(1), |s| HoldScope::parse(s).ok_or("unknown hold scope"))?,
        target: r.get(2),
        reason: r.get(3),
        created_by: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
        released_at: r.get::<_, Option<i64>>(6).map(Timestamp::from_millis),
        released_by: r.get(7),
    })
}

fn get_hold_in(c: &mut impl GenericClient, id: &str) -> StoreResult<Option<LegalHold>> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM legal_holds WHERE id = $1");
    c.query_opt(&sql, &[&id]).map_err(map_err)?.as_ref().map(hold_from_row).transpose()
}

fn days(d: Option<u32>) -> Option<i64> {
    d.map(i64::from)
}

fn no_nul(text: &str) -> StoreResult<()> {
    if text.contains('\0') {
        return Err(internal(std::io::Error::other("legal hold text contains NUL")));
    }
    Ok(())
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn place_legal_hold(&self, hold: LegalHold, audit: Audit) -> StoreResult<()> {
        no_nul(&hold.target)?;
        no_nul(&hold.reason)?;
        self.write(audit, move |tx| {
            lock_holds_exclusive(tx)?;
            if hold.scope == HoldScope::Collection {
                // Held shared until commit: the collection cannot go while its hold is placed.
                let exists = tx
                    .query_opt("SELECT 1 FROM collections WHERE name = $1 FOR SHARE", &[&hold.target])
                    .map_err(map_err)?;
                if exists.is_none() {
                    return Err(StoreError::NotFound);
                }
            }
            tx.execute(
                &format!("INSERT INTO legal_holds ({HOLD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)"),
                &[
                    &hold.id.as_str(),
                    &hold.scope.as_str(),
                    &hold.target,
                    &hold.reason,
                    &hold.created_by,
                    &hold.created_at.as_millis(),
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn release_legal_hold(&self, id: &HoldId, by: &str, at: Timestamp, audit: Audit) -> StoreResult<LegalHold> {
        let (id, by) = (id.as_str().to_owned(), by.to_owned());
        no_nul(&by)?;
        self.write(audit, move |tx| {
            let n = tx
                .execute(
                    "UPDATE legal_holds SET released_at = $2, released_by = $3 WHERE id = $1 AND released_at IS NULL",
                    &[&id, &at.as_millis(), &by],
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
            let sql = format!(
                "SELECT {HOLD_COLUMNS} FROM legal_holds WHERE $1 OR released_at IS NULL ORDER BY created_at, id"
            );
            c.query(&sql, &[&include_released]).map_err(map_err)?.iter().map(hold_from_row).collect()
        })
        .await
    }

    async fn count_expired_documents(&self, rule: RetentionRule) -> StoreResult<Vec<ExpiredCount>> {
        let held = held_document();
        self.read(move |c| {
            let sql = format!(
                "SELECT d.collection, d.subject_id IS NOT NULL, count(*),
                        count(*) FILTER (WHERE {held}), min(d.created_at)
                 FROM documents d JOIN collections c ON c.name = d.collection
                 WHERE {EXPIRED}
                 GROUP BY d.collection, d.subject_id IS NOT NULL
                 ORDER BY d.collection, d.subject_id IS NOT NULL"
            );
            let rows = c
                .query(&sql, &[&rule.now.as_millis(), &days(rule.default_days), &days(rule.pii_days)])
                .map_err(map_err)?;
            rows.iter()
                .map(|r| {
                    Ok(ExpiredCount {
                        collection: parse_col(r.get(0), CollectionName::parse)?,
                        with_subject: r.get(1),
                        expired: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                        held: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
                        oldest_created_at: r.get::<_, Option<i64>>(4).map(Timestamp::from_millis),
                    })
                })
                .collect()
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
            // Expiry and holds are decided here, in the deleting transaction, with the
            // holds gate held and the chosen rows locked until commit.
            lock_holds_shared(tx)?;
            let sql = format!(
                "SELECT d.seq FROM documents d JOIN collections c ON c.name = d.collection
                 WHERE d.collection = $4 AND {EXPIRED} AND NOT {held}
                 ORDER BY d.seq LIMIT $5 FOR UPDATE OF d SKIP LOCKED"
            );
            let seqs: Vec<i64> = tx
                .query(
                    &sql,
                    &[&rule.now.as_millis(), &days(rule.default_days), &days(rule.pii_days), &collection, &limit],
                )
                .map_err(map_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if seqs.is_empty() {
                return Ok((0, Vec::new()));
            }
            tx.execute("DELETE FROM doc_index WHERE doc_seq = ANY($1)", &[&seqs]).map_err(map_err)?;
            let n = tx.execute("DELETE FROM documents WHERE seq = ANY($1)", &[&seqs]).map_err(map_err)?;
            Ok((n, audit(n)))
        })
        .await
    }
}
