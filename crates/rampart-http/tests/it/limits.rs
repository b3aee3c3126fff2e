use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rampart_testkit::{TestApp, ADMIN, ADMIN_PASSWORD};
use serde_json::json;

fn has_rate_headers(res: &rampart_testkit::TestResponse) -> bool {
    ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"].iter().all(|h| res.header(h).is_some())
}

#[tokio::test]
async fn the_31st_login_in_a_minute_is_refused_before_any_work() {
    // Breach detection would block this address first; this test is about the limiter.
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    for i in 0..30 {
        // Distinct accounts, so only the per-IP budget is in play (not the account delay).
        let res = app.login(&format!("ghost{i}"), "Wrong-Passw0rd!!").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert_eq!(res.header("x-ratelimit-limit"), Some("30"));
        assert_eq!(res.header("x-ratelimit-remaining"), Some(&*(29 - i).to_string()));
    }
    // Even the right password is not checked once the budget is spent.
    let res = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!((res.status, res.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    let retry: u64 = res.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(res.body["error"], format!("Rate limit exceeded. Try again in {retry} seconds."));
    assert!(res.body["request_id"].is_string());
    assert!(has_rate_headers(&res));
    let reset: i64 = res.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset > rampart_testkit::T0.as_unix_seconds());
    let audited = app.audit_records().await.iter().filter(|r| r.event.event_type == "rate_limited").count();
    assert_eq!(audited, 1);
    // A flood is sampled, not recorded request by request.
    for _ in 0..20 {
        app.login(ADMIN, ADMIN_PASSWORD).await;
    }
    let audited = app.audit_records().await.iter().filter(|r| r.event.event_type == "rate_limited").count();
    assert_eq!(audited, 1);
    app.clock.advance_secs(60);
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rate_limit_headers_on_200_401_404_and_429() {
    let app = TestApp::with_config(|c| c.rate_limit.requests_per_minute = 5).await;
    let ok = app.get("/health", None).await;
    let unauth = app.get("/api/v1/auth/me", None).await;
    let missing = app.get("/nope", None).await;
    for _ in 0..5 {
        app.get("/health", None).await;
    }
    let limited = app.get("/health", None).await;
    for (res, status) in [(&ok, 200), (&unauth, 401), (&missing, 404), (&limited, 429)] {
        assert_eq!(res.status.as_u16(), status);
        assert!(has_rate_headers(res), "{status}");
        assert!(res.header("x-content-type-options").is_some(), "{status}");
    }
    assert_eq!(ok.header("x-ratelimit-limit"), Some("5"));
}

#[tokio::test]
async fn each_user_has_a_bucket_of_their_own() {
    let app = TestApp::with_config(|c| {
        c.rate_limit.user_requests_per_minute = 3;
        c.rate_limit.requests_per_minute = 1000;
    })
    .await;
    let other = app.user_with_role("olly", "viewer").await;
    app.clock.advance_secs(60); // the set-up requests above refill
    let admin = app.admin_token().await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/auth/me", Some(&admin)).await.status, StatusCode::OK);
    }
    let res = app.get("/api/v1/auth/me", Some(&admin)).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.header("x-ratelimit-limit"), Some("3"));
    let rec = app.audit_records().await.pop().unwrap();
    assert_eq!((rec.event.event_type.as_str(), rec.event.user.as_deref()), ("rate_limited", Some(ADMIN)));
    // Another user from the same address is unaffected.
    assert_eq!(app.get("/api/v1/auth/me", Some(&other)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn repeated_failures_delay_the_account_without_locking_it() {
    // Delay after 5 failures; breach detection (which would block the address) is off here.
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    for _ in 0..5 {
        assert_eq!(app.login(ADMIN, "Wrong-Passw0rd!!").await.status, StatusCode::UNAUTHORIZED);
    }
    let res = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "inside the delay even the right password waits");
    assert_eq!(res.header("retry-after"), Some("1"));
    app.clock.advance_secs(1);
    assert_eq!(app.login(ADMIN, "Wrong-Passw0rd!!").await.status, StatusCode::UNAUTHORIZED);
    let res = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(res.header("retry-after"), Some("2"), "the delay grows");
    app.clock.advance_secs(2);
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK, "no permanent lockout");
    assert_eq!(app.login(ADMIN, "Wrong-Passw0rd!!").await.status, StatusCode::UNAUTHORIZED, "success resets");
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK);
    // Unknown accounts are delayed the same way, so the delay reveals nothing.
    for _ in 0..5 {
        app.login("nobody-here", "Wrong-Passw0rd!!").await;
    }
    assert_eq!(app.login("nobody-here", "Wrong-Passw0rd!!").await.status, StatusCode::TOO_MANY_REQUESTS);
}

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/v1/collections")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization, content-type")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_denies_by_default_and_allows_listed_origins_exactly() {
    let app = TestApp::with_config(|c| c.cors.allowed_origins = vec!["https://app.example.com".into()]).await;
    let denied = app.send(preflight("https://evil.example")).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.header("access-control-allow-origin").is_none());
    let allowed = app.send(preflight("https://app.example.com")).await;
    assert_eq!(allowed.status, StatusCode::NO_CONTENT);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(allowed.header("access-control-allow-methods").unwrap().contains("POST"));
    let admin = app.admin_token().await;
    let cross_post = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/collections")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"name": "x"}).to_string()))
        .unwrap();
    let res = app.send(cross_post).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "origin_not_allowed"));
    let get =
        Request::builder().uri("/health").header(header::ORIGIN, "https://evil.example").body(Body::empty()).unwrap();
    let res = app.send(get).await;
    assert!(res.header("access-control-allow-origin").is_none(), "unlisted origins get no CORS grant");
    let get = Request::builder()
        .uri("/health")
        .header(header::ORIGIN, "https://app.example.com")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(get).await.header("access-control-allow-origin"), Some("https://app.example.com"));

    let default = TestApp::new().await;
    let res = default.send(preflight("https://app.example.com")).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no origin is allowed unless listed");
}

#[tokio::test]
async fn trace_and_unknown_methods_are_refused() {
    let app = TestApp::new().await;
    for m in ["TRACE", "CONNECT", "PROPFIND", "FOO"] {
        let req = Request::builder().method(m).uri("/health").body(Body::empty()).unwrap();
        let res = app.send(req).await;
        assert_eq!((res.status, res.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"), "{m}");
    }
}

fn login_req(user: &str, password: &str, device: Option<&str>) -> Request<Body> {
    let mut body = serde_json::json!({"username": user, "password": password});
    if let Some(d) = device {
        body["device_token"] = serde_json::json!(d);
    }
    Request::post("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The outside review's break: 20 wrong passwords for one account, sent at the same
/// moment from 20 addresses, were all evaluated. Attempts are reserved before hashing,
/// so in-flight ones count: at most the free budget (5) is evaluated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_guesses_are_held_to_the_account_budget() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let guesses = (0..20).map(|i| {
        let peer = format!("10.0.{i}.1:4000");
        let app = &app;
        async move { app.send_from(login_req(ADMIN, "Wrong-Passw0rd!!", None), &peer).await.status }
    });
    let statuses = futures_join_all(guesses).await;
    let evaluated = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert!(evaluated <= 5, "{evaluated} evaluated: {statuses:?}");
    assert_eq!(evaluated + refused, 20, "{statuses:?}");
}

async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = fs.collect();
    let mut out = Vec::with_capacity(handles.len());
    // Poll all together: each request runs up to its first await before any finishes.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

/// The outside review's break: 40 wrong passwords from other addresses made the owner
/// wait up to 15 minutes at their usual address. A client that completed a login keeps a
/// budget of its own: by its device token, or by the address it logged in from.
#[tokio::test]
async fn an_attacker_elsewhere_cannot_lock_the_owner_out() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let home = "192.0.2.10:5000";
    let first = app.send_from(login_req(ADMIN, ADMIN_PASSWORD, None), home).await;
    assert_eq!(first.status, StatusCode::OK);
    let device = first.body["device_token"].as_str().expect("a device token for API clients").to_owned();
    assert!(device.starts_with("rpd_"));
    for i in 0..40 {
        app.send_from(login_req(ADMIN, "Wrong-Passw0rd!!", None), &format!("203.0.113.{i}:6000")).await;
        app.clock.advance_secs(30);
    }
    let stranger = app.send_from(login_req(ADMIN, ADMIN_PASSWORD, None), "198.51.100.7:7000").await;
    assert_eq!(stranger.status, StatusCode::TOO_MANY_REQUESTS, "untrusted clients share the delayed bucket");
    let at_home = app.send_from(login_req(ADMIN, ADMIN_PASSWORD, None), home).await;
    assert_eq!(at_home.status, StatusCode::OK, "the remembered address is not delayed: {:?}", at_home.body);
    let travelling = app.send_from(login_req(ADMIN, ADMIN_PASSWORD, Some(&device)), "198.51.100.99:7000").await;
    assert_eq!(travelling.status, StatusCode::OK, "the device token is not delayed: {:?}", travelling.body);

    // A device's own budget is small: its failures delay that device, not the account.
    for _ in 0..5 {
        app.send_from(login_req(ADMIN, "Wrong-Passw0rd!!", Some(&device)), "198.51.100.99:7000").await;
    }
    let own = app.send_from(login_req(ADMIN, ADMIN_PASSWORD, Some(&device)), "198.51.100.99:7000").await;
    assert_eq!(own.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.send_from(login_req(ADMIN, ADMIN_PASSWORD, None), home).await.status, StatusCode::OK);

    // A forged or foreign token is just an untrusted client.
    let forged = format!("{}00", &device[..device.len() - 2]);
    let res = app.send_from(login_req(ADMIN, ADMIN_PASSWORD, Some(&forged)), "198.51.100.50:7000").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
}
