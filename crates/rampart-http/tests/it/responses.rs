//! The field names of representative response bodies, exactly: a renamed, dropped or
//! added field fails here, whatever type the handler builds its body from.
use std::collections::BTreeSet;
use std::time::Duration;

use rampart_testkit::{TestApp, TestResponse, ADMIN, ADMIN_PASSWORD};
use serde_json::{json, Value};

/// `v` is an object whose field names are exactly the space-separated `expected`.
#[track_caller]
fn assert_fields(what: &str, v: &Value, expected: &str) {
    let actual: BTreeSet<&str> =
        v.as_object().unwrap_or_else(|| panic!("{what}: not an object: {v}")).keys().map(String::as_str).collect();
    assert_eq!(actual, expected.split_whitespace().collect::<BTreeSet<_>>(), "{what}: {v}");
}

/// The body of a successful response.
#[track_caller]
fn ok(res: TestResponse) -> Value {
    assert!(res.status.is_success(), "{} {:?}", res.status, res.body);
    res.body
}

/// The first item of the list at `field`, which must not be empty.
#[track_caller]
fn first<'a>(body: &'a Value, field: &str) -> &'a Value {
    body[field].as_array().and_then(|a| a.first()).unwrap_or_else(|| panic!("no {field} in {body}"))
}

#[tokio::test]
async fn response_bodies_have_exactly_their_documented_fields() {
    let app = TestApp::with_config(|c| c.breach.token_failure_threshold = 1).await;

    assert_fields("health", &ok(app.get("/health", None).await), "status version");

    let body = ok(app.login(ADMIN, ADMIN_PASSWORD).await);
    assert_fields("login", &body, "token refresh_token expires_at user device_token");
    assert_fields("login user", &body["user"], "username role mfa_enabled");
    let admin = body["token"].as_str().unwrap().to_owned();
    let admin = Some(admin.as_str());

    let body = ok(app.get("/api/v1/auth/me", admin).await);
    assert_fields("me", &body, "username role mfa_enabled disabled auth_source created_at permissions assurance");

    let body = ok(app.get("/api/v1/auth/sessions", admin).await);
    assert_fields("sessions", &body, "sessions");
    let session = "id username created_at last_seen_at expires_at ip_address user_agent current";
    assert_fields("session", first(&body, "sessions"), session);

    let body = ok(app.get("/api/v1/users", admin).await);
    assert_fields("users", &body, "users next_cursor");
    assert_fields("user", first(&body, "users"), "username role mfa_enabled disabled auth_source created_at");

    let body = ok(app.get("/api/v1/roles/viewer", admin).await);
    assert_fields("role", &body, "name description permissions collections builtin created_at");

    ok(app.post("/api/v1/collections", admin, json!({"name": "people", "indexes": ["email"]})).await);
    let body = ok(app.get("/api/v1/collections", admin).await);
    assert_fields("collections", &body, "collections");
    let collection = "name indexes pii_fields retention_days encrypted created_at updated_at";
    assert_fields("collection", first(&body, "collections"), collection);

    let doc = json!({"data": {"email": "a@b.c"}, "subject_id": "s-1"});
    ok(app.post("/api/v1/collections/people/documents", admin, doc).await);
    let body = ok(app.get("/api/v1/collections/people/documents", admin).await);
    assert_fields("documents", &body, "documents next_cursor");
    assert_fields("document", first(&body, "documents"), "id version subject_id data created_at updated_at");

    let body = ok(app.get("/api/v1/admin/audit?limit=2", admin).await);
    assert_fields("audit", &body, "records next_cursor");
    let record = "seq timestamp event_type user ip_address success details request_id prev_hash hash";
    assert_fields("audit record", first(&body, "records"), record);

    let body = ok(app.get("/api/v1/admin/keys", admin).await);
    let keys = "current_kek_version kek_versions data_keys rotation_days next_rotation_due reencryption";
    assert_fields("keys", &body, keys);
    assert_fields("kek version", first(&body, "kek_versions"), "version created_at current");

    let body = ok(app.get("/.well-known/jwks.json", None).await);
    assert_fields("jwks", &body, "keys");
    assert_fields("jwk", first(&body, "keys"), "kty crv x kid alg use");

    // Forged tokens raise an alert; detection runs in the background.
    for _ in 0..3 {
        app.get("/api/v1/auth/me", Some("rps_forged")).await;
    }
    let mut body = Value::Null;
    for _ in 0..500 {
        body = ok(app.get("/api/v1/admin/security/alerts", admin).await);
        if body["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_fields("alerts", &body, "alerts");
    let alert = "id severity breach_type details first_seen last_seen count status acknowledged_by";
    assert_fields("alert", first(&body, "alerts"), alert);
}
