//! Connections: one writer connection per node that group-commits every queued change (each
//! inside its own savepoint, so concurrent writers share one commit and a failing change
//! undoes only itself), a bounded pool of reader connections, and a listener that turns
//! other nodes' commits into cache invalidations. The `postgres` client is synchronous:
//! every call runs on the writer or listener thread or on the blocking pool.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Transaction};
use rampart_store::{Audit, AuditChainer, CacheInvalidation, LocalInvalidation, StoreError, StoreResult, Topics};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::connector::Connector;
use crate::{internal, map_err, migrations};

/// Writes waiting for the writer; senders wait (backpressure) beyond this.
const WRITE_QUEUE: usize = 1024;
/// Most writes committed by one transaction.
const MAX_BATCH: usize = 256;
/// Pause between attempts to reach the database again after losing it.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// Longest a writer statement waits for a lock.
const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the listener waits for a notification before checking whether to stop.
const LISTEN_POLL: Duration = Duration::from_millis(200);

/// How a node reaches its database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// This node's name: its audit chain is kept under it.
    pub node: String,
    /// Reader connections (the writer and the listener have one each).
    pub readers: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self { node: "node-1".to_owned(), readers: 4 }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Connector,
    node: String,
    writes: Option<mpsc::Sender<Work>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Mutex<Vec<Client>>,
    reader_slots: Semaphore,
    chainer: Arc<OnceLock<Arc<dyn AuditChainer>>>,
    invalidation: Arc<dyn CacheInvalidation>,
    commit_sizes: Arc<rampart_store::CommitSizes>,
    /// This node's one claim on the lease: every job and the health report share it (a
    /// second claim would be a second connection competing with the first).
    lease: crate::AdvisoryLease,
}

impl Drop for Inner {
    /// Closes the queue and waits for the writer to finish what it holds. The clients own
    /// small runtimes of their own, which may not be dropped on an async worker: they are
    /// dropped on a thread of their own.
    fn drop(&mut self) {
        self.writes.take();
        let writer = self.writer_thread.take();
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = std::thread::spawn(move || {
            if let Some(writer) = writer {
                let _ = writer.join();
            }
            drop(readers);
        })
        .join();
    }
}

fn connect(config: &Connector) -> StoreResult<Client> {
    let mut client = config.connect()?;
    // Every acknowledged commit is flushed (and, with synchronous standbys configured on the
    // server, replicated) before the commit returns, whatever the server's default is.
    client.batch_execute("SET synchronous_commit = on").map_err(map_err)?;
    Ok(client)
}

/// The writer's connection: its commits' announcements carry this node's name, so that the
/// node's own listener skips what the writer has already applied to the caches.
fn connect_writer(config: &Connector, node: &str) -> StoreResult<Client> {
    let mut client = connect(config)?;
    client.execute("SELECT set_config('rampart.node', $1, false)", &[&node]).map_err(map_err)?;
    // A lock held elsewhere (another node, an operator's session) makes a change wait at
    // most this long, then fail as retryable: one stuck table must not hold every write.
    client.batch_execute(&format!("SET lock_timeout = {}", WRITE_LOCK_TIMEOUT.as_millis())).map_err(map_err)?;
    Ok(client)
}

impl PostgresStore {
    /// The writer queue's depth and the group commits so far.
    pub(crate) fn queue_stats(&self) -> rampart_store::WriterStats {
        let (depth, capacity) = self
            .inner
            .writes
            .as_ref()
            .map_or((0, WRITE_QUEUE), |w| (w.max_capacity() - w.capacity(), w.max_capacity()));
        self.inner.commit_sizes.snapshot(depth, capacity)
    }

    /// Connects to `url` (a libpq-style URL; several hosts with
    /// `target_session_attrs=read-write` follow a promoted standby), runs the migrations and
    /// starts the writer and the invalidation listener.
    pub async fn open(url: &str, options: PostgresOptions) -> StoreResult<Self> {
        let config = Connector::parse(url)?;
        tokio::task::spawn_blocking(move || Self::open_blocking(config, options)).await.map_err(internal)?
    }

    fn open_blocking(config: Connector, options: PostgresOptions) -> StoreResult<Self> {
        let mut writer = connect_writer(&config, &options.node)?;
        migrations::run(&mut writer)?;
        let readers = (0..options.readers.max(1)).map(|_| connect(&config)).collect::<StoreResult<Vec<_>>>()?;
        let invalidation: Arc<dyn CacheInvalidation> = Arc::new(LocalInvalidation::default());
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        listen_for_changes(config.clone(), options.node.clone(), writes.downgrade(), Arc::clone(&invalidation))?;
        let chainer = Arc::new(OnceLock::new());
        let commit_sizes = Arc::new(rampart_store::CommitSizes::default());
        let state = Writer {
            config: config.clone(),
            client: Some(writer),
            chainer: Arc::clone(&chainer),
            node: options.node.clone(),
            invalidation: Arc::clone(&invalidation),
            commit_sizes: Arc::clone(&commit_sizes),
        };
        let writer_thread = std::thread::Builder::new()
            .name("rampart-pg-writer".into())
            .spawn(move || state.run(queue))
            .map_err(internal)?;
        Ok(Self {
            inner: Arc::new(Inner {
                lease: crate::AdvisoryLease::new(config.clone()),
                config,
                node: options.node,
                writes: Some(writes),
                writer_thread: Some(writer_thread),
                reader_slots: Semaphore::new(readers.len()),
                readers: Mutex::new(readers),
                chainer,
                invalidation,
                commit_sizes,
            }),
        })
    }

    /// The lease for one-node-at-a-time jobs, on a connection of its own.
    /// This node's claim on the lease (the same one however often it is asked for).
    pub fn lease(&self) -> crate::AdvisoryLease {
        self.inner.lease.clone()
    }

    pub(crate) fn node(&self) -> &str {
        &self.inner.node
    }

    pub(crate) fn inner_chainer(&self) -> &OnceLock<Arc<dyn AuditChainer>> {
        &self.inner.chainer
    }

    pub(crate) fn invalidation_feed(&self) -> Arc<dyn CacheInvalidation> {
        Arc::clone(&self.inner.invalidation)
    }

    /// Runs `f` on a reader connection off the async runtime; a connection found closed
    /// (the database restarted or failed over) is replaced first.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> StoreResult<T> + Send + 'static,
    {
        let permit = self.inner.reader_slots.acquire().await.map_err(internal)?;
        let inner = Arc::clone(&self.inner);
        let out = tokio::task::spawn_blocking(move || {
            let taken = inner.readers.lock().ok().and_then(|mut v| v.pop());
            let mut client = match taken {
                Some(c) if !c.is_closed() => c,
                _ => connect(&inner.config)?,
            };
            let result = f(&mut client);
            if !client.is_closed() {
                if let Ok(mut v) = inner.readers.lock() {
                    v.push(client);
                }
            }
            result
        })
        .await
        .map_err(|e| internal(std::io::Error::other(format!("storage task failed: {e}"))))?;
        drop(permit);
        out
    }

    /// Runs `f` in the shared write transaction and appends `audit` to this node's chain in
    /// the same transaction; answers only once that transaction has committed.
    pub(crate) async fn write<T, F>(&self, audit: Audit, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.change(false, audit, f).await
    }

    /// A write that stales no cache (the idle-timer touch, which the session cache applies
    /// itself): the invalidation trigger skips it.
    pub(crate) async fn write_quiet<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.change(true, Vec::new(), f).await
    }

    async fn change<T, F>(&self, quiet: bool, audit: Audit, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.change_audited_by(quiet, move |tx: &mut Transaction<'_>| f(tx).map(|value| (value, audit))).await
    }

    /// `write`, for a change whose audit events depend on what it found: `f` returns them
    /// with its result, and they join the chain in the same transaction.
    pub(crate) async fn write_audited_by<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> StoreResult<(T, Audit)> + Send + 'static,
    {
        self.change_audited_by(false, f).await
    }

    async fn change_audited_by<T, F>(&self, quiet: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Transaction<'_>) -> StoreResult<(T, Audit)> + Send + 'static,
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

fn writer_gone() -> StoreError {
    StoreError::Unavailable(Box::new(std::io::Error::other("the database writer has stopped")))
}

/// What a write answers once its transaction has committed (or failed to).
type Finish = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// How a change ran inside the shared transaction, with its answer for when it ends.
enum Ran {
    Applied(Finish),
    /// Answered with its own error whatever the transaction does.
    Failed(Finish),
}

/// What every change in a batch needs besides the transaction.
pub(crate) struct Chain<'a> {
    pub chainer: Option<&'a Arc<dyn AuditChainer>>,
    pub node: &'a str,
}

/// One queued change: run inside the shared transaction, or refused unrun.
trait Change: Send {
    /// Applies the change. `Applied`: its savepoint is released and it waits for the commit;
    /// `Failed`: its savepoint is rolled back. Either way it is answered only once the
    /// transaction has ended, so a caller refused because of another change in the same
    /// batch (the key it collided with) finds that change committed when it looks.
    fn run(self: Box<Self>, tx: &mut Transaction<'_>, chain: &Chain<'_>) -> Ran;
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
    F: FnOnce(&mut Transaction<'_>) -> StoreResult<(T, Audit)> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut Transaction<'_>, chain: &Chain<'_>) -> Ran {
        let ChangeJob { f, done } = *self;
        let result = f(tx).and_then(|(value, audit)| {
            if !audit.is_empty() {
                crate::audit::append_chained(tx, chain, &audit)?;
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

/// Every audit-only append queued together, written with one walk of the chain.
struct AuditAppends(Vec<AuditOnly>);

impl Change for AuditAppends {
    fn run(self: Box<Self>, tx: &mut Transaction<'_>, chain: &Chain<'_>) -> Ran {
        let mut events = Vec::with_capacity(self.0.iter().map(|(e, _)| e.len()).sum());
        let mut waiters = Vec::with_capacity(self.0.len());
        for (mine, done) in self.0 {
            waiters.push((mine.len(), done));
            events.extend(mine);
        }
        match crate::audit::append_chained(tx, chain, &events) {
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
}

struct Writer {
    config: Connector,
    /// `None` after the connection was lost, until the next batch reconnects.
    client: Option<Client>,
    chainer: Arc<OnceLock<Arc<dyn AuditChainer>>>,
    node: String,
    invalidation: Arc<dyn CacheInvalidation>,
    commit_sizes: Arc<rampart_store::CommitSizes>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Work>) {
        while let Some(first) = queue.blocking_recv() {
            let (mut batch, mut audits) = (Vec::new(), Vec::new());
            let mut next = Some(first);
            while let Some(work) = next.take() {
                match work {
                    Work::Change { quiet, change } => batch.push((quiet, change)),
                    Work::Audit(append) => audits.push(append),
                }
                if batch.len() + audits.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            if !audits.is_empty() {
                batch.push((false, Box::new(AuditAppends(audits)) as Box<dyn Change>));
            }
            self.commit(batch);
        }
        // The store is gone: close the connection here, off any async worker.
        drop(self.client.take());
    }

    /// The writer's connection, reconnecting once if it was lost (a restart or failover):
    /// the batch that finds the database unreachable is refused as retryable.
    fn client(&mut self) -> StoreResult<&mut Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            match connect_writer(&self.config, &self.node) {
                Ok(c) => self.client = Some(c),
                Err(e) => {
                    std::thread::sleep(RECONNECT_PAUSE);
                    return Err(e);
                }
            }
        }
        self.client.as_mut().ok_or_else(writer_gone)
    }

    fn commit(&mut self, batch: Vec<(bool, Box<dyn Change>)>) {
        self.commit_sizes.record(batch.len());
        let chainer = self.chainer.get().cloned();
        let node = self.node.clone();
        let chain = Chain { chainer: chainer.as_ref(), node: &node };
        let invalidation = Arc::clone(&self.invalidation);
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => {
                for (_, change) in batch {
                    change.refuse(e.duplicate());
                }
                return;
            }
        };
        let mut tx = match client.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let e = map_err(e);
                for (_, change) in batch {
                    change.refuse(e.duplicate());
                }
                return;
            }
        };
        let mut finishes = Vec::with_capacity(batch.len());
        let mut broken: Option<StoreError> = None;
        for (quiet, change) in batch {
            if let Some(e) = &broken {
                change.refuse(e.duplicate());
                continue;
            }
            match run_in_savepoint(&mut tx, quiet, change, &chain) {
                Ok(finish) => finishes.extend(finish),
                Err(e) => broken = Some(e),
            }
        }
        let outcome = match broken {
            // A failure that ended the whole transaction: nothing here commits.
            Some(e) => Err(e),
            None => committed_topics(&mut tx).and_then(|topics| tx.commit().map(|()| topics).map_err(map_err)),
        };
        match outcome {
            Ok(topics) => {
                if !topics.is_empty() {
                    invalidation.invalidate(topics);
                }
                for finish in finishes {
                    finish(None);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a write transaction failed to commit");
                // A commit whose answer was lost with the connection may have happened, and
                // this node's listener skips its announcement: stale everything.
                invalidation.invalidate(Topics::EVERYTHING);
                for finish in finishes {
                    finish(Some(e.duplicate()));
                }
            }
        }
    }
}

/// Runs one change in its own savepoint: released when it succeeded, rolled back when it
/// failed or panicked (its waiter is answered when the transaction ends). `Err` only when the savepoint itself
/// could not be handled, which ends the whole transaction.
fn run_in_savepoint(
    tx: &mut Transaction<'_>,
    quiet: bool,
    change: Box<dyn Change>,
    chain: &Chain<'_>,
) -> StoreResult<Option<Finish>> {
    let mut savepoint = match tx.savepoint("change") {
        Ok(sp) => sp,
        Err(e) => {
            let e = map_err(e);
            change.refuse(e.duplicate());
            return Err(e);
        }
    };
    if quiet {
        savepoint.execute("SELECT set_config('rampart.quiet', 'on', true)", &[]).map_err(map_err)?;
    }
    let run = std::panic::AssertUnwindSafe(|| change.run(&mut savepoint, chain));
    // (A panic drops the waiter's sender: it sees the writer error.)
    match std::panic::catch_unwind(run).ok() {
        Some(Ran::Applied(finish)) => {
            if quiet {
                savepoint.execute("SELECT set_config('rampart.quiet', 'off', true)", &[]).map_err(map_err)?;
            }
            savepoint.commit().map_err(map_err)?;
            Ok(Some(finish))
        }
        // Dropping the savepoint rolls it back, the quiet flag with it.
        Some(Ran::Failed(finish)) => Ok(Some(finish)),
        None => Ok(None),
    }
}

/// The topics the invalidation trigger collected in this transaction.
fn committed_topics(tx: &mut Transaction<'_>) -> StoreResult<Topics> {
    let row = tx.query_one("SELECT current_setting('rampart.topics', true)", &[]).map_err(map_err)?;
    let bits: Option<String> = row.get(0);
    Ok(Topics::from_bits(bits.and_then(|b| b.parse::<u8>().ok()).unwrap_or(0)))
}

/// Listens for the invalidation trigger's notifications on a connection of its own: what
/// any node (or a CLI verb) committed stales this node's caches. While the connection is
/// down nothing is heard, so every cache is dropped when it comes back.
fn listen_for_changes(
    config: Connector,
    node: String,
    alive: mpsc::WeakSender<Work>,
    invalidation: Arc<dyn CacheInvalidation>,
) -> StoreResult<()> {
    let mut client = listen(&config)?;
    std::thread::Builder::new()
        .name("rampart-pg-listen".into())
        .spawn(move || loop {
            if alive.upgrade().is_none() {
                return;
            }
            let mut lost = false;
            {
                let mut notifications = client.notifications();
                let mut heard = notifications.timeout_iter(LISTEN_POLL);
                loop {
                    match heard.next() {
                        Ok(Some(n)) => {
                            // `bits` or `bits:node`; this node's writer applied its own.
                            let (bits, from) = n.payload().split_once(':').unwrap_or((n.payload(), ""));
                            if from != node {
                                invalidation.invalidate(Topics::from_bits(bits.parse().unwrap_or(u8::MAX)));
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            lost = true;
                            break;
                        }
                    }
                }
            }
            if lost || client.is_closed() {
                invalidation.invalidate(Topics::EVERYTHING);
                loop {
                    if alive.upgrade().is_none() {
                        return;
                    }
                    std::thread::sleep(RECONNECT_PAUSE);
                    if let Ok(c) = listen(&config) {
                        client = c;
                        invalidation.invalidate(Topics::EVERYTHING);
                        break;
                    }
                }
            }
        })
        .map_err(internal)?;
    Ok(())
}

fn listen(config: &Connector) -> StoreResult<Client> {
    let mut client = config.connect()?;
    client.batch_execute("LISTEN rampart_invalidation").map_err(map_err)?;
    Ok(client)
}
