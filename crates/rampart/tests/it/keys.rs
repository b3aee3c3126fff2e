use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{await_reencrypted, bin, insert_numbered, start, ServerOpts, ADMIN_PASSWORD};

fn slow_reencrypt_config(dir: &std::path::Path) -> String {
    let path = dir.join("rampart.toml");
    std::fs::write(&path, "[keys]\nreencrypt_pause_ms = 100\n").unwrap();
    path.display().to_string()
}

/// kill -9 in the middle of a re-encryption: the next start resumes it and every document
/// stays readable; afterwards only the new data keys exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_reencryption_resumes_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = slow_reencrypt_config(tmp.path());
    let opts = || {
        let mut o = ServerOpts::new(&data);
        o.extra_args = vec!["--config".into(), config.clone()];
        o
    };
    let server = start(opts());
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let ids = insert_numbered(&server, &token, 600).await;
    let res = c
        .post(server.url("/api/v1/admin/keys/rotate"))
        .bearer_auth(&token)
        .json(&json!({"reencrypt": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // 6 batches of 100 with 100 ms pauses: kill it part-way.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let keys: Value =
        c.get(server.url("/api/v1/admin/keys")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert!(!keys["reencryption"].is_null(), "still running when killed: {keys}");
    server.kill_9();

    let server = start(opts());
    await_reencrypted(&server, &token, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_master_rewraps_and_the_old_key_stops_working() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    c.post(server.url("/api/v1/collections")).bearer_auth(&token).json(&json!({"name": "n"})).send().await.unwrap();
    let doc: Value = c
        .post(server.url("/api/v1/collections/n/documents"))
        .bearer_auth(&token)
        .json(&json!({"data": {"x": 1}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(server.stop().success());
    let old_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let new_key_file = tmp.path().join("new.key");
    std::fs::write(&new_key_file, "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=\n").unwrap();
    let out = bin()
        .args(["keys", "--data-dir"])
        .arg(&data)
        .args(["change-master", "--new-key-file"])
        .arg(&new_key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(std::fs::read_to_string(data.join("master.key")).unwrap(), old_key);
    assert!(!data.join("master.key.new").exists());

    let server = start(ServerOpts::new(&data));
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let id = doc["id"].as_str().unwrap();
    let got: Value = c
        .get(server.url(&format!("/api/v1/collections/n/documents/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["data"]["x"], 1);
    assert!(server.stop().success());
    let out = bin()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("RAMPART_ENCRYPTION_KEY", old_key.trim())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key does not match"));
}
