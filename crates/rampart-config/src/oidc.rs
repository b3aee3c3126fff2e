//! `[auth.oidc]`: OpenID Connect login. The client secret is never read from the file: it
//! comes through the secret chain as `RAMPART_OIDC_CLIENT_SECRET` (or `_FILE`, or Vault).

use std::path::PathBuf;

use rampart_types::RoleName;
use secrecy::SecretString;
use serde::Deserialize;

use crate::{invalid, ConfigError, SecretChain, SecretName};

/// The path our callback must have (`redirect_url` names it on the public host).
pub const OIDC_CALLBACK_PATH: &str = "/api/v1/auth/oidc/callback";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOidc {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// Refused: secrets do not belong in the config file.
    pub client_secret: Option<String>,
    pub redirect_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub username_claim: Option<String>,
    pub role_claim: Option<String>,
    #[serde(default)]
    pub role_map: Vec<FileRoleMap>,
    pub default_role: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub browser_redirect: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoleMap {
    pub value: String,
    pub role: String,
}

/// A validated `[auth.oidc]`. `Debug` redacts the client secret (secrecy's implementation).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the provider's discovery document names it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// Our callback on the public host: `https://<host>/api/v1/auth/oidc/callback`.
    pub redirect_url: String,
    /// Always includes `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim a new user's name is taken from (default `preferred_username`).
    pub username_claim: String,
    /// The ID token claim (a string or a list of strings) roles are mapped from.
    pub role_claim: Option<String>,
    /// First match wins: a claim value and the role it gives.
    pub role_map: Vec<(String, RoleName)>,
    /// The role when nothing matches; `None`: such logins are refused.
    pub default_role: Option<RoleName>,
    /// A PEM file of CA certificates the provider's TLS certificate is checked against
    /// (besides the public roots).
    pub ca_cert: Option<PathBuf>,
    /// Where a browser lands after a cookie-mode login: a path on this host.
    pub browser_redirect: String,
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `scheme://host[:port]rest` split into (scheme, host, rest); `None` when not an http(s)
/// URL with a host, a valid port and no credentials.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    if !matches!(scheme, "https" | "http") {
        return None;
    }
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, p) = v6.split_once(']')?;
            (&authority[..h.len() + 2], p.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return None;
    }
    Some((scheme, host, rest))
}

/// `https://` everywhere; `http://` only to a loopback host.
fn secure_url(key: &str, url: &str) -> Result<(), ConfigError> {
    match split_url(url) {
        Some(("https", _, _)) => Ok(()),
        Some(("http", host, _)) if is_loopback_host(host) => Ok(()),
        Some(_) => Err(invalid(key, "must use https:// (plain http only to a loopback host)")),
        None => Err(invalid(key, "must be an absolute http(s) URL without credentials")),
    }
}

fn required(key: &str, v: Option<String>) -> Result<String, ConfigError> {
    match v {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(invalid(key, "is required when [auth.oidc] is configured")),
    }
}

pub(crate) fn oidc_config(file: Option<FileOidc>, chain: &SecretChain) -> Result<Option<OidcConfig>, ConfigError> {
    let Some(f) = file else { return Ok(None) };
    if f.client_secret.is_some() {
        return Err(invalid(
            "auth.oidc.client_secret",
            "secrets do not belong in the config file: set RAMPART_OIDC_CLIENT_SECRET (or _FILE, or Vault)",
        ));
    }
    let issuer = required("auth.oidc.issuer", f.issuer)?;
    secure_url("auth.oidc.issuer", &issuer)?;
    let client_id = required("auth.oidc.client_id", f.client_id)?;
    let redirect_url = required("auth.oidc.redirect_url", f.redirect_url)?;
    secure_url("auth.oidc.redirect_url", &redirect_url)?;
    if split_url(&redirect_url).is_none_or(|(_, _, path)| path != OIDC_CALLBACK_PATH) {
        return Err(invalid("auth.oidc.redirect_url", format!("must be https://<host>{OIDC_CALLBACK_PATH}")));
    }
    let scopes = f.scopes.unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(invalid("auth.oidc.scopes", "must include openid"));
    }
    if scopes.iter().any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')) {
        return Err(invalid("auth.oidc.scopes", "each scope is a non-empty word of visible ASCII"));
    }
    let username_claim = f.username_claim.unwrap_or_else(|| "preferred_username".into());
    if username_claim.is_empty() {
        return Err(invalid("auth.oidc.username_claim", "must not be empty"));
    }
    let role_map = f
        .role_map
        .into_iter()
        .map(|m| {
            let role = RoleName::parse(&m.role).map_err(|e| invalid("auth.oidc.role_map.role", e.to_string()))?;
            Ok((m.value, role))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    if !role_map.is_empty() && f.role_claim.is_none() {
        return Err(invalid("auth.oidc.role_claim", "is required when auth.oidc.role_map is given"));
    }
    let default_role = f
        .default_role
        .map(|r| RoleName::parse(&r).map_err(|e| invalid("auth.oidc.default_role", e.to_string())))
        .transpose()?;
    if role_map.is_empty() && default_role.is_none() {
        return Err(invalid("auth.oidc", "give auth.oidc.role_map or auth.oidc.default_role: nobody could log in"));
    }
    let browser_redirect = f.browser_redirect.unwrap_or_else(|| "/".into());
    // A path on this host only: never another site (an open redirect).
    if !browser_redirect.starts_with('/')
        || browser_redirect.starts_with("//")
        || browser_redirect.contains('\\')
        || browser_redirect.chars().any(char::is_control)
    {
        return Err(invalid("auth.oidc.browser_redirect", "must be a path on this host, like /app/"));
    }
    if let Some(p) = &f.ca_cert {
        if !p.is_file() {
            return Err(invalid("auth.oidc.ca_cert", format!("{} is not a readable file", p.display())));
        }
    }
    let client_secret = chain.require(&SecretName::OidcClientSecret)?;
    Ok(Some(OidcConfig {
        issuer,
        client_id,
        client_secret,
        redirect_url,
        scopes,
        username_claim,
        role_claim: f.role_claim,
        role_map,
        default_role,
        ca_cert: f.ca_cert,
        browser_redirect,
    }))
}
