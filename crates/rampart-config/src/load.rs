//! How the configuration is read: the layers merged and checked (`Config::assemble`), the
//! secrets resolved through the chain, and the two steps Vault needs (`Config::prepare`, then
//! `PendingConfig::finish` with Vault's snapshot first). `lib.rs` holds what it reads into.

use super::*;

/// `[rate_limit] backend` and, for Redis, where it is and what to do when it is not there.
/// The URL is a secret: `RAMPART_REDIS_URL`, `RAMPART_REDIS_URL_FILE` or the `.secrets` file
/// (through the chain), else `rate_limit.redis_url`.
pub(crate) fn rate_limit_backend(
    env: &Env,
    chain: &SecretChain,
    rl: &file::FileRateLimit,
) -> Result<RateLimitBackend, ConfigError> {
    let backend = env.get("RAMPART_RATE_LIMIT_BACKEND").or(rl.backend.clone());
    let from_chain = chain.get(&SecretName::RedisUrl)?.map(|s| secrecy::ExposeSecret::expose_secret(&s).to_owned());
    let url = from_chain.or(rl.redis_url.clone());
    match backend.as_deref().map(str::trim).unwrap_or("memory") {
        "memory" if url.is_none() => Ok(RateLimitBackend::Memory),
        "memory" => Err(invalid("redis_url", "set only with backend = \"redis\"")),
        "redis" => {
            let url = url.ok_or_else(|| invalid("redis_url", "required with backend = \"redis\""))?;
            let mode = |var: &str, key: &'static str, file: &Option<String>, default| {
                env.get(var).or(file.clone()).map_or(Ok(default), |v| FailMode::parse(key, &v))
            };
            Ok(RateLimitBackend::Redis(RedisLimits {
                url: RedisUrl::parse(&url)?,
                login_when_unreachable: mode(
                    "RAMPART_RATE_LIMIT_LOGIN_WHEN_UNREACHABLE",
                    "login_when_unreachable",
                    &rl.login_when_unreachable,
                    FailMode::Closed,
                )?,
                api_when_unreachable: mode(
                    "RAMPART_RATE_LIMIT_API_WHEN_UNREACHABLE",
                    "api_when_unreachable",
                    &rl.api_when_unreachable,
                    FailMode::Open,
                )?,
            }))
        }
        _ => Err(invalid("backend", "expected memory or redis")),
    }
}

/// 1-64 letters, digits, `.`, `_` or `-`: it is stored beside every audit record.
pub(crate) fn parse_node_id(id: &str) -> Result<String, ConfigError> {
    let ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(id.to_owned())
    } else {
        Err(invalid("node_id", "expected 1-64 letters, digits, '.', '_' or '-'"))
    }
}

/// The host name when it makes a valid node id, else `node-1`.
pub(crate) fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| parse_node_id(h.trim()).ok())
        .unwrap_or_else(|| "node-1".to_owned())
}

impl Config {
    /// Loads every layer. `env` is the process environment in production, a map in tests.
    /// With `[secrets.vault]` configured this refuses: Vault must be asked first, through
    /// [`Config::prepare`] and [`PendingConfig::finish`].
    pub fn load(env: &Env, flags: &Overrides) -> Result<Self, ConfigError> {
        let pending = Self::prepare(env, flags)?;
        if pending.vault.is_some() {
            return Err(invalid("secrets.vault", "Vault is configured: its secrets must be fetched first"));
        }
        pending.finish(None)
    }

    /// Reads the files and the Vault settings; no secret other than Vault's own credentials
    /// is resolved yet.
    pub fn prepare(env: &Env, flags: &Overrides) -> Result<PendingConfig, ConfigError> {
        let file_path = flags
            .config
            .clone()
            .or_else(|| env.get("RAMPART_CONFIG").map(PathBuf::from))
            .or_else(|| Some(PathBuf::from("rampart.toml")).filter(|p| p.exists()));
        let file = match &file_path {
            Some(p) => FileConfig::read(p)?,
            None => FileConfig::default(),
        };
        // Secrets: the environment first, then the `.secrets` file. A Vault/OpenBao source,
        // when configured, goes first in this chain (SPEC: Vault → environment / `_FILE`).
        let mut sources: Vec<Box<dyn SecretSource>> = vec![Box::new(EnvSecrets::new(env.clone()))];
        let mut secrets_path = None;
        let settings_env = match file.server.secrets_file.as_ref() {
            Some(rel) => {
                let path = resolve_beside(file_path.as_deref(), rel);
                secrets_path = Some(path.clone());
                let secrets_file = SecretsFile::read(&path)?;
                // Other settings written there still apply beneath the environment, as before.
                let merged = env.over(secrets_file.vars());
                sources.push(Box::new(secrets_file));
                merged
            }
            None => env.clone(),
        };
        let chain = SecretChain(sources);
        let vault = vault::settings(&settings_env, &chain, file.secrets.vault.as_ref())?;
        let sources = ConfigSources { config_file: file_path, secrets_file: secrets_path, vault: vault.is_some() };
        Ok(PendingConfig { env: settings_env, chain, flags: flags.clone(), file, vault, sources })
    }

    /// `env` holds the non-secret settings; every secret is asked of `chain`.
    fn assemble(env: &Env, chain: &SecretChain, flags: &Overrides, file: FileConfig) -> Result<Self, ConfigError> {
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env.get("RAMPART_DATA_DIR").map(PathBuf::from))
            .or(file.server.data_dir)
            .unwrap_or_else(|| PathBuf::from("./rampart-data"));
        let bind_text = flags
            .bind
            .clone()
            .or_else(|| env.get("RAMPART_BIND"))
            .or(file.server.bind)
            .unwrap_or_else(|| "127.0.0.1:9090".to_owned());
        let bind: SocketAddr =
            bind_text.parse().map_err(|_| invalid("bind", "expected an address like 127.0.0.1:9090"))?;
        let log_dir = flags
            .log_dir
            .clone()
            .or_else(|| env.get("RAMPART_LOG_DIR").map(PathBuf::from))
            .or(file.server.log_dir)
            .unwrap_or_else(|| data_dir.join("logs"));
        let insecure_http = flags.insecure_http
            || env.parse_bool("RAMPART_INSECURE_HTTP")?.unwrap_or(false)
            || file.server.insecure_http.unwrap_or(false);
        if insecure_http && !bind.ip().is_loopback() {
            return Err(invalid(
                "insecure_http",
                "plain HTTP is only allowed on a loopback address; use TLS for other addresses",
            ));
        }
        let database =
            match flags.database_url.clone().or_else(|| env.get("RAMPART_DATABASE_URL")).or(file.server.database_url) {
                Some(url) => DatabaseUrl::parse(&url)?,
                None => DatabaseUrl::in_data_dir(&data_dir),
            };
        let node_id = match env.get("RAMPART_NODE_ID").or(file.server.node_id) {
            Some(id) => parse_node_id(&id)?,
            None => default_node_id(),
        };
        let server = ServerConfig {
            database,
            node_id,
            data_dir,
            bind,
            log_dir,
            insecure_http,
            max_connections: env.parse_num("RAMPART_MAX_CONNECTIONS")?.or(file.server.max_connections).unwrap_or(1024),
            max_connections_per_ip: env
                .parse_num("RAMPART_MAX_CONNECTIONS_PER_IP")?
                .or(file.server.max_connections_per_ip)
                .unwrap_or(64),
            body_idle_timeout_secs: file.server.body_idle_timeout_secs.unwrap_or(5),
            min_body_bytes_per_sec: file.server.min_body_bytes_per_sec.unwrap_or(512),
            header_read_timeout_secs: file.server.header_read_timeout_secs.unwrap_or(10),
            request_timeout_secs: file.server.request_timeout_secs.unwrap_or(30),
            shutdown_grace_secs: file.server.shutdown_grace_secs.unwrap_or(30),
            trusted_proxies: parse_cidrs(
                env.get("RAMPART_TRUSTED_PROXIES")
                    .map(|v| v.split(',').map(str::to_owned).collect())
                    .or(file.server.trusted_proxies)
                    .unwrap_or_default(),
            )?,
        };
        range("max_connections", server.max_connections, 1, 1_000_000)?;
        range("max_connections_per_ip", server.max_connections_per_ip, 1, 1_000_000)?;
        range("body_idle_timeout_secs", server.body_idle_timeout_secs, 1, 3600)?;
        range("min_body_bytes_per_sec", server.min_body_bytes_per_sec, 0, 1 << 30)?;
        range("header_read_timeout_secs", server.header_read_timeout_secs, 1, 3600)?;
        range("request_timeout_secs", server.request_timeout_secs, 1, 3600)?;

        let tls = TlsConfig {
            cert: flags.tls_cert.clone().or_else(|| env.get("RAMPART_TLS_CERT").map(PathBuf::from)).or(file.tls.cert),
            key: flags.tls_key.clone().or_else(|| env.get("RAMPART_TLS_KEY").map(PathBuf::from)).or(file.tls.key),
        };
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(invalid("tls", "give both a certificate and a key, or neither"));
        }

        let mut ldap_warnings = Vec::new();
        let (method, ldap) =
            ldap::auth_method_and_ldap(env, chain, file.auth.method.clone(), file.auth.ldap, &mut ldap_warnings)?;
        let auth = AuthConfig {
            session_timeout_minutes: env
                .parse_num("RAMPART_SESSION_TIMEOUT_MINUTES")?
                .or(file.auth.session_timeout_minutes)
                .unwrap_or(30),
            session_lifetime_hours: env
                .parse_num("RAMPART_SESSION_LIFETIME_HOURS")?
                .or(file.auth.session_lifetime_hours)
                .unwrap_or(12),
            max_sessions_per_user: env
                .parse_num("RAMPART_MAX_SESSIONS_PER_USER")?
                .or(file.auth.max_sessions_per_user)
                .unwrap_or(10),
            password_hash_concurrency: file.auth.password_hash_concurrency.unwrap_or(0),
            password_hash_queue: file.auth.password_hash_queue.unwrap_or(64),
            login_delay_after_failures: file.auth.login_delay_after_failures.unwrap_or(5),
            max_login_delay_secs: file.auth.max_login_delay_secs.unwrap_or(900),
            require_mfa_for_roles: match env.get("RAMPART_REQUIRE_MFA_FOR_ROLES") {
                Some(v) if v.trim() == "none" => Vec::new(),
                Some(v) => v.split(',').map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect(),
                None => file.auth.require_mfa_for_roles.unwrap_or_else(|| vec!["admin".to_owned()]),
            },
            refresh_lifetime_hours: file.auth.refresh_lifetime_hours.unwrap_or(24 * 7),
            oidc: oidc::oidc_config(file.auth.oidc, chain)?,
            method,
            ldap,
        };
        range("session_timeout_minutes", auth.session_timeout_minutes, 1, 24 * 60)?;
        range("session_lifetime_hours", auth.session_lifetime_hours, 1, 24 * 30)?;
        range("max_sessions_per_user", auth.max_sessions_per_user, 1, 1000)?;
        range("password_hash_queue", auth.password_hash_queue, 1, 100_000)?;

        let limits = LimitsConfig {
            max_body_bytes: file.limits.max_body_bytes.unwrap_or(1024 * 1024),
            max_json_depth: file.limits.max_json_depth.unwrap_or(32),
            max_page_size: file.limits.max_page_size.unwrap_or(1000),
        };
        range("max_body_bytes", limits.max_body_bytes, 1024, 64 * 1024 * 1024)?;
        range("max_json_depth", limits.max_json_depth, 2, 256)?;
        range("max_page_size", limits.max_page_size, 1, 10_000)?;

        let rl = &file.rate_limit;
        let rate_limit = RateLimitConfig {
            enabled: env.parse_bool("RAMPART_RATE_LIMIT_ENABLED")?.or(rl.enabled).unwrap_or(true),
            requests_per_minute: env
                .parse_num("RAMPART_RATE_LIMIT_REQUESTS_PER_MINUTE")?
                .or(rl.requests_per_minute)
                .unwrap_or(1000),
            login_requests_per_minute: env
                .parse_num("RAMPART_RATE_LIMIT_LOGIN_REQUESTS_PER_MINUTE")?
                .or(rl.login_requests_per_minute)
                .unwrap_or(30),
            user_requests_per_minute: env
                .parse_num("RAMPART_RATE_LIMIT_USER_REQUESTS_PER_MINUTE")?
                .or(rl.user_requests_per_minute)
                .unwrap_or(1000),
            max_tracked_clients: rl.max_tracked_clients.unwrap_or(100_000),
            backend: rate_limit_backend(env, chain, rl)?,
        };
        range("requests_per_minute", rate_limit.requests_per_minute, 1, 10_000_000)?;
        range("login_requests_per_minute", rate_limit.login_requests_per_minute, 1, 1_000_000)?;
        range("user_requests_per_minute", rate_limit.user_requests_per_minute, 1, 10_000_000)?;
        range("max_tracked_clients", rate_limit.max_tracked_clients, 1024, 100_000_000)?;
        let cors = CorsConfig {
            allowed_origins: env
                .get("RAMPART_CORS_ALLOWED_ORIGINS")
                .map(|v| v.split(',').map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect())
                .or(file.cors.allowed_origins)
                .unwrap_or_default(),
        };
        for o in &cors.allowed_origins {
            if o == "*" || !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/') {
                return Err(invalid(
                    "cors.allowed_origins",
                    format!("{o:?} is not an exact origin like https://app.example.com"),
                ));
            }
        }
        let r = &file.retention;
        // One setting under two names: `retention.audit_log_retention_days` (and its
        // variable) wins over `[audit] retention_days`, the older name.
        let audit_log_retention_days = env
            .parse_num("RAMPART_RETENTION_AUDIT_LOG_RETENTION_DAYS")?
            .or(r.audit_log_retention_days)
            .or(file.audit.retention_days)
            .unwrap_or(2555);
        let retention = RetentionConfig {
            enabled: env.parse_bool("RAMPART_RETENTION_ENABLED")?.or(r.enabled).unwrap_or(false),
            default_retention_days: env
                .parse_num("RAMPART_RETENTION_DEFAULT_RETENTION_DAYS")?
                .or(r.default_retention_days),
            pii_retention_days: env.parse_num("RAMPART_RETENTION_PII_RETENTION_DAYS")?.or(r.pii_retention_days),
            audit_log_retention_days,
            auto_delete_expired: env
                .parse_bool("RAMPART_RETENTION_AUTO_DELETE_EXPIRED")?
                .or(r.auto_delete_expired)
                .unwrap_or(false),
            interval_secs: env.parse_num("RAMPART_RETENTION_INTERVAL_SECS")?.or(r.interval_secs).unwrap_or(300),
            batch_size: env.parse_num("RAMPART_RETENTION_BATCH_SIZE")?.or(r.batch_size).unwrap_or(500),
            batch_pause_ms: r.batch_pause_ms.unwrap_or(0),
        };
        if let Some(d) = retention.default_retention_days {
            range("retention.default_retention_days", d, 1, 36_500)?;
        }
        if let Some(d) = retention.pii_retention_days {
            range("retention.pii_retention_days", d, 1, 36_500)?;
        }
        range("retention.audit_log_retention_days", retention.audit_log_retention_days, 1, 36_500)?;
        range("retention.interval_secs", retention.interval_secs, 1, 86_400)?;
        range("retention.batch_size", retention.batch_size, 1, 10_000)?;
        range("retention.batch_pause_ms", retention.batch_pause_ms, 0, 60_000)?;
        let audit = AuditConfig {
            retention_days: audit_log_retention_days,
            activity_retention_days: file.audit.activity_retention_days.unwrap_or(90),
            server_log_retention_days: file.audit.server_log_retention_days.unwrap_or(30),
            max_file_mb: file.audit.max_file_mb.unwrap_or(100),
            record_reads: env.parse_bool("RAMPART_AUDIT_RECORD_READS")?.or(file.audit.record_reads).unwrap_or(true),
        };
        range("audit.max_file_mb", audit.max_file_mb, 1, 100_000)?;

        let keys = KeysConfig {
            rotation_days: env.parse_num("RAMPART_KEY_ROTATION_DAYS")?.or(file.keys.rotation_days).unwrap_or(90),
            reencrypt_pause_ms: file.keys.reencrypt_pause_ms.unwrap_or(0),
        };
        range("key_rotation_days", keys.rotation_days, 1, 3650)?;
        let backup = BackupConfig {
            dir: env
                .get("RAMPART_BACKUP_DIR")
                .map(PathBuf::from)
                .or(file.backup.dir)
                .unwrap_or_else(|| server.data_dir.join("backups")),
            // Encrypted unless the operator explicitly allows otherwise.
            encryption_required: match env.get("RAMPART_BACKUP_ENCRYPTION").or(file.backup.encryption) {
                None => true,
                Some(v) if v == "required" => true,
                Some(v) if v == "optional" => false,
                Some(_) => return Err(invalid("RAMPART_BACKUP_ENCRYPTION", "expected required or optional")),
            },
            key_backup_retention_days: file.backup.key_backup_retention_days.unwrap_or(30),
        };
        range("key_backup_retention_days", backup.key_backup_retention_days, 1, 3650)?;

        let b = file.breach_detection;
        let p = file.privacy;
        let pointed: Vec<String> = b
            .webhook
            .iter()
            .filter_map(|w| w.secret_env.clone())
            .chain(p.service_provider.iter().filter_map(|w| w.secret_env.clone()))
            .collect();
        let mut warnings = env.unknown_variables(&pointed);
        warnings.extend(ldap_warnings);
        let mut webhooks = Vec::new();
        if let Some(url) = env.get("RAMPART_BREACH_WEBHOOK_URL") {
            let secret = chain.require(&SecretName::BreachWebhookSecret)?;
            let format = parse_format(env.get("RAMPART_BREACH_WEBHOOK_FORMAT").as_deref())?;
            let previous = match chain.get(&SecretName::BreachWebhookSecretPrevious)? {
                Some(secret) => {
                    let until = env.parse_num("RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS_UNTIL")?.ok_or_else(|| {
                        invalid("RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS_UNTIL", "required with the previous secret")
                    })?;
                    Some(PreviousSecret { secret, until_unix: until })
                }
                None => None,
            };
            webhooks.push(WebhookEndpoint { url, secret, format, previous });
        }
        for w in b.webhook {
            let secret = match (w.secret, w.secret_env) {
                (Some(_), _) => {
                    return Err(invalid(
                        "breach_detection.webhook.secret",
                        "put secrets in the environment: use secret_env",
                    ))
                }
                (None, Some(var)) => chain.require(&SecretName::WebhookSecretEnv(var))?,
                (None, None) => return Err(invalid("breach_detection.webhook", "secret_env is required")),
            };
            webhooks.push(WebhookEndpoint {
                url: w.url,
                secret,
                format: parse_format(w.format.as_deref())?,
                previous: None,
            });
        }
        for w in &webhooks {
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(invalid("webhook url", "must be an http(s) URL"));
            }
        }
        let breach = BreachConfig {
            enabled: env.parse_bool("RAMPART_BREACH_DETECTION_ENABLED")?.or(b.enabled).unwrap_or(true),
            failed_login_threshold: b.failed_login_threshold.unwrap_or(10),
            failed_login_window_minutes: b.failed_login_window_minutes.unwrap_or(5),
            token_failure_threshold: b.token_failure_threshold.unwrap_or(20),
            forbidden_threshold: b.forbidden_threshold.unwrap_or(5),
            anomaly_detection: b.anomaly_detection.unwrap_or(true),
            sqli_detection: b.sqli_detection.unwrap_or(true),
            data_exfiltration_threshold_mb: env
                .parse_num("RAMPART_DATA_EXFILTRATION_THRESHOLD_MB")?
                .or(b.data_exfiltration_threshold_mb)
                .unwrap_or(100),
            exfiltration_window_minutes: b.exfiltration_window_minutes.unwrap_or(60),
            block_duration_hours: b.block_duration_hours.unwrap_or(24),
            alert_dedup_minutes: b.alert_dedup_minutes.unwrap_or(15),
            admin_allowed_ips: parse_cidrs(
                env.get("RAMPART_ADMIN_ALLOWED_IPS")
                    .map(|v| v.split(',').map(str::to_owned).collect())
                    .or(b.admin_allowed_ips)
                    .unwrap_or_default(),
            )?,
            webhooks,
            allow_private_webhook_targets: env.parse_bool("RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS")?.unwrap_or(false),
            instance_id: env.get("RAMPART_INSTANCE_ID").or(b.instance_id).unwrap_or_else(|| "rampart".to_owned()),
        };
        range("failed_login_threshold", breach.failed_login_threshold, 1, 1_000_000)?;
        range("failed_login_window_minutes", breach.failed_login_window_minutes, 1, 1440)?;
        range("data_exfiltration_threshold_mb", breach.data_exfiltration_threshold_mb, 1, 10_000_000)?;
        range("block_duration_hours", breach.block_duration_hours, 1, 24 * 365)?;

        let mut service_providers: Vec<ServiceProvider> = Vec::new();
        for sp in p.service_provider {
            let valid_name = !sp.name.is_empty()
                && sp.name.len() <= 64
                && sp.name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
            if !valid_name || service_providers.iter().any(|x| x.name == sp.name) {
                return Err(invalid("privacy.service_provider.name", "unique, [a-z0-9_-]{1,64}"));
            }
            if !(sp.url.starts_with("https://") || sp.url.starts_with("http://")) {
                return Err(invalid("privacy.service_provider.url", "must be an http(s) URL"));
            }
            // The outbox and its delivery find an endpoint by URL: one URL, one endpoint, or a
            // provider would share another's message (and secret, and format).
            let taken = breach.webhooks.iter().map(|w| &w.url).chain(service_providers.iter().map(|p| &p.endpoint.url));
            if taken.into_iter().any(|u| *u == sp.url) {
                return Err(invalid("privacy.service_provider.url", "already used by a webhook or another provider"));
            }
            let secret = match (sp.secret, sp.secret_env) {
                (Some(_), _) => {
                    return Err(invalid(
                        "privacy.service_provider.secret",
                        "put secrets in the environment: use secret_env",
                    ))
                }
                (None, Some(var)) => chain.require(&SecretName::WebhookSecretEnv(var))?,
                (None, None) => return Err(invalid("privacy.service_provider", "secret_env is required")),
            };
            let endpoint = WebhookEndpoint { url: sp.url, secret, format: WebhookFormat::Generic, previous: None };
            service_providers.push(ServiceProvider { name: sp.name, endpoint });
        }
        let privacy = PrivacyConfig {
            verification_token_minutes: env
                .parse_num("RAMPART_PRIVACY_VERIFICATION_TOKEN_MINUTES")?
                .or(p.verification_token_minutes)
                .unwrap_or(60),
            service_providers,
        };
        range("privacy.verification_token_minutes", privacy.verification_token_minutes, 1, 7 * 24 * 60)?;

        let secrets = Secrets {
            encryption_key: chain.get(&SecretName::EncryptionKey)?,
            admin_username: chain.get_plain(&SecretName::AdminUsername)?,
            admin_password: chain.get(&SecretName::AdminPassword)?,
        };
        Ok(Self {
            server,
            tls,
            auth,
            limits,
            rate_limit,
            cors,
            audit,
            keys,
            backup,
            breach,
            privacy,
            retention,
            secrets,
            warnings,
            sources: ConfigSources::default(),
        })
    }

    /// Defaults only, rooted at `data_dir`: for tests and tools.
    pub fn for_data_dir(data_dir: &Path) -> Result<Self, ConfigError> {
        let flags = Overrides { data_dir: Some(data_dir.to_owned()), ..Overrides::default() };
        Self::assemble(&Env::empty(), &SecretChain(Vec::new()), &flags, FileConfig::default())
    }
}

/// A configuration read but not resolved: the secrets it needs may be in Vault, which is
/// asked (asynchronously, by `rampart-vault`) between [`Config::prepare`] and [`finish`].
///
/// [`finish`]: PendingConfig::finish
pub struct PendingConfig {
    env: Env,
    chain: SecretChain,
    flags: Overrides,
    file: FileConfig,
    vault: Option<VaultSettings>,
    sources: ConfigSources,
}

impl PendingConfig {
    /// `[secrets.vault]` with its credentials, when configured.
    pub fn vault(&self) -> Option<&VaultSettings> {
        self.vault.as_ref()
    }

    /// Every secret this configuration may read that Vault may hold: the fixed ones and each
    /// webhook's and service provider's `secret_env`.
    pub fn secret_names(&self) -> Vec<SecretName> {
        let pointed = self
            .file
            .breach_detection
            .webhook
            .iter()
            .filter_map(|w| w.secret_env.clone())
            .chain(self.file.privacy.service_provider.iter().filter_map(|w| w.secret_env.clone()))
            .map(SecretName::WebhookSecretEnv);
        let mut names: Vec<SecretName> = Vec::new();
        for name in SecretName::FIXED.into_iter().chain(pointed) {
            if name.kept_in_vault() && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Resolves every setting; `first` (the Vault snapshot) is asked before the environment
    /// and the `.secrets` file.
    pub fn finish(self, first: Option<Box<dyn SecretSource>>) -> Result<Config, ConfigError> {
        let PendingConfig { env, chain, flags, file, sources, .. } = self;
        let chain = SecretChain(first.into_iter().chain(chain.0).collect());
        Ok(Config { sources, ..Config::assemble(&env, &chain, &flags, file)? })
    }
}

impl std::fmt::Debug for PendingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingConfig").field("chain", &self.chain).field("vault", &self.vault).finish()
    }
}

/// Exists for the `config_parser` fuzz target (fuzz/): `rampart.toml` text through `Config::load`'s checks.
#[doc(hidden)]
pub fn fuzz_parse_config(text: &str) -> bool {
    // No environment and a fixed data dir. `server.secrets_file` is read by `load`, not by
    // `assemble`, so it is parsed but never opened: nothing here touches the filesystem.
    let file = match FileConfig::parse(text, Path::new("rampart.toml")) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.to_string();
            return false;
        }
    };
    let flags = Overrides { data_dir: Some("/nonexistent".into()), ..Overrides::default() };
    Config::assemble(&Env::empty(), &SecretChain(Vec::new()), &flags, file).map_err(|e| e.to_string()).is_ok()
}

pub(crate) fn range<T: PartialOrd + std::fmt::Display>(name: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(invalid(name, format!("must be between {lo} and {hi}")));
    }
    Ok(())
}

pub(crate) fn parse_format(v: Option<&str>) -> Result<WebhookFormat, ConfigError> {
    match v.unwrap_or("generic") {
        "generic" => Ok(WebhookFormat::Generic),
        "slack" => Ok(WebhookFormat::Slack),
        "pagerduty" => Ok(WebhookFormat::PagerDuty),
        _ => Err(invalid("webhook format", "expected generic, slack or pagerduty")),
    }
}

pub(crate) fn parse_cidrs(items: Vec<String>) -> Result<Vec<Cidr>, ConfigError> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| Cidr::parse(s).map_err(|e| invalid("trusted_proxies", e.to_string())))
        .collect()
}

pub(crate) fn resolve_beside(config_file: Option<&Path>, rel: &Path) -> PathBuf {
    if rel.is_absolute() {
        return rel.to_owned();
    }
    match config_file.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(rel),
        _ => rel.to_owned(),
    }
}
