//! Data-subject rights: crypto-shredding and the erasure ledger, verification tokens,
//! consent history, CCPA opt-outs and the requests that were answered.
//!
//! Subjects are known here by a keyed hash of their id (`subject_hash`), never by the id
//! itself: only documents carry the plain id, and they go at erasure.

use async_trait::async_trait;
use rampart_types::{SubjectId, Timestamp};

use crate::{Audit, OutboxItem, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureEntry {
    pub subject_hash: String,
    pub erased_at: Timestamp,
}

/// A single-use proof that an operator checked a data subject's identity out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    /// SHA-256 of the token; the token itself is shown once and never stored.
    pub token_hash: [u8; 32],
    pub subject_hash: String,
    pub issued_by: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// How a request that needs a verified identity was authorised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A verification token (by its hash), spent in the same transaction as the request.
    Token([u8; 32]),
    /// An administrator's override; its reason is in the audit record.
    Override,
}

/// One consent event: given or withdrawn, for one purpose. The history is kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub consent_id: String,
    pub subject_hash: String,
    pub purpose: String,
    pub granted: bool,
    /// When the subject gave or withdrew it (as reported).
    pub given_at: Timestamp,
    pub recorded_at: Timestamp,
    pub recorded_by: String,
}

/// A CCPA opt-out (do not sell, do not share, limit use of sensitive data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutRecord {
    pub opt_out_id: String,
    pub subject_hash: String,
    pub opt_out_type: String,
    /// A calendar date, `YYYY-MM-DD`.
    pub effective_date: String,
    pub confirmation_number: String,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// A data-subject request and its outcome: erasure, CCPA deletion, export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyRequest {
    pub request_id: String,
    /// `gdpr_erasure`, `ccpa_delete`, `gdpr_export`.
    pub kind: String,
    pub subject_hash: String,
    pub requested_by: String,
    pub requested_at: Timestamp,
    pub records_deleted: u64,
    /// Service providers told of a deletion (their names; the messages are in the outbox
    /// under `request_id`).
    pub providers: Vec<String>,
    /// Read back: `completed` once every provider message was delivered, else `processing`.
    pub status: String,
    /// Read back: when the last provider message was delivered (or the request was made,
    /// when there were none). `None` while processing.
    pub completed_at: Option<Timestamp>,
}

/// Counts for compliance evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivacyCounts {
    /// Verification tokens issued, not yet spent and not expired: requests in progress.
    pub open_verifications: u64,
    /// Requests whose provider notifications are not all delivered.
    pub processing_requests: u64,
    /// When the oldest of those was made.
    pub oldest_processing_at: Option<Timestamp>,
    pub completed_requests: u64,
    pub erased_subjects: u64,
    /// Subjects with an effective `do_not_sell` opt-out.
    pub do_not_sell: u64,
    pub consent_records: u64,
}

/// A request to erase one subject everywhere.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub subject: SubjectId,
    pub subject_hash: String,
    pub verification: Verification,
    pub request: PrivacyRequest,
    /// Messages to service providers, queued in the same transaction.
    pub notices: Vec<OutboxItem>,
}

/// Data-subject rights. Each mutating method is one transaction with its audit events.
#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// Crypto-shredding, in one transaction: spends the verification (refused with
    /// `VerificationInvalid` unless a token for this subject is unspent and unexpired at
    /// `request.requested_at`); deletes the subject's documents and their index entries in
    /// every collection, its keys, consent history, opt-outs and unspent verification
    /// tokens; appends the subject hash to the erasure ledger; records the request and
    /// queues `notices`. Returns the number of documents deleted.
    async fn erase_subject(&self, erasure: Erasure, audit: Audit) -> StoreResult<u64>;
    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>>;
    /// Whether `subject_hash` is in the erasure ledger (one lookup, not the whole ledger).
    async fn is_erased(&self, subject_hash: &str) -> StoreResult<bool>;

    async fn issue_verification(&self, v: VerificationRecord, audit: Audit) -> StoreResult<()>;
    /// Spends a verification for a request that erases nothing (an export) and records the
    /// request, in one transaction; `VerificationInvalid` when it cannot be spent.
    async fn spend_verification(
        &self,
        verification: Verification,
        request: PrivacyRequest,
        audit: Audit,
    ) -> StoreResult<()>;

    /// Appends to the subject's consent history; `LimitReached` beyond
    /// `MAX_CONSENT_RECORDS` for one subject.
    async fn record_consent(&self, c: ConsentRecord, audit: Audit) -> StoreResult<()>;
    /// The subject's whole consent history, oldest first.
    async fn consent_history(&self, subject_hash: &str) -> StoreResult<Vec<ConsentRecord>>;

    /// `LimitReached` beyond `MAX_OPT_OUTS` for one subject.
    async fn record_opt_out(&self, o: OptOutRecord, audit: Audit) -> StoreResult<()>;
    async fn opt_outs(&self, subject_hash: &str) -> StoreResult<Vec<OptOutRecord>>;

    async fn privacy_request(&self, request_id: &str) -> StoreResult<Option<PrivacyRequest>>;
    /// `do_not_sell` counts opt-outs effective on `today` (`YYYY-MM-DD`); open
    /// verifications are those unexpired at `now`.
    async fn privacy_counts(&self, now: Timestamp, today: &str) -> StoreResult<PrivacyCounts>;
}

/// Consent events kept per subject: a history, not a log anyone can grow without end.
pub const MAX_CONSENT_RECORDS: u64 = 1000;
/// Opt-out records kept per subject.
pub const MAX_OPT_OUTS: u64 = 100;
