//! Layered configuration: defaults < `rampart.toml` < `RAMPART_*` environment < flags.
//! Secrets are resolved through a [`SecretChain`] (`secrets.rs`): a Vault/OpenBao snapshot
//! when `[secrets.vault]` is set (see [`PendingConfig`]), then `X` or `X_FILE` in the
//! environment, then the `.secrets` file that `init --secure` writes. This crate is the only
//! place that reads the process environment.

mod env;
mod file;
mod ldap;
mod load;
mod oidc;
mod secrets;
mod vault;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rampart_types::Cidr;
use secrecy::SecretString;

pub use env::Env;
use file::FileConfig;
pub use ldap::{AuthMethod, LdapConfig, LdapRoleMap, LdapTransport};
pub(crate) use load::range;
pub use load::{fuzz_parse_config, PendingConfig};
pub use oidc::{OidcConfig, OIDC_CALLBACK_PATH};
pub use secrets::{EnvSecrets, SecretChain, SecretError, SecretName, SecretSource, SecretsFile};
pub use vault::{VaultAuth, VaultSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    ReadFile { path: PathBuf, reason: String },
    #[error("invalid config file {path}: {reason}")]
    ParseFile { path: PathBuf, reason: String },
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error(transparent)]
    Secret(#[from] SecretError),
}

fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name: name.to_owned(), reason: reason.into() }
}

/// Values given on the command line; `None` leaves the lower layers in charge.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub bind: Option<String>,
    pub log_dir: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_http: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub rate_limit: RateLimitConfig,
    pub cors: CorsConfig,
    pub audit: AuditConfig,
    pub keys: KeysConfig,
    pub backup: BackupConfig,
    pub breach: BreachConfig,
    pub privacy: PrivacyConfig,
    pub retention: RetentionConfig,
    pub secrets: Secrets,
    /// Things worth telling the operator at start (misspelled variables), never errors.
    pub warnings: Vec<String>,
    /// Where this configuration was read from (for `doctor --security`).
    pub sources: ConfigSources,
}

/// The files a configuration came from, and whether Vault answered first.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// `rampart.toml` (or `--config`/`RAMPART_CONFIG`), when one was read.
    pub config_file: Option<PathBuf>,
    /// `server.secrets_file`, resolved beside the config file.
    pub secrets_file: Option<PathBuf>,
    /// `[secrets.vault]` is configured.
    pub vault: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    Generic,
    Slack,
    PagerDuty,
}

/// A breach webhook endpoint. The secret signs deliveries (and is PagerDuty's routing key).
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    pub url: String,
    pub secret: SecretString,
    pub format: WebhookFormat,
    /// A replaced secret that still signs deliveries (beside `secret`) until its time.
    pub previous: Option<PreviousSecret>,
}

/// A signing secret kept through a rotation's overlap window.
#[derive(Debug, Clone)]
pub struct PreviousSecret {
    pub secret: SecretString,
    /// Unix seconds after which it no longer signs.
    pub until_unix: i64,
}

/// Data-subject requests.
#[derive(Debug, Clone)]
pub struct PrivacyConfig {
    /// How long a verification token stays usable (default 60 minutes).
    pub verification_token_minutes: u32,
    /// Recipients of personal data (GDPR art. 19, CCPA service providers): each erasure
    /// or deletion is delivered to them through the signed webhook outbox.
    pub service_providers: Vec<ServiceProvider>,
}

#[derive(Debug, Clone)]
pub struct ServiceProvider {
    /// `[a-z0-9_-]{1,64}`: listed in responses and audit records.
    pub name: String,
    /// Always the generic format.
    pub endpoint: WebhookEndpoint,
}

#[derive(Debug, Clone)]
pub struct BreachConfig {
    pub enabled: bool,
    pub failed_login_threshold: u32,
    pub failed_login_window_minutes: u32,
    pub token_failure_threshold: u32,
    pub forbidden_threshold: u32,
    pub anomaly_detection: bool,
    pub sqli_detection: bool,
    pub data_exfiltration_threshold_mb: u64,
    pub exfiltration_window_minutes: u32,
    pub block_duration_hours: u32,
    pub alert_dedup_minutes: u32,
    /// When set, the admin API answers only these networks.
    pub admin_allowed_ips: Vec<Cidr>,
    pub webhooks: Vec<WebhookEndpoint>,
    pub allow_private_webhook_targets: bool,
    pub instance_id: String,
}

/// `[retention]`: how long documents are kept, and whether expired ones are deleted.
/// A document expires N days after its `created_at`, N being its collection's
/// `retention_days` when set, else `pii_retention_days` when the collection declares
/// `pii_fields` or the document names a `subject_id`, else `default_retention_days`; an
/// unset period keeps documents forever. Legal holds keep documents whatever their age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Retention is applied at all (`rampart retention plan` reports it either way).
    pub enabled: bool,
    pub default_retention_days: Option<u32>,
    pub pii_retention_days: Option<u32>,
    /// How long rotated `audit.log` files are kept. One setting with `[audit]
    /// retention_days` (its older name): this key wins when both are given. The audit
    /// chain in the database is never deleted.
    pub audit_log_retention_days: u32,
    /// The lease holder deletes expired documents in the background (needs `enabled`).
    pub auto_delete_expired: bool,
    /// Pause between background retention runs.
    pub interval_secs: u64,
    /// Documents deleted per transaction.
    pub batch_size: usize,
    /// Pause between batches, so serving comes first (file only, like `reencrypt_pause_ms`).
    pub batch_pause_ms: u64,
}

impl RetentionConfig {
    /// Whether the background job deletes expired documents.
    pub fn deletes(&self) -> bool {
        self.enabled && self.auto_delete_expired
    }
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// A new key-encrypting key version is made automatically this often.
    pub rotation_days: u32,
    /// Pause between background re-encryption batches, so serving comes first.
    pub reencrypt_pause_ms: u64,
}

#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Where backups are written (default `<data-dir>/backups`).
    pub dir: std::path::PathBuf,
    /// `RAMPART_BACKUP_ENCRYPTION=required`: refuse unencrypted backups.
    pub encryption_required: bool,
    /// Key-store files older than this are deleted, so erased subjects' keys expire.
    pub key_backup_retention_days: u32,
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Per client IP (IPv6 by /64), every endpoint but login.
    pub requests_per_minute: u32,
    /// Per client IP, login endpoints; checked before any password hashing.
    pub login_requests_per_minute: u32,
    /// Per authenticated user, on top of the per-IP limit.
    pub user_requests_per_minute: u32,
    /// Most clients tracked at once; beyond it idle entries are evicted.
    pub max_tracked_clients: usize,
    /// Where the budgets are kept: this process's memory, or Redis shared by every node.
    pub backend: RateLimitBackend,
}

/// `[rate_limit] backend`: `memory` (default, one node) or `redis` (shared by all nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitBackend {
    Memory,
    Redis(RedisLimits),
}

/// How the shared limits reach Redis and what happens when it cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLimits {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]` (`RAMPART_REDIS_URL`, `rate_limit.redis_url`).
    pub url: RedisUrl,
    /// Login budgets while Redis is unreachable: refused (`closed`, the default) or allowed.
    pub login_when_unreachable: FailMode,
    /// Every other budget while Redis is unreachable: allowed (`open`, the default) or refused.
    pub api_when_unreachable: FailMode,
}

/// What a limit does when its shared store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    Open,
    Closed,
}

impl FailMode {
    fn parse(key: &str, text: &str) -> Result<Self, ConfigError> {
        match text.trim() {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(invalid(key, "expected open or closed")),
        }
    }
}

/// A Redis URL. It may carry a password, so it is kept as a secret and never printed.
#[derive(Clone)]
pub struct RedisUrl(SecretString);

impl RedisUrl {
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }

    /// Errors never repeat the URL.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let rest = text.strip_prefix("redis://").ok_or_else(|| invalid("redis_url", "expected redis://HOST:PORT"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("redis_url", "expected redis://HOST:PORT"));
        }
        Ok(Self(SecretString::from(text.to_owned())))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisUrl([REDACTED])")
    }
}

impl PartialEq for RedisUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for RedisUrl {}

#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) allowed to call the API from a browser.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Rotated `audit.log` files older than this are deleted: the same setting as
    /// `retention.audit_log_retention_days` (which wins), kept equal to it.
    pub retention_days: u32,
    pub activity_retention_days: u32,
    pub server_log_retention_days: u32,
    /// A log file is rotated when it reaches this size, and at each UTC day change.
    pub max_file_mb: u64,
    /// Record document reads and lists (`query` events). On by default; turning it off
    /// trades read accountability for throughput and is reported as a weakened default.
    pub record_reads: bool,
}

/// Where the data lives: `--database-url` (`RAMPART_DATABASE_URL`, `server.database_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`, PATH being the database file `rampart.db` (its WAL, backups and
    /// restores go by that name) in `dir`; by default the data directory.
    Sqlite { dir: PathBuf },
    /// `postgres://...` (libpq URL syntax, several hosts allowed): shared by every node.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL. It may carry a password, so it is kept as a secret and never printed.
#[derive(Clone)]
pub struct PostgresUrl(SecretString);

impl PostgresUrl {
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresUrl([REDACTED])")
    }
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for PostgresUrl {}

impl DatabaseUrl {
    /// Parses a URL. Errors never repeat it: a database URL may carry a password.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = Path::new(rest);
                if path.file_name().and_then(|n| n.to_str()) != Some(DatabaseUrl::SQLITE_FILE) {
                    return Err(invalid(
                        "database_url",
                        "expected sqlite://PATH/rampart.db (the file must be named rampart.db)",
                    ));
                }
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                Ok(DatabaseUrl::Sqlite { dir: dir.to_owned() })
            }
            "postgres" | "postgresql" if !rest.is_empty() => {
                Ok(DatabaseUrl::Postgres(PostgresUrl(SecretString::from(text.to_owned()))))
            }
            _ => Err(invalid("database_url", "expected sqlite://PATH/rampart.db or postgres://USER@HOST/DATABASE")),
        }
    }

    pub const SQLITE_FILE: &'static str = "rampart.db";

    /// The default: SQLite in the data directory.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        DatabaseUrl::Sqlite { dir: data_dir.to_owned() }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    /// This node's name among several sharing one database (its audit chain is kept under
    /// it): `RAMPART_NODE_ID`, `server.node_id`, by default the host name.
    pub node_id: String,
    pub bind: SocketAddr,
    pub log_dir: PathBuf,
    pub insecure_http: bool,
    pub max_connections: usize,
    /// Open connections one client address may hold (trusted proxies are exempt).
    pub max_connections_per_ip: usize,
    /// Longest wait for the next piece of a request body.
    pub body_idle_timeout_secs: u64,
    /// Slowest average request-body rate accepted (after the idle timeout's grace).
    pub min_body_bytes_per_sec: u64,
    pub header_read_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    /// Peers whose `X-Forwarded-For`/`X-Real-IP` are believed.
    pub trusted_proxies: Vec<Cidr>,
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub session_timeout_minutes: u32,
    pub session_lifetime_hours: u32,
    pub max_sessions_per_user: u32,
    /// Concurrent Argon2 computations; 0 means one per CPU.
    pub password_hash_concurrency: usize,
    /// Hash requests allowed to wait for a slot before new ones are refused (503).
    pub password_hash_queue: usize,
    /// Failed logins of one account before each further attempt must wait.
    pub login_delay_after_failures: u32,
    /// Cap of that growing wait, in seconds (no permanent lockout).
    pub max_login_delay_secs: u32,
    /// Holders of these roles without MFA get sessions that can only enrol MFA.
    pub require_mfa_for_roles: Vec<String>,
    /// Absolute lifetime of a refresh-token family.
    pub refresh_lifetime_hours: u32,
    /// `[auth.oidc]`: OpenID Connect login, when configured.
    pub oidc: Option<OidcConfig>,
    /// The provider for logins by names no account has yet (`[auth] method`).
    pub method: AuthMethod,
    /// `[auth.ldap]`, when a directory is configured.
    pub ldap: Option<LdapConfig>,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_page_size: usize,
}

/// Secret settings. `Debug` prints `[REDACTED]` for each (secrecy's implementation).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub encryption_key: Option<SecretString>,
    pub admin_username: Option<String>,
    pub admin_password: Option<SecretString>,
}

#[cfg(test)]
mod tests;
