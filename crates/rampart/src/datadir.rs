//! The data directory: created 0700, holding the database, the master key file (0600)
//! and the generated TLS material.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rampart_config::Config;
use rampart_core::{Bootstrap, Core, CoreError, CoreSettings, MasterKey, PasswordPool, SystemClock};
use rampart_crypto::PasswordHasher;
use rampart_store_sqlite::SqliteStore;
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
async fn settle_pending_key(config: &Config, store: &SqliteStore, key: MasterKey) -> anyhow::Result<MasterKey> {
    let pending = config.server.data_dir.join(PENDING_KEY_FILE);
    if config.secrets.encryption_key.is_some() || !pending.exists() {
        return Ok(key);
    }
    let Some(kcv) = rampart_store::MetaStore::get_meta(store, "master_key_check_value").await? else {
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

/// Opens the data directory for use: directory, key, store, core. Prints the first
/// admin's generated password to the terminal (never to the logs).
pub async fn open(config: &Config) -> anyhow::Result<(Core, SqliteStore)> {
    ensure_dir(&config.server.data_dir)?;
    let key = master_key(config)?;
    open_database(config, &config.server.data_dir, key).await
}

/// Opens the database in `db_dir` (the data directory, or a restore's staging directory)
/// with `key`.
pub async fn open_database(config: &Config, db_dir: &Path, key: MasterKey) -> anyhow::Result<(Core, SqliteStore)> {
    let dir = db_dir.to_owned();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&dir)).await?.context("cannot open the database")?;
    let key = settle_pending_key(config, &store, key).await?;
    let hasher = PasswordHasher::new().context("cannot set up password hashing")?;
    let pool = PasswordPool::new(hasher, config.auth.password_hash_concurrency, config.auth.password_hash_queue);
    let admin = (config.secrets.admin_username.clone(), config.secrets.admin_password.clone());
    let opened = Core::open(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        Arc::new(key),
        pool,
        CoreSettings::from_config(config),
        admin,
    )
    .await;
    let (core, bootstrap) = match opened {
        Ok(v) => v,
        Err(CoreError::WrongMasterKey) => bail!(
            "the master key does not match this data directory ({}); refusing to start. \
             Use the key this directory was created with.",
            config.server.data_dir.display()
        ),
        Err(CoreError::PasswordPolicy(v)) => {
            bail!("RAMPART_ADMIN_PASSWORD is too weak: {} (rule: {})", v.message, v.rule)
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot initialise the data directory")),
    };
    if let Some(Bootstrap { admin_username, generated_password }) = bootstrap {
        match generated_password {
            Some(pw) => println!(
                "Created the first admin user '{admin_username}' with password:\n\n    {}\n\n\
                 This password is shown only once. Log in and change it.",
                pw.expose_secret()
            ),
            None => println!("Created the first admin user '{admin_username}'."),
        }
    }
    Ok((core, store))
}
