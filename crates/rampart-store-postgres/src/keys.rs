#![allow(unused_variables)]
//! STUB: to be ported from rampart-store-sqlite.
use async_trait::async_trait;
use rampart_store::*;
use rampart_types::*;

use crate::PostgresStore;

#[async_trait]
impl KeyStore for PostgresStore {
    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        Err(crate::not_yet())
    }

    async fn current_key(&self, kind: KeyKind, owner: &str) -> StoreResult<Option<KeyRecord>> {
        Err(crate::not_yet())
    }

    async fn insert_key(&self, key: KeyRecord, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn list_keys(&self, after: &str, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        Err(crate::not_yet())
    }

    async fn count_keys(&self) -> StoreResult<Vec<(KeyKind, u64)>> {
        Err(crate::not_yet())
    }

    async fn kek_versions(&self) -> StoreResult<Vec<KekVersion>> {
        Err(crate::not_yet())
    }

    async fn rotate_kek(&self, version: KekVersion, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64> {
        Err(crate::not_yet())
    }

    async fn change_master(&self, kcv: Vec<u8>, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64> {
        Err(crate::not_yet())
    }

    async fn start_reencrypt(&self, successors: Vec<(String, KeyRecord)>, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn reencrypt_cursor(&self) -> StoreResult<Option<i64>> {
        Err(crate::not_yet())
    }

    async fn apply_reseal(&self, batch: Vec<Reseal>, cursor: i64) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn finish_reencrypt(&self, audit: Audit) -> StoreResult<u64> {
        Err(crate::not_yet())
    }
}
