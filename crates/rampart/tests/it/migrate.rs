//! `rampart migrate --to postgres://...` from a populated SQLite deployment, then serving
//! the copy from PostgreSQL.

use std::io::Write;
use std::process::Stdio;

use rampart_testkit::postgres::PgDatabase;
use serde_json::{json, Value};

use crate::breach::{client_from, login_status};
use crate::support::{bin, start, ServerOpts, ADMIN_PASSWORD};

/// `rampart migrate --to -` with the URL on standard input; (success, stdout, stderr).
fn migrate(data: &std::path::Path, url: &str) -> (bool, String, String) {
    migrate_with(data, url, &[])
}

fn migrate_with(data: &std::path::Path, url: &str, extra: &[&str]) -> (bool, String, String) {
    let mut child = bin()
        .args(["migrate", "--to", "-", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("RAMPART_NODE_ID", "solo")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{url}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_populated_sqlite_deployment_moves_to_postgres_and_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let c = server.client();
    let admin = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let post = |path: &str, body: Value| {
        let req = c.post(server.url(path)).bearer_auth(&admin).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        post("/api/v1/users", json!({"username": "ivy", "password": "Quiet-Lake-Passw0rd!4", "role": "editor"})).await,
        201
    );
    let spec = json!({"name": "patients", "indexes": ["email"], "pii_fields": ["email"]});
    assert_eq!(post("/api/v1/collections", spec).await, 201);
    let mut ids = Vec::new();
    for i in 0..40 {
        let doc =
            json!({"data": {"email": format!("p{i}@example.com"), "i": i}, "subject_id": format!("subject-{}", i % 4)});
        let res = c.post(server.url("/api/v1/collections/patients/documents")).bearer_auth(&admin).json(&doc);
        let res: Value = res.send().await.unwrap().json().await.unwrap();
        ids.push(res["id"].as_str().unwrap().to_owned());
    }
    // An erasure (ledger, destroyed subject key), a block and an alert.
    let erase = c
        .delete(server.url("/api/v1/gdpr/erasure?subject_id=subject-0&override_reason=erased-by-the-test"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(erase.status().is_success(), "{:?}", erase.text().await);
    assert_eq!(
        post(
            "/api/v1/admin/security/block-ip",
            json!({"ip_address": "127.0.0.9", "reason": "test", "duration_hours": 24})
        )
        .await,
        201
    );
    let attacker = client_from(&server, "127.0.0.7");
    for i in 0..11 {
        login_status(&server, &attacker, &format!("g{i}"), "Wrong-Passw0rd!").await;
    }
    let before = server.get_json(&admin, "/api/v1/admin/audit/verify").await;
    assert_eq!(before["valid"], true, "{before}");

    // Not while the server runs.
    let db = PgDatabase::create();
    let (ok, _, err) = migrate(&data, &db.url);
    assert!(!ok && err.contains("stop it first"), "{err}");
    assert!(server.stop().success());

    let (ok, out, err) = migrate(&data, &db.url);
    assert!(ok, "migrate failed:\n{err}");
    assert!(out.contains("every count matches and the audit chain verifies"), "{out}");
    assert!(err.contains("documents: copied 30 rows"), "the erased subject's 10 are gone: {err}");
    // Never into a database that holds something.
    let (ok, _, err) = migrate(&data, &db.url);
    assert!(!ok && err.contains("not empty"), "{err}");
    assert!(!err.contains("postgres@"), "no URL in errors: {err}");
    // --json: the summary as one document on stdout, progress on stderr.
    let second = PgDatabase::create();
    let (ok, out, err) = migrate_with(&data, &second.url, &["--json"]);
    assert!(ok, "migrate --json failed:\n{err}");
    let summary: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!((summary["tables"]["documents"].clone(), summary["counts_match"].clone()), (json!(30), json!(true)));
    assert_eq!(summary["node_id"], "solo", "{summary}");

    // The copy serves: the old session, the documents, the index, the user, the block,
    // the alert, the erasure, and an audit chain that verifies and continues.
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_DATABASE_URL", db.url.clone()));
    opts.env.push(("RAMPART_NODE_ID", "solo".to_owned()));
    let server = start(opts);
    let c = server.client();
    let page = server.get_json(&admin, "/api/v1/collections/patients/documents?limit=100").await;
    let found: Vec<&str> = page["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    let kept: Vec<&str> = ids.iter().enumerate().filter(|(i, _)| i % 4 != 0).map(|(_, id)| id.as_str()).collect();
    assert_eq!(found, kept, "every document but the erased subject's, still readable");
    let hit = server.get_json(&admin, "/api/v1/collections/patients/documents?email=p5@example.com").await;
    assert_eq!(hit["documents"][0]["data"]["i"], 5);
    assert!(!server.login(&c, "ivy", "Quiet-Lake-Passw0rd!4").await.is_empty(), "the user logs in");
    let blocked = client_from(&server, "127.0.0.9");
    assert_eq!(blocked.get(server.url("/health")).send().await.unwrap().status(), 403);
    let alerts = server.get_json(&admin, "/api/v1/admin/security/alerts").await;
    assert!(!alerts["alerts"].as_array().unwrap().is_empty(), "{alerts}");
    let after = server.get_json(&admin, "/api/v1/admin/audit/verify").await;
    assert_eq!(after["valid"], true, "{after}");
    assert!(after["records"].as_u64() >= before["records"].as_u64(), "{after}");
    assert!(server.stop().success());
}
