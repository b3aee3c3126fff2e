//! Retention and legal holds through the API: the job deletes exactly the expired
//! documents (collection, PII and default rules), holds block every way of deleting until
//! released, the plan reports what the job then deletes, and the job runs only on the
//! lease holder.

use axum::http::{Method, StatusCode};
use rampart_store::{LeaderLease, SingleNode};
use rampart_testkit::TestApp;
use serde_json::{json, Value};

const DAY: i64 = 86_400;

fn retention_on(c: &mut rampart_config::Config) {
    c.retention.enabled = true;
    c.retention.auto_delete_expired = true;
    c.retention.default_retention_days = Some(60);
    c.retention.pii_retention_days = Some(30);
    c.retention.batch_size = 2;
}

async fn insert(app: &TestApp, token: &str, c: &str, subject: Option<&str>) -> String {
    let mut body = json!({"data": {"email": "a@b.c", "n": 1}});
    if let Some(s) = subject {
        body["subject_id"] = json!(s);
    }
    let res = app.post(&format!("/api/v1/collections/{c}/documents"), Some(token), body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

async fn exists(app: &TestApp, token: &str, c: &str, id: &str) -> bool {
    let res = app.get(&format!("/api/v1/collections/{c}/documents/{id}"), Some(token)).await;
    assert!(res.status == StatusCode::OK || res.status == StatusCode::NOT_FOUND, "{:?}", res.body);
    res.status == StatusCode::OK
}

async fn collection(app: &TestApp, token: &str, body: Value) {
    let res = app.post("/api/v1/collections", Some(token), body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
}

/// The records `retention_delete` left, as (collection, count).
async fn retention_records(app: &TestApp) -> Vec<(String, u64)> {
    app.audit_records()
        .await
        .into_iter()
        .filter(|r| r.event.event_type == "retention_delete")
        .map(|r| {
            (r.event.details["collection"].as_str().unwrap().to_owned(), r.event.details["count"].as_u64().unwrap())
        })
        .collect()
}

struct NeverHeld;

#[async_trait::async_trait]
impl LeaderLease for NeverHeld {
    async fn held(&self) -> bool {
        false
    }
    fn holds(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn retention_deletes_exactly_the_expired_documents_and_the_plan_counts_them_first() {
    let app = TestApp::with_config(retention_on).await;
    let t = app.admin_token().await;
    collection(&app, &t, json!({"name": "own", "retention_days": 10})).await;
    collection(&app, &t, json!({"name": "pii", "pii_fields": ["email"]})).await;
    collection(&app, &t, json!({"name": "plain"})).await;
    collection(&app, &t, json!({"name": "other", "retention_days": 1000})).await;
    // Day 0.
    let own_old = insert(&app, &t, "own", None).await;
    let pii_old = insert(&app, &t, "pii", None).await;
    let subject_old = insert(&app, &t, "plain", Some("sam")).await;
    let plain_old = insert(&app, &t, "plain", None).await;
    let other_old = insert(&app, &t, "other", Some("sam")).await;
    let extra: Vec<String> = futures_all(&app, &t, "own", 3).await;
    // Day 25: documents that stay young enough.
    app.clock.advance_secs(25 * DAY);
    let t = app.admin_token().await;
    let pii_new = insert(&app, &t, "pii", None).await;
    let subject_new = insert(&app, &t, "plain", Some("sam")).await;
    // Day 40: own (10 days) and pii / subject (30 days) from day 0 expired; the plain
    // document (default 60 days) has not, nor has anything in `other` (1000 days).
    app.clock.advance_secs(15 * DAY);
    let t = app.admin_token().await;
    let own_new = insert(&app, &t, "own", None).await;

    let plan = app.core.retention().plan().await.unwrap();
    let row = |c: &str, applies: &str| {
        plan.collections.iter().find(|r| r.collection == c && r.applies_to == applies).cloned().unwrap()
    };
    assert_eq!((row("own", "all").source, row("own", "all").expired), ("collection", 4));
    assert_eq!((row("pii", "all").source, row("pii", "all").expired), ("pii", 1));
    assert_eq!((row("plain", "with_subject").source, row("plain", "with_subject").expired), ("pii", 1));
    assert_eq!((row("plain", "without_subject").source, row("plain", "without_subject").expired), ("default", 0));
    assert_eq!(row("other", "all").expired, 0);
    assert_eq!(row("own", "all").cutoff, Some(rampart_core::Clock::now(&app.clock).minus_seconds(10 * DAY)));
    assert_eq!(plan.total_deletable(), 6);
    assert!(retention_records(&app).await.is_empty(), "the plan changes nothing");

    let deleted = app.core.retention().delete_expired(&SingleNode).await.unwrap();
    assert_eq!(deleted, plan.total_deletable(), "the job deletes what the plan reported");
    for (c, id) in [("own", &own_old), ("pii", &pii_old), ("plain", &subject_old)] {
        assert!(!exists(&app, &t, c, id).await, "{c}/{id} expired and must be gone");
    }
    for id in &extra {
        assert!(!exists(&app, &t, "own", id).await);
    }
    for (c, id) in
        [("own", &own_new), ("pii", &pii_new), ("plain", &subject_new), ("plain", &plain_old), ("other", &other_old)]
    {
        assert!(exists(&app, &t, c, id).await, "{c}/{id} has not expired and must stay");
    }
    // Batches of 2: `own` took two transactions, each with its own record.
    let mut records = retention_records(&app).await;
    records.sort();
    assert_eq!(records, [("own".into(), 2), ("own".into(), 2), ("pii".into(), 1), ("plain".into(), 1)]);
    for r in app.audit_records().await.iter().filter(|r| r.event.event_type == "retention_delete") {
        assert!(!r.event.details.to_string().contains("sam"), "no subject ids in the audit trail");
        assert!(r.event.details["cutoff"].is_string() || r.event.details["cutoff"].is_object());
    }
    assert_eq!(app.core.retention().plan().await.unwrap().total_deletable(), 0);
    assert_eq!(app.core.retention().delete_expired(&SingleNode).await.unwrap(), 0, "a second run finds nothing");

    // Day 61: the plain document's default period has passed too.
    app.clock.advance_secs(21 * DAY);
    let t = app.admin_token().await;
    assert_eq!(app.core.retention().delete_expired(&SingleNode).await.unwrap(), 4);
    assert!(!exists(&app, &t, "plain", &plain_old).await);
    assert!(exists(&app, &t, "other", &other_old).await);
}

async fn del(app: &TestApp, t: &str, path: String) -> rampart_testkit::TestResponse {
    app.call(Method::DELETE, &path, Some(t), None).await
}

async fn futures_all(app: &TestApp, t: &str, c: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(insert(app, t, c, None).await);
    }
    ids
}

#[tokio::test]
async fn nothing_is_deleted_unless_enabled_and_only_on_the_lease_holder() {
    let app = TestApp::with_config(|c| {
        retention_on(c);
        c.retention.auto_delete_expired = false;
    })
    .await;
    let t = app.admin_token().await;
    collection(&app, &t, json!({"name": "own", "retention_days": 1})).await;
    let id = insert(&app, &t, "own", None).await;
    app.clock.advance_secs(2 * DAY);
    let t = app.admin_token().await;
    assert_eq!(app.core.retention().delete_expired(&SingleNode).await.unwrap(), 0, "auto_delete_expired is off");
    assert!(exists(&app, &t, "own", &id).await);

    let app = TestApp::with_config(retention_on).await;
    let t = app.admin_token().await;
    collection(&app, &t, json!({"name": "own", "retention_days": 1})).await;
    let id = insert(&app, &t, "own", None).await;
    app.clock.advance_secs(2 * DAY);
    let t = app.admin_token().await;
    assert_eq!(app.core.retention().delete_expired(&NeverHeld).await.unwrap(), 0, "not the lease holder");
    assert!(exists(&app, &t, "own", &id).await);
    assert!(retention_records(&app).await.is_empty());
    assert_eq!(app.core.retention().delete_expired(&SingleNode).await.unwrap(), 1, "the holder deletes it");
    assert!(!exists(&app, &t, "own", &id).await);
}

#[tokio::test]
async fn legal_holds_block_document_collection_and_retention_deletes_until_released() {
    let app = TestApp::with_config(retention_on).await;
    let t = app.admin_token().await;
    collection(&app, &t, json!({"name": "cases", "retention_days": 1})).await;
    collection(&app, &t, json!({"name": "held", "retention_days": 1})).await;
    let sam = insert(&app, &t, "cases", Some("sam")).await;
    let sam2 = insert(&app, &t, "cases", Some("sam")).await;
    let free = insert(&app, &t, "cases", None).await;
    let boxed = insert(&app, &t, "held", None).await;

    let officer = app.user_with_role("olivia", "privacy_officer").await;
    let res =
        app.post("/api/v1/admin/legal-holds", Some(&officer), json!({"subject_id": "sam", "reason": "case 42"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let subject_hold = res.body["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(res.body["scope"], "subject");
    assert_eq!(res.body["subject_id"], "sam");
    assert_eq!(res.body["reason"], "case 42");
    assert_eq!(res.body["created_by"], "olivia");
    assert_eq!(res.body["active"], true);
    assert!(res.body["created_at"].is_string());
    let res = app.post("/api/v1/admin/legal-holds", Some(&t), json!({"collection": "held", "reason": "audit"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let collection_hold = res.body["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(res.body["collection"], "held");

    // Document and collection deletes are refused, naming the hold.
    let refused = |res: &rampart_testkit::TestResponse, hold: &str| {
        assert_eq!(res.status, StatusCode::CONFLICT, "{:?}", res.body);
        assert_eq!(res.code(), "legal_hold");
        assert!(res.body["error"].as_str().unwrap().contains(hold), "{:?}", res.body);
        assert!(res.body["request_id"].is_string());
    };
    refused(&del(&app, &t, format!("/api/v1/collections/cases/documents/{sam}")).await, &subject_hold);
    refused(&del(&app, &t, format!("/api/v1/collections/held/documents/{boxed}")).await, &collection_hold);
    refused(&del(&app, &t, "/api/v1/collections/held".into()).await, &collection_hold);
    refused(&del(&app, &t, "/api/v1/collections/cases".into()).await, &subject_hold);
    assert_eq!(
        del(&app, &t, format!("/api/v1/collections/cases/documents/{free}")).await.status,
        StatusCode::NO_CONTENT
    );

    // Retention passes the held documents by, and says so in the plan.
    app.clock.advance_secs(2 * DAY);
    let t = app.admin_token().await;
    let officer = app.token("olivia", rampart_testkit::USER_PASSWORD).await;
    let plan = app.core.retention().plan().await.unwrap();
    let cases = plan.collections.iter().find(|r| r.collection == "cases").unwrap();
    assert_eq!((cases.expired, cases.held, cases.deletable), (2, 2, 0));
    assert_eq!(app.core.retention().delete_expired(&SingleNode).await.unwrap(), 0);
    for (c, id) in [("cases", &sam), ("cases", &sam2), ("held", &boxed)] {
        assert!(exists(&app, &t, c, id).await, "held {c}/{id} must stay");
    }

    let list = app.get("/api/v1/admin/legal-holds", Some(&t)).await;
    assert_eq!(list.body["legal_holds"].as_array().unwrap().len(), 2);
    // Release the subject hold: its documents may go again, the collection hold still holds.
    let res =
        app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{subject_hold}"), Some(&officer), None).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["active"], false);
    assert_eq!(res.body["released_by"], "olivia");
    let again = app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{subject_hold}"), Some(&t), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(app.get("/api/v1/admin/legal-holds", Some(&t)).await.body["legal_holds"].as_array().unwrap().len(), 1);
    let all = app.get("/api/v1/admin/legal-holds?include_released=true", Some(&t)).await;
    assert_eq!(all.body["legal_holds"].as_array().unwrap().len(), 2);

    assert_eq!(
        del(&app, &t, format!("/api/v1/collections/cases/documents/{sam}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.core.retention().delete_expired(&SingleNode).await.unwrap(), 1, "sam2 expired and is free");
    assert!(!exists(&app, &t, "cases", &sam2).await);
    assert_eq!(del(&app, &t, "/api/v1/collections/cases".into()).await.status, StatusCode::NO_CONTENT);
    refused(&del(&app, &t, "/api/v1/collections/held".into()).await, &collection_hold);
    let res = app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{collection_hold}"), Some(&t), None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(del(&app, &t, "/api/v1/collections/held".into()).await.status, StatusCode::NO_CONTENT);

    // The audit trail names holds and subject hashes, never the subject id or the reason.
    let records = app.audit_records().await;
    let holds: Vec<_> = records.iter().filter(|r| r.event.event_type.starts_with("legal_hold_")).collect();
    assert_eq!(holds.len(), 4, "two placed, two released");
    for r in &holds {
        let text = r.event.details.to_string();
        assert!(!text.contains("sam") && !text.contains("case 42"), "{text}");
    }
    assert!(holds.iter().any(|r| r.event.details["subject_hash"].is_string()));
}

#[tokio::test]
async fn legal_hold_requests_are_validated_and_need_their_permission() {
    let app = TestApp::new().await;
    let t = app.admin_token().await;
    collection(&app, &t, json!({"name": "c"})).await;
    for (body, field) in [
        (json!({"reason": "x"}), "subject_id"),
        (json!({"subject_id": "a", "collection": "c", "reason": "x"}), "subject_id"),
        (json!({"subject_id": "a"}), "reason"),
        (json!({"subject_id": "a", "reason": "  "}), "reason"),
        (json!({"subject_id": "a", "reason": "line\nbreak"}), "reason"),
        (json!({"collection": "Not A Name!", "reason": "x"}), "collection"),
        (json!({"subject_id": "a", "reason": "x".repeat(1001)}), "reason"),
    ] {
        let res = app.post("/api/v1/admin/legal-holds", Some(&t), body.clone()).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}: {:?}", res.body);
        assert_eq!(res.body["field"], field, "{body}: {:?}", res.body);
    }
    let res = app.post("/api/v1/admin/legal-holds", Some(&t), json!({"collection": "nope", "reason": "x"})).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res =
        app.post("/api/v1/admin/legal-holds", Some(&t), json!({"subject_id": "a", "reason": "x", "extra": 1})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    for bad in ["nope", "hold-zz", "hold-000000000000000000000000"] {
        let res = app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{bad}"), Some(&t), None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{bad}");
    }
    let viewer = app.user_with_role("vic", "viewer").await;
    let res = app.post("/api/v1/admin/legal-holds", Some(&viewer), json!({"subject_id": "a", "reason": "x"})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let auditor = app.user_with_role("aud", "auditor").await;
    assert_eq!(app.get("/api/v1/admin/legal-holds", Some(&auditor)).await.status, StatusCode::FORBIDDEN);
}
