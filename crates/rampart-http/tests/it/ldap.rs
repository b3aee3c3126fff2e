//! LDAP login against a real OpenLDAP `slapd` (one per test, from `rampart_testkit::ldap`):
//! provisioning and role mapping, the refusals that must look like a wrong password,
//! injection, TLS, the directory going away, and that the local login's protections hold.

use axum::http::{Method, StatusCode};
use rampart_config::{AuthMethod, LdapConfig};
use rampart_core::NO_LOCAL_PASSWORD;
use rampart_testkit::ldap::{password_of, LdapServer, ADMINS_GROUP, SERVICE_PASSWORD, STAFF_GROUP};
use rampart_testkit::{contains, TestApp, TestResponse, ADMIN, ADMIN_PASSWORD, USER_PASSWORD};
use rampart_types::{AuthSource, Username};
use serde_json::{json, Value};

/// An app whose unknown names log in through `ldap` (`[auth] method = "ldap"`).
async fn app_with(ldap: LdapConfig, tweak: impl FnOnce(&mut rampart_config::Config)) -> TestApp {
    TestApp::with_config(|c| {
        c.auth.method = AuthMethod::Ldap;
        c.auth.ldap = Some(ldap);
        tweak(c);
    })
    .await
}

async fn app(server: &LdapServer) -> TestApp {
    app_with(server.config(), |_| {}).await
}

fn without_request_id(mut v: Value) -> Value {
    v.as_object_mut().map(|o| o.remove("request_id"));
    v
}

async fn login_with(app: &TestApp, user: &str, password: &str, method: &str) -> TestResponse {
    app.post("/api/v1/auth/login", None, json!({"username": user, "password": password, "method": method})).await
}

/// The `reason` of the last failed `login` audit record.
async fn last_refusal(app: &TestApp) -> String {
    let records = app.audit_records().await;
    let last = records.iter().rev().find(|r| r.event.event_type == "login" && !r.event.success).expect("a refusal");
    last.event.details["reason"].as_str().unwrap_or_default().to_owned()
}

async fn sessions_of(app: &TestApp, user: &str) -> usize {
    app.store.list_sessions(&Username::parse(user).unwrap()).await.unwrap().len()
}

#[tokio::test]
async fn a_directory_login_provisions_the_user_with_the_role_of_their_group() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let res = app.login("alice", &password_of("alice")).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["user"]["role"], "editor");
    let carol = app.login("carol", &password_of("carol")).await;
    assert_eq!(carol.body["user"]["role"], "admin", "{:?}", carol.body);
    let token = res.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/auth/me", Some(token)).await.body["username"], "alice");

    let admin = app.admin_token().await;
    let listed = app.get("/api/v1/users/alice", Some(&admin)).await;
    assert_eq!(listed.body["auth_source"], "ldap", "{:?}", listed.body);
    assert_eq!(app.get("/api/v1/users/admin", Some(&admin)).await.body["auth_source"], "local");
    let stored = app.store.get_user(&Username::parse("alice").unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.auth_source, AuthSource::Ldap);
    assert_eq!(stored.password_hash, NO_LOCAL_PASSWORD, "no usable local password");
    let records = app.audit_records().await;
    let created = records.iter().find(|r| r.event.event_type == "user_create" && r.event.details["target"] == "alice");
    assert_eq!(created.expect("provisioning is audited").event.details["provisioned_by"], "ldap");
    let login = records
        .iter()
        .find(|r| r.event.event_type == "login" && r.event.success && r.event.user.as_deref() == Some("alice"))
        .unwrap();
    assert_eq!(login.event.details["source"], "ldap");

    // The second login finds the account and keeps it.
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK);
    assert_eq!(app.audit_records().await.iter().filter(|r| r.event.event_type == "user_create").count(), 3);
    // A user in no mapped group (and no default role) is refused, and no account is made.
    let dave = app.login("dave", &password_of("dave")).await;
    assert_eq!(dave.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&app).await, "no_mapped_group");
    assert!(app.store.get_user(&Username::parse("dave").unwrap()).await.unwrap().is_none());
}

#[tokio::test]
async fn wrong_directory_password_unknown_user_and_disabled_account_answer_the_same() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let wrong = app.login("alice", "Wrong-Passw0rd!!").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "invalid_credentials");
    assert_eq!(last_refusal(&app).await, "wrong_password");
    let unknown = app.login("nobody-at-all", "Wrong-Passw0rd!!").await;
    assert_eq!(last_refusal(&app).await, "unknown_user");
    // Locked in the directory (ppolicy's pwdAccountLockedTime): refused with its right password.
    let locked = app.login("locked", &password_of("locked")).await;
    assert_eq!(last_refusal(&app).await, "wrong_password", "slapd refuses the bind");
    for other in [&unknown, &locked] {
        assert_eq!(other.status, wrong.status);
        assert_eq!(without_request_id(other.body.clone()), without_request_id(wrong.body.clone()));
        assert_eq!(other.header("www-authenticate"), wrong.header("www-authenticate"));
    }
    assert!(app.store.get_user(&Username::parse("locked").unwrap()).await.unwrap().is_none());
    // An account disabled here stays refused whatever the directory says.
    let admin = app.admin_token().await;
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK);
    let res = app.call(Method::PATCH, "/api/v1/users/alice", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let disabled = app.login("alice", &password_of("alice")).await;
    assert_eq!(without_request_id(disabled.body), without_request_id(wrong.body));
    assert_eq!(last_refusal(&app).await, "account_disabled");
}

#[tokio::test]
async fn a_group_change_changes_the_role_at_the_next_login_and_ends_the_other_sessions() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let first = app.token("alice", &password_of("alice")).await;
    assert_eq!(app.get("/api/v1/auth/me", Some(&first)).await.body["role"], "editor");

    server.add_member(ADMINS_GROUP, "alice");
    let res = app.login("alice", &password_of("alice")).await;
    assert_eq!(res.body["user"]["role"], "admin", "the first mapped group wins: {:?}", res.body);
    assert_eq!(app.get("/api/v1/auth/me", Some(&first)).await.status, StatusCode::UNAUTHORIZED, "role change ended it");
    let records = app.audit_records().await;
    let change = records.iter().rev().find(|r| r.event.event_type == "role_change").expect("audited");
    assert_eq!(
        (change.event.details["from"].as_str(), change.event.details["to"].as_str()),
        (Some("editor"), Some("admin"))
    );

    server.remove_member(ADMINS_GROUP, "alice");
    assert_eq!(app.login("alice", &password_of("alice")).await.body["user"]["role"], "editor");
    server.remove_member(STAFF_GROUP, "alice");
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&app).await, "no_mapped_group");
}

#[tokio::test]
async fn injection_usernames_match_nothing_in_the_directory() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let pw = password_of("alice");
    // Unescaped, each of these would find alice (or every entry): with escaping, none does.
    for name in ["*)(uid=*))(|(uid=*", "*", "alic*", "a*e", "*)(uid=alice", "alice)(|(uid=*)", "al\\69ce", "alice\0"] {
        let res = app.login(name, &pw).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{name:?}: {:?}", res.body);
        assert_eq!(last_refusal(&app).await, "unknown_user", "{name:?} matched an entry");
    }
    assert_eq!(app.store.count_users().await.unwrap(), 1, "only the local admin");
    assert_eq!(app.login("alice", &pw).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_empty_password_is_refused_and_never_becomes_an_anonymous_bind() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let res = app.login("alice", "").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{:?}", res.body);
    assert_eq!(last_refusal(&app).await, "empty_password");
    assert!(app.store.get_user(&Username::parse("alice").unwrap()).await.unwrap().is_none());
}

#[tokio::test]
async fn a_directory_stopped_mid_run_gives_503_and_no_session_and_comes_back() {
    let mut server = LdapServer::start();
    let app = app(&server).await;
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK);
    server.stop();
    for (user, pw) in [("alice", password_of("alice")), ("carol", password_of("carol"))] {
        let res = app.login(user, &pw).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", res.body);
        assert_eq!(res.code(), "identity_provider_unavailable");
        assert!(res.body["token"].is_null());
        assert_eq!(last_refusal(&app).await, "identity_provider_unavailable", "audited");
    }
    assert_eq!(sessions_of(&app, "alice").await, 1, "no session from the outage");
    assert!(app.store.get_user(&Username::parse("carol").unwrap()).await.unwrap().is_none());
    // Local accounts do not depend on the directory; directory accounts never fall back.
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK);
    assert_eq!(login_with(&app, "alice", &password_of("alice"), "local").await.status, StatusCode::UNAUTHORIZED);
    // The outage charged nobody's login delay: more than its threshold of tries, then back.
    for _ in 0..6 {
        assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    server.resume();
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_directory_that_never_answers_times_out_into_503() {
    // Fault injection: a listener that accepts and says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let server = LdapServer::start();
    let config = LdapConfig {
        url: format!("ldaps://127.0.0.1:{port}"),
        connect_timeout_secs: 1,
        operation_timeout_secs: 1,
        ..server.config()
    };
    let app = app_with(config, |_| {}).await;
    let res = app.login("alice", &password_of("alice")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", res.body);
    assert_eq!(res.code(), "identity_provider_unavailable");
    drop(silent);
}

#[tokio::test]
async fn a_refused_service_account_is_503_and_its_password_is_never_shown() {
    let server = LdapServer::start();
    let wrong = "Wrong-Service-Canary-4417";
    let config = LdapConfig { bind_password: secrecy::SecretString::from(wrong), ..server.config() };
    assert!(!format!("{config:?}").contains(wrong));
    let app = app_with(config, |_| {}).await;
    let res = app.login("alice", &password_of("alice")).await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.code(), "identity_provider_unavailable");
    assert!(!contains(&res.raw, wrong.as_bytes()));
}

#[tokio::test]
async fn starttls_and_ldaps_both_work_and_only_with_the_right_ca() {
    let server = LdapServer::start();
    for config in [server.config(), server.starttls_config()] {
        let app = app_with(config.clone(), |_| {}).await;
        let res = app.login("alice", &password_of("alice")).await;
        assert_eq!(res.status, StatusCode::OK, "{}: {:?}", config.url, res.body);
        // A certificate the configured CA did not sign: TLS is verified, nothing is sent.
        let untrusted = LdapConfig { ca_cert: Some(server.other_ca_cert()), ..config.clone() };
        let app = app_with(untrusted, |_| {}).await;
        let res = app.login("alice", &password_of("alice")).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}: {:?}", config.url, res.body);
        assert_eq!(res.code(), "identity_provider_unavailable");
    }
}

#[tokio::test]
async fn a_method_other_than_the_accounts_own_is_refused_like_a_wrong_password() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let wrong = app.login(ADMIN, "Wrong-Passw0rd!!").await;
    assert_eq!(login_with(&app, "alice", &password_of("alice"), "ldap").await.status, StatusCode::OK);
    for (user, pw, method) in [("alice", password_of("alice"), "local"), (ADMIN, ADMIN_PASSWORD.to_owned(), "ldap")] {
        let res = login_with(&app, user, &pw, method).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{user} via {method}");
        assert_eq!(without_request_id(res.body), without_request_id(wrong.body.clone()));
        assert_eq!(last_refusal(&app).await, "method_mismatch");
    }
    // An unknown name asking for "local" is checked locally, where it does not exist.
    assert_eq!(login_with(&app, "carol", &password_of("carol"), "local").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&app).await, "unknown_user");
    assert_eq!(login_with(&app, ADMIN, ADMIN_PASSWORD, "local").await.status, StatusCode::OK);
    let other = login_with(&app, "alice", &password_of("alice"), "oauth2").await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST, "not a password method");
}

/// With local logins the default, a directory user's first login names the directory
/// (`method: "ldap"`, SPEC 4) and is provisioned; later logins follow the account's source.
#[tokio::test]
async fn an_unknown_name_may_choose_the_directory_with_method_ldap() {
    let server = LdapServer::start();
    let app = app_with(server.config(), |c| c.auth.method = AuthMethod::Local).await;
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&app).await, "unknown_user", "without a method the default (local) is asked");
    let first = login_with(&app, "alice", &password_of("alice"), "ldap").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["user"]["role"], "editor");
    let user = app.store.get_user(&Username::parse("alice").unwrap()).await.unwrap().unwrap();
    assert_eq!(user.auth_source, AuthSource::Ldap);
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK, "its own source now");
    assert_eq!(login_with(&app, "alice", &password_of("alice"), "local").await.status, StatusCode::UNAUTHORIZED);
    // Asking for the directory takes nobody's local account.
    assert_eq!(login_with(&app, ADMIN, &password_of("admin"), "ldap").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&app).await, "method_mismatch");
}

#[tokio::test]
async fn a_local_account_is_not_taken_over_by_the_directory() {
    let server = LdapServer::start();
    let app = app(&server).await;
    // The directory has an `admin` too, with a password of its own.
    let res = app.login(ADMIN, &password_of("admin")).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&app).await, "wrong_password", "checked locally");
    assert_eq!(login_with(&app, ADMIN, &password_of("admin"), "ldap").await.status, StatusCode::UNAUTHORIZED);
    // A local account made before its name's first directory login stays local.
    app.user_with_role("carol", "viewer").await;
    assert_eq!(app.login("carol", &password_of("carol")).await.status, StatusCode::UNAUTHORIZED);
    for name in [ADMIN, "carol"] {
        let user = app.store.get_user(&Username::parse(name).unwrap()).await.unwrap().unwrap();
        assert_eq!(user.auth_source, AuthSource::Local, "{name}");
    }
    assert_eq!(app.login("carol", USER_PASSWORD).await.body["user"]["role"], "viewer");
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_directory_account_has_no_local_password_to_log_in_with_or_to_set() {
    let server = LdapServer::start();
    // Local is the default method here: an unknown name is checked locally (and unknown),
    // the directory is never asked for it.
    let local_first = app_with(server.config(), |c| c.auth.method = AuthMethod::Local).await;
    assert_eq!(local_first.login("alice", &password_of("alice")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_refusal(&local_first).await, "unknown_user");

    let app = app(&server).await;
    let token = app.token("alice", &password_of("alice")).await;
    // The self-service password change checks the current password locally: never matches.
    let new_pw = "An0ther-Strong-Passw0rd!";
    let res = app
        .post(
            "/api/v1/auth/password",
            Some(&token),
            json!({"current_password": password_of("alice"), "new_password": new_pw}),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{:?}", res.body);
    assert_eq!(login_with(&app, "alice", &password_of("alice"), "local").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("alice", new_pw).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn directory_logins_share_the_login_delay_which_is_checked_before_the_directory() {
    let mut server = LdapServer::start();
    let app = app_with(server.config(), |c| c.breach.enabled = false).await;
    for _ in 0..5 {
        assert_eq!(app.login("alice", "Wrong-Passw0rd!!").await.status, StatusCode::UNAUTHORIZED);
    }
    let res = app.login("alice", &password_of("alice")).await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "inside the delay even the right password waits");
    // The delay answers first: with the directory gone it is still a 429, not a 503.
    server.stop();
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::TOO_MANY_REQUESTS);
    server.resume();
    app.clock.advance_secs(1);
    assert_eq!(app.login("alice", &password_of("alice")).await.status, StatusCode::OK, "no permanent lockout");
}

#[tokio::test]
async fn a_directory_user_with_mfa_enabled_must_pass_the_second_factor() {
    let server = LdapServer::start();
    let app = app(&server).await;
    let token = app.token("alice", &password_of("alice")).await;
    let (_secret, _codes, _fresh) = crate::mfa::enrol(&app, &token).await;
    let res = app.login("alice", &password_of("alice")).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["mfa_required"], true, "{:?}", res.body);
    assert!(res.body["token"].is_null(), "no session before the second factor");
}

#[tokio::test]
async fn the_bind_password_never_reaches_responses_audit_or_storage() {
    let mut server = LdapServer::start();
    let app = app(&server).await;
    let mut answers = vec![
        app.login("alice", &password_of("alice")).await,
        app.login("alice", "Wrong-Passw0rd!!").await,
        app.login("*", "x").await,
    ];
    server.stop();
    answers.push(app.login("carol", &password_of("carol")).await);
    for res in &answers {
        assert!(!contains(&res.raw, SERVICE_PASSWORD.as_bytes()), "{:?}", res.body);
    }
    for r in app.audit_records().await {
        assert!(!r.event.details.to_string().contains(SERVICE_PASSWORD), "{:?}", r.event);
        assert!(!r.event.details.to_string().contains(&password_of("alice")), "{:?}", r.event);
    }
    for (path, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, SERVICE_PASSWORD.as_bytes()), "{path}");
    }
    assert!(!format!("{:?}", app.config).contains(SERVICE_PASSWORD));
}
