use async_trait::async_trait;
use rampart_types::{Timestamp, Username};

use crate::{Audit, SessionRecord, StoreResult};

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

/// A refresh token as stored (hash only), one link of a rotation family.
#[derive(Clone)]
pub struct RefreshRecord {
    pub token_hash: [u8; 32],
    pub family_id: String,
    pub session_id: String,
    pub username: Username,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The assurance of the login that started the family; every rotation keeps it.
    pub assurance: crate::Assurance,
}

/// A JWT signing key: the PKCS#8 document sealed by the core, the public key in clear.
#[derive(Clone)]
pub struct JwtKeyRecord {
    pub kid: String,
    pub sealed: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: Timestamp,
    /// When it stopped signing; still published in the JWKS for an overlap window.
    pub retired_at: Option<Timestamp>,
}

#[derive(Debug)]
pub enum RefreshOutcome {
    /// The old token is spent; `new` and its session replace it.
    Rotated {
        username: Username,
        family_id: String,
        /// Carried from the family's first login.
        assurance: crate::Assurance,
    },
    /// A spent token came back: the whole family was revoked.
    Reused {
        username: Username,
        family_id: String,
    },
    Invalid,
}

#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn mfa_state(&self, user: &Username) -> StoreResult<MfaState>;
    async fn set_mfa_pending(&self, user: &Username, sealed: Option<Vec<u8>>) -> StoreResult<()>;
    /// Makes the pending secret active, sets `mfa_enabled`, replaces recovery codes, and
    /// ends every session and refresh token of the user (all were opened without it).
    async fn activate_mfa(&self, user: &Username, code_hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()>;
    /// Clears secret, pending secret and codes; `end_sessions` also ends every session.
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
    /// Opens a session together with the first refresh token of a new family.
    async fn create_session_with_refresh(
        &self,
        s: SessionRecord,
        r: RefreshRecord,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<()>;
    /// Spends `old` and, if it was live, stores `new` with its session (same family),
    /// ending the old pair's session. Reuse of a spent token revokes the family. Atomic, so
    /// of two concurrent uses exactly one rotates.
    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>>;
    /// Retires every current signing key at `now` and adds `key` as the current one.
    async fn add_jwt_key(&self, key: JwtKeyRecord, now: Timestamp, audit: Audit) -> StoreResult<()>;
    /// The new session counts against `max_per_user` like a login's (oldest end first).
    #[allow(clippy::too_many_arguments)]
    async fn rotate_refresh(
        &self,
        old: [u8; 32],
        new: RefreshRecord,
        session: SessionRecord,
        now: Timestamp,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<RefreshOutcome>;
}
