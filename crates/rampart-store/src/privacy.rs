//! Data-subject rights: crypto-shredding and the erasure ledger (consent comes next).

use async_trait::async_trait;
use rampart_types::{SubjectId, Timestamp};

use crate::{Audit, StoreResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureEntry {
    pub subject_hash: String,
    pub erased_at: Timestamp,
}

/// Erasure of data subjects. `erase_subject` is one transaction: the subject's documents
/// and keys go and the ledger gains its entry together, or nothing changes.
#[async_trait]
pub trait PrivacyStore: Send + Sync {
    /// Crypto-shredding: deletes the subject's documents in every collection and its keys,
    /// and appends `subject_hash` to the erasure ledger, in one transaction.
    async fn erase_subject(
        &self,
        subject: &SubjectId,
        subject_hash: &str,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<u64>;
    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>>;
}
