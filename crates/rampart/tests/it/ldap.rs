//! `rampart serve` with `[auth.ldap]` against a real slapd: `App::open` wires the provider,
//! and neither the directory's outage nor its plain-LDAP opt-in puts the bind password in
//! any log.

use rampart_testkit::ldap::{password_of, LdapServer, SERVICE_PASSWORD};
use rampart_testkit::{contains, files_under};

use crate::support::{start, ServerOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_ldap_logs_directory_users_in_and_no_bind_password_anywhere() {
    let mut ldap = LdapServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("rampart.toml");
    std::fs::write(&config, ldap.config_toml(&ldap.ldaps_url(), "")).unwrap();
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_LDAP_BIND_PASSWORD", SERVICE_PASSWORD.to_owned()));
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    let server = start(opts);
    let c = server.client();
    let token = server.login(&c, "alice", &password_of("alice")).await;
    assert_eq!(server.get_json(&token, "/api/v1/auth/me").await["role"], "editor");
    ldap.stop();
    let res = c
        .post(server.url("/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "carol", "password": password_of("carol")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "identity_provider_unavailable");
    // The local admin does not need the directory.
    server.login(&c, "admin", crate::support::ADMIN_PASSWORD).await;
    let stderr = server.stderr_path.clone();
    assert!(server.stop().success());
    let mut files = files_under(&data);
    files.push((stderr.display().to_string(), std::fs::read(&stderr).unwrap()));
    let server_log = files.iter().find(|(p, _)| p.contains("server.log")).expect("server.log");
    assert!(contains(&server_log.1, b"IdentityProviderUnavailable"), "the cause is logged for the operator");
    for (path, bytes) in files {
        assert!(!contains(&bytes, SERVICE_PASSWORD.as_bytes()), "bind password in {path}");
        assert!(!contains(&bytes, password_of("alice").as_bytes()), "user password in {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ldap_works_only_opted_in_and_is_warned_about_at_start() {
    let ldap = LdapServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("rampart.toml");
    let opts = |config: &std::path::Path| {
        let mut opts = ServerOpts::new(&data);
        opts.env.push(("RAMPART_LDAP_BIND_PASSWORD", SERVICE_PASSWORD.to_owned()));
        opts.extra_args = vec!["--config".into(), config.display().to_string()];
        opts
    };
    std::fs::write(&config, ldap.config_toml(&ldap.ldap_url(), "starttls = false")).unwrap();
    let mut refused = crate::support::bin();
    let out = refused
        .args(["serve", "--data-dir", &data.display().to_string(), "--config", &config.display().to_string()])
        .env("RAMPART_LDAP_BIND_PASSWORD", SERVICE_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.ldap.starttls") && err.contains("allow_insecure"), "{err}");
    assert!(!data.exists(), "nothing written");

    let insecure = ldap.config_toml(&ldap.ldap_url(), "starttls = false\nallow_insecure = true");
    std::fs::write(&config, insecure).unwrap();
    let server = start(opts(&config));
    let c = server.client();
    server.login(&c, "alice", &password_of("alice")).await;
    let stderr = std::fs::read_to_string(&server.stderr_path).unwrap();
    assert!(stderr.contains("auth.ldap") && stderr.contains("in clear"), "{stderr}");
    assert!(server.stop().success());
}
