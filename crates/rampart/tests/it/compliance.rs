//! The compliance status and the signed SOC 2 report of a real server, and
//! `rampart compliance verify-report` checking that report offline.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{bin, start, Server, ServerOpts, ADMIN_PASSWORD};

fn verify_cli(data: &Path, file: &Path, extra: &[&str]) -> std::process::Output {
    bin().args(["compliance", "--data-dir"]).arg(data).arg("verify-report").arg(file).args(extra).output().unwrap()
}

fn code(out: &std::process::Output) -> (Option<i32>, String) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn a12(status: &Value) -> Value {
    status["frameworks"]["soc2"]["controls"].as_array().unwrap().iter().find(|c| c["id"] == "A1.2").unwrap().clone()
}

async fn post(server: &Server, token: &str, path: &str, body: Value) -> Value {
    let res = server.client().post(server.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_a_running_server_verifies_offline_and_any_change_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let token = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;

    // No verified backup yet: the backup control fails; a real backup, verified, passes it.
    let status = server.get_json(&token, "/api/v1/admin/compliance/status").await;
    assert_eq!(a12(&status)["status"], "fail", "{}", a12(&status));
    let tls = status["frameworks"]["hipaa"]["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "164.312(e)(1)")
        .unwrap()
        .clone();
    assert_eq!(tls["status"], "pass", "served over TLS: {tls}");
    let meta = post(&server, &token, "/api/v1/admin/backup", json!({"encrypted": true})).await;
    let id = meta["backup_id"].as_str().unwrap().to_owned();
    let status = server.get_json(&token, "/api/v1/admin/compliance/status").await;
    assert_eq!(a12(&status)["status"], "fail", "made but not yet verified");
    let v = post(&server, &token, &format!("/api/v1/admin/backups/{id}/verify"), json!({})).await;
    assert_eq!(v["valid"], true);
    let status = server.get_json(&token, "/api/v1/admin/compliance/status").await;
    assert_eq!(a12(&status)["status"], "pass", "{}", a12(&status));
    assert_eq!(a12(&status)["evidence"]["backup_verified"]["backup_id"], id.as_str());

    let signed = server.get_json(&token, "/api/v1/admin/compliance/soc2-report?days=30").await;
    let log = &signed["report"]["backup_verification_log"]["backup_verify"]["records"];
    assert!(log.as_array().unwrap().iter().any(|r| r["details"]["backup_id"] == id.as_str()), "{log}");
    let jwks: Value =
        server.client().get(server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let report_file = tmp.path().join("report.json");
    std::fs::write(&report_file, serde_json::to_vec_pretty(&signed).unwrap()).unwrap();
    let jwks_file = tmp.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();

    // Valid: with the key derived from the deployment (server still running), and with the JWKS.
    let (status_code, text) = code(&verify_cli(&data, &report_file, &[]));
    assert_eq!(status_code, Some(0), "{text}");
    assert!(text.contains("valid") && text.contains(signed["signature"]["kid"].as_str().unwrap()), "{text}");
    let out = verify_cli(&data, &report_file, &["--jwks", jwks_file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", code(&out).1);
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (verdict["valid"].as_bool(), verdict["report_id"].clone()),
        (Some(true), signed["report"]["report_id"].clone())
    );

    // One value flipped: invalid, with either key source.
    let mut tampered = signed.clone();
    let users = tampered["report"]["access_control"]["users"].as_array_mut().unwrap();
    users[0]["mfa_enabled"] = json!(!users[0]["mfa_enabled"].as_bool().unwrap());
    let tampered_file = tmp.path().join("tampered.json");
    std::fs::write(&tampered_file, tampered.to_string()).unwrap();
    for extra in [&[][..], &["--jwks", jwks_file.to_str().unwrap()][..]] {
        let (status_code, text) = code(&verify_cli(&data, &tampered_file, extra));
        assert_eq!(status_code, Some(1), "{extra:?}: {text}");
        assert!(text.contains("INVALID") && text.contains("does not match"), "{text}");
    }
    // Signed by a kid nobody trusts.
    let mut wrong_kid = signed.clone();
    wrong_kid["signature"]["kid"] = json!("report-00000000deadbeef");
    let wrong_file = tmp.path().join("wrong-kid.json");
    std::fs::write(&wrong_file, wrong_kid.to_string()).unwrap();
    let (status_code, text) = code(&verify_cli(&data, &wrong_file, &["--jwks", jwks_file.to_str().unwrap()]));
    assert_eq!(status_code, Some(1), "{text}");
    assert!(text.contains("unknown key"), "{text}");
    // Malformed.
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{\"report\": ").unwrap();
    let out = verify_cli(&data, &junk, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["valid"], false);
    // A JWKS holding only the JWT keys trusts no report.
    let mut jwt_only = jwks.clone();
    jwt_only["keys"].as_array_mut().unwrap().retain(|k| !k["kid"].as_str().unwrap().starts_with("report-"));
    let jwt_only_file = tmp.path().join("jwt-only.json");
    std::fs::write(&jwt_only_file, jwt_only.to_string()).unwrap();
    let (status_code, text) = code(&verify_cli(&data, &report_file, &["--jwks", jwt_only_file.to_str().unwrap()]));
    assert_eq!(status_code, Some(2), "{text}");
    assert!(text.contains("no report signing key"), "{text}");

    // The key is the deployment's, not the server process's: after a master-key change it
    // still verifies the report (the report key is derived from the root key, which a
    // master-key change re-wraps).
    assert!(server.stop().success());
    let new_key = tmp.path().join("new.key");
    std::fs::write(&new_key, "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n").unwrap();
    let out = bin()
        .args(["keys", "--data-dir"])
        .arg(&data)
        .args(["change-master", "--new-key-file"])
        .arg(&new_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status_code, text) = code(&verify_cli(&data, &report_file, &[]));
    assert_eq!(status_code, Some(0), "{text}");

    // Another deployment's key does not verify it.
    let other = tmp.path().join("other");
    let other_server = start(ServerOpts::new(&other));
    drop(other_server);
    let (status_code, text) = code(&verify_cli(&other, &report_file, &[]));
    assert_eq!(status_code, Some(1), "{text}");
    assert!(text.contains("unknown key"), "{text}");
}

#[test]
fn verify_report_has_help() {
    let out = bin().args(["compliance", "verify-report", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["--jwks", "--json", "Exit status", "report-"] {
        assert!(text.contains(word), "{word} in {text}");
    }
}
