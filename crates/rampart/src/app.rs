//! The one place that assembles a deployment from its configuration: the store the
//! database URL names, the core on it, and the background workers `serve` runs. Every CLI
//! verb and `serve` open through `App`; no other module names a storage backend.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rampart_config::{Config, DatabaseUrl, Env, Overrides};
use rampart_core::{
    Bootstrap, Core, CoreError, CorePorts, CoreSettings, Limiter, MasterKey, PasswordPool, SystemClock, ThrottleBackend,
};
use rampart_crypto::PasswordHasher;
use rampart_notify::WebhookNotifier;
use rampart_store::{CacheInvalidation, LeaderLease, SingleNode, Store, StoreError, Topic};
use rampart_store_postgres::{PostgresOptions, PostgresStore};
use rampart_store_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::datadir;

/// The configuration of every verb. With `[secrets.vault]` set, Vault/OpenBao is logged in
/// to and every secret the configuration may need is read from it first (SPEC §2: Vault →
/// environment / `_FILE` → `.secrets` file → defaults), before anything is created: an
/// unreachable, sealed or refusing Vault stops the verb here. The client is returned so that
/// `serve` keeps its token alive.
pub async fn load_config(flags: &Overrides) -> anyhow::Result<(Config, Option<Arc<rampart_vault::Vault>>)> {
    let pending = Config::prepare(&Env::from_process(), flags).context("invalid configuration")?;
    let Some(settings) = pending.vault().cloned() else {
        return Ok((pending.finish(None).context("invalid configuration")?, None));
    };
    let vault = rampart_vault::Vault::connect(&settings).await.context("cannot log in to Vault")?;
    let secrets = vault.snapshot(&pending.secret_names()).await.context("cannot read secrets from Vault")?;
    let config = pending.finish(Some(Box::new(secrets))).context("invalid configuration")?;
    Ok((config, Some(vault)))
}

/// The opened storage backend: `dyn Store` for everything generic (it dereferences to it),
/// plus the few operations that differ by backend (SQLite: `VACUUM INTO` snapshots and
/// key-store files for backups and restores).
#[derive(Clone)]
pub enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Backend {
    /// Opens the store `url` names; `node` names this node's audit chain on PostgreSQL.
    pub async fn open(url: &DatabaseUrl, node: &str) -> anyhow::Result<Self> {
        if let DatabaseUrl::Sqlite { dir } = url {
            // Private like the data directory: it holds the sealed data and its WAL.
            datadir::ensure_dir(dir)?;
        }
        Self::open_as_found(url, node).await
    }

    /// Opens the store without creating or tightening its directory (`doctor` reports a
    /// mode; it does not change it).
    pub async fn open_as_found(url: &DatabaseUrl, node: &str) -> anyhow::Result<Self> {
        match url {
            DatabaseUrl::Sqlite { dir } => {
                let dir = dir.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
                    .await?
                    .context("cannot open the database")?;
                Ok(Backend::Sqlite(store))
            }
            DatabaseUrl::Postgres(url) => {
                let options = PostgresOptions { node: node.to_owned(), ..PostgresOptions::default() };
                let store =
                    PostgresStore::open(url.expose(), options).await.context("cannot open the PostgreSQL database")?;
                Ok(Backend::Postgres(store))
            }
        }
    }

    /// Whether the database at `url` holds data already (nothing is created to find out).
    pub fn exists(url: &DatabaseUrl) -> bool {
        match url {
            DatabaseUrl::Sqlite { dir } => dir.join(DatabaseUrl::SQLITE_FILE).exists(),
            // A server is there to ask; opening it creates only the schema.
            DatabaseUrl::Postgres(_) => true,
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => Arc::new(s.clone()),
            Backend::Postgres(s) => Arc::new(s.clone()),
        }
    }

    /// A consistent copy of the whole database in `path`, for a backup.
    pub async fn snapshot_into(&self, path: &Path) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.snapshot_into(path).await,
            Backend::Postgres(_) => Err(StoreError::Unavailable(Box::new(std::io::Error::other(
                "backups of a PostgreSQL deployment are not available in this version",
            )))),
        }
    }
}

/// Backup snapshots are SQLite database files, whichever backend wrote them.
impl Backend {
    /// `PRAGMA integrity_check` of a snapshot file, and how many documents it holds.
    pub fn check_snapshot(path: &Path) -> Result<(bool, u64), StoreError> {
        rampart_store_sqlite::check_file(path)
    }

    /// Replaces the key store of a snapshot file (a restore keeps the live keys).
    pub fn install_snapshot_keys(path: &Path, keys: &[rampart_store::KeyRecord]) -> Result<(), StoreError> {
        rampart_store_sqlite::install_keys(path, keys)
    }
}

impl std::ops::Deref for Backend {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Backend::Sqlite(s) => s,
            Backend::Postgres(s) => s,
        }
    }
}

/// A deployment: the core over its backend.
pub struct App {
    pub core: Core,
    pub backend: Backend,
}

impl App {
    /// Opens the configured deployment: data directory, master key, store, core. Prints the
    /// first admin's generated password to the terminal (never to the logs) on stderr:
    /// stdout carries the verb's own result (JSON with `--json`).
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        datadir::ensure_dir(&config.server.data_dir)?;
        let key = datadir::master_key(config)?;
        Self::open_with(config, &config.server.database, key).await
    }

    /// Opens the database at `url` (the configured one, or a restore's staging copy).
    pub async fn open_with(config: &Config, url: &DatabaseUrl, key: MasterKey) -> anyhow::Result<Self> {
        Self::assemble(config, Backend::open(url, &config.server.node_id).await?, key).await
    }

    /// The core over an opened backend.
    pub async fn assemble(config: &Config, backend: Backend, key: MasterKey) -> anyhow::Result<Self> {
        let key = datadir::settle_pending_key(config, &*backend, key).await?;
        let key = crate::rotate_secrets::settle_pending_secrets(config, &*backend, key).await?;
        let hasher = PasswordHasher::new().context("cannot set up password hashing")?;
        let pool = PasswordPool::new(hasher, config.auth.password_hash_concurrency, config.auth.password_hash_queue);
        let admin = (config.secrets.admin_username.clone(), config.secrets.admin_password.clone());
        // `[auth.ldap]`: the directory checks accounts whose source is ldap (and unknown
        // names when `auth.method = "ldap"`). Its CA file is read now: a bad one fails the start.
        let ldap = match &config.auth.ldap {
            Some(l) => Some(Arc::new(rampart_ldap::LdapIdentity::new(l)?) as Arc<dyn rampart_core::IdentityProvider>),
            None => None,
        };
        let ports = CorePorts {
            store: backend.store(),
            clock: Arc::new(SystemClock),
            master: Arc::new(key),
            passwords: pool,
            notifier: Arc::new(WebhookNotifier::new(
                config.breach.webhooks.clone(),
                config.privacy.service_providers.clone(),
                config.breach.instance_id.clone(),
            )),
            identity: None,
            ldap,
            login_delay: backend.login_delay(),
            // `[auth.oidc]`: no network here (every CLI verb opens the app); `serve` warms
            // it up, and logins answer 503 while the provider is unreachable.
            oidc: config
                .auth
                .oidc
                .as_ref()
                .map(|o| rampart_oidc::open(o).context("cannot set up OpenID Connect ([auth.oidc])"))
                .transpose()?,
        };
        let opened = Core::open(ports, CoreSettings::from_config(config), admin).await;
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
                Some(pw) => eprintln!(
                    "Created the first admin user '{admin_username}' with password:\n\n    {}\n\n\
                     This password is shown only once. Log in and change it.",
                    pw.expose_secret()
                ),
                None => eprintln!("Created the first admin user '{admin_username}'."),
            }
        }
        Ok(Self { core, backend })
    }

    /// The rate limiter `rate_limit.backend` asks for: this process's memory, or Redis shared
    /// by every node. Redis being down at start is no error (its fail modes answer); a URL
    /// that names no Redis server is.
    pub async fn limiter(&self, config: &Config) -> anyhow::Result<Arc<dyn Limiter>> {
        Ok(rampart_limits_redis::open_limiter(&config.rate_limit, &self.core, REDIS_FIRST_CONNECT).await?)
    }

    /// Starts the background jobs of a serving node: the session sweep with scheduled key
    /// rotation, re-encryption, retention deletion and webhook delivery (one node at a time, under `lease`), and the reload of
    /// address blocks (every node). They end when `stop` turns true (or are aborted).
    pub fn start_workers(&self, config: &Config, lease: Arc<dyn LeaderLease>, stop: watch::Receiver<bool>) -> Workers {
        let clock = self.core.clock();
        let sweeper = tokio::spawn(sweep(self.core.clone(), Arc::clone(&lease)));
        let block_reload = tokio::spawn(reload_blocks(self.core.clone(), self.backend.store().invalidation()));
        let reencrypt = tokio::spawn({
            let (core, lease) = (self.core.clone(), Arc::clone(&lease));
            async move { core.keys().keep_reencrypting(lease).await }
        });
        // Retention deletion (when `[retention] enabled` and `auto_delete_expired`): under
        // the lease, batch by batch, resumed by the next run after a crash.
        let retention = tokio::spawn({
            let (core, lease) = (self.core.clone(), Arc::clone(&lease));
            async move { core.retention().keep_deleting(lease).await }
        });
        let endpoints = crate::webhooks::Endpoints::live(config);
        // `rampart rotate-secrets` while this server runs: it does the work (its keys change
        // with the store's) and answers through the data directory.
        let rotation = tokio::spawn(crate::rotate_secrets::watch(
            config.clone(),
            self.core.clone(),
            Arc::clone(&endpoints),
            stop.clone(),
        ));
        let webhooks = tokio::spawn(crate::webhooks::deliver(
            self.backend.store(),
            endpoints,
            clock,
            lease,
            Arc::clone(self.core.events().metrics()),
            stop,
        ));
        Workers { periodic: vec![sweeper, block_reload, reencrypt, retention, rotation], webhooks }
    }
}

impl Backend {
    /// Where the login delay is kept: in memory on SQLite (one node; no write on the login
    /// path), in the database on PostgreSQL, so that guesses spread over the nodes are held
    /// to one budget per account.
    pub fn login_delay(&self) -> ThrottleBackend {
        match self {
            Backend::Sqlite(_) => ThrottleBackend::Memory,
            Backend::Postgres(_) => ThrottleBackend::Shared,
        }
    }

    /// The lease this deployment's one-node-at-a-time jobs run under: always held with
    /// SQLite (one node); an advisory lock that moves when its holder dies on PostgreSQL.
    pub fn lease(&self) -> Arc<dyn LeaderLease> {
        match self {
            Backend::Sqlite(_) => Arc::new(SingleNode),
            Backend::Postgres(s) => Arc::new(s.lease()),
        }
    }
}

/// The running background jobs.
pub struct Workers {
    periodic: Vec<JoinHandle<()>>,
    webhooks: JoinHandle<()>,
}

impl Workers {
    /// Stops the periodic jobs and waits for webhook delivery to finish its round (it
    /// watches the stop signal).
    pub async fn stop(self) {
        for job in self.periodic {
            job.abort();
        }
        let _ = self.webhooks.await;
    }
}

/// How long a start waits for Redis to answer before serving under the fail modes.
const REDIS_FIRST_CONNECT: Duration = Duration::from_secs(2);

const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(300);
/// How often a node looks whether the store announced a change of address blocks (made on
/// another node, or by `rampart security` in another process); its own apply at once.
const BLOCK_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// The block list is read again this often (in watch intervals) even without an
/// announcement: blocks expire, and an announcement lost with a connection is not missed.
const BLOCK_RELOAD_EVERY: u32 = 20;

async fn sweep(core: Core, lease: Arc<dyn LeaderLease>) {
    let mut tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
    loop {
        tick.tick().await;
        if !lease.held().await {
            continue;
        }
        if let Err(e) = core.sessions().purge_expired_sessions().await {
            tracing::warn!(error = %e, "session sweep failed");
        }
        // Scheduled key rotation (every key_rotation_days): re-wrap only.
        match core.keys().rotate_if_due().await {
            Ok(true) => tracing::info!("scheduled key rotation done"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled key rotation failed"),
        }
    }
}

async fn reload_blocks(core: Core, feed: Arc<dyn CacheInvalidation>) {
    let mut tick = tokio::time::interval(BLOCK_WATCH_INTERVAL);
    let mut seen = None;
    let mut quiet_ticks = 0;
    loop {
        tick.tick().await;
        // Read before the reload: a change committed during it moves the generation again.
        let generation = feed.generation(Topic::Blocks);
        quiet_ticks += 1;
        if seen == Some(generation) && quiet_ticks < BLOCK_RELOAD_EVERY {
            continue;
        }
        (seen, quiet_ticks) = (Some(generation), 0);
        if let Err(e) = core.detection().refresh_blocks().await {
            tracing::warn!(error = %e, "reloading address blocks failed");
        }
    }
}
