//! Retention in the real binary: the job runs under the lease in `serve`, batch by batch,
//! and a kill -9 in the middle of a run loses nothing and deletes nothing it should not:
//! the next start finishes the rest.

use std::time::Duration;

use rampart_store_sqlite::tamper;
use serde_json::{json, Value};

use crate::support::{start, Server, ServerOpts, ADMIN_PASSWORD};

/// One document per transaction, 100 ms apart, looked at every second.
fn slow_retention_config(dir: &std::path::Path) -> String {
    let path = dir.join("rampart.toml");
    std::fs::write(
        &path,
        "[retention]\nenabled = true\nauto_delete_expired = true\nbatch_size = 1\nbatch_pause_ms = 100\n\
         interval_secs = 1\n",
    )
    .unwrap();
    path.display().to_string()
}

async fn post(server: &Server, token: &str, path: &str, body: Value) -> Value {
    let res = server.client().post(server.url(path)).bearer_auth(token).json(&body).send().await.unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap()
}

async fn insert(server: &Server, token: &str, c: &str, subject: Option<&str>, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut body = json!({"data": {"n": i}});
        if let Some(s) = subject {
            body["subject_id"] = json!(s);
        }
        ids.push(
            post(server, token, &format!("/api/v1/collections/{c}/documents"), body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

/// The `retention_delete` records: their total count.
async fn retention_deleted(server: &Server, token: &str) -> u64 {
    let page = server.get_json(token, "/api/v1/admin/audit?event_type=retention_delete&limit=1000").await;
    page["records"].as_array().unwrap().iter().map(|e| e["details"]["count"].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_resumes_after_kill_9_and_deletes_only_expired_unheld_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let db = data.join("rampart.db");
    let config = slow_retention_config(tmp.path());
    let opts = || {
        let mut o = ServerOpts::new(&data);
        o.extra_args = vec!["--config".into(), config.clone()];
        o
    };
    let server = start(opts());
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    post(&server, &token, "/api/v1/collections", json!({"name": "logs", "retention_days": 5})).await;
    post(&server, &token, "/api/v1/collections", json!({"name": "cases", "retention_days": 5})).await;
    let expired = insert(&server, &token, "logs", None, 20).await;
    let held_subject = insert(&server, &token, "logs", Some("sam"), 2).await;
    let fresh = insert(&server, &token, "logs", None, 3).await;
    let held_collection = insert(&server, &token, "cases", None, 2).await;
    post(&server, &token, "/api/v1/admin/legal-holds", json!({"subject_id": "sam", "reason": "case 1"})).await;
    post(&server, &token, "/api/v1/admin/legal-holds", json!({"collection": "cases", "reason": "case 2"})).await;
    assert!(server.stop().success());
    // Ten days old: past the collections' five.
    let aged: Vec<String> = expired.iter().chain(&held_subject).chain(&held_collection).cloned().collect();
    tamper::age_documents(&db, &aged, 10).unwrap();

    // The dry run, as the README writes it, counts what the job is about to delete.
    let plan = |json: bool| {
        let mut cmd = crate::support::bin();
        cmd.args(["retention", "plan"]).args(json.then_some("--json"));
        cmd.args(["--data-dir", data.to_str().unwrap(), "--config", &config]).output().unwrap()
    };
    let out = plan(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row =
        |c: &str| report["collections"].as_array().unwrap().iter().find(|r| r["collection"] == c).unwrap().clone();
    assert_eq!((row("logs")["expired"].clone(), row("logs")["held"].clone()), (json!(22), json!(2)), "{report}");
    assert_eq!((row("cases")["expired"].clone(), row("cases")["held"].clone()), (json!(2), json!(2)));
    let out = plan(false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("20 document(s) deletable now"), "{table}");
    assert_eq!(tamper::document_ids(&db, "logs").unwrap().len(), 25, "the plan deleted nothing");

    let server = start(opts());
    let token = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    // Kill it as soon as the first batch is on the record.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while retention_deleted(&server, &token).await == 0 {
        assert!(std::time::Instant::now() < deadline, "no retention batch within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_9();
    let left = tamper::document_ids(&db, "logs").unwrap();
    let gone = expired.iter().filter(|id| !left.contains(id)).count();
    assert!(gone >= 1 && gone < expired.len(), "killed part-way: {gone} of {} deleted", expired.len());

    let server = start(opts());
    let token = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = tamper::document_ids(&db, "logs").unwrap();
        if expired.iter().all(|id| !left.contains(id)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retention did not finish after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut kept: Vec<String> = held_subject.iter().chain(&fresh).cloned().collect();
    kept.sort();
    assert_eq!(tamper::document_ids(&db, "logs").unwrap(), kept, "held and unexpired documents stay");
    let mut cases = held_collection.clone();
    cases.sort();
    assert_eq!(tamper::document_ids(&db, "cases").unwrap(), cases, "the held collection stays whole");
    // Every deletion was recorded once, in the batch that made it: kill -9 lost none.
    assert_eq!(retention_deleted(&server, &token).await, expired.len() as u64);
    assert!(server.stop().success());
}
