//! Failover: a node writing through a multi-host URL (`target_session_attrs=read-write`) to a
//! primary with a synchronous streaming standby. The standby is promoted and the old primary
//! crashes; the node finds the new primary by itself and every acknowledged write is there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::nginx::free_port;
use crate::support::{start, ServerOpts, ADMIN_PASSWORD};

const MASTER_KEY: &str = "RmFpbG92ZXJUZXN0T25lTWFzdGVyS2V5Rm9yTm9kZSE=";

/// Runs a function of scripts/lib/postgres.sh.
fn pg_script(call: &str) {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lib/postgres.sh");
    let out = Command::new("bash").arg("-c").arg(format!(". {lib} && {call}")).output().unwrap();
    assert!(out.status.success(), "{call}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A primary and its synchronous standby, removed when dropped.
struct Pair {
    dir: PathBuf,
    ports: (u16, u16),
}

impl Pair {
    fn start(dir: &Path) -> Self {
        let ports = (free_port(), free_port());
        pg_script(&format!("start_pair {} {} {}", dir.display(), ports.0, ports.1));
        Self { dir: dir.to_owned(), ports }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for part in ["standby", "primary"] {
            let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lib/postgres.sh");
            let call = format!(". {lib} && stop_postgres {}/{part}", self.dir.display());
            let _ = Command::new("bash").arg("-c").arg(call).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_follows_a_promoted_standby_and_no_acknowledged_write_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let pair = Pair::start(&tmp.path().join("pg"));
    let (p1, p2) = pair.ports;
    rampart_testkit::postgres::off_runtime(&format!("postgres://postgres@127.0.0.1:{p1}/postgres"), |c| {
        c.batch_execute("CREATE DATABASE rampart")
    });
    let url = format!("postgres://postgres@127.0.0.1:{p1},127.0.0.1:{p2}/rampart?target_session_attrs=read-write");
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_DATABASE_URL", url));
    opts.env.push(("RAMPART_ENCRYPTION_KEY", MASTER_KEY.to_owned()));
    opts.env.push(("RAMPART_NODE_ID", "writer".to_owned()));
    let server = start(opts);
    let c = server.client();
    let token = server.login(&c, "admin", ADMIN_PASSWORD).await;
    let res = c.post(server.url("/api/v1/collections")).bearer_auth(&token).json(&json!({"name": "log"}));
    assert_eq!(res.send().await.unwrap().status(), 201);

    // Write without pause; remember what was acknowledged (201) and when.
    let acknowledged: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (c, url, token) = (c.clone(), server.url("/api/v1/collections/log/documents"), token.clone());
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let req = c.post(&url).bearer_auth(&token).json(&json!({"data": {"i": i}}));
                let Ok(res) = req.timeout(Duration::from_secs(10)).send().await else { continue };
                if res.status() == 201 {
                    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
                    acknowledged.lock().unwrap().push((Instant::now(), id));
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    });
    let count = || acknowledged.lock().unwrap().len();
    while count() < 50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before_failover = count();
    pg_script(&format!("promote {0}/standby && crash {0}/primary", pair.dir.display()));
    let failed_over = Instant::now();
    // The node reconnects to the new primary by itself.
    let deadline = failed_over + Duration::from_secs(60);
    loop {
        let after = acknowledged.lock().unwrap().iter().filter(|(at, _)| *at > failed_over).count();
        if after >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "no write succeeded within 60 s of the failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let written: Vec<String> = acknowledged.lock().unwrap().iter().map(|(_, id)| id.clone()).collect();
    assert!(written.len() > before_failover, "writes continued after the failover");

    // Every acknowledged write is on the new primary (the only database left).
    for id in &written {
        let res = c.get(server.url(&format!("/api/v1/collections/log/documents/{id}"))).bearer_auth(&token);
        let res = res.send().await.unwrap();
        assert_eq!(res.status(), 200, "acknowledged write {id} is missing after the failover");
    }
    let verify = server.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!(verify["valid"], true, "{verify}");
    assert!(server.stop().success());
}
