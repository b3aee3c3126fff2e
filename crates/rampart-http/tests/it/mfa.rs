use axum::http::{Method, StatusCode};
use rampart_crypto::TotpSecret;
use rampart_testkit::{contains, TestApp, ADMIN, ADMIN_PASSWORD, USER_PASSWORD};
use serde_json::{json, Value};

fn b32_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32"),
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

fn code(secret: &TotpSecret, app: &TestApp, steps_back: i64) -> String {
    secret.code_at(app.clock.now_secs() / 30 - steps_back)
}

trait Secs {
    fn now_secs(&self) -> i64;
}
impl Secs for rampart_core::FakeClock {
    fn now_secs(&self) -> i64 {
        rampart_core::Clock::now(self).as_unix_seconds()
    }
}

/// Enrols `token`'s user; returns the shared secret (as the app would have it), the
/// recovery codes and the fresh multi-factor session that confirmation hands out (every
/// earlier session, `token`'s included, has ended). The clock moves on a step so the
/// confirmation code is not reused.
pub(crate) async fn enrol(app: &TestApp, token: &str) -> (TotpSecret, Vec<String>, String) {
    let res = app.call(Method::POST, "/api/v1/auth/mfa/enable", Some(token), None).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert!(res.body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Rampart:"));
    assert!(res.body["qr_code"].as_str().unwrap().starts_with("data:image/svg+xml;base64,"));
    let secret = TotpSecret::from_bytes(&b32_decode(res.body["secret"].as_str().unwrap())).unwrap();
    let bad = app.post("/api/v1/auth/mfa/confirm", Some(token), json!({"code": "000000"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "not active before a right code");
    let res = app.post("/api/v1/auth/mfa/confirm", Some(token), json!({"code": code(&secret, app, 0)})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let codes: Vec<String> =
        res.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    let fresh = res.body["token"].as_str().expect("a fresh session").to_owned();
    assert!(res.body["refresh_token"].is_string());
    assert_eq!(app.get("/api/v1/auth/me", Some(token)).await.status, StatusCode::UNAUTHORIZED, "enrolling ended it");
    app.clock.advance_secs(30);
    (secret, codes, fresh)
}

async fn mfa_token(app: &TestApp, user: &str, pw: &str) -> String {
    let res = app.login(user, pw).await;
    assert_eq!(res.body["mfa_required"], true, "{:?}", res.body);
    assert!(
        res.body.get("token").is_none() && res.body.get("refresh_token").is_none(),
        "no session before the second factor"
    );
    res.body["mfa_token"].as_str().unwrap().to_owned()
}

async fn verify(app: &TestApp, token: &str, code: &str) -> rampart_testkit::TestResponse {
    app.post("/api/v1/auth/mfa/verify", None, json!({"token": token, "code": code})).await
}

#[tokio::test]
async fn login_with_mfa_needs_the_second_factor_and_codes_work_once() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let t = app.user_with_role("tina", "viewer").await;
    let (secret, recovery, t) = enrol(&app, &t).await;
    let me = app.get("/api/v1/auth/me", Some(&t)).await;
    assert_eq!((me.body["mfa_enabled"].clone(), me.body["assurance"].clone()), (json!(true), json!("password+mfa")));

    let mt = mfa_token(&app, "tina", USER_PASSWORD).await;
    assert_eq!(verify(&app, &mt, "123456").await.status, StatusCode::UNAUTHORIZED);
    let current = code(&secret, &app, 0);
    let ok = verify(&app, &mt, &current).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    let session = ok.body["token"].as_str().unwrap().to_owned();
    assert!(ok.body["refresh_token"].as_str().unwrap().starts_with("rpr_"));
    assert_eq!(app.get("/api/v1/auth/me", Some(&session)).await.status, StatusCode::OK);
    assert_eq!(verify(&app, &mt, &current).await.status, StatusCode::UNAUTHORIZED, "the mfa_token is single use");

    let mt = mfa_token(&app, "tina", USER_PASSWORD).await;
    let replay = verify(&app, &mt, &current).await;
    assert_eq!(
        (replay.status, replay.code()),
        (StatusCode::UNAUTHORIZED, "code_already_used"),
        "a code is accepted once"
    );
    assert_eq!(verify(&app, &mt, &code(&secret, &app, 2)).await.status, StatusCode::UNAUTHORIZED, "two windows ago");
    assert_eq!(verify(&app, &mt, &code(&secret, &app, -1)).await.status, StatusCode::OK, "one step of skew is fine");

    let mt = mfa_token(&app, "tina", USER_PASSWORD).await;
    assert_eq!(verify(&app, &mt, &recovery[3].to_lowercase()).await.status, StatusCode::OK, "recovery code, as typed");
    let mt = mfa_token(&app, "tina", USER_PASSWORD).await;
    assert_eq!(verify(&app, &mt, &recovery[3]).await.status, StatusCode::UNAUTHORIZED, "a recovery code works once");

    let kinds: Vec<(String, bool)> =
        app.audit_records().await.iter().map(|r| (r.event.event_type.clone(), r.event.success)).collect();
    assert!(kinds.contains(&("mfa_enable".into(), true)));
    assert!(kinds.contains(&("mfa_verify".into(), false)));
    assert!(kinds.contains(&("recovery_code_used".into(), true)));
    assert!(kinds.iter().filter(|k| **k == ("mfa_verify".to_owned(), true)).count() >= 3);

    // The mfa_token expires after five minutes.
    let mt = mfa_token(&app, "tina", USER_PASSWORD).await;
    app.clock.advance_secs(301);
    assert_eq!(verify(&app, &mt, &code(&secret, &app, 0)).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn disabling_needs_the_password_and_a_current_code() {
    let app = TestApp::new().await;
    let t = app.user_with_role("dan", "viewer").await;
    let (secret, _, t) = enrol(&app, &t).await;
    let wrong_pw = app
        .post(
            "/api/v1/auth/mfa/disable",
            Some(&t),
            json!({"password": "Wrong-Passw0rd!", "code": code(&secret, &app, 0)}),
        )
        .await;
    assert_eq!(wrong_pw.status, StatusCode::FORBIDDEN);
    app.clock.advance_secs(30);
    let wrong_code =
        app.post("/api/v1/auth/mfa/disable", Some(&t), json!({"password": USER_PASSWORD, "code": "000000"})).await;
    assert_eq!(wrong_code.status, StatusCode::FORBIDDEN);
    let ok = app
        .post("/api/v1/auth/mfa/disable", Some(&t), json!({"password": USER_PASSWORD, "code": code(&secret, &app, 0)}))
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{:?}", ok.body);
    assert!(app.login("dan", USER_PASSWORD).await.body["token"].is_string(), "back to one factor");
}

#[tokio::test]
async fn an_admin_without_mfa_can_only_enrol() {
    let app = TestApp::with_config(|c| c.auth.require_mfa_for_roles = vec!["admin".into()]).await;
    let admin = app.admin_token().await;
    let res = app.get("/api/v1/users", Some(&admin)).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "mfa_enrollment_required"));
    // Enrol and log out, nothing else: not even self-service.
    for (method, path, body) in enrol_only_refusals() {
        let res = app.call(method.clone(), path, Some(&admin), body).await;
        assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "mfa_enrollment_required"), "{method} {path}");
    }
    let (secret, _, fresh) = enrol(&app, &admin).await;
    assert_eq!(app.get("/api/v1/users", Some(&fresh)).await.status, StatusCode::OK, "confirm gives a full session");
    let mt = mfa_token(&app, ADMIN, ADMIN_PASSWORD).await;
    let full = verify(&app, &mt, &code(&secret, &app, 0)).await.body["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/users", Some(&full)).await.status, StatusCode::OK);
}

fn enrol_only_refusals() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/auth/me", None),
        (Method::GET, "/api/v1/users", None),
        (Method::POST, "/api/v1/collections", Some(json!({"name": "x"}))),
        (Method::POST, "/api/v1/auth/token", Some(json!({"audience": "svc"}))),
        (
            Method::POST,
            "/api/v1/auth/password",
            Some(json!({"current_password": ADMIN_PASSWORD, "new_password": "An0ther-Strong-Pass!"})),
        ),
        (Method::POST, "/api/v1/auth/logout-all", None),
        (Method::GET, "/api/v1/auth/sessions", None),
        (Method::DELETE, "/api/v1/auth/sessions/abc", None),
    ]
}

/// The outside review's break: S1 and S2 opened with the password only; enrolling through
/// S2 must not turn S1, or anything S1's refresh token opens, into a full session.
#[tokio::test]
async fn a_session_opened_before_enrolment_stays_enrol_only_and_ends_at_confirmation() {
    let app = TestApp::with_config(|c| c.auth.require_mfa_for_roles = vec!["admin".into()]).await;
    let s1 = app.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(s1.body["mfa_enrollment_required"], true, "{:?}", s1.body);
    let (s1, r1) =
        (s1.body["token"].as_str().unwrap().to_owned(), s1.body["refresh_token"].as_str().unwrap().to_owned());
    let s2 = app.admin_token().await;
    // S1 refreshed before enrolment: the new pair carries the same password-only assurance.
    let rotated = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert_eq!(rotated.body["mfa_enrollment_required"], true);
    let (s1b, r1b) = (
        rotated.body["token"].as_str().unwrap().to_owned(),
        rotated.body["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_eq!(app.get("/api/v1/users", Some(&s1b)).await.code(), "mfa_enrollment_required");

    // Start enrolment through S2, and try S1 while it is pending and after it is confirmed.
    let res = app.call(Method::POST, "/api/v1/auth/mfa/enable", Some(&s2), None).await;
    let secret = TotpSecret::from_bytes(&b32_decode(res.body["secret"].as_str().unwrap())).unwrap();
    assert_eq!(app.get("/api/v1/users", Some(&s1b)).await.code(), "mfa_enrollment_required");
    let res = app.post("/api/v1/auth/mfa/confirm", Some(&s2), json!({"code": code(&secret, &app, 0)})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let fresh = res.body["token"].as_str().unwrap().to_owned();
    for old in [&s1, &s1b, &s2] {
        for (method, path, body) in [
            (Method::GET, "/api/v1/users", None),
            (Method::POST, "/api/v1/collections", Some(json!({"name": "stolen"}))),
            (Method::POST, "/api/v1/auth/token", Some(json!({"audience": "svc"}))),
        ] {
            let res = app.call(method.clone(), path, Some(old), body).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{method} {path} with an earlier session: {:?}", res.body);
        }
    }
    let refreshed = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1b})).await;
    assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED, "S1's refresh token died with it");
    assert_eq!(app.get("/api/v1/users", Some(&fresh)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/auth/me", Some(&fresh)).await.body["assurance"], "password+mfa");
}

/// A session keeps its assurance for life: even after the user has MFA, a session opened
/// with the password only (e.g. from before an upgrade) is not promoted by the user's state.
#[tokio::test]
async fn assurance_comes_from_the_session_not_the_users_current_state() {
    let app = TestApp::with_config(|c| c.auth.require_mfa_for_roles = vec!["admin".into()]).await;
    let s1 = app.admin_token().await;
    let (_, _, _fresh) = enrol(&app, &s1).await;
    // Forge the situation directly: a password-only session row of a user who has MFA.
    let token = "rps_password-only-session-of-an-mfa-user";
    let now = rampart_core::Clock::now(&app.clock);
    let forged = rampart_store::SessionRecord {
        id: rampart_crypto::new_id(),
        token_hash: *rampart_crypto::TokenHash::of(token).as_bytes(),
        username: rampart_types::Username::parse(ADMIN).unwrap(),
        created_at: now,
        last_seen_at: now,
        expires_at: now.plus_seconds(3600),
        ip_address: None,
        user_agent: None,
        assurance: rampart_store::Assurance::Password,
    };
    rampart_store::SessionStore::create_session(&*app.store, forged, 100, vec![]).await.unwrap();
    let res = app.get("/api/v1/users", Some(token)).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "mfa_enrollment_required"));
}

#[tokio::test]
async fn admins_reset_another_users_mfa_which_ends_their_sessions() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let t = app.user_with_role("rob", "viewer").await;
    let (_, _, t) = enrol(&app, &t).await;
    let viewer = app.user_with_role("vic", "viewer").await;
    let res = app.call(Method::POST, "/api/v1/users/rob/mfa/reset", Some(&viewer), None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app.call(Method::POST, "/api/v1/users/rob/mfa/reset", Some(&admin), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t)).await.status, StatusCode::UNAUTHORIZED);
    assert!(app.login("rob", USER_PASSWORD).await.body["token"].is_string());
    assert!(app.audit_records().await.iter().any(|r| r.event.event_type == "mfa_reset"));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::new().await;
    let first = app.login(ADMIN, ADMIN_PASSWORD).await;
    let (t1, r1) =
        (first.body["token"].as_str().unwrap().to_owned(), first.body["refresh_token"].as_str().unwrap().to_owned());
    let second = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r1})).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    let (t2, r2) =
        (second.body["token"].as_str().unwrap().to_owned(), second.body["refresh_token"].as_str().unwrap().to_owned());
    assert_ne!(r1, r2);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t1)).await.status, StatusCode::UNAUTHORIZED, "the old pair ends");
    assert_eq!(app.get("/api/v1/auth/me", Some(&t2)).await.status, StatusCode::OK);
    let other = app.admin_token().await; // another family: unaffected by the reuse below
    app.clock.advance_secs(10);
    // The thief replays from elsewhere (the Critical alert blocks that address).
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/refresh")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(json!({"refresh_token": r1}).to_string()))
        .unwrap();
    let replay = app.send_from(req, "203.0.113.20:1").await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t2)).await.status, StatusCode::UNAUTHORIZED, "family revoked");
    assert_eq!(
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r2})).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/api/v1/auth/me", Some(&other)).await.status, StatusCode::OK);
    let mut alert = Value::Null;
    for _ in 0..200 {
        let list = app.get("/api/v1/admin/security/alerts?type=privilege_escalation", Some(&other)).await;
        if let Some(a) = list.body["alerts"].get(0) {
            alert = a.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(alert["details"]["reason"], "refresh_token_reuse");
    assert!(app
        .audit_records()
        .await
        .iter()
        .any(|r| r.event.event_type == "session_revoke" && r.event.details["reason"] == "refresh_token_reuse"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_refreshes_exactly_one_wins() {
    let app = TestApp::new().await;
    let r = app.login(ADMIN, ADMIN_PASSWORD).await.body["refresh_token"].as_str().unwrap().to_owned();
    let body = json!({"refresh_token": r});
    let (a, b) = tokio::join!(
        app.post("/api/v1/auth/refresh", None, body.clone()),
        app.post("/api/v1/auth/refresh", None, body)
    );
    let wins = [&a, &b].iter().filter(|x| x.status == StatusCode::OK).count();
    assert_eq!(wins, 1, "{:?} / {:?}", a.status, b.status);
    let winner = if a.status == StatusCode::OK { a } else { b };
    let t = winner.body["token"].as_str().unwrap();
    assert_eq!(
        app.get("/api/v1/auth/me", Some(t)).await.status,
        StatusCode::OK,
        "the race's loser does not kill the winner"
    );
}

#[tokio::test]
async fn refresh_families_have_an_absolute_lifetime() {
    let app = TestApp::with_config(|c| c.auth.refresh_lifetime_hours = 1).await;
    let mut r = app.login(ADMIN, ADMIN_PASSWORD).await.body["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        app.clock.advance_secs(15 * 60);
        let next = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r})).await;
        r = next.body["refresh_token"].as_str().unwrap().to_owned();
    }
    app.clock.advance_secs(16 * 60);
    assert_eq!(
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r})).await.status,
        StatusCode::UNAUTHORIZED,
        "rotation never extends the family"
    );
}

#[tokio::test]
async fn users_list_and_end_their_sessions() {
    let app = TestApp::new().await;
    let a = app.admin_token().await;
    let b = app.admin_token().await;
    let list = app.get("/api/v1/auth/sessions", Some(&a)).await;
    let sessions = list.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s["ip_address"] == "127.0.0.1"));
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/auth/sessions/{other}"), Some(&a), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/api/v1/auth/me", Some(&b)).await.status, StatusCode::UNAUTHORIZED);
    let v = app.user_with_role("vic", "viewer").await;
    let admin_sessions = app.get("/api/v1/auth/sessions?username=admin", Some(&v)).await;
    assert_eq!(admin_sessions.status, StatusCode::FORBIDDEN, "sessions.manage needed for others");
    let vic_sessions = app.get("/api/v1/auth/sessions?username=vic", Some(&a)).await;
    let vid = vic_sessions.body["sessions"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/v1/auth/sessions/{vid}"), Some(&a), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get("/api/v1/auth/me", Some(&v)).await.status, StatusCode::UNAUTHORIZED);
    // An id not shaped like one of ours names no session (and no store is asked).
    for bad in ["x", "%27%20OR%201%3D1", &vid.to_uppercase(), &format!("{vid}0")] {
        let res = app.call(Method::DELETE, &format!("/api/v1/auth/sessions/{bad}"), Some(&a), None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn no_totp_secret_recovery_code_or_refresh_token_is_stored_in_plaintext() {
    let app = TestApp::new().await;
    let t = app.user_with_role("sam", "viewer").await;
    let res = app.call(Method::POST, "/api/v1/auth/mfa/enable", Some(&t), None).await;
    let b32 = res.body["secret"].as_str().unwrap().to_owned();
    let secret = TotpSecret::from_bytes(&b32_decode(&b32)).unwrap();
    let codes = app.post("/api/v1/auth/mfa/confirm", Some(&t), json!({"code": code(&secret, &app, 0)})).await;
    let recovery: Vec<String> =
        codes.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    let refresh = app.login(ADMIN, ADMIN_PASSWORD).await.body["refresh_token"].as_str().unwrap().to_owned();
    // An MFA user's login: the challenge token is stored only as a hash.
    let challenge = app.login("sam", USER_PASSWORD).await.body["mfa_token"].as_str().unwrap().to_owned();
    // A JWT signing key exists (minted with). In PKCS#8, every Ed25519 private key carries
    // its algorithm identifier and the private key's OCTET STRING header.
    let admin = app.admin_token().await;
    assert_eq!(app.post("/api/v1/auth/token", Some(&admin), json!({"audience": "svc"})).await.status, StatusCode::OK);
    const ED25519_PKCS8_HEADER: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let sample = rampart_crypto::generate_jwt_key().unwrap();
    assert!(
        contains(secrecy::ExposeSecret::expose_secret(&sample), ED25519_PKCS8_HEADER),
        "the probe matches a real key"
    );
    let app = app.restart().await;
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, &challenge.as_bytes()[4..]), "MFA challenge token in {name}");
        assert!(!contains(&bytes, ED25519_PKCS8_HEADER), "a JWT signing key in plaintext in {name}");
        assert!(!contains(&bytes, b32.as_bytes()), "TOTP secret (base32) in {name}");
        assert!(!contains(&bytes, secret.bytes()), "TOTP secret (raw) in {name}");
        assert!(!contains(&bytes, &refresh.as_bytes()[4..]), "refresh token in {name}");
        for c in &recovery {
            assert!(
                !contains(&bytes, c.as_bytes()) && !contains(&bytes, c.replace('-', "").as_bytes()),
                "recovery code in {name}"
            );
        }
    }
}

#[tokio::test]
async fn ending_a_session_also_ends_its_refresh_token() {
    let app = TestApp::new().await;
    let login = app.login(ADMIN, ADMIN_PASSWORD).await;
    let (t, r) =
        (login.body["token"].as_str().unwrap().to_owned(), login.body["refresh_token"].as_str().unwrap().to_owned());
    assert_eq!(app.call(Method::POST, "/api/v1/auth/logout", Some(&t), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r})).await.status,
        StatusCode::UNAUTHORIZED,
        "logout"
    );
    let login = app.login(ADMIN, ADMIN_PASSWORD).await;
    let (t, r) =
        (login.body["token"].as_str().unwrap().to_owned(), login.body["refresh_token"].as_str().unwrap().to_owned());
    let other = app.admin_token().await;
    let res = app
        .post(
            "/api/v1/auth/password",
            Some(&other),
            json!({"current_password": ADMIN_PASSWORD, "new_password": "N3w-Boss-Passphrase!7"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r})).await.status,
        StatusCode::UNAUTHORIZED,
        "password change"
    );
    // An idle-expired session can still be renewed by its refresh token.
    let login = app.login(ADMIN, "N3w-Boss-Passphrase!7").await;
    let (t, r) =
        (login.body["token"].as_str().unwrap().to_owned(), login.body["refresh_token"].as_str().unwrap().to_owned());
    app.clock.advance_secs(31 * 60);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.post("/api/v1/auth/refresh", None, json!({"refresh_token": r})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_correct_password_does_not_reset_the_delay_on_wrong_codes() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let t = app.user_with_role("mia", "viewer").await;
    enrol(&app, &t).await;
    let mut delayed = false;
    for _ in 0..4 {
        let login = app.login("mia", USER_PASSWORD).await;
        if login.status == StatusCode::TOO_MANY_REQUESTS {
            delayed = true; // even the right password now waits
            break;
        }
        let mt = login.body["mfa_token"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            if verify(&app, &mt, "000000").await.status == StatusCode::TOO_MANY_REQUESTS {
                delayed = true;
            }
        }
    }
    assert!(delayed, "wrong codes across fresh challenges accumulate into the account delay");
}

/// Two recovery codes sent at the same moment on one mfa_token: the challenge is consumed
/// atomically, so exactly one session opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_answers_on_one_challenge_open_one_session() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let t = app.user_with_role("rosa", "viewer").await;
    let (_, recovery, _) = enrol(&app, &t).await;
    let mt = mfa_token(&app, "rosa", USER_PASSWORD).await;
    let (a, b) = tokio::join!(verify(&app, &mt, &recovery[0]), verify(&app, &mt, &recovery[1]));
    let ok = [a.status, b.status].iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{:?} / {:?}", a.body, b.body);
}

/// Refresh rotation counts against max_sessions_per_user like a login, and a session
/// evicted by the limit cannot come back through its refresh token.
#[tokio::test]
async fn refresh_respects_the_session_limit_and_evicted_sessions_stay_gone() {
    let app = TestApp::with_config(|c| c.auth.max_sessions_per_user = 2).await;
    let pairs: Vec<(String, String)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let r = app.login(ADMIN, ADMIN_PASSWORD).await;
            v.push((
                r.body["token"].as_str().unwrap().to_owned(),
                r.body["refresh_token"].as_str().unwrap().to_owned(),
            ));
        }
        v
    };
    assert_eq!(app.get("/api/v1/auth/me", Some(&pairs[0].0)).await.status, StatusCode::UNAUTHORIZED, "evicted");
    let back = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": pairs[0].1})).await;
    assert_eq!(back.status, StatusCode::UNAUTHORIZED, "its refresh token ended with it");
    let mut refresh = pairs[1].1.clone();
    for _ in 0..3 {
        let r = app.post("/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
        assert_eq!(r.status, StatusCode::OK);
        refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
        app.clock.advance_secs(6);
    }
    let sessions = app.get("/api/v1/auth/sessions", Some(&pairs[2].0)).await;
    assert!(sessions.body["sessions"].as_array().unwrap().len() <= 2, "{:?}", sessions.body);
}
