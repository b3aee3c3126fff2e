#![allow(unused_variables)]
//! STUB: to be ported from rampart-store-sqlite.
use async_trait::async_trait;
use rampart_store::*;
use rampart_types::*;

use crate::PostgresStore;

#[async_trait]
impl MfaStore for PostgresStore {
    async fn mfa_state(&self, user: &Username) -> StoreResult<MfaState> {
        Err(crate::not_yet())
    }

    async fn set_mfa_pending(&self, user: &Username, sealed: Option<Vec<u8>>) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn activate_mfa(&self, user: &Username, code_hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn disable_mfa(&self, user: &Username, end_sessions: bool, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn claim_totp_step(&self, user: &Username, step: i64) -> StoreResult<bool> {
        Err(crate::not_yet())
    }

    async fn use_recovery_code(
        &self,
        user: &Username,
        hash: [u8; 32],
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<bool> {
        Err(crate::not_yet())
    }

    async fn replace_recovery_codes(&self, user: &Username, hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn create_challenge(&self, hash: [u8; 32], user: &Username, expires_at: Timestamp) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn attempt_challenge(
        &self,
        hash: [u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Option<Username>> {
        Err(crate::not_yet())
    }

    async fn consume_challenge(&self, hash: [u8; 32]) -> StoreResult<bool> {
        Err(crate::not_yet())
    }
}
