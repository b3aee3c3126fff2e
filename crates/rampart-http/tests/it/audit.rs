use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rampart_store::tamper::AuditEdit;
use rampart_testkit::{TestApp, ADMIN, ADMIN_PASSWORD, USER_PASSWORD};
use serde_json::json;

fn count(records: &[rampart_core::AuditRecord], kind: &str, ok: bool) -> usize {
    records.iter().filter(|r| r.event.event_type == kind && r.event.success == ok).count()
}

/// Drives one of each audited action and checks each produced exactly its record.
#[tokio::test]
async fn each_event_is_recorded_once_with_its_fields() {
    let app = TestApp::new().await;
    let base = app.audit_records().await.len();
    assert_eq!(base, 2, "bootstrap: the first admin and the first JWT signing key are audited");
    app.login(ADMIN, "Wrong-Passw0rd!!").await;
    let admin = app.admin_token().await;
    app.post("/api/v1/users", Some(&admin), json!({"username": "una", "password": USER_PASSWORD, "role": "viewer"}))
        .await;
    let una = app.token("una", USER_PASSWORD).await;
    app.call(Method::PATCH, "/api/v1/users/una", Some(&admin), Some(json!({"role": "editor"}))).await;
    app.call(Method::PATCH, "/api/v1/users/una", Some(&admin), Some(json!({"disabled": true}))).await;
    app.call(Method::DELETE, "/api/v1/users/una", Some(&admin), None).await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "c", "indexes": ["e"]})).await;
    let doc = app.post("/api/v1/collections/c/documents", Some(&admin), json!({"data": {"e": "secret@x.io"}})).await;
    let path = format!("/api/v1/collections/c/documents/{}", doc.body["id"].as_str().unwrap());
    app.get(&path, Some(&admin)).await;
    app.get("/api/v1/collections/c/documents?e=secret@x.io", Some(&admin)).await;
    app.call(Method::PUT, &path, Some(&admin), Some(json!({"data": {"e": "y"}}))).await;
    app.call(Method::DELETE, &path, Some(&admin), None).await;
    let viewer = app.user_with_role("vic", "viewer").await;
    let denied = app.get("/api/v1/users", Some(&viewer)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let pw = app
        .post("/api/v1/auth/password", Some(&admin), json!({"current_password": "nope-Nope-123!", "new_password": "X"}))
        .await;
    assert_eq!(pw.status, StatusCode::FORBIDDEN);
    app.call(Method::POST, "/api/v1/auth/logout", Some(&admin), None).await;
    let _ = una;

    let r = app.audit_records().await;
    assert_eq!(count(&r, "login", false), 1);
    assert_eq!(count(&r, "login", true), 4, "admin, una, admin (user_with_role), vic");
    assert_eq!(count(&r, "user_create", true), 3, "bootstrap, una, vic");
    assert_eq!(count(&r, "role_change", true), 1);
    assert_eq!(count(&r, "user_disable", true), 1);
    assert_eq!(count(&r, "user_delete", true), 1);
    assert_eq!(count(&r, "session_revoke", true), 3, "role change, disable, delete");
    assert_eq!(count(&r, "config_change", true), 1);
    assert_eq!(count(&r, "query", true), 5, "insert, read, list, replace, delete");
    assert_eq!(count(&r, "permission_denied", false), 1);
    assert_eq!(count(&r, "password_change", false), 1);
    assert_eq!(count(&r, "logout", true), 1);

    let denied = r.iter().find(|x| x.event.event_type == "permission_denied").unwrap();
    assert_eq!(denied.event.user.as_deref(), Some("vic"));
    assert_eq!(denied.event.details["permission"], "users.read");
    let role = r.iter().find(|x| x.event.event_type == "role_change").unwrap();
    assert_eq!(
        (role.event.details["from"].as_str(), role.event.details["to"].as_str()),
        (Some("viewer"), Some("editor"))
    );
    for rec in &r[2..] {
        assert_eq!(rec.event.ip_address.as_deref(), Some("127.0.0.1"), "{rec:?}");
        assert!(rec.event.request_id.as_deref().is_some_and(|id| id.len() == 24), "{rec:?}");
    }
    // The queried value is personal data: only the field name is kept.
    let text = serde_json::to_string(&r.iter().map(|x| &x.event).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("secret@x.io"));
    for secret in [ADMIN_PASSWORD, USER_PASSWORD, "Wrong-Passw0rd!!", "nope-Nope-123!", &admin[4..]] {
        assert!(!text.contains(secret), "audit details hold a secret");
    }
    let verify = app.get("/api/v1/admin/audit/verify", Some(&app.admin_token().await)).await;
    assert_eq!(verify.body["valid"], true, "{:?}", verify.body);
}

#[tokio::test]
async fn audit_api_filters_and_paginates() {
    let app = TestApp::new().await;
    for _ in 0..3 {
        app.login(ADMIN, "Wrong-Passw0rd!!").await;
    }
    let admin = app.admin_token().await;
    let res = app.get("/api/v1/admin/audit?event_type=login&success=false&limit=2", Some(&admin)).await;
    assert_eq!(res.status, StatusCode::OK);
    let recs = res.body["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    for key in [
        "timestamp",
        "event_type",
        "user",
        "ip_address",
        "success",
        "details",
        "request_id",
        "seq",
        "prev_hash",
        "hash",
    ] {
        assert!(recs[0].get(key).is_some(), "{key}");
    }
    let next = res.body["next_cursor"].as_str().unwrap();
    let res = app.get(&format!("/api/v1/admin/audit?event_type=login&success=false&cursor={next}"), Some(&admin)).await;
    assert_eq!(res.body["records"].as_array().unwrap().len(), 1);
    let res = app.get("/api/v1/admin/audit?user=nobody", Some(&admin)).await;
    assert!(res.body["records"].as_array().unwrap().is_empty());
    let res = app.get("/api/v1/admin/audit?from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00.001Z", Some(&admin)).await;
    assert!(!res.body["records"].as_array().unwrap().is_empty(), "fake clock starts at T0");
    assert_eq!(app.get("/api/v1/admin/audit?from=yesterday", Some(&admin)).await.status, StatusCode::BAD_REQUEST);
    let viewer = app.user_with_role("v", "viewer").await;
    assert_eq!(app.get("/api/v1/admin/audit", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/admin/audit/verify", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
}

/// Each kind of tampering, applied to a fresh chain, is found at the right seq.
#[tokio::test]
async fn tampering_with_the_chain_is_found() {
    let cases: &[(&str, AuditEdit, i64)] = &[
        ("changed", AuditEdit::ChangeDetails(3), 3),
        ("removed", AuditEdit::Remove(3), 3),
        ("reordered", AuditEdit::Swap(3, 4), 3),
        ("inserted", AuditEdit::InsertAt(3), 3),
        ("truncated", AuditEdit::TruncateFrom(5), 5),
        ("forged", AuditEdit::Forge(4), 4),
    ];
    for (name, edit, bad_seq) in cases {
        let app = TestApp::new().await;
        for _ in 0..5 {
            app.login(ADMIN, "Wrong-Passw0rd!!").await;
        }
        let before = app.core.audit().verify_audit().await.unwrap();
        assert!(before.valid, "{name}: {before:?}");
        app.tamper().edit_audit(edit);
        let after = app.core.audit().verify_audit().await.unwrap();
        assert!(!after.valid, "{name} not detected");
        assert_eq!(after.first_bad_seq, Some(*bad_seq), "{name}: {after:?}");
    }
}

/// Fail closed: if the audit record cannot be stored, the change is not made (503).
#[tokio::test]
async fn a_change_whose_audit_cannot_be_stored_is_refused_and_not_made() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.tamper().fail_audit_appends(true);
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "blocked"})).await;
    assert_eq!((res.status, res.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    assert!(!String::from_utf8_lossy(&res.raw).contains("fire"), "no internals in the body");
    let res = app
        .post("/api/v1/users", Some(&admin), json!({"username": "x", "password": USER_PASSWORD, "role": "viewer"}))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    // Reads whose audit cannot be stored are refused too, and logins open no session.
    assert_eq!(app.login(ADMIN, ADMIN_PASSWORD).await.status, StatusCode::SERVICE_UNAVAILABLE);
    // A refusal that cannot be recorded fails closed as well: not a 403 without a trace.
    app.tamper().fail_audit_appends(false);
    let viewer = app.user_with_role("vera", "viewer").await;
    app.tamper().fail_audit_appends(true);
    let refused = app.get("/api/v1/admin/keys", Some(&viewer)).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
    app.tamper().fail_audit_appends(false);
    let list = app.get("/api/v1/collections", Some(&admin)).await;
    assert!(list.body["collections"].as_array().unwrap().is_empty(), "the refused change left nothing behind");
    assert_eq!(app.get("/api/v1/users/x", Some(&admin)).await.status, StatusCode::NOT_FOUND);
    assert!(app.core.audit().verify_audit().await.unwrap().valid);
}

#[tokio::test]
async fn hostile_usernames_stay_one_json_line() {
    let app = TestApp::new().await;
    let evil = "eve\n{\"event_type\":\"fake\"}\r\n\u{1b}[31mred\"quote";
    app.login(evil, "whatever-Passw0rd!").await;
    let records = app.audit_records().await;
    let rec = records.last().unwrap();
    assert_eq!(rec.event.user.as_deref(), Some(evil));
    let line = rampart_core::audit::record_json(rec).to_string();
    assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'), "{line}");
    let back = rampart_core::audit::parse_record_line(&line).unwrap();
    assert_eq!(&back, rec);
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let req = |xff: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", xff)
            .header("x-real-ip", xff)
            .body(Body::from(json!({"username": "ghost", "password": "x"}).to_string()))
            .unwrap()
    };
    app.send_from(req("203.0.113.50"), "198.51.100.1:5000").await;
    let rec = app.audit_records().await.pop().unwrap();
    assert_eq!(rec.event.ip_address.as_deref(), Some("198.51.100.1"));
    // Rotating forged values does not buy a fresh bucket either.
    let mut last = StatusCode::OK;
    for i in 0..31 {
        last = app.send_from(req(&format!("203.0.113.{i}")), "198.51.100.2:5000").await.status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);

    let proxied =
        TestApp::with_config(|c| c.server.trusted_proxies = vec![rampart_types::Cidr::parse("10.0.0.0/8").unwrap()])
            .await;
    proxied.send_from(req("6.6.6.6, 203.0.113.77"), "10.0.0.5:4000").await;
    let rec = proxied.audit_records().await.pop().unwrap();
    assert_eq!(rec.event.ip_address.as_deref(), Some("203.0.113.77"), "right-most untrusted hop");
}

/// A chain that grows while it is verified (a live node) verifies: the records up to a head
/// read after them are read on, not reported missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_growing_during_verification_verifies() {
    let app = TestApp::new().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (core, stop) = (app.core.clone(), std::sync::Arc::clone(&stop));
        async move {
            let meta = rampart_core::RequestMeta::local("test");
            let mut appended = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let kind = rampart_core::audit::EventType::Query;
                core.events().record_event(kind, Some("w"), &meta, true, json!({"n": appended})).await.unwrap();
                appended += 1;
            }
            appended
        }
    });
    for round in 0..20 {
        let v = app.core.audit().verify_audit().await.unwrap();
        assert!(v.valid, "round {round}: {v:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "the chain grew meanwhile");
}
