use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::{bin, contains, files_under, start, ServerOpts, ADMIN_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binary_over_tls_login_collection_insert_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let c = server.client();
    let health = c.get(server.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers()["strict-transport-security"].to_str().unwrap().contains("max-age=31536000"));
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let res = c
        .post(server.url("/api/v1/collections"))
        .bearer_auth(&token)
        .json(&json!({"name": "patients", "indexes": ["email"], "pii_fields": ["email"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = c
        .post(server.url("/api/v1/collections/patients/documents"))
        .bearer_auth(&token)
        .json(&json!({"data": {"email": "ann@example.com", "name": "Ann"}, "subject_id": "patient-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["etag"], "\"1\"");
    let list: Value = c
        .get(server.url("/api/v1/collections/patients/documents?email=ann@example.com"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["documents"][0]["data"]["name"], "Ann");

    // First-run files and their modes.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("rampart.db")), 0o600);
    assert_eq!(mode(&data.join("tls/key.pem")), 0o600);
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_offers_only_modern_versions_and_aead_ecdhe_suites() {
    use rustls::pki_types::ServerName;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let pem = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (_, conn) = tls.get_ref();
        let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
        assert!(suite.contains("GCM") || suite.contains("CHACHA20_POLY1305"), "{suite}");
        if version == &rustls::version::TLS12 {
            assert!(suite.contains("ECDHE"), "{suite}");
        }
    }
    // Plain HTTP to the TLS port gets nothing useful.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/health")).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    c.post(server.url("/api/v1/collections")).bearer_auth(&token).json(&json!({"name": "log"})).send().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..150 {
        let res = c
            .post(server.url("/api/v1/collections/log/documents"))
            .bearer_auth(&token)
            .json(&json!({"data": {"i": i}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    server.kill_9();

    let server = start(ServerOpts::new(&data));
    let c = server.client();
    // The session acknowledged before the crash survives too.
    let mut found = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = c
            .get(server.url(&format!("/api/v1/collections/log/documents?limit=100{cursor}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for d in page["documents"].as_array().unwrap() {
            found.push(d["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(found, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_files_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--log-dir".into(), logs.display().to_string()];
    let server = start(opts);
    let c = server.client();
    c.post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": format!("{ADMIN_PASSWORD}-wrong")}))
        .send()
        .await
        .unwrap();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    c.post(server.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"username": "eve", "password": ADMIN_PASSWORD, "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let stderr_path = server.stderr_path.clone();
    assert!(server.stop().success());
    let mut files = files_under(&data);
    files.extend(files_under(&logs));
    files.push((stderr_path.clone(), std::fs::read(&stderr_path).unwrap()));
    let body = token.strip_prefix("rps_").unwrap();
    for (path, bytes) in files {
        assert!(!contains(&bytes, ADMIN_PASSWORD.as_bytes()), "password in {}", path.display());
        assert!(!contains(&bytes, body.as_bytes()), "session token in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_password_is_printed_once_and_logged_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.env.retain(|(k, _)| *k != "RAMPART_ADMIN_PASSWORD");
    let server = start(opts);
    // On the terminal's stderr (stdout is kept for results), outside any log line.
    let stderr_path = server.stderr_path.clone();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let printed = stderr
        .lines()
        .skip_while(|l| !l.contains("password:"))
        .nth(2)
        .map(|l| l.trim().to_owned())
        .expect("password printed");
    assert!(!server.stdout_text.contains(&printed), "stdout carries no notice");
    let c = server.client();
    server.login(&c, "admin", &printed).await;
    assert!(server.stop().success());
    let again =
        start(ServerOpts { env: vec![("RAMPART_REQUIRE_MFA_FOR_ROLES", "none".into())], ..ServerOpts::new(&data) });
    drop(again);
    // The second start appended to the same stderr file: still only the first banner.
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(stderr.matches(printed.as_str()).count(), 1, "printed once: {stderr}");
    assert_eq!(stderr.matches("password:").count(), 1, "printed again: {stderr}");
    let log_lines = stderr.lines().filter(|l| l.starts_with('{'));
    assert!(log_lines.clone().count() > 0 && log_lines.clone().all(|l| !l.contains(&printed)), "logged");
    for (path, bytes) in files_under(&data) {
        assert!(!contains(&bytes, printed.as_bytes()), "generated password in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_master_key_refuses_to_start_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let key_a = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="; // 32 x 'A'
    let key_b = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="; // 32 x 'B'
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_ENCRYPTION_KEY", key_a.into()));
    let server = start(opts);
    assert!(server.stop().success());
    let before = files_under(&data);
    assert!(!data.join("master.key").exists(), "no key file when the key comes from the environment");

    let out = bin()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RAMPART_ENCRYPTION_KEY", key_b)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key does not match"), "{err}");
    assert_eq!(files_under(&data), before, "files changed by a refused start");

    let out = bin()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RAMPART_ENCRYPTION_KEY", "not-base64-of-32-bytes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("base64 of exactly 32 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_needs_the_flag_and_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["serve", "--insecure-http", "--bind", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    assert!(!tmp.path().join("d").exists(), "refused before touching the disk");

    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--insecure-http".into()];
    let server = start(opts);
    assert!(server.base.starts_with("http://"));
    let res = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let c = server.client();
    server.login(&c, "admin", ADMIN_PASSWORD).await;
    assert!(server.stop().success());
    let wal = data.join("rampart.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0, "WAL left unmerged");
}
