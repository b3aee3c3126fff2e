#![allow(unused_variables)]
//! STUB: to be ported from rampart-store-sqlite.
use async_trait::async_trait;
use rampart_store::*;
use rampart_types::*;

use crate::PostgresStore;

#[async_trait]
impl PrivacyStore for PostgresStore {
    async fn erase_subject(
        &self,
        subject: &SubjectId,
        subject_hash: &str,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<u64> {
        Err(crate::not_yet())
    }

    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>> {
        Err(crate::not_yet())
    }
}
