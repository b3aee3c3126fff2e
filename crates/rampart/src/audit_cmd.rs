//! `rampart audit verify|tail`, and the exporter that mirrors the chain into `audit.log`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::{Config, Overrides};
use rampart_core::audit::{parse_record_line, record_json, AuditRecordView, AuditVerification};
use rampart_core::audit_anchor::{verify_everything, FullVerification};
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
    Verify {
        /// Print the report as JSON (the shape of GET /api/v1/admin/audit/verify).
        #[arg(long)]
        json: bool,
    },
    /// Print the newest records, one line each.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records as they arrive.
        #[arg(long)]
        follow: bool,
        /// JSON: {"records": [..]} as GET /api/v1/admin/audit returns them; with --follow,
        /// one record per line (JSON lines), as audit.log stores them.
        #[arg(long)]
        json: bool,
    },
    /// After records were lost (restored from an old copy, a disk fault, tampering):
    /// append a signed `audit_repair` record that declares the lost range, so the server
    /// can record again. Needs the server stopped. A changed record cannot be repaired.
    Repair {
        /// Why (kept in the repair record).
        #[arg(long)]
        reason: String,
        /// Print the verification before and after as JSON.
        #[arg(long)]
        json: bool,
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
    if let AuditAction::Repair { reason, json } = action {
        return repair(&config, &reason, json).await;
    }
    let (store, key) = open_store(&config).await?;
    match action {
        AuditAction::Verify { json } => {
            // Offline, the mirror is complete: it must reach the database's end.
            let report = verify_everything(&*store, &key, mirror(&config), true).await?;
            if json {
                crate::table::json(&report)?;
            } else {
                print_report(&report);
            }
            Ok(if report.valid { 0 } else { TAMPERED })
        }
        AuditAction::Tail { lines, follow, json } => {
            let head = store.audit_head().await?.map(|h| h.seq).unwrap_or(0);
            let mut after = head.saturating_sub(i64::try_from(lines).unwrap_or(0));
            if json && !follow {
                let mut records = Vec::new();
                while records.len() < lines {
                    let page = store.read_audit(after, 1000).await?;
                    let Some(last) = page.last() else { break };
                    after = last.seq;
                    records.extend(page.into_iter().map(AuditRecordView::from));
                }
                crate::table::json(&serde_json::json!({ "records": records }))?;
                return Ok(0);
            }
            loop {
                let page = store.read_audit(after, 1000).await?;
                for r in &page {
                    if json {
                        println!("{}", record_json(r));
                    } else {
                        println!("{}", record_line(r));
                    }
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

/// The human form of a verification: the verdict, then each part.
fn print_report(report: &FullVerification) {
    let verdict = |v: bool, records: u64, seq: Option<i64>, reason: &Option<String>| {
        if v {
            format!("ok ({records} records)")
        } else {
            let at = seq.map(|s| format!(" at seq {s}")).unwrap_or_default();
            format!("BROKEN{at}: {}", reason.as_deref().unwrap_or("see below"))
        }
    };
    println!("audit trail: {}", verdict(report.valid, report.records, report.first_bad_seq, &report.reason));
    let part = |name: &str, v: &AuditVerification| {
        println!("  {name}: {}", verdict(v.valid, v.records, v.first_bad_seq, &v.reason));
    };
    part("database", &report.database);
    match &report.audit_log {
        Some(v) => part("audit.log", v),
        None => println!("  audit.log: not checked"),
    }
    match &report.checkpoint {
        Some(c) => println!("  checkpoint: seq {} at {}", c["seq"], c["at"].as_str().unwrap_or("?")),
        None => println!("  checkpoint: none yet"),
    }
    for gap in &report.repairs {
        println!("  repair (seq {}): records {} to {} declared lost", gap.repair_seq, gap.missing_from, gap.missing_to);
    }
    for node in &report.other_nodes {
        part(&format!("node {}", node.node), &node.chain);
    }
}

/// One record as a line for people. Names and addresses come from clients (a login
/// attempt's user name is whatever was typed): control characters are escaped, never sent
/// to the terminal.
fn record_line(r: &AuditRecord) -> String {
    let e = &r.event;
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
    };
    let details = if e.details.is_null() { String::new() } else { e.details.to_string() };
    format!(
        "{:>6}  {}  {:<24}  {}  {}  {}  {}",
        r.seq,
        e.timestamp,
        clean(&e.event_type),
        clean(e.user.as_deref().unwrap_or("-")),
        clean(e.ip_address.as_deref().unwrap_or("-")),
        if e.success { "ok" } else { "FAILED" },
        clean(&details)
    )
}

async fn repair(config: &Config, reason: &str, json: bool) -> anyhow::Result<u8> {
    let _lock = datadir::lock(&config.server.data_dir).context("stop the server before repairing its audit chain")?;
    let crate::app::App { core, backend: store } = crate::app::App::open(config).await?;
    let key = Arc::new(rampart_core::keyring::root_audit_key(&*store, &datadir::master_key(config)?).await?);
    let found = verify_everything(&*store, &key, mirror(config), true).await?;
    if found.valid {
        if json {
            crate::table::json(&serde_json::json!({ "repaired": false, "before": found, "after": found }))?;
        } else {
            println!("the audit chain verifies; nothing to repair");
        }
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
    if json {
        crate::table::json(&serde_json::json!({ "repaired": true, "before": found, "after": after }))?;
    } else {
        println!("Before the repair:");
        print_report(&found);
        println!("Recorded the repair as seq {}; after it:", record.seq);
        print_report(&after);
    }
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
