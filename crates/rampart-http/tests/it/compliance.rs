//! Compliance status and the signed SOC 2 evidence report: every control is computed from
//! the live system, so changing the deployment changes the answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use rampart_core::backup::{BackupMeta, BackupVerification, Backups};
use rampart_core::compliance::{report_keys_from_jwks, verify_report, ReportError};
use rampart_core::{BackupService, CoreResult};
use rampart_store::tamper::AuditEdit;
use rampart_testkit::TestApp;
use serde_json::{json, Value};

const DAY: i64 = 86_400;

async fn status(app: &TestApp, token: &str) -> Value {
    let res = app.get("/api/v1/admin/compliance/status", Some(token)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

fn control<'a>(s: &'a Value, framework: &str, id: &str) -> &'a Value {
    s["frameworks"][framework]["controls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{framework} {id} in {s}"))
}

fn state(s: &Value, framework: &str, id: &str) -> String {
    control(s, framework, id)["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_framework_reports_controls_with_evidence_and_a_summary_that_follows_them() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let s = status(&app, &admin).await;
    assert!(s["generated_at"].is_string());
    for (fw, ids) in [
        (
            "hipaa",
            &["164.312(a)(1)", "164.312(a)(2)(iv)", "164.312(b)", "164.312(c)(1)", "164.312(d)", "164.312(e)(1)"][..],
        ),
        ("gdpr", &["art5(1)(f)", "art25", "art30", "art32", "art33"][..]),
        ("ccpa", &["1798.81.5", "1798.150"][..]),
        ("soc2", &["CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC6.7", "A1.2", "C1.1", "C1.2", "PI1.1"][..]),
    ] {
        let controls = s["frameworks"][fw]["controls"].as_array().unwrap();
        for id in ids {
            let c = control(&s, fw, id);
            assert!(["pass", "fail", "not_applicable"].contains(&c["status"].as_str().unwrap()), "{c}");
            assert!(c["title"].is_string() && c["evidence"].as_object().is_some_and(|e| !e.is_empty()), "{c}");
        }
        let count = |st: &str| controls.iter().filter(|c| c["status"] == st).count();
        let summary = &s["frameworks"][fw]["summary"];
        assert_eq!(summary["controls_total"], controls.len());
        assert_eq!(summary["controls_met"], count("pass"));
        assert_eq!(summary["status"], if count("fail") == 0 { "compliant" } else { "non_compliant" });
    }
    // A fresh deployment has never verified a backup: that is a failure, not a pass.
    assert_eq!(state(&s, "soc2", "A1.2"), "fail");
    assert_eq!(s["frameworks"]["soc2"]["summary"]["status"], "non_compliant");

    let viewer = app.user_with_role("looker", "viewer").await;
    let res = app.get("/api/v1/admin/compliance/status", Some(&viewer)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/admin/compliance/status", None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn transmission_security_fails_when_served_without_tls() {
    let tls = TestApp::new().await;
    let s = status(&tls, &tls.admin_token().await).await;
    assert_eq!(state(&s, "hipaa", "164.312(e)(1)"), "pass");
    assert_eq!(control(&s, "hipaa", "164.312(e)(1)")["evidence"]["tls"]["tls_enabled"], true);

    let plain = TestApp::with_config(|c| c.server.insecure_http = true).await;
    let s = status(&plain, &plain.admin_token().await).await;
    assert_eq!(state(&s, "hipaa", "164.312(e)(1)"), "fail");
    assert_eq!(control(&s, "hipaa", "164.312(e)(1)")["evidence"]["tls"]["insecure_http"], true);
    assert_eq!(s["frameworks"]["hipaa"]["summary"]["status"], "non_compliant");
    for (fw, id) in [("soc2", "CC6.7"), ("soc2", "CC6.6"), ("gdpr", "art32"), ("ccpa", "1798.81.5")] {
        assert_eq!(state(&s, fw, id), "fail", "{fw} {id}");
    }
}

#[tokio::test]
async fn admin_mfa_fails_naming_each_admin_without_it_until_all_have_it() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let ops = app.user_with_role("ops", "admin").await;
    app.user_with_role("reader", "viewer").await;
    let without = |s: &Value| control(s, "hipaa", "164.312(d)")["evidence"]["admin_mfa"]["admins_without_mfa"].clone();

    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(d)"), "fail");
    assert_eq!(without(&s), json!(["admin", "ops"]), "viewers are not admins");

    crate::mfa::enrol(&app, &ops).await;
    let s = status(&app, &admin).await;
    assert_eq!((state(&s, "hipaa", "164.312(d)"), without(&s)), ("fail".to_owned(), json!(["admin"])));

    let (_, _, admin) = crate::mfa::enrol(&app, &admin).await;
    let s = status(&app, &admin).await;
    assert_eq!((state(&s, "hipaa", "164.312(d)"), without(&s)), ("pass".to_owned(), json!([])));
    assert_eq!(state(&s, "soc2", "CC6.2"), "pass");
}

/// A `Backups` adapter with one backup whose verification result the test sets; the
/// `BackupService` over it is the one the API uses, and records what it records.
struct OneBackup(AtomicBool);

#[async_trait::async_trait]
impl Backups for OneBackup {
    async fn create(&self, _: bool, _: Option<String>) -> CoreResult<BackupMeta> {
        Err(rampart_core::CoreError::NotFound("backup service"))
    }
    async fn list(&self) -> CoreResult<Vec<BackupMeta>> {
        Ok(Vec::new())
    }
    async fn verify(&self, id: &str) -> CoreResult<BackupVerification> {
        let valid = self.0.load(Ordering::SeqCst);
        Ok(BackupVerification {
            backup_id: id.to_owned(),
            valid,
            reason: (!valid).then(|| "chunk 3 fails authentication".to_owned()),
            documents: Some(0),
        })
    }
}

#[tokio::test]
async fn backup_control_needs_a_successful_verification_within_seven_days() {
    let app = TestApp::new().await;
    let adapter = Arc::new(OneBackup(AtomicBool::new(true)));
    let backups = BackupService::new(adapter.clone(), app.core.events().clone());
    let read = app.core.authorize_local::<rampart_core::perm::BackupRead>().await.unwrap();
    let evidence = |s: &Value| control(s, "soc2", "A1.2")["evidence"]["backup_verified"].clone();

    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "soc2", "A1.2"), "fail");
    assert!(evidence(&s)["last_verified_at"].is_null());

    backups.verify_backup(&read, "backup-2026-01-01-000000").await.unwrap();
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "soc2", "A1.2"), "pass");
    assert_eq!(state(&s, "hipaa", "164.308(a)(7)(ii)(A)"), "pass");
    assert_eq!(evidence(&s)["backup_id"], "backup-2026-01-01-000000");

    app.clock.advance_secs(8 * DAY);
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "soc2", "A1.2"), "fail", "{}", evidence(&s));
    assert_eq!(evidence(&s)["age_days"], 8);

    // A failed verification does not count.
    adapter.0.store(false, Ordering::SeqCst);
    backups.verify_backup(&read, "backup-2026-01-01-000000").await.unwrap();
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "soc2", "A1.2"), "fail");
    assert!(evidence(&s)["last_failed_verification_at"].is_string());

    adapter.0.store(true, Ordering::SeqCst);
    backups.verify_backup(&read, "backup-2026-01-09-000000").await.unwrap();
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "soc2", "A1.2"), "pass");
    assert_eq!(evidence(&s)["age_days"], 0);
}

#[tokio::test]
async fn backup_encryption_session_timeout_and_rate_limits_follow_the_configuration() {
    let strict = TestApp::new().await;
    let s = status(&strict, &strict.admin_token().await).await;
    assert_eq!(
        (state(&s, "soc2", "CC6.3"), state(&s, "hipaa", "164.312(a)(1)")),
        ("pass".to_owned(), "pass".to_owned())
    );
    assert_eq!(control(&s, "soc2", "CC6.7")["evidence"]["backup_encryption"]["backup_encryption"], "required");
    assert_eq!(control(&s, "soc2", "CC6.6")["evidence"]["rate_limiting"]["enabled"], true);

    let lax = TestApp::with_config(|c| {
        c.auth.session_timeout_minutes = 45;
        c.backup.encryption_required = false;
        c.rate_limit.enabled = false;
    })
    .await;
    let s = status(&lax, &lax.admin_token().await).await;
    let timeout = &control(&s, "hipaa", "164.312(a)(1)")["evidence"]["session_timeout"];
    assert_eq!(
        (timeout["idle_timeout_minutes"].as_i64(), timeout["max_idle_timeout_minutes"].as_i64()),
        (Some(45), Some(30))
    );
    assert_eq!(state(&s, "hipaa", "164.312(a)(1)"), "fail");
    assert_eq!(state(&s, "soc2", "CC6.7"), "fail", "unencrypted backups allowed");
    assert_eq!(control(&s, "soc2", "CC6.6")["evidence"]["rate_limiting"]["enabled"], false);
    assert_eq!(state(&s, "soc2", "CC6.6"), "fail");
}

#[tokio::test]
async fn encryption_at_rest_lists_the_unencrypted_collections() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let s = status(&app, &admin).await;
    let check = |s: &Value| control(s, "soc2", "C1.1")["evidence"]["encryption_at_rest"]["status"].clone();
    assert_eq!(check(&s), "not_applicable", "nothing stored yet");
    assert_eq!(state(&s, "soc2", "C1.1"), "pass", "key rotation, the control's other check, passes");

    app.post("/api/v1/collections", Some(&admin), json!({"name": "patients"})).await;
    let s = status(&app, &admin).await;
    assert_eq!((state(&s, "soc2", "C1.1"), check(&s)), ("pass".to_owned(), json!("pass")));

    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "public", "encrypted": false})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    let s = status(&app, &admin).await;
    assert_eq!((state(&s, "soc2", "C1.1"), check(&s)), ("fail".to_owned(), json!("fail")));
    assert_eq!(state(&s, "hipaa", "164.312(a)(2)(iv)"), "fail");
    assert_eq!(
        control(&s, "soc2", "C1.1")["evidence"]["encryption_at_rest"]["unencrypted_collections"],
        json!(["public"])
    );
}

#[tokio::test]
async fn key_rotation_fails_when_overdue_and_passes_after_a_rotation() {
    let app = TestApp::new().await;
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(control(&s, "soc2", "CC6.1")["evidence"]["key_rotation"]["status"], "pass");
    assert_eq!(control(&s, "soc2", "CC6.1")["evidence"]["key_rotation"]["age_days"], 0);
    assert_eq!(state(&s, "hipaa", "164.312(a)(2)(iv)"), "pass");

    app.clock.advance_secs(91 * DAY);
    let admin = app.admin_token().await;
    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(a)(2)(iv)"), "fail");
    assert_eq!(control(&s, "soc2", "CC6.1")["evidence"]["key_rotation"]["age_days"], 91);

    let res = app.post("/api/v1/admin/keys/rotate", Some(&admin), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(a)(2)(iv)"), "pass");
}

#[tokio::test]
async fn audit_integrity_follows_recorded_verifications_and_the_chain_anchor() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(c)(1)"), "fail", "never verified");
    assert_eq!(state(&s, "hipaa", "164.312(b)"), "pass");

    assert_eq!(app.get("/api/v1/admin/audit/verify", Some(&admin)).await.body["valid"], true);
    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(c)(1)"), "pass");
    let recorded = app.audit_records().await;
    let verify = recorded.iter().rev().find(|r| r.event.event_type == "audit_verify").expect("recorded");
    assert!(verify.event.success && verify.event.details["records"].as_u64().unwrap() > 0);

    app.clock.advance_secs(8 * DAY);
    let admin = app.admin_token().await;
    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(c)(1)"), "fail", "the last verification is too old");

    // A record changed behind the store's back: the next verification fails, and says so.
    app.tamper().edit_audit(&AuditEdit::ChangeDetails(2));
    assert_eq!(app.get("/api/v1/admin/audit/verify", Some(&admin)).await.body["valid"], false);
    let s = status(&app, &admin).await;
    let evidence = &control(&s, "hipaa", "164.312(c)(1)")["evidence"]["audit_integrity"];
    assert_eq!(
        (state(&s, "hipaa", "164.312(c)(1)"), evidence["last_result_valid"].clone()),
        ("fail".to_owned(), json!(false))
    );

    // A cut tail: the store refuses new records, so audit controls fail at once.
    let fresh = TestApp::new().await;
    let admin = fresh.admin_token().await;
    fresh.get("/api/v1/admin/audit/verify", Some(&admin)).await;
    assert_eq!(state(&status(&fresh, &admin).await, "hipaa", "164.312(b)"), "pass");
    let last = fresh.audit_records().await.last().unwrap().seq;
    fresh.tamper().edit_audit(&AuditEdit::TruncateFrom(last));
    let s = status(&fresh, &admin).await;
    assert_eq!(state(&s, "hipaa", "164.312(b)"), "fail");
    assert_eq!(state(&s, "hipaa", "164.312(c)(1)"), "fail");
    assert!(control(&s, "hipaa", "164.312(b)")["evidence"]["audit_logging"]["anchor_problem"].is_string());
}

async fn report(app: &TestApp, token: &str, query: &str) -> Value {
    let res = app.get(&format!("/api/v1/admin/compliance/soc2-report{query}"), Some(token)).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    res.body
}

#[tokio::test]
async fn the_soc2_report_verifies_with_the_published_key_and_any_change_breaks_it() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "public", "encrypted": false})).await;
    app.user_with_role("auditor1", "auditor").await;
    let signed = report(&app, &admin, "?days=30").await;
    let r = &signed["report"];
    assert_eq!(r["period"]["days"], 30);
    assert!(r["generated_at"].is_string() && r["node_id"].is_string() && r["instance_id"].is_string());
    let users = r["access_control"]["users"].as_array().unwrap();
    let auditor = users.iter().find(|u| u["username"] == "auditor1").unwrap();
    assert_eq!((auditor["role"].as_str(), auditor["mfa_enabled"].as_bool()), (Some("auditor"), Some(false)));
    assert!(r["access_control"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "admin" && x["permissions"].as_array().unwrap().len() > 10));
    assert!(r["configuration_changes"]["user_create"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["details"].to_string().contains("auditor1")));
    assert!(r["configuration_changes"]["key_rotate"]["count"].as_u64().unwrap() >= 1);
    assert_eq!(r["encryption"]["collections"], json!([{"name": "public", "encrypted": false}]));
    assert_eq!(r["audit_verification"]["valid"], true, "a fresh verification");
    assert_eq!(r["compliance_status"]["frameworks"]["soc2"]["summary"]["status"], "non_compliant");
    assert!(r["security_events"]["alerts_by_severity"].is_object());
    assert!(r["backup_verification_log"]["backup_verify"]["records"].is_array());

    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    let keys = report_keys_from_jwks(&jwks);
    assert_eq!(keys.len(), 1, "exactly the report key: {jwks}");
    let kid = signed["signature"]["kid"].as_str().unwrap();
    assert_eq!(keys[0].kid, kid);
    let entry = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap();
    assert_eq!((entry["use"].as_str(), entry["alg"].as_str()), (Some("sig"), Some("EdDSA")));
    assert!(kid.starts_with("report-"));
    assert_eq!(verify_report(&signed, &keys), Ok(kid.to_owned()));

    // One value changed: a failed MFA flag turned true, a period stretched.
    let mut tampered = signed.clone();
    let users = tampered["report"]["access_control"]["users"].as_array_mut().unwrap();
    users.iter_mut().find(|u| u["username"] == "auditor1").unwrap()["mfa_enabled"] = json!(true);
    assert_eq!(verify_report(&tampered, &keys), Err(ReportError::BadSignature));
    let mut tampered = signed.clone();
    tampered["report"]["period"]["days"] = json!(31);
    assert_eq!(verify_report(&tampered, &keys), Err(ReportError::BadSignature));
    // An unknown kid, and a report carrying its own key, anchor nothing.
    let mut other = signed.clone();
    other["signature"]["kid"] = json!("report-0000000000000000");
    assert!(matches!(verify_report(&other, &keys), Err(ReportError::UnknownKey(_))));
    let mut embedded = signed.clone();
    embedded["report"]["jwks"] = jwks.clone();
    assert_eq!(verify_report(&embedded, &[]), Err(ReportError::UnknownKey(kid.to_owned())));
    assert!(matches!(verify_report(&json!({"report": 1}), &keys), Err(ReportError::Malformed(_))));

    // Another deployment's report key does not verify this report.
    let elsewhere = TestApp::new().await;
    let their_keys = report_keys_from_jwks(&elsewhere.get("/.well-known/jwks.json", None).await.body);
    assert_ne!(their_keys[0].kid, kid);
    let mut as_theirs = signed.clone();
    as_theirs["signature"]["kid"] = json!(their_keys[0].kid);
    assert_eq!(verify_report(&as_theirs, &their_keys), Err(ReportError::BadSignature));

    // Generation is audited with the digest of what was signed, and the verification it ran.
    let records = app.audit_records().await;
    let made = records.iter().rev().find(|r| r.event.event_type == "compliance_report").expect("audited");
    assert_eq!(made.event.details["kid"], kid);
    assert_eq!(made.event.details["report_id"], r["report_id"]);
    assert_eq!(made.event.details["sha256"].as_str().unwrap().len(), 64);
    assert!(records.iter().any(|r| r.event.event_type == "audit_verify" && r.event.success));
}

#[tokio::test]
async fn the_report_key_is_stable_across_restarts_and_periods_are_bounded() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let first = report(&app, &admin, "").await;
    assert_eq!(first["report"]["period"]["days"], 90, "the default period");
    for bad in ["?days=0", "?days=367", "?days=abc", "?days=-1", "?weeks=2"] {
        let res = app.get(&format!("/api/v1/admin/compliance/soc2-report{bad}"), Some(&admin)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", res.body);
        assert!(res.body["code"].is_string() && res.body["request_id"].is_string(), "{:?}", res.body);
    }
    let viewer = app.user_with_role("looker", "viewer").await;
    let res = app.get("/api/v1/admin/compliance/soc2-report", Some(&viewer)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let auditor = app.user_with_role("aud", "auditor").await;
    assert_eq!(app.get("/api/v1/admin/compliance/soc2-report?days=7", Some(&auditor)).await.status, StatusCode::OK);

    let app = app.restart().await;
    let keys = report_keys_from_jwks(&app.get("/.well-known/jwks.json", None).await.body);
    assert_eq!(verify_report(&first, &keys), Ok(first["signature"]["kid"].as_str().unwrap().to_owned()));
}

#[tokio::test]
async fn the_report_key_never_verifies_a_jwt() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let signed = report(&app, &admin, "?days=1").await;
    let minted = app.post("/api/v1/auth/token", Some(&admin), json!({"audience": "billing"})).await;
    let jwt = minted.body["token"].as_str().unwrap().to_owned();
    let jwks = app.get("/.well-known/jwks.json", None).await.body;
    let report_kid = signed["signature"]["kid"].as_str().unwrap();
    let report_jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == report_kid).unwrap();
    assert!(jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kid"] != report_kid)
        .all(|k| !k["kid"].as_str().unwrap().starts_with("report-")));
    let report_key = DecodingKey::from_ed_components(report_jwk["x"].as_str().unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_audience(&["billing"]);
    v.validate_exp = false;
    // A real token fails against the report key, as a verifier following the JWKS by kid
    // would use it for a token naming the report kid.
    assert!(decode::<Value>(&jwt, &report_key, &v).is_err());
    // The report key's only signatures are over reports: put one on a JWT that names the
    // report kid, and a standard JWT verifier refuses it.
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(json!({"alg": "EdDSA", "typ": "JWT", "kid": report_kid}).to_string().as_bytes());
    let claims = b64(json!({"sub": "admin", "aud": "billing", "roles": ["admin"]}).to_string().as_bytes());
    let forged = format!("{header}.{claims}.{}", signed["signature"]["value"].as_str().unwrap());
    assert!(decode::<Value>(&forged, &report_key, &v).is_err());
    // And the JWT key does not verify a report.
    let jwt_kid = minted.body["kid"].as_str().unwrap();
    let jwt_jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == jwt_kid).unwrap();
    let as_report = rampart_core::compliance::ReportKey {
        kid: report_kid.to_owned(),
        public_key: base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt_jwk["x"].as_str().unwrap()).unwrap(),
    };
    assert_eq!(verify_report(&signed, &[as_report]), Err(ReportError::BadSignature));
}

#[tokio::test]
async fn breach_response_fails_on_a_high_alert_left_open_past_72_hours() {
    use rampart_core::security::{Detection, Severity};
    let app = TestApp::new().await;
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "gdpr", "art33"), "pass");
    app.core
        .detection()
        .raise(Detection {
            breach_type: "privilege_escalation",
            severity: Severity::Critical,
            dedup: "compliance-test".into(),
            details: json!({}),
            ip: None,
            user: None,
            revoke_sessions: false,
            block_source: false,
        })
        .await
        .unwrap();
    let s = status(&app, &app.admin_token().await).await;
    assert_eq!(state(&s, "gdpr", "art33"), "pass", "open, but within 72 hours");

    app.clock.advance_secs(73 * 3600);
    let admin = app.admin_token().await;
    let s = status(&app, &admin).await;
    assert_eq!(state(&s, "gdpr", "art33"), "fail");
    let overdue = &control(&s, "gdpr", "art33")["evidence"]["breach_response"]["overdue_high_or_critical_alerts"];
    assert_eq!(overdue[0]["breach_type"], "privilege_escalation", "{overdue}");
    let id = overdue[0]["id"].as_str().unwrap().to_owned();
    let res = app.post(&format!("/api/v1/admin/security/alerts/{id}/acknowledge"), Some(&admin), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(state(&status(&app, &admin).await, "gdpr", "art33"), "pass");

    let off = TestApp::with_config(|c| {
        c.breach.enabled = false;
        c.backup.key_backup_retention_days = 90;
    })
    .await;
    let s = status(&off, &off.admin_token().await).await;
    assert_eq!(state(&s, "gdpr", "art33"), "fail", "no breach detection");
    assert_eq!(state(&s, "soc2", "C1.2"), "fail", "keys of erased subjects kept 90 days in key backups");
    assert_eq!(control(&s, "soc2", "C1.2")["evidence"]["key_backup_retention"]["key_backup_retention_days"], 90);
}
