//! `rampart backup create|list|verify|restore`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::app::{App, Backend};
use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::{Config, DatabaseUrl, Overrides};
use rampart_core::backup::BackupMeta;
use rampart_core::BackupService;
use rampart_store::KeyKind;
use std::sync::Arc;

use crate::backup::{self, FileBackups, KeyStoreFile};
use crate::datadir;
use crate::ledger::LedgerFile;
use crate::progress::Progress;

#[derive(Subcommand, Debug)]
pub enum BackupAction {
    /// Take a consistent snapshot, encrypted unless --unencrypted (refused when required).
    Create {
        #[arg(long)]
        unencrypted: bool,
        /// `hipaa` refuses unencrypted backups.
        #[arg(long)]
        compliance_mode: Option<String>,
        /// Print the backup's metadata as JSON (the shape of POST /api/v1/admin/backup).
        #[arg(long)]
        json: bool,
    },
    /// List backups with their metadata (a table; --json for scripts).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Check the checksum, decrypt every chunk and open the snapshot. Exit 1 if invalid.
    /// Takes a backup id of the data directory, or the path of a .rbk file anywhere (an
    /// off-site copy, with its .json and .keys.json beside it) and the master key file.
    Verify {
        backup: String,
        /// Master key file for a backup file elsewhere (else RAMPART_ENCRYPTION_KEY or the
        /// data directory's key).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Print the verdict as JSON (the shape of POST /api/v1/admin/backups/{id}/verify).
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup file into --data-dir (empty, or with --force; never while a server
    /// holds it). Finds the key-store file beside the backup; re-applies every erasure it
    /// can find, and refuses without a current erasure ledger (the live target directory,
    /// or --erasure-ledger), so an erasure is never silently undone.
    Restore {
        file: PathBuf,
        #[arg(long)]
        force: bool,
        /// Master key file, when the target directory has none and RAMPART_ENCRYPTION_KEY is unset.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// A current erasure ledger (`rampart gdpr export-ledger`), at least as new as the backup.
        #[arg(long)]
        erasure_ledger: Option<PathBuf>,
        /// Restore without a current ledger: subjects erased after the backup may come back.
        /// Printed and audited.
        #[arg(long, conflicts_with = "erasure_ledger")]
        without_erasure_ledger: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn file_backups(config: &Config, core: &rampart_core::Core, store: &Backend) -> FileBackups {
    FileBackups {
        dir: config.backup.dir.clone(),
        store: store.clone(),
        core: core.clone(),
        required: config.backup.encryption_required,
        key_retention_days: config.backup.key_backup_retention_days,
        progress: Progress::Hidden,
    }
}

pub async fn run(flags: Overrides, action: BackupAction) -> anyhow::Result<u8> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    if let BackupAction::Verify { backup, key_file, json } = &action {
        if backup.ends_with(".rbk") {
            let v = verify_offline(&config, Path::new(backup), key_file.as_deref()).await?;
            print_verdict(&v, *json)?;
            return Ok(u8::from(!v.valid));
        }
    }
    if let BackupAction::Restore { file, force, key_file, erasure_ledger, without_erasure_ledger, json } = action {
        let ledger = match (erasure_ledger, without_erasure_ledger) {
            (Some(path), _) => LedgerChoice::File(path),
            (None, true) => LedgerChoice::Without,
            (None, false) => LedgerChoice::Required,
        };
        return restore(&config, &file, force, key_file.as_deref(), ledger, json).await.map(|()| 0);
    }
    let App { core, backend: store } = App::open(&config).await?;
    let files = FileBackups { progress: Progress::stderr(), ..file_backups(&config, &core, &store) };
    let backups = BackupService::new(Arc::new(files), core.events().clone());
    let code = match action {
        BackupAction::Create { unencrypted, compliance_mode, json } => {
            let meta = backups.create_backup(&core.authorize_local().await?, !unencrypted, compliance_mode).await?;
            if json {
                crate::table::json(&meta)?;
            } else {
                let sealed = match &meta.encryption_algorithm {
                    Some(alg) => format!("encrypted ({alg})"),
                    None => "NOT encrypted".to_owned(),
                };
                println!("Created {}: {} bytes, {sealed}, sha256 {}.", meta.backup_id, meta.size_bytes, meta.sha256);
                if let Some(warning) = &meta.warning {
                    eprintln!("warning: {warning}");
                }
            }
            0
        }
        BackupAction::List { json } => {
            let list = backups.list_backups(&core.authorize_local().await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "backups": list }))?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|b| {
                        vec![
                            b.backup_id.clone(),
                            b.created_at.clone(),
                            if b.encrypted { "yes" } else { "NO" }.to_owned(),
                            b.size_bytes.to_string(),
                            b.sha256.chars().take(16).collect(),
                        ]
                    })
                    .collect();
                crate::table::print(&["backup", "created", "encrypted", "bytes", "sha256"], &rows);
            }
            0
        }
        BackupAction::Verify { backup, json, .. } => {
            let v = backups.verify_backup(&core.authorize_local().await?, &backup).await?;
            print_verdict(&v, json)?;
            u8::from(!v.valid)
        }
        BackupAction::Restore { .. } => 0,
    };
    let _ = store.close().await;
    Ok(code)
}

/// The verdict of `backup verify`: JSON, or one line (the reason when invalid).
fn print_verdict(v: &rampart_core::backup::BackupVerification, json: bool) -> anyhow::Result<()> {
    if json {
        return crate::table::json(v);
    }
    match (&v.reason, v.documents) {
        (Some(reason), _) => println!("INVALID: {}: {reason}", v.backup_id),
        (None, docs) => println!(
            "valid: {} decrypts, passes its integrity check and holds {} document(s).",
            v.backup_id,
            docs.map_or_else(|| "?".to_owned(), |d| d.to_string())
        ),
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid", path.display()))
}

/// Verifies a backup file outside any data directory: its key-store file gives the root key,
/// which the master key unwraps.
async fn verify_offline(
    config: &Config,
    file: &Path,
    key_file: Option<&Path>,
) -> anyhow::Result<rampart_core::backup::BackupVerification> {
    let stem = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".rbk"))
        .context("expected a .rbk backup file")?;
    let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let (_, meta_path, keys_path) = backup::paths(dir, stem);
    let meta: BackupMeta = read_json(&meta_path)?;
    let master = match key_file {
        Some(k) => {
            let text = std::fs::read_to_string(k).with_context(|| format!("cannot read {}", k.display()))?;
            rampart_crypto::MasterKey::from_base64(&text).context("--key-file is not a master key file")?
        }
        None => datadir::master_key(config)?,
    };
    let keys: KeyStoreFile = read_json(&keys_path).context("the key-store file beside the backup is needed")?;
    let root = keys
        .keys
        .iter()
        .map(backup::StoredKey::to_record)
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .find(|k| k.kind == KeyKind::Root && k.successor.is_none())
        .context("the key-store file has no root key")?;
    let root_key = master
        .kek(root.kek_version)
        .unwrap(&root.key_id, &root.wrapped)
        .context("this master key does not open the backup's key store")?;
    let key = *root_key.backup_key().expose();
    let (data, scratch, id) = (file.to_owned(), dir.to_owned(), meta.backup_id.clone());
    let progress = Progress::stderr();
    let v =
        tokio::task::spawn_blocking(move || backup::verify_file(&data, &meta, &key, &scratch, &id, progress)).await?;
    Ok(v)
}

/// Where a restore gets the current erasure ledger from.
enum LedgerChoice {
    /// The live target directory's, or refuse.
    Required,
    File(PathBuf),
    /// The operator accepts that erased subjects may come back.
    Without,
}

async fn restore(
    config: &Config,
    file: &Path,
    force: bool,
    key_file: Option<&Path>,
    choice: LedgerChoice,
    json: bool,
) -> anyhow::Result<()> {
    let target = &config.server.data_dir;
    let stem = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".rbk"))
        .context("expected a .rbk backup file")?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let (_, meta_path, keys_path) = backup::paths(dir, stem);
    let meta: BackupMeta = read_json(&meta_path)?;
    let progress = Progress::stderr();
    let phase = progress.phase("checksum");
    if backup::sha256_file(file)? != meta.sha256 {
        bail!("{} does not match its checksum: refusing to restore it", file.display());
    }
    phase.finish("matches");
    datadir::ensure_dir(target)?;
    let _lock = datadir::lock(target).context("a server is using the target data directory; stop it first")?;
    // Where the live database is (the data directory unless --database-url says otherwise).
    let DatabaseUrl::Sqlite { dir: db_dir } = &config.server.database else {
        bail!("restoring into a PostgreSQL deployment is not available in this version");
    };
    datadir::ensure_dir(db_dir)?;
    let live_db = db_dir.join(DatabaseUrl::SQLITE_FILE);
    if live_db.exists() && !force {
        bail!("{} already holds data: use --force to replace it", target.display());
    }
    if let Some(k) = key_file {
        let dest = target.join(datadir::KEY_FILE);
        if !dest.exists() {
            datadir::write_private(&dest, std::fs::read(k).context("reading --key-file")?.as_slice())?;
        }
    }
    let master = datadir::master_key(config)
        .context("the master key is needed to restore (RAMPART_ENCRYPTION_KEY, --key-file or the target's key file)")?;

    // Erasures: every copy found is applied (more is always safe), but one of them must be
    // current, or the operator must say, on the record, that they restore without one.
    let mut ledger: HashSet<String> = crate::ledger::entries_in(dir).into_iter().collect();
    if let Ok(at_backup) = LedgerFile::read(&backup::ledger_path(dir, stem)) {
        ledger.extend(at_backup.entries);
    }
    let mut current: Option<String> = live_db.exists().then(|| "the live data directory".to_owned());
    match &choice {
        LedgerChoice::File(path) => {
            let own = backup::ledger_path(dir, stem);
            if std::fs::canonicalize(path).ok() == std::fs::canonicalize(&own).ok() {
                bail!(
                    "{} is the ledger as of the backup itself: it cannot know of later erasures. \
                     Export a current one with `rampart gdpr export-ledger --out FILE` on the live system.",
                    path.display()
                );
            }
            let given = LedgerFile::read(path)?;
            let created = rampart_types::Timestamp::parse_rfc3339(&meta.created_at);
            if given.exported_at() < created {
                bail!(
                    "{} was exported at {}, before the backup was taken ({}): it cannot know of later \
                     erasures. Export a current one with `rampart gdpr export-ledger --out FILE` on the live system.",
                    path.display(),
                    given.exported_at,
                    meta.created_at
                );
            }
            ledger.extend(given.entries);
            current = Some(path.display().to_string());
        }
        LedgerChoice::Without => {
            eprintln!(
                "WARNING: restoring without a current erasure ledger. Data subjects erased after {} \
                 may come back. This is recorded in the audit log.",
                meta.created_at
            );
        }
        LedgerChoice::Required if current.is_none() => bail!(
            "no current erasure ledger: restoring {} into a new directory could bring back data subjects \
             erased after it was taken. On the live system run `rampart gdpr export-ledger --out ledger.json` \
             and pass --erasure-ledger ledger.json (the copy kept current beside the backups, {}, also \
             serves), or pass --without-erasure-ledger to accept the risk (audited).",
            meta.backup_id,
            dir.join(crate::ledger::CURRENT_FILE).display()
        ),
        LedgerChoice::Required => {}
    }

    // Keys: the live key store when there is one (so erased subjects stay unreadable),
    // otherwise the key-store file beside the backup.
    let (keys, source) = if live_db.exists() {
        let live = Backend::open(&config.server.database, &config.server.node_id).await?;
        let mut keys = Vec::new();
        let mut after = String::new();
        loop {
            let page = live.list_keys(&after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.key_id.clone();
            keys.extend(page);
        }
        ledger.extend(rampart_store::PrivacyStore::erasure_ledger(&*live).await?.into_iter().map(|e| e.subject_hash));
        let _ = live.close().await;
        // Keys retired since the backup (re-encryption) are still needed by its documents:
        // take them from the backup's key-store file, except erased subjects' keys.
        if let Ok(file) = read_json::<KeyStoreFile>(&keys_path) {
            let known: HashSet<String> = keys.iter().map(|k| k.key_id.clone()).collect();
            let current: std::collections::HashMap<(KeyKind, String), String> = keys
                .iter()
                .filter(|k| k.successor.is_none())
                .map(|k| ((k.kind, k.owner.clone()), k.key_id.clone()))
                .collect();
            for k in &file.keys {
                let erased = k.kind == "subject" && ledger.contains(&k.owner);
                if !erased && !known.contains(&k.key_id) {
                    let mut rec = k.to_record()?;
                    // Restored as a retired key whose successor is today's key for the same
                    // owner: the next re-encryption moves its documents over.
                    rec.successor = current.get(&(rec.kind, rec.owner.clone())).cloned().or(rec.successor);
                    keys.push(rec);
                }
            }
        }
        (keys, "live")
    } else {
        let file: KeyStoreFile =
            read_json(&keys_path).context("no live key store and no key-store file beside the backup")?;
        ledger.extend(file.erasure_ledger.iter().cloned());
        (file.keys.iter().map(backup::StoredKey::to_record).collect::<anyhow::Result<Vec<_>>>()?, "key-store file")
    };
    let root = keys
        .iter()
        .find(|k| k.kind == KeyKind::Root && k.successor.is_none())
        .context("the key store has no root key")?;
    let root_key = master
        .kek(root.kek_version)
        .unwrap(&root.key_id, &root.wrapped)
        .context("the master key does not open this key store")?;
    let backup_key = root_key.backup_key();

    // Staged in a directory of its own, erasures applied there, then renamed over the live
    // file: a crash at any point leaves the old database or the new one, never neither.
    // Beside the live file, so the final rename stays on one file system.
    let staging = db_dir.join(".restore");
    let _ = std::fs::remove_dir_all(&staging);
    datadir::ensure_dir(&staging)?;
    let staged = staging.join("rampart.db");
    let task = progress.counted(if meta.encrypted { "decrypting" } else { "copying" }, meta.size_bytes, true);
    let staged_for_task = staged.clone();
    let (src, encrypted) = (file.to_owned(), meta.encrypted);
    let key_bytes = *backup_key.expose();
    let on_progress = {
        let task = task.clone();
        move |done| task.set(done)
    };
    tokio::task::spawn_blocking(move || backup::decrypt_to(&src, encrypted, &key_bytes, &staged_for_task, on_progress))
        .await?
        .map_err(|reason| anyhow::anyhow!("{reason}"))?;
    task.finish("done");
    Backend::install_snapshot_keys(&staged, &keys)?;

    let phase = progress.phase("applying erasures");
    let staged_url = DatabaseUrl::Sqlite { dir: staging.clone() };
    let App { core, backend: store } = App::open_with(config, &staged_url, master).await?;
    let erased = core.privacy().apply_erasures(&ledger).await?;
    phase.finish(&format!("{erased} erased document(s) removed again"));
    core.record_restore(&meta.backup_id, erased, source, current.as_deref()).await?;
    store.close().await.context("checkpointing the restored database")?;
    drop((core, store));
    // Both WALs are checkpointed by now (the live one when its keys were read): what
    // remains of them is empty, and must not be replayed into the other file.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(db_dir.join(format!("{}{suffix}", DatabaseUrl::SQLITE_FILE)));
    }
    std::fs::rename(&staged, &live_db)?;
    std::fs::File::open(db_dir).and_then(|d| d.sync_all()).context("syncing the database directory")?;
    let _ = std::fs::remove_dir_all(&staging);
    if json {
        return crate::table::json(&serde_json::json!({
            "backup_id": meta.backup_id,
            "data_dir": target.display().to_string(),
            "keys_from": source,
            "erasure_ledger": current,
            "erased_documents_removed": erased,
        }));
    }
    println!(
        "Restored {} into {} (keys from the {source}; {erased} erased document(s) removed again).",
        meta.backup_id,
        target.display()
    );
    Ok(())
}

pub fn erasure_hook(config: &Config) -> rampart_core::backup::ErasureHook {
    backup::ledger_hook(config.backup.dir.clone(), std::sync::Arc::new(rampart_core::SystemClock))
}
