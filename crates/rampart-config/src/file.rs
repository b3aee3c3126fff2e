use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// The shape of `rampart.toml`. Unknown keys are refused so a typo never silently
/// leaves a default in place.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub server: FileServer,
    #[serde(default)]
    pub tls: FileTls,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub rate_limit: FileRateLimit,
    #[serde(default)]
    pub cors: FileCors,
    #[serde(default)]
    pub audit: FileAudit,
    #[serde(default)]
    pub keys: FileKeys,
    #[serde(default)]
    pub backup: FileBackup,
    #[serde(default)]
    pub breach_detection: FileBreach,
    #[serde(default)]
    pub privacy: FilePrivacy,
    #[serde(default)]
    pub retention: FileRetention,
    #[serde(default)]
    pub secrets: FileSecrets,
}

/// `[secrets]`: where secrets come from besides the environment and the `.secrets` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSecrets {
    pub vault: Option<FileVault>,
}

/// `[secrets.vault]`: a HashiCorp Vault / OpenBao KV v2 store asked first. Its credentials
/// are secrets (environment or `.secrets` file), never keys here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileVault {
    pub address: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub mount: Option<String>,
    pub path_prefix: Option<String>,
    pub auth: Option<String>,
    pub approle_mount: Option<String>,
    pub kubernetes_mount: Option<String>,
    pub kubernetes_role: Option<String>,
    pub kubernetes_token_path: Option<PathBuf>,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePrivacy {
    pub verification_token_minutes: Option<u32>,
    #[serde(default)]
    pub service_provider: Vec<FileServiceProvider>,
}

/// A recipient of personal data, told of every erasure and CCPA deletion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileServiceProvider {
    pub name: String,
    pub url: String,
    /// Refused: secrets do not belong in the config file.
    pub secret: Option<String>,
    pub secret_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRetention {
    pub enabled: Option<bool>,
    pub default_retention_days: Option<u32>,
    pub pii_retention_days: Option<u32>,
    pub audit_log_retention_days: Option<u32>,
    pub auto_delete_expired: Option<bool>,
    pub interval_secs: Option<u64>,
    pub batch_size: Option<usize>,
    pub batch_pause_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileBreach {
    pub enabled: Option<bool>,
    pub failed_login_threshold: Option<u32>,
    pub failed_login_window_minutes: Option<u32>,
    pub token_failure_threshold: Option<u32>,
    pub forbidden_threshold: Option<u32>,
    pub anomaly_detection: Option<bool>,
    pub sqli_detection: Option<bool>,
    pub data_exfiltration_threshold_mb: Option<u64>,
    pub exfiltration_window_minutes: Option<u32>,
    pub block_duration_hours: Option<u32>,
    pub alert_dedup_minutes: Option<u32>,
    pub admin_allowed_ips: Option<Vec<String>>,
    pub instance_id: Option<String>,
    #[serde(default)]
    pub webhook: Vec<FileWebhook>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileWebhook {
    pub url: String,
    /// Refused: secrets do not belong in the config file.
    pub secret: Option<String>,
    /// Name of the environment variable (or `_FILE` twin) holding the signing secret.
    pub secret_env: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileKeys {
    pub rotation_days: Option<u32>,
    pub reencrypt_pause_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileBackup {
    pub dir: Option<PathBuf>,
    pub encryption: Option<String>,
    pub key_backup_retention_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRateLimit {
    pub enabled: Option<bool>,
    pub requests_per_minute: Option<u32>,
    pub login_requests_per_minute: Option<u32>,
    pub user_requests_per_minute: Option<u32>,
    pub max_tracked_clients: Option<usize>,
    pub backend: Option<String>,
    pub redis_url: Option<String>,
    pub login_when_unreachable: Option<String>,
    pub api_when_unreachable: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileCors {
    pub allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAudit {
    pub retention_days: Option<u32>,
    pub activity_retention_days: Option<u32>,
    pub server_log_retention_days: Option<u32>,
    pub max_file_mb: Option<u64>,
    pub record_reads: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileServer {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub node_id: Option<String>,
    pub bind: Option<String>,
    pub log_dir: Option<PathBuf>,
    pub insecure_http: Option<bool>,
    pub secrets_file: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub body_idle_timeout_secs: Option<u64>,
    pub min_body_bytes_per_sec: Option<u64>,
    pub header_read_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAuth {
    pub session_timeout_minutes: Option<u32>,
    pub session_lifetime_hours: Option<u32>,
    pub max_sessions_per_user: Option<u32>,
    pub password_hash_concurrency: Option<usize>,
    pub password_hash_queue: Option<usize>,
    pub login_delay_after_failures: Option<u32>,
    pub max_login_delay_secs: Option<u32>,
    pub require_mfa_for_roles: Option<Vec<String>>,
    pub refresh_lifetime_hours: Option<u32>,
    pub oidc: Option<crate::oidc::FileOidc>,
    /// `local`, `ldap` or `oauth2`.
    pub method: Option<String>,
    pub ldap: Option<crate::ldap::FileLdap>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLimits {
    pub max_body_bytes: Option<usize>,
    pub max_json_depth: Option<usize>,
    pub max_page_size: Option<usize>,
}

impl FileConfig {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::ReadFile { path: path.to_owned(), reason: e.kind().to_string() })?;
        Self::parse(&text, path)
    }

    /// Parses the text of the file at `path` (named in errors only).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // The error names the key (`server.max_connections`) and the line it is on.
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = match (key.as_str(), line) {
                (".", Some(l)) => format!("line {l}: "),
                (".", None) => String::new(),
                (k, Some(l)) => format!("{k} (line {l}): "),
                (k, None) => format!("{k}: "),
            };
            ConfigError::ParseFile { path: path.to_owned(), reason: format!("{at}{}", inner.message()) }
        })
    }
}
