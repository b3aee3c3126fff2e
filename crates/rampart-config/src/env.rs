use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use crate::{invalid, ConfigError};

/// Every `RAMPART_*` variable the configuration reads (a test keeps this list in step
/// with the code); anything else with the prefix is probably a typo.
pub const KNOWN_VARIABLES: &[&str] = &[
    "RAMPART_ADMIN_ALLOWED_IPS",
    "RAMPART_ADMIN_PASSWORD",
    "RAMPART_AUTH_METHOD",
    "RAMPART_ADMIN_PASSWORD_FILE",
    "RAMPART_ADMIN_USERNAME",
    "RAMPART_ADMIN_USERNAME_FILE",
    "RAMPART_AUDIT_RECORD_READS",
    "RAMPART_BACKUP_DIR",
    "RAMPART_BACKUP_ENCRYPTION",
    "RAMPART_BIND",
    "RAMPART_BREACH_DETECTION_ENABLED",
    "RAMPART_BREACH_WEBHOOK_FORMAT",
    "RAMPART_BREACH_WEBHOOK_SECRET",
    "RAMPART_BREACH_WEBHOOK_SECRET_FILE",
    "RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS",
    "RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS_FILE",
    "RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS_UNTIL",
    "RAMPART_BREACH_WEBHOOK_URL",
    "RAMPART_PRIVACY_VERIFICATION_TOKEN_MINUTES",
    "RAMPART_CONFIG",
    "RAMPART_CORS_ALLOWED_ORIGINS",
    "RAMPART_DATABASE_URL",
    "RAMPART_DATA_DIR",
    "RAMPART_DATA_EXFILTRATION_THRESHOLD_MB",
    "RAMPART_ENCRYPTION_KEY",
    "RAMPART_ENCRYPTION_KEY_FILE",
    "RAMPART_INSECURE_HTTP",
    "RAMPART_INSTANCE_ID",
    "RAMPART_KEY_ROTATION_DAYS",
    "RAMPART_LDAP_BIND_PASSWORD",
    "RAMPART_LOG_DIR",
    "RAMPART_MAX_CONNECTIONS",
    "RAMPART_MAX_CONNECTIONS_PER_IP",
    "RAMPART_MAX_SESSIONS_PER_USER",
    "RAMPART_NODE_ID",
    "RAMPART_OIDC_CLIENT_SECRET",
    "RAMPART_RATE_LIMIT_API_WHEN_UNREACHABLE",
    "RAMPART_RATE_LIMIT_BACKEND",
    "RAMPART_RATE_LIMIT_ENABLED",
    "RAMPART_RATE_LIMIT_LOGIN_WHEN_UNREACHABLE",
    "RAMPART_RATE_LIMIT_LOGIN_REQUESTS_PER_MINUTE",
    "RAMPART_RATE_LIMIT_REQUESTS_PER_MINUTE",
    "RAMPART_RATE_LIMIT_USER_REQUESTS_PER_MINUTE",
    "RAMPART_REDIS_URL",
    "RAMPART_REQUIRE_MFA_FOR_ROLES",
    "RAMPART_RETENTION_AUDIT_LOG_RETENTION_DAYS",
    "RAMPART_RETENTION_AUTO_DELETE_EXPIRED",
    "RAMPART_RETENTION_BATCH_SIZE",
    "RAMPART_RETENTION_DEFAULT_RETENTION_DAYS",
    "RAMPART_RETENTION_ENABLED",
    "RAMPART_RETENTION_INTERVAL_SECS",
    "RAMPART_RETENTION_PII_RETENTION_DAYS",
    "RAMPART_SESSION_LIFETIME_HOURS",
    "RAMPART_SESSION_TIMEOUT_MINUTES",
    "RAMPART_TLS_CERT",
    "RAMPART_TLS_KEY",
    "RAMPART_TRUSTED_PROXIES",
    "RAMPART_VAULT_ADDR",
    "RAMPART_VAULT_APPROLE_MOUNT",
    "RAMPART_VAULT_AUTH",
    "RAMPART_VAULT_CA_CERT",
    "RAMPART_VAULT_KUBERNETES_MOUNT",
    "RAMPART_VAULT_KUBERNETES_ROLE",
    "RAMPART_VAULT_KUBERNETES_TOKEN_PATH",
    "RAMPART_VAULT_MOUNT",
    "RAMPART_VAULT_PATH_PREFIX",
    "RAMPART_VAULT_ROLE_ID",
    "RAMPART_VAULT_ROLE_ID_FILE",
    "RAMPART_VAULT_SECRET_ID",
    "RAMPART_VAULT_SECRET_ID_FILE",
    "RAMPART_VAULT_TIMEOUT_SECS",
    "RAMPART_VAULT_TOKEN",
    "RAMPART_VAULT_TOKEN_FILE",
    "RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS",
];

/// Edit distance, for suggesting the variable a typo meant.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A snapshot of `RAMPART_*` variables. Only `from_process` touches the real environment.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: show names only.
        f.debug_list().entries(self.vars.keys()).finish()
    }
}

impl Env {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with("RAMPART_")))
    }

    /// The names of the set variables (values stay here).
    pub fn names(&self) -> Vec<String> {
        self.vars.keys().cloned().collect()
    }

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { vars: pairs.into_iter().collect() }
    }

    /// Warnings for set `RAMPART_*` variables that nothing reads, each naming the closest
    /// known one. `also_known`: names the configuration points at (webhook `secret_env`).
    pub fn unknown_variables(&self, also_known: &[String]) -> Vec<String> {
        let known: Vec<&str> = KNOWN_VARIABLES.iter().copied().chain(also_known.iter().map(String::as_str)).collect();
        let is_known = |k: &str| known.contains(&k) || k.strip_suffix("_FILE").is_some_and(|b| known.contains(&b));
        self.vars
            .keys()
            .filter(|k| k.starts_with("RAMPART_") && !is_known(k))
            .map(|k| {
                let closest = known.iter().min_by_key(|c| distance(k, c)).copied().unwrap_or("RAMPART_DATA_DIR");
                format!("{k} is not a Rampart setting and is ignored; did you mean {closest}?")
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub(crate) fn parse_num<T: FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        self.get(name).map(|v| v.trim().parse().map_err(|_| invalid(name, "expected a number"))).transpose()
    }

    pub(crate) fn parse_bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.get(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(invalid(name, "expected true or false")),
            })
            .transpose()
    }

    /// The `KEY=VALUE` lines of a secrets file (`#` comments and blank lines skipped).
    pub(crate) fn read_secrets_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::ReadFile { path: path.to_owned(), reason: e.kind().to_string() })?;
        let mut vars = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(ConfigError::ParseFile {
                    path: path.to_owned(),
                    reason: format!("line {} is not KEY=VALUE", n + 1),
                });
            };
            vars.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(Self { vars })
    }

    /// These variables, with `lower`'s underneath where these do not set them.
    pub(crate) fn over(&self, lower: &Env) -> Self {
        let mut vars = lower.vars.clone();
        vars.extend(self.vars.clone());
        Self { vars }
    }
}
