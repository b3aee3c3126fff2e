//! Checks on the resolved configuration: exposure, weakened defaults, where secrets come
//! from. Pure: the configuration and the names of the set variables in, findings out.

use std::net::IpAddr;

use rampart_config::{Config, DatabaseUrl, RateLimitBackend, SecretName};
use serde_json::json;

use super::{Findings, Severity};

/// Longest idle timeout that passes (the compliance check's limit too).
const MAX_IDLE_MINUTES: u32 = 30;
/// Signing secrets shorter than this are guessable offline from one signed delivery.
const MIN_WEBHOOK_SECRET_CHARS: usize = 32;

pub fn check(config: &Config, set_variables: &[String], out: &mut Findings) {
    exposure(config, out);
    weakened_defaults(config, out);
    webhooks(config, out);
    identity_providers(config, out);
    secret_sources(config, set_variables, out);
    connections(config, out);
    for w in &config.warnings {
        let check = if w.contains("is not a Rampart setting") { "unknown_variable" } else { "configuration_warning" };
        out.flag(check, Severity::Warning, w.clone(), json!({}), "correct or remove the setting the warning names");
    }
}

fn exposure(config: &Config, out: &mut Findings) {
    let s = &config.server;
    let loopback = s.bind.ip().is_loopback();
    let admin_nets = config.breach.admin_allowed_ips.len();
    let evidence = json!({ "bind": s.bind.to_string(), "admin_allowed_ips": admin_nets });
    out.judge(
        "admin_exposure",
        loopback || admin_nets > 0,
        Severity::Warning,
        (
            "the admin API is reachable from loopback only, or from the allowed networks",
            "the server listens beyond loopback and the admin API answers every address",
        ),
        evidence,
        "set breach_detection.admin_allowed_ips = [\"10.0.0.0/8\"] (or RAMPART_ADMIN_ALLOWED_IPS) to the networks admins use",
    );
    out.judge(
        "transport",
        !s.insecure_http,
        Severity::Warning,
        ("served over TLS 1.2/1.3", "plain HTTP (--insecure-http): only safe behind a TLS proxy on the same host"),
        json!({ "insecure_http": s.insecure_http, "bind": s.bind.to_string() }),
        "drop --insecure-http / RAMPART_INSECURE_HTTP and serve TLS (a certificate is generated when none is given)",
    );
    let open_proxies: Vec<String> =
        s.trusted_proxies.iter().filter(|c| c.prefix() == 0).map(|c| format!("{}/0", c.network())).collect();
    out.judge(
        "trusted_proxies",
        open_proxies.is_empty(),
        Severity::Critical,
        (
            "X-Forwarded-For is believed only from the listed proxies",
            "every address is a trusted proxy: any client can claim any address, escape its rate limits and aim blocks at others",
        ),
        json!({ "trusted_proxies": s.trusted_proxies.len(), "match_everything": open_proxies }),
        "list only your reverse proxies' addresses in server.trusted_proxies (RAMPART_TRUSTED_PROXIES)",
    );
    let plain_origins: Vec<&str> = config
        .cors
        .allowed_origins
        .iter()
        .map(String::as_str)
        .filter(|o| o.starts_with("http://") && !is_local_origin(o))
        .collect();
    out.judge(
        "cors",
        plain_origins.is_empty(),
        Severity::Warning,
        (
            "CORS allows exact HTTPS origins only (a wildcard is refused at start)",
            "CORS allows plain-HTTP origins: a network attacker can inject script there and call the API",
        ),
        json!({ "allowed_origins": config.cors.allowed_origins, "plain_http_origins": plain_origins }),
        "list https:// origins only in cors.allowed_origins (RAMPART_CORS_ALLOWED_ORIGINS)",
    );
}

fn is_local_origin(origin: &str) -> bool {
    let host = origin.trim_start_matches("http://").split(':').next().unwrap_or_default();
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn weakened_defaults(config: &Config, out: &mut Findings) {
    let rl = &config.rate_limit;
    out.judge(
        "rate_limits",
        rl.enabled,
        Severity::Critical,
        ("rate limits are on", "rate limits are off: password guessing and floods are unlimited"),
        json!({ "enabled": rl.enabled, "requests_per_minute": rl.requests_per_minute, "login_requests_per_minute": rl.login_requests_per_minute }),
        "remove RAMPART_RATE_LIMIT_ENABLED=false / set [rate_limit] enabled = true",
    );
    let b = &config.breach;
    out.judge(
        "breach_detection",
        b.enabled && b.sqli_detection && b.anomaly_detection,
        if b.enabled { Severity::Warning } else { Severity::Critical },
        (
            "breach detection is on, with injection and anomaly detection",
            "breach detection, or part of it, is off: attacks raise no alert and no automatic response",
        ),
        json!({ "enabled": b.enabled, "sqli_detection": b.sqli_detection, "anomaly_detection": b.anomaly_detection }),
        "remove RAMPART_BREACH_DETECTION_ENABLED=false and the sqli_detection/anomaly_detection = false lines of [breach_detection]",
    );
    let mfa_roles = &config.auth.require_mfa_for_roles;
    out.judge(
        "mfa_policy",
        mfa_roles.iter().any(|r| r == "admin"),
        Severity::Critical,
        ("admins must use a second factor", "admins may log in with a password alone (require_mfa_for_roles weakened)"),
        json!({ "require_mfa_for_roles": mfa_roles }),
        "set [auth] require_mfa_for_roles = [\"admin\"] (or unset RAMPART_REQUIRE_MFA_FOR_ROLES)",
    );
    out.judge(
        "backup_encryption",
        config.backup.encryption_required,
        Severity::Critical,
        ("backups must be encrypted", "unencrypted backups are allowed (RAMPART_BACKUP_ENCRYPTION=optional)"),
        json!({ "backup_encryption": if config.backup.encryption_required { "required" } else { "optional" } }),
        "unset RAMPART_BACKUP_ENCRYPTION (or set it to required)",
    );
    let idle = config.auth.session_timeout_minutes;
    out.judge(
        "session_timeout",
        idle <= MAX_IDLE_MINUTES,
        Severity::Warning,
        ("idle sessions end within 30 minutes", "idle sessions live longer than 30 minutes"),
        json!({ "session_timeout_minutes": idle, "max_minutes": MAX_IDLE_MINUTES, "session_lifetime_hours": config.auth.session_lifetime_hours }),
        "set [auth] session_timeout_minutes = 30 or less",
    );
    let rotation = config.keys.rotation_days;
    out.judge(
        "key_rotation_policy",
        rotation <= 365,
        Severity::Warning,
        ("key-encryption keys rotate at least yearly", "key-encryption keys rotate less than once a year"),
        json!({ "key_rotation_days": rotation }),
        "set [keys] rotation_days = 90 (RAMPART_KEY_ROTATION_DAYS)",
    );
    let kept = config.backup.key_backup_retention_days;
    out.judge(
        "key_backup_retention",
        kept <= 30,
        Severity::Warning,
        (
            "erased subjects' keys leave key-store backups within 30 days",
            "erased subjects' keys stay in key-store backups for over 30 days",
        ),
        json!({ "key_backup_retention_days": kept }),
        "set [backup] key_backup_retention_days = 30 or less",
    );
    if !config.audit.record_reads {
        out.flag(
            "audit_reads",
            Severity::Info,
            "document reads are not audited (audit.record_reads = false)",
            json!({ "record_reads": false }),
            "unset RAMPART_AUDIT_RECORD_READS / set [audit] record_reads = true if reads of personal data must be traceable",
        );
    }
}

fn webhooks(config: &Config, out: &mut Findings) {
    use secrecy::ExposeSecret;
    let hooks = &config.breach.webhooks;
    if hooks.is_empty() {
        out.flag(
            "webhook",
            Severity::Warning,
            "no breach webhook: alerts wait in the console until someone looks",
            json!({ "webhooks": 0 }),
            "set RAMPART_BREACH_WEBHOOK_URL (and RAMPART_BREACH_WEBHOOK_SECRET) or add a [[breach_detection.webhook]]",
        );
        return;
    }
    let short: Vec<&str> = hooks
        .iter()
        .filter(|h| h.secret.expose_secret().chars().count() < MIN_WEBHOOK_SECRET_CHARS)
        .map(|h| h.url.as_str())
        .collect();
    let plain: Vec<&str> =
        hooks.iter().map(|h| h.url.as_str()).filter(|u| u.starts_with("http://") && !is_local_origin(u)).collect();
    out.judge(
        "webhook",
        short.is_empty() && plain.is_empty(),
        Severity::Warning,
        (
            "breach webhooks are configured and signed with strong secrets over HTTPS",
            "a breach webhook has a short signing secret or travels in clear",
        ),
        json!({ "webhooks": hooks.len(), "short_secrets": short, "plain_http": plain, "min_secret_chars": MIN_WEBHOOK_SECRET_CHARS }),
        "use https:// webhook URLs and secrets of 32+ random characters (`rampart rotate-secrets` makes one)",
    );
    if config.breach.allow_private_webhook_targets {
        out.flag(
            "webhook_targets",
            Severity::Info,
            "webhooks may target private addresses (RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS)",
            json!({ "allow_private_webhook_targets": true }),
            "unset RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS unless the receiver is on your network",
        );
    }
}

fn identity_providers(config: &Config, out: &mut Findings) {
    if let Some(ldap) = &config.auth.ldap {
        out.judge(
            "ldap_transport",
            !ldap.insecure(),
            Severity::Critical,
            ("LDAP uses LDAPS or StartTLS", "LDAP passwords cross the network in clear (allow_insecure = true)"),
            json!({ "url": ldap.url, "insecure": ldap.insecure() }),
            "use ldaps:// or starttls = true in [auth.ldap] and remove allow_insecure",
        );
    }
    if let Some(oidc) = &config.auth.oidc {
        let https = oidc.issuer.starts_with("https://") || is_local_origin(&oidc.issuer);
        out.judge(
            "oidc_issuer",
            https,
            Severity::Critical,
            ("the OIDC provider is reached over HTTPS", "the OIDC provider is reached over plain HTTP"),
            json!({ "issuer": oidc.issuer }),
            "use the provider's https:// issuer URL in [auth.oidc]",
        );
    }
}

/// Secrets in the config file, or in plain environment variables where a `_FILE` or
/// Vault would keep them out of `/proc/PID/environ` and `docker inspect`.
fn secret_sources(config: &Config, set_variables: &[String], out: &mut Findings) {
    let in_file = config
        .sources
        .config_file
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|t| t.get("server")?.get("database_url")?.as_str().map(url_has_password))
        .unwrap_or(false);
    out.judge(
        "secrets_in_config",
        !in_file,
        Severity::Warning,
        ("the config file holds no secrets", "the config file's server.database_url carries a password"),
        json!({ "config_file": config.sources.config_file, "database_url_password": in_file }),
        "move the URL to RAMPART_DATABASE_URL_FILE (or Vault) and remove it from rampart.toml",
    );
    let plain: Vec<&str> = SecretName::FIXED
        .iter()
        .map(SecretName::env_var)
        .filter(|var| set_variables.iter().any(|v| v == var))
        .collect();
    if !plain.is_empty() {
        out.flag(
            "secrets_in_environment",
            Severity::Info,
            "secrets are passed in plain environment variables (readable in /proc/PID/environ and container metadata)",
            json!({ "variables": plain }),
            "pass them as files instead (X_FILE=/run/secrets/x, e.g. systemd LoadCredential) or keep them in Vault",
        );
    }
    out.pass(
        "secret_sources",
        if config.sources.vault {
            "secrets come from Vault first"
        } else {
            "secrets come from the environment and files"
        },
        json!({ "vault": config.sources.vault, "secrets_file": config.sources.secrets_file }),
    );
}

fn url_has_password(url: &str) -> bool {
    url.contains("password=")
        || url
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
            .and_then(|authority| authority.rsplit_once('@'))
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

fn host_is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `scheme://[user[:pw]@]host[:port]/...`.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

fn connections(config: &Config, out: &mut Findings) {
    if let DatabaseUrl::Postgres(pg) = &config.server.database {
        let url = pg.expose();
        let remote = !host_is_loopback(url_host(url));
        let cleartext =
            url.contains("sslmode=disable") || url.contains("sslmode=allow") || url.contains("sslmode=prefer");
        out.judge(
            "database_tls",
            !(remote && cleartext),
            Severity::Critical,
            (
                "the PostgreSQL connection is verified TLS (or stays on this host)",
                "the PostgreSQL connection to another host may run in clear",
            ),
            json!({ "remote": remote, "cleartext_allowed": cleartext }),
            "use sslmode=verify-full in the database URL",
        );
    }
    if let RateLimitBackend::Redis(redis) = &config.rate_limit.backend {
        let remote = !host_is_loopback(url_host(redis.url.expose()));
        out.judge(
            "redis_transport",
            !remote,
            Severity::Warning,
            (
                "Redis is on this host",
                "Redis is on another host and is spoken to in clear (rate-limit counters, its password)",
            ),
            json!({ "remote": remote }),
            "run Redis on the same host or reach it through a private network or TLS tunnel",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_config::{Env, Overrides};

    fn config(vars: &[(&str, &str)]) -> Config {
        let dir = std::env::temp_dir().join("doctor-settings");
        let env = Env::from_pairs(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Config::load(&env, &Overrides { data_dir: Some(dir), ..Overrides::default() }).unwrap()
    }

    fn findings(c: &Config, set: &[&str]) -> Findings {
        let mut out = Findings::default();
        check(c, &set.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), &mut out);
        out
    }

    #[test]
    fn the_defaults_raise_nothing_worse_than_the_missing_webhook() {
        let out = findings(&config(&[]), &[]);
        let bad: Vec<_> = out.0.iter().filter(|f| f.severity > Severity::Info).map(|f| f.check).collect();
        assert_eq!(bad, vec!["webhook"], "{out:#?}");
    }

    #[test]
    fn each_weakened_default_is_reported_with_its_fix() {
        let c = config(&[
            ("RAMPART_RATE_LIMIT_ENABLED", "false"),
            ("RAMPART_BREACH_DETECTION_ENABLED", "false"),
            ("RAMPART_REQUIRE_MFA_FOR_ROLES", "none"),
            ("RAMPART_BACKUP_ENCRYPTION", "optional"),
            ("RAMPART_SESSION_TIMEOUT_MINUTES", "240"),
            ("RAMPART_TRUSTED_PROXIES", "0.0.0.0/0"),
            ("RAMPART_BIND", "0.0.0.0:9090"),
            ("RAMPART_RATE_LIMT_ENABLED", "true"),
        ]);
        let out = findings(&c, &[]);
        for (check, severity) in [
            ("rate_limits", Severity::Critical),
            ("breach_detection", Severity::Critical),
            ("mfa_policy", Severity::Critical),
            ("backup_encryption", Severity::Critical),
            ("trusted_proxies", Severity::Critical),
            ("session_timeout", Severity::Warning),
            ("admin_exposure", Severity::Warning),
            ("unknown_variable", Severity::Warning),
        ] {
            let f = out.get(check).unwrap_or_else(|| panic!("no {check} finding"));
            assert_eq!(f.severity, severity, "{f:?}");
            assert!(f.fix.as_deref().is_some_and(|x| !x.is_empty()), "{check} has no fix");
        }
        assert_eq!(out.worst(), Severity::Critical);
    }

    #[test]
    fn plain_secret_variables_are_named_but_never_their_values() {
        let c = config(&[("RAMPART_ADMIN_PASSWORD", "canary-Secret-Value-123!")]);
        let out = findings(&c, &["RAMPART_ADMIN_PASSWORD", "RAMPART_DATA_DIR"]);
        let f = out.get("secrets_in_environment").unwrap();
        assert_eq!(f.evidence["variables"], json!(["RAMPART_ADMIN_PASSWORD"]));
        let all = serde_json::to_string(&out.0.iter().map(|f| &f.evidence).collect::<Vec<_>>()).unwrap();
        assert!(!all.contains("canary-Secret-Value"), "a secret value reached the report");
    }

    #[test]
    fn urls_are_read_for_passwords_and_hosts() {
        assert!(url_has_password("postgres://u:pw@db.example/x"));
        assert!(url_has_password("postgres://u@db.example/x?password=x"));
        assert!(!url_has_password("postgres://u@db.example/x?sslmode=verify-full"));
        assert!(!url_has_password("postgres://db.example/x"));
        assert_eq!(url_host("postgres://u:p@db.example:5432/x"), "db.example");
        assert_eq!(url_host("redis://127.0.0.1:6379"), "127.0.0.1");
        assert!(host_is_loopback(url_host("postgres://[::1]:5432/x")));
        assert!(!host_is_loopback(url_host("redis://10.0.0.5:6379")));
    }
}
