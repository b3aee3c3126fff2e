//! Data-subject rights: crypto-shredding and the erasure ledger, verification tokens,
//! consent history, opt-outs and answered requests.

use async_trait::async_trait;
use postgres::{Row, Transaction};
use rampart_store::{
    Audit, ConsentRecord, Erasure, ErasureEntry, OptOutRecord, PrivacyCounts, PrivacyRequest, PrivacyStore, StoreError,
    StoreResult, Verification, VerificationRecord, MAX_CONSENT_RECORDS, MAX_OPT_OUTS,
};
use rampart_types::Timestamp;

use crate::security::insert_outbox;
use crate::{internal, map_err, text, PostgresStore};

/// Spends a verification token of `subject_hash` valid at `now`; refuses otherwise. The
/// update locks the token's row, so of two requests spending one token, one wins.
fn spend(tx: &mut Transaction<'_>, verification: &Verification, subject_hash: &str, now: i64) -> StoreResult<()> {
    let Verification::Token(hash) = verification else { return Ok(()) };
    let spent = tx
        .execute(
            "UPDATE privacy_verifications SET spent_at = $3
             WHERE token_hash = $1 AND subject_hash = $2 AND spent_at IS NULL AND expires_at > $3",
            &[&hash.as_slice(), &subject_hash, &now],
        )
        .map_err(map_err)?;
    if spent == 1 {
        Ok(())
    } else {
        Err(StoreError::VerificationInvalid)
    }
}

fn insert_request(tx: &mut Transaction<'_>, r: &PrivacyRequest) -> StoreResult<()> {
    let providers = serde_json::to_string(&r.providers).map_err(internal)?;
    tx.execute(
        "INSERT INTO privacy_requests (request_id, kind, subject_hash, requested_by, requested_at, records_deleted, providers)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &text(&r.request_id),
            &text(&r.kind),
            &text(&r.subject_hash),
            &text(&r.requested_by),
            &r.requested_at.as_millis(),
            &i64::try_from(r.records_deleted).unwrap_or(i64::MAX),
            &text(&providers),
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

fn count(tx: &mut Transaction<'_>, sql: &str, subject_hash: &str) -> StoreResult<u64> {
    let n: i64 = tx.query_one(sql, &[&subject_hash]).map_err(map_err)?.get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

fn consent_from_row(r: &Row) -> ConsentRecord {
    ConsentRecord {
        consent_id: r.get(0),
        subject_hash: r.get(1),
        purpose: r.get(2),
        granted: r.get(3),
        given_at: Timestamp::from_millis(r.get(4)),
        recorded_at: Timestamp::from_millis(r.get(5)),
        recorded_by: r.get(6),
    }
}

fn opt_out_from_row(r: &Row) -> OptOutRecord {
    OptOutRecord {
        opt_out_id: r.get(0),
        subject_hash: r.get(1),
        opt_out_type: r.get(2),
        effective_date: r.get(3),
        confirmation_number: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
        created_by: r.get(6),
    }
}

#[async_trait]
impl PrivacyStore for PostgresStore {
    async fn erase_subject(&self, erasure: Erasure, audit: Audit) -> StoreResult<u64> {
        // The hash is made by the server (hex); PostgreSQL text cannot hold NUL.
        if erasure.subject_hash.contains('\0') {
            return Err(internal(std::io::Error::other("a subject hash contains NUL")));
        }
        self.write(audit, move |tx| {
            let Erasure { subject, subject_hash: hash, verification, mut request, notices } = erasure;
            spend(tx, &verification, &hash, request.requested_at.as_millis())?;
            // A legal hold on the subject, or on a collection with its records, wins (the
            // holds gate is taken shared: a hold placed meanwhile waits, or is seen).
            if let Some(hold) = crate::retention::hold_on_subject(tx, subject.as_str())? {
                return Err(StoreError::LegalHold(hold));
            }
            // Released holds named the subject: they keep only its keyed hash.
            tx.execute(
                "UPDATE legal_holds SET target = 'erased:' || $2, reason = '(erased with its subject)' WHERE scope = 'subject' AND target = $1",
                &[&subject.as_str(), &hash],
            )
            .map_err(map_err)?;
            // Key writers on every node wait (and are waited for): a successor key a
            // re-encryption start or a first write is adding for this subject right now is
            // committed and seen below, or comes after the erasure.
            tx.batch_execute("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE").map_err(map_err)?;
            let subject = subject.as_str();
            tx.execute(
                &format!(
                    "DELETE FROM doc_index WHERE doc_seq IN (SELECT d.seq FROM documents d WHERE d.subject_id = $1 AND NOT {})",
                    crate::retention::held_document()
                ),
                &[&subject],
            )
            .map_err(map_err)?;
            // Held documents are left, and then refuse the whole erasure: one committed on
            // another node into a held collection after the check above is seen by these
            // statements (read committed), and must not be erased with the rest.
            let held = crate::retention::held_document();
            let n = tx
                .execute(&format!("DELETE FROM documents d WHERE d.subject_id = $1 AND NOT {held}"), &[&subject])
                .map_err(map_err)?;
            if let Some(hold) = crate::retention::hold_on_subject(tx, subject)? {
                return Err(StoreError::LegalHold(hold));
            }
            tx.execute("DELETE FROM data_keys WHERE kind = 'subject' AND owner = $1", &[&hash]).map_err(map_err)?;
            for sql in [
                "DELETE FROM consents WHERE subject_hash = $1",
                "DELETE FROM opt_outs WHERE subject_hash = $1",
                "DELETE FROM privacy_verifications WHERE subject_hash = $1",
            ] {
                tx.execute(sql, &[&hash]).map_err(map_err)?;
            }
            tx.execute(
                "INSERT INTO erasure_ledger (subject_hash, erased_at) VALUES ($1, $2)",
                &[&hash, &request.requested_at.as_millis()],
            )
            .map_err(map_err)?;
            request.records_deleted = n;
            insert_request(tx, &request)?;
            insert_outbox(tx, &notices)?;
            Ok(n)
        })
        .await
    }

    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>> {
        self.read(|c| {
            let rows =
                c.query("SELECT subject_hash, erased_at FROM erasure_ledger ORDER BY seq", &[]).map_err(map_err)?;
            Ok(rows
                .iter()
                .map(|r| ErasureEntry { subject_hash: r.get(0), erased_at: Timestamp::from_millis(r.get(1)) })
                .collect())
        })
        .await
    }

    async fn is_erased(&self, subject_hash: &str) -> StoreResult<bool> {
        let hash = text(subject_hash).into_owned();
        self.read(move |c| {
            let row = c
                .query_one("SELECT EXISTS (SELECT 1 FROM erasure_ledger WHERE subject_hash = $1)", &[&hash])
                .map_err(map_err)?;
            Ok(row.get(0))
        })
        .await
    }

    async fn issue_verification(&self, v: VerificationRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            tx.execute(
                "INSERT INTO privacy_verifications (token_hash, subject_hash, issued_by, issued_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &v.token_hash.as_slice(),
                    &text(&v.subject_hash),
                    &text(&v.issued_by),
                    &v.issued_at.as_millis(),
                    &v.expires_at.as_millis(),
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
            // One subject's appends from every node count against one bound.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:consents:' || $1))", &[&text(&c.subject_hash)])
                .map_err(map_err)?;
            if count(tx, "SELECT count(*) FROM consents WHERE subject_hash = $1", &c.subject_hash)?
                >= MAX_CONSENT_RECORDS
            {
                return Err(StoreError::LimitReached("the consent history of this subject is full"));
            }
            tx.execute(
                "INSERT INTO consents (consent_id, subject_hash, purpose, granted, given_at, recorded_at, recorded_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &text(&c.consent_id),
                    &text(&c.subject_hash),
                    &text(&c.purpose),
                    &c.granted,
                    &c.given_at.as_millis(),
                    &c.recorded_at.as_millis(),
                    &text(&c.recorded_by),
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn consent_history(&self, subject_hash: &str) -> StoreResult<Vec<ConsentRecord>> {
        let hash = text(subject_hash).into_owned();
        self.read(move |c| {
            let rows = c
                .query(
                    "SELECT consent_id, subject_hash, purpose, granted, given_at, recorded_at, recorded_by
                     FROM consents WHERE subject_hash = $1 ORDER BY seq",
                    &[&hash],
                )
                .map_err(map_err)?;
            Ok(rows.iter().map(consent_from_row).collect())
        })
        .await
    }

    async fn record_opt_out(&self, o: OptOutRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:opt-outs:' || $1))", &[&text(&o.subject_hash)])
                .map_err(map_err)?;
            if count(tx, "SELECT count(*) FROM opt_outs WHERE subject_hash = $1", &o.subject_hash)? >= MAX_OPT_OUTS {
                return Err(StoreError::LimitReached("the opt-out history of this subject is full"));
            }
            tx.execute(
                "INSERT INTO opt_outs (opt_out_id, subject_hash, opt_out_type, effective_date, confirmation_number, created_at, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &text(&o.opt_out_id),
                    &text(&o.subject_hash),
                    &text(&o.opt_out_type),
                    &text(&o.effective_date),
                    &text(&o.confirmation_number),
                    &o.created_at.as_millis(),
                    &text(&o.created_by),
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn opt_outs(&self, subject_hash: &str) -> StoreResult<Vec<OptOutRecord>> {
        let hash = text(subject_hash).into_owned();
        self.read(move |c| {
            let rows = c
                .query(
                    "SELECT opt_out_id, subject_hash, opt_out_type, effective_date, confirmation_number, created_at, created_by
                     FROM opt_outs WHERE subject_hash = $1 ORDER BY seq",
                    &[&hash],
                )
                .map_err(map_err)?;
            Ok(rows.iter().map(opt_out_from_row).collect())
        })
        .await
    }

    async fn privacy_request(&self, request_id: &str) -> StoreResult<Option<PrivacyRequest>> {
        let id = text(request_id).into_owned();
        self.read(move |c| {
            let row = c
                .query_opt(
                    "SELECT r.request_id, r.kind, r.subject_hash, r.requested_by, r.requested_at, r.records_deleted, r.providers,
                            (SELECT count(*) FROM webhook_outbox o WHERE o.event_id = r.request_id AND o.delivered_at IS NULL),
                            (SELECT max(o.delivered_at) FROM webhook_outbox o WHERE o.event_id = r.request_id)
                     FROM privacy_requests r WHERE r.request_id = $1",
                    &[&id],
                )
                .map_err(map_err)?;
            Ok(row.map(|r| {
                let requested_at = Timestamp::from_millis(r.get(4));
                let pending: i64 = r.get(7);
                let delivered: Option<i64> = r.get(8);
                let providers: String = r.get(6);
                PrivacyRequest {
                    request_id: r.get(0),
                    kind: r.get(1),
                    subject_hash: r.get(2),
                    requested_by: r.get(3),
                    requested_at,
                    records_deleted: u64::try_from(r.get::<_, i64>(5)).unwrap_or(0),
                    providers: serde_json::from_str(&providers).unwrap_or_default(),
                    status: if pending > 0 { "processing" } else { "completed" }.to_owned(),
                    completed_at: (pending == 0).then(|| delivered.map(Timestamp::from_millis).unwrap_or(requested_at)),
                }
            }))
        })
        .await
    }

    async fn privacy_counts(&self, now: Timestamp, today: &str) -> StoreResult<PrivacyCounts> {
        let today = text(today).into_owned();
        self.read(move |c| {
            let row = c
                .query_one(
                    "SELECT
                       (SELECT count(*) FROM privacy_verifications WHERE spent_at IS NULL AND expires_at > $1),
                       (SELECT count(*) FROM privacy_requests r WHERE EXISTS
                          (SELECT 1 FROM webhook_outbox o WHERE o.event_id = r.request_id AND o.delivered_at IS NULL)),
                       (SELECT count(*) FROM privacy_requests),
                       (SELECT count(DISTINCT subject_hash) FROM erasure_ledger),
                       (SELECT count(DISTINCT subject_hash) FROM opt_outs
                          WHERE opt_out_type = 'do_not_sell' AND effective_date <= $2),
                       (SELECT count(*) FROM consents),
                       (SELECT min(r.requested_at) FROM privacy_requests r WHERE EXISTS
                          (SELECT 1 FROM webhook_outbox o WHERE o.event_id = r.request_id AND o.delivered_at IS NULL))",
                    &[&now.as_millis(), &today],
                )
                .map_err(map_err)?;
            let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
            Ok(PrivacyCounts {
                open_verifications: n(0),
                processing_requests: n(1),
                oldest_processing_at: row.get::<_, Option<i64>>(6).map(Timestamp::from_millis),
                completed_requests: n(2).saturating_sub(n(1)),
                erased_subjects: n(3),
                do_not_sell: n(4),
                consent_records: n(5),
            })
        })
        .await
    }
}
