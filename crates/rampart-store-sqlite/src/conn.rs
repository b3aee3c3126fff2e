use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use rampart_store::{
    Audit, AuditChainer, CacheInvalidation, LocalInvalidation, StoreError, StoreResult, Topic, Topics,
};
use rusqlite::hooks::Action;
use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{internal, map_err, migrations};

const READERS: usize = 4;
/// Writes waiting for the writer; senders wait (backpressure) beyond this.
const WRITE_QUEUE: usize = 1024;
/// Most writes committed by one transaction (and one fsync).
const MAX_BATCH: usize = 256;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writes: Option<mpsc::Sender<Work>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    reader_slots: Semaphore,
    chainer: Arc<std::sync::OnceLock<Arc<dyn AuditChainer>>>,
    invalidation: Arc<dyn CacheInvalidation>,
    commit_sizes: Arc<rampart_store::CommitSizes>,
}

impl Drop for Inner {
    /// Closes the queue and waits for the writer to finish what it holds, so the database
    /// file is closed (and may be reopened or replaced) once the last handle is gone.
    fn drop(&mut self) {
        self.writes.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
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
    let chainer = Arc::new(std::sync::OnceLock::new());
    let invalidation: Arc<dyn CacheInvalidation> = Arc::new(LocalInvalidation::default());
    let changes = Arc::new(Changes::default());
    let hook_changes = Arc::clone(&changes);
    writer.update_hook(Some(move |action, _: &str, table: &str, _| hook_changes.saw(action, table)));
    let (writes, queue) = mpsc::channel(WRITE_QUEUE);
    let commit_sizes = Arc::new(rampart_store::CommitSizes::default());
    watch_other_processes(writes.downgrade())?;
    let writer = Writer {
        conn: writer,
        chainer: Arc::clone(&chainer),
        changes,
        invalidation: Arc::clone(&invalidation),
        data_version: None,
        commit_sizes: Arc::clone(&commit_sizes),
    };
    let writer_thread = std::thread::Builder::new()
        .name("rampart-sqlite-writer".into())
        .spawn(move || writer.run(queue))
        .map_err(internal)?;
    Ok(SqliteStore {
        inner: Arc::new(Inner {
            writes: Some(writes),
            writer_thread: Some(writer_thread),
            readers: Mutex::new(readers),
            reader_slots: Semaphore::new(READERS),
            chainer,
            invalidation,
            commit_sizes,
        }),
    })
}

/// How often the writer asks SQLite whether another process (a CLI verb run beside the
/// server) committed: such a change reaches no update hook of ours, so every cache is
/// dropped when one is seen. This bounds how long an outside change can go unnoticed.
const OTHER_PROCESS_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Asks the writer, every `OTHER_PROCESS_POLL`, to look for other processes' commits.
fn watch_other_processes(writes: mpsc::WeakSender<Work>) -> StoreResult<()> {
    std::thread::Builder::new()
        .name("rampart-sqlite-watch".into())
        .spawn(move || loop {
            std::thread::sleep(OTHER_PROCESS_POLL);
            // A weak handle: the store closing ends this thread instead of being held open.
            let Some(writes) = writes.upgrade() else { return };
            if writes.blocking_send(Work::CheckOtherProcesses).is_err() {
                return;
            }
        })
        .map_err(internal)?;
    Ok(())
}

/// The cached topics a write transaction touched, collected by SQLite's update hook so no
/// code path can forget to report one. Session inserts stale nothing; a quiet write (the
/// idle-timer touch) changes only what caches keep up to date themselves.
#[derive(Default)]
struct Changes {
    topics: AtomicU8,
    quiet: AtomicBool,
}

impl Changes {
    fn saw(&self, action: Action, table: &str) {
        let topics = match table {
            "users" | "roles" => Topics::of(Topic::Auth),
            "sessions" if action == Action::SQLITE_INSERT || self.quiet.load(Ordering::Relaxed) => return,
            "sessions" => Topics::of(Topic::Auth),
            // A collection's deletion takes its documents with it, however the rows go.
            "collections" => Topics::of(Topic::Collections).and(Topic::Documents),
            "documents" => Topics::of(Topic::Documents),
            "ip_blocks" => Topics::of(Topic::Blocks),
            "data_keys" if action == Action::SQLITE_INSERT => return,
            "data_keys" | "kek_versions" => Topics::of(Topic::Keys),
            _ => return,
        };
        self.topics.fetch_or(topics.bits(), Ordering::Relaxed);
    }

    fn take(&self) -> Topics {
        Topics::from_bits(self.topics.swap(0, Ordering::Relaxed))
    }
}

/// What a write answers once its transaction has committed (or failed to).
type Finish = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// How a change ran inside the shared transaction, with its answer for when it ends.
enum Ran {
    Applied(Finish),
    /// Answered with its own error whatever the transaction does.
    Failed(Finish),
}

/// One queued change: run inside the shared transaction, or refused unrun.
trait Change: Send {
    /// Applies the change. `Applied`: its savepoint is released and it waits for the commit;
    /// `Failed`: its savepoint is rolled back. Either way it is answered only once the
    /// transaction has ended, so a caller refused because of another change in the same
    /// batch (the key it collided with) finds that change committed when it looks.
    fn run(self: Box<Self>, tx: &Transaction<'_>, chainer: Option<&Arc<dyn AuditChainer>>) -> Ran;
    fn refuse(self: Box<Self>, e: StoreError);
}

/// `f` returns the change's result and its audit events (most changes know their events
/// before they run; a retention batch learns its count only inside the transaction).
struct ChangeJob<T, F> {
    f: F,
    done: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Change for ChangeJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Transaction<'_>) -> StoreResult<(T, Audit)> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &Transaction<'_>, chainer: Option<&Arc<dyn AuditChainer>>) -> Ran {
        let ChangeJob { f, done } = *self;
        let result = f(tx).and_then(|(value, audit)| {
            if !audit.is_empty() {
                crate::audit::append_chained(tx, chainer, &audit)?;
            }
            Ok(value)
        });
        match result {
            Ok(value) => Ran::Applied(Box::new(move |failed: Option<StoreError>| {
                let _ = done.send(failed.map_or(Ok(value), Err));
            })),
            Err(e) => Ran::Failed(Box::new(move |_| {
                let _ = done.send(Err(e));
            })),
        }
    }

    fn refuse(self: Box<Self>, e: StoreError) {
        let _ = self.done.send(Err(e));
    }
}

/// Events that accompany no change (reads, refusals), to be appended to the chain.
type AuditOnly = (Audit, oneshot::Sender<StoreResult<Vec<i64>>>);

/// Every audit-only append queued together, written with one walk of the chain (the tail
/// verified once) in the shared transaction; each caller gets its own seqs.
struct AuditAppends(Vec<AuditOnly>);

impl Change for AuditAppends {
    fn run(self: Box<Self>, tx: &Transaction<'_>, chainer: Option<&Arc<dyn AuditChainer>>) -> Ran {
        let mut events = Vec::with_capacity(self.0.iter().map(|(e, _)| e.len()).sum());
        let mut waiters = Vec::with_capacity(self.0.len());
        for (mine, done) in self.0 {
            waiters.push((mine.len(), done));
            events.extend(mine);
        }
        match crate::audit::append_chained(tx, chainer, &events) {
            Ok(seqs) => Ran::Applied(Box::new(move |failed: Option<StoreError>| {
                let mut seqs = seqs.into_iter();
                for (n, done) in waiters {
                    let mine: Vec<i64> = seqs.by_ref().take(n).collect();
                    let _ = done.send(failed.as_ref().map_or(Ok(mine), |e| Err(e.duplicate())));
                }
            })),
            Err(e) => Ran::Failed(Box::new(move |_| {
                for (_, done) in waiters {
                    let _ = done.send(Err(e.duplicate()));
                }
            })),
        }
    }

    fn refuse(self: Box<Self>, e: StoreError) {
        for (_, done) in self.0 {
            let _ = done.send(Err(e.duplicate()));
        }
    }
}

enum Work {
    /// A change and its audit events, committed with whatever else is queued.
    Change { quiet: bool, change: Box<dyn Change> },
    /// Audit events alone, merged with the other audit-only appends of the batch.
    Audit(AuditOnly),
    /// Work outside any transaction (checkpoints).
    Raw(Box<dyn FnOnce(&Connection) + Send>),
    /// Drop every cache if another process committed since the last check.
    CheckOtherProcesses,
}

struct Writer {
    conn: Connection,
    chainer: Arc<std::sync::OnceLock<Arc<dyn AuditChainer>>>,
    changes: Arc<Changes>,
    invalidation: Arc<dyn CacheInvalidation>,
    /// `PRAGMA data_version` at the last check (`None` before the first).
    data_version: Option<i64>,
    commit_sizes: Arc<rampart_store::CommitSizes>,
}

impl Writer {
    /// Group commit: every change queued while the previous transaction was syncing joins
    /// the next one, each inside its own savepoint, so concurrent writers share one fsync
    /// and a failing change undoes only itself.
    fn run(mut self, mut queue: mpsc::Receiver<Work>) {
        while let Some(first) = queue.blocking_recv() {
            let (mut batch, mut audits, mut after) = (Vec::new(), Vec::new(), None);
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(work) = next.take() {
                match work {
                    Work::Change { quiet, change } => batch.push((quiet, change)),
                    Work::Audit(append) => audits.push(append),
                    // Maintenance runs between transactions, never inside one.
                    Work::Raw(f) if taken == 0 => self.run_raw(f),
                    Work::CheckOtherProcesses if taken == 0 => self.check_other_processes(),
                    raw => {
                        after = Some(raw);
                        break;
                    }
                }
                taken += 1;
                // Gather what else is queued, unless the first was maintenance run alone.
                if taken < MAX_BATCH && !(batch.is_empty() && audits.is_empty()) {
                    next = queue.try_recv().ok();
                }
            }
            if !audits.is_empty() {
                batch.push((false, Box::new(AuditAppends(audits)) as Box<dyn Change>));
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            match after {
                Some(Work::Raw(f)) => self.run_raw(f),
                Some(Work::CheckOtherProcesses) => self.check_other_processes(),
                _ => {}
            }
        }
    }

    /// `data_version` moves on this connection only when another connection commits, and
    /// our own readers never write: a move is another process's change, which reached no
    /// update hook of ours, so every cache is dropped.
    fn check_other_processes(&mut self) {
        let Ok(version) = self.conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) else { return };
        if self.data_version.replace(version).is_some_and(|before| before != version) {
            self.invalidation.invalidate(Topics::EVERYTHING);
        }
    }

    fn run_raw(&self, f: Box<dyn FnOnce(&Connection) + Send>) {
        let conn = &self.conn;
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).is_err() {
            tracing::error!("a maintenance task on the database writer panicked");
        }
    }

    fn commit(&mut self, batch: Vec<(bool, Box<dyn Change>)>) {
        self.commit_sizes.record(batch.len());
        let chainer = self.chainer.get().cloned();
        self.changes.take();
        let tx = match self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                for (_, change) in batch {
                    change.refuse(commit_error(&e));
                }
                return;
            }
        };
        let mut finishes = Vec::with_capacity(batch.len());
        let mut broken = None;
        for (quiet, change) in batch {
            if let Some(e) = &broken {
                change.refuse(commit_error(e));
                continue;
            }
            if let Err(e) = tx.execute_batch("SAVEPOINT change") {
                change.refuse(commit_error(&e));
                broken = Some(e);
                continue;
            }
            self.changes.quiet.store(quiet, Ordering::Relaxed);
            // A panicking change must not take the writer (and every later write) with it:
            // its waiter sees the writer error, its savepoint is undone, the batch goes on.
            let run = std::panic::AssertUnwindSafe(|| change.run(&tx, chainer.as_ref()));
            // (A panic drops the waiter's sender: it sees the writer error.)
            let ran = std::panic::catch_unwind(run).ok();
            self.changes.quiet.store(false, Ordering::Relaxed);
            let (end, finish) = match ran {
                Some(Ran::Applied(finish)) => ("RELEASE change", Some(finish)),
                Some(Ran::Failed(finish)) => ("ROLLBACK TO change; RELEASE change", Some(finish)),
                None => ("ROLLBACK TO change; RELEASE change", None),
            };
            if let Err(e) = tx.execute_batch(end) {
                broken = Some(e);
            }
            finishes.extend(finish);
        }
        let outcome = match broken {
            // A statement failure that ended the whole transaction: nothing here commits.
            Some(e) => Err(e),
            None => tx.commit(),
        };
        match outcome {
            Ok(()) => {
                let changed = self.changes.take();
                if !changed.is_empty() {
                    self.invalidation.invalidate(changed);
                }
                for finish in finishes {
                    finish(None);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a write transaction failed to commit");
                for finish in finishes {
                    finish(Some(commit_error(&e)));
                }
            }
        }
    }
}

/// The commit failure as each waiting writer's error (a rusqlite error cannot be cloned).
fn commit_error(e: &rusqlite::Error) -> StoreError {
    let copy = match e {
        rusqlite::Error::SqliteFailure(f, msg) => rusqlite::Error::SqliteFailure(*f, msg.clone()),
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(other.to_string()))),
    };
    map_err(copy)
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::other("the database writer has stopped")))
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    internal(std::io::Error::other(format!("storage task failed: {e}")))
}

impl SqliteStore {
    /// The writer queue's depth and the group commits so far.
    pub(crate) fn queue_stats(&self) -> rampart_store::WriterStats {
        let (depth, capacity) = self
            .inner
            .writes
            .as_ref()
            .map_or((0, WRITE_QUEUE), |w| (w.max_capacity() - w.capacity(), w.max_capacity()));
        self.inner.commit_sizes.snapshot(depth, capacity)
    }

    pub(crate) fn inner_chainer(&self) -> &std::sync::OnceLock<Arc<dyn AuditChainer>> {
        &self.inner.chainer
    }

    pub(crate) fn invalidation_feed(&self) -> Arc<dyn CacheInvalidation> {
        Arc::clone(&self.inner.invalidation)
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
        let (done, answer) = oneshot::channel();
        let work = Work::Raw(Box::new(move |conn| {
            let _ = done.send(f(conn));
        }));
        self.enqueue(work).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Runs `f` in an immediate write transaction and appends `audit` to the chain in the
    /// same transaction; answers only once that transaction has committed, so a change is
    /// never made without its audit record and never acknowledged before it is durable.
    pub(crate) async fn write<T, F>(&self, audit: Audit, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.change(false, audit, f).await
    }

    /// A write that stales no cache (the idle-timer touch, which the session cache applies
    /// itself): it does not count as a change of its topic.
    pub(crate) async fn write_quiet<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.change(true, Vec::new(), f).await
    }

    async fn change<T, F>(&self, quiet: bool, audit: Audit, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.change_audited_by(quiet, move |tx| f(tx).map(|value| (value, audit))).await
    }

    /// `write`, for a change whose audit events depend on what it found: `f` returns them
    /// with its result, and they join the chain in the same transaction.
    pub(crate) async fn write_audited_by<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<(T, Audit)> + Send + 'static,
    {
        self.change_audited_by(false, f).await
    }

    async fn change_audited_by<T, F>(&self, quiet: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<(T, Audit)> + Send + 'static,
    {
        let (done, answer) = oneshot::channel::<StoreResult<T>>();
        self.enqueue(Work::Change { quiet, change: Box::new(ChangeJob { f, done }) }).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// Appends events that accompany no change; merged with the other such appends queued
    /// at the same time, and answered once their transaction has committed.
    pub(crate) async fn append_only(&self, events: Audit) -> StoreResult<Vec<i64>> {
        let (done, answer) = oneshot::channel();
        self.enqueue(Work::Audit((events, done))).await?;
        answer.await.map_err(|_| writer_gone())?
    }

    async fn enqueue(&self, work: Work) -> StoreResult<()> {
        let writes = self.inner.writes.as_ref().ok_or_else(writer_gone)?;
        writes.send(work).await.map_err(|_| writer_gone())
    }
}
