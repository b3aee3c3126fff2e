use axum::http::{Method, StatusCode};
use rampart_testkit::TestApp;
use serde_json::json;

const SECURITY_HEADERS: &[&str] = &[
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
    "permissions-policy",
    "cache-control",
    "strict-transport-security",
];

#[tokio::test]
async fn every_error_body_has_error_code_and_request_id_and_headers() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let cases = vec![
        app.get("/api/v1/auth/me", None).await,
        app.get("/api/v1/users", Some("rps_forged")).await,
        app.get("/no/such/route", None).await,
        app.call(Method::DELETE, "/health", None, None).await,
        app.call(Method::TRACE, "/api/v1/users", Some(&admin), None).await,
        app.get("/api/v1/collections/missing", Some(&admin)).await,
        app.post("/api/v1/collections", Some(&admin), json!({"nope": 1})).await,
    ];
    for res in &cases {
        assert!(res.status.is_client_error(), "{:?}", res);
        for key in ["error", "code", "request_id"] {
            assert!(res.body[key].is_string(), "{key} missing in {:?}", res.body);
        }
        assert_eq!(res.header("x-request-id"), res.body["request_id"].as_str());
        assert_eq!(res.header("content-type"), Some("application/json"));
        for h in SECURITY_HEADERS {
            assert!(res.header(h).is_some(), "{h} missing on {}", res.status);
        }
    }
    assert_eq!(cases[0].status, StatusCode::UNAUTHORIZED);
    assert_eq!(cases[1].status, StatusCode::UNAUTHORIZED);
    assert_eq!(cases[2].status, StatusCode::NOT_FOUND);
    assert_eq!(cases[3].status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(cases[4].status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn success_responses_carry_security_headers_and_no_store() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    for res in [app.get("/health", None).await, app.get("/api/v1/auth/me", Some(&admin)).await] {
        assert_eq!(res.status, StatusCode::OK);
        for h in SECURITY_HEADERS {
            assert!(res.header(h).is_some(), "{h} missing");
        }
        assert_eq!(res.header("cache-control"), Some("no-store"));
        let hsts = res.header("strict-transport-security").unwrap();
        assert!(hsts.contains("max-age=31536000"));
    }
}

#[tokio::test]
async fn health_reveals_status_and_version_only() {
    let app = TestApp::new().await;
    let res = app.get("/health", None).await;
    let obj = res.body.as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, ["status", "version"]);
}

#[tokio::test]
async fn storage_failures_become_opaque_errors() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    // Make the database unwritable underneath the server: the API must not leak the
    // database's text.
    let locker = app.tamper().hold_write_lock();
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "x"})).await;
    drop(locker);
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.status.is_server_error(), "{:?}", res);
    let text = String::from_utf8_lossy(&res.raw).to_lowercase();
    for leak in ["sqlite", "database", "locked", "sql", "rusqlite", "postgres", "lock timeout", "/tmp"] {
        assert!(!text.contains(leak), "error body leaks {leak}: {text}");
    }
}

/// Endpoints whose body fields are all optional take an empty body; one with required
/// fields names the first missing one; a body without a JSON content type is still 415.
#[tokio::test]
async fn an_empty_body_reads_as_an_empty_object() {
    let app = rampart_testkit::TestApp::new().await;
    let admin = app.admin_token().await;
    let res = app.call(axum::http::Method::POST, "/api/v1/admin/keys/rotate", Some(&admin), None).await;
    assert_eq!(res.status, axum::http::StatusCode::OK, "{:?}", res.body);
    let res = app.call(axum::http::Method::POST, "/api/v1/collections", Some(&admin), None).await;
    assert_eq!(res.status, axum::http::StatusCode::BAD_REQUEST, "{:?}", res.body);
    assert!(res.body["error"].as_str().unwrap().contains("name"), "{:?}", res.body);
    let req = axum::http::Request::post("/api/v1/collections")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{\"name\": \"x\"}"))
        .unwrap();
    assert_eq!(app.send(req).await.status, axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
