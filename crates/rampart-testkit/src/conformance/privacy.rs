//! Data-subject rights: verification tokens spent once inside the request's own
//! transaction, erasure of every row of a subject, consent and opt-out histories, and
//! request status that follows the provider notices in the outbox.

use std::sync::Arc;

use rampart_store::{
    ConsentRecord, OptOutRecord, OutboxItem, PrivacyCounts, PrivacyRequest, Store, StoreError, Verification,
    VerificationRecord, MAX_OPT_OUTS,
};
use rampart_types::SubjectId;

use super::keys::collection;
use super::{doc, erasure_of, erasure_with, ev, t, TestChainer};

fn token(n: u8, subject_hash: &str, expires: i64) -> VerificationRecord {
    VerificationRecord {
        token_hash: [n; 32],
        subject_hash: subject_hash.into(),
        issued_by: "po".into(),
        issued_at: t(0),
        expires_at: t(expires),
    }
}

fn consent(id: &str, subject_hash: &str, purpose: &str, granted: bool, at: i64) -> ConsentRecord {
    ConsentRecord {
        consent_id: id.into(),
        subject_hash: subject_hash.into(),
        purpose: purpose.into(),
        granted,
        given_at: t(at),
        recorded_at: t(at + 1),
        recorded_by: "po".into(),
    }
}

fn opt_out(id: &str, subject_hash: &str, kind: &str, date: &str) -> OptOutRecord {
    OptOutRecord {
        opt_out_id: id.into(),
        subject_hash: subject_hash.into(),
        opt_out_type: kind.into(),
        effective_date: date.into(),
        confirmation_number: format!("CCPA-{id}"),
        created_at: t(5),
        created_by: "po".into(),
    }
}

fn export_request(id: &str, subject_hash: &str, at: i64) -> PrivacyRequest {
    PrivacyRequest {
        request_id: id.into(),
        kind: "gdpr_export".into(),
        subject_hash: subject_hash.into(),
        requested_by: "po".into(),
        requested_at: t(at),
        records_deleted: 0,
        providers: vec![],
        status: String::new(),
        completed_at: None,
    }
}

/// A token is spent once, only for its subject, only before it expires, and only
/// together with the request it authorises; a refused spend records nothing.
pub async fn verification_tokens(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    s.issue_verification(token(1, "h1", 1_000), vec![ev("issue")]).await.unwrap();
    s.issue_verification(token(2, "h1", 1_000), vec![]).await.unwrap();
    let dup = s.issue_verification(token(1, "h2", 1_000), vec![]).await;
    assert!(dup.is_err(), "a token hash is unique: {dup:?}");

    let spend = |n: u8, h: &str, at: i64, id: &str| {
        s.spend_verification(Verification::Token([n; 32]), export_request(id, h, at), vec![ev("export")])
    };
    assert!(matches!(spend(1, "h2", 10, "x1").await, Err(StoreError::VerificationInvalid)), "another subject's token");
    assert!(matches!(spend(9, "h1", 10, "x2").await, Err(StoreError::VerificationInvalid)), "an unknown token");
    assert!(matches!(spend(1, "h1", 1_000, "x3").await, Err(StoreError::VerificationInvalid)), "expired at its time");
    assert!(s.privacy_request("x1").await.unwrap().is_none(), "a refused spend records no request");
    spend(1, "h1", 999, "x4").await.unwrap();
    assert!(matches!(spend(1, "h1", 999, "x5").await, Err(StoreError::VerificationInvalid)), "single use");
    let done = s.privacy_request("x4").await.unwrap().unwrap();
    assert_eq!(
        (done.status.as_str(), done.completed_at, done.kind.as_str()),
        ("completed", Some(t(999)), "gdpr_export")
    );
    let counts = s.privacy_counts(t(10), "1970-01-01").await.unwrap();
    assert_eq!(counts.open_verifications, 1, "token 2 is still open");
    assert_eq!(s.privacy_counts(t(1_000), "1970-01-01").await.unwrap().open_verifications, 0, "expired");

    // Two requests racing for one token: exactly one is authorised.
    s.issue_verification(token(3, "h3", 1_000), vec![]).await.unwrap();
    let a = s.erase_subject(
        erasure_with(&SubjectId::parse("s3").unwrap(), "h3", t(20), Verification::Token([3; 32])),
        vec![],
    );
    let b = s.spend_verification(Verification::Token([3; 32]), export_request("x6", "h3", 20), vec![]);
    let (a, b) = tokio::join!(a, b);
    assert!(a.is_ok() != b.is_ok(), "one spend wins: {a:?} {b:?}");
}

/// Erasure removes the subject's documents, consent, opt-outs and tokens, keeps everyone
/// else's, records the request and queues its notices; a bad token erases nothing.
pub async fn subject_rights(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    for c in ["a", "b"] {
        s.create_collection(collection(c), vec![]).await.unwrap();
    }
    for (c, id, subj) in [("a", "d1", "s1"), ("a", "d2", "s2"), ("b", "d3", "s1"), ("b", "d4", "s1")] {
        s.insert_document(doc(c, id, Some(subj), b"x"), vec![], vec![]).await.unwrap();
    }
    let s1 = SubjectId::parse("s1").unwrap();
    let page = s.subject_documents(&s1, 0, 2).await.unwrap();
    let ids: Vec<_> = page.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(ids, ["d1", "d3"], "seq order, limited");
    let rest = s.subject_documents(&s1, page[1].seq, 10).await.unwrap();
    assert_eq!(rest.iter().map(|d| d.id.to_string()).collect::<Vec<_>>(), ["d4"]);
    let per: Vec<_> = s.subject_collections(&s1).await.unwrap().into_iter().map(|(c, n)| (c.to_string(), n)).collect();
    assert_eq!(per, [("a".to_owned(), 1), ("b".to_owned(), 2)]);

    s.record_consent(consent("c1", "h1", "marketing", true, 10), vec![ev("consent")]).await.unwrap();
    s.record_consent(consent("c2", "h1", "marketing", false, 20), vec![]).await.unwrap();
    s.record_consent(consent("c3", "h2", "research", true, 30), vec![]).await.unwrap();
    let history = s.consent_history("h1").await.unwrap();
    assert_eq!(history, [consent("c1", "h1", "marketing", true, 10), consent("c2", "h1", "marketing", false, 20)]);
    s.record_opt_out(opt_out("o1", "h1", "do_not_sell", "1970-01-01"), vec![]).await.unwrap();
    s.record_opt_out(opt_out("o2", "h2", "do_not_sell", "2999-01-01"), vec![]).await.unwrap();
    s.record_opt_out(opt_out("o3", "h2", "do_not_share", "1970-01-01"), vec![]).await.unwrap();
    assert_eq!(s.opt_outs("h1").await.unwrap(), [opt_out("o1", "h1", "do_not_sell", "1970-01-01")]);
    let counts = s.privacy_counts(t(0), "2000-01-01").await.unwrap();
    assert_eq!((counts.do_not_sell, counts.consent_records), (1, 3), "o2 is not effective yet; o3 is not do_not_sell");
    s.issue_verification(token(7, "h1", 10_000), vec![]).await.unwrap();

    let refused =
        s.erase_subject(erasure_with(&s1, "h1", t(50), Verification::Token([8; 32])), vec![ev("erase")]).await;
    assert!(matches!(refused, Err(StoreError::VerificationInvalid)), "{refused:?}");
    assert_eq!(s.count_subject_documents(&s1).await.unwrap(), 3, "nothing erased");
    assert_eq!(s.consent_history("h1").await.unwrap().len(), 2);

    let mut e = erasure_with(&s1, "h1", t(60), Verification::Token([7; 32]));
    e.request.providers = vec!["crm".into()];
    let notice = |endpoint: &str| OutboxItem {
        event_id: e.request.request_id.clone(),
        endpoint: endpoint.into(),
        payload: r#"{"subject_id":"s1"}"#.into(),
        attempts: 0,
        next_attempt_at: t(60),
    };
    e.notices = vec![notice("https://crm.example/a"), notice("https://crm.example/b")];
    let id = e.request.request_id.clone();
    assert!(!s.is_erased("h1").await.unwrap());
    assert_eq!(s.erase_subject(e, vec![ev("erase")]).await.unwrap(), 3);
    assert!(s.is_erased("h1").await.unwrap() && !s.is_erased("h2").await.unwrap());
    assert_eq!(s.count_subject_documents(&s1).await.unwrap(), 0);
    assert!(s.consent_history("h1").await.unwrap().is_empty() && s.opt_outs("h1").await.unwrap().is_empty());
    assert_eq!(s.consent_history("h2").await.unwrap().len(), 1, "another subject's consent stays");
    assert_eq!(s.opt_outs("h2").await.unwrap().len(), 2);
    assert_eq!(s.subject_documents(&SubjectId::parse("s2").unwrap(), 0, 10).await.unwrap().len(), 1);
    let counts = s.privacy_counts(t(61), "2000-01-01").await.unwrap();
    assert_eq!(
        counts,
        PrivacyCounts {
            open_verifications: 0,
            processing_requests: 1,
            oldest_processing_at: Some(t(60)),
            completed_requests: 0,
            erased_subjects: 1,
            do_not_sell: 0,
            consent_records: 1
        },
        "the subject's token went with it"
    );

    let r = s.privacy_request(&id).await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.records_deleted, r.completed_at), ("processing", 3, None));
    assert_eq!(r.providers, ["crm"]);
    s.webhook_delivered(&id, "https://crm.example/a", t(70)).await.unwrap();
    assert_eq!(s.privacy_request(&id).await.unwrap().unwrap().status, "processing", "one provider still waits");
    s.webhook_delivered(&id, "https://crm.example/b", t(80)).await.unwrap();
    let r = s.privacy_request(&id).await.unwrap().unwrap();
    assert_eq!((r.status.as_str(), r.completed_at), ("completed", Some(t(80))));

    // An erasure by override needs no token; the ledger has both.
    s.erase_subject(erasure_of(&SubjectId::parse("s2").unwrap(), "h2", t(90)), vec![]).await.unwrap();
    let ledger: Vec<_> = s.erasure_ledger().await.unwrap().into_iter().map(|e| e.subject_hash).collect();
    assert_eq!(ledger, ["h1", "h2"]);
    assert!(s.opt_outs("h2").await.unwrap().is_empty());
}

/// A subject's opt-out history is bounded; the bound refuses without recording.
pub async fn opt_out_bound(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    for i in 0..MAX_OPT_OUTS {
        s.record_opt_out(opt_out(&format!("o{i}"), "h1", "do_not_sell", "1970-01-01"), vec![]).await.unwrap();
    }
    let full = s.record_opt_out(opt_out("over", "h1", "do_not_sell", "1970-01-01"), vec![ev("x")]).await;
    assert!(matches!(full, Err(StoreError::LimitReached(_))), "{full:?}");
    s.record_opt_out(opt_out("other", "h2", "do_not_sell", "1970-01-01"), vec![]).await.unwrap();
}

/// An active legal hold on the subject, or on a collection holding its records, refuses the
/// erasure in its own transaction and spends nothing; once released, the erasure goes through
/// and the released holds keep only the subject's keyed hash.
pub async fn erasure_respects_legal_holds(s: &dyn Store) {
    use rampart_store::{HoldScope, LegalHold};
    use rampart_types::HoldId;
    s.set_audit_chainer(Arc::new(TestChainer));
    for c in ["a", "b"] {
        s.create_collection(collection(c), vec![]).await.unwrap();
    }
    s.insert_document(doc("a", "d1", Some("s1"), b"x"), vec![], vec![]).await.unwrap();
    s.insert_document(doc("b", "d2", Some("s2"), b"x"), vec![], vec![]).await.unwrap();
    let hold = |id: &str, scope: HoldScope, target: &str| LegalHold {
        id: HoldId::from_stored(id.into()),
        scope,
        target: target.into(),
        reason: "litigation".into(),
        created_by: "po".into(),
        created_at: t(1),
        released_at: None,
        released_by: None,
    };
    s.place_legal_hold(hold("hold-s1", HoldScope::Subject, "s1"), vec![]).await.unwrap();
    s.place_legal_hold(hold("hold-b", HoldScope::Collection, "b"), vec![]).await.unwrap();
    s.issue_verification(token(1, "h1", 1_000), vec![]).await.unwrap();
    let s1 = SubjectId::parse("s1").unwrap();
    let refused = s.erase_subject(erasure_with(&s1, "h1", t(10), Verification::Token([1; 32])), vec![ev("x")]).await;
    assert!(matches!(&refused, Err(StoreError::LegalHold(id)) if id.as_str() == "hold-s1"), "{refused:?}");
    let s2 = SubjectId::parse("s2").unwrap();
    let refused = s.erase_subject(erasure_of(&s2, "h2", t(10)), vec![]).await;
    assert!(
        matches!(&refused, Err(StoreError::LegalHold(id)) if id.as_str() == "hold-b"),
        "a collection hold: {refused:?}"
    );
    assert_eq!(s.count_subject_documents(&s1).await.unwrap() + s.count_subject_documents(&s2).await.unwrap(), 2);
    assert!(s.erasure_ledger().await.unwrap().is_empty());

    s.release_legal_hold(&HoldId::from_stored("hold-s1".into()), "po", t(20), vec![]).await.unwrap();
    let n = s.erase_subject(erasure_with(&s1, "h1", t(30), Verification::Token([1; 32])), vec![]).await.unwrap();
    assert_eq!(n, 1, "the token was not spent by the refused attempt");
    let released = s.get_legal_hold(&HoldId::from_stored("hold-s1".into())).await.unwrap().unwrap();
    assert_eq!(released.target, "erased:h1", "the released hold keeps the keyed hash, not the id");
}
