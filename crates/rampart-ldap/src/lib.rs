//! The LDAP adapter of core's `IdentityProvider` port: `LdapIdentity` checks a login
//! against a directory (OpenLDAP, Active Directory, ...) over LDAPS or StartTLS (plain LDAP
//! only with `allow_insecure`), with `ldap3` on rustls.
//!
//! One connection per login, at most `max_connections` at once, each operation under a
//! timeout. Flow: service bind → search the user (`user_filter`, the login name escaped
//! per RFC 4515) → exactly one entry → group search (`group_filter`) → bind as the user
//! with the given password (never empty: an empty simple bind is an anonymous bind that
//! "succeeds") → the first `role_map` group the user is in gives the role (else
//! `default_role`, else refused). The answer is `Verdict::External`; core provisions the
//! local account. A directory that cannot be reached, times out or refuses the service
//! account is `CoreError::IdentityProviderUnavailable` (503): never a verdict, never a
//! fallback.

mod escape;

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions, StdStream};
use rampart_config::{LdapConfig, LdapTransport};
use rampart_core::{CoreError, CoreResult, ExternalIdentity, IdentityProvider, Verdict};
use rampart_types::{AuthSource, RoleName, Timestamp, Username};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

pub use escape::{dn_value, fill_filter, filter_value};

/// Longest login name sent to the directory.
const MAX_LOGIN_NAME: usize = 256;
/// Most groups read for one user; more is refused rather than mapped from a partial list.
const MAX_GROUPS: i32 = 1000;
/// LDAP result codes this adapter tells apart.
const RC_SUCCESS: u32 = 0;
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
const RC_INVALID_CREDENTIALS: u32 = 49;

/// Why the provider could not be set up from its configuration (at start).
#[derive(Debug, thiserror::Error)]
pub enum LdapSetupError {
    #[error("auth.ldap.ca_cert: cannot read certificates from {path}: {reason}")]
    CaCert { path: String, reason: String },
    #[error("auth.ldap: cannot build the TLS client: {0}")]
    Tls(String),
}

/// Why the directory could not answer; reaches the server log only (as the source of
/// `IdentityProviderUnavailable`), never the client. Holds no password.
#[derive(Debug, thiserror::Error)]
#[error("LDAP directory unavailable: {0}")]
pub struct DirectoryUnavailable(String);

fn unavailable(what: impl std::fmt::Display) -> CoreError {
    CoreError::IdentityProviderUnavailable(Box::new(DirectoryUnavailable(what.to_string())))
}

pub struct LdapIdentity {
    config: LdapConfig,
    tls: Arc<ClientConfig>,
    permits: Semaphore,
}

impl std::fmt::Debug for LdapIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapIdentity").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl LdapIdentity {
    /// Reads `ca_cert` (or the system's roots) now: a bad file fails the start.
    pub fn new(config: &LdapConfig) -> Result<Self, LdapSetupError> {
        let mut roots = RootCertStore::empty();
        match &config.ca_cert {
            Some(path) => {
                let bad = |reason: String| LdapSetupError::CaCert { path: path.display().to_string(), reason };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| bad(e.to_string()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                if certs.is_empty() {
                    return Err(bad("no PEM certificate in it".to_owned()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| bad(e.to_string()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| LdapSetupError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { config: config.clone(), tls: Arc::new(tls), permits: Semaphore::new(config.max_connections) })
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.config.connect_timeout_secs)
    }

    fn op_timeout(&self) -> Duration {
        Duration::from_secs(self.config.operation_timeout_secs)
    }

    /// The role of a member of `groups` (DNs), by `role_map` order, else `default_role`.
    fn map_role(&self, groups: &[String]) -> Option<RoleName> {
        let groups: Vec<String> = groups.iter().map(|g| normalize_dn(g)).collect();
        self.config
            .role_map
            .iter()
            .find(|m| groups.contains(&normalize_dn(&m.group)))
            .map(|m| m.role.clone())
            .or_else(|| self.config.default_role.clone())
    }

    /// A TCP connection to the directory with Nagle off: a login is a few small requests
    /// each waiting for its answer, which Nagle's algorithm and delayed ACKs would stall.
    async fn connect(&self) -> CoreResult<std::net::TcpStream> {
        let addr = host_port(&self.config.url);
        let tcp = tokio::time::timeout(self.connect_timeout(), tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| unavailable(format_args!("connecting to {addr} timed out")))?
            .map_err(|e| unavailable(format_args!("cannot connect to {addr}: {e}")))?;
        tcp.set_nodelay(true).map_err(|e| unavailable(format_args!("socket option: {e}")))?;
        tcp.into_std().map_err(|e| unavailable(format_args!("socket: {e}")))
    }

    /// One login against the directory, on a connection of its own.
    async fn check(&self, login: &str, password: &SecretString) -> CoreResult<Verdict> {
        let stream = self.connect().await?;
        let mut settings =
            LdapConnSettings::new().set_conn_timeout(self.connect_timeout()).set_std_stream(StdStream::Tcp(stream));
        match self.config.transport {
            LdapTransport::Ldaps => settings = settings.set_config(Arc::clone(&self.tls)),
            LdapTransport::StartTls => settings = settings.set_config(Arc::clone(&self.tls)).set_starttls(true),
            LdapTransport::Plain => {}
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| unavailable(format_args!("cannot connect to {}: {e}", self.config.url)))?;
        ldap3::drive!(conn);
        let op = self.op_timeout();

        let bound = ldap
            .with_timeout(op)
            .simple_bind(&self.config.bind_dn, self.config.bind_password.expose_secret())
            .await
            .map_err(|e| unavailable(format_args!("service bind: {e}")))?;
        if bound.rc != RC_SUCCESS {
            return Err(unavailable(format_args!(
                "the directory refused the service bind as auth.ldap.bind_dn (result code {}): check it and RAMPART_LDAP_BIND_PASSWORD",
                bound.rc
            )));
        }

        let filter = fill_filter(&self.config.user_filter, &[("{username}", login)]);
        let found = ldap
            .with_timeout(op)
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(&self.config.user_base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .map_err(|e| unavailable(format_args!("user search: {e}")))?;
        let entries = match found.1.rc {
            RC_SUCCESS => found.0,
            RC_SIZE_LIMIT_EXCEEDED => return self.spend_a_bind(&mut ldap, password, "ambiguous_user").await,
            rc => return Err(unavailable(format_args!("user search in auth.ldap.user_base: result code {rc}"))),
        };
        let mut entries = entries.into_iter();
        let (Some(entry), None) = (entries.next(), entries.next()) else {
            // No entry (or, defensively, several): the same bind as a wrong password costs.
            return self.spend_a_bind(&mut ldap, password, "unknown_user").await;
        };
        let user_dn = SearchEntry::construct(entry).dn;
        let Ok(username) = Username::parse(login) else {
            return self.spend_a_bind(&mut ldap, password, "unusable_username").await;
        };

        let group_filter = fill_filter(&self.config.group_filter, &[("{dn}", &user_dn), ("{username}", login)]);
        let found = ldap
            .with_timeout(op)
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS))
            .search(&self.config.group_base, Scope::Subtree, &group_filter, vec!["1.1"])
            .await
            .map_err(|e| unavailable(format_args!("group search: {e}")))?;
        let groups: Vec<String> = match found.1.rc {
            RC_SUCCESS => found.0.into_iter().map(|e| SearchEntry::construct(e).dn).collect(),
            RC_SIZE_LIMIT_EXCEEDED => return self.spend_a_bind(&mut ldap, password, "too_many_groups").await,
            rc => return Err(unavailable(format_args!("group search in auth.ldap.group_base: result code {rc}"))),
        };

        let bound = ldap
            .with_timeout(op)
            .simple_bind(&user_dn, password.expose_secret())
            .await
            .map_err(|e| unavailable(format_args!("user bind: {e}")))?;
        let _ = ldap.unbind().await;
        match bound.rc {
            RC_SUCCESS => {}
            // Wrong password, or an account the directory locked (ppolicy answers the same).
            RC_INVALID_CREDENTIALS => return Ok(Verdict::Refused("wrong_password")),
            _ => return Ok(Verdict::Refused("directory_refused_bind")),
        }
        Ok(match self.map_role(&groups) {
            Some(role) => Verdict::External(ExternalIdentity { username, role, source: AuthSource::Ldap }),
            None => Verdict::Refused("no_mapped_group"),
        })
    }

    /// A bind with the password to a DN no entry has, so a refusal before the user bind
    /// costs the directory round trip a wrong password does.
    async fn spend_a_bind(
        &self,
        ldap: &mut ldap3::Ldap,
        password: &SecretString,
        reason: &'static str,
    ) -> CoreResult<Verdict> {
        let nobody = format!(
            "cn={},{}",
            dn_value(&format!("rampart-nobody-{:016x}", rand::random::<u64>())),
            self.config.user_base
        );
        ldap.with_timeout(self.op_timeout())
            .simple_bind(&nobody, password.expose_secret())
            .await
            .map_err(|e| unavailable(format_args!("bind: {e}")))?;
        let _ = ldap.unbind().await;
        Ok(Verdict::Refused(reason))
    }
}

/// `HOST:PORT` of an `ldaps://` or `ldap://` URL (validated at load), with the scheme's
/// port when none is given.
fn host_port(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("ldap", url));
    let host = rest.trim_end_matches('/');
    let has_port = host.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (!h.starts_with('[') || h.ends_with(']'))
    });
    if has_port {
        host.to_owned()
    } else if scheme.eq_ignore_ascii_case("ldaps") {
        format!("{host}:636")
    } else {
        format!("{host}:389")
    }
}

/// DNs compared as the directory would for the common case: case-insensitively, without
/// spaces around `,` and `=`.
fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

#[async_trait::async_trait]
impl IdentityProvider for LdapIdentity {
    async fn verify(&self, username: &str, password: SecretString, _now: Timestamp) -> CoreResult<Verdict> {
        let secret = password.expose_secret();
        if secret.is_empty() {
            // An empty simple bind is an anonymous bind, which directories answer "success".
            return Ok(Verdict::Refused("empty_password"));
        }
        if secret.len() > rampart_crypto::MAX_PASSWORD_BYTES {
            return Ok(Verdict::Refused("invalid_credentials"));
        }
        if username.is_empty() || username.len() > MAX_LOGIN_NAME {
            return Ok(Verdict::Refused("unknown_user"));
        }
        let _permit = tokio::time::timeout(self.connect_timeout(), self.permits.acquire())
            .await
            .map_err(|_| unavailable("too many directory logins in flight (auth.ldap.max_connections)"))?
            .map_err(|_| unavailable("the provider is shutting down"))?;
        // Each step has its own timeout; this bounds the whole login besides.
        let whole = self.connect_timeout() + self.op_timeout() * 5;
        tokio::time::timeout(whole, self.check(username, &password))
            .await
            .map_err(|_| unavailable("the directory did not answer in time"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_port_or_the_schemes() {
        assert_eq!(host_port("ldaps://ldap.example.org"), "ldap.example.org:636");
        assert_eq!(host_port("ldap://ldap.example.org/"), "ldap.example.org:389");
        assert_eq!(host_port("ldaps://127.0.0.1:1636"), "127.0.0.1:1636");
        assert_eq!(host_port("LDAPS://[::1]"), "[::1]:636");
        assert_eq!(host_port("ldap://[::1]:1389"), "[::1]:1389");
    }

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(normalize_dn("CN=Admins, OU=Groups,dc=Example"), normalize_dn("cn=admins,ou=groups,dc=example"));
        assert_ne!(normalize_dn("cn=admins,dc=x"), normalize_dn("cn=admins2,dc=x"));
    }
}
