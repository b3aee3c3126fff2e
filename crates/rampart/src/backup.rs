//! Encrypted, verified backups in files: a consistent snapshot streamed through chunked
//! AES-256-GCM, written atomically (temp file, fsync, rename), with SPEC metadata beside
//! it and the wrapped key store in a separate, short-lived file.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::Backend;
use crate::progress::Progress;
use async_trait::async_trait;
use rampart_core::backup::{check_policy, BackupMeta, BackupVerification, Backups};
use rampart_core::{Core, CoreError, CoreResult};
use rampart_store::{KeyKind, KeyRecord};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AES-256-GCM-STREAM";

/// The wrapped key store as exported beside a backup (still wrapped by the KEK, which only
/// the master key can derive).
#[derive(Serialize, Deserialize)]
pub struct KeyStoreFile {
    pub backup_id: String,
    pub keys: Vec<StoredKey>,
    pub erasure_ledger: Vec<String>,
}

#[derive(Serialize, Deserialize)]
pub struct StoredKey {
    pub key_id: String,
    pub kind: String,
    pub owner: String,
    pub kek_version: u32,
    pub wrapped: String,
    pub created_at: i64,
    pub successor: Option<String>,
}

impl StoredKey {
    fn from_record(k: &KeyRecord) -> Self {
        Self {
            key_id: k.key_id.clone(),
            kind: k.kind.as_str().to_owned(),
            owner: k.owner.clone(),
            kek_version: k.kek_version,
            wrapped: hex::encode(&k.wrapped),
            created_at: k.created_at.as_millis(),
            successor: k.successor.clone(),
        }
    }

    pub fn to_record(&self) -> anyhow::Result<KeyRecord> {
        Ok(KeyRecord {
            key_id: self.key_id.clone(),
            kind: KeyKind::parse(&self.kind).ok_or_else(|| anyhow::anyhow!("unknown key kind {}", self.kind))?,
            owner: self.owner.clone(),
            kek_version: self.kek_version,
            wrapped: hex::decode(&self.wrapped)?,
            created_at: rampart_types::Timestamp::from_millis(self.created_at),
            successor: self.successor.clone(),
        })
    }
}

pub struct FileBackups {
    pub dir: PathBuf,
    pub store: Backend,
    pub core: Core,
    pub required: bool,
    pub key_retention_days: u32,
    /// Where a CLI verb shows how far it got (hidden for the server).
    pub progress: Progress,
}

fn internal(e: impl std::fmt::Display) -> CoreError {
    CoreError::internal(std::io::Error::other(e.to_string()))
}

pub fn paths(dir: &Path, id: &str) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join(format!("{id}.rbk")), dir.join(format!("{id}.json")), dir.join(format!("{id}.keys.json")))
}

/// The erasure ledger as of the backup, written beside it.
pub fn ledger_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.ledger.json"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = BufReader::new(File::open(path)?);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// `backup-YYYY-MM-DD-HHMMSS` from an RFC 3339 UTC time.
fn backup_id(rfc3339: &str) -> String {
    let date = rfc3339.get(..10).unwrap_or("1970-01-01");
    let time: String = rfc3339.get(11..19).unwrap_or("00:00:00").chars().filter(|c| *c != ':').collect();
    format!("backup-{date}-{time}")
}

impl FileBackups {
    async fn export_keys(&self, id: &str) -> CoreResult<KeyStoreFile> {
        let mut keys = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.list_keys(&after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.key_id.clone();
            keys.extend(page.iter().map(StoredKey::from_record));
        }
        let erasure_ledger = self.core.privacy().erasure_hashes().await?.into_iter().collect();
        Ok(KeyStoreFile { backup_id: id.to_owned(), keys, erasure_ledger })
    }

    fn unique_id(&self) -> String {
        let base = backup_id(&self.core.clock().now().to_rfc3339());
        let mut id = base.clone();
        let mut n = 1;
        while paths(&self.dir, &id).1.exists() {
            n += 1;
            id = format!("{base}-{n}");
        }
        id
    }
}

#[async_trait]
impl Backups for FileBackups {
    async fn create(&self, encrypted: bool, mode: Option<String>) -> CoreResult<BackupMeta> {
        check_policy(encrypted, self.required, mode.as_deref())?;
        crate::datadir::ensure_dir(&self.dir).map_err(internal)?;
        let id = self.unique_id();
        let (data_path, meta_path, keys_path) = paths(&self.dir, &id);
        let snapshot = self.dir.join(format!(".{id}.snapshot"));
        // One `VACUUM INTO`: no counter to show, only that it runs.
        let phase = self.progress.phase("snapshot");
        self.store.snapshot_into(&snapshot).await?;
        let size = fs::metadata(&snapshot).map_err(internal)?.len();
        phase.finish(&format!("{size} bytes"));
        let root = self.store.current_key(KeyKind::Root, "root").await?.ok_or_else(|| internal("root key missing"))?;
        let key = self.core.backup_key();
        let (snap, out) = (snapshot.clone(), data_path.clone());
        let task = self.progress.counted(if encrypted { "encrypting" } else { "copying" }, size, true);
        let written = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let tmp = out.with_extension("rbk.tmp");
            {
                let input = BufReader::new(File::open(&snap)?);
                let file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
                let mut output = BufWriter::new(file);
                if encrypted {
                    let on_progress = |done| task.set(done);
                    rampart_crypto::encrypt_stream(key.expose(), &root.key_id, input, &mut output, on_progress)?;
                } else {
                    std::io::copy(&mut BufReader::new(input), &mut output)?;
                }
                task.finish("done");
                output.flush()?;
                output.get_ref().sync_all()?;
            }
            fs::rename(&tmp, &out)?;
            Ok(())
        })
        .await
        .map_err(internal)?;
        let _ = fs::remove_file(&snapshot);
        written.map_err(internal)?;
        let keys = self.export_keys(&id).await?;
        let now = self.core.clock().now();
        let ledger = crate::ledger::LedgerFile::new(keys.erasure_ledger.iter().cloned(), now);
        let root_key_id = keys.keys.iter().find(|k| k.kind == "root").map(|k| k.key_id.clone());
        let (dir, retention) = (self.dir.clone(), self.key_retention_days);
        // Hashing, fsyncs and pruning are file work: the blocking pool does them.
        let phase = self.progress.phase("key store, ledger, checksum");
        let meta = tokio::task::spawn_blocking(move || -> anyhow::Result<BackupMeta> {
            write_atomic(&keys_path, &serde_json::to_vec(&keys)?)?;
            ledger.write(&ledger_path(&dir, &id))?;
            let mut current = ledger.clone();
            current.entries.extend(crate::ledger::entries_in(&dir));
            current.write(&dir.join(crate::ledger::CURRENT_FILE))?;
            let meta = BackupMeta {
                backup_id: id,
                encrypted,
                encryption_algorithm: encrypted.then(|| ALGORITHM.to_owned()),
                created_at: now.to_rfc3339(),
                size_bytes: fs::metadata(&data_path)?.len(),
                sha256: sha256_file(&data_path)?,
                key_id: root_key_id.filter(|_| encrypted),
                compliance_mode: mode,
                warning: (!encrypted).then(|| rampart_core::backup::UNENCRYPTED_WARNING.to_owned()),
            };
            write_atomic(&meta_path, &serde_json::to_vec_pretty(&meta)?)?;
            prune_key_files(&dir, retention);
            Ok(meta)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        phase.finish("written");
        Ok(meta)
    }

    async fn list(&self) -> CoreResult<Vec<BackupMeta>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let companion = name.ends_with(".keys.json") || name.ends_with(".ledger.json");
            if name.starts_with("backup-") && name.ends_with(".json") && !companion {
                if let Ok(meta) =
                    fs::read(e.path()).map_err(internal).and_then(|b| serde_json::from_slice(&b).map_err(internal))
                {
                    out.push(meta);
                }
            }
        }
        out.sort_by(|a: &BackupMeta, b| a.backup_id.cmp(&b.backup_id));
        Ok(out)
    }

    async fn verify(&self, id: &str) -> CoreResult<BackupVerification> {
        if !id.starts_with("backup-") || id.contains(['/', '\\', '.']) {
            return Err(CoreError::NotFound("backup"));
        }
        let (data, meta_path, _) = paths(&self.dir, id);
        let meta: BackupMeta = fs::read(&meta_path)
            .map_err(|_| CoreError::NotFound("backup"))
            .and_then(|b| serde_json::from_slice(&b).map_err(internal))?;
        let key = self.core.backup_key();
        let dir = self.dir.clone();
        let id = id.to_owned();
        let progress = self.progress;
        tokio::task::spawn_blocking(move || verify_file(&data, &meta, key.expose(), &dir, &id, progress))
            .await
            .map_err(internal)
    }
}

fn verdict(id: &str, valid: bool, reason: Option<String>, documents: Option<u64>) -> BackupVerification {
    BackupVerification { backup_id: id.to_owned(), valid, reason, documents }
}

/// Checks the checksum, decrypts every chunk and runs `PRAGMA integrity_check` on the result.
pub fn verify_file(
    data: &Path,
    meta: &BackupMeta,
    key: &[u8; 32],
    scratch: &Path,
    id: &str,
    progress: Progress,
) -> BackupVerification {
    let phase = progress.phase("checksum");
    match sha256_file(data) {
        Ok(sum) if sum == meta.sha256 => phase.finish("matches"),
        Ok(_) => return verdict(id, false, Some("checksum mismatch: the backup file changed".into()), None),
        Err(e) => return verdict(id, false, Some(format!("cannot read the backup file: {}", e.kind())), None),
    }
    let plain = scratch.join(format!(".{id}.verify"));
    let task = progress.counted(if meta.encrypted { "decrypting" } else { "copying" }, meta.size_bytes, true);
    let opened = decrypt_to(data, meta.encrypted, key, &plain, |done| task.set(done));
    task.finish(if opened.is_ok() { "done" } else { "failed" });
    let phase = progress.phase("integrity check");
    let result = match opened {
        Err(reason) => verdict(id, false, Some(reason), None),
        Ok(()) => match Backend::check_snapshot(&plain) {
            Ok((true, docs)) => verdict(id, true, None, Some(docs)),
            Ok((false, _)) => verdict(id, false, Some("the snapshot fails PRAGMA integrity_check".into()), None),
            Err(_) => verdict(id, false, Some("the snapshot is not a readable database".into()), None),
        },
    };
    phase.finish(if result.valid { "ok" } else { "failed" });
    let _ = fs::remove_file(&plain);
    result
}

/// Decrypts (or copies) a backup file to `out`; the error is a message for the operator.
pub fn decrypt_to(
    data: &Path,
    encrypted: bool,
    key: &[u8; 32],
    out: &Path,
    progress: impl FnMut(u64),
) -> Result<(), String> {
    let input = File::open(data).map_err(|e| format!("cannot read the backup file: {}", e.kind()))?;
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot write {}: {}", out.display(), e.kind()))?;
    let mut w = BufWriter::new(file);
    if encrypted {
        rampart_crypto::decrypt_stream(key, BufReader::new(input), &mut w, progress).map_err(|e| match e {
            rampart_crypto::StreamError::Truncated => "the backup is truncated (final chunk missing)".to_owned(),
            rampart_crypto::StreamError::Corrupt { chunk } => {
                format!("chunk {chunk} failed authentication (altered, reordered or swapped)")
            }
            rampart_crypto::StreamError::WrongKey => {
                "the backup does not open with this server's backup key".to_owned()
            }
            rampart_crypto::StreamError::TrailingData => "data after the final chunk".to_owned(),
            other => format!("the backup cannot be decrypted: {other}"),
        })?;
    } else {
        std::io::copy(&mut BufReader::new(input), &mut w).map_err(|e| e.kind().to_string())?;
    }
    w.flush().map_err(|e| e.kind().to_string())?;
    w.get_ref().sync_all().map_err(|e| e.kind().to_string())
}

/// Keeps the ledger copy beside the backups current: rewritten (atomically) with the new
/// hash at every erasure, stamped with the time.
pub fn ledger_hook(dir: PathBuf, clock: Arc<dyn rampart_core::Clock>) -> rampart_core::backup::ErasureHook {
    Arc::new(move |hash: &str| {
        let _ = crate::datadir::ensure_dir(&dir);
        let path = dir.join(crate::ledger::CURRENT_FILE);
        let mut entries = crate::ledger::entries_in(&dir);
        entries.insert(hash.to_owned());
        if let Err(e) = crate::ledger::LedgerFile::new(entries, clock.now()).write(&path) {
            tracing::error!(error = %e, "cannot update the erasure ledger beside the backups");
        }
    })
}

/// Deletes key-store files past their retention, so erased subjects' keys expire.
fn prune_key_files(dir: &Path, retention_days: u32) {
    let keep = std::time::Duration::from_secs(u64::from(retention_days) * 86_400);
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > keep);
        if name.ends_with(".keys.json") && old {
            let _ = fs::remove_file(e.path());
        }
    }
}
