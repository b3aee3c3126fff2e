//! `[secrets.vault]`: where the Vault/OpenBao source is and how it logs in. The settings
//! come from `rampart.toml` and `RAMPART_VAULT_*`; the credentials (token, AppRole ids) are
//! secrets, resolved from the environment / `_FILE` / `.secrets` file, never from the file.

use std::net::IpAddr;
use std::path::PathBuf;

use secrecy::SecretString;

use crate::file::FileVault;
use crate::{invalid, ConfigError, Env, SecretChain, SecretName, SecretSource};

/// Where the Vault/OpenBao server is and how to log in to it. `Debug` never shows a credential.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// `https://HOST[:PORT]` (`http://` only on a loopback address), no path.
    pub address: String,
    /// PEM file of the CA that signed Vault's certificate (else the public web roots).
    pub ca_cert: Option<PathBuf>,
    /// The KV version 2 mount (default `secret`).
    pub mount: String,
    /// The folder under the mount holding Rampart's secrets (default `rampart`).
    pub path_prefix: String,
    pub auth: VaultAuth,
    /// Longest wait for one request to Vault.
    pub timeout_secs: u64,
}

impl VaultSettings {
    /// `secret/data/rampart`: the API path every secret is read under (for messages too).
    pub fn data_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path_prefix)
    }
}

/// How Rampart proves who it is to Vault.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token given to Rampart (`RAMPART_VAULT_TOKEN`).
    Token(SecretString),
    /// `auth/<mount>/login` with `RAMPART_VAULT_ROLE_ID` and `RAMPART_VAULT_SECRET_ID`.
    AppRole { mount: String, role_id: SecretString, secret_id: SecretString },
    /// `auth/<mount>/login` with the pod's service-account JWT, read from `token_path`.
    Kubernetes { mount: String, role: String, token_path: PathBuf },
}

impl VaultAuth {
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::AppRole { .. } => "approle",
            VaultAuth::Kubernetes { .. } => "kubernetes",
        }
    }
}

pub(crate) const DEFAULT_K8S_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// `[secrets.vault]` with its `RAMPART_VAULT_*` overrides; `None` when no address is set.
/// `chain` holds the sources below Vault (environment, `.secrets` file) for the credentials.
pub(crate) fn settings(
    env: &Env,
    chain: &SecretChain,
    file: Option<&FileVault>,
) -> Result<Option<VaultSettings>, ConfigError> {
    let empty = FileVault::default();
    let f = file.unwrap_or(&empty);
    let pick = |var: &str, value: &Option<String>| env.get(var).or_else(|| value.clone());
    let Some(address) = pick("RAMPART_VAULT_ADDR", &f.address) else {
        if file.is_some() {
            return Err(invalid("secrets.vault.address", "required in [secrets.vault] (or RAMPART_VAULT_ADDR)"));
        }
        return Ok(None);
    };
    let address = parse_address(&address)?;
    let mount = pick("RAMPART_VAULT_MOUNT", &f.mount).unwrap_or_else(|| "secret".to_owned());
    check_path("secrets.vault.mount", &mount)?;
    let path_prefix = pick("RAMPART_VAULT_PATH_PREFIX", &f.path_prefix).unwrap_or_else(|| "rampart".to_owned());
    check_path("secrets.vault.path_prefix", &path_prefix)?;
    let path = |var: &str, value: &Option<PathBuf>| env.get(var).map(PathBuf::from).or_else(|| value.clone());
    let ca_cert = path("RAMPART_VAULT_CA_CERT", &f.ca_cert);
    let timeout_secs = env.parse_num("RAMPART_VAULT_TIMEOUT_SECS")?.or(f.timeout_secs).unwrap_or(10);
    crate::range("secrets.vault.timeout_secs", timeout_secs, 1, 300)?;
    let credential = |name: SecretName, method: &str| {
        chain.get(&name)?.ok_or_else(|| {
            invalid(
                "secrets.vault.auth",
                format!("auth = \"{method}\" needs {name} (or {name}_FILE, or the .secrets file)"),
            )
        })
    };
    let auth = match pick("RAMPART_VAULT_AUTH", &f.auth).as_deref().map(str::trim).unwrap_or("token") {
        "token" => VaultAuth::Token(credential(SecretName::VaultToken, "token")?),
        "approle" => {
            let mount = pick("RAMPART_VAULT_APPROLE_MOUNT", &f.approle_mount).unwrap_or_else(|| "approle".to_owned());
            check_path("secrets.vault.approle_mount", &mount)?;
            VaultAuth::AppRole {
                mount,
                role_id: credential(SecretName::VaultRoleId, "approle")?,
                secret_id: credential(SecretName::VaultSecretId, "approle")?,
            }
        }
        "kubernetes" => {
            let mount =
                pick("RAMPART_VAULT_KUBERNETES_MOUNT", &f.kubernetes_mount).unwrap_or_else(|| "kubernetes".to_owned());
            check_path("secrets.vault.kubernetes_mount", &mount)?;
            let role = pick("RAMPART_VAULT_KUBERNETES_ROLE", &f.kubernetes_role)
                .ok_or_else(|| invalid("secrets.vault.kubernetes_role", "required with auth = \"kubernetes\""))?;
            check_path("secrets.vault.kubernetes_role", &role)?;
            let token_path = path("RAMPART_VAULT_KUBERNETES_TOKEN_PATH", &f.kubernetes_token_path)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_K8S_TOKEN_PATH));
            VaultAuth::Kubernetes { mount, role, token_path }
        }
        _ => return Err(invalid("secrets.vault.auth", "expected token, approle or kubernetes")),
    };
    Ok(Some(VaultSettings { address, ca_cert, mount, path_prefix, auth, timeout_secs }))
}

/// `http(s)://HOST[:PORT]` with no user, path, query or fragment; plain HTTP only to a
/// loopback address (a token would cross the network in clear text otherwise).
fn parse_address(text: &str) -> Result<String, ConfigError> {
    const KEY: &str = "secrets.vault.address";
    let text = text.trim();
    let (https, rest) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(invalid(KEY, "expected https://HOST:PORT")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(invalid(KEY, "expected https://HOST:PORT (no user, path or query)"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(|| invalid(KEY, "unclosed [ in the address"))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err(invalid(KEY, "expected https://HOST:PORT"));
    }
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !https && !loopback {
        return Err(invalid(KEY, "https is required (plain http only to a loopback address)"));
    }
    Ok(format!("{}://{authority}", if https { "https" } else { "http" }))
}

/// A mount, prefix or role: path segments of letters, digits, `_`, `-` and `.`.
fn check_path(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(key, "expected path segments of letters, digits, '_', '-' or '.' separated by '/'"))
    }
}
