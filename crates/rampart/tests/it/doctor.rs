//! `rampart doctor --security` end to end: the real binary against a real data directory, a
//! running server, and an OpenSSL server that still accepts TLS 1.1.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{bin, start, ServerOpts, ADMIN_PASSWORD};

/// Runs doctor with `env` and `args`; its exit code and JSON report.
fn doctor(data: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, Value) {
    let mut cmd = bin();
    cmd.args(["doctor", "--security", "--json", "--data-dir"]).arg(data).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(!text.contains(ADMIN_PASSWORD), "a secret reached the report");
    (out.status.code().unwrap(), report)
}

fn finding<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding in {report:#}"))
}

fn severity<'a>(report: &'a Value, check: &str) -> &'a str {
    finding(report, check)["severity"].as_str().unwrap()
}

/// A running server, checked from outside (TLS versions, certificate, headers) and through
/// its data directory (files, admins, audit chain); then a key file opened to others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_a_running_server_and_its_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let env = [("RAMPART_ADMIN_PASSWORD", ADMIN_PASSWORD), ("RAMPART_REQUIRE_MFA_FOR_ROLES", "none")];
    let (code, report) = doctor(&data, &env, &["--url", &server.base]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["exit_code"], 2);
    for ok in [
        "tls_versions",
        "server_reachable",
        "security_headers",
        "tls_expiry",
        "tls_key",
        "data_dir_permissions",
        "master_key_permissions",
        "tls_key_permissions",
        "collection_encryption",
        "rate_limits",
    ] {
        assert_eq!(severity(&report, ok), "ok", "{ok}: {:#}", finding(&report, ok));
    }
    assert_eq!(finding(&report, "tls_versions")["evidence"]["accepted"], serde_json::json!(["TLS 1.2", "TLS 1.3"]));
    // The weakened MFA policy these tests run with, and an admin without a second factor.
    assert_eq!(severity(&report, "mfa_policy"), "critical");
    assert_eq!(severity(&report, "admin_mfa"), "critical");
    assert_eq!(finding(&report, "admin_mfa")["evidence"]["admins_without_mfa"], serde_json::json!(["admin"]));
    // The bootstrap password still opens the admin account.
    let passwords = finding(&report, "admin_passwords");
    assert_eq!(passwords["severity"], "warning", "{passwords:#}");
    assert_eq!(passwords["evidence"]["bootstrap_password_still_valid"], serde_json::json!(["admin"]));
    assert_eq!(severity(&report, "secrets_in_environment"), "info");
    let chain = finding(&report, "audit_chain");
    assert!(matches!(chain["severity"].as_str(), Some("ok" | "info")), "before its first checkpoint: {chain:#}");
    assert_eq!(chain["evidence"]["valid"], true);
    server.stop();

    // Stopped, with the key file opened to everyone: the fix is the chmod.
    let key = data.join("master.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = doctor(&data, &env, &[]);
    assert_eq!(code, 2);
    let f = finding(&report, "master_key_permissions");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["fix"], format!("chmod 600 {}", key.display()));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A data directory opened to the group: reported, and left as it was found.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let (_, report) = doctor(&data, &env, &[]);
    assert_eq!(severity(&report, "master_key_permissions"), "ok");
    assert_eq!(severity(&report, "data_dir_permissions"), "critical");
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o750, "doctor changed nothing");
    assert_eq!(severity(&report, "audit_chain"), "ok", "stopped: the mirror must reach the end, and does");
}

/// The same checks on a PostgreSQL deployment, the server running: the store's facts come
/// from PostgreSQL, and no SQLite file is looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_a_postgresql_deployment() {
    let db = rampart_testkit::postgres::PgDatabase::create();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = crate::postgres::node(&data, &db, "solo");
    let env = [
        ("RAMPART_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("RAMPART_REQUIRE_MFA_FOR_ROLES", "none"),
        ("RAMPART_DATABASE_URL", db.url.as_str()),
        ("RAMPART_ENCRYPTION_KEY", crate::postgres::MASTER_KEY),
        ("RAMPART_NODE_ID", "solo"),
    ];
    let (code, report) = doctor(&data, &env, &["--url", &server.base]);
    assert_eq!(code, 2, "{report:#}");
    for ok in ["tls_versions", "server_reachable", "collection_encryption", "data_dir_permissions"] {
        assert_eq!(severity(&report, ok), "ok", "{ok}: {:#}", finding(&report, ok));
    }
    assert_eq!(finding(&report, "audit_chain")["evidence"]["valid"], true);
    assert_eq!(finding(&report, "admin_mfa")["evidence"]["admins_without_mfa"], serde_json::json!(["admin"]));
    assert!(report["findings"].as_array().unwrap().iter().all(|f| f["check"] != "database_permissions"));
    let text = report.to_string();
    assert!(!text.contains(crate::postgres::MASTER_KEY) && !text.contains(&db.url), "a secret reached the report");
    server.stop();
}

/// The TLS version probe can fail: an OpenSSL server (standing in for a misconfigured proxy
/// in front of Rampart) that still speaks TLS 1.1 is reported critical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_server_that_accepts_tls_1_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "90"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed by scripts/test");
    assert!(made.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut legacy = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-www", "-min_protocol", "TLSv1"])
        .args(["-cipher", "ALL:@SECLEVEL=0"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("https://127.0.0.1:{port}");
    let (code, report) = doctor(&tmp.path().join("data"), &[], &["--url", &url, "--ca-cert", cert.to_str().unwrap()]);
    let _ = legacy.kill();
    let _ = legacy.wait();
    let f = finding(&report, "tls_versions");
    assert_eq!(f["severity"], "critical", "{f:#}");
    let accepted: Vec<&str> =
        f["evidence"]["accepted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(accepted.contains(&"TLS 1.1") && accepted.contains(&"TLS 1.3"), "{accepted:?}");
    assert_eq!(code, 2);
}

/// A configuration that cannot load is a critical finding in the report, not a crash, so
/// a CI step still gets JSON to read.
#[test]
fn an_invalid_configuration_is_a_critical_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, report) = doctor(&tmp.path().join("data"), &[("RAMPART_BIND", "not-an-address")], &[]);
    assert_eq!(code, 2);
    let f = finding(&report, "configuration");
    assert_eq!(f["severity"], "critical");
    assert!(f["evidence"]["error"].as_str().unwrap().contains("bind"), "{f:#}");
}
