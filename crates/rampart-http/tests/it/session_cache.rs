//! The in-memory session cache never outlives a revocation. The revocation tests elsewhere
//! (logout, logout-all, password change, role change, disable, delete, role redefinition,
//! MFA confirmation and reset, refresh-token reuse) each make a request first, so the one
//! after the revocation would be a cache hit; these add the races.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::http::{Method, StatusCode};
use rampart_testkit::{TestApp, USER_PASSWORD};

/// Requests in flight on other tasks keep hitting the cache while the session ends; every
/// request that starts after the logout has answered is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_after_a_logout_is_served_from_the_cache() {
    // One address sends it all; the limiter would answer first.
    let app = Arc::new(TestApp::with_config(|c| c.rate_limit.enabled = false).await);
    let token = app.admin_token().await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (app, token, stop) = (Arc::clone(&app), token.clone(), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let status = app.get("/api/v1/auth/me", Some(&token)).await.status;
                seen.push((started, status));
                // A cache hit never waits on anything; let the logout task run.
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let logout = app.call(Method::POST, "/api/v1/auth/logout", Some(&token), None).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let logged_out = Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut served_before, mut refused_after) = (0, 0);
    for reader in readers {
        for (started, status) in reader.await.unwrap() {
            if started > logged_out {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "served from the cache after the logout");
                refused_after += 1;
            } else if status == StatusCode::OK {
                served_before += 1;
            }
        }
    }
    assert!(served_before > 10 && refused_after > 10, "too few requests: {served_before} / {refused_after}");
}

/// A session resolved from the store while it is being revoked is not cached as live: the
/// resolution that started before the revocation may answer, but no later request can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_racing_a_first_request_leaves_nothing_live_in_the_cache() {
    let app = Arc::new(TestApp::new().await);
    let admin = app.admin_token().await;
    for round in 0..20 {
        let name = format!("racer{round}");
        let body = serde_json::json!({"username": name, "password": USER_PASSWORD, "role": "viewer"});
        assert_eq!(app.post("/api/v1/users", Some(&admin), body).await.status, StatusCode::CREATED);
        let token = app.token(&name, USER_PASSWORD).await;
        let first = {
            let (app, token) = (Arc::clone(&app), token.clone());
            tokio::spawn(async move { app.get("/api/v1/auth/me", Some(&token)).await.status })
        };
        let path = format!("/api/v1/users/{name}");
        let disable = app.call(Method::PATCH, &path, Some(&admin), Some(serde_json::json!({"disabled": true}))).await;
        assert_eq!(disable.status, StatusCode::OK);
        let _ = first.await.unwrap();
        assert_eq!(app.get("/api/v1/auth/me", Some(&token)).await.status, StatusCode::UNAUTHORIZED, "round {round}");
    }
}

/// Sealed document records are kept in memory too: every read below follows one that
/// filled the cache, and each must see the change made in between.
#[tokio::test]
async fn no_read_after_a_write_delete_or_erasure_is_served_from_memory() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), serde_json::json!({"name": "mem"})).await;
    let created = app
        .post(
            "/api/v1/collections/mem/documents",
            Some(&admin),
            serde_json::json!({"data": {"v": 1}, "subject_id": "p-1"}),
        )
        .await;
    let path = format!("/api/v1/collections/mem/documents/{}", created.body["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&admin)).await.body["data"]["v"], 1);
    assert_eq!(app.get(&path, Some(&admin)).await.body["data"]["v"], 1, "a second read (a cache hit)");
    let patched = app.call(Method::PATCH, &path, Some(&admin), Some(serde_json::json!({"data": {"v": 2}}))).await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(app.get(&path, Some(&admin)).await.body["data"]["v"], 2, "the write is seen at once");
    assert_eq!(app.call(Method::DELETE, &path, Some(&admin), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, Some(&admin)).await.status, StatusCode::NOT_FOUND, "the deletion is seen at once");
    // Erasure: the subject's record was read (cached), then the subject is erased.
    let again = app
        .post(
            "/api/v1/collections/mem/documents",
            Some(&admin),
            serde_json::json!({"data": {"v": 3}, "subject_id": "p-1"}),
        )
        .await;
    let path = format!("/api/v1/collections/mem/documents/{}", again.body["id"].as_str().unwrap());
    assert_eq!(app.get(&path, Some(&admin)).await.status, StatusCode::OK);
    let erased = app
        .call(
            Method::DELETE,
            "/api/v1/gdpr/erasure?subject_id=p-1&override_reason=erased-by-the-test",
            Some(&admin),
            None,
        )
        .await;
    assert!(erased.status.is_success(), "{:?}", erased.status);
    assert_eq!(app.get(&path, Some(&admin)).await.status, StatusCode::NOT_FOUND, "the erasure is seen at once");
}
