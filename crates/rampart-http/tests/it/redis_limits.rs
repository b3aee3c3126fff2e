//! Rate limits shared through a real Redis (`[rate_limit] backend = "redis"`): one budget
//! for every node, the configured fail modes while Redis is down (audited, shown to
//! operators), and counting again once it is back.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use rampart_config::{FailMode, RateLimitBackend, RedisLimits, RedisUrl};
use rampart_core::{Budget, LimitKey, Limiter};
use rampart_limits_redis::RedisLimiter;
use rampart_testkit::redis::RedisServer;
use rampart_testkit::{TestApp, TestResponse, ADMIN, ADMIN_PASSWORD};
use serde_json::Value;

const CLIENT: &str = "127.0.0.1";

fn redis_backend(url: &str, login: FailMode, api: FailMode) -> RateLimitBackend {
    RateLimitBackend::Redis(RedisLimits {
        url: RedisUrl::parse(url).unwrap(),
        login_when_unreachable: login,
        api_when_unreachable: api,
    })
}

async fn app_on(redis: &RedisServer, login_per_minute: u32) -> TestApp {
    let url = redis.url();
    TestApp::with_config(move |c| {
        // Breach detection would block the address first; these tests are about the limiter.
        c.breach.enabled = false;
        c.rate_limit.login_requests_per_minute = login_per_minute;
        c.rate_limit.backend = redis_backend(&url, FailMode::Closed, FailMode::Open);
    })
    .await
}

/// A second node's limiter on the same deployment (the same root key) and the same Redis.
async fn other_node(app: &TestApp) -> RedisLimiter {
    let RateLimitBackend::Redis(redis) = &app.config.rate_limit.backend else { panic!("not on redis") };
    RedisLimiter::start(
        &app.config.rate_limit,
        redis,
        app.core.rate_limit_key(),
        app.core.events().clone(),
        Duration::from_secs(2),
    )
    .await
    .unwrap()
}

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    app.audit_records().await.into_iter().filter(|r| r.event.event_type == kind).map(|r| r.event.details).collect()
}

/// Polls `probe` until it is true (the limiter's keeper works in the background).
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut probe: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !probe().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn health_detail(app: &TestApp, token: &str) -> TestResponse {
    let res = app.get("/api/v1/admin/health", Some(token)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res
}

#[tokio::test]
async fn every_node_charges_one_login_budget_kept_under_keyed_names_that_expire() {
    let redis = RedisServer::start();
    let app = app_on(&redis, 5).await;
    let node_b = other_node(&app).await;
    for (i, left) in [4, 3, 2].into_iter().enumerate() {
        let res = app.login(&format!("ghost{i}"), "Wrong-Passw0rd!!").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        assert_eq!(res.header("x-ratelimit-remaining"), Some(&*left.to_string()), "attempt {i}");
    }
    // The same address spends the rest of its budget on the other node.
    let ip: IpAddr = CLIENT.parse().unwrap();
    for left in [1, 0] {
        let d = node_b.check(Budget::Login, LimitKey::Address(ip)).await;
        assert!(d.allowed && !d.unavailable && d.remaining == left, "{d:?}");
    }
    let res = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "spent on node B");
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    assert!(!node_b.check(Budget::Login, LimitKey::Address(ip)).await.allowed);
    // Another address has a budget of its own; the general API budget was not spent.
    let other = app.send_from(login_request(), "192.0.2.7:1234").await;
    assert_eq!(other.status, StatusCode::OK);
    // Refusals are audited once a minute per key across all nodes, not once per request.
    for _ in 0..10 {
        app.login(ADMIN, ADMIN_PASSWORD).await;
        node_b.check(Budget::Login, LimitKey::Address(ip)).await;
    }
    assert_eq!(events(&app, "rate_limited").await.len(), 1);

    // Redis holds neither addresses nor user names, and forgets every bucket within a minute.
    let keys = redis.cli(&["--scan"]);
    assert!(!keys.trim().is_empty());
    for key in keys.lines() {
        assert!(!key.contains(CLIENT) && !key.contains("192.0.2.7") && !key.contains(ADMIN), "{key}");
        let hash = key.rsplit(':').next().unwrap();
        assert!(key.starts_with("rampart:rl:") && hash.len() == 32, "{key}");
        let ttl: i64 = redis.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{key}: {ttl}");
        let fields = redis.cli(&["HGETALL", key]);
        assert!(!fields.contains(CLIENT) && !fields.contains(ADMIN), "{fields}");
    }
}

fn login_request() -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::json!({"username": ADMIN, "password": ADMIN_PASSWORD}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn redis_down_refuses_logins_admits_the_api_audits_it_and_limits_resume_when_back() {
    let mut redis = RedisServer::start();
    let app = app_on(&redis, 30).await;
    let token = app.admin_token().await;
    let up = health_detail(&app, &token).await;
    assert_eq!(up.body["status"], "ok");
    assert_eq!(up.body["rate_limit"]["backend"], "redis");
    assert_eq!(up.body["rate_limit"]["reachable"], true);
    assert_eq!(up.body["runs_background_jobs"], true, "a single node holds the lease");

    redis.kill();
    // Login fails closed: a clear 503, and the password is not even checked.
    let res = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!((res.status, res.code()), (StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable"), "{:?}", res.body);
    assert!(res.header("retry-after").is_some() && res.body["request_id"].is_string());
    let logins_before = events(&app, "login").await.len();
    // Everything else fails open.
    assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::OK);
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    // Operators see it; the public health check still says only status and version.
    let down = health_detail(&app, &token).await;
    assert_eq!(down.body["status"], "degraded");
    let rl = &down.body["rate_limit"];
    assert_eq!((rl["reachable"].as_bool(), rl["login_when_unreachable"].as_str()), (Some(false), Some("closed")));
    assert_eq!(rl["api_when_unreachable"], "open");
    assert!(rl["checks_without_store"].as_u64().unwrap() >= 3, "{rl}");
    assert!(rl["unreachable_since"].is_string() && rl["last_error"].is_string(), "{rl}");
    let public = app.get("/health", None).await.body;
    assert_eq!(public.as_object().map(|o| o.len()), Some(2), "{public}");
    // The outage is audited once, however many requests it answers.
    for _ in 0..5 {
        app.login(ADMIN, ADMIN_PASSWORD).await;
    }
    eventually("the outage is audited", Duration::from_secs(5), || async {
        !events(&app, "rate_limit_store_unreachable").await.is_empty()
    })
    .await;
    let outage = events(&app, "rate_limit_store_unreachable").await;
    assert_eq!(outage.len(), 1, "{outage:?}");
    assert_eq!(
        (outage[0]["login_when_unreachable"].as_str(), outage[0]["backend"].as_str()),
        (Some("closed"), Some("redis"))
    );
    assert!(!outage[0].to_string().contains(&redis.port.to_string()), "no address of the store in the audit");
    assert_eq!(events(&app, "login").await.len(), logins_before, "no login was attempted while closed");

    // Back: counted again (the budget shows in the headers) and the recovery is audited.
    redis.resume();
    eventually("logins are admitted again", Duration::from_secs(10), || async {
        app.login(ADMIN, ADMIN_PASSWORD).await.status == StatusCode::OK
    })
    .await;
    let res = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK);
    let remaining: u32 = res.header("x-ratelimit-remaining").unwrap().parse().unwrap();
    assert!(remaining < 29, "the restarted Redis counts again: {remaining}");
    assert_eq!(health_detail(&app, &token).await.body["status"], "ok");
    eventually("the recovery is audited", Duration::from_secs(15), || async {
        !events(&app, "rate_limit_store_restored").await.is_empty()
    })
    .await;
    assert_eq!(events(&app, "rate_limit_store_unreachable").await.len(), 1);
}

#[tokio::test]
async fn fail_modes_are_the_operators_choice() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = TestApp::with_config(move |c| {
        c.breach.enabled = false;
        c.rate_limit.backend = redis_backend(&url, FailMode::Open, FailMode::Closed);
    })
    .await;
    let token = app.admin_token().await;
    redis.kill();
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK, "login fails open");
    let res = app.get("/api/v1/auth/me", Some(&token)).await;
    assert_eq!((res.status, res.code()), (StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable"));
}

#[tokio::test]
async fn a_wrong_redis_password_is_an_outage_that_never_shows_the_password() {
    let redis = RedisServer::with_password("R3dis-Real-Secret");
    let wrong = format!("redis://:Wr0ng-Redis-Secret@127.0.0.1:{}/0", redis.port);
    let app = TestApp::with_config(move |c| {
        c.breach.enabled = false;
        // Open for logins here, so that an admin can look at the health detail.
        c.rate_limit.backend = redis_backend(&wrong, FailMode::Open, FailMode::Open);
    })
    .await;
    let token = app.admin_token().await;
    let health = health_detail(&app, &token).await;
    assert_eq!(health.body["rate_limit"]["last_error"], "authentication_failed", "{:?}", health.body);
    assert_eq!(health.body["status"], "degraded");
    eventually("the outage is audited", Duration::from_secs(5), || async {
        !events(&app, "rate_limit_store_unreachable").await.is_empty()
    })
    .await;
    let outage = events(&app, "rate_limit_store_unreachable").await;
    assert_eq!(outage[0]["error"], "authentication_failed", "{outage:?}");
    let everything = format!("{:?}{:?}{}", app.audit_records().await, app.config, String::from_utf8_lossy(&health.raw));
    assert!(!everything.contains("Wr0ng-Redis-Secret"), "the URL's password is never shown or recorded");
    assert!(redis.cli(&["PING"]).contains("PONG"), "the server itself is fine");
}

#[tokio::test]
async fn an_address_spray_leaves_only_expiring_buckets() {
    let redis = RedisServer::start();
    let app = app_on(&redis, 30).await;
    let node = other_node(&app).await;
    for i in 0..2000u32 {
        let ip = IpAddr::from([10, 9, (i >> 8) as u8, i as u8]);
        assert!(node.check(Budget::Api, LimitKey::Address(ip)).await.allowed);
    }
    // IPv6 clients are charged by /64: a spray inside one allocation is one bucket.
    for i in 0..500u16 {
        let ip = IpAddr::from([0x2001, 0xdb8, 7, 7, i, i, i, i]);
        node.check(Budget::Api, LimitKey::Address(ip)).await;
    }
    let size: usize = redis.cli(&["DBSIZE"]).trim().parse().unwrap();
    assert_eq!(size, 2001, "one bucket per IPv4 address, one for the whole IPv6 /64");
    let lasting = "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do \
                   if redis.call('PTTL', k) < 0 then n = n + 1 end end return n";
    assert_eq!(redis.cli(&["EVAL", lasting, "0"]).trim(), "0", "every bucket expires");
}
