use async_trait::async_trait;
use rampart_types::{Timestamp, Username};

use crate::{Audit, StoreResult};

/// A user's second-factor state; secrets are sealed by the core before they get here.
#[derive(Clone, Default)]
pub struct MfaState {
    pub secret: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    /// Last TOTP time step accepted: a code is never accepted twice.
    pub last_step: i64,
}

impl std::fmt::Debug for MfaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaState").field("enabled", &self.secret.is_some()).finish_non_exhaustive()
    }
}

/// Second factors: TOTP secrets, recovery codes and login challenges. Every "claim" or
/// "spend" method is atomic: of concurrent calls for the same step, code or challenge,
/// exactly one succeeds.
#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn mfa_state(&self, user: &Username) -> StoreResult<MfaState>;
    async fn set_mfa_pending(&self, user: &Username, sealed: Option<Vec<u8>>) -> StoreResult<()>;
    /// Makes the pending secret active, sets `mfa_enabled`, replaces recovery codes, and
    /// ends every session and refresh token of the user (all were opened without it).
    async fn activate_mfa(&self, user: &Username, code_hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()>;
    /// Clears secret, pending secret and codes; `end_sessions` also ends every session.
    /// `NotFound` (and no audit record) for an unknown user.
    async fn disable_mfa(&self, user: &Username, end_sessions: bool, audit: Audit) -> StoreResult<()>;
    /// Accepts TOTP step `step` only if it is newer than the last accepted one (atomic).
    async fn claim_totp_step(&self, user: &Username, step: i64) -> StoreResult<bool>;
    /// Spends a recovery code (atomic); false if unknown or already used.
    async fn use_recovery_code(
        &self,
        user: &Username,
        hash: [u8; 32],
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<bool>;
    async fn replace_recovery_codes(&self, user: &Username, hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()>;
    async fn create_challenge(&self, hash: [u8; 32], user: &Username, expires_at: Timestamp) -> StoreResult<()>;
    /// Counts an attempt on a live challenge and returns its user; `None` when unknown,
    /// expired, used or out of attempts.
    async fn attempt_challenge(
        &self,
        hash: [u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Option<Username>>;
    /// Marks the challenge used; true for exactly one of any number of concurrent calls.
    async fn consume_challenge(&self, hash: [u8; 32]) -> StoreResult<bool>;
}
