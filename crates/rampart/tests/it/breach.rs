use std::collections::HashMap;
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{start, Server, ServerOpts, ADMIN_PASSWORD};

pub(crate) fn client_from(server: &Server, source: &str) -> reqwest::Client {
    let pem = std::fs::read(&server.cert).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

pub(crate) async fn login_status(server: &Server, c: &reqwest::Client, user: &str, pw: &str) -> u16 {
    c.post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": user, "password": pw}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub(crate) async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn alerts(server: &Server, token: &str) -> Vec<Value> {
    let v: Value = server.get_json(token, "/api/v1/admin/security/alerts").await;
    v["alerts"].as_array().cloned().unwrap_or_default()
}

/// 11 failed logins from one address: alert, that address blocked, others unaffected;
/// the same count against one account from many addresses: alert per account, no block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_caught_per_address_and_per_account() {
    let tmp = tempfile::tempdir().unwrap();
    // Refusals inside the account delay (429) are not failed logins, so the delay is set
    // above the spray here to let every attempt be evaluated.
    let config = tmp.path().join("rampart.toml");
    std::fs::write(&config, "[auth]\nlogin_delay_after_failures = 20\n").unwrap();
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    let server = start(opts);
    let admin = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    let attacker = client_from(&server, "127.0.0.2");
    for i in 0..11 {
        assert_eq!(login_status(&server, &attacker, &format!("guess{i}"), "Wrong-Passw0rd!").await, 401);
    }
    wait_for("the address block", || async { login_status(&server, &attacker, "admin", ADMIN_PASSWORD).await == 403 })
        .await;
    let bystander = client_from(&server, "127.0.0.3");
    assert_eq!(login_status(&server, &bystander, "admin", ADMIN_PASSWORD).await, 200);
    let found = alerts(&server, &admin).await;
    let a = found.iter().find(|a| a["breach_type"] == "multiple_failed_logins").unwrap();
    assert_eq!((a["severity"].as_str(), a["details"]["ip_address"].as_str()), (Some("high"), Some("127.0.0.2")));

    for i in 0..11 {
        let c = client_from(&server, &format!("127.0.1.{}", 10 + i));
        let status = login_status(&server, &c, "victim", "Spray-Passw0rd!").await;
        assert_eq!(status, 401);
    }
    let server_ref = &server;
    let admin_ref = &admin;
    wait_for("the per-account alert", || async move {
        alerts(server_ref, admin_ref)
            .await
            .iter()
            .any(|a| a["details"]["scope"] == "account" && a["details"]["user"] == "victim")
    })
    .await;
    let one = client_from(&server, "127.0.1.10");
    assert_ne!(
        login_status(&server, &one, "victim", "x").await,
        403,
        "spray sources are not blocked for an account alert"
    );
}

/// Reading more than the (lowered) threshold of document data revokes the reader's sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exfiltration_over_the_threshold_revokes_the_users_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_DATA_EXFILTRATION_THRESHOLD_MB", "1".into()));
    let server = start(opts);
    let c = server.client();
    let admin = server.login(&c, "admin", ADMIN_PASSWORD).await;
    c.post(server.url("/api/v1/collections")).bearer_auth(&admin).json(&json!({"name": "big"})).send().await.unwrap();
    for _ in 0..6 {
        let res = c
            .post(server.url("/api/v1/collections/big/documents"))
            .bearer_auth(&admin)
            .json(&json!({"data": {"blob": "x".repeat(300_000)}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    c.post(server.url("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "reader", "password": "Quiet-Lake-Passw0rd!9", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    let thief = client_from(&server, "127.0.0.9");
    let token: Value = thief
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": "reader", "password": "Quiet-Lake-Passw0rd!9"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let page =
        thief.get(server.url("/api/v1/collections/big/documents?limit=10")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(page.status(), 200);
    wait_for("session revocation", || async {
        c.get(server.url("/api/v1/auth/me")).bearer_auth(&token).send().await.unwrap().status() == 401
    })
    .await;
    let found = alerts(&server, &admin).await;
    let a = found.iter().find(|a| a["breach_type"] == "data_exfiltration").unwrap();
    assert_eq!((a["severity"].as_str(), a["details"]["user"].as_str()), (Some("critical"), Some("reader")));
}

pub(crate) type Deliveries = Arc<Mutex<HashMap<String, Vec<(Value, bool)>>>>;

/// A local receiver that checks each delivery's signature and counts per event id.
pub(crate) async fn receiver(listener: tokio::net::TcpListener, secret: &'static str, got: Deliveries) {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let got = Arc::clone(&got);
            async move {
                let sig = headers.get("x-rampart-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let id = headers.get("x-rampart-event-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                let valid = rampart_crypto::verify_webhook_signature(secret.as_bytes(), &sig, &body, now, 300);
                let forged = rampart_crypto::verify_webhook_signature(b"not-the-secret", &sig, &body, now, 300);
                assert!(!forged, "a signature must not verify under another secret");
                let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                got.lock().unwrap().entry(id).or_default().push((payload, valid));
                axum::http::StatusCode::OK
            }
        }),
    );
    let _ = axum::serve(listener, app).await;
}

/// The receiver is down when the alert fires and the server restarts in between; the
/// webhook still arrives, signed, exactly once per event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_survive_a_dead_receiver_and_a_restart_and_arrive_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let opts = || {
        let mut o = ServerOpts::new(&data);
        o.env.push(("RAMPART_BREACH_WEBHOOK_URL", format!("http://127.0.0.1:{port}/hook")));
        o.env.push(("RAMPART_BREACH_WEBHOOK_SECRET", "whsec-test-123".into()));
        o.env.push(("RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".into()));
        o.env.push(("RAMPART_INSTANCE_ID", "test-node".into()));
        o
    };
    let server = start(opts());
    let attacker = client_from(&server, "127.0.0.7");
    for i in 0..11 {
        login_status(&server, &attacker, &format!("g{i}"), "Wrong-Passw0rd!").await;
    }
    let admin = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    wait_for("the alert", || async { !alerts(&server, &admin).await.is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // at least one failed attempt
    assert!(server.stop().success());

    let got: Deliveries = Arc::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let task = tokio::spawn(receiver(listener, "whsec-test-123", Arc::clone(&got)));
    let server = start(opts());
    // The alert's retries back off while the receiver is down, so it may come after the
    // shutdown's checkpoint: wait for the alert itself.
    let alert_arrived = || async { got.lock().unwrap().keys().any(|k| !k.starts_with("audit-checkpoint-")) };
    wait_for("the alert's delivery", alert_arrived).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // time for any duplicate to show up
    let mut deliveries = got.lock().unwrap().clone();
    // The shutdown also sent a signed audit checkpoint through the same durable outbox.
    let checkpoints: Vec<_> = deliveries.keys().filter(|k| k.starts_with("audit-checkpoint-")).cloned().collect();
    assert!(!checkpoints.is_empty(), "a checkpoint left with the webhooks: {deliveries:?}");
    for id in checkpoints {
        let seen = deliveries.remove(&id).unwrap();
        assert_eq!(seen.len(), 1, "exactly once for {id}");
        assert!(seen[0].1 && seen[0].0["event_type"] == "audit_checkpoint" && seen[0].0["mac"].is_string());
    }
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let (id, seen) = deliveries.into_iter().next().unwrap();
    assert_eq!(seen.len(), 1, "exactly once for {id}");
    let (payload, valid) = &seen[0];
    assert!(valid, "signature verifies with the shared secret");
    for key in [
        "event_type",
        "severity",
        "timestamp",
        "breach_type",
        "details",
        "recommended_action",
        "instance_id",
        "event_id",
    ] {
        assert!(!payload[key].is_null(), "{key} missing: {payload}");
    }
    assert_eq!(
        (payload["event_type"].as_str(), payload["instance_id"].as_str()),
        (Some("security_breach"), Some("test-node"))
    );
    assert_eq!(payload["event_id"], id.as_str());
    drop(server);
    task.abort();
}

/// The way back in: `rampart security blocks` and `unblock ADDR` work on the data
/// directory of the running server, with the global flags after the verb, and the
/// server applies the unblock within seconds; the unblock is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_cli_lists_and_lifts_blocks_on_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = start(ServerOpts::new(&data));
    let admin = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    let res = server
        .client()
        .post(server.url("/api/v1/admin/security/block-ip"))
        .bearer_auth(&admin)
        .json(&json!({"ip_address": "127.0.0.9", "reason": "locked myself out", "duration_hours": 24}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let me = client_from(&server, "127.0.0.9");
    let health = |c: reqwest::Client| {
        let url = server.url("/health");
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(health(me.clone()).await, 403);

    let cli = |args: &[&str]| {
        let out = crate::support::bin().args(["security"]).args(args).arg("--data-dir").arg(&data).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: Value = serde_json::from_str(&cli(&["blocks", "--json"])).unwrap();
    assert_eq!(listed["blocked_ips"][0]["ip_address"], "127.0.0.9/32", "{listed}");
    let table = cli(&["blocks"]);
    assert!(table.lines().next().unwrap().starts_with("address"), "{table}");
    cli(&["unblock", "127.0.0.9"]);
    wait_for("the server to apply the unblock", || {
        let h = health(me.clone());
        async move { h.await == 200 }
    })
    .await;
    let audit = server.get_json(&admin, "/api/v1/admin/audit?event_type=ip_unblock").await;
    assert_eq!(audit["records"][0]["user"], "local-cli", "{audit}");
    drop(server);
}
