//! `rampart rotate-secrets` end to end: on a running server (the server does the work), on
//! a stopped one, and the states a kill -9 can leave, each finished or undone at the next
//! start.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::{bin, start, Server, ServerOpts};

/// `rampart init --secure` in `dir`: its config path.
fn init(dir: &Path) -> PathBuf {
    let out =
        bin().args(["init", "--secure", "--dir"]).arg(dir).arg("--data-dir").arg(dir.join("data")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("rampart.toml")
}

fn secret(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".secrets")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

fn env() -> Vec<(&'static str, String)> {
    // The admin password comes from .secrets (the bootstrap credential under test).
    vec![("RAMPART_REQUIRE_MFA_FOR_ROLES", "none".to_owned())]
}

fn serve(dir: &Path, config: &Path) -> Server {
    let data = dir.join("data");
    let mut opts = ServerOpts::new(&data);
    opts.env = env();
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    start(opts)
}

fn rotate(config: &Path, extra: &[&str]) -> (i32, Value) {
    let mut cmd = bin();
    cmd.args(["rotate-secrets", "--json", "--config"]).arg(config).args(extra);
    for (k, v) in env() {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["secret"].as_str().unwrap().to_owned(), o["status"].as_str().unwrap().to_owned()))
        .collect()
}

async fn login_status(server: &Server, password: &str) -> u16 {
    let res = server
        .client()
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    res.status().as_u16()
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_rotates_every_secret_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let config = init(tmp.path());
    let (old_master, old_admin, old_hook) = (
        secret(tmp.path(), "RAMPART_ENCRYPTION_KEY").unwrap(),
        secret(tmp.path(), "RAMPART_ADMIN_PASSWORD").unwrap(),
        secret(tmp.path(), "RAMPART_BREACH_WEBHOOK_SECRET").unwrap(),
    );
    let server = serve(tmp.path(), &config);
    let c = server.client();
    let token = server.login(&c, "admin", &old_admin).await;
    c.post(server.url("/api/v1/collections")).bearer_auth(&token).json(&json!({"name": "n"})).send().await.unwrap();
    let doc: Value = c
        .post(server.url("/api/v1/collections/n/documents"))
        .bearer_auth(&token)
        .json(&json!({"data": {"x": 1}, "subject_id": "s-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_before: Value = c.get(server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();

    let (code, report) = rotate(&config, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ran_in"], "server", "the running server did the work");
    let all = ["jwt", "webhook", "admin", "master-key"].map(|s| (s.to_owned(), "rotated".to_owned()));
    assert_eq!(statuses(&report), all, "{report:#}");
    let text = report.to_string();
    for s in [&old_master, &old_admin, &old_hook] {
        assert!(!text.contains(s.as_str()), "a secret reached the report");
    }

    // Each secret changed where it lives.
    let new_master = secret(tmp.path(), "RAMPART_ENCRYPTION_KEY").unwrap();
    let new_admin = secret(tmp.path(), "RAMPART_ADMIN_PASSWORD").unwrap();
    assert_ne!(new_master, old_master);
    assert_ne!(new_admin, old_admin);
    assert_ne!(secret(tmp.path(), "RAMPART_BREACH_WEBHOOK_SECRET").unwrap(), old_hook);
    assert_eq!(secret(tmp.path(), "RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS").unwrap(), old_hook, "overlap");
    assert!(!tmp.path().join(".secrets.pending").exists());
    // The same server, without a restart: the old bootstrap password and its sessions are
    // gone, the new one works, data written before reads back, new data is sealed.
    assert_eq!(login_status(&server, &old_admin).await, 401);
    let old_session = c.get(server.url("/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(old_session.status(), 401, "the bootstrap credential's sessions ended");
    let token = server.login(&c, "admin", &new_admin).await;
    let read =
        server.get_json(&token, format!("/api/v1/collections/n/documents/{}", doc["id"].as_str().unwrap())).await;
    assert_eq!(read["data"]["x"], 1);
    let res = c
        .post(server.url("/api/v1/collections/n/documents"))
        .bearer_auth(&token)
        .json(&json!({"data": {"x": 2}, "subject_id": "s-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "a new subject key is wrapped under the new master");
    let jwks: Value = c.get(server.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let (before, after) = (kids(&jwks_before), kids(&jwks));
    assert!(before.iter().all(|k| after.contains(k)), "the old signing key keeps verifying");
    assert!(after.len() > before.len(), "a new signing key: {after:?}");
    server.stop();

    // A restart reads everything with the new secrets; the audit trail is whole and holds
    // each rotation.
    let server = serve(tmp.path(), &config);
    let c = server.client();
    let token = server.login(&c, "admin", &new_admin).await;
    let list = server.get_json(&token, "/api/v1/collections/n/documents").await;
    assert_eq!(list["documents"].as_array().unwrap().len(), 2);
    let audit = server.get_json(&token, "/api/v1/admin/audit?limit=1000").await;
    let kinds: Vec<&str> =
        audit["records"].as_array().unwrap().iter().filter_map(|r| r["event_type"].as_str()).collect();
    for kind in ["master_key_change", "key_rotate", "config_change", "password_change"] {
        assert!(kinds.contains(&kind), "{kind} not audited: {kinds:?}");
    }
    let verify = server.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!(verify["valid"], true, "{verify}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_rotated_by_the_cli_and_its_key_file_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let c = server.client();
    let token = server.login(&c, "admin", crate::support::ADMIN_PASSWORD).await;
    c.post(server.url("/api/v1/collections")).bearer_auth(&token).json(&json!({"name": "n"})).send().await.unwrap();
    server.stop();
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let made = bin().args(["backup", "--data-dir"]).arg(&data).args(["create", "--json"]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let backup_id = serde_json::from_slice::<Value>(&made.stdout).unwrap()["backup_id"].as_str().unwrap().to_owned();

    let out = bin()
        .args(["rotate-secrets", "--json", "--only", "master-key,jwt,admin", "--data-dir"])
        .arg(&data)
        .env("RAMPART_ADMIN_PASSWORD", crate::support::ADMIN_PASSWORD)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ran_in"], "cli");
    assert_eq!(
        statuses(&report),
        [("jwt", "rotated"), ("admin", "skipped"), ("master-key", "rotated")]
            .map(|(a, b)| (a.to_owned(), b.to_owned())),
        "the admin password given in the environment is not Rampart's to replace: {report:#}"
    );
    let new_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    assert!(!data.join("master.key.new").exists());
    // The backup made before the rotation still verifies, with the retired key kept for it.
    let retired: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("master.key.retired-"))
        .collect();
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(std::fs::read_to_string(&retired[0]).unwrap(), old_key);
    let rbk = data.join("backups").join(format!("{backup_id}.rbk"));
    let verified = bin()
        .args(["backup", "--data-dir"])
        .arg(tmp.path().join("elsewhere"))
        .args(["verify", rbk.to_str().unwrap(), "--key-file", retired[0].to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stderr));
    let server = start(ServerOpts::new(&data));
    let c = server.client();
    let token = server.login(&c, "admin", crate::support::ADMIN_PASSWORD).await;
    let listed = server.get_json(&token, "/api/v1/collections").await;
    assert!(listed.to_string().contains("\"n\""), "{listed}");
    server.stop();
}

/// The two states a kill -9 can leave between the pending file and the rename: the
/// database switched (the next start adopts the pending file) or not (it is dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_rotation_is_finished_or_undone_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = init(tmp.path());
    let secrets = tmp.path().join(".secrets");
    let pending = tmp.path().join(".secrets.pending");
    let server = serve(tmp.path(), &config);
    let admin = secret(tmp.path(), "RAMPART_ADMIN_PASSWORD").unwrap();
    let c = server.client();
    let token = server.login(&c, "admin", &admin).await;
    c.post(server.url("/api/v1/collections")).bearer_auth(&token).json(&json!({"name": "n"})).send().await.unwrap();
    server.stop();
    let before = std::fs::read_to_string(&secrets).unwrap();

    // Crashed before the database switched: a pending file with a key it never saw.
    let stray = before.replace(
        &secret(tmp.path(), "RAMPART_ENCRYPTION_KEY").unwrap(),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    );
    std::fs::write(&pending, stray).unwrap();
    let server = serve(tmp.path(), &config);
    assert!(!pending.exists(), "dropped");
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), before, "the old key stays");
    server.stop();

    // Crashed after the database switched, before the rename: rotate, then put the old
    // file back and the new one as pending.
    let (code, report) = rotate(&config, &["--only", "master-key"]);
    assert_eq!(code, 0, "{report:#}");
    let after = std::fs::read_to_string(&secrets).unwrap();
    std::fs::write(&pending, &after).unwrap();
    std::fs::write(&secrets, &before).unwrap();
    let server = serve(tmp.path(), &config);
    assert!(!pending.exists(), "adopted");
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), after, "the key the database holds");
    let c = server.client();
    let token = server.login(&c, "admin", &admin).await;
    assert!(server.get_json(&token, "/api/v1/collections").await.to_string().contains("\"n\""));
    server.stop();

    // The admin password the same way: a pending password the account never got is dropped.
    let stray = after.replace(&admin, "Never-Applied-Passw0rd-123!");
    std::fs::write(&pending, stray).unwrap();
    let server = serve(tmp.path(), &config);
    assert!(!pending.exists());
    assert_eq!(login_status(&server, &admin).await, 200, "the account kept its password");
    server.stop();
}
