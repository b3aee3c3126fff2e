//! OpenID Connect login against a real provider (npm `oidc-provider`, started per test by
//! `rampart_testkit::oidc`): the full flow in token and cookie mode, every ID token check,
//! replays, the binding of a flow to the client that started it, expiry, claim → role
//! mapping, account takeover by username, a provider that is down, and the client secret
//! kept out of everything.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rampart_core::Clock;
use rampart_testkit::oidc::OidcServer;
use rampart_testkit::{contains, TestApp, TestResponse, ADMIN, ADMIN_PASSWORD};
use serde_json::Value;

const SECRET: &str = "canary-oidc-client-secret-7f3a9c51";
const START: &str = "/api/v1/auth/oidc/start";

async fn setup() -> (OidcServer, TestApp) {
    let server = OidcServer::start(SECRET);
    let settings = server.settings();
    let app = TestApp::with_config(move |c| c.auth.oidc = Some(settings)).await;
    (server, app)
}

/// Starts a token-mode login: (authorization URL, flow token).
async fn start_token(app: &TestApp) -> (String, String) {
    let res = app.get(&format!("{START}?mode=token"), None).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert!(res.body["expires_at"].is_string() || res.body["expires_at"].is_number());
    (res.body["authorization_url"].as_str().unwrap().to_owned(), res.body["flow_token"].as_str().unwrap().to_owned())
}

/// The callback as the provider's redirect reaches us, with the flow token or a cookie.
async fn callback(app: &TestApp, path: &str, flow: Option<&str>, cookie: Option<&str>) -> TestResponse {
    let mut b = Request::builder().method(Method::GET).uri(path);
    if let Some(f) = flow {
        b = b.header("X-Rampart-Flow", f);
    }
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    app.send(b.body(Body::empty()).unwrap()).await
}

/// A whole token-mode login as `login`.
async fn token_login(server: &OidcServer, app: &TestApp, login: &str) -> TestResponse {
    let (url, flow) = start_token(app).await;
    let back = server.authorize(&url, login).await;
    let res = callback(app, &back, Some(&flow), None).await;
    if res.status == StatusCode::UNAUTHORIZED {
        eprintln!("refused: {}", last_refusal(app).await);
    }
    res
}

/// The reason of the last refused `login` audit record.
async fn last_refusal(app: &TestApp) -> String {
    let records = app.audit_records().await;
    let refused = records
        .iter()
        .rev()
        .find(|r| r.event.event_type == "login" && !r.event.success)
        .expect("a refused login was audited");
    refused.event.details["reason"].as_str().unwrap().to_owned()
}

fn refused(res: &TestResponse) {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{:?}", res.body);
    assert_eq!(res.code(), "external_login_failed");
    assert!(res.body.get("token").is_none());
    assert!(res.body["request_id"].is_string());
}

#[tokio::test]
async fn oidc_token_mode_login_provisions_a_user_keyed_by_issuer_and_subject() {
    let (server, app) = setup().await;
    let res = token_login(&server, &app, "alice").await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["user"]["username"], "alice");
    assert_eq!(res.body["user"]["role"], "editor", "groups staff → editor");
    assert!(res.body["refresh_token"].as_str().unwrap().starts_with("rpr_"));
    let token = res.body["token"].as_str().unwrap();
    let me = app.get("/api/v1/auth/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "alice");
    // Keyed by (issuer, subject), not by the name.
    let link = app.store.get_external_identity(&server.issuer(), "sub-alice").await.unwrap().expect("linked");
    assert_eq!(link.username.as_str(), "alice");
    // Audited like a local login, with its method.
    let records = app.audit_records().await;
    assert!(records.iter().any(|r| r.event.event_type == "user_create" && r.event.user.as_deref() == Some("alice")));
    assert!(records.iter().any(|r| r.event.event_type == "login"
        && r.event.success
        && r.event.details["method"] == "oidc"
        && r.event.user.as_deref() == Some("alice")));
    // The second login reaches the same user.
    let again = token_login(&server, &app, "alice").await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["user"]["username"], "alice");
}

#[tokio::test]
async fn a_user_made_by_oidc_can_never_log_in_with_a_password() {
    let (server, app) = setup().await;
    assert_eq!(token_login(&server, &app, "alice").await.status, StatusCode::OK);
    let user = app.store.get_user(&rampart_types::Username::parse("alice").unwrap()).await.unwrap().unwrap();
    assert!(!user.password_hash.starts_with('$'), "no password hash at all");
    for guess in ["", "!external-login", &user.password_hash] {
        let res = app.login("alice", guess).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{guess:?}: {:?}", res.body);
        assert_eq!(res.code(), "invalid_credentials");
    }
}

#[tokio::test]
async fn oidc_cookie_mode_binds_the_browser_and_opens_a_browser_session() {
    let (server, app) = setup().await;
    let res = app.get(&format!("{START}?mode=cookie"), None).await;
    assert_eq!(res.status, StatusCode::FOUND, "{:?}", res.body);
    let to_provider = res.header("location").unwrap().to_owned();
    assert!(to_provider.starts_with(&format!("{}/auth?", server.issuer())), "{to_provider}");
    for part in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "response_type=code"] {
        assert!(to_provider.contains(part), "{part} in {to_provider}");
    }
    let binding = res.header("set-cookie").unwrap().to_owned();
    assert!(binding.starts_with("__Host-rampart_oidc="), "{binding}");
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(binding.contains(attr), "{attr} in {binding}");
    }
    assert!(!binding.contains("Domain="));
    let cookie = binding.split(';').next().unwrap().to_owned();
    let back = server.authorize(&to_provider, "alice").await;
    let res = callback(&app, &back, None, Some(&cookie)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{:?}", res.body);
    assert_eq!(res.header("location"), Some("/app/"), "auth.oidc.browser_redirect");
    let set: Vec<&str> = res.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let session = set.iter().find(|c| c.starts_with("__Host-rampart_session=")).expect("session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict") && session.contains("Secure"));
    let csrf = set.iter().find(|c| c.starts_with("__Host-rampart_csrf=")).expect("csrf cookie");
    assert!(!csrf.contains("HttpOnly"), "the page reads it to echo X-CSRF-Token");
    assert!(set.iter().any(|c| c.starts_with("__Host-rampart_oidc=;") && c.contains("Max-Age=0")), "binding cleared");
    let session_cookie = session.split(';').next().unwrap();
    let me = callback(&app, "/api/v1/auth/me", None, Some(session_cookie)).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["username"], "alice");
}

#[tokio::test]
async fn oidc_callback_without_or_with_a_foreign_binding_is_refused_and_spends_nothing() {
    let (server, app) = setup().await;
    let (url, flow) = start_token(&app).await;
    let back = server.authorize(&url, "alice").await;
    // Login CSRF / code injection: the callback URL of someone else's flow, presented by a
    // client that did not start it (no binding, another flow's token, another browser's cookie).
    refused(&callback(&app, &back, None, None).await);
    assert_eq!(last_refusal(&app).await, "flow_binding_missing");
    let (_, other_flow) = start_token(&app).await;
    refused(&callback(&app, &back, Some(&other_flow), None).await);
    assert_eq!(last_refusal(&app).await, "unknown_state_or_binding");
    let cookie = app.get(&format!("{START}?mode=cookie"), None).await.header("set-cookie").unwrap().to_owned();
    refused(&callback(&app, &back, None, Some(cookie.split(';').next().unwrap())).await);
    // The refusals spent nothing: the client that started it still completes it.
    let res = callback(&app, &back, Some(&flow), None).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
}

#[tokio::test]
async fn oidc_replayed_state_is_refused() {
    let (server, app) = setup().await;
    let (url, flow) = start_token(&app).await;
    let back = server.authorize(&url, "alice").await;
    assert_eq!(callback(&app, &back, Some(&flow), None).await.status, StatusCode::OK);
    refused(&callback(&app, &back, Some(&flow), None).await);
    assert_eq!(last_refusal(&app).await, "unknown_state_or_binding");
}

#[tokio::test]
async fn oidc_replayed_code_is_refused_by_the_provider_and_opens_no_session() {
    let (server, app) = setup().await;
    let (url, flow) = start_token(&app).await;
    let back = server.authorize(&url, "alice").await;
    let first = callback(&app, &back, Some(&flow), None).await;
    assert_eq!(first.status, StatusCode::OK);
    let sessions = app.store.list_sessions(&rampart_types::Username::parse("alice").unwrap()).await.unwrap().len();
    // The spent code under a fresh state and binding: the provider refuses the exchange.
    let (url2, flow2) = start_token(&app).await;
    let state2 = query_param(&url2, "state");
    let code = query_param(&back, "code");
    let replay = format!("/api/v1/auth/oidc/callback?code={code}&state={state2}");
    refused(&callback(&app, &replay, Some(&flow2), None).await);
    assert_eq!(last_refusal(&app).await, "code_refused");
    let after = app.store.list_sessions(&rampart_types::Username::parse("alice").unwrap()).await.unwrap().len();
    assert_eq!(after, sessions, "no session opened");
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap().to_owned()
}

/// Runs a login whose ID token the provider rewrites with `mode`; returns the audit reason.
async fn with_id_token(mode: &str) -> String {
    let (server, app) = setup().await;
    let at = app.clock.now().as_unix_seconds();
    server.id_token_mode(mode, Some(at)).await;
    let res = token_login(&server, &app, "alice").await;
    refused(&res);
    assert!(app.store.get_external_identity(&server.issuer(), "sub-alice").await.unwrap().is_none(), "no user made");
    last_refusal(&app).await
}

#[tokio::test]
async fn oidc_id_token_for_another_audience_is_refused() {
    assert_eq!(with_id_token("wrong_audience").await, "id_token_wrong_audience");
}

#[tokio::test]
async fn oidc_id_token_with_an_untrusted_second_audience_and_no_azp_is_refused() {
    assert_eq!(with_id_token("two_audiences_no_azp").await, "id_token_wrong_audience");
}

#[tokio::test]
async fn oidc_id_token_signed_by_a_foreign_key_is_refused() {
    assert_eq!(with_id_token("foreign_key").await, "id_token_bad_signature");
}

#[tokio::test]
async fn oidc_id_token_with_a_flipped_signature_is_refused() {
    assert_eq!(with_id_token("flipped_signature").await, "id_token_bad_signature");
}

#[tokio::test]
async fn oidc_expired_id_token_is_refused() {
    assert_eq!(with_id_token("expired").await, "id_token_expired");
}

#[tokio::test]
async fn oidc_id_token_nonce_mismatch_is_refused() {
    assert_eq!(with_id_token("nonce_mismatch").await, "id_token_nonce_mismatch");
}

#[tokio::test]
async fn oidc_pending_login_expires_after_ten_minutes() {
    let (server, app) = setup().await;
    let (url, flow) = start_token(&app).await;
    let back = server.authorize(&url, "alice").await;
    app.clock.advance_secs(601);
    refused(&callback(&app, &back, Some(&flow), None).await);
    assert_eq!(last_refusal(&app).await, "login_expired");
}

#[tokio::test]
async fn oidc_role_follows_the_claims_at_each_login_and_a_change_ends_other_sessions() {
    let (server, app) = setup().await;
    let first = token_login(&server, &app, "alice").await;
    assert_eq!(first.body["user"]["role"], "editor");
    let old = first.body["token"].as_str().unwrap().to_owned();
    // Unchanged claims: the session stays.
    let same = token_login(&server, &app, "alice").await;
    assert_eq!(same.body["user"]["role"], "editor");
    assert_eq!(app.get("/api/v1/auth/me", Some(&old)).await.status, StatusCode::OK);
    // Out of every mapped group: the default role, and the earlier sessions end.
    server.set_account("alice", None, &[]).await;
    let next = token_login(&server, &app, "alice").await;
    assert_eq!(next.status, StatusCode::OK, "{:?}", next.body);
    assert_eq!(next.body["user"]["role"], "viewer");
    assert_eq!(app.get("/api/v1/auth/me", Some(&old)).await.status, StatusCode::UNAUTHORIZED);
    let new = next.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/auth/me", Some(new)).await.body["role"], "viewer");
    // First match wins: admins before staff.
    server.set_account("alice", None, &["staff", "admins"]).await;
    assert_eq!(token_login(&server, &app, "alice").await.body["user"]["role"], "admin");
}

#[tokio::test]
async fn oidc_username_of_an_unlinked_local_account_is_never_taken_over() {
    let (server, app) = setup().await;
    let admin = app.admin_token().await;
    // An account at the provider that calls itself the local admin.
    server.set_account("eve", Some(ADMIN), &["admins"]).await;
    let res = token_login(&server, &app, "eve").await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{:?}", res.body);
    assert_eq!(res.code(), "external_account_conflict");
    assert!(res.body.get("token").is_none());
    assert!(app.store.get_external_identity(&server.issuer(), "sub-eve").await.unwrap().is_none(), "not linked");
    assert_eq!(last_refusal(&app).await, "username_taken_by_unlinked_account");
    // The local admin is untouched: same session, same password.
    assert_eq!(app.get("/api/v1/auth/me", Some(&admin)).await.status, StatusCode::OK);
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn oidc_provider_down_answers_503_and_logins_work_once_it_is_back() {
    let mut server = OidcServer::stopped(SECRET);
    let settings = server.settings();
    let app = TestApp::with_config(move |c| c.auth.oidc = Some(settings)).await;
    for mode in ["token", "cookie"] {
        let res = app.get(&format!("{START}?mode={mode}"), None).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", res.body);
        assert_eq!(res.code(), "identity_provider_unavailable");
    }
    // Discovery is retried at the next login.
    server.resume();
    let res = token_login(&server, &app, "alice").await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    // Down between the start and the callback: 503 too, and nothing opened.
    let (url, flow) = start_token(&app).await;
    let back = server.authorize(&url, "alice").await;
    server.kill();
    let res = callback(&app, &back, Some(&flow), None).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", res.body);
    assert_eq!(res.code(), "identity_provider_unavailable");
}

#[tokio::test]
async fn oidc_provider_error_on_the_callback_is_a_clear_400() {
    let (_server, app) = setup().await;
    let res = app.get("/api/v1/auth/oidc/callback?error=access_denied&state=x", None).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{:?}", res.body);
    assert!(res.body["error"].as_str().unwrap().contains("access_denied"));
    let res = app.get("/api/v1/auth/oidc/callback?error=%3Cscript%3E&state=x", None).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(!res.body["error"].as_str().unwrap().contains("script"), "client text is not echoed");
    let res = app.get("/api/v1/auth/oidc/callback?state=x", None).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res = app.get(&format!("{START}?mode=popup"), None).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oidc_is_not_served_when_not_configured() {
    let app = TestApp::new().await;
    assert_eq!(app.get(&format!("{START}?mode=token"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/auth/oidc/callback?code=a&state=b", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oidc_local_mfa_still_applies_to_an_oidc_login() {
    let (server, app) = setup().await;
    let first = token_login(&server, &app, "alice").await;
    let token = first.body["token"].as_str().unwrap().to_owned();
    let (secret, _, _) = crate::mfa::enrol(&app, &token).await;
    let res = token_login(&server, &app, "alice").await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["mfa_required"], true);
    assert!(res.body.get("token").is_none(), "no session before the second factor");
    let records = app.audit_records().await;
    assert!(
        records.iter().any(|r| r.event.details["second_factor"] == "pending" && r.event.details["method"] == "oidc"),
        "the challenge is audited as an OIDC login"
    );
    let mfa_token = res.body["mfa_token"].as_str().unwrap();
    let code = secret.code_at(app.clock.now().as_unix_seconds() / 30);
    let res = app.post("/api/v1/auth/mfa/verify", None, serde_json::json!({"token": mfa_token, "code": code})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert!(res.body["token"].is_string());
}

#[tokio::test]
async fn oidc_client_secret_never_reaches_responses_audit_storage_or_debug() {
    let (server, app) = setup().await;
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let ok = token_login(&server, &app, "alice").await;
    bodies.push(ok.raw.clone());
    server.id_token_mode("foreign_key", None).await;
    bodies.push(token_login(&server, &app, "bob").await.raw);
    server.id_token_mode("none", None).await;
    let (url, _) = start_token(&app).await;
    assert!(!url.contains(SECRET));
    for body in &bodies {
        assert!(!contains(body, SECRET.as_bytes()));
    }
    let audit: Value = serde_json::to_value(
        app.audit_records()
            .await
            .iter()
            .map(|r| (r.event.event_type.clone(), r.event.details.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!audit.to_string().contains(SECRET));
    assert!(!format!("{:?}", app.config).contains(SECRET), "Debug of the config");
    let adapter = rampart_oidc::OidcAdapter::new(server.settings()).unwrap();
    assert!(!format!("{adapter:?}").contains(SECRET), "Debug of the adapter");
    for (file, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, SECRET.as_bytes()), "{file}");
    }
}

#[tokio::test]
async fn two_first_logins_of_one_subject_at_once_reach_one_user() {
    let (server, app) = setup().await;
    let (url1, flow1) = start_token(&app).await;
    let (url2, flow2) = start_token(&app).await;
    let back1 = server.authorize(&url1, "alice").await;
    let back2 = server.authorize(&url2, "alice").await;
    let (a, b) = tokio::join!(callback(&app, &back1, Some(&flow1), None), callback(&app, &back2, Some(&flow2), None));
    for res in [a, b] {
        assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
        assert_eq!(res.body["user"]["username"], "alice");
    }
}

#[tokio::test]
async fn oidc_start_and_callback_are_rate_limited_like_login() {
    let server = OidcServer::start(SECRET);
    let settings = server.settings();
    let app = TestApp::with_config(move |c| {
        c.auth.oidc = Some(settings);
        c.rate_limit.login_requests_per_minute = 3;
        c.breach.enabled = false;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.get(&format!("{START}?mode=token"), None).await.status);
    }
    statuses.push(app.get("/api/v1/auth/oidc/callback?code=a&state=b", None).await.status);
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS, "one budget with login");
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn oidc_a_rotated_provider_key_is_fetched_at_the_next_login() {
    let (mut server, app) = setup().await;
    assert_eq!(token_login(&server, &app, "alice").await.status, StatusCode::OK);
    // A restart gives the provider a new signing key under a new key id.
    server.kill();
    server.resume();
    let res = token_login(&server, &app, "alice").await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["user"]["username"], "alice");
}
