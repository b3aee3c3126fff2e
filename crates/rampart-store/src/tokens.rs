//! What a session carries beyond its row: refresh-token families and the JWT signing keys.

use async_trait::async_trait;
use rampart_types::{FamilyId, SessionId, SigningKeyId, Timestamp, Username};

use crate::{Audit, SessionRecord, StoreResult};

/// A refresh token as stored (hash only), one link of a rotation family.
#[derive(Clone)]
pub struct RefreshRecord {
    pub token_hash: [u8; 32],
    pub family_id: FamilyId,
    pub session_id: SessionId,
    pub username: Username,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The assurance of the login that started the family; every rotation keeps it.
    pub assurance: crate::Assurance,
}

/// A JWT signing key: the PKCS#8 document sealed by the core, the public key in clear.
#[derive(Clone)]
pub struct JwtKeyRecord {
    pub kid: SigningKeyId,
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
        family_id: FamilyId,
        /// Carried from the family's first login.
        assurance: crate::Assurance,
    },
    /// A spent token came back: the whole family was revoked.
    Reused {
        username: Username,
        family_id: FamilyId,
    },
    Invalid,
}

/// Refresh tokens (stored as hashes, in rotation families) and JWT signing keys. Each
/// method is one transaction with its audit events.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Opens a session together with the first refresh token of a new family.
    async fn create_session_with_refresh(
        &self,
        s: SessionRecord,
        r: RefreshRecord,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<()>;
    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>>;
    /// Retires every current signing key at `now` and adds `key` as the current one.
    async fn add_jwt_key(&self, key: JwtKeyRecord, now: Timestamp, audit: Audit) -> StoreResult<()>;
    /// Spends `old` and, if it was live, stores `new` with its session (same family),
    /// ending the old pair's session. Reuse of a spent token revokes the family, except
    /// within 5 s of its use, which is the client racing itself (two tabs, a retry): that
    /// use is `Invalid` and revokes nothing. Atomic, so
    /// of two concurrent uses exactly one rotates. The new session counts against
    /// `max_per_user` like a login's (oldest end first).
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
