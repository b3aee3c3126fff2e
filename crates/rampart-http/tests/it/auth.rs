use axum::http::{Method, StatusCode};
use rampart_crypto::{PasswordHasher, TokenHash};
use rampart_store::UserChange;
use rampart_testkit::{contains, TestApp, ADMIN, ADMIN_PASSWORD, USER_PASSWORD};
use rampart_types::Username;
use serde_json::json;

fn without_request_id(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().map(|o| o.remove("request_id"));
    v
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_identical_responses() {
    let app = TestApp::new().await;
    let wrong_pw = app.login(ADMIN, "Wrong-Passw0rd!!").await;
    let unknown = app.login("no-such-user", "Wrong-Passw0rd!!").await;
    let invalid_name = app.login("Not A Valid Name", "Wrong-Passw0rd!!").await;
    assert_eq!(wrong_pw.status, StatusCode::UNAUTHORIZED);
    for other in [&unknown, &invalid_name] {
        assert_eq!(other.status, wrong_pw.status);
        assert_eq!(without_request_id(other.body.clone()), without_request_id(wrong_pw.body.clone()));
        assert_eq!(other.header("www-authenticate"), wrong_pw.header("www-authenticate"));
    }
    // A disabled account answers exactly like a wrong password, even with the right one.
    let admin = app.admin_token().await;
    app.user_with_role("dora", "viewer").await;
    let res = app.call(Method::PATCH, "/api/v1/users/dora", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(res.status, StatusCode::OK);
    let disabled = app.login("dora", USER_PASSWORD).await;
    assert_eq!(without_request_id(disabled.body), without_request_id(wrong_pw.body));
}

#[tokio::test]
async fn a_username_with_nul_is_refused_like_any_unknown_name_on_every_backend() {
    // PostgreSQL's text holds no NUL: the audit record of the refusal failed there (503).
    let app = TestApp::new().await;
    let wrong_pw = app.login(ADMIN, "Wrong-Passw0rd!!").await;
    let res = app.login("admin\0", ADMIN_PASSWORD).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{:?}", res.body);
    assert_eq!(without_request_id(res.body), without_request_id(wrong_pw.body));
}

#[tokio::test]
async fn stored_hash_is_argon2id_with_the_spec_parameters() {
    let app = TestApp::new().await;
    let user = app.store.get_user(&Username::parse(ADMIN).unwrap()).await.unwrap().unwrap();
    let parts: Vec<&str> = user.password_hash.split('$').collect();
    assert_eq!(parts[1], "argon2id");
    assert_eq!(parts[2], "v=19");
    assert_eq!(parts[3], "m=19456,t=2,p=1");
    assert_eq!(parts[4].len(), 22, "16-byte salt in unpadded base64");
    assert_eq!(parts[5].len(), 43, "32-byte output in unpadded base64");
}

#[tokio::test]
async fn login_rehashes_when_parameters_changed() {
    let app = TestApp::new().await;
    app.user_with_role("olga", "viewer").await;
    let weak = PasswordHasher::with_params(1024, 1, 1).unwrap();
    let old = weak.hash(&secrecy::SecretString::from(USER_PASSWORD)).unwrap();
    let name = Username::parse("olga").unwrap();
    let change = UserChange { password_hash: Some(old.as_str().to_owned()), ..UserChange::default() };
    app.store.update_user(&name, change, vec![]).await.unwrap();
    assert_eq!(app.login("olga", USER_PASSWORD).await.status, StatusCode::OK);
    let after = app.store.get_user(&name).await.unwrap().unwrap();
    assert!(after.password_hash.contains("m=19456,t=2,p=1"), "{}", after.password_hash);
}

#[tokio::test]
async fn session_tokens_are_stored_only_as_hashes() {
    let app = TestApp::new().await;
    let token = app.admin_token().await;
    assert!(token.len() >= 43 + 4, "256-bit token");
    let hash = TokenHash::of(&token);
    let app = app.restart().await; // checkpoints the WAL into the database file
    let files = app.all_stored_bytes();
    let body = token.strip_prefix("rps_").unwrap();
    assert!(files.iter().any(|(_, b)| contains(b, hash.as_bytes())), "the hash is what is stored");
    for (name, bytes) in &files {
        assert!(!contains(bytes, body.as_bytes()), "token found in plaintext in {name}");
    }
}

#[tokio::test]
async fn logout_and_logout_all_revoke() {
    let app = TestApp::new().await;
    let t1 = app.admin_token().await;
    let t2 = app.admin_token().await;
    let t3 = app.admin_token().await;
    assert_eq!(app.get("/api/v1/auth/me", Some(&t1)).await.status, StatusCode::OK);
    assert_eq!(app.call(Method::POST, "/api/v1/auth/logout", Some(&t1), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t1)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t2)).await.status, StatusCode::OK);
    let res = app.call(Method::POST, "/api/v1/auth/logout-all", Some(&t2), None).await;
    assert_eq!(res.body["sessions_ended"], 2);
    for t in [&t2, &t3] {
        assert_eq!(app.get("/api/v1/auth/me", Some(t)).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_ends_other_sessions() {
    let app = TestApp::new().await;
    let here = app.admin_token().await;
    let elsewhere = app.admin_token().await;
    let new_pw = "N3w-Boss-Passphrase!7";
    let wrong = app
        .post(
            "/api/v1/auth/password",
            Some(&here),
            json!({"current_password": "Wrong-Pass-123!", "new_password": new_pw}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let weak = app
        .post(
            "/api/v1/auth/password",
            Some(&here),
            json!({"current_password": ADMIN_PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!((weak.status, weak.code()), (StatusCode::UNPROCESSABLE_ENTITY, "password_policy"));
    let ok = app
        .post("/api/v1/auth/password", Some(&here), json!({"current_password": ADMIN_PASSWORD, "new_password": new_pw}))
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/auth/me", Some(&here)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/auth/me", Some(&elsewhere)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login(ADMIN, new_pw).await.status, StatusCode::OK);
}

#[tokio::test]
async fn role_change_disable_and_delete_end_sessions() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    for (name, change) in
        [("rita", Some(json!({"role": "editor"}))), ("dina", Some(json!({"disabled": true}))), ("dave", None)]
    {
        let token = app.user_with_role(name, "viewer").await;
        assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::OK);
        let path = format!("/api/v1/users/{name}");
        let res = match change {
            Some(body) => app.call(Method::PATCH, &path, Some(&admin), Some(body)).await,
            None => app.call(Method::DELETE, &path, Some(&admin), None).await,
        };
        assert!(res.status.is_success(), "{name}: {:?}", res.body);
        assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    // Re-enabling does not resurrect old sessions, and a new login works.
    let res = app.call(Method::PATCH, "/api/v1/users/dina", Some(&admin), Some(json!({"disabled": false}))).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(app.login("dina", USER_PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn idle_timeout_and_absolute_lifetime_end_sessions() {
    let app = TestApp::new().await; // 30 min idle, 12 h lifetime
    let token = app.admin_token().await;
    app.clock.advance_secs(29 * 60);
    assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::OK, "activity resets idle");
    app.clock.advance_secs(29 * 60);
    assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::OK);
    app.clock.advance_secs(31 * 60);
    assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::UNAUTHORIZED, "idle > 30 min");

    let token = app.admin_token().await;
    for _ in 0..(12 * 3) {
        app.clock.advance_secs(20 * 60);
        let status = app.get("/api/v1/auth/me", Some(&token)).await.status;
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
    }
    panic!("session outlived its 12 hour absolute lifetime");
}

#[tokio::test]
async fn concurrent_session_limit_ends_the_oldest() {
    let app = TestApp::with_config(|c| c.auth.max_sessions_per_user = 2).await;
    let t1 = app.admin_token().await;
    app.clock.advance_secs(1);
    let t2 = app.admin_token().await;
    app.clock.advance_secs(1);
    let t3 = app.admin_token().await;
    assert_eq!(app.get("/api/v1/auth/me", Some(&t1)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t2)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t3)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn sessions_and_data_survive_a_restart() {
    let app = TestApp::new().await;
    let token = app.admin_token().await;
    let res = app.post("/api/v1/collections", Some(&token), json!({"name": "notes", "indexes": ["k"]})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let res = app.post("/api/v1/collections/notes/documents", Some(&token), json!({"data": {"k": "v"}})).await;
    let id = res.body["id"].as_str().unwrap().to_owned();
    let app = app.restart().await;
    assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::OK);
    let res = app.get(&format!("/api/v1/collections/notes/documents/{id}"), Some(&token)).await;
    assert_eq!(res.body["data"], json!({"k": "v"}));
    let res = app.get("/api/v1/collections/notes/documents?k=v", Some(&token)).await;
    assert_eq!(res.body["documents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn password_policy_names_each_rule() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let cases = [
        ("Sh0rt!", "min_length"),
        ("no-upper-case-123!", "uppercase"),
        ("NO-LOWER-CASE-123!", "lowercase"),
        ("No-Digits-In-Here!", "digit"),
        ("NoSymbolsHere12345", "symbol"),
        ("Xx1!-penelope-Zq9", "contains_username"),
        ("Password1234!", "too_common"),
    ];
    for (pw, rule) in cases {
        let res = app
            .post("/api/v1/users", Some(&admin), json!({"username": "penelope", "password": pw, "role": "viewer"}))
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{pw}");
        assert_eq!(res.code(), "password_policy");
        assert!(res.body["error"].as_str().unwrap().contains(rule), "{pw}: {:?}", res.body);
    }
    let long = format!("Aa1!{}", "x".repeat(1100));
    let res = app
        .post("/api/v1/users", Some(&admin), json!({"username": "penelope", "password": long, "role": "viewer"}))
        .await;
    assert!(res.body["error"].as_str().unwrap().contains("max_length"));
}

#[tokio::test]
async fn canary_admin_password_never_reaches_any_file() {
    let app = TestApp::new().await;
    let token = app.admin_token().await;
    // Exercise paths that handle the password: failures, a change attempt, user creation.
    app.login(ADMIN, &format!("{ADMIN_PASSWORD}x")).await;
    app.post(
        "/api/v1/auth/password",
        Some(&token),
        json!({"current_password": ADMIN_PASSWORD, "new_password": "weak"}),
    )
    .await;
    app.post("/api/v1/users", Some(&token), json!({"username": "u1", "password": ADMIN_PASSWORD, "role": "viewer"}))
        .await;
    let app = app.restart().await;
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, ADMIN_PASSWORD.as_bytes()), "canary password in {name}");
    }
}
