//! Storage traits, split by aggregate, and the records they hold. Backends (SQLite,
//! PostgreSQL) implement them; nothing above this crate sees SQL.
//!
//! Document bodies are opaque bytes here: the core decides their encoding (and, later,
//! their encryption). Index entries are keyed tokens, never plaintext field values.

mod audit;
mod external;
mod invalidation;
mod keys;
mod lease;
mod mfa;
mod privacy;
mod records;
mod retention;
mod security;
#[cfg(feature = "tamper")]
pub mod tamper;
mod throttle;
mod tokens;
pub mod transfer;

use async_trait::async_trait;
use rampart_types::{CollectionName, DocumentId, RoleName, SessionId, SubjectId, Timestamp, Username};

pub use audit::*;
pub use external::*;
pub use invalidation::*;
pub use keys::*;
pub use lease::*;
pub use mfa::*;
pub use privacy::*;
pub use records::*;
pub use retention::*;
pub use security::*;
pub use throttle::*;
pub use tokens::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("version mismatch")]
    VersionMismatch,
    /// The change would leave no enabled user with the admin role.
    #[error("the last admin cannot be removed, disabled or demoted")]
    LastAdmin,
    /// A referenced row is in use (a role assigned to users, ...).
    #[error("in use: {0}")]
    InUse(&'static str),
    /// A bound on how many of something may exist was reached; nothing was added.
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// An active legal hold (this one) keeps what the change would delete; nothing changed.
    #[error("under legal hold {0}")]
    LegalHold(rampart_types::HoldId),
    /// The audit trail could not be written; the change was not made.
    #[error("audit log unavailable")]
    AuditUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The chain's table tail does not match its signed head (records removed, head lost
    /// or forged): nothing is appended until an operator repairs the chain.
    #[error("audit chain broken: {0}")]
    AuditChainBroken(&'static str),
    /// A data-subject verification token is unknown, spent, expired or for another
    /// subject; nothing was changed.
    #[error("verification token invalid")]
    VerificationInvalid,
    /// The backend cannot serve right now (locked, disk full, I/O error): retryable.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("storage failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// The same failure again, for each of several waiters on one commit (the boxed
    /// sources cannot be cloned, so they are carried over as their messages).
    pub fn duplicate(&self) -> StoreError {
        let copy = |x: &(dyn std::error::Error + Send + Sync)| -> Box<dyn std::error::Error + Send + Sync> {
            Box::new(std::io::Error::other(x.to_string()))
        };
        match self {
            StoreError::NotFound => StoreError::NotFound,
            StoreError::AlreadyExists => StoreError::AlreadyExists,
            StoreError::VersionMismatch => StoreError::VersionMismatch,
            StoreError::LastAdmin => StoreError::LastAdmin,
            StoreError::VerificationInvalid => StoreError::VerificationInvalid,
            StoreError::InUse(what) => StoreError::InUse(what),
            StoreError::LimitReached(what) => StoreError::LimitReached(what),
            StoreError::LegalHold(id) => StoreError::LegalHold(id.clone()),
            StoreError::AuditChainBroken(why) => StoreError::AuditChainBroken(why),
            StoreError::AuditUnavailable(x) => StoreError::AuditUnavailable(copy(x.as_ref())),
            StoreError::Unavailable(x) => StoreError::Unavailable(copy(x.as_ref())),
            StoreError::Internal(x) => StoreError::Internal(copy(x.as_ref())),
        }
    }
}

#[async_trait]
pub trait MetaStore: Send + Sync {
    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Sets `key` only if it has no value yet; returns the value now stored.
    async fn init_meta(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>>;
    /// The feed this store publishes every committed change of a cached topic to.
    fn invalidation(&self) -> std::sync::Arc<dyn CacheInvalidation>;
    /// Flushes what the backend buffers (SQLite: a WAL checkpoint) before a shutdown or a
    /// reopen; everything acknowledged is durable before it already.
    async fn close(&self) -> StoreResult<()>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, user: UserRecord, audit: Audit) -> StoreResult<()>;
    async fn get_user(&self, username: &Username) -> StoreResult<Option<UserRecord>>;
    /// Users ordered by name, starting after `after`.
    async fn list_users(&self, after: Option<&Username>, limit: usize) -> StoreResult<Vec<UserRecord>>;
    async fn count_users(&self) -> StoreResult<u64>;
    /// Applies `change` and, when it changes role or disabled state, ends every session of
    /// the user in the same transaction. Refuses with `LastAdmin` if no enabled admin remains.
    async fn update_user(&self, username: &Username, change: UserChange, audit: Audit) -> StoreResult<UserRecord>;
    /// Deletes the user and their sessions; `LastAdmin` if they are the last enabled admin.
    async fn delete_user(&self, username: &Username, audit: Audit) -> StoreResult<()>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Inserts the session, ending the user's oldest sessions beyond `max_per_user`.
    async fn create_session(&self, session: SessionRecord, max_per_user: u32, audit: Audit) -> StoreResult<()>;
    async fn get_session_by_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>>;
    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()>;
    async fn list_sessions(&self, username: &Username) -> StoreResult<Vec<SessionRecord>>;
    /// Returns whether a session was deleted.
    async fn delete_session(&self, id: &SessionId, audit: Audit) -> StoreResult<bool>;
    /// Ends every session of `username` except `keep`; returns how many ended.
    async fn delete_user_sessions(
        &self,
        username: &Username,
        keep: Option<&SessionId>,
        audit: Audit,
    ) -> StoreResult<u64>;
    /// Ends sessions idle since before `idle_cutoff` or past their absolute expiry.
    async fn delete_expired_sessions(&self, idle_cutoff: Timestamp, now: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait RoleStore: Send + Sync {
    async fn list_roles(&self) -> StoreResult<Vec<RoleRecord>>;
    async fn get_role(&self, name: &RoleName) -> StoreResult<Option<RoleRecord>>;
    /// Refuses with `LimitReached` when `max_roles` roles (built-in ones included) exist:
    /// counted inside the transaction, so concurrent creations cannot pass it together.
    async fn create_role(&self, role: RoleRecord, max_roles: usize, audit: Audit) -> StoreResult<()>;
    /// Creates or replaces a built-in role definition (used at start-up).
    async fn upsert_builtin_role(&self, role: RoleRecord) -> StoreResult<()>;
    /// Replaces a custom role; ends the sessions of users holding it in the same transaction.
    async fn update_role(&self, role: RoleRecord, audit: Audit) -> StoreResult<()>;
    /// `InUse` while users hold the role.
    async fn delete_role(&self, name: &RoleName, audit: Audit) -> StoreResult<()>;
}

/// Computes the index entries of one stored document (called inside a reindex transaction).
pub type Indexer = Box<dyn Fn(&DocumentRecord) -> Result<Vec<IndexEntry>, String> + Send>;

#[async_trait]
pub trait CollectionStore: Send + Sync {
    async fn create_collection(&self, c: CollectionRecord, audit: Audit) -> StoreResult<()>;
    async fn get_collection(&self, name: &CollectionName) -> StoreResult<Option<CollectionRecord>>;
    async fn list_collections(&self) -> StoreResult<Vec<CollectionRecord>>;
    /// Replaces the settings; when `reindex` is given, rebuilds every index entry of the
    /// collection with it in the same transaction.
    async fn update_collection(&self, c: CollectionRecord, reindex: Option<Indexer>, audit: Audit) -> StoreResult<()>;
    /// Deletes the collection with its documents and index entries; `LegalHold` when an
    /// active hold covers the collection or a subject with documents in it (checked in the
    /// deleting transaction).
    async fn delete_collection(&self, name: &CollectionName, audit: Audit) -> StoreResult<()>;
}

#[async_trait]
pub trait DocumentStore: Send + Sync {
    async fn insert_document(
        &self,
        doc: DocumentRecord,
        index: Vec<IndexEntry>,
        audit: Audit,
    ) -> StoreResult<DocumentRecord>;
    async fn get_document(&self, c: &CollectionName, id: &DocumentId) -> StoreResult<Option<DocumentRecord>>;
    /// Replaces body and index if the stored version is `expected_version`
    /// (`VersionMismatch` otherwise); the new version is `expected_version + 1`.
    async fn replace_document(
        &self,
        doc: DocumentRecord,
        expected_version: u64,
        index: Vec<IndexEntry>,
        audit: Audit,
    ) -> StoreResult<DocumentRecord>;
    /// `LegalHold` when an active hold covers the document's collection or subject
    /// (checked in the deleting transaction).
    async fn delete_document(
        &self,
        c: &CollectionName,
        id: &DocumentId,
        expected_version: Option<u64>,
        audit: Audit,
    ) -> StoreResult<()>;
    async fn query_documents(&self, q: DocumentQuery) -> StoreResult<Vec<DocumentRecord>>;
    /// Every document of a subject across collections (for later privacy APIs and tests).
    async fn count_subject_documents(&self, subject: &SubjectId) -> StoreResult<u64>;
    /// The subject's documents in every collection, after `seq` in seq order.
    async fn subject_documents(
        &self,
        subject: &SubjectId,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<DocumentRecord>>;
    /// How many documents the subject has in each collection (collections with none omitted).
    async fn subject_collections(&self, subject: &SubjectId) -> StoreResult<Vec<(CollectionName, u64)>>;
    /// Highest seq among stored documents (0 when none): a bound for progress reporting,
    /// not a sequence (seqs are never reused, but the newest may have been deleted).
    async fn max_document_seq(&self) -> StoreResult<i64>;
    /// Documents after `seq` in seq order (for re-encryption and restore).
    async fn documents_after(&self, seq: i64, limit: usize) -> StoreResult<Vec<DocumentRecord>>;
}

/// Everything a Rampart backend provides.
pub trait Store:
    MetaStore
    + AuditStore
    + KeyStore
    + SecurityStore
    + ThrottleStore
    + MfaStore
    + TokenStore
    + PrivacyStore
    + UserStore
    + SessionStore
    + RoleStore
    + CollectionStore
    + DocumentStore
    + RetentionStore
    + ExternalIdentityStore
{
}
impl<T> Store for T where
    T: MetaStore
        + AuditStore
        + KeyStore
        + SecurityStore
        + ThrottleStore
        + MfaStore
        + TokenStore
        + PrivacyStore
        + UserStore
        + SessionStore
        + RoleStore
        + CollectionStore
        + DocumentStore
        + RetentionStore
        + ExternalIdentityStore
{
}
