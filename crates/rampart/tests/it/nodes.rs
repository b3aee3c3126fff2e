//! Two real nodes on one PostgreSQL database and one Redis, behind a real nginx upstream
//! (docs/nginx-two-nodes.conf): what one node does, the other enforces within a second;
//! background jobs run on one node at a time and move when it dies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_testkit::postgres::PgDatabase;
use rampart_testkit::redis::RedisServer;
use serde_json::json;

use crate::breach::{alerts, login_status, receiver, wait_for, Deliveries};
use crate::nginx::{free_port, start_nginx_upstream};
use crate::support::{await_reencrypted, insert_numbered, start, Server, ServerOpts, ADMIN_PASSWORD};

/// Every node of a deployment has the same master key (each its own data directory).
const MASTER_KEY: &str = "VHdvTm9kZXNCZWhpbmROZ2lueFNoYXJlT25lS2V5ISE=";
const HOOK_SECRET: &str = "whsec-two-nodes-42";
/// The bound the issue states for a change on one node to be enforced on the others.
const BOUND: Duration = Duration::from_secs(1);

struct Deployment {
    db: PgDatabase,
    redis: RedisServer,
    hook_port: u16,
    config: PathBuf,
    tmp: tempfile::TempDir,
}

impl Deployment {
    fn new(config: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rampart.toml");
        std::fs::write(&path, config).unwrap();
        Self { db: PgDatabase::create(), redis: RedisServer::start(), hook_port: free_port(), config: path, tmp }
    }

    /// A node; each presents the first node's certificate (generated at its first start),
    /// so nginx verifies every node against that one certificate.
    fn node(&self, id: &str) -> Server {
        let data = self.tmp.path().join(id);
        let first = self.tmp.path().join("node-a/tls");
        let mut o = ServerOpts::new(&data);
        o.extra_args = vec!["--config".into(), self.config.display().to_string()];
        for (k, v) in [
            ("RAMPART_DATABASE_URL", self.db.url.clone()),
            ("RAMPART_ENCRYPTION_KEY", MASTER_KEY.to_owned()),
            ("RAMPART_NODE_ID", id.to_owned()),
            ("RAMPART_TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
            ("RAMPART_RATE_LIMIT_BACKEND", "redis".to_owned()),
            ("RAMPART_REDIS_URL", self.redis.url()),
            ("RAMPART_BREACH_WEBHOOK_URL", format!("http://127.0.0.1:{}/hook", self.hook_port)),
            ("RAMPART_BREACH_WEBHOOK_SECRET", HOOK_SECRET.to_owned()),
            ("RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
        ] {
            o.env.push((k, v));
        }
        if id != "node-a" {
            o.env.push(("RAMPART_TLS_CERT", first.join("cert.pem").display().to_string()));
            o.env.push(("RAMPART_TLS_KEY", first.join("key.pem").display().to_string()));
        }
        start(o)
    }

    /// The certificate every node presents.
    fn cert(&self) -> PathBuf {
        self.tmp.path().join("node-a/tls/cert.pem")
    }
}

fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A client whose connections come from `source` (a loopback address), trusting `cert`.
fn client(source: &str, cert: &Path) -> reqwest::Client {
    crate::nginx::client_from(source, cert)
}

/// How long until `probe` holds, polling every 10 ms, or `None` after `BOUND`.
async fn within_bound<F, Fut>(mut probe: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if probe().await {
            return Some(start.elapsed());
        }
        if start.elapsed() > BOUND {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(c: &reqwest::Client, server: &Server, path: &str, token: &str) -> u16 {
    c.get(server.url(path)).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_nginx_share_limits_sessions_roles_blocks_and_deliver_each_webhook_once() {
    let deployment = Deployment::new("[auth]\nlogin_delay_after_failures = 20\n");
    let got: Deliveries = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", deployment.hook_port)).await.unwrap();
    let hooks = tokio::spawn(receiver(listener, HOOK_SECRET, Arc::clone(&got)));
    let a = deployment.node("node-a");
    let b = deployment.node("node-b");
    let bundle = deployment.cert();
    let nginx_dir = deployment.tmp.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let port = free_port();
    let _nginx = start_nginx_upstream(&nginx_dir, port, &[port_of(&a), port_of(&b)], &bundle, &a.data_dir);
    let edge = format!("https://localhost:{port}");
    let (ca, cb) = (a.client(), b.client());

    // One login budget for a client, whichever node nginx picks (round robin): in memory
    // each node would count on its own (29, 29, 28, 28, ...).
    let user = client("127.0.0.2", &bundle);
    let mut remaining = Vec::new();
    for i in 0..6 {
        let res = user
            .post(format!("{edge}/api/v1/auth/login"))
            .json(&json!({"username": format!("nobody{i}"), "password": "Wrong-Passw0rd!!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        remaining.push(res.headers()["x-ratelimit-remaining"].to_str().unwrap().to_owned());
    }
    assert_eq!(remaining, ["29", "28", "27", "26", "25", "24"], "one budget across both nodes");
    for node in [&a, &b] {
        let log = node.data_dir.join("logs/activity.log");
        wait_for("both nodes served some of them", || async {
            std::fs::read_to_string(&log).unwrap_or_default().contains("/api/v1/auth/login")
        })
        .await;
    }

    // Log in on A, log out on B: refused on A within the bound.
    let admin = a.login(&ca, "admin", ADMIN_PASSWORD).await;
    let other = a.login(&ca, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status(&ca, &a, "/api/v1/auth/me", &admin).await, 200);
    assert_eq!(status(&cb, &b, "/api/v1/auth/me", &admin).await, 200);
    let out = cb.post(b.url("/api/v1/auth/logout")).bearer_auth(&admin).send().await.unwrap();
    assert!(out.status().is_success());
    let took = within_bound(|| async { status(&ca, &a, "/api/v1/auth/me", &admin).await == 401 }).await;
    assert!(took.is_some(), "node A still accepted a token logged out on node B after {BOUND:?}");
    let admin = other;

    // A role change on B ends the user's sessions on A.
    let res = ca
        .post(a.url("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "rita", "password": "Quiet-Harbor-Passw0rd!7", "role": "editor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let rita = a.login(&ca, "rita", "Quiet-Harbor-Passw0rd!7").await;
    assert_eq!(status(&ca, &a, "/api/v1/auth/me", &rita).await, 200);
    let res = cb
        .patch(b.url("/api/v1/users/rita"))
        .bearer_auth(&admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let took = within_bound(|| async { status(&ca, &a, "/api/v1/auth/me", &rita).await == 401 }).await;
    assert!(took.is_some(), "rita's session survived a role change on the other node");

    // A block made on A is enforced by B, directly and through nginx.
    let res = ca
        .post(a.url("/api/v1/admin/security/block-ip"))
        .bearer_auth(&admin)
        .json(&json!({"ip_address": "127.0.0.9", "reason": "two-node test", "duration_hours": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let blocked_direct = crate::breach::client_from(&b, "127.0.0.9");
    let took =
        within_bound(|| async { blocked_direct.get(b.url("/health")).send().await.unwrap().status() == 403 }).await;
    assert!(took.is_some(), "node B still served an address blocked on node A after {BOUND:?}");
    let blocked_edge = client("127.0.0.9", &bundle);
    for _ in 0..4 {
        let res = blocked_edge.get(format!("{edge}/health")).send().await.unwrap();
        assert_eq!(res.status(), 403, "through nginx, whichever node answers");
    }

    // An alert raised on each node: each webhook is delivered once, by one node.
    for (node, source) in [(&a, "127.0.0.7"), (&b, "127.0.0.8")] {
        let attacker = crate::breach::client_from(node, source);
        for i in 0..11 {
            login_status(node, &attacker, &format!("g{i}"), "Wrong-Passw0rd!").await;
        }
    }
    wait_for("two alerts", || async { alerts(&a, &admin).await.len() >= 2 }).await;
    let breaches = || got.lock().unwrap().iter().filter(|(id, _)| !id.starts_with("audit-checkpoint-")).count();
    wait_for("both deliveries", || async { breaches() >= 2 }).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // time for a duplicate to show up
    let deliveries = got.lock().unwrap().clone();
    for (id, seen) in deliveries.iter().filter(|(id, _)| !id.starts_with("audit-checkpoint-")) {
        assert_eq!(seen.len(), 1, "{id} delivered {} times", seen.len());
        assert!(seen[0].1, "{id}: signature verifies");
    }
    assert_eq!(breaches(), 2, "{deliveries:?}");
    assert!(a.stop().success() && b.stop().success());
    hooks.abort();
}

async fn runs_jobs(node: &Server, token: &str) -> bool {
    node.get_json(token, "/api/v1/admin/health").await["runs_background_jobs"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_lease_holder_mid_reencryption_moves_the_job_to_the_other_node() {
    // 1,800 requests from one client and user: above the shared per-minute budgets.
    let deployment = Deployment::new(
        "[keys]\nreencrypt_pause_ms = 100\n[rate_limit]\nrequests_per_minute = 100000\nuser_requests_per_minute = 100000\n",
    );
    let a = deployment.node("node-a");
    let ca = a.client();
    let token = a.login(&ca, "admin", ADMIN_PASSWORD).await;
    wait_for("node A to take the lease", || runs_jobs(&a, &token)).await;
    let b = deployment.node("node-b");
    let cb = b.client();
    assert!(!runs_jobs(&b, &token).await, "one holder at a time");
    let ids = insert_numbered(&b, &token, 600).await;
    // Asked of node B; run by node A, which holds the lease.
    let res = cb.post(b.url("/api/v1/admin/keys/rotate")).bearer_auth(&token).json(&json!({"reencrypt": true}));
    assert_eq!(res.send().await.unwrap().status(), 200);
    // 6 batches of 100 with 100 ms pauses: kill A once it has done one or two.
    let deadline = Instant::now() + Duration::from_secs(30);
    let keys = loop {
        let keys = b.get_json(&token, "/api/v1/admin/keys").await;
        if keys["reencryption"]["last_document_seq"].as_i64().is_some_and(|c| c > 0) {
            break keys;
        }
        assert!(Instant::now() < deadline, "node A never re-sealed a batch: {keys}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    a.kill_9();
    assert!(!keys["reencryption"].is_null(), "node A had not finished when killed: {keys}");

    await_reencrypted(&b, &token, &ids).await;
    assert!(runs_jobs(&b, &token).await, "node B holds the lease now");
    let verify = b.get_json(&token, "/api/v1/admin/audit/verify").await;
    assert_eq!(verify["valid"], true, "{verify}");
    assert!(b.stop().success());
}
