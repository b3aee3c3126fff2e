//! `rampart audit verify|tail`, and the exporter that mirrors the chain into `audit.log`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::{Config, Overrides};
use rampart_core::audit::{parse_record_line, record_json};
use rampart_core::audit_anchor::verify_everything;
use rampart_core::{AuditMirror, AuditRecord, Core, Store};
use rampart_crypto::AuditMacKey;

use crate::app::Backend;
use crate::datadir;
use crate::logfiles::{log_files, RotatingFile};

pub const AUDIT_FILE: &str = "audit.log";

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Check the keyed chain in the database, its signed head, the audit.log mirror and
    /// the last signed checkpoint; exit 0 only when all agree. Works on a stopped
    /// server's data directory.
    Verify,
    /// Print the newest records as JSON lines.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records as they arrive.
        #[arg(long)]
        follow: bool,
    },
    /// After records were lost (restored from an old copy, a disk fault, tampering):
    /// append a signed `audit_repair` record that declares the lost range, so the server
    /// can record again. Needs the server stopped. A changed record cannot be repaired.
    Repair {
        /// Why (kept in the repair record).
        #[arg(long)]
        reason: String,
    },
}

/// Exit status of `audit verify` when the chain is broken (2 is any other failure).
pub const TAMPERED: u8 = 1;

/// The audit.log files (current and rotated), oldest first.
pub struct FileMirror {
    pub log_dir: PathBuf,
}

impl AuditMirror for FileMirror {
    fn lines(&self) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<String>> + Send>> {
        let mut readers = Vec::new();
        for path in log_files(&self.log_dir, AUDIT_FILE) {
            readers.push(BufReader::new(std::fs::File::open(&path)?));
        }
        Ok(Box::new(readers.into_iter().flat_map(|r| r.lines())))
    }
}

async fn open_store(config: &Config) -> anyhow::Result<(Backend, Arc<AuditMacKey>)> {
    if !Backend::exists(&config.server.database) {
        bail!("no Rampart database in {}", config.server.data_dir.display());
    }
    let key = datadir::master_key(config)?;
    let store = Backend::open(&config.server.database, &config.server.node_id).await?;
    if let Some(kcv) = store.get_meta("master_key_check_value").await? {
        key.verify_check_value(&kcv).context("the master key does not match this data directory")?;
    }
    let audit_key = rampart_core::keyring::root_audit_key(&*store, &key).await.context("cannot open the key store")?;
    Ok((store, Arc::new(audit_key)))
}

pub(crate) fn mirror(config: &Config) -> Option<Arc<dyn AuditMirror>> {
    Some(Arc::new(FileMirror { log_dir: config.server.log_dir.clone() }))
}

pub async fn run(flags: Overrides, action: AuditAction) -> anyhow::Result<u8> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    if let AuditAction::Repair { reason } = action {
        return repair(&config, &reason).await;
    }
    let (store, key) = open_store(&config).await?;
    match action {
        AuditAction::Verify => {
            // Offline, the mirror is complete: it must reach the database's end.
            let report = verify_everything(&*store, &key, mirror(&config), true).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.valid { 0 } else { TAMPERED })
        }
        AuditAction::Tail { lines, follow } => {
            let head = store.audit_head().await?.map(|h| h.seq).unwrap_or(0);
            let mut after = head.saturating_sub(i64::try_from(lines).unwrap_or(0));
            loop {
                let page = store.read_audit(after, 1000).await?;
                for r in &page {
                    println!("{}", record_json(r));
                    after = r.seq;
                }
                if !follow {
                    return Ok(0);
                }
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        AuditAction::Repair { .. } => Ok(2),
    }
}

async fn repair(config: &Config, reason: &str) -> anyhow::Result<u8> {
    let _lock = datadir::lock(&config.server.data_dir).context("stop the server before repairing its audit chain")?;
    let crate::app::App { core, backend: store } = crate::app::App::open(config).await?;
    let key = Arc::new(rampart_core::keyring::root_audit_key(&*store, &datadir::master_key(config)?).await?);
    let found = verify_everything(&*store, &key, mirror(config), true).await?;
    if found.valid {
        println!("the audit chain verifies; nothing to repair");
        return Ok(0);
    }
    let known = found.checkpoint_seq().max(found.mirror_last_seq.unwrap_or(0));
    let record = core.audit().repair_audit(reason, known, &found).await.context("cannot write the repair record")?;
    // The mirror gets the repair record now, so an offline verify sees it too.
    let clock = Arc::new(rampart_core::SystemClock);
    let a = &config.audit;
    let mut file = RotatingFile::open(&config.server.log_dir, AUDIT_FILE, a.max_file_mb, a.retention_days, clock)
        .context("cannot open audit.log")?;
    file.write_line(&serde_json::to_vec(&record_json(&record))?)?;
    file.sync()?;
    let after = verify_everything(&*store, &key, mirror(config), true).await?;
    println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "before": found, "after": after }))?);
    store.close().await.ok();
    Ok(if after.valid { 0 } else { TAMPERED })
}

/// Highest seq already in audit.log (its last line), so a restart continues the file.
fn exported_up_to(log_dir: &Path) -> i64 {
    let Some(path) = log_files(log_dir, AUDIT_FILE).pop() else {
        return 0;
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return 0;
    };
    text.lines().rev().find_map(parse_record_line).map(|r| r.seq).unwrap_or(0)
}

/// Signed checkpoints leave the database at least this often (and at shutdown).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);
const POLL: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Mirrors new chain records into audit.log until `stop` fires, then flushes the rest and
/// writes a final signed checkpoint. A store that fails is retried with backoff, and
/// the failure is logged once, not on every poll.
pub async fn export(
    core: Core,
    store: Arc<dyn Store>,
    mut file: RotatingFile,
    log_dir: std::path::PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut after = exported_up_to(&log_dir);
    let mut last_checkpoint = Instant::now();
    let mut backoff = POLL;
    let mut failing = false;
    loop {
        let stopping = *stop.borrow();
        let page: Vec<AuditRecord> = match store.read_audit(after, 1000).await {
            Ok(p) => {
                if failing {
                    tracing::info!("audit export: the store answers again");
                    failing = false;
                    backoff = POLL;
                }
                p
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "audit export: read failed; retrying with backoff");
                    failing = true;
                }
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut lines: Vec<Vec<u8>> = page.iter().filter_map(|r| serde_json::to_vec(&record_json(r)).ok()).collect();
        let caught_up = page.is_empty();
        if caught_up && (stopping || last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL) {
            match core.audit().audit_checkpoint().await {
                Ok(Some(cp)) => lines.extend(serde_json::to_vec(&cp.to_json()).ok()),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "audit checkpoint failed"),
            }
            last_checkpoint = Instant::now();
        }
        if !lines.is_empty() {
            let written = tokio::task::spawn_blocking(move || {
                for l in &lines {
                    file.write_line(l)?;
                }
                file.sync()?;
                Ok::<_, std::io::Error>(file)
            })
            .await;
            match written {
                Ok(Ok(f)) => file = f,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit export: cannot write audit.log");
                    return;
                }
                Err(_) => return,
            }
        }
        if let Some(last) = page.last() {
            after = last.seq;
            continue;
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
}
