use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

#[test]
fn defaults_are_secure() {
    let c = Config::load(&Env::empty(), &Overrides::default()).expect("config");
    assert_eq!(c.server.bind.to_string(), "127.0.0.1:9090");
    assert!(!c.server.insecure_http);
    assert_eq!(c.auth.session_timeout_minutes, 30);
    assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
    assert_eq!(c.limits.max_json_depth, 32);
    assert_eq!(c.server.log_dir, PathBuf::from("./rampart-data/logs"));
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("rampart.toml");
    std::fs::write(
        &path,
        "[server]\nbind = \"127.0.0.1:1000\"\ndata_dir = \"/f\"\n[auth]\nsession_timeout_minutes = 5\n",
    )
    .expect("write");
    let flags = Overrides { config: Some(path.clone()), ..Overrides::default() };
    let c = Config::load(&Env::empty(), &flags).expect("file");
    assert_eq!(c.server.bind.port(), 1000);
    assert_eq!(c.auth.session_timeout_minutes, 5);

    let e = env(&[("RAMPART_BIND", "127.0.0.1:2000"), ("RAMPART_SESSION_TIMEOUT_MINUTES", "7")]);
    let c = Config::load(&e, &flags).expect("env");
    assert_eq!(c.server.bind.port(), 2000);
    assert_eq!(c.auth.session_timeout_minutes, 7);
    assert_eq!(c.server.data_dir, PathBuf::from("/f"));

    let flags = Overrides { bind: Some("127.0.0.1:3000".into()), ..flags };
    assert_eq!(Config::load(&e, &flags).expect("flags").server.bind.port(), 3000);
}

#[test]
fn unknown_file_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, "[server]\nbnd = \"x\"\n").expect("write");
    let flags = Overrides { config: Some(path), ..Overrides::default() };
    let err = Config::load(&Env::empty(), &flags).expect_err("typo");
    assert!(err.to_string().contains("bnd"), "{err}");
}

#[test]
fn insecure_http_only_on_loopback() {
    let flags = Overrides { insecure_http: true, bind: Some("0.0.0.0:9090".into()), ..Overrides::default() };
    assert!(Config::load(&Env::empty(), &flags).is_err());
    let flags = Overrides { bind: Some("[::1]:9090".into()), ..flags };
    assert!(Config::load(&Env::empty(), &flags).is_ok());
}

#[test]
fn secrets_come_from_env_file_var_or_secrets_file_and_debug_redacts() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret_path = dir.path().join("pw");
    std::fs::write(&secret_path, "Canary-Secret-123!\n").expect("write");
    let e = env(&[("RAMPART_ADMIN_PASSWORD_FILE", secret_path.to_str().expect("utf8"))]);
    let c = Config::load(&e, &Overrides::default()).expect("file var");
    let pw = c.secrets.admin_password.as_ref().map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned());
    assert_eq!(pw.as_deref(), Some("Canary-Secret-123!"));
    assert!(!format!("{c:?}").contains("Canary-Secret"));

    let both = env(&[("RAMPART_ADMIN_PASSWORD", "x"), ("RAMPART_ADMIN_PASSWORD_FILE", "/y")]);
    assert!(Config::load(&both, &Overrides::default()).is_err());

    std::fs::write(dir.path().join(".secrets"), "# generated\nRAMPART_ENCRYPTION_KEY=abc\n").expect("w");
    let toml = dir.path().join("rampart.toml");
    std::fs::write(&toml, "[server]\nsecrets_file = \".secrets\"\n").expect("w");
    let flags = Overrides { config: Some(toml), ..Overrides::default() };
    let c = Config::load(&Env::empty(), &flags).expect("secrets file");
    assert!(c.secrets.encryption_key.is_some());
    let c = Config::load(&env(&[("RAMPART_ENCRYPTION_KEY", "fromenv")]), &flags).expect("env wins");
    let k = c.secrets.encryption_key.as_ref().map(|s| secrecy::ExposeSecret::expose_secret(s).to_owned());
    assert_eq!(k.as_deref(), Some("fromenv"));
}

#[test]
fn out_of_range_values_are_named() {
    let e = env(&[("RAMPART_SESSION_TIMEOUT_MINUTES", "0")]);
    let err = Config::load(&e, &Overrides::default()).expect_err("range");
    assert!(err.to_string().contains("session_timeout_minutes"));
    let e = env(&[("RAMPART_SESSION_TIMEOUT_MINUTES", "abc")]);
    assert!(Config::load(&e, &Overrides::default()).is_err());
}

#[test]
fn rate_limit_cors_audit_and_proxies_have_secure_defaults_and_validate() {
    let c = Config::load(&Env::empty(), &Overrides::default()).expect("config");
    assert!(c.rate_limit.enabled);
    assert_eq!((c.rate_limit.requests_per_minute, c.rate_limit.login_requests_per_minute), (1000, 30));
    assert!(c.cors.allowed_origins.is_empty(), "CORS denies by default");
    assert!(c.server.trusted_proxies.is_empty(), "no forwarding headers believed by default");
    assert_eq!(c.audit.retention_days, 2555);

    let e = env(&[
        ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32, 10.0.0.0/8"),
        ("RAMPART_CORS_ALLOWED_ORIGINS", "https://a.example"),
    ]);
    let c = Config::load(&e, &Overrides::default()).expect("env");
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.cors.allowed_origins, vec!["https://a.example".to_owned()]);
    for bad in [
        ("RAMPART_CORS_ALLOWED_ORIGINS", "*"),
        ("RAMPART_TRUSTED_PROXIES", "10.0.0.0/40"),
        ("RAMPART_RATE_LIMIT_LOGIN_REQUESTS_PER_MINUTE", "0"),
    ] {
        assert!(Config::load(&env(&[bad]), &Overrides::default()).is_err(), "{bad:?}");
    }
}

#[test]
fn misspelled_variables_are_named_with_the_closest_known_one() {
    let env = Env::from_pairs([
        ("RAMPART_REQUIRE_MFA_FOR_ROLE".to_owned(), "none".to_owned()),
        ("RAMPART_ENCRYPTION_KEY_FILE".to_owned(), "/dev/null".to_owned()),
        ("RAMPART_DATA_DIR".to_owned(), "/tmp/x".to_owned()),
    ]);
    let warnings = env.unknown_variables(&[]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("RAMPART_REQUIRE_MFA_FOR_ROLE ") && warnings[0].contains("RAMPART_REQUIRE_MFA_FOR_ROLES")
    );
}

/// The list of known variables matches what the code reads, so a new setting cannot be
/// reported as a typo (nor a typo go unreported because the list is stale).
#[test]
fn the_known_variable_list_matches_the_code() {
    let src = concat!(include_str!("lib.rs"), include_str!("env.rs"), include_str!("secrets.rs"));
    let mut read: Vec<&str> = src
        .match_indices("\"RAMPART_")
        .filter_map(|(i, _)| src[i + 1..].split('"').next())
        .filter(|n| {
            n.len() > "RAMPART_".len() && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    read.sort_unstable();
    read.dedup();
    for name in read {
        let base = name.strip_suffix("_FILE").unwrap_or(name);
        assert!(
            crate::env::KNOWN_VARIABLES.contains(&name) || crate::env::KNOWN_VARIABLES.contains(&base),
            "{name} is read but not in KNOWN_VARIABLES"
        );
    }
}

#[test]
fn database_url_is_sqlite_by_default_and_never_echoed_in_errors() {
    let dir = std::path::Path::new("/srv/rampart");
    let flags = Overrides { data_dir: Some(dir.to_owned()), ..Overrides::default() };
    let c = Config::load(&Env::empty(), &flags).unwrap();
    assert_eq!(c.server.database, DatabaseUrl::Sqlite { dir: dir.to_owned() });
    let url = |u: &str| Config::load(&env(&[("RAMPART_DATABASE_URL", u)]), &flags);
    assert_eq!(
        url("sqlite:///var/lib/db/rampart.db").unwrap().server.database,
        DatabaseUrl::Sqlite { dir: "/var/lib/db".into() }
    );
    assert_eq!(url("sqlite://rampart.db").unwrap().server.database, DatabaseUrl::Sqlite { dir: ".".into() });
    let pg = url("postgres://app:Sup3r-Secret@db1:5432,db2:5432/rampart?target_session_attrs=read-write").unwrap();
    match &pg.server.database {
        DatabaseUrl::Postgres(u) => assert!(u.expose().starts_with("postgres://app:Sup3r-Secret@db1")),
        other => panic!("not PostgreSQL: {other:?}"),
    }
    assert!(!format!("{:?}", pg.server).contains("Sup3r-Secret"), "the URL's password is never printed");
    for bad in ["postgres://", "mysql://app:Sup3r-Secret@x", "sqlite:///var/lib/other.db", "rampart.db"] {
        let e = url(bad).unwrap_err().to_string();
        assert!(e.contains("database_url") && !e.contains("Sup3r-Secret"), "{bad}: {e}");
    }
    let flag = Overrides { database_url: Some("sqlite:///flag/rampart.db".into()), ..flags.clone() };
    let c = Config::load(&env(&[("RAMPART_DATABASE_URL", "sqlite:///env/rampart.db")]), &flag);
    assert_eq!(c.unwrap().server.database, DatabaseUrl::Sqlite { dir: "/flag".into() }, "flags win");
}

#[test]
fn rate_limit_backend_is_memory_by_default_and_redis_needs_a_url() {
    let load = |pairs: &[(&str, &str)]| Config::load(&env(pairs), &Overrides::default());
    assert_eq!(load(&[]).unwrap().rate_limit.backend, RateLimitBackend::Memory);
    let url = "redis://:Sup3r-Secret@127.0.0.1:6379/2";
    let c = load(&[("RAMPART_RATE_LIMIT_BACKEND", "redis"), ("RAMPART_REDIS_URL", url)]).unwrap();
    let RateLimitBackend::Redis(r) = &c.rate_limit.backend else { panic!("not redis: {:?}", c.rate_limit.backend) };
    assert_eq!(r.url.expose(), url);
    assert_eq!((r.login_when_unreachable, r.api_when_unreachable), (FailMode::Closed, FailMode::Open), "defaults");
    assert!(!format!("{:?}", c.rate_limit).contains("Sup3r-Secret"), "the URL's password is never printed");
    let c = load(&[
        ("RAMPART_RATE_LIMIT_BACKEND", "redis"),
        ("RAMPART_REDIS_URL", url),
        ("RAMPART_RATE_LIMIT_LOGIN_WHEN_UNREACHABLE", "open"),
        ("RAMPART_RATE_LIMIT_API_WHEN_UNREACHABLE", "closed"),
    ])
    .unwrap();
    let RateLimitBackend::Redis(r) = &c.rate_limit.backend else { panic!("not redis") };
    assert_eq!((r.login_when_unreachable, r.api_when_unreachable), (FailMode::Open, FailMode::Closed));
    // A secret like the others: from a file named by RAMPART_REDIS_URL_FILE, never both.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let path = file.display().to_string();
    let c = load(&[("RAMPART_RATE_LIMIT_BACKEND", "redis"), ("RAMPART_REDIS_URL_FILE", &path)]).unwrap();
    let RateLimitBackend::Redis(r) = &c.rate_limit.backend else { panic!("not redis") };
    assert_eq!(r.url.expose(), url);
    let both = [("RAMPART_RATE_LIMIT_BACKEND", "redis"), ("RAMPART_REDIS_URL_FILE", &path), ("RAMPART_REDIS_URL", url)];
    let e = load(&both).unwrap_err().to_string();
    assert!(e.contains("RAMPART_REDIS_URL") && !e.contains("Sup3r-Secret"), "{e}");
    for (bad, key) in [
        (vec![("RAMPART_RATE_LIMIT_BACKEND", "redis")], "redis_url"),
        (vec![("RAMPART_REDIS_URL", url)], "redis_url"),
        (vec![("RAMPART_RATE_LIMIT_BACKEND", "memcached")], "backend"),
        (vec![("RAMPART_RATE_LIMIT_BACKEND", "redis"), ("RAMPART_REDIS_URL", "http://:Sup3r-Secret@x")], "redis_url"),
        (
            vec![
                ("RAMPART_RATE_LIMIT_BACKEND", "redis"),
                ("RAMPART_REDIS_URL", url),
                ("RAMPART_RATE_LIMIT_LOGIN_WHEN_UNREACHABLE", "maybe"),
            ],
            "login_when_unreachable",
        ),
    ] {
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains(key) && !e.contains("Sup3r-Secret"), "{bad:?}: {e}");
    }
}

#[test]
fn node_id_is_checked_and_defaults_to_a_valid_name() {
    let c = Config::load(&Env::empty(), &Overrides::default()).unwrap();
    assert!(!c.server.node_id.is_empty() && c.server.node_id.len() <= 64);
    let id = |v: &str| Config::load(&env(&[("RAMPART_NODE_ID", v)]), &Overrides::default());
    assert_eq!(id("node-b.eu_1").unwrap().server.node_id, "node-b.eu_1");
    for bad in ["a b", "x'--", &"n".repeat(65)] {
        assert!(id(bad).unwrap_err().to_string().contains("node_id"), "{bad:?}");
    }
}

// Secret sources (secrets.rs).

fn exposed(s: &secrecy::SecretString) -> String {
    secrecy::ExposeSecret::expose_secret(s).to_owned()
}

/// A `rampart.toml` naming a `.secrets` file with these lines, in a fresh directory.
fn with_secrets_file(lines: &str) -> (tempfile::TempDir, Overrides) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join(".secrets"), lines).expect("write");
    let toml = dir.path().join("rampart.toml");
    std::fs::write(&toml, "[server]\nsecrets_file = \".secrets\"\n").expect("write");
    (dir, Overrides { config: Some(toml), ..Overrides::default() })
}

/// A stand-in for a source put in front of the others (Vault, later): fixed answers.
struct Fixed(Vec<(SecretName, &'static str)>);

impl SecretSource for Fixed {
    fn describe(&self) -> String {
        "fixed".to_owned()
    }
    fn get(&self, name: &SecretName) -> Result<Option<secrecy::SecretString>, SecretError> {
        Ok(self.0.iter().find(|(n, _)| n == name).map(|(_, v)| secrecy::SecretString::from(*v)))
    }
}

#[test]
fn every_secret_name_is_a_known_variable() {
    for name in SecretName::FIXED {
        assert!(crate::env::KNOWN_VARIABLES.contains(&name.env_var()), "{name}");
        assert_eq!(name.to_string(), name.env_var());
    }
    assert_eq!(SecretName::WebhookSecretEnv("OPS_HOOK".into()).env_var(), "OPS_HOOK");
}

#[test]
fn environment_wins_over_the_secrets_file_and_the_first_source_wins_in_a_chain() {
    let (_dir, flags) = with_secrets_file(
        "RAMPART_ENCRYPTION_KEY=from-file\nRAMPART_ADMIN_USERNAME=file-admin\nRAMPART_ADMIN_PASSWORD=file-pw\n",
    );
    let e = env(&[("RAMPART_ENCRYPTION_KEY", "from-env"), ("RAMPART_ADMIN_USERNAME", "env-admin")]);
    let c = Config::load(&e, &flags).expect("config");
    assert_eq!(c.secrets.encryption_key.as_ref().map(exposed).as_deref(), Some("from-env"));
    assert_eq!(c.secrets.admin_username.as_deref(), Some("env-admin"));
    assert_eq!(c.secrets.admin_password.as_ref().map(exposed).as_deref(), Some("file-pw"), "file fills gaps");

    // As before the port: `X_FILE` works in the file too, and other settings written there
    // apply beneath the environment.
    let pw = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(pw.path(), "file-pw\n").expect("write");
    let (_dir, flags) = with_secrets_file(&format!(
        "RAMPART_ADMIN_PASSWORD_FILE={}\nRAMPART_BIND=127.0.0.1:4000\n",
        pw.path().display()
    ));
    let c = Config::load(&Env::empty(), &flags).expect("config");
    assert_eq!(c.secrets.admin_password.as_ref().map(exposed).as_deref(), Some("file-pw"));
    assert_eq!(c.server.bind.port(), 4000);

    // The same through the port: the first source that holds a secret wins.
    let front = Fixed(vec![(SecretName::AdminPassword, "front-pw")]);
    let chain =
        SecretChain(vec![Box::new(front), Box::new(EnvSecrets::new(env(&[("RAMPART_ADMIN_PASSWORD", "env-pw")])))]);
    assert_eq!(chain.get(&SecretName::AdminPassword).expect("get").as_ref().map(exposed).as_deref(), Some("front-pw"));
    assert!(chain.get(&SecretName::EncryptionKey).expect("get").is_none());
    let chain = SecretChain(vec![
        Box::new(EnvSecrets::new(env(&[("RAMPART_ADMIN_PASSWORD", "env-pw")]))),
        Box::new(Fixed(vec![])),
    ]);
    assert_eq!(chain.get(&SecretName::AdminPassword).expect("get").as_ref().map(exposed).as_deref(), Some("env-pw"));
}

#[test]
fn value_and_file_variant_together_are_refused_in_every_source() {
    let both = env(&[("RAMPART_ADMIN_PASSWORD", "Canary-Both-1"), ("RAMPART_ADMIN_PASSWORD_FILE", "/nonexistent")]);
    let err = Config::load(&both, &Overrides::default()).expect_err("both");
    assert!(
        matches!(err, ConfigError::Secret(SecretError::Conflict { name: SecretName::AdminPassword, .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("RAMPART_ADMIN_PASSWORD") && text.contains("RAMPART_ADMIN_PASSWORD_FILE"), "{text}");

    let (dir, flags) = with_secrets_file("RAMPART_ENCRYPTION_KEY=Canary-Both-2\nRAMPART_ENCRYPTION_KEY_FILE=/x\n");
    let err = Config::load(&Env::empty(), &flags).expect_err("both in the file").to_string();
    assert!(err.contains("RAMPART_ENCRYPTION_KEY_FILE") && err.contains(&dir.path().display().to_string()), "{err}");

    // An error in a source stops the chain: a later source does not paper over it.
    let chain =
        SecretChain(vec![Box::new(EnvSecrets::new(both)), Box::new(Fixed(vec![(SecretName::AdminPassword, "later")]))]);
    assert!(chain.get(&SecretName::AdminPassword).is_err());
}

#[test]
fn a_missing_required_secret_names_itself_and_every_place_looked() {
    let (dir, flags) = with_secrets_file("RAMPART_ADMIN_PASSWORD=x\n");
    let e = env(&[("RAMPART_BREACH_WEBHOOK_URL", "https://hooks.example/alert")]);
    let err = Config::load(&e, &flags).expect_err("missing");
    let secrets_path = dir.path().join(".secrets").display().to_string();
    match &err {
        ConfigError::Secret(SecretError::Missing { name, looked_in }) => {
            assert_eq!(name, &SecretName::BreachWebhookSecret);
            assert_eq!(looked_in, &vec![EnvSecrets::new(Env::empty()).describe(), secrets_path.clone()]);
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("RAMPART_BREACH_WEBHOOK_SECRET") && text.contains("environment"), "{text}");
    assert!(text.contains(&secrets_path), "{text}");

    // A `[[breach_detection.webhook]]` names its own variable; the error names that one.
    let toml = dir.path().join("hooks.toml");
    std::fs::write(&toml, "[[breach_detection.webhook]]\nurl = \"https://h.example\"\nsecret_env = \"OPS_HOOK\"\n")
        .expect("write");
    let err = Config::load(&Env::empty(), &Overrides { config: Some(toml), ..Overrides::default() })
        .expect_err("missing")
        .to_string();
    assert!(err.contains("OPS_HOOK") && err.contains("environment"), "{err}");

    // Both are found once set, in either place.
    let e = env(&[("RAMPART_BREACH_WEBHOOK_URL", "https://hooks.example/alert")]);
    let (_dir, flags) = with_secrets_file("RAMPART_BREACH_WEBHOOK_SECRET=s\n");
    assert_eq!(Config::load(&e, &flags).expect("from file").breach.webhooks.len(), 1);
}

#[test]
fn secret_values_never_appear_in_errors_or_debug_output() {
    let dir = tempfile::tempdir().expect("tmp");
    let canary = "Canary-Value-7f3a";
    let errors: Vec<ConfigError> = vec![
        // Both set: the value must not be echoed.
        Config::load(
            &env(&[("RAMPART_ENCRYPTION_KEY", canary), ("RAMPART_ENCRYPTION_KEY_FILE", canary)]),
            &Overrides::default(),
        )
        .expect_err("both"),
        // An unreadable `_FILE`: the error names the file, never a value.
        Config::load(
            &env(&[("RAMPART_ADMIN_PASSWORD_FILE", "/nonexistent/pw"), ("RAMPART_ENCRYPTION_KEY", canary)]),
            &Overrides::default(),
        )
        .expect_err("unreadable"),
        // Missing, with other secrets set beside it.
        Config::load(
            &env(&[("RAMPART_BREACH_WEBHOOK_URL", "https://h.example"), ("RAMPART_ADMIN_PASSWORD", canary)]),
            &Overrides::default(),
        )
        .expect_err("missing"),
    ];
    assert!(errors[1].to_string().contains("/nonexistent/pw") && errors[1].to_string().contains("_FILE"));
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!text.contains("Canary-Value"), "{text}");
        }
    }

    std::fs::write(dir.path().join(".secrets"), format!("RAMPART_ADMIN_PASSWORD={canary}\n")).expect("write");
    let file = SecretsFile::read(&dir.path().join(".secrets")).expect("read");
    let chain =
        SecretChain(vec![Box::new(EnvSecrets::new(env(&[("RAMPART_ENCRYPTION_KEY", canary)]))), Box::new(file)]);
    let value = chain.get(&SecretName::AdminPassword).expect("get").expect("set");
    assert_eq!(exposed(&value), canary);
    let c = Config::load(&env(&[("RAMPART_ENCRYPTION_KEY", canary)]), &Overrides::default()).expect("config");
    let file = SecretsFile::read(&dir.path().join(".secrets")).expect("read");
    for text in [format!("{value:?}"), format!("{chain:?}"), format!("{file:?}"), format!("{c:?}")] {
        assert!(!text.contains("Canary-Value"), "{text}");
    }
}

#[test]
fn retention_defaults_keep_everything_and_settings_layer_and_validate() {
    let c = Config::load(&Env::empty(), &Overrides::default()).expect("config");
    let r = &c.retention;
    assert!(!r.enabled && !r.auto_delete_expired && !r.deletes(), "nothing is deleted unless asked");
    assert_eq!((r.default_retention_days, r.pii_retention_days), (None, None), "unset keeps forever");
    assert_eq!((r.audit_log_retention_days, c.audit.retention_days), (2555, 2555));

    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("rampart.toml");
    std::fs::write(
        &path,
        "[audit]\nretention_days = 400\n[retention]\nenabled = true\nauto_delete_expired = true\n\
         default_retention_days = 365\npii_retention_days = 90\nbatch_size = 5\n",
    )
    .expect("write");
    let flags = Overrides { config: Some(path.clone()), ..Overrides::default() };
    let c = Config::load(&Env::empty(), &flags).expect("file");
    assert!(c.retention.deletes());
    assert_eq!((c.retention.default_retention_days, c.retention.pii_retention_days), (Some(365), Some(90)));
    assert_eq!(c.retention.batch_size, 5);
    assert_eq!(
        (c.retention.audit_log_retention_days, c.audit.retention_days),
        (400, 400),
        "the older name still works"
    );

    let e = env(&[
        ("RAMPART_RETENTION_AUDIT_LOG_RETENTION_DAYS", "3000"),
        ("RAMPART_RETENTION_PII_RETENTION_DAYS", "30"),
        ("RAMPART_RETENTION_AUTO_DELETE_EXPIRED", "false"),
    ]);
    let c = Config::load(&e, &flags).expect("env");
    assert_eq!(
        (c.retention.audit_log_retention_days, c.audit.retention_days),
        (3000, 3000),
        "one setting, new name wins"
    );
    assert_eq!(c.retention.pii_retention_days, Some(30));
    assert!(!c.retention.deletes());
    assert!(e.unknown_variables(&[]).is_empty(), "the retention variables are known");

    for (bad, key) in [
        ("RAMPART_RETENTION_DEFAULT_RETENTION_DAYS", "retention.default_retention_days"),
        ("RAMPART_RETENTION_PII_RETENTION_DAYS", "retention.pii_retention_days"),
        ("RAMPART_RETENTION_AUDIT_LOG_RETENTION_DAYS", "retention.audit_log_retention_days"),
        ("RAMPART_RETENTION_BATCH_SIZE", "retention.batch_size"),
    ] {
        let err = Config::load(&env(&[(bad, "0")]), &Overrides::default()).expect_err(bad).to_string();
        assert!(err.contains(key) && err.contains("between"), "{err}");
    }
    let err = Config::load(&env(&[("RAMPART_RETENTION_ENABLED", "maybe")]), &Overrides::default()).expect_err("bool");
    assert!(err.to_string().contains("RAMPART_RETENTION_ENABLED"), "{err}");
    std::fs::write(&path, "[retention]\ndefault_retention_dayz = 3\n").expect("write");
    let err = Config::load(&Env::empty(), &flags).expect_err("unknown key").to_string();
    assert!(err.contains("default_retention_dayz"), "{err}");
}

#[test]
fn service_providers_need_a_name_a_secret_variable_and_a_url_of_their_own() {
    let dir = tempfile::tempdir().expect("tmp");
    let load = |toml: &str, vars: &[(&str, &str)]| {
        let path = dir.path().join("providers.toml");
        std::fs::write(&path, toml).expect("write");
        Config::load(&env(vars), &Overrides { config: Some(path), ..Overrides::default() })
    };
    let crm = "[[privacy.service_provider]]\nname = \"crm\"\nurl = \"https://crm.example/hook\"\nsecret_env = \"RAMPART_CRM\"\n";
    let ok = load(crm, &[("RAMPART_CRM", "s3cret-crm")]).expect("valid");
    assert_eq!(ok.privacy.service_providers[0].name, "crm");
    assert_eq!(ok.privacy.verification_token_minutes, 60);
    let missing = load(crm, &[]).expect_err("no secret").to_string();
    assert!(missing.contains("RAMPART_CRM"), "{missing}");
    let twice = format!("{crm}{}", crm.replace("name = \"crm\"", "name = \"crm2\""));
    let dup = load(&twice, &[("RAMPART_CRM", "s")]).expect_err("one URL, one endpoint").to_string();
    assert!(dup.contains("privacy.service_provider.url"), "{dup}");
    let vars = [
        ("RAMPART_CRM", "s"),
        ("RAMPART_BREACH_WEBHOOK_URL", "https://crm.example/hook"),
        ("RAMPART_BREACH_WEBHOOK_SECRET", "w"),
    ];
    let shared = load(crm, &vars).expect_err("not a breach webhook's URL either").to_string();
    assert!(shared.contains("already used"), "{shared}");
    let bad_name = load(&crm.replace("\"crm\"", "\"CRM Inc\""), &[("RAMPART_CRM", "s")]).expect_err("name").to_string();
    assert!(bad_name.contains("privacy.service_provider.name"), "{bad_name}");
    let inline =
        load(&crm.replace("secret_env = \"RAMPART_CRM\"", "secret = \"plain\""), &[]).expect_err("no inline secret");
    assert!(!inline.to_string().contains("plain"), "{inline}");
}

/// Answers nothing and remembers every secret asked of it.
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<SecretName>>>);

impl SecretSource for Recorder {
    fn describe(&self) -> String {
        "recorder".to_owned()
    }
    fn get(&self, name: &SecretName) -> Result<Option<secrecy::SecretString>, SecretError> {
        self.0.lock().expect("lock").push(name.clone());
        Ok(None)
    }
}

/// Vault is read before the configuration is resolved, so the list of names it is asked for
/// must hold every secret the configuration reads (a secret added without it would silently
/// skip Vault).
#[test]
fn vault_is_asked_in_advance_for_every_secret_the_configuration_reads() {
    let dir = tempfile::tempdir().expect("tmp");
    let toml = dir.path().join("rampart.toml");
    std::fs::write(
        &toml,
        "[rate_limit]\nbackend = \"redis\"\n\n\
         [[breach_detection.webhook]]\nurl = \"https://h.example\"\nsecret_env = \"OPS_HOOK\"\n\n\
         [[privacy.service_provider]]\nname = \"crm\"\nurl = \"https://crm.example/hook\"\nsecret_env = \"RAMPART_CRM\"\n\n\
         [auth.ldap]\nurl = \"ldaps://ldap.example\"\nbind_dn = \"cn=svc,dc=example\"\n\
         user_base = \"ou=people,dc=example\"\ngroup_base = \"ou=groups,dc=example\"\ndefault_role = \"viewer\"\n\n\
         [auth.oidc]\nissuer = \"https://idp.example\"\nclient_id = \"rampart\"\n\
         redirect_url = \"https://db.example/api/v1/auth/oidc/callback\"\ndefault_role = \"viewer\"\n",
    )
    .expect("write");
    let flags = Overrides { config: Some(toml), ..Overrides::default() };
    let e = env(&[
        ("RAMPART_ENCRYPTION_KEY", "k"),
        ("RAMPART_ADMIN_USERNAME", "admin"),
        ("RAMPART_ADMIN_PASSWORD", "p"),
        ("RAMPART_BREACH_WEBHOOK_URL", "https://b.example"),
        ("RAMPART_BREACH_WEBHOOK_SECRET", "s"),
        ("RAMPART_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("OPS_HOOK", "o"),
        ("RAMPART_CRM", "c"),
        ("RAMPART_OIDC_CLIENT_SECRET", "x"),
        ("RAMPART_LDAP_BIND_PASSWORD", "x"),
    ]);
    let pending = Config::prepare(&e, &flags).expect("prepare");
    let listed = pending.secret_names();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    pending.finish(Some(Box::new(Recorder(asked.clone())))).expect("config");
    let asked = asked.lock().expect("lock").clone();
    assert!(
        asked.len() >= 9
            && asked.contains(&SecretName::OidcClientSecret)
            && asked.contains(&SecretName::LdapBindPassword),
        "{asked:?}"
    );
    for name in asked.iter().filter(|n| n.kept_in_vault()) {
        assert!(listed.contains(name), "{name} is read but Vault is not asked for it in advance");
    }
}

fn oidc_load(section: &str, e: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, format!("[auth.oidc]\n{section}")).expect("write");
    let flags = Overrides { config: Some(path), ..Overrides::default() };
    Config::load(&env(e), &flags)
}

const OIDC_OK: &str = "issuer = \"https://idp.example\"\nclient_id = \"rampart\"\n\
    redirect_url = \"https://db.example/api/v1/auth/oidc/callback\"\ndefault_role = \"viewer\"\n";

#[test]
fn oidc_config_is_validated_naming_the_key_and_its_secret_comes_only_from_the_secret_chain() {
    let secret = [("RAMPART_OIDC_CLIENT_SECRET", "canary-oidc-secret-value")];
    let c = oidc_load(OIDC_OK, &secret).expect("valid");
    let o = c.auth.oidc.as_ref().expect("configured");
    assert_eq!(o.scopes, ["openid", "profile", "email"]);
    assert_eq!(o.username_claim, "preferred_username");
    assert_eq!(o.browser_redirect, "/");
    assert!(!format!("{c:?}").contains("canary-oidc-secret-value"), "Debug redacts the client secret");
    // Loopback may use plain http; anything else may not.
    let local = OIDC_OK.replace("https://idp.example", "http://127.0.0.1:8080");
    assert!(oidc_load(&local, &secret).is_ok());
    let cases: &[(&str, &str)] =
        &[("client_secret = \"x\"\n", "auth.oidc.client_secret"), ("", "RAMPART_OIDC_CLIENT_SECRET")];
    for (extra, key) in cases {
        let e: &[(&str, &str)] = if extra.is_empty() { &[] } else { &secret };
        let err = oidc_load(&format!("{OIDC_OK}{extra}"), e).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
        assert!(!err.contains("canary"), "{err}");
    }
    let bad: &[(&str, &str, &str)] = &[
        ("https://idp.example", "http://idp.example", "auth.oidc.issuer"),
        ("https://db.example/api/v1/auth/oidc/callback", "https://db.example/elsewhere", "auth.oidc.redirect_url"),
        ("default_role = \"viewer\"", "default_role = \"no such!\"", "auth.oidc.default_role"),
        ("default_role = \"viewer\"", "", "auth.oidc"),
        (
            "client_id = \"rampart\"\n",
            "client_id = \"rampart\"\nbrowser_redirect = \"//evil.example/\"\n",
            "auth.oidc.browser_redirect",
        ),
        ("client_id = \"rampart\"\n", "", "auth.oidc.client_id"),
    ];
    for (from, to, key) in bad {
        let err = oidc_load(&OIDC_OK.replace(from, to), &secret).unwrap_err().to_string();
        assert!(err.contains(key), "{to}: {err}");
    }
    let err = oidc_load(&format!("{OIDC_OK}browser_redirect = \"https://evil.example/\"\n"), &secret)
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.oidc.browser_redirect"), "{err}");
    let err = oidc_load(&format!("{OIDC_OK}scopes = [\"profile\"]\n"), &secret).unwrap_err().to_string();
    assert!(err.contains("auth.oidc.scopes"), "{err}");
}
