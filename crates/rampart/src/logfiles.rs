//! JSON-lines log files in the log directory, rotated by size and by UTC day, with old
//! rotations deleted after their retention. Writers run on their own threads behind
//! bounded queues, so logging never blocks the async runtime.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rampart_core::Clock;
use rampart_http::{ActivityEntry, ActivitySink};
use rampart_types::Timestamp;

pub struct RotatingFile {
    dir: PathBuf,
    name: &'static str,
    max_bytes: u64,
    retention: Duration,
    file: File,
    size: u64,
    day: u64,
    clock: Arc<dyn Clock>,
}

fn utc_day(t: Timestamp) -> u64 {
    u64::try_from(t.as_unix_seconds() / 86_400).unwrap_or(0)
}

fn modified_ms(m: &fs::Metadata) -> Option<i64> {
    let d = m.modified().ok()?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

impl RotatingFile {
    pub fn open(
        dir: &Path,
        name: &'static str,
        max_mb: u64,
        retention_days: u32,
        clock: Arc<dyn Clock>,
    ) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let file = open_append(&path)?;
        let meta = file.metadata()?;
        let day = utc_day(modified_ms(&meta).map(Timestamp::from_millis).unwrap_or_else(|| clock.now()));
        Ok(Self {
            dir: dir.to_owned(),
            name,
            max_bytes: max_mb.saturating_mul(1024 * 1024),
            retention: Duration::from_secs(u64::from(retention_days) * 86_400),
            file,
            size: meta.len(),
            day,
            clock,
        })
    }

    /// Appends one line (a newline is added), rotating first when size or day require it.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.write_lines(std::iter::once(line))
    }

    /// Appends lines with one write per file (not one per line), rotating between lines
    /// when size or day require it.
    pub fn write_lines<'a>(&mut self, lines: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        let today = utc_day(self.clock.now());
        let mut pending = Vec::new();
        for line in lines {
            let too_big = self.size + (pending.len() + line.len()) as u64 + 1 > self.max_bytes;
            if self.size + pending.len() as u64 > 0 && (too_big || today != self.day) {
                self.file.write_all(&pending)?;
                self.size += pending.len() as u64;
                pending.clear();
                self.rotate()?;
            }
            self.day = today;
            pending.extend_from_slice(line);
            pending.push(b'\n');
        }
        self.file.write_all(&pending)?;
        self.size += pending.len() as u64;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let stamp = self.clock.now().as_millis();
        let mut rotated = self.dir.join(format!("{}.{stamp:013}", self.name));
        let mut n = 0;
        while rotated.exists() {
            n += 1;
            rotated = self.dir.join(format!("{}.{stamp:013}-{n}", self.name));
        }
        fs::rename(self.dir.join(self.name), &rotated)?;
        self.file = open_append(&self.dir.join(self.name))?;
        self.size = 0;
        self.prune();
        Ok(())
    }

    /// Deletes rotated files whose last write is older than the retention.
    fn prune(&self) {
        let prefix = format!("{}.", self.name);
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = self.clock.now().as_millis();
        let keep_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&prefix) {
                continue;
            }
            let old = e.metadata().ok().and_then(|m| modified_ms(&m)).is_some_and(|m| now.saturating_sub(m) > keep_ms);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Files of one log, oldest first: rotated ones by their stamp, then the live file.
pub fn log_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}.");
    let mut rotated: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    rotated.sort();
    let live = dir.join(name);
    if live.exists() {
        rotated.push(live);
    }
    rotated
}

/// A queue of lines to one file, written by a dedicated thread. When full, lines are
/// dropped and counted rather than blocking callers (server and activity logs only; the
/// audit log is exported from the database and never dropped).
#[derive(Clone)]
pub struct LineQueue {
    tx: SyncSender<Queued>,
    dropped: Arc<AtomicU64>,
}

enum Queued {
    Line(Vec<u8>),
    /// Write and sync everything queued before this, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

const QUEUE_LINES: usize = 8192;
/// How long the writer gathers lines between writes; the queue holds far more than
/// arrive in this time at any rate the server reaches.
const BATCH_PAUSE: Duration = Duration::from_millis(20);
const SYNC_EVERY: Duration = Duration::from_secs(1);

impl LineQueue {
    pub fn spawn(mut file: RotatingFile) -> Self {
        let (tx, rx): (SyncSender<Queued>, Receiver<Queued>) = sync_channel(QUEUE_LINES);
        std::thread::spawn(move || {
            let mut last_sync = std::time::Instant::now();
            while let Ok(first) = rx.recv() {
                // Lines queued while this thread slept: written with one write, and the
                // pause means busy producers queue without waking this thread per line.
                let mut lines = Vec::new();
                let mut flushes = Vec::new();
                for item in std::iter::once(first).chain(rx.try_iter().take(QUEUE_LINES)) {
                    match item {
                        Queued::Line(line) => lines.push(line),
                        Queued::Flush(done) => flushes.push(done),
                    }
                }
                let _ = file.write_lines(lines.iter().map(Vec::as_slice));
                // A log, not the audit trail: synced about once a second (and on flush).
                if !flushes.is_empty() || last_sync.elapsed() >= SYNC_EVERY {
                    let _ = file.sync();
                    last_sync = std::time::Instant::now();
                }
                if flushes.is_empty() {
                    std::thread::sleep(BATCH_PAUSE);
                }
                for done in flushes {
                    let _ = done.send(());
                }
            }
        });
        Self { tx, dropped: Arc::new(AtomicU64::new(0)) }
    }

    pub fn push(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Queued::Line(line)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits (up to `timeout`) until every line queued so far is written and synced; at
    /// shutdown, so the last requests' lines are not lost with the process.
    pub fn flush(&self, timeout: Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Queued::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

impl ActivitySink for LineQueue {
    fn record(&self, entry: ActivityEntry) {
        if let Ok(line) = serde_json::to_vec(&entry) {
            self.push(line);
        }
    }
}

/// `io::Write` adapter for tracing: each formatted event becomes one queued line.
pub struct QueueWriter {
    queue: LineQueue,
    buf: Vec<u8>,
}

impl Write for QueueWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueueWriter {
    fn drop(&mut self) {
        let mut line = std::mem::take(&mut self.buf);
        while line.last() == Some(&b'\n') {
            line.pop();
        }
        if !line.is_empty() {
            self.queue.push(line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineQueue {
    type Writer = QueueWriter;
    fn make_writer(&'a self) -> QueueWriter {
        QueueWriter { queue: self.clone(), buf: Vec::new() }
    }
}
