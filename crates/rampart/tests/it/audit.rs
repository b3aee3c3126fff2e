use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};

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
    let audit = json_lines(&logs.join("audit.log"));
    assert!(audit.len() >= 6, "{}", audit.len());
    assert!(audit.iter().any(|r| r["user"] == "mal\nlory\"\u{1b}[2J"), "hostile name kept intact in one line");
    let activity = json_lines(&logs.join("activity.log"));
    assert!(activity.iter().any(|a| a["path"] == "/api/v1/collections" && a["status"] == 201 && a["user"] == "admin"));
    let server_log = json_lines(&logs.join("server.log"));
    assert!(server_log.iter().any(|l| l["fields"]["message"] == "listening"));

    let out = audit_cmd(&data, &logs, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["database"]["records"], audit.len());

    let tail = audit_cmd(&data, &logs, &["tail", "-n", "2"]);
    let lines: Vec<&str> = std::str::from_utf8(&tail.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(serde_json::from_str::<Value>(lines[1]).unwrap()["seq"], audit.len());
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
        let out = audit_cmd(&data, &logs, &["verify"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", String::from_utf8_lossy(&out.stdout));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["audit_log"]["first_bad_seq"], bad, "{name}: {report}");
        assert_eq!(report["database"]["valid"], true, "{name}");
    }
    std::fs::write(&path, &original).unwrap();
    assert_eq!(audit_cmd(&data, &logs, &["verify"]).status.code(), Some(0));

    // And in the database, with the server stopped.
    let conn = rusqlite::Connection::open(data.join("rampart.db")).unwrap();
    conn.execute("UPDATE audit_log SET ip_address = '10.9.9.9' WHERE seq = 2", []).unwrap();
    drop(conn);
    let out = audit_cmd(&data, &logs, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["database"]["first_bad_seq"], 2, "{report}");
}

fn mutate_user(line: &str) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    v["user"] = json!("someone-else");
    v.to_string()
}
