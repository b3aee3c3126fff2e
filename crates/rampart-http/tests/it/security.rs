use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rampart_testkit::{TestApp, ADMIN, USER_PASSWORD};
use serde_json::{json, Value};

async fn alerts(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    app.get(&format!("/api/v1/admin/security/alerts{query}"), Some(admin)).await.body["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Detection runs in the background: wait (bounded) for an alert of `kind`.
async fn wait_alert(app: &TestApp, admin: &str, kind: &str) -> Value {
    for _ in 0..200 {
        if let Some(a) = alerts(app, admin, &format!("?type={kind}")).await.into_iter().next() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {kind} alert");
}

fn from(path: &str, method: Method, token: Option<&str>, body: Option<Value>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    match body {
        Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())).unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Blocks `ip` (an address or CIDR) for `hours` through the API, as `admin`.
async fn block(app: &TestApp, admin: &str, ip: &str, reason: &str, hours: u32) -> rampart_testkit::TestResponse {
    let body = json!({"ip_address": ip, "reason": reason, "duration_hours": hours});
    app.post("/api/v1/admin/security/block-ip", Some(admin), body).await
}

#[tokio::test]
async fn manual_blocks_apply_before_anything_and_expire() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let res = block(&app, &admin, "10.20.0.0/16", "incident 7", 1).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let blocked = app.send_from(from("/health", Method::GET, None, None), "10.20.30.40:1234").await;
    assert_eq!((blocked.status, blocked.code()), (StatusCode::FORBIDDEN, "ip_blocked"));
    assert!(blocked.header("x-ratelimit-limit").is_none(), "refused before rate accounting");
    let login = app
        .send_from(
            from("/api/v1/auth/login", Method::POST, None, Some(json!({"username": ADMIN, "password": "x"}))),
            "10.20.1.1:1",
        )
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN, "refused before authentication");
    assert_eq!(app.send_from(from("/health", Method::GET, None, None), "11.0.0.1:1").await.status, StatusCode::OK);
    let list = app.get("/api/v1/admin/security/blocked-ips", Some(&admin)).await;
    assert_eq!(list.body["blocked_ips"][0]["ip_address"], "10.20.0.0/16");
    app.clock.advance_secs(3601);
    assert_eq!(
        app.send_from(from("/health", Method::GET, None, None), "10.20.30.40:1").await.status,
        StatusCode::OK,
        "expired"
    );
    let admin = app.admin_token().await; // the old session idled out meanwhile

    app.post(
        "/api/v1/admin/security/block-ip",
        Some(&admin),
        json!({"ip_address": "192.0.2.7", "reason": "x", "duration_hours": 2}),
    )
    .await;
    assert_eq!(
        app.send_from(from("/health", Method::GET, None, None), "192.0.2.7:1").await.status,
        StatusCode::FORBIDDEN
    );
    let res = app.call(Method::DELETE, "/api/v1/admin/security/blocked-ips/192.0.2.7", Some(&admin), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.send_from(from("/health", Method::GET, None, None), "192.0.2.7:1").await.status, StatusCode::OK);
    for bad in [
        json!({"ip_address": "nope", "reason": "x", "duration_hours": 1}),
        json!({"ip_address": "1.2.3.4", "reason": "x", "duration_hours": 0}),
        json!({"ip_address": "0.0.0.0/0", "reason": "lock everyone out", "duration_hours": 1}),
        json!({"ip_address": "127.0.0.0/24", "reason": "covers the caller", "duration_hours": 1}),
    ] {
        assert_eq!(
            app.post("/api/v1/admin/security/block-ip", Some(&admin), bad).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    let kinds: Vec<String> = app.audit_records().await.iter().map(|r| r.event.event_type.clone()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "ip_block").count(), 2);
    assert_eq!(kinds.iter().filter(|k| *k == "ip_unblock").count(), 1);
}

#[tokio::test]
async fn admin_api_can_be_limited_to_networks() {
    let app = TestApp::with_config(|c| {
        c.breach.admin_allowed_ips = vec![rampart_types::Cidr::parse("192.0.2.0/24").unwrap()]
    })
    .await;
    let admin = app.admin_token().await;
    let outside = app.send_from(from("/api/v1/admin/audit", Method::GET, Some(&admin), None), "127.0.0.1:1").await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    let inside = app.send_from(from("/api/v1/admin/audit", Method::GET, Some(&admin), None), "192.0.2.10:1").await;
    assert_eq!(inside.status, StatusCode::OK);
    // User, role and data-subject management are administration too.
    for path in ["/api/v1/users", "/api/v1/users/admin", "/api/v1/roles", "/api/v1/gdpr/erasure?subject_id=s"] {
        let method = if path.starts_with("/api/v1/gdpr") { Method::DELETE } else { Method::GET };
        let res = app.send_from(from(path, method, Some(&admin), None), "127.0.0.1:1").await;
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "ip_blocked"), "{path}");
    }
    assert_eq!(
        app.get("/api/v1/auth/me", Some(&admin)).await.status,
        StatusCode::OK,
        "the rest of the API is unaffected"
    );
    // The route table is the policy: every route it places in the admin area is closed
    // to the outside address, and no other route is.
    for route in rampart_http::route_inventory() {
        let path = route.path.replace("{username}", ADMIN).replace('{', "x").replace('}', "");
        let res = app.send_from(from(&path, route.method.clone(), Some(&admin), None), "127.0.0.1:1").await;
        let closed = res.code() == "ip_blocked";
        assert_eq!(closed, route.policy.area == rampart_core::Area::Admin, "{} {}", route.method, route.path);
    }
}

/// Breach detection counts refusals by the area the route table gives them: a user
/// refused data again and again is not escalating privileges; refused administration is.
#[tokio::test]
async fn refusals_count_towards_escalation_only_in_the_admin_area() {
    let app = TestApp::with_config(|c| c.breach.forbidden_threshold = 3).await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "secret"})).await;
    app.post("/api/v1/roles", Some(&admin), json!({"name": "none", "permissions": []})).await;
    let nobody = app.user_with_role("nobody", "none").await;
    for _ in 0..6 {
        let res = app.get("/api/v1/collections/secret/documents", Some(&nobody)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alerts(&app, &admin, "?type=privilege_escalation").await.is_empty(), "data refusals are not escalation");
    assert_eq!(app.get("/api/v1/auth/me", Some(&nobody)).await.status, StatusCode::OK, "and end no session");
    // From another address: the Critical alert blocks its source, and the admin reads
    // the alerts from 127.0.0.1.
    for _ in 0..3 {
        let res = app.send_from(from("/api/v1/admin/keys", Method::GET, Some(&nobody), None), "203.0.113.9:1").await;
        assert_eq!(res.status, StatusCode::FORBIDDEN);
    }
    let alert = wait_alert(&app, &admin, "privilege_escalation").await;
    assert_eq!(alert["details"]["admin_refusals"], 3);
    assert_eq!(alert["details"]["refused"]["permission"], "keys.read");
}

#[tokio::test]
async fn raising_ones_own_role_is_critical_and_revokes_sessions() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/roles", Some(&admin), json!({"name": "um", "permissions": ["users.read", "users.update"]})).await;
    let um = app.user_with_role("mallory", "um").await;
    // From another address: Critical alerts block the source, and the checks below come
    // from 127.0.0.1.
    let patch = from("/api/v1/users/mallory", Method::PATCH, Some(&um), Some(json!({"role": "admin"})));
    let res = app.send_from(patch, "203.0.113.66:1").await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let alert = wait_alert(&app, &admin, "privilege_escalation").await;
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["details"]["user"], "mallory");
    for _ in 0..100 {
        if app.get("/api/v1/auth/me", Some(&um)).await.status == StatusCode::UNAUTHORIZED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the escalating user's session survived");
}

/// Only the route's literal segments go unchecked: a parameter the client chose, and every
/// segment of a path that matches no route, are inspected.
#[tokio::test]
async fn injection_in_a_path_parameter_or_an_unrouted_path_is_found() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "c"})).await;
    let attack = "/api/v1/collections/c/documents/1%27%20OR%20%271%27%3D%271%27%20--";
    let res = app.send_from(from(attack, Method::GET, Some(&admin), None), "203.0.113.21:1").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let alert = wait_alert(&app, &admin, "sql_injection").await;
    assert_eq!(alert["details"]["location"], "path");
    let unrouted = "/api/v1/nothing%27%20UNION%20SELECT%20password%20FROM%20users%20--";
    let res = app.send_from(from(unrouted, Method::GET, None, None), "203.0.113.22:1").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    for _ in 0..200 {
        if alerts(&app, &admin, "?type=sql_injection").await.len() >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the unrouted path's injection raised no alert");
}

#[tokio::test]
async fn injection_in_query_and_body_raises_an_alert_and_gets_a_safe_answer() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "c", "indexes": ["email"]})).await;
    let attack = "/api/v1/collections/c/documents?email=x%27%20OR%20%271%27%3D%271%27%20--";
    let res = app.send_from(from(attack, Method::GET, Some(&admin), None), "203.0.113.9:1").await;
    assert_eq!(res.status, StatusCode::OK, "answered normally: the value is only a blind-index key");
    assert!(res.body["documents"].as_array().unwrap().is_empty());
    let alert = wait_alert(&app, &admin, "sql_injection").await;
    assert_eq!((alert["severity"].as_str(), alert["details"]["location"].as_str()), (Some("high"), Some("query")));
    let mut blocked = StatusCode::OK;
    for _ in 0..200 {
        blocked = app.send_from(from("/health", Method::GET, None, None), "203.0.113.9:1").await.status;
        if blocked == StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(blocked, StatusCode::FORBIDDEN, "High: the source is blocked for a while");
    let body = json!({"data": {"email": "1 UNION SELECT password FROM users"}});
    let res = app
        .send_from(from("/api/v1/collections/c/documents", Method::POST, Some(&admin), Some(body)), "203.0.113.10:1")
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "stored as data, never executed");
    // Ordinary data raises nothing.
    app.post("/api/v1/collections/c/documents", Some(&admin), json!({"data": {"email": "o'brien@example.com"}})).await;
    let mut all = Vec::new();
    for _ in 0..200 {
        all = alerts(&app, &admin, "?type=sql_injection").await;
        if all.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(all.len(), 2, "one per source address, none for ordinary data: {all:?}");
    assert!(all.iter().any(|a| a["details"]["location"] == "$.data.email"));
}

#[tokio::test]
async fn invalid_tokens_from_one_address_raise_unauthorized_access() {
    let app = TestApp::with_config(|c| c.breach.token_failure_threshold = 5).await;
    let admin = app.admin_token().await;
    for i in 0..6 {
        app.get("/api/v1/auth/me", Some(&format!("rps_forged{i}"))).await;
    }
    let alert = wait_alert(&app, &admin, "unauthorized_access").await;
    assert_eq!(alert["severity"], "medium");
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK, "medium alerts block no one");
}

#[tokio::test]
async fn alerts_can_be_acknowledged_and_resolved_with_an_audit_trail() {
    let app = TestApp::with_config(|c| c.breach.token_failure_threshold = 1).await;
    let admin = app.admin_token().await;
    for _ in 0..3 {
        app.get("/api/v1/auth/me", Some("rps_forged")).await;
    }
    let alert = wait_alert(&app, &admin, "unauthorized_access").await;
    let id = alert["id"].as_str().unwrap();
    let viewer = app.user_with_role("v", "viewer").await;
    let denied =
        app.call(Method::POST, &format!("/api/v1/admin/security/alerts/{id}/acknowledge"), Some(&viewer), None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let ack =
        app.call(Method::POST, &format!("/api/v1/admin/security/alerts/{id}/acknowledge"), Some(&admin), None).await;
    assert_eq!(
        (ack.body["status"].as_str(), ack.body["acknowledged_by"].as_str()),
        (Some("acknowledged"), Some(ADMIN))
    );
    assert_eq!(alerts(&app, &admin, "?status=open").await.len(), 0);
    let res = app.call(Method::POST, &format!("/api/v1/admin/security/alerts/{id}/resolve"), Some(&admin), None).await;
    assert_eq!(res.body["status"], "resolved");
    let missing =
        app.call(Method::POST, "/api/v1/admin/security/alerts/alert-nope/acknowledge", Some(&admin), None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(app.audit_records().await.iter().filter(|r| r.event.event_type == "alert_ack").count(), 2);
    let _ = USER_PASSWORD;
}

#[tokio::test]
async fn webhook_payloads_follow_each_endpoints_format() {
    use rampart_config::{WebhookEndpoint, WebhookFormat};
    let app = TestApp::with_config(|c| {
        c.breach.token_failure_threshold = 1;
        c.breach.instance_id = "node-7".into();
        for (url, format) in [
            ("https://hooks.example/generic", WebhookFormat::Generic),
            ("https://hooks.example/slack", WebhookFormat::Slack),
            ("https://events.example/pd", WebhookFormat::PagerDuty),
        ] {
            c.breach.webhooks.push(WebhookEndpoint {
                url: url.into(),
                secret: secrecy::SecretString::from("routing-key-1"),
                format,
                previous: None,
            });
        }
    })
    .await;
    let admin = app.admin_token().await;
    for _ in 0..3 {
        app.get("/api/v1/auth/me", Some("rps_forged")).await;
    }
    wait_alert(&app, &admin, "unauthorized_access").await;
    let rows: Vec<(String, String, Value)> = app
        .tamper()
        .webhook_outbox()
        .into_iter()
        .map(|(endpoint, id, payload)| (endpoint, id, serde_json::from_str(&payload).unwrap()))
        .collect();
    assert_eq!(rows.len(), 3, "one queued delivery per endpoint, in the alert's transaction");
    let by = |suffix: &str| rows.iter().find(|(e, _, _)| e.ends_with(suffix)).unwrap();
    let (_, id, generic) = by("generic");
    for k in [
        "event_type",
        "severity",
        "timestamp",
        "breach_type",
        "details",
        "recommended_action",
        "instance_id",
        "event_id",
    ] {
        assert!(!generic[k].is_null(), "{k}");
    }
    assert_eq!(
        (generic["event_type"].as_str(), generic["instance_id"].as_str(), generic["event_id"].as_str()),
        (Some("security_breach"), Some("node-7"), Some(id.as_str()))
    );
    let (_, _, slack) = by("slack");
    assert!(slack["text"].as_str().unwrap().contains("unauthorized_access"));
    let (_, _, pd) = by("pd");
    assert_eq!((pd["event_action"].as_str(), pd["dedup_key"].as_str()), (Some("trigger"), Some(id.as_str())));
    assert!(pd.get("routing_key").is_none(), "the routing key (a secret) is added at delivery, never stored");
    let app = app.restart().await;
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!rampart_testkit::contains(&bytes, b"routing-key-1"), "webhook secret in {name}");
    }
    assert_eq!(pd["payload"]["severity"], "warning", "medium maps to PagerDuty's warning");
    assert_eq!(pd["payload"]["source"], "node-7");
}

#[tokio::test]
async fn a_request_rate_far_above_the_accounts_baseline_is_unusual_access() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let t = app.user_with_role("steady", "viewer").await;
    for _ in 0..6 {
        for _ in 0..10 {
            app.get("/api/v1/auth/me", Some(&t)).await;
        }
        app.clock.advance_secs(60);
    }
    assert!(alerts(&app, &admin, "?type=unusual_access").await.is_empty(), "a steady pace is normal");
    for _ in 0..150 {
        app.get("/api/v1/auth/me", Some(&t)).await;
    }
    let alert = wait_alert(&app, &admin, "unusual_access").await;
    assert_eq!((alert["severity"].as_str(), alert["details"]["user"].as_str()), (Some("medium"), Some("steady")));
    assert!(alert["details"]["requests_this_minute"].as_u64().unwrap() > 100);
}

/// Polls `/health` from `peer` for a while; true if it was ever refused as blocked.
async fn gets_blocked(app: &TestApp, peer: &str) -> bool {
    for _ in 0..50 {
        if app.send_from(from("/health", Method::GET, None, None), peer).await.status == StatusCode::FORBIDDEN {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// The outside review's break: a cross-site `<img>` (no credentials, `Sec-Fetch-Site:
/// cross-site`) with injection-looking text in its query got the victim's address blocked
/// for 24 h. Such evidence alerts and never blocks.
#[tokio::test]
async fn injection_text_a_victims_browser_can_be_made_to_send_alerts_but_never_blocks() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let attack = "/api/v1/collections?q=x%27%20OR%20%271%27%3D%271%27%20--";
    let mut img = from(attack, Method::GET, None, None);
    img.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    app.send_from(img, "198.51.100.20:1").await;
    // Unauthenticated, no fetch metadata at all: still not the sender's own evidence.
    app.send_from(from(attack, Method::GET, None, None), "198.51.100.21:1").await;
    // Authenticated but cross-site (a page that could not have read the token anyway).
    let mut xs = from(attack, Method::GET, Some(&admin), None);
    xs.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    app.send_from(xs, "198.51.100.22:1").await;
    for _ in 0..200 {
        if alerts(&app, &admin, "?type=sql_injection").await.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let found = alerts(&app, &admin, "?type=sql_injection").await;
    assert_eq!(found.len(), 3, "each still raises an alert: {found:?}");
    assert!(found.iter().all(|a| a["details"]["address_blocked"] == false));
    for peer in ["198.51.100.20:1", "198.51.100.21:1", "198.51.100.22:1"] {
        assert!(!gets_blocked(&app, peer).await, "{peer} must not be blocked");
    }
    let blocks = app.get("/api/v1/admin/security/blocked-ips", Some(&admin)).await;
    assert_eq!(blocks.body["blocked_ips"], json!([]));
}

/// The outside review's break: after a thief used a stolen refresh token first, the
/// owner's later refresh blocked the owner's address. Reuse revokes the family and
/// raises the Critical alert, and blocks neither address.
#[tokio::test]
async fn refresh_token_reuse_revokes_and_alerts_but_blocks_no_address() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let owner = "192.0.2.44:1";
    let thief = "203.0.113.66:1";
    let login = app
        .send_from(
            Request::post("/api/v1/auth/login")
                .header("content-type", "application/json")
                .body(Body::from(json!({"username": ADMIN, "password": rampart_testkit::ADMIN_PASSWORD}).to_string()))
                .unwrap(),
            owner,
        )
        .await;
    let stolen = login.body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |peer: &'static str| {
        let body = json!({"refresh_token": stolen}).to_string();
        let app = &app;
        async move {
            let req = Request::post("/api/v1/auth/refresh")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            app.send_from(req, peer).await.status
        }
    };
    assert_eq!(refresh(thief).await, StatusCode::OK, "the thief uses it first");
    app.clock.advance_secs(10);
    assert_eq!(refresh(owner).await, StatusCode::UNAUTHORIZED, "the owner's copy is now a reuse");
    let alert = wait_alert(&app, &admin, "privilege_escalation").await;
    assert_eq!(alert["severity"], "critical");
    assert!(!gets_blocked(&app, owner).await && !gets_blocked(&app, thief).await);
}

/// A user retrying too fast (answered 429) is not failing logins: no failed-login alert,
/// no block, however many retries.
#[tokio::test]
async fn refusals_answered_429_do_not_count_as_failed_logins() {
    // The default threshold (more than 10 in 5 minutes); the login delay evaluates 5.
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let peer = "192.0.2.77:1";
    let mut statuses = Vec::new();
    for i in 0..40 {
        // Two wrong passwords, then the right one, over and over, faster than allowed.
        let pw = if i % 3 == 2 { rampart_testkit::ADMIN_PASSWORD } else { "Wrong-Passw0rd!!" };
        let req = Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(json!({"username": "nobody-at-all", "password": pw}).to_string()))
            .unwrap();
        statuses.push(app.send_from(req, peer).await.status);
    }
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    let failed = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert!(refused >= 30 && failed <= 5, "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alerts(&app, &admin, "?type=multiple_failed_logins").await.is_empty());
    assert!(!gets_blocked(&app, peer).await);
}

/// A blocked client is told until when; the refusal is audited (sampled).
#[tokio::test]
async fn ip_blocked_says_until_when_and_is_audited() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let res = block(&app, &admin, "192.0.2.99", "test", 2).await;
    let until = res.body["expires_at"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let blocked = app.send_from(from("/health", Method::GET, None, None), "192.0.2.99:1").await;
        assert_eq!(blocked.code(), "ip_blocked");
        assert!(blocked.body["error"].as_str().unwrap().contains(&until), "{:?}", blocked.body);
    }
    let records = app.audit_records().await;
    let refusals: Vec<_> = records
        .iter()
        .filter(|r| r.event.event_type == "permission_denied" && r.event.details["reason"] == "ip_blocked")
        .collect();
    assert_eq!(refusals.len(), 1, "audited once per minute per address, not per request");
}
