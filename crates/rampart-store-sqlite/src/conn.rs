use std::path::Path;
use std::sync::{Arc, Mutex};

use rampart_store::{Audit, AuditChainer, StoreError, StoreResult};
use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::Semaphore;

use crate::{internal, map_err, migrations};

const READERS: usize = 4;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    pub(crate) chainer: std::sync::OnceLock<Arc<dyn AuditChainer>>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Deleted content is overwritten, so erased values do not linger in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(())
}

pub(crate) fn open_store(path: &Path) -> StoreResult<SqliteStore> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let mut writer = Connection::open_with_flags(path, flags).map_err(map_err)?;
    let mode: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(internal(std::io::Error::other("could not enable WAL journal mode")));
    }
    configure(&writer).map_err(map_err)?;
    migrations::run(&mut writer)?;
    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let r = Connection::open_with_flags(path, flags).map_err(map_err)?;
        configure(&r).map_err(map_err)?;
        readers.push(r);
    }
    Ok(SqliteStore {
        inner: Arc::new(Inner {
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            readers: Mutex::new(readers),
            reader_slots: Semaphore::new(READERS),
            chainer: std::sync::OnceLock::new(),
        }),
    })
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    internal(std::io::Error::other(format!("storage task failed: {e}")))
}

impl SqliteStore {
    pub(crate) fn inner_chainer(&self) -> &std::sync::OnceLock<Arc<dyn AuditChainer>> {
        &self.inner.chainer
    }

    /// Runs `f` on a reader connection off the async runtime.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = self.inner.reader_slots.acquire().await.map_err(internal)?;
        let inner = Arc::clone(&self.inner);
        let out = tokio::task::spawn_blocking(move || {
            let conn = inner.readers.lock().ok().and_then(|mut v| v.pop());
            let Some(conn) = conn else {
                return Err(internal(std::io::Error::other("reader pool empty")));
            };
            let result = f(&conn);
            if let Ok(mut v) = inner.readers.lock() {
                v.push(conn);
            }
            result
        })
        .await
        .map_err(join_error)?;
        drop(permit);
        out
    }

    /// Runs `f` on the writer connection outside any transaction (checkpoints, vacuum).
    pub(crate) async fn with_writer<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let guard = Arc::clone(&self.inner.writer).lock_owned().await;
        tokio::task::spawn_blocking(move || f(&guard)).await.map_err(join_error)?
    }

    /// Runs `f` in an immediate write transaction and appends `audit` to the chain in the
    /// same transaction; commits only if both succeed, so a change is never made without
    /// its audit record.
    pub(crate) async fn write<T, F>(&self, audit: Audit, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let mut guard = Arc::clone(&self.inner.writer).lock_owned().await;
        let chainer = self.inner.chainer.get().cloned();
        tokio::task::spawn_blocking(move || {
            let tx = guard.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(map_err)?;
            let value = f(&tx)?;
            if !audit.is_empty() {
                let chainer = chainer.ok_or_else(|| {
                    StoreError::AuditUnavailable(Box::new(std::io::Error::other("audit chain key not installed")))
                })?;
                crate::audit::append_in(&tx, chainer.as_ref(), &audit)?;
            }
            tx.commit().map_err(map_err)?;
            Ok(value)
        })
        .await
        .map_err(join_error)?
    }
}
