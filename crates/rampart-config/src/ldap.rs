//! `[auth] method` and `[auth.ldap]`: which identity provider checks logins of accounts not
//! yet known here, and how the directory is reached. Validated at load: every error names
//! its key; the bind password comes only from the secret chain (`RAMPART_LDAP_BIND_PASSWORD`).

use std::path::PathBuf;

use rampart_types::RoleName;
use secrecy::SecretString;
use serde::Deserialize;

use crate::{invalid, range, ConfigError, Env, SecretChain, SecretName};

/// `[auth] method`: the provider for a login by a name no account has yet. Existing
/// accounts always log in through their own source (`users.auth_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    #[default]
    Local,
    Ldap,
    /// OpenID Connect (`[auth.oidc]`): browser and API redirect flows, not a password.
    OAuth2,
}

impl AuthMethod {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        match text.trim() {
            "local" => Ok(Self::Local),
            "ldap" => Ok(Self::Ldap),
            "oauth2" => Ok(Self::OAuth2),
            _ => Err(invalid("auth.method", "expected local, ldap or oauth2")),
        }
    }
}

/// How the connection to the directory is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapTransport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with StartTLS before anything is sent (the default for `ldap://`).
    StartTls,
    /// `ldap://` in clear: only with `allow_insecure = true`, reported at start (and by `doctor`).
    Plain,
}

/// One `[[auth.ldap.role_map]]` entry: members of `group` (a DN) get `role`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapRoleMap {
    pub group: String,
    pub role: RoleName,
}

/// `[auth.ldap]`, validated.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldaps://HOST[:PORT]` or `ldap://HOST[:PORT]`.
    pub url: String,
    pub transport: LdapTransport,
    /// PEM file of the CA(s) that sign the directory's certificate; the system roots otherwise.
    pub ca_cert: Option<PathBuf>,
    /// The service account the provider searches as.
    pub bind_dn: String,
    /// Its password (`RAMPART_LDAP_BIND_PASSWORD`, `_FILE` or `.secrets`); `Debug` redacts it.
    pub bind_password: SecretString,
    pub user_base: String,
    /// With `{username}`: replaced by the login name, escaped per RFC 4515.
    pub user_filter: String,
    pub group_base: String,
    /// With `{dn}` (the user's DN) and/or `{username}`, each escaped per RFC 4515.
    pub group_filter: String,
    /// In order; the first group the user is a member of decides the role.
    pub role_map: Vec<LdapRoleMap>,
    /// The role of a user in none of the mapped groups; `None`: such a user is refused.
    pub default_role: Option<RoleName>,
    pub connect_timeout_secs: u64,
    /// Each bind and search.
    pub operation_timeout_secs: u64,
    /// Directory logins in flight at once; more wait (within the connect timeout) or get 503.
    pub max_connections: usize,
}

impl LdapConfig {
    /// Passwords cross the network in clear (`allow_insecure = true`).
    pub fn insecure(&self) -> bool {
        self.transport == LdapTransport::Plain
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileLdap {
    pub url: Option<String>,
    pub starttls: Option<bool>,
    pub allow_insecure: Option<bool>,
    pub ca_cert: Option<PathBuf>,
    pub bind_dn: Option<String>,
    /// Refused: the bind password comes from the secret chain.
    pub bind_password: Option<String>,
    pub user_base: Option<String>,
    pub user_filter: Option<String>,
    pub group_base: Option<String>,
    pub group_filter: Option<String>,
    #[serde(default)]
    pub role_map: Vec<FileRoleMap>,
    pub default_role: Option<String>,
    pub connect_timeout_secs: Option<u64>,
    pub operation_timeout_secs: Option<u64>,
    pub max_connections: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoleMap {
    pub group: String,
    pub role: String,
}

/// `auth.method` (`RAMPART_AUTH_METHOD` wins) and `[auth.ldap]`; a plain-LDAP opt-in adds a
/// warning to `warnings`.
pub(crate) fn auth_method_and_ldap(
    env: &Env,
    chain: &SecretChain,
    method: Option<String>,
    file: Option<FileLdap>,
    warnings: &mut Vec<String>,
) -> Result<(AuthMethod, Option<LdapConfig>), ConfigError> {
    let method = env.get("RAMPART_AUTH_METHOD").or(method).map_or(Ok(AuthMethod::Local), |m| AuthMethod::parse(&m))?;
    let ldap = file.map(|f| ldap(chain, f)).transpose()?;
    if method == AuthMethod::Ldap && ldap.is_none() {
        return Err(invalid("auth.ldap", "required with auth.method = \"ldap\""));
    }
    if ldap.as_ref().is_some_and(LdapConfig::insecure) {
        warnings.push(
            "auth.ldap: plain ldap:// without StartTLS (allow_insecure = true): directory passwords cross the network in clear"
                .to_owned(),
        );
    }
    Ok((method, ldap))
}

fn required(key: &str, value: Option<String>) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(invalid(key, "required in [auth.ldap]")),
    }
}

/// A search filter template: parenthesised, holding at least one of `placeholders`.
fn filter(key: &str, text: String, placeholders: &[&str]) -> Result<String, ConfigError> {
    let t = text.trim();
    if !(t.starts_with('(') && t.ends_with(')')) {
        return Err(invalid(key, "expected an LDAP filter in parentheses"));
    }
    if !placeholders.iter().any(|p| t.contains(p)) {
        return Err(invalid(key, format!("must contain {}", placeholders.join(" or "))));
    }
    Ok(t.to_owned())
}

fn role(key: &str, text: &str) -> Result<RoleName, ConfigError> {
    RoleName::parse(text.trim()).map_err(|e| invalid(key, e.to_string()))
}

fn ldap(chain: &SecretChain, f: FileLdap) -> Result<LdapConfig, ConfigError> {
    if f.bind_password.is_some() {
        return Err(invalid(
            "auth.ldap.bind_password",
            "put secrets in the environment: RAMPART_LDAP_BIND_PASSWORD (or _FILE, or the .secrets file)",
        ));
    }
    let url = required("auth.ldap.url", f.url)?;
    let lower = url.to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").unwrap_or(("", ""));
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '@', ' ']) {
        return Err(invalid("auth.ldap.url", "expected ldaps://HOST[:PORT] or ldap://HOST[:PORT]"));
    }
    let transport = match (scheme, f.starttls) {
        ("ldaps", None | Some(false)) => LdapTransport::Ldaps,
        ("ldaps", Some(true)) => {
            return Err(invalid("auth.ldap.starttls", "applies to ldap:// URLs; ldaps:// is TLS already"))
        }
        ("ldap", None | Some(true)) => LdapTransport::StartTls,
        ("ldap", Some(false)) if f.allow_insecure == Some(true) => LdapTransport::Plain,
        ("ldap", Some(false)) => {
            return Err(invalid(
                "auth.ldap.starttls",
                "plain ldap:// sends passwords in clear: use ldaps://, starttls = true, or opt in with allow_insecure = true",
            ))
        }
        _ => return Err(invalid("auth.ldap.url", "expected ldaps://HOST[:PORT] or ldap://HOST[:PORT]")),
    };
    if let Some(ca) = &f.ca_cert {
        if !ca.is_file() {
            return Err(invalid("auth.ldap.ca_cert", format!("{} is not a readable file", ca.display())));
        }
    }
    let role_map = f
        .role_map
        .into_iter()
        .map(|m| {
            let group = m.group.trim().to_owned();
            if group.is_empty() {
                return Err(invalid("auth.ldap.role_map.group", "expected a group DN"));
            }
            Ok(LdapRoleMap { group, role: role("auth.ldap.role_map.role", &m.role)? })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default_role = f.default_role.as_deref().map(|r| role("auth.ldap.default_role", r)).transpose()?;
    if role_map.is_empty() && default_role.is_none() {
        return Err(invalid("auth.ldap.role_map", "map at least one group to a role, or set default_role"));
    }
    let config = LdapConfig {
        url,
        transport,
        ca_cert: f.ca_cert,
        bind_dn: required("auth.ldap.bind_dn", f.bind_dn)?,
        bind_password: chain.require(&SecretName::LdapBindPassword)?,
        user_base: required("auth.ldap.user_base", f.user_base)?,
        user_filter: filter(
            "auth.ldap.user_filter",
            f.user_filter.unwrap_or_else(|| "(&(objectClass=inetOrgPerson)(uid={username}))".to_owned()),
            &["{username}"],
        )?,
        group_base: required("auth.ldap.group_base", f.group_base)?,
        group_filter: filter(
            "auth.ldap.group_filter",
            f.group_filter.unwrap_or_else(|| "(member={dn})".to_owned()),
            &["{dn}", "{username}"],
        )?,
        role_map,
        default_role,
        connect_timeout_secs: f.connect_timeout_secs.unwrap_or(5),
        operation_timeout_secs: f.operation_timeout_secs.unwrap_or(5),
        max_connections: f.max_connections.unwrap_or(16),
    };
    range("auth.ldap.connect_timeout_secs", config.connect_timeout_secs, 1, 60)?;
    range("auth.ldap.operation_timeout_secs", config.operation_timeout_secs, 1, 60)?;
    range("auth.ldap.max_connections", config.max_connections, 1, 1024)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::{Config, Overrides};

    const BIND_PASSWORD: &str = "Svc-Bind-Canary-7731";

    const BASE: &str = r#"
[auth]
method = "ldap"
[auth.ldap]
url = "ldaps://ldap.example.org"
bind_dn = "cn=rampart,ou=services,dc=example,dc=org"
user_base = "ou=people,dc=example,dc=org"
group_base = "ou=groups,dc=example,dc=org"
[[auth.ldap.role_map]]
group = "cn=admins,ou=groups,dc=example,dc=org"
role = "admin"
[[auth.ldap.role_map]]
group = "cn=staff,ou=groups,dc=example,dc=org"
role = "editor"
"#;

    fn load(toml: &str, with_password: bool) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("rampart.toml");
        std::fs::write(&path, toml).expect("write");
        let vars: Vec<(String, String)> = if with_password {
            vec![("RAMPART_LDAP_BIND_PASSWORD".to_owned(), BIND_PASSWORD.to_owned())]
        } else {
            vec![]
        };
        Config::load(&Env::from_pairs(vars), &Overrides { config: Some(path), ..Overrides::default() })
    }

    fn refused(toml: &str) -> String {
        load(toml, true).map(|_| ()).expect_err("refused").to_string()
    }

    #[test]
    fn ldap_settings_load_with_secure_defaults_and_the_role_map_in_order() {
        let c = load(BASE, true).expect("config");
        assert_eq!(c.auth.method, AuthMethod::Ldap);
        let l = c.auth.ldap.expect("ldap");
        assert_eq!(l.transport, LdapTransport::Ldaps);
        assert!(!l.insecure());
        assert_eq!(l.bind_password.expose_secret(), BIND_PASSWORD);
        assert_eq!(l.user_filter, "(&(objectClass=inetOrgPerson)(uid={username}))");
        assert_eq!(l.group_filter, "(member={dn})");
        let roles: Vec<_> = l.role_map.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["admin", "editor"]);
        assert_eq!(l.default_role, None);
        let starttls = load(&BASE.replace("ldaps://", "ldap://"), true).expect("starttls by default");
        assert_eq!(starttls.auth.ldap.expect("ldap").transport, LdapTransport::StartTls);
        assert!(starttls.warnings.is_empty(), "{:?}", starttls.warnings);
        // Without an [auth] section nothing changes: local login.
        assert_eq!(Config::for_data_dir(std::path::Path::new("/x")).expect("defaults").auth.method, AuthMethod::Local);
    }

    #[test]
    fn plain_ldap_is_refused_without_the_explicit_opt_in_and_reported_with_it() {
        let plain = BASE.replace("ldaps://ldap.example.org\"", "ldap://ldap.example.org\"\nstarttls = false");
        let e = refused(&plain);
        assert!(e.contains("auth.ldap.starttls") && e.contains("allow_insecure"), "{e}");
        let c =
            load(&plain.replace("starttls = false", "starttls = false\nallow_insecure = true"), true).expect("opt-in");
        let l = c.auth.ldap.expect("ldap");
        assert_eq!(l.transport, LdapTransport::Plain);
        assert!(l.insecure(), "recorded for doctor");
        assert!(c.warnings.iter().any(|w| w.contains("auth.ldap") && w.contains("clear")), "{:?}", c.warnings);
        // An opt-in does not weaken a TLS URL.
        let tls = load(&BASE.replace("[auth.ldap]", "[auth.ldap]\nallow_insecure = true"), true).expect("ldaps");
        assert_eq!(tls.auth.ldap.expect("ldap").transport, LdapTransport::Ldaps);
    }

    #[test]
    fn invalid_ldap_settings_name_their_key() {
        let cases = [
            (BASE.replace("ldaps://ldap.example.org", "https://ldap.example.org"), "auth.ldap.url"),
            (BASE.replace("ldaps://ldap.example.org", "ldaps://"), "auth.ldap.url"),
            (BASE.replace("ldaps://ldap.example.org", "ldaps://h/dc=x"), "auth.ldap.url"),
            (BASE.replace("[auth.ldap]", "[auth.ldap]\nstarttls = true"), "auth.ldap.starttls"),
            (BASE.replace("bind_dn = ", "#"), "auth.ldap.bind_dn"),
            (BASE.replace("user_base = ", "#"), "auth.ldap.user_base"),
            (BASE.replace("group_base = ", "#"), "auth.ldap.group_base"),
            (BASE.replace("[auth.ldap]", "[auth.ldap]\nuser_filter = \"(uid=alice)\""), "auth.ldap.user_filter"),
            (BASE.replace("[auth.ldap]", "[auth.ldap]\nuser_filter = \"uid={username}\""), "auth.ldap.user_filter"),
            (BASE.replace("[auth.ldap]", "[auth.ldap]\ngroup_filter = \"(member=x)\""), "auth.ldap.group_filter"),
            (BASE.replace("role = \"editor\"", "role = \"Bad Role\""), "auth.ldap.role_map.role"),
            (BASE.replace("[auth.ldap]", "[auth.ldap]\ndefault_role = \"\""), "auth.ldap.default_role"),
            (
                BASE.replace("[auth.ldap]", "[auth.ldap]\noperation_timeout_secs = 0"),
                "auth.ldap.operation_timeout_secs",
            ),
            (BASE.replace("[auth.ldap]", "[auth.ldap]\nca_cert = \"/no/such/ca.pem\""), "auth.ldap.ca_cert"),
            (BASE.replace("method = \"ldap\"", "method = \"kerberos\""), "auth.method"),
            (BASE.split("[auth.ldap]").next().unwrap_or_default().to_owned(), "auth.ldap"),
        ];
        for (toml, key) in cases {
            let e = refused(&toml);
            assert!(e.contains(key), "{key}: {e}");
        }
        let no_roles: String = BASE.split("[[auth.ldap.role_map]]").next().unwrap_or_default().to_owned();
        assert!(refused(&no_roles).contains("auth.ldap.role_map"));
        let with_default = format!("{}\ndefault_role = \"viewer\"\n", no_roles.trim_end());
        assert_eq!(
            load(&with_default, true)
                .expect("default role")
                .auth
                .ldap
                .and_then(|l| l.default_role)
                .map(|r| r.to_string())
                .as_deref(),
            Some("viewer")
        );
    }

    #[test]
    fn the_bind_password_comes_only_from_the_secret_chain_and_is_never_printed() {
        let in_file = BASE.replace("[auth.ldap]", &format!("[auth.ldap]\nbind_password = \"{BIND_PASSWORD}\""));
        let e = refused(&in_file);
        assert!(e.contains("RAMPART_LDAP_BIND_PASSWORD") && !e.contains(BIND_PASSWORD), "{e}");
        let missing = load(BASE, false).map(|_| ()).expect_err("missing").to_string();
        assert!(missing.contains("RAMPART_LDAP_BIND_PASSWORD"), "{missing}");
        let c = load(BASE, true).expect("config");
        assert!(!format!("{c:?}").contains(BIND_PASSWORD));
    }
}
