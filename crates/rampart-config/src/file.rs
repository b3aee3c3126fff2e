
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileServer {
    pub data_dir: Option<PathBuf>,
    pub bind: Option<String>,
    pub log_dir: Option<PathBuf>,
    pub insecure_http: Option<bool>,
    pub secrets_file: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub header_read_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
            path: path.to_owned(),
            reason: e.kind().to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
            path: path.to_owned(),
            reason: e.message().to_owned(),
        })
    }
}

