//! Where secrets come from: one port, [`SecretSource`], asked through a [`SecretChain`].
//!
//! The chain is a Vault/OpenBao snapshot when `[secrets.vault]` is configured (the
//! `rampart-vault` crate fetches it before the configuration is resolved), then the
//! environment (`X`, or the file `X_FILE` names), then the `.secrets` file that
//! `init --secure` writes. Nothing that reads a secret knows which source answered.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::{ConfigError, Env};

/// Every secret the product reads. `env_var` is its `RAMPART_*` name, which is also its key
/// in the `.secrets` file (and the name a Vault source maps to its own path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretName {
    /// The master key: base64 of 32 bytes.
    EncryptionKey,
    /// The first admin's username, used when the database is first created.
    AdminUsername,
    /// The first admin's password, used when the database is first created.
    AdminPassword,
    /// Signs deliveries to `RAMPART_BREACH_WEBHOOK_URL`.
    BreachWebhookSecret,
    /// The secret `rotate-secrets` replaced: deliveries carry its signature too until
    /// `RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS_UNTIL`, so receivers can switch over.
    BreachWebhookSecretPrevious,
    /// Where shared rate limits are kept: a `redis://` URL, which may carry a password.
    RedisUrl,
    /// The OpenID Connect client secret (`[auth.oidc]`); never read from the config file.
    OidcClientSecret,
    /// The `[auth.ldap]` service account's password (`bind_dn`).
    LdapBindPassword,
    /// Signs deliveries to a `[[breach_detection.webhook]]`: held in the variable its
    /// `secret_env` names (chosen by the operator, so not a fixed name).
    WebhookSecretEnv(String),
    /// The Vault/OpenBao token (`auth = "token"`). Never looked up in Vault itself.
    VaultToken,
    /// The AppRole role_id (`auth = "approle"`). Never looked up in Vault itself.
    VaultRoleId,
    /// The AppRole secret_id (`auth = "approle"`). Never looked up in Vault itself.
    VaultSecretId,
}

impl SecretName {
    /// The secrets with a fixed name.
    pub const FIXED: [SecretName; 8] = [
        SecretName::EncryptionKey,
        SecretName::AdminUsername,
        SecretName::AdminPassword,
        SecretName::BreachWebhookSecret,
        SecretName::BreachWebhookSecretPrevious,
        SecretName::RedisUrl,
        SecretName::OidcClientSecret,
        SecretName::LdapBindPassword,
    ];

    pub fn env_var(&self) -> &str {
        match self {
            SecretName::EncryptionKey => "RAMPART_ENCRYPTION_KEY",
            SecretName::AdminUsername => "RAMPART_ADMIN_USERNAME",
            SecretName::AdminPassword => "RAMPART_ADMIN_PASSWORD",
            SecretName::BreachWebhookSecret => "RAMPART_BREACH_WEBHOOK_SECRET",
            SecretName::BreachWebhookSecretPrevious => "RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS",
            SecretName::RedisUrl => "RAMPART_REDIS_URL",
            SecretName::OidcClientSecret => "RAMPART_OIDC_CLIENT_SECRET",
            SecretName::LdapBindPassword => "RAMPART_LDAP_BIND_PASSWORD",
            SecretName::WebhookSecretEnv(var) => var,
            SecretName::VaultToken => "RAMPART_VAULT_TOKEN",
            SecretName::VaultRoleId => "RAMPART_VAULT_ROLE_ID",
            SecretName::VaultSecretId => "RAMPART_VAULT_SECRET_ID",
        }
    }

    /// Whether a Vault source may hold it: every secret but Vault's own credentials, which
    /// must be known before Vault can be asked. (No wildcard: a new secret must be classed.)
    pub fn kept_in_vault(&self) -> bool {
        match self {
            SecretName::EncryptionKey
            | SecretName::AdminUsername
            | SecretName::AdminPassword
            | SecretName::BreachWebhookSecret
            | SecretName::BreachWebhookSecretPrevious
            | SecretName::RedisUrl
            | SecretName::OidcClientSecret
            | SecretName::LdapBindPassword
            | SecretName::WebhookSecretEnv(_) => true,
            SecretName::VaultToken | SecretName::VaultRoleId | SecretName::VaultSecretId => false,
        }
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.env_var())
    }
}

/// Why a secret could not be resolved. Names settings, places and files; never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("set {name} or {name}_FILE, not both (in {place})")]
    Conflict { name: SecretName, place: String },
    #[error("cannot read {path} (named by {name}_FILE): {reason}")]
    ReadFile { name: SecretName, path: PathBuf, reason: String },
    #[error("{name} is required but not set; looked in: {}", looked_in.join(", "))]
    Missing { name: SecretName, looked_in: Vec<String> },
}

/// A place secrets are looked up. `get` answers `Ok(None)` when the place does not hold the
/// secret, so the next place is asked; an error stops the lookup.
pub trait SecretSource: Send + Sync {
    /// Where it looks, for error messages: "environment (X or X_FILE)", "/etc/rampart/.secrets".
    fn describe(&self) -> String;
    /// Where it looks for one secret (a Vault source names the secret's own path).
    fn describe_for(&self, _name: &SecretName) -> String {
        self.describe()
    }
    fn get(&self, name: &SecretName) -> Result<Option<SecretString>, SecretError>;
}

/// `X`, or the content of the file `X_FILE` names (trailing newline trimmed); both is refused.
/// Empty values count as unset.
fn from_vars(
    vars: &Env,
    name: &SecretName,
    place: impl FnOnce() -> String,
) -> Result<Option<SecretString>, SecretError> {
    let var = name.env_var();
    match (vars.get(var), vars.get(&format!("{var}_FILE"))) {
        (Some(_), Some(_)) => Err(SecretError::Conflict { name: name.clone(), place: place() }),
        (Some(v), None) => Ok(Some(SecretString::from(v))),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| SecretError::ReadFile {
                name: name.clone(),
                path: PathBuf::from(&path),
                reason: e.kind().to_string(),
            })?;
            Ok(Some(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned())))
        }
        (None, None) => Ok(None),
    }
}

/// The process environment (a snapshot; a map in tests): `X` or `X_FILE`.
#[derive(Debug, Clone)]
pub struct EnvSecrets {
    env: Env,
}

impl EnvSecrets {
    pub fn new(env: Env) -> Self {
        Self { env }
    }
}

impl SecretSource for EnvSecrets {
    fn describe(&self) -> String {
        "environment (X or X_FILE)".to_owned()
    }

    fn get(&self, name: &SecretName) -> Result<Option<SecretString>, SecretError> {
        from_vars(&self.env, name, || self.describe())
    }
}

/// The `KEY=VALUE` file named by `server.secrets_file` (`init --secure` writes one). A key may
/// also be given as `X_FILE` there, as in the environment.
#[derive(Debug, Clone)]
pub struct SecretsFile {
    path: PathBuf,
    vars: Env,
}

impl SecretsFile {
    /// Reads the file now: a missing or malformed file is a configuration error at start.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        Ok(Self { path: path.to_owned(), vars: Env::read_secrets_file(path)? })
    }

    /// Every line of the file, secrets or not.
    pub(crate) fn vars(&self) -> &Env {
        &self.vars
    }
}

impl SecretSource for SecretsFile {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn get(&self, name: &SecretName) -> Result<Option<SecretString>, SecretError> {
        from_vars(&self.vars, name, || self.describe())
    }
}

/// Sources asked in order; the first that holds a secret wins.
pub struct SecretChain(pub Vec<Box<dyn SecretSource>>);

impl SecretChain {
    /// A secret that must be set: when no source holds it, the error names it and every
    /// place looked.
    pub fn require(&self, name: &SecretName) -> Result<SecretString, SecretError> {
        self.get(name)?.ok_or_else(|| SecretError::Missing {
            name: name.clone(),
            looked_in: self.0.iter().map(|s| s.describe_for(name)).collect(),
        })
    }

    /// A secret that is not itself secret once read (the admin username).
    pub(crate) fn get_plain(&self, name: &SecretName) -> Result<Option<String>, SecretError> {
        Ok(self.get(name)?.map(|s| s.expose_secret().to_owned()))
    }
}

impl SecretSource for SecretChain {
    fn describe(&self) -> String {
        self.0.iter().map(|s| s.describe()).collect::<Vec<_>>().join(", ")
    }

    fn describe_for(&self, name: &SecretName) -> String {
        self.0.iter().map(|s| s.describe_for(name)).collect::<Vec<_>>().join(", ")
    }

    fn get(&self, name: &SecretName) -> Result<Option<SecretString>, SecretError> {
        for source in &self.0 {
            if let Some(value) = source.get(name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

impl fmt::Debug for SecretChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|s| s.describe())).finish()
    }
}
