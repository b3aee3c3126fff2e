//! The data directory: created 0700, holding the database, the master key file (0600)
//! and the generated TLS material.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use rampart_config::Config;
use rampart_core::MasterKey;
use rampart_store::Store;
use secrecy::ExposeSecret;

pub const KEY_FILE: &str = "master.key";
/// A new master key written by `keys change-master` before the database switches to it.
pub const PENDING_KEY_FILE: &str = "master.key.new";

/// An exclusive lock on the data directory, held while a server (or a restore) uses it.
pub fn lock(dir: &Path) -> anyhow::Result<fs::File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(dir.join(".lock"))?;
    f.try_lock().map_err(|e| anyhow::anyhow!("{} is locked: {e}", dir.display()))?;
    Ok(f)
}

pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    Ok(())
}

/// Writes `contents` to a new file with mode 0600; refuses to replace an existing file.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    Ok(())
}

/// The master key: from `RAMPART_ENCRYPTION_KEY[_FILE]`, else the key file, else a new
/// key file. A malformed key is a start-up error that names the setting.
pub fn master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(text) = &config.secrets.encryption_key {
        return MasterKey::from_base64(text.expose_secret())
            .context("RAMPART_ENCRYPTION_KEY must be base64 of exactly 32 bytes");
    }
    let path = config.server.data_dir.join(KEY_FILE);
    if path.exists() {
        let mode = fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!("{} is readable by other users (mode {:o}); run chmod 600 on it", path.display(), mode & 0o777);
        }
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return MasterKey::from_base64(&text).with_context(|| format!("{} is not a valid key file", path.display()));
    }
    let key = MasterKey::generate();
    write_private(&path, format!("{}\n", key.to_base64().expose_secret()).as_bytes())?;
    Ok(key)
}

/// Finishes (or abandons) a `keys change-master` that stopped between writing the new key
/// file and renaming it: whichever key matches the database's check value wins.
pub(crate) async fn settle_pending_key(
    config: &Config,
    store: &dyn Store,
    key: MasterKey,
) -> anyhow::Result<MasterKey> {
    let pending = config.server.data_dir.join(PENDING_KEY_FILE);
    if config.secrets.encryption_key.is_some() || !pending.exists() {
        return Ok(key);
    }
    let Some(kcv) = store.get_meta("master_key_check_value").await? else {
        return Ok(key);
    };
    let text = fs::read_to_string(&pending)?;
    let new =
        MasterKey::from_base64(&text).with_context(|| format!("{} is not a valid key file", pending.display()))?;
    if new.verify_check_value(&kcv).is_ok() {
        fs::rename(&pending, config.server.data_dir.join(KEY_FILE))?;
        tracing::info!("finished an interrupted master key change");
        return Ok(new);
    }
    if key.verify_check_value(&kcv).is_ok() {
        fs::remove_file(&pending)?;
        tracing::warn!("abandoned an interrupted master key change that never reached the database");
    }
    Ok(key)
}
