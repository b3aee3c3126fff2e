use std::time::Duration;

use axum::http::{Method, StatusCode};
use rampart_testkit::{contains, TestApp};
use serde_json::json;

const CANARY: &str = "CANARY-7c1e-plaintext-must-not-leak";

async fn with_docs() -> (TestApp, String) {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "people", "indexes": ["email"]})).await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "visits", "indexes": ["kind"]})).await;
    (app, admin)
}

async fn insert(app: &TestApp, admin: &str, c: &str, data: serde_json::Value, subject: Option<&str>) -> String {
    let res = app
        .post(&format!("/api/v1/collections/{c}/documents"), Some(admin), json!({"data": data, "subject_id": subject}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// Every data key except the root and small-secrets keys, as stored.
async fn data_keys(app: &TestApp) -> Vec<rampart_store::KeyRecord> {
    let keys = rampart_store::KeyStore::list_keys(&*app.store, "", 10_000).await.unwrap();
    keys.into_iter().filter(|k| k.kind != rampart_store::KeyKind::Root && k.owner != "_secrets").collect()
}

#[tokio::test]
async fn document_values_never_reach_disk_in_plaintext() {
    let (app, admin) = with_docs().await;
    insert(&app, &admin, "people", json!({"email": CANARY, "note": CANARY}), Some("subj-1")).await;
    insert(&app, &admin, "people", json!({"email": "x@y.z", "note": CANARY}), None).await;
    let found = app.get(&format!("/api/v1/collections/people/documents?email={CANARY}"), Some(&admin)).await;
    assert_eq!(found.body["documents"].as_array().unwrap().len(), 1, "blind index finds the sealed document");
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, CANARY.as_bytes()), "canary in {name} (WAL included)");
    }
    let app = app.restart().await;
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, CANARY.as_bytes()), "canary in {name} after checkpoint");
    }
    let found = app.get(&format!("/api/v1/collections/people/documents?email={CANARY}"), Some(&admin)).await;
    assert_eq!(found.body["documents"][0]["data"]["note"], CANARY, "readable after restart");
}

#[tokio::test]
async fn tampered_or_transplanted_ciphertext_is_an_audited_integrity_error() {
    let (app, admin) = with_docs().await;
    let a = insert(&app, &admin, "people", json!({"email": "a@x.io", "secret": "A"}), None).await;
    let b = insert(&app, &admin, "people", json!({"email": "b@x.io", "secret": "B"}), None).await;
    let c = insert(&app, &admin, "people", json!({"email": "c@x.io", "secret": "C"}), None).await;
    // Flip one bit in the middle of A's ciphertext.
    app.tamper().flip_document_bit(&a);
    // Copy B's (valid) ciphertext onto C: same collection, same key, other record.
    app.tamper().copy_document_body(&b, &c);
    for id in [&a, &c] {
        let res = app.get(&format!("/api/v1/collections/people/documents/{id}"), Some(&admin)).await;
        assert_eq!((res.status, res.code()), (StatusCode::INTERNAL_SERVER_ERROR, "integrity_error"), "{id}");
        assert!(res.body.get("data").is_none());
        let text = String::from_utf8_lossy(&res.raw);
        assert!(!text.contains("\"B\"") && !text.contains("authentication failed") && !text.contains("aead"), "{text}");
    }
    let list = app.get("/api/v1/collections/people/documents", Some(&admin)).await;
    assert_eq!(list.code(), "integrity_error", "a list containing a bad record fails closed too");
    assert_eq!(
        app.get(&format!("/api/v1/collections/people/documents/{b}"), Some(&admin)).await.status,
        StatusCode::OK
    );
    let audited = app.audit_records().await.iter().filter(|r| r.event.event_type == "integrity_error").count();
    assert_eq!(audited, 3);
}

#[tokio::test]
async fn unencrypted_collections_are_an_explicit_choice() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "public", "encrypted": false})).await;
    assert_eq!(res.body["encrypted"], false);
    let id = insert(&app, &admin, "public", json!({"v": CANARY}), None).await;
    let body = app.tamper().document_body(&id);
    assert!(contains(&body, CANARY.as_bytes()), "stored as asked");
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "default"})).await;
    assert_eq!(res.body["encrypted"], true, "encryption is the default");
    let listed = app.get("/api/v1/collections", Some(&admin)).await;
    let public = listed.body["collections"].as_array().unwrap().iter().find(|c| c["name"] == "public").cloned();
    assert_eq!(public.unwrap()["encrypted"], false, "the listing shows it");
    let audited = app.audit_records().await;
    assert!(audited.iter().any(|r| r.event.details["name"] == "public" && r.event.details["encrypted"] == false));
    // An editor may create collections, but not plaintext ones.
    let editor = app.user_with_role("ed", "editor").await;
    let res = app.post("/api/v1/collections", Some(&editor), json!({"name": "leaky", "encrypted": false})).await;
    assert_eq!(res.status, axum::http::StatusCode::FORBIDDEN, "{:?}", res.body);
    let res = app.post("/api/v1/collections", Some(&editor), json!({"name": "sealed"})).await;
    assert_eq!(res.status, axum::http::StatusCode::CREATED);
}

async fn wait_reencryption(app: &TestApp, admin: &str) {
    for _ in 0..400 {
        let keys = app.get("/api/v1/admin/keys", Some(admin)).await;
        if keys.body["reencryption"].is_null() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("re-encryption did not finish");
}

async fn key_ids(app: &TestApp) -> Vec<String> {
    data_keys(app).await.into_iter().map(|k| k.key_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_rewraps_and_reencrypts_without_losing_a_document() {
    let (app, admin) = with_docs().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let subject = (i % 3 == 0).then(|| format!("subject-{i}"));
        ids.push(
            insert(&app, &admin, "people", json!({"email": format!("p{i}@x.io"), "i": i}), subject.as_deref()).await,
        );
    }
    let viewer = app.user_with_role("vic", "viewer").await;
    assert_eq!(app.get("/api/v1/admin/keys", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
    let res = app.call(Method::POST, "/api/v1/admin/keys/rotate", Some(&viewer), Some(json!({}))).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let before = key_ids(&app).await;
    let res = app.call(Method::POST, "/api/v1/admin/keys/rotate", Some(&admin), Some(json!({}))).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["current_kek_version"], 2);
    assert_eq!(key_ids(&app).await, before, "re-wrap keeps the data keys");
    let all_keys = rampart_store::KeyStore::list_keys(&*app.store, "", 10_000).await.unwrap();
    let mut versions: Vec<u32> = all_keys.iter().map(|k| k.kek_version).collect();
    versions.dedup();
    assert_eq!(versions, vec![2], "every key re-wrapped under the new KEK");
    let app = app.restart().await;
    for id in &ids {
        assert_eq!(
            app.get(&format!("/api/v1/collections/people/documents/{id}"), Some(&admin)).await.status,
            StatusCode::OK
        );
    }

    let res = app.call(Method::POST, "/api/v1/admin/keys/rotate", Some(&admin), Some(json!({"reencrypt": true}))).await;
    assert_eq!(res.body["current_kek_version"], 3);
    wait_reencryption(&app, &admin).await;
    let after = key_ids(&app).await;
    assert!(after.iter().all(|k| !before.contains(k)), "old data keys destroyed: {after:?}");
    for (i, id) in ids.iter().enumerate() {
        let res = app.get(&format!("/api/v1/collections/people/documents/{id}"), Some(&admin)).await;
        assert_eq!(res.body["data"]["i"], i, "{id}");
    }
    let found = app.get("/api/v1/collections/people/documents?email=p7@x.io", Some(&admin)).await;
    assert_eq!(found.body["documents"].as_array().unwrap().len(), 1);
    let rotations = app
        .audit_records()
        .await
        .iter()
        .filter(|r| r.event.event_type == "key_rotate" && r.event.details.get("jwt_signing_key").is_none())
        .count();
    assert_eq!(rotations, 4, "rotate, rotate, re-encryption started, finished");
}

#[tokio::test]
async fn erasing_a_subject_shreds_its_documents_everywhere() {
    let (app, admin) = with_docs().await;
    let subject = "patient-erase-me-99";
    let first = insert(&app, &admin, "people", json!({"email": "e@x.io"}), Some(subject)).await;
    insert(&app, &admin, "visits", json!({"kind": "checkup"}), Some(subject)).await;
    let keep = insert(&app, &admin, "visits", json!({"kind": "other"}), Some("patient-keep")).await;
    let body = app.tamper().document_body(&first);
    let sealed_key = String::from_utf8(body[2..2 + usize::from(body[1])].to_vec()).unwrap();
    assert!(sealed_key.starts_with("sub-"), "sealed under the subject's key: {sealed_key}");
    let viewer_token = app.user_with_role("vic", "viewer").await;
    let viewer = app.core.sessions().authenticate(&viewer_token, &rampart_core::RequestMeta::default()).await.unwrap();
    let refused =
        app.core.access().authorize::<rampart_core::perm::GdprErase>(viewer, None, rampart_core::Area::Admin).await;
    assert!(matches!(refused, Err(rampart_core::CoreError::Forbidden(_))), "needs gdpr.erase");
    let cli = app.core.authorize_local().await.unwrap();
    let proof = rampart_core::Proof { verification_token: None, override_reason: Some("the test says so".into()) };
    let ask = rampart_core::ErasureAsk { subject_id: subject.into(), reason: None, proof };
    assert_eq!(app.core.privacy().erase(&cli, ask).await.unwrap().records_deleted, 2);

    let res = app.get(&format!("/api/v1/collections/visits/documents?subject_id={subject}"), Some(&admin)).await;
    assert!(res.body["documents"].as_array().unwrap().is_empty());
    assert_eq!(
        app.get(&format!("/api/v1/collections/visits/documents/{keep}"), Some(&admin)).await.status,
        StatusCode::OK
    );
    let left = rampart_store::KeyStore::get_key(&*app.store, &sealed_key).await.unwrap();
    assert!(left.is_none(), "the subject's key is destroyed");
    let ledger = rampart_store::PrivacyStore::erasure_ledger(&*app.store).await.unwrap();
    let ledger = ledger[0].subject_hash.clone();
    assert_eq!(ledger.len(), 64, "a keyed hash, not the id");
    let app = app.restart().await;
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, subject.as_bytes()), "subject id lingers in {name}");
    }
    let event = app.audit_records().await.into_iter().find(|r| r.event.event_type == "gdpr_erasure").unwrap();
    assert_eq!(event.event.details["subject_hash"], ledger);
}

/// A document that fails its integrity check does not stop re-encryption: it is recorded
/// and alerted, the others are re-sealed, and the run finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencryption_records_a_damaged_document_and_moves_on() {
    let (app, admin) = with_docs().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(insert(&app, &admin, "people", json!({"email": format!("d{i}@x.io")}), None).await);
    }
    app.tamper().flip_document_bit(&ids[2]);
    let res = app.post("/api/v1/admin/keys/rotate", Some(&admin), json!({"reencrypt": true})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    wait_reencryption(&app, &admin).await;
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 2) {
        let res = app.get(&format!("/api/v1/collections/people/documents/{id}"), Some(&admin)).await;
        assert_eq!(res.status, StatusCode::OK, "document {i} re-sealed and readable");
    }
    let records = app.audit_records().await;
    assert!(records.iter().any(|r| r.event.event_type == "integrity_error" && r.event.details["phase"] == "reencrypt"));
    assert!(records.iter().any(
        |r| r.event.details["phase"] == "reencrypt_finished" && r.event.details["documents_failing_integrity"] == 1
    ));
    let alerts = app.get("/api/v1/admin/security/alerts?type=integrity_error", Some(&admin)).await;
    assert_eq!(alerts.body["alerts"].as_array().map(Vec::len), Some(1), "{:?}", alerts.body);
}
