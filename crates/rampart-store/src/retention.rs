//! Retention and legal holds: which documents have outlived their retention period, and the
//! holds that keep documents (of a data subject, or of a whole collection) from being
//! deleted by anyone: a user, a collection delete or the retention job.
//!
//! Every deleting transaction checks the active holds itself, in SQL, in the same
//! transaction that deletes: a hold committed before that transaction is always seen, so
//! no check made before an `await` can be overtaken by a hold placed after it.

use async_trait::async_trait;
use rampart_types::{CollectionName, HoldId, Timestamp};

use crate::{Audit, StoreResult};

/// What a legal hold covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldScope {
    /// Every document naming the subject (`target` is the plain subject id, so the deleting
    /// SQL can match `documents.subject_id`).
    Subject,
    /// Every document of the collection, and the collection itself.
    Collection,
}

impl HoldScope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Collection => "collection",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "subject" => Some(Self::Subject),
            "collection" => Some(Self::Collection),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub id: HoldId,
    pub scope: HoldScope,
    /// The subject id or the collection name.
    pub target: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub released_at: Option<Timestamp>,
    pub released_by: Option<String>,
}

impl LegalHold {
    pub fn active(&self) -> bool {
        self.released_at.is_none()
    }
}

/// The retention settings a store applies, in SQL, to every document it considers.
/// A document's period is its collection's `retention_days` when set; else `pii_days` when
/// the collection declares PII fields or the document names a subject; else
/// `default_days`. `None` keeps such documents forever. A document has expired once
/// `created_at + days <= now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    pub now: Timestamp,
    pub default_days: Option<u32>,
    pub pii_days: Option<u32>,
}

/// Expired documents of one collection, split by whether they name a subject (which
/// decides between the PII and the default period in collections without their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCount {
    pub collection: CollectionName,
    pub with_subject: bool,
    /// Expired documents, held ones included.
    pub expired: u64,
    /// Of those, how many an active legal hold keeps.
    pub held: u64,
    pub oldest_created_at: Option<Timestamp>,
}

/// Builds the audit events of a retention batch from how many documents it deleted (known
/// only inside the transaction); called only when it deleted some.
pub type BatchAudit = Box<dyn FnOnce(u64) -> Audit + Send>;

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Stores a new active hold. A collection hold needs the collection (`NotFound`).
    async fn place_legal_hold(&self, hold: LegalHold, audit: Audit) -> StoreResult<()>;
    /// Releases an active hold and returns it as released; `NotFound` when there is no
    /// active hold with this id (nothing is committed, its audit records included).
    async fn release_legal_hold(&self, id: &HoldId, by: &str, at: Timestamp, audit: Audit) -> StoreResult<LegalHold>;
    async fn get_legal_hold(&self, id: &HoldId) -> StoreResult<Option<LegalHold>>;
    /// Holds by creation time; released ones only when asked.
    async fn list_legal_holds(&self, include_released: bool) -> StoreResult<Vec<LegalHold>>;
    /// The expired documents of every collection under `rule`, grouped by collection and
    /// whether they name a subject (groups with none are left out). Changes nothing.
    async fn count_expired_documents(&self, rule: RetentionRule) -> StoreResult<Vec<ExpiredCount>>;
    /// Deletes up to `limit` documents of `collection` that have expired under `rule` and
    /// that no active hold keeps, with their blind-index entries, in one transaction with
    /// the audit events `audit` builds from the count. Expiry and holds are decided in
    /// that transaction. Returns how many went (0: nothing committed, no audit record).
    async fn delete_expired_documents(
        &self,
        collection: &CollectionName,
        rule: RetentionRule,
        limit: usize,
        audit: BatchAudit,
    ) -> StoreResult<u64>;
}
