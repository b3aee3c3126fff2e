#![allow(unused_variables)]
//! STUB: to be ported from rampart-store-sqlite.
use async_trait::async_trait;
use rampart_store::*;
use rampart_types::*;

use crate::PostgresStore;

#[async_trait]
impl TokenStore for PostgresStore {
    async fn create_session_with_refresh(
        &self,
        s: SessionRecord,
        r: RefreshRecord,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        Err(crate::not_yet())
    }

    async fn add_jwt_key(&self, key: JwtKeyRecord, now: Timestamp, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn rotate_refresh(
        &self,
        old: [u8; 32],
        new: RefreshRecord,
        session: SessionRecord,
        now: Timestamp,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<RefreshOutcome> {
        Err(crate::not_yet())
    }
}
