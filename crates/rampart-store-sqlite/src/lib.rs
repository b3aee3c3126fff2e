//! SQLite backend: WAL, `synchronous=FULL` (every acknowledged commit is on disk),
//! parameterised statements only. One writer connection serialises writes; a small pool
//! of readers serves reads concurrently. All SQLite calls run on the blocking pool.

mod audit;
mod conn;
mod documents;
mod external;
mod keys;
mod mfa;
mod migrations;
mod privacy;
pub mod retention;
mod roles;
mod security;
mod sessions;
mod snapshot;
#[cfg(feature = "tamper")]
pub mod tamper;
mod throttle;
mod tokens;
mod transfer;
mod users;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rampart_store::{MetaStore, StoreError, StoreResult};
use rusqlite::{params, OptionalExtension};

pub use conn::SqliteStore;
pub use snapshot::{check_file, install_keys};

pub(crate) fn internal(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal(Box::new(e))
}

/// Maps SQLite errors to store errors: busy/locked/full/I-O are retryable `Unavailable`.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure | C::CannotOpen | C::ReadOnly => {
                StoreError::Unavailable(Box::new(e))
            }
            C::ConstraintViolation => StoreError::AlreadyExists,
            _ => internal(e),
        },
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        _ => internal(e),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/rampart.db` and runs migrations.
    pub fn open(dir: &Path) -> StoreResult<Self> {
        let path: PathBuf = dir.join("rampart.db");
        // Create the file private first: SQLite gives its -wal and -shm files the same mode.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        }
        conn::open_store(&path)
    }
}

impl SqliteStore {
    pub(crate) async fn get_meta_raw(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional().map_err(map_err)
        })
        .await
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    /// Checkpoints the WAL into the main file; called on graceful shutdown.
    async fn close(&self) -> StoreResult<()> {
        self.with_writer(|conn| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(map_err))
            .await
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional().map_err(map_err)
        })
        .await
    }

    async fn init_meta(&self, key: &str, value: Vec<u8>) -> StoreResult<Vec<u8>> {
        let key = key.to_owned();
        self.write(Vec::new(), move |tx| {
            tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                .map_err(map_err)?;
            tx.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).map_err(map_err)
        })
        .await
    }

    fn invalidation(&self) -> std::sync::Arc<dyn rampart_store::CacheInvalidation> {
        self.invalidation_feed()
    }
}

/// Shared by the aggregates: parses a stored text column into a validated type.
pub(crate) fn parse_col<T, E: std::fmt::Display>(
    value: String,
    parse: impl Fn(&str) -> Result<T, E>,
) -> rusqlite::Result<T> {
    parse(&value)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.to_string().into()))
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
