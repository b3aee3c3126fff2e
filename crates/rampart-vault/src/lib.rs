//! The HashiCorp Vault / OpenBao secret source (SPEC §2: Vault → environment / `_FILE` →
//! `.secrets` file → defaults).
//!
//! [`Vault::connect`] logs in (token, AppRole or Kubernetes) and [`Vault::snapshot`] reads
//! every secret the configuration needs from KV version 2, before the configuration is
//! resolved: `SecretSource::get` is synchronous, so the chain is given an in-memory
//! [`VaultSecrets`] placed first. A secret `RAMPART_X` is read at
//! `<mount>/data/<path_prefix>/x`, field `value` ([`kv_name`]). A path that does not exist
//! is "not here" (the next source is asked); anything else (refused, sealed, unreachable,
//! bad credentials) is an error naming the address, never a credential.
//!
//! [`Vault::keep_alive`] renews the client token at about two thirds of its TTL, with a
//! bounded backoff on failure, and logs in again (AppRole, Kubernetes) when renewal is
//! refused.
//!
//! The client is `vaultrs` 0.7 (rustls on ring through reqwest 0.12, the workspace's HTTP
//! stack). Every setting of its client is given explicitly, so none of its `VAULT_*`
//! environment defaults (`VAULT_SKIP_VERIFY` among them) applies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rampart_config::{SecretError, SecretName, SecretSource, VaultAuth, VaultSettings};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// A failure talking to Vault. The message names the address and what was asked; it
/// never holds a token, role_id, secret_id or service-account JWT.
#[derive(Debug, thiserror::Error)]
#[error("vault {address}: {what}")]
pub struct VaultError {
    address: String,
    what: String,
    /// The server answered and said no (4xx): retrying the same request will not help.
    refused: bool,
}

/// How long the client token lives, as Vault last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Seconds; 0: the token does not expire (a root token).
    pub ttl_secs: u64,
    pub renewable: bool,
}

/// A logged-in client of one Vault/OpenBao server.
pub struct Vault {
    settings: VaultSettings,
    client: RwLock<VaultClient>,
    first_lease: Lease,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // VaultClient's own Debug would print the token.
        f.debug_struct("Vault").field("address", &self.settings.address).field("auth", &self.settings.auth).finish()
    }
}

/// The KV name of a secret: its variable without `RAMPART_`, lower-cased
/// (`RAMPART_ENCRYPTION_KEY` → `encryption_key`, a webhook's `OPS_HOOK_SECRET` →
/// `ops_hook_secret`). `None` for a name that cannot be a path segment.
pub fn kv_name(name: &SecretName) -> Option<String> {
    let var = name.env_var();
    let key = var.strip_prefix("RAMPART_").unwrap_or(var).to_ascii_lowercase();
    let ok = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    ok.then_some(key)
}

impl Vault {
    /// Builds the client and logs in; a token given as such is checked (`lookup-self`).
    pub async fn connect(settings: &VaultSettings) -> Result<Arc<Self>, VaultError> {
        let s = settings.clone();
        // Reading the CA file is blocking work.
        let client = tokio::task::spawn_blocking(move || build_client(&s))
            .await
            .map_err(|_| failure(settings, "the client could not be built".to_owned(), false))??;
        let mut vault = Self {
            settings: settings.clone(),
            client: RwLock::new(client),
            first_lease: Lease { ttl_secs: 0, renewable: false },
        };
        vault.first_lease = vault.login().await?;
        Ok(Arc::new(vault))
    }

    pub fn address(&self) -> &str {
        &self.settings.address
    }

    /// The token's lease as given at connect.
    pub fn first_lease(&self) -> Lease {
        self.first_lease
    }

    /// Reads each secret `names` lists (Vault's own credentials excepted): one request each.
    pub async fn snapshot(&self, names: &[SecretName]) -> Result<VaultSecrets, VaultError> {
        let s = &self.settings;
        let client = self.client.read().await;
        let mut values = HashMap::new();
        for name in names.iter().filter(|n| n.kept_in_vault()) {
            let key = kv_name(name)
                .ok_or_else(|| self.failure(format!("{name} cannot be named as a path in Vault"), false))?;
            let path = format!("{}/{key}", s.path_prefix);
            let shown = format!("{}/{key}", s.data_path());
            match vaultrs::kv2::read::<serde_json::Value>(&*client, &s.mount, &path).await {
                Ok(data) => {
                    let value = data.get("value").and_then(serde_json::Value::as_str).ok_or_else(|| {
                        self.failure(format!("{shown} has no text field \"value\" (for {name})"), false)
                    })?;
                    values.insert(name.env_var().to_owned(), SecretString::from(value.to_owned()));
                }
                // Not there: the environment and the `.secrets` file are asked next.
                Err(ClientError::APIError { code: 404, .. }) => {}
                Err(e) => return Err(self.error(&format!("cannot read {shown}"), &e)),
            }
        }
        Ok(VaultSecrets { address: s.address.clone(), data_path: s.data_path(), values })
    }

    /// Asks Vault about the client token (`auth/token/lookup-self`): it answers only while
    /// the token is valid.
    pub async fn lookup_self(&self) -> Result<Lease, VaultError> {
        let client = self.client.read().await;
        let info = vaultrs::token::lookup_self(&*client)
            .await
            .map_err(|e| self.error("cannot check the token (auth/token/lookup-self)", &e))?;
        Ok(Lease { ttl_secs: info.ttl, renewable: info.renewable })
    }

    /// `auth/token/renew-self`.
    pub async fn renew(&self) -> Result<Lease, VaultError> {
        let client = self.client.read().await;
        let info = vaultrs::token::renew_self(&*client, None)
            .await
            .map_err(|e| self.error("cannot renew the token (auth/token/renew-self)", &e))?;
        Ok(Lease { ttl_secs: info.lease_duration, renewable: info.renewable })
    }

    /// Logs in with the configured method (a given token: checks it) and keeps the token.
    pub async fn login(&self) -> Result<Lease, VaultError> {
        let info = match &self.settings.auth {
            VaultAuth::Token(_) => return self.lookup_self().await,
            VaultAuth::AppRole { mount, role_id, secret_id } => {
                let mut client = self.client.write().await;
                // A stale token must not ride along with the login.
                client.set_token("");
                vaultrs::auth::approle::login(&*client, mount, role_id.expose_secret(), secret_id.expose_secret())
                    .await
                    .map_err(|e| self.error(&format!("AppRole login at auth/{mount}/login failed"), &e))?
            }
            VaultAuth::Kubernetes { mount, role, token_path } => {
                // Read at every login: Kubernetes rotates projected service-account tokens.
                let jwt = tokio::fs::read_to_string(token_path).await.map_err(|e| {
                    self.failure(
                        format!(
                            "cannot read the Kubernetes service-account token {}: {}",
                            token_path.display(),
                            e.kind()
                        ),
                        false,
                    )
                })?;
                let jwt = SecretString::from(jwt.trim().to_owned());
                let mut client = self.client.write().await;
                client.set_token("");
                vaultrs::auth::kubernetes::login(&*client, mount, role, jwt.expose_secret()).await.map_err(|e| {
                    self.error(&format!("Kubernetes login at auth/{mount}/login (role {role}) failed"), &e)
                })?
            }
        };
        if !valid_token(&info.client_token) {
            return Err(self.failure("the login answered no usable token".to_owned(), true));
        }
        self.client.write().await.set_token(&info.client_token);
        Ok(Lease { ttl_secs: info.lease_duration, renewable: info.renewable })
    }

    /// Keeps the client token alive in the background, when it expires at all: renewed at
    /// about 2/3 of its TTL; after a failure, tried again after 2, 4, 8 … 60 seconds; a
    /// refused renewal, a token that cannot be renewed or one near its maximum TTL means a
    /// new login for AppRole and Kubernetes. Logged with the address and TTL, never the token.
    pub fn keep_alive(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let lease = self.first_lease;
        let relogin = !matches!(self.settings.auth, VaultAuth::Token(_));
        if lease.ttl_secs == 0 || !(lease.renewable || relogin) {
            return None;
        }
        let vault = Arc::clone(self);
        Some(tokio::spawn(async move { vault.renewal_loop(lease, relogin).await }))
    }

    async fn renewal_loop(&self, mut lease: Lease, relogin: bool) {
        let address = self.address().to_owned();
        let mut failures: u32 = 0;
        loop {
            let wait = if failures == 0 {
                Duration::from_millis(lease.ttl_secs.saturating_mul(2000) / 3).max(Duration::from_secs(1))
            } else {
                Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
            };
            tokio::time::sleep(wait).await;
            let renewed = if lease.renewable {
                self.renew().await
            } else {
                Err(self.failure("the token cannot be renewed".to_owned(), true))
            };
            let result = match renewed {
                Err(e) if e.refused && relogin => {
                    tracing::info!(%address, reason = %e, "vault token not renewed; logging in again");
                    self.login().await
                }
                // Renewed, but close to its maximum TTL: a new login before it runs out.
                Ok(l) if relogin && l.ttl_secs.saturating_mul(2) < self.first_lease.ttl_secs => {
                    tracing::info!(%address, ttl_secs = l.ttl_secs, "vault token near its maximum TTL; logging in again");
                    self.login().await
                }
                other => other,
            };
            match result {
                Ok(new) => {
                    failures = 0;
                    lease = new;
                    tracing::info!(%address, ttl_secs = lease.ttl_secs, "vault token renewed");
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(%address, error = %e, failures, "vault token renewal failed; trying again");
                }
            }
        }
    }

    fn failure(&self, what: String, refused: bool) -> VaultError {
        failure(&self.settings, what, refused)
    }

    /// `what` failed because of `e`, in words: Vault's own error messages, a status that
    /// says what it means, or why the server could not be reached.
    fn error(&self, what: &str, e: &ClientError) -> VaultError {
        let (detail, refused) = match e {
            ClientError::APIError { code, errors } => {
                let meaning = match code {
                    400 => "bad request",
                    401 | 403 => "permission denied",
                    404 => "not found",
                    429 | 472 | 473 | 503 => "unavailable (sealed or standby)",
                    500..=599 => "server error",
                    _ => "refused",
                };
                let said = if errors.is_empty() { String::new() } else { format!(": {}", errors.join("; ")) };
                (format!("HTTP {code}, {meaning}{said}"), (400..500).contains(code))
            }
            ClientError::RestClientError { source } => (format!("cannot reach the server: {}", chain(source)), false),
            other => (chain(other), false),
        };
        self.failure(format!("{what} ({detail})"), refused)
    }
}

fn failure(settings: &VaultSettings, what: String, refused: bool) -> VaultError {
    VaultError { address: settings.address.clone(), what: scrub(settings, what), refused }
}

/// Removes every credential from a message (defence in depth: none is ever formatted in).
fn scrub(settings: &VaultSettings, mut text: String) -> String {
    let credentials: Vec<&str> = match &settings.auth {
        VaultAuth::Token(t) => vec![t.expose_secret()],
        VaultAuth::AppRole { role_id, secret_id, .. } => vec![role_id.expose_secret(), secret_id.expose_secret()],
        VaultAuth::Kubernetes { .. } => vec![],
    };
    for c in credentials.into_iter().filter(|c| c.len() >= 4) {
        text = text.replace(c, "[REDACTED]");
    }
    text
}

/// An error and its causes, one after another.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A token the HTTP header can carry (vaultrs would panic on anything else).
fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fn build_client(s: &VaultSettings) -> Result<VaultClient, VaultError> {
    let token = match &s.auth {
        VaultAuth::Token(t) if !valid_token(t.expose_secret()) => {
            return Err(failure(s, "RAMPART_VAULT_TOKEN is not a token (empty or unexpected characters)".into(), true))
        }
        VaultAuth::Token(t) => t.expose_secret().to_owned(),
        _ => String::new(),
    };
    let ca_certs = match &s.ca_cert {
        Some(path) => {
            let text = path.to_str().ok_or_else(|| failure(s, "secrets.vault.ca_cert is not UTF-8".into(), false))?;
            if !path.is_file() {
                return Err(failure(s, format!("cannot read secrets.vault.ca_cert {}", path.display()), false));
            }
            vec![text.to_owned()]
        }
        None => Vec::new(),
    };
    // vaultrs panics on an address it cannot parse: the configuration checked its shape,
    // this checks it the way vaultrs will.
    url::Url::parse(&s.address).map_err(|_| failure(s, "secrets.vault.address is not a URL".into(), false))?;
    let settings = VaultClientSettingsBuilder::default()
        .address(&s.address)
        .token(token)
        .ca_certs(ca_certs)
        .identity(None)
        .verify(true)
        .timeout(Some(Duration::from_secs(s.timeout_secs)))
        .namespace(None)
        .build()
        .map_err(|e| failure(s, format!("invalid client settings: {e}"), false))?;
    VaultClient::new(settings).map_err(|e| failure(s, format!("cannot build the client: {}", chain(&e)), false))
}

/// The secrets read from Vault at start, first in the `SecretChain`.
pub struct VaultSecrets {
    address: String,
    data_path: String,
    values: HashMap<String, SecretString>,
}

impl VaultSecrets {
    /// How many secrets Vault held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl SecretSource for VaultSecrets {
    fn describe(&self) -> String {
        format!("vault {} {}/<name>", self.address, self.data_path)
    }

    fn describe_for(&self, name: &SecretName) -> String {
        match kv_name(name) {
            Some(key) if name.kept_in_vault() => format!("vault {} {}/{key}", self.address, self.data_path),
            _ => self.describe(),
        }
    }

    fn get(&self, name: &SecretName) -> Result<Option<SecretString>, SecretError> {
        Ok(self.values.get(name.env_var()).cloned())
    }
}

impl std::fmt::Debug for VaultSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("VaultSecrets").field("source", &self.describe()).field("names", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_maps_to_its_variable_without_the_prefix_lower_cased() {
        assert_eq!(kv_name(&SecretName::EncryptionKey).as_deref(), Some("encryption_key"));
        assert_eq!(kv_name(&SecretName::AdminPassword).as_deref(), Some("admin_password"));
        assert_eq!(kv_name(&SecretName::WebhookSecretEnv("OPS_HOOK".into())).as_deref(), Some("ops_hook"));
        assert_eq!(kv_name(&SecretName::WebhookSecretEnv("RAMPART_HOOK".into())).as_deref(), Some("hook"));
        assert_eq!(kv_name(&SecretName::WebhookSecretEnv("../X".into())), None);
    }
}
