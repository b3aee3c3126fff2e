//! PostgreSQL backend, for deployments of several stateless nodes on one database:
//! `synchronous_commit = on`, parameterised statements only, one writer connection per node
//! that group-commits, a bounded reader pool, forward-only migrations under an advisory
//! lock, and cache invalidation from every node's commits through LISTEN/NOTIFY.

mod audit;
mod conn;
mod connector;
mod documents;
mod external;
mod keys;
mod lease;
mod mfa;
mod migrations;
mod privacy;
pub mod retention;
mod roles;
mod security;
mod sessions;
#[cfg(feature = "tamper")]
pub mod tamper;
mod throttle;
mod tokens;
pub mod transfer;
mod users;

use async_trait::async_trait;
use postgres::error::SqlState;
use rampart_store::{MetaStore, StoreError, StoreResult};

pub use conn::{PostgresOptions, PostgresStore};
pub use lease::AdvisoryLease;

pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(e))
}

/// Maps PostgreSQL errors to store errors: a lost connection, a server shutting down or
/// failing over, a serialization failure or deadlock between nodes are retryable
/// `Unavailable`; a unique violation is `AlreadyExists`.
pub(crate) fn map_err(e: postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::Unavailable(Box::new(e));
    }
    let Some(code) = e.code() else {
        // No SQL state: the connection or the protocol failed, not a statement.
        return StoreError::Unavailable(Box::new(e));
    };
    match code {
        c if *c == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists,
        c if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::LOCK_NOT_AVAILABLE
            || *c == SqlState::READ_ONLY_SQL_TRANSACTION
            || *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::TOO_MANY_CONNECTIONS
            || *c == SqlState::DISK_FULL
            || *c == SqlState::QUERY_CANCELED =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        _ => internal(e),
    }
}

/// Shared by the aggregates: parses a stored text column into a validated type.
pub(crate) fn parse_col<T, E: std::fmt::Display>(value: &str, parse: impl Fn(&str) -> Result<T, E>) -> StoreResult<T> {
    parse(value).map_err(|e| internal(std::io::Error::other(format!("stored value does not parse: {e}"))))
}

/// A 32-byte column (hashes, MACs) read back into its array.
pub(crate) fn bytes32(value: &[u8]) -> StoreResult<[u8; 32]> {
    value.try_into().map_err(|_| internal(std::io::Error::other("stored hash is not 32 bytes")))
}

/// Client-provided text for a `text` column: PostgreSQL's text cannot hold NUL, so each NUL
/// becomes U+FFFD (the replacement character) instead of failing the statement. Applied the
/// same way where a value is stored and where it is looked up, so lookups stay consistent;
/// a key with a NUL only meets the same key spelled with U+FFFD, which no validated name
/// (usernames, addresses, networks) contains.
pub(crate) fn text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// `text` for an optional column.
pub(crate) fn text_opt(value: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    value.map(text)
}

/// A missing referenced row (a foreign key: the user, the role) reads as `NotFound`.
pub(crate) fn must_exist(e: postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::NotFound
    } else {
        map_err(e)
    }
}

/// Locks the user's row until the transaction ends; whether the user exists. Every change
/// to a user's sessions, refresh tokens or second factor takes it first, so such changes on
/// all nodes run one at a time per user and always lock in one order (the user row, then
/// its sessions and refresh tokens): no deadlock between them.
pub(crate) fn lock_user(tx: &mut postgres::Transaction<'_>, username: &str) -> StoreResult<bool> {
    let row = tx.query_opt("SELECT 1 FROM users WHERE username = $1 FOR UPDATE", &[&username]).map_err(map_err)?;
    Ok(row.is_some())
}

/// A count or limit as PostgreSQL's BIGINT.
pub(crate) fn big(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A removal whose change reported `NotFound` (and so rolled back, audit records included):
/// `false` rather than an error, for methods that answer whether something was removed.
pub(crate) fn changed(result: StoreResult<()>) -> StoreResult<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl MetaStore for PostgresStore {
    /// Nothing is buffered on this side: every acknowledged commit is already durable.
    async fn close(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |c| {
            let row = c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key]).map_err(map_err)?;
            Ok(row.map(|r| r.get(0)))
        })
        .await
    }

    async fn init_meta(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>> {
        let key = key.to_owned();
        self.write(Vec::new(), move |tx| {
            tx.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", &[&key, &value])
                .map_err(map_err)?;
            Ok(tx.query_one("SELECT value FROM meta WHERE key = $1", &[&key]).map_err(map_err)?.get(0))
        })
        .await
    }

    fn invalidation(&self) -> std::sync::Arc<dyn rampart_store::CacheInvalidation> {
        self.invalidation_feed()
    }
}
