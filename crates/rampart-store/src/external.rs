//! Accounts proven by an external identity provider (OpenID Connect): which local user an
//! (issuer, subject) pair is, and the logins started at a provider and not yet finished.

use async_trait::async_trait;
use rampart_types::{Timestamp, Username};

use crate::{Audit, StoreResult, UserRecord};

/// A local user linked to one subject of one issuer. The link goes with the user: deleting
/// the user deletes it (a later account of the same name is never reached through it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    pub username: Username,
    pub created_at: Timestamp,
}

/// A login sent to the provider and not yet back. The state is kept only as a hash, and so
/// is the value that binds the flow to the client that started it (a browser cookie or the
/// API client's flow token).
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub state_hash: [u8; 32],
    pub binding_hash: [u8; 32],
    pub nonce: String,
    pub pkce_verifier: String,
    /// `cookie` or `token`: how the callback answers.
    pub mode: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("mode", &self.mode)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait ExternalIdentityStore: Send + Sync {
    /// Records a pending login. In the same transaction, expired ones (`expires_at <= now`)
    /// are deleted and, when `max` remain, the oldest are dropped to make room.
    async fn create_pending_login(&self, login: PendingLogin, now: Timestamp, max: usize) -> StoreResult<()>;
    /// Deletes and returns the pending login with this state and binding (one statement:
    /// of concurrent calls, exactly one gets it). A wrong binding spends nothing.
    async fn take_pending_login(
        &self,
        state_hash: [u8; 32],
        binding_hash: [u8; 32],
    ) -> StoreResult<Option<PendingLogin>>;
    /// How many pending logins are stored (expired ones included until swept).
    async fn count_pending_logins(&self) -> StoreResult<u64>;
    async fn get_external_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<ExternalIdentity>>;
    /// Creates `user` and links it to `identity` in one transaction: `AlreadyExists` when
    /// the username is taken or the identity is linked already (nothing is created).
    async fn create_external_user(&self, user: UserRecord, identity: ExternalIdentity, audit: Audit)
        -> StoreResult<()>;
}
