//! `rampart audit verify|tail`, and the exporter that mirrors the chain into `audit.log`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::{Config, Env, Overrides};
use rampart_core::audit::{parse_record_line, record_json, verify_store, AuditVerification, ChainVerifier};
use rampart_core::{AuditRecord, Store};
use rampart_crypto::AuditMacKey;
use rampart_store::{AuditStore, MetaStore};
use rampart_store_sqlite::SqliteStore;

use crate::datadir;
use crate::logfiles::{log_files, RotatingFile};

pub const AUDIT_FILE: &str = "audit.log";

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Check the keyed chain in the database and in audit.log; exit 0 only when both are
    /// intact. Works on a stopped server's data directory.
    Verify,
    /// Print the newest records as JSON lines.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new records as they arrive.
        #[arg(long)]
        follow: bool,
    },
}

/// Exit status of `audit verify` when the chain is broken (2 is any other failure).
pub const TAMPERED: u8 = 1;

async fn open_store(config: &Config) -> anyhow::Result<(SqliteStore, AuditMacKey)> {
    let dir = &config.server.data_dir;
    if !dir.join("rampart.db").exists() {
        bail!("no Rampart database in {}", dir.display());
    }
    let key = datadir::master_key(config)?;
    let d = dir.clone();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&d)).await?.context("cannot open the database")?;
    if let Some(kcv) = store.get_meta("master_key_check_value").await? {
        key.verify_check_value(&kcv).context("the master key does not match this data directory")?;
    }
    let audit_key = rampart_core::keyring::root_audit_key(&store, &key).await.context("cannot open the key store")?;
    Ok((store, audit_key))
}

/// Verifies the chain as written to the audit.log files, and that it matches the database.
fn verify_files(log_dir: &Path, key: &AuditMacKey, db_head: Option<i64>) -> anyhow::Result<AuditVerification> {
    let mut v = ChainVerifier::new(key);
    let mut last = 0;
    for path in log_files(log_dir, AUDIT_FILE) {
        let file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for line in BufReader::new(file).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let Some(record) = parse_record_line(&line) else {
                return Ok(AuditVerification {
                    valid: false,
                    records: 0,
                    first_bad_seq: Some(last + 1),
                    reason: Some(format!("unparseable line in {}", path.display())),
                });
            };
            if let Err(verdict) = v.push(&record) {
                return Ok(verdict);
            }
            last = record.seq;
        }
    }
    // The file is complete once the server has stopped; it must end where the database does.
    let head = db_head.unwrap_or(0);
    if last < head {
        return Ok(AuditVerification {
            valid: false,
            records: u64::try_from(last).unwrap_or(0),
            first_bad_seq: Some(last + 1),
            reason: Some("audit.log ends before the database chain (truncated)".into()),
        });
    }
    Ok(v.finish_unanchored())
}

pub async fn run(flags: Overrides, action: AuditAction) -> anyhow::Result<u8> {
    let config = Config::load(&Env::from_process(), &flags).context("invalid configuration")?;
    let (store, key) = open_store(&config).await?;
    match action {
        AuditAction::Verify => {
            let db = verify_store(&store, &key).await.context("reading the audit chain")?;
            let head = store.audit_head().await?.map(|h| h.seq);
            let files = verify_files(&config.server.log_dir, &key, head)?;
            let ok = db.valid && files.valid;
            let report = serde_json::json!({ "valid": ok, "database": db, "audit_log": files });
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if ok { 0 } else { TAMPERED })
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
    }
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

/// Mirrors new chain records into audit.log until `stop` fires, then flushes the rest.
pub async fn export(
    store: Arc<dyn Store>,
    mut file: RotatingFile,
    log_dir: std::path::PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut after = exported_up_to(&log_dir);
    loop {
        let page: Vec<AuditRecord> = match store.read_audit(after, 1000).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "audit export: read failed");
                Vec::new()
            }
        };
        if let Some(last) = page.last() {
            let seq = last.seq;
            let lines: Vec<Vec<u8>> = page.iter().filter_map(|r| serde_json::to_vec(&record_json(r)).ok()).collect();
            let written = tokio::task::spawn_blocking(move || {
                for l in &lines {
                    file.write_line(l)?;
                }
                file.sync()?;
                Ok::<_, std::io::Error>(file)
            })
            .await;
            match written {
                Ok(Ok(f)) => {
                    file = f;
                    after = seq;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit export: cannot write audit.log");
                    return;
                }
                Err(_) => return,
            }
            continue;
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
}
