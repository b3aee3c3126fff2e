//! `GET /metrics`: Prometheus text, behind `metrics.read`, counting what operators alert on,
//! and never naming a user, an address, a token or a subject in a label.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use rampart_testkit::TestApp;
use serde_json::json;

fn failed_login(name: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/login")
        .header("content-type", "application/json")
        .body(Body::from(json!({"username": name, "password": "Wrong-Passw0rd!!"}).to_string()))
        .unwrap()
}

async fn scrape(app: &TestApp, token: &str) -> String {
    let res = app.get("/metrics", Some(token)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    String::from_utf8(res.raw).unwrap()
}

/// The value of the sample `series` (name and labels exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every line is a comment or `name{label="value",...} number`, and label values are
/// route templates or fixed words.
fn assert_well_formed(text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.parse::<f64>().is_ok(), "value of {line}");
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(series[..name_end].bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "name of {line}");
        let labels = series[name_end..].trim_start_matches('{').trim_end_matches('}');
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let (_, v) = pair.split_once('=').unwrap();
            let v = v.trim_matches('"');
            assert!(
                v.bytes().all(|b| b.is_ascii_alphanumeric() || b"/{}_.+-".contains(&b)),
                "label value {v:?} in {line}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_need_metrics_read_and_never_name_a_user_address_token_or_subject() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let viewer = app.user_with_role("viewer-1", "viewer").await;
    assert_eq!(app.get("/metrics", None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/metrics", Some(&viewer)).await.status, StatusCode::FORBIDDEN);

    // Traffic carrying canaries: a failed login by name from an address, a subject's document.
    let res = app.send_from(failed_login("canary-user-7f3a"), "203.0.113.77:5000").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let created = app.post("/api/v1/collections", Some(&admin), json!({"name": "patients"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let doc = json!({"data": {"n": 1}, "subject_id": "subject-canary-91"});
    assert_eq!(app.post("/api/v1/collections/patients/documents", Some(&admin), doc).await.status, StatusCode::CREATED);
    assert_eq!(app.get("/api/v1/nowhere-canary-path", Some(&admin)).await.status, StatusCode::NOT_FOUND);

    let text = scrape(&app, &admin).await;
    assert_well_formed(&text);
    for canary in ["canary-user-7f3a", "203.0.113.77", "subject-canary-91", "nowhere-canary-path", "viewer-1", &admin] {
        assert!(!text.contains(canary), "{canary} reached /metrics");
    }
    assert!(sample(&text, r#"rampart_logins_total{outcome="failure"}"#).unwrap() >= 1.0);
    assert!(sample(&text, r#"rampart_logins_total{outcome="success"}"#).unwrap() >= 2.0, "admin and viewer");
    let failed = r#"rampart_http_requests_total{route="/api/v1/auth/login",method="POST",status="401"}"#;
    assert_eq!(sample(&text, failed), Some(1.0), "{text}");
    let created =
        r#"rampart_http_requests_total{route="/api/v1/collections/{collection}/documents",method="POST",status="201"}"#;
    assert_eq!(sample(&text, created), Some(1.0));
    assert_eq!(sample(&text, r#"rampart_http_requests_total{route="unmatched",method="any",status="404"}"#), Some(1.0));
    let latency = r#"rampart_http_request_duration_seconds_count{route="/api/v1/collections/{collection}/documents",method="POST"}"#;
    assert_eq!(sample(&text, latency), Some(1.0));
    for gauge in [
        "rampart_blocked_addresses",
        "rampart_webhook_outbox_backlog",
        "rampart_write_queue_depth",
        "rampart_key_age_seconds",
    ] {
        assert!(sample(&text, gauge).is_some(), "{gauge} missing");
    }
    assert!(sample(&text, r#"rampart_group_commit_size_count"#).unwrap() >= 1.0, "the writes above were committed");
}

#[tokio::test]
async fn alerts_and_blocks_are_counted() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    // Failed logins from another address raise the brute-force alert, which blocks it.
    for i in 0..40 {
        let res = app.send_from(failed_login(&format!("ghost{i}")), "198.51.100.9:5000").await;
        assert!(
            matches!(res.status, StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN),
            "{:?}",
            res.status
        );
    }
    let alerts = app.get("/api/v1/admin/security/alerts", Some(&admin)).await;
    let raised = &alerts.body["alerts"][0];
    let text = scrape(&app, &admin).await;
    let series = format!(
        "rampart_alerts_total{{type=\"{}\",severity=\"{}\"}}",
        raised["breach_type"].as_str().unwrap(),
        raised["severity"].as_str().unwrap()
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{series} in\n{text}");
    assert_eq!(sample(&text, "rampart_blocked_addresses"), Some(1.0), "the guessing address is blocked");
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_budget() {
    // Breach detection would block the address before its budget runs out.
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let admin = app.admin_token().await;
    for i in 0..35 {
        app.send_from(failed_login(&format!("ghost{i}")), "198.51.100.9:5000").await;
    }
    let text = scrape(&app, &admin).await;
    assert_eq!(sample(&text, r#"rampart_rate_limited_total{budget="login"}"#), Some(5.0), "{text}");
    assert_eq!(sample(&text, r#"rampart_rate_limited_total{budget="user"}"#), Some(0.0));
    let refused = r#"rampart_http_requests_total{route="/api/v1/auth/login",method="POST",status="429"}"#;
    assert_eq!(sample(&text, refused), Some(5.0));
}
