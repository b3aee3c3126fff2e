//! Data-subject rights: crypto-shredding and the erasure ledger, verification tokens,
//! consent history, opt-outs and answered requests.

use async_trait::async_trait;
use rampart_store::{
    Audit, ConsentRecord, Erasure, ErasureEntry, MetaStore, OptOutRecord, PrivacyCounts, PrivacyRequest, PrivacyStore,
    StoreError, StoreResult, Verification, VerificationRecord, MAX_CONSENT_RECORDS, MAX_OPT_OUTS,
};
use rampart_types::Timestamp;
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::security::insert_outbox;
use crate::{internal, map_err, SqliteStore};

/// Spends a verification token of `subject_hash` valid at `now`; refuses otherwise.
fn spend(tx: &Transaction<'_>, verification: &Verification, subject_hash: &str, now: i64) -> StoreResult<()> {
    let Verification::Token(hash) = verification else { return Ok(()) };
    let spent = tx
        .execute(
            "UPDATE privacy_verifications SET spent_at = ?3
             WHERE token_hash = ?1 AND subject_hash = ?2 AND spent_at IS NULL AND expires_at > ?3",
            params![hash.as_slice(), subject_hash, now],
        )
        .map_err(map_err)?;
    if spent == 1 {
        Ok(())
    } else {
        Err(StoreError::VerificationInvalid)
    }
}

fn insert_request(tx: &Transaction<'_>, r: &PrivacyRequest) -> StoreResult<()> {
    let providers = serde_json::to_string(&r.providers).map_err(internal)?;
    tx.execute(
        "INSERT INTO privacy_requests (request_id, kind, subject_hash, requested_by, requested_at, records_deleted, providers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.request_id,
            r.kind,
            r.subject_hash,
            r.requested_by,
            r.requested_at.as_millis(),
            i64::try_from(r.records_deleted).unwrap_or(i64::MAX),
            providers
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

fn count(tx: &rusqlite::Connection, sql: &str, subject_hash: &str) -> StoreResult<u64> {
    tx.query_row(sql, params![subject_hash], |r| r.get::<_, i64>(0))
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(map_err)
}

fn consent_from_row(r: &Row<'_>) -> rusqlite::Result<ConsentRecord> {
    Ok(ConsentRecord {
        consent_id: r.get(0)?,
        subject_hash: r.get(1)?,
        purpose: r.get(2)?,
        granted: r.get::<_, i64>(3)? != 0,
        given_at: Timestamp::from_millis(r.get(4)?),
        recorded_at: Timestamp::from_millis(r.get(5)?),
        recorded_by: r.get(6)?,
    })
}

fn opt_out_from_row(r: &Row<'_>) -> rusqlite::Result<OptOutRecord> {
    Ok(OptOutRecord {
        opt_out_id: r.get(0)?,
        subject_hash: r.get(1)?,
        opt_out_type: r.get(2)?,
        effective_date: r.get(3)?,
        confirmation_number: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        created_by: r.get(6)?,
    })
}

#[async_trait]
impl PrivacyStore for SqliteStore {
    async fn erase_subject(&self, erasure: Erasure, audit: Audit) -> StoreResult<u64> {
        let erased = self
            .write(audit, move |tx| {
                let Erasure { subject, subject_hash: hash, verification, mut request, notices } = erasure;
                spend(tx, &verification, &hash, request.requested_at.as_millis())?;
                let subject = subject.as_str();
                // A legal hold on the subject, or on a collection with its records, wins.
                if let Some(hold) = crate::retention::hold_on_subject(tx, subject)? {
                    return Err(StoreError::LegalHold(hold));
                }
                // Released holds named the subject: they keep only its keyed hash.
                tx.execute(
                    "UPDATE legal_holds SET target = 'erased:' || ?2, reason = '(erased with its subject)' WHERE scope = 'subject' AND target = ?1",
                    params![subject, hash],
                )
                .map_err(map_err)?;
                tx.execute(
                    "DELETE FROM doc_index WHERE doc_seq IN (SELECT seq FROM documents WHERE subject_id = ?1)",
                    params![subject],
                )
                .map_err(map_err)?;
                let n = tx.execute("DELETE FROM documents WHERE subject_id = ?1", params![subject]).map_err(map_err)?;
                tx.execute(
                    "UPDATE data_keys SET wrapped = zeroblob(length(wrapped)) WHERE kind = 'subject' AND owner = ?1",
                    params![hash],
                )
                .map_err(map_err)?;
                for sql in [
                    "DELETE FROM data_keys WHERE kind = 'subject' AND owner = ?1",
                    "DELETE FROM consents WHERE subject_hash = ?1",
                    "DELETE FROM opt_outs WHERE subject_hash = ?1",
                    "DELETE FROM privacy_verifications WHERE subject_hash = ?1",
                ] {
                    tx.execute(sql, params![hash]).map_err(map_err)?;
                }
                tx.execute(
                    "INSERT INTO erasure_ledger (subject_hash, erased_at) VALUES (?1, ?2)",
                    params![hash, request.requested_at.as_millis()],
                )
                .map_err(map_err)?;
                request.records_deleted = n as u64;
                insert_request(tx, &request)?;
                insert_outbox(tx, &notices)?;
                Ok(n as u64)
            })
            .await?;
        // Push the erased pages out of the WAL too (secure_delete already zeroed them in
        // the main file). Best effort: readers may hold the WAL for a moment.
        let _ = self.close().await;
        Ok(erased)
    }

    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT subject_hash, erased_at FROM erasure_ledger ORDER BY seq").map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ErasureEntry { subject_hash: r.get(0)?, erased_at: Timestamp::from_millis(r.get(1)?) })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn is_erased(&self, subject_hash: &str) -> StoreResult<bool> {
        let hash = subject_hash.to_owned();
        self.read(move |c| {
            c.query_row("SELECT EXISTS (SELECT 1 FROM erasure_ledger WHERE subject_hash = ?1)", params![hash], |r| {
                r.get::<_, bool>(0)
            })
            .map_err(map_err)
        })
        .await
    }

    async fn issue_verification(&self, v: VerificationRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            tx.execute(
                "INSERT INTO privacy_verifications (token_hash, subject_hash, issued_by, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    v.token_hash.as_slice(),
                    v.subject_hash,
                    v.issued_by,
                    v.issued_at.as_millis(),
                    v.expires_at.as_millis()
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn spend_verification(
        &self,
        verification: Verification,
        request: PrivacyRequest,
        audit: Audit,
    ) -> StoreResult<()> {
        self.write(audit, move |tx| {
            spend(tx, &verification, &request.subject_hash, request.requested_at.as_millis())?;
            insert_request(tx, &request)
        })
        .await
    }

    async fn record_consent(&self, c: ConsentRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            if count(tx, "SELECT count(*) FROM consents WHERE subject_hash = ?1", &c.subject_hash)?
                >= MAX_CONSENT_RECORDS
            {
                return Err(StoreError::LimitReached("the consent history of this subject is full"));
            }
            tx.execute(
                "INSERT INTO consents (consent_id, subject_hash, purpose, granted, given_at, recorded_at, recorded_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    c.consent_id,
                    c.subject_hash,
                    c.purpose,
                    i64::from(c.granted),
                    c.given_at.as_millis(),
                    c.recorded_at.as_millis(),
                    c.recorded_by
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn consent_history(&self, subject_hash: &str) -> StoreResult<Vec<ConsentRecord>> {
        let hash = subject_hash.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT consent_id, subject_hash, purpose, granted, given_at, recorded_at, recorded_by
                     FROM consents WHERE subject_hash = ?1 ORDER BY seq",
                )
                .map_err(map_err)?;
            let rows = stmt.query_map(params![hash], consent_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn record_opt_out(&self, o: OptOutRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            if count(tx, "SELECT count(*) FROM opt_outs WHERE subject_hash = ?1", &o.subject_hash)? >= MAX_OPT_OUTS {
                return Err(StoreError::LimitReached("the opt-out history of this subject is full"));
            }
            tx.execute(
                "INSERT INTO opt_outs (opt_out_id, subject_hash, opt_out_type, effective_date, confirmation_number, created_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    o.opt_out_id,
                    o.subject_hash,
                    o.opt_out_type,
                    o.effective_date,
                    o.confirmation_number,
                    o.created_at.as_millis(),
                    o.created_by
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn opt_outs(&self, subject_hash: &str) -> StoreResult<Vec<OptOutRecord>> {
        let hash = subject_hash.to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT opt_out_id, subject_hash, opt_out_type, effective_date, confirmation_number, created_at, created_by
                     FROM opt_outs WHERE subject_hash = ?1 ORDER BY seq",
                )
                .map_err(map_err)?;
            let rows = stmt.query_map(params![hash], opt_out_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn privacy_request(&self, request_id: &str) -> StoreResult<Option<PrivacyRequest>> {
        let id = request_id.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT r.request_id, r.kind, r.subject_hash, r.requested_by, r.requested_at, r.records_deleted, r.providers,
                        (SELECT count(*) FROM webhook_outbox o WHERE o.event_id = r.request_id AND o.delivered_at IS NULL),
                        (SELECT max(o.delivered_at) FROM webhook_outbox o WHERE o.event_id = r.request_id)
                 FROM privacy_requests r WHERE r.request_id = ?1",
                params![id],
                |r| {
                    let requested_at = Timestamp::from_millis(r.get(4)?);
                    let pending: i64 = r.get(7)?;
                    let delivered: Option<i64> = r.get(8)?;
                    let providers: String = r.get(6)?;
                    Ok(PrivacyRequest {
                        request_id: r.get(0)?,
                        kind: r.get(1)?,
                        subject_hash: r.get(2)?,
                        requested_by: r.get(3)?,
                        requested_at,
                        records_deleted: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                        providers: serde_json::from_str(&providers).unwrap_or_default(),
                        status: if pending > 0 { "processing" } else { "completed" }.to_owned(),
                        completed_at: (pending == 0)
                            .then(|| delivered.map(Timestamp::from_millis).unwrap_or(requested_at)),
                    })
                },
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn privacy_counts(&self, now: Timestamp, today: &str) -> StoreResult<PrivacyCounts> {
        let today = today.to_owned();
        self.read(move |c| {
            let n = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> StoreResult<u64> {
                c.query_row(sql, p, |r| r.get::<_, i64>(0)).map(|n| u64::try_from(n).unwrap_or(0)).map_err(map_err)
            };
            let processing = n(
                "SELECT count(*) FROM privacy_requests r WHERE EXISTS
                 (SELECT 1 FROM webhook_outbox o WHERE o.event_id = r.request_id AND o.delivered_at IS NULL)",
                &[],
            )?;
            let oldest: Option<i64> = c
                .query_row(
                    "SELECT min(r.requested_at) FROM privacy_requests r WHERE EXISTS
                     (SELECT 1 FROM webhook_outbox o WHERE o.event_id = r.request_id AND o.delivered_at IS NULL)",
                    [],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            Ok(PrivacyCounts {
                oldest_processing_at: oldest.map(Timestamp::from_millis),
                open_verifications: n(
                    "SELECT count(*) FROM privacy_verifications WHERE spent_at IS NULL AND expires_at > ?1",
                    &[&now.as_millis()],
                )?,
                processing_requests: processing,
                completed_requests: n("SELECT count(*) FROM privacy_requests", &[])?.saturating_sub(processing),
                erased_subjects: n("SELECT count(DISTINCT subject_hash) FROM erasure_ledger", &[])?,
                do_not_sell: n(
                    "SELECT count(DISTINCT subject_hash) FROM opt_outs
                     WHERE opt_out_type = 'do_not_sell' AND effective_date <= ?1",
                    &[&today],
                )?,
                consent_records: n("SELECT count(*) FROM consents", &[])?,
            })
        })
        .await
    }
}
