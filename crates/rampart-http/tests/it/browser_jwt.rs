use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine as _;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use rampart_testkit::{TestApp, ADMIN, ADMIN_PASSWORD};
use serde_json::{json, Value};

async fn cookie_login(app: &TestApp) -> (String, String) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/login?mode=cookie")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"username": ADMIN, "password": ADMIN_PASSWORD}).to_string()))
        .unwrap();
    let res = app.send(req).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert!(res.body.get("token").is_none(), "the session token stays out of reach of scripts");
    let set = res.header("set-cookie").unwrap().to_owned();
    for flag in ["__Host-rampart_session=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Domain="), "__Host- cookies carry no Domain");
    let cookie = set.split(';').next().unwrap().to_owned();
    (cookie, res.body["csrf_token"].as_str().unwrap().to_owned())
}

fn with_cookie(
    method: Method,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    csrf: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, cookie)
        .header(header::HOST, "localhost:9090");
    if let Some(o) = origin {
        b = b.header(header::ORIGIN, o);
    }
    if let Some(c) = csrf {
        b = b.header("x-csrf-token", c);
    }
    match body {
        Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())).unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

#[tokio::test]
async fn browser_mode_cookie_is_locked_down_and_cross_site_writes_fail() {
    let app = TestApp::new().await;
    let (cookie, csrf) = cookie_login(&app).await;
    let me = app.send(with_cookie(Method::GET, "/api/v1/auth/me", &cookie, None, None, None)).await;
    assert_eq!(me.status, StatusCode::OK, "reads work with the cookie alone");
    let body = json!({"name": "fromcookie"});
    let forged = app
        .send(with_cookie(
            Method::POST,
            "/api/v1/collections",
            &cookie,
            Some("https://evil.example"),
            Some(&csrf),
            Some(body.clone()),
        ))
        .await;
    // Refused by the CORS layer before the CSRF check even runs.
    assert_eq!(
        (forged.status, forged.code()),
        (StatusCode::FORBIDDEN, "origin_not_allowed"),
        "cross-origin POST with the cookie"
    );
    let no_token = app
        .send(with_cookie(
            Method::POST,
            "/api/v1/collections",
            &cookie,
            Some("https://localhost:9090"),
            None,
            Some(body.clone()),
        ))
        .await;
    assert_eq!(
        (no_token.status, no_token.code()),
        (StatusCode::FORBIDDEN, "csrf_failed"),
        "same origin but no CSRF token"
    );
    let no_origin = app
        .send(with_cookie(Method::POST, "/api/v1/collections", &cookie, None, Some(&csrf), Some(body.clone())))
        .await;
    assert_eq!(no_origin.code(), "csrf_failed", "a cookie write must name its origin");
    let wrong = app
        .send(with_cookie(
            Method::POST,
            "/api/v1/collections",
            &cookie,
            Some("https://localhost:9090"),
            Some("00"),
            Some(body.clone()),
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let ok = app
        .send(with_cookie(
            Method::POST,
            "/api/v1/collections",
            &cookie,
            Some("https://localhost:9090"),
            Some(&csrf),
            Some(body),
        ))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    let list = app.get("/api/v1/collections", Some(&app.admin_token().await)).await;
    assert_eq!(list.body["collections"].as_array().unwrap().len(), 1, "only the legitimate write happened");
    let out = app
        .send(with_cookie(
            Method::POST,
            "/api/v1/auth/logout",
            &cookie,
            Some("https://localhost:9090"),
            Some(&csrf),
            None,
        ))
        .await;
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        app.send(with_cookie(Method::GET, "/api/v1/auth/me", &cookie, None, None, None)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn jwts_verify_against_the_jwks_and_tampering_is_rejected() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let res = app.post("/api/v1/auth/token", Some(&admin), json!({"audience": "billing", "ttl_secs": 600})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "at most five minutes");
    let res = app.post("/api/v1/auth/token", Some(&admin), json!({"audience": "billing"})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let jwt = res.body["token"].as_str().unwrap().to_owned();
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    let kid = decode_header(&jwt).unwrap().kid.unwrap();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid.as_str()).unwrap().clone();
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    let dk = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["billing"]);
    // The fake clock starts in 2026-01-01: judge expiry against it, not the wall clock.
    v.validate_exp = false;
    let claims = decode::<Value>(&jwt, &dk, &v).unwrap().claims;
    assert_eq!((claims["sub"].as_str(), claims["roles"][0].as_str()), (Some(ADMIN), Some("admin")));
    for k in ["aud", "iss", "exp", "iat", "jti"] {
        assert!(!claims[k].is_null(), "{k}");
    }
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 300);

    let mut bytes = jwt.clone().into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    assert!(decode::<Value>(std::str::from_utf8(&bytes).unwrap(), &dk, &v).is_err(), "one flipped byte");
    let (_, rest) = jwt.split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert!(decode::<Value>(&none, &dk, &v).is_err(), "alg none");
    let mut wrong_aud = Validation::new(Algorithm::EdDSA);
    wrong_aud.set_audience(&["payroll"]);
    wrong_aud.validate_exp = false;
    assert!(decode::<Value>(&jwt, &dk, &wrong_aud).is_err(), "wrong audience");
    let mut real_clock = Validation::new(Algorithm::EdDSA);
    real_clock.set_audience(&["billing"]);
    assert!(decode::<Value>(&jwt, &dk, &real_clock).is_err(), "expired (minted at the fake clock's 2026-01-01)");

    // Rotation keeps the old key published for tokens in flight.
    let res = app.call(Method::POST, "/api/v1/admin/keys/rotate", Some(&admin), Some(json!({}))).await;
    assert_eq!(res.status, StatusCode::OK);
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwt_keys(&jwks), 2);
    let fresh = app.post("/api/v1/auth/token", Some(&admin), json!({"audience": "billing"})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(decode_header(&fresh).unwrap().kid.unwrap(), kid);
    app.clock.advance_secs(2 * 3600);
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    assert_eq!(jwt_keys(&jwks), 1, "the retired key leaves after the overlap window");
}

/// The JWT keys of a JWKS (it also holds the compliance-report key, kid `report-…`).
fn jwt_keys(jwks: &Value) -> usize {
    jwks["keys"].as_array().unwrap().iter().filter(|k| !k["kid"].as_str().unwrap().starts_with("report-")).count()
}

/// CSRF and cross-origin refusals leave an audit record, sampled: a flood of them gives
/// one record per address and reason a minute, not one per request.
#[tokio::test]
async fn csrf_and_origin_refusals_are_audited_once_a_minute() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let (cookie, _) = cookie_login(&app).await;
    for _ in 0..3 {
        let no_token = with_cookie(
            Method::POST,
            "/api/v1/collections",
            &cookie,
            Some("https://localhost:9090"),
            None,
            Some(json!({"name": "x"})),
        );
        assert_eq!(app.send(no_token).await.code(), "csrf_failed");
        let mut foreign = with_cookie(
            Method::POST,
            "/api/v1/collections",
            &cookie,
            Some("https://evil.example"),
            None,
            Some(json!({"name": "x"})),
        );
        foreign.headers_mut().remove(header::COOKIE);
        assert_eq!(app.send(foreign).await.code(), "origin_not_allowed");
    }
    assert_eq!(refusals(&app, "csrf_failed").await, 1);
    assert_eq!(refusals(&app, "origin_not_allowed").await, 1);
    app.clock.advance_secs(61);
    let again = with_cookie(Method::POST, "/api/v1/collections", &cookie, Some("https://localhost:9090"), None, None);
    app.send(again).await;
    assert_eq!(refusals(&app, "csrf_failed").await, 2, "the next minute is recorded again");
}

async fn refusals(app: &TestApp, reason: &str) -> usize {
    let records = app.audit_records().await;
    records.iter().filter(|r| r.event.event_type == "permission_denied" && r.event.details["reason"] == reason).count()
}
