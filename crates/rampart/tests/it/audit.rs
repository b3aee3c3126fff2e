use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

use rampart_store_sqlite::tamper::{self, AuditEdit};

use crate::support::{bin, start, ServerOpts, ADMIN_PASSWORD};

fn audit_cmd(data: &Path, logs: &Path, args: &[&str]) -> Output {
    bin().arg("audit").arg("--data-dir").arg(data).arg("--log-dir").arg(logs).args(args).output().unwrap()
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l:?}", path.display())))
        .collect()
}

/// Runs a server that produces audit events (one with a hostile username), stops it,
/// and returns (data dir, log dir) ready for offline verification.
async fn audited_run(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = tmp.join("data");
    let logs = tmp.join("logs");
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--log-dir".into(), logs.display().to_string()];
    let server = start(opts);
    let c = server.client();
    c.post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "mal\nlory\"\u{1b}[2J", "password": "Wrong-Passw0rd!!"}))
        .send()
        .await
        .unwrap();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    for name in ["a", "b", "c"] {
        c.post(server.url("/api/v1/collections"))
            .bearer_auth(&token)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
    }
    assert!(server.stop().success());
    (data, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_files_are_json_lines_and_audit_verify_passes_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, logs) = audited_run(tmp.path()).await;
    let lines = json_lines(&logs.join("audit.log"));
    let last = lines.last().unwrap().clone();
    assert!(last["checkpoint"]["mac"].is_string(), "a signed checkpoint at shutdown: {last}");
    let audit: Vec<Value> = lines.into_iter().filter(|l| l.get("checkpoint").is_none()).collect();
    assert_eq!(last["checkpoint"]["seq"], audit.len(), "the checkpoint names the last record");
    assert!(audit.len() >= 6, "{}", audit.len());
    assert!(audit.iter().any(|r| r["user"] == "mal\nlory\"\u{1b}[2J"), "hostile name kept intact in one line");
    let activity = json_lines(&logs.join("activity.log"));
    assert!(activity.iter().any(|a| a["path"] == "/api/v1/collections" && a["status"] == 201 && a["user"] == "admin"));
    let server_log = json_lines(&logs.join("server.log"));
    assert!(server_log.iter().any(|l| l["fields"]["message"] == "listening"));

    let out = audit_cmd(&data, &logs, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["database"]["records"], audit.len());

    let tail = audit_cmd(&data, &logs, &["tail", "-n", "2", "--json"]);
    let records = serde_json::from_slice::<Value>(&tail.stdout).unwrap()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["seq"], audit.len());
    // For people: one line per record, and a hostile name cannot drive the terminal.
    let tail = audit_cmd(&data, &logs, &["tail", "-n", "1000"]);
    let text = String::from_utf8(tail.stdout).unwrap();
    assert_eq!(text.lines().count(), audit.len(), "{text}");
    assert!(text.contains("mal\\nlory") && !text.contains('\u{1b}'), "{text}");
}

/// Each edit of audit.log is found by `rampart audit verify` (exit 1), naming the seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_audit_log_is_found_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, logs) = audited_run(tmp.path()).await;
    let path = logs.join("audit.log");
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let n = lines.len();
    let edits: Vec<(&str, Vec<String>, i64)> = vec![
        (
            "changed",
            {
                let mut l = lines.clone();
                l[2] = mutate_user(&l[2]);
                l
            },
            3,
        ),
        (
            "removed",
            {
                let mut l = lines.clone();
                l.remove(3);
                l
            },
            4,
        ),
        (
            "reordered",
            {
                let mut l = lines.clone();
                l.swap(1, 2);
                l
            },
            2,
        ),
        (
            "truncated",
            {
                let mut l = lines.clone();
                l.truncate(n - 2);
                l
            },
            i64::try_from(n - 1).unwrap(),
        ),
    ];
    for (name, edited, bad) in edits {
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let out = audit_cmd(&data, &logs, &["verify", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", String::from_utf8_lossy(&out.stdout));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["audit_log"]["first_bad_seq"], bad, "{name}: {report}");
        assert_eq!(report["database"]["valid"], true, "{name}");
    }
    std::fs::write(&path, &original).unwrap();
    assert_eq!(audit_cmd(&data, &logs, &["verify", "--json"]).status.code(), Some(0));

    // And in the database, with the server stopped.
    tamper::edit_audit(&data.join("rampart.db"), &AuditEdit::ChangeIp(2, "10.9.9.9".into())).unwrap();
    let out = audit_cmd(&data, &logs, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["database"]["first_bad_seq"], 2, "{report}");
}

fn mutate_user(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    v["user"] = json!("someone-else");
    v.to_string()
}

fn record_lines_without(path: &Path, from_seq: i64) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().is_none_or(|s| s < from_seq))
        .collect();
    kept.join("\n") + "\n"
}

fn last_seq(data: &Path) -> i64 {
    tamper::max_audit_seq(&data.join("rampart.db")).unwrap()
}

/// The outside review's break: with the server stopped, cut the last records from the
/// table and the same records from audit.log, start, and cause an audited event. The
/// signed head no longer matches the table's tail, so the append is refused (503) and
/// both verify paths report the truncation; cutting the head too is still caught against
/// the signed checkpoint. Only an operator's `audit repair` lets the server record again,
/// and the repair shows as a declared gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_audit_tail_is_refused_and_found_until_an_operator_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, logs) = audited_run(tmp.path()).await;
    let end = last_seq(&data);
    let cut_from = end - 2;
    tamper::edit_audit(&data.join("rampart.db"), &AuditEdit::TruncateFrom(cut_from)).unwrap();
    std::fs::write(logs.join("audit.log"), record_lines_without(&logs.join("audit.log"), cut_from)).unwrap();

    let out = audit_cmd(&data, &logs, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));

    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--log-dir".into(), logs.display().to_string()];
    let server = start(opts);
    let c = server.client();
    let login = c
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 503, "a login cannot be recorded, so it does not happen");
    let body: Value = login.json().await.unwrap();
    assert!(body["request_id"].is_string() && body["code"].is_string(), "{body}");
    let health: Value = c.get(server.url("/health")).send().await.unwrap().json().await.unwrap();
    assert!(health.is_object());
    assert!(server.stop().success());
    assert_eq!(last_seq(&data), cut_from - 1, "nothing was appended to the cut chain");
    let store = rampart_store_sqlite::SqliteStore::open(&data).unwrap();
    let filter = rampart_store::AlertFilter {
        breach_type: Some("audit_chain_broken".into()),
        limit: 10,
        ..rampart_store::AlertFilter::default()
    };
    let alerts = rampart_store::SecurityStore::list_alerts(&store, filter).await.unwrap();
    assert_eq!(alerts.len(), 1, "the start raised a Critical integrity alert");
    rampart_store::MetaStore::close(&store).await.unwrap();
    drop(store);

    // Cut the signed head as well: the checkpoint in audit.log still anchors the chain.
    tamper::edit_audit(&data.join("rampart.db"), &AuditEdit::RemoveHead).unwrap();
    let out = audit_cmd(&data, &logs, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false, "{report}");

    // The operator repairs: the loss is declared in a signed record, not hidden.
    let out = audit_cmd(&data, &logs, &["repair", "--reason", "restored after disk fault"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = audit_cmd(&data, &logs, &["verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["repairs"][0]["missing_from"], cut_from, "{report}");

    // Recording works again, over the API verify too.
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--log-dir".into(), logs.display().to_string()];
    let server = start(opts);
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let v = server.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!(v["valid"], true, "{v}");
    assert!(v["audit_log"]["valid"] == true && v["repairs"].as_array().is_some_and(|r| r.len() == 1), "{v}");
    assert!(server.stop().success());
    assert_eq!(audit_cmd(&data, &logs, &["verify", "--json"]).status.code(), Some(0));
}

/// The API verify reads the audit.log mirror too: records cut from the table alone (the
/// head re-signed is impossible without the key, so here the head is left and the server
/// refuses) and a mirror that disagrees are both reported by the running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_verify_checks_the_audit_log_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, logs) = audited_run(tmp.path()).await;
    let path = logs.join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = mutate_user(&lines[1]);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--log-dir".into(), logs.display().to_string()];
    let server = start(opts);
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let v = server.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!((v["valid"].clone(), v["database"]["valid"].clone()), (json!(false), json!(true)), "{v}");
    assert_eq!(v["audit_log"]["first_bad_seq"], 2, "{v}");
    assert!(server.stop().success());
}
