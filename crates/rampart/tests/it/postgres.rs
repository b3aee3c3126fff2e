//! The real binary on PostgreSQL (`--database-url postgres://...`), one node and two.

use std::time::{Duration, Instant};

use rampart_testkit::postgres::PgDatabase;
use serde_json::{json, Value};

use crate::support::{start, Server, ServerOpts, ADMIN_PASSWORD};

/// One master key for every node of a deployment (each node's data directory is its own).
pub(crate) const MASTER_KEY: &str = "UG9zdGdyZXNOb2Rlc1NoYXJlT25lTWFzdGVyS2V5ISE="; // 32 bytes

pub(crate) fn node(data: &std::path::Path, db: &PgDatabase, id: &str) -> Server {
    let mut opts = ServerOpts::new(data);
    opts.env.push(("RAMPART_DATABASE_URL", db.url.clone()));
    opts.env.push(("RAMPART_ENCRYPTION_KEY", MASTER_KEY.to_owned()));
    opts.env.push(("RAMPART_NODE_ID", id.to_owned()));
    start(opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_postgres_and_keeps_acknowledged_writes_across_kill_9() {
    let db = PgDatabase::create();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = node(&data, &db, "solo");
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let res = c
        .post(server.url("/api/v1/collections"))
        .bearer_auth(&token)
        .json(&json!({"name": "patients", "indexes": ["email"], "pii_fields": ["email"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut ids = Vec::new();
    for i in 0..40 {
        let res = c
            .post(server.url("/api/v1/collections/patients/documents"))
            .bearer_auth(&token)
            .json(&json!({"data": {"email": format!("p{i}@example.com"), "i": i}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        ids.push(res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert!(!data.join("rampart.db").exists(), "nothing is stored in SQLite beside PostgreSQL");
    server.kill_9();

    let server = node(&data, &db, "solo");
    let c = server.client();
    let page = server.get_json(&token, "/api/v1/collections/patients/documents?limit=100").await;
    let found: Vec<&str> = page["documents"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(found, ids, "every acknowledged write, and the session, survived");
    let hit = server.get_json(&token, "/api/v1/collections/patients/documents?email=p7@example.com").await;
    assert_eq!(hit["documents"][0]["data"]["i"], 7, "blind index lookups work on PostgreSQL");
    let verify = c.get(server.url("/api/v1/admin/audit/verify")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(verify.status(), 200);
    let verify: Value = verify.json().await.unwrap();
    assert_eq!(verify["valid"], true, "{verify}");
    assert!(server.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_is_refused_on_the_other_within_a_second() {
    let db = PgDatabase::create();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"), &db, "node-a");
    let b = node(&tmp.path().join("b"), &db, "node-b");
    let (ca, cb) = (a.client(), b.client());
    let token = a.login(&ca, "admin", ADMIN_PASSWORD).await;
    // Node A has the session in its cache; node B serves it too.
    for (server, client) in [(&a, &ca), (&b, &cb)] {
        let res = client.get(server.url("/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let out = cb.post(b.url("/api/v1/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert!(out.status().is_success(), "{}", out.status());
    let start = Instant::now();
    let refused = loop {
        let res = ca.get(a.url("/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap();
        if res.status() == 401 {
            break Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(1) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(refused.is_some(), "node A still accepted the token 1 s after the logout on node B");
    assert!(a.stop().success() && b.stop().success());
}

/// Every node verifies every node's chain: a record edited in node B's chain is reported
/// by node A's API and by `rampart audit verify` run for node A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_verifies_every_nodes_chain() {
    let db = PgDatabase::create();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"), &db, "node-a");
    let b = node(&tmp.path().join("b"), &db, "node-b");
    let token = a.login(&a.client(), "admin", ADMIN_PASSWORD).await;
    b.login(&b.client(), "admin", ADMIN_PASSWORD).await;
    let sound = a.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!(sound["valid"], true, "{sound}");
    let others = sound["other_nodes"].as_array().unwrap();
    assert!(others.iter().any(|n| n["node"] == "node-b" && n["valid"] == true), "{sound}");

    let b_chain = rampart_store_postgres::tamper::Database { url: db.url.clone(), node: "node-b".into() };
    b_chain.edit_audit(&rampart_store::tamper::AuditEdit::ChangeDetails(1)).unwrap();
    let broken = a.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!(broken["valid"], false, "{broken}");
    assert!(broken["reason"].as_str().unwrap().starts_with("node node-b:"), "{broken}");
    assert!(broken["database"]["valid"] == true, "node A's own chain is intact: {broken}");
    assert!(a.stop().success());

    let out = crate::support::bin()
        .args(["audit", "verify", "--json", "--data-dir"])
        .arg(tmp.path().join("a"))
        .env("RAMPART_DATABASE_URL", &db.url)
        .env("RAMPART_ENCRYPTION_KEY", MASTER_KEY)
        .env("RAMPART_NODE_ID", "node-a")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{report} {}", String::from_utf8_lossy(&out.stderr));
    assert!(report["other_nodes"].as_array().unwrap().iter().any(|n| n["node"] == "node-b" && n["valid"] == false));
    drop(b);
}
