//! Legal holds and retention deletion (`RetentionStore`), and the holds' effect on every
//! deleting method.

use rampart_store::{
    CollectionRecord, DocumentQuery, DocumentRecord, HoldScope, LegalHold, RetentionRule, Store, StoreError,
};
use rampart_types::{CollectionName, DocumentId, FieldPath, HoldId, Timestamp};

use super::{audit_tail, audited_since, doc, entry, ev, t, TestChainer};

fn chained(s: &dyn Store) {
    s.set_audit_chainer(std::sync::Arc::new(TestChainer));
}

const DAY: i64 = 86_400_000;

fn coll(name: &str, pii: bool, retention_days: Option<u32>) -> CollectionRecord {
    CollectionRecord {
        name: CollectionName::parse(name).unwrap(),
        indexes: vec![FieldPath::parse("f").unwrap()],
        pii_fields: if pii { vec![FieldPath::parse("email").unwrap()] } else { vec![] },
        retention_days,
        encrypted: true,
        created_at: t(0),
        updated_at: t(0),
    }
}

/// A document created `age_days` before `t(100 * DAY)`.
fn aged(c: &str, id: &str, subject: Option<&str>, age_days: i64) -> DocumentRecord {
    let at = t(100 * DAY - age_days * DAY);
    DocumentRecord { created_at: at, updated_at: at, ..doc(c, id, subject, b"x") }
}

fn now() -> Timestamp {
    t(100 * DAY)
}

fn hold(id: &str, scope: HoldScope, target: &str) -> LegalHold {
    LegalHold {
        id: HoldId::from_stored(id.to_owned()),
        scope,
        target: target.to_owned(),
        reason: "litigation".to_owned(),
        created_by: "officer".to_owned(),
        created_at: t(1),
        released_at: None,
        released_by: None,
    }
}

fn cname(s: &str) -> CollectionName {
    CollectionName::parse(s).unwrap()
}

fn did(s: &str) -> DocumentId {
    DocumentId::parse(s).unwrap()
}

async fn ids(s: &dyn Store, c: &str) -> Vec<String> {
    let q = DocumentQuery { collection: cname(c), filters: vec![], subject_id: None, after_seq: None, limit: 1000 };
    let mut v: Vec<String> = s.query_documents(q).await.unwrap().into_iter().map(|d| d.id.to_string()).collect();
    v.sort();
    v
}

/// Holds are placed, listed, read and released once, each change with its audit record;
/// a collection hold needs its collection; a refused change records nothing.
pub async fn legal_holds(s: &dyn Store) {
    chained(s);
    s.create_collection(coll("cases", false, None), vec![]).await.unwrap();
    audited!(
        s,
        ["hold_place"],
        s.place_legal_hold(hold("hold-1", HoldScope::Subject, "alice"), vec![ev("hold_place")]).await.unwrap()
    );
    audited!(
        s,
        ["hold_place"],
        s.place_legal_hold(hold("hold-2", HoldScope::Collection, "cases"), vec![ev("hold_place")]).await.unwrap()
    );
    let missing = s.place_legal_hold(hold("hold-3", HoldScope::Collection, "nope"), vec![ev("hold_place")]);
    audited!(s, [], assert!(matches!(missing.await, Err(StoreError::NotFound))));
    let dup = s.place_legal_hold(hold("hold-1", HoldScope::Subject, "bob"), vec![ev("hold_place")]);
    audited!(s, [], assert!(matches!(dup.await, Err(StoreError::AlreadyExists))));
    let active = s.list_legal_holds(false).await.unwrap();
    assert_eq!(active.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["hold-1", "hold-2"]);
    assert_eq!(active[0], hold("hold-1", HoldScope::Subject, "alice"));
    assert!(active.iter().all(LegalHold::active));
    let id = HoldId::from_stored("hold-1".to_owned());
    let released = audited!(
        s,
        ["hold_release"],
        s.release_legal_hold(&id, "officer2", t(9), vec![ev("hold_release")]).await.unwrap()
    );
    assert_eq!(released.released_at, Some(t(9)));
    assert_eq!(released.released_by.as_deref(), Some("officer2"));
    assert!(!released.active());
    let again = s.release_legal_hold(&id, "officer2", t(10), vec![ev("hold_release")]);
    audited!(s, [], assert!(matches!(again.await, Err(StoreError::NotFound))));
    let unknown = HoldId::from_stored("hold-9".to_owned());
    audited!(
        s,
        [],
        assert!(matches!(
            s.release_legal_hold(&unknown, "x", t(10), vec![ev("hold_release")]).await,
            Err(StoreError::NotFound)
        ))
    );
    assert_eq!(s.get_legal_hold(&id).await.unwrap(), Some(released));
    assert_eq!(s.get_legal_hold(&unknown).await.unwrap(), None);
    assert_eq!(s.list_legal_holds(false).await.unwrap().len(), 1);
    assert_eq!(s.list_legal_holds(true).await.unwrap().len(), 2);
}

/// A document delete and a collection delete refuse, naming the hold and recording
/// nothing, while an active hold covers the document's subject or collection (or, for a
/// collection, a subject with documents in it); once released they proceed.
pub async fn legal_holds_block_deletes(s: &dyn Store) {
    chained(s);
    s.create_collection(coll("a", false, None), vec![]).await.unwrap();
    s.create_collection(coll("b", false, None), vec![]).await.unwrap();
    s.insert_document(doc("a", "alice1", Some("alice"), b"1"), vec![entry("f", 1)], vec![]).await.unwrap();
    s.insert_document(doc("a", "free", None, b"2"), vec![], vec![]).await.unwrap();
    s.insert_document(doc("b", "alice2", Some("alice"), b"3"), vec![], vec![]).await.unwrap();
    s.insert_document(doc("b", "bob", Some("bob"), b"4"), vec![], vec![]).await.unwrap();
    s.place_legal_hold(hold("hold-s", HoldScope::Subject, "alice"), vec![]).await.unwrap();
    s.place_legal_hold(hold("hold-c", HoldScope::Collection, "b"), vec![]).await.unwrap();

    let held = |r: Result<(), StoreError>, id: &str| match r {
        Err(StoreError::LegalHold(h)) => assert_eq!(h.as_str(), id),
        other => panic!("expected legal hold {id}, got {other:?}"),
    };
    held(
        audited!(s, [], s.delete_document(&cname("a"), &did("alice1"), None, vec![ev("document_delete")]).await),
        "hold-s",
    );
    held(
        audited!(s, [], s.delete_document(&cname("b"), &did("bob"), None, vec![ev("document_delete")]).await),
        "hold-c",
    );
    held(audited!(s, [], s.delete_collection(&cname("b"), vec![ev("collection_delete")]).await), "hold-c");
    held(audited!(s, [], s.delete_collection(&cname("a"), vec![ev("collection_delete")]).await), "hold-s");
    // Not held: another subject in an unheld collection.
    s.delete_document(&cname("a"), &did("free"), None, vec![]).await.unwrap();
    assert_eq!(ids(s, "a").await, ["alice1"]);
    assert_eq!(ids(s, "b").await, ["alice2", "bob"]);

    s.release_legal_hold(&HoldId::from_stored("hold-c".into()), "o", t(2), vec![]).await.unwrap();
    s.delete_document(&cname("b"), &did("bob"), None, vec![]).await.unwrap();
    held(s.delete_collection(&cname("b"), vec![]).await, "hold-s");
    s.release_legal_hold(&HoldId::from_stored("hold-s".into()), "o", t(3), vec![]).await.unwrap();
    s.delete_document(&cname("a"), &did("alice1"), None, vec![]).await.unwrap();
    s.delete_collection(&cname("b"), vec![]).await.unwrap();
    assert!(s.get_collection(&cname("b")).await.unwrap().is_none());
}

/// Expiry follows the rule order (collection period, else PII period for PII collections
/// and documents naming a subject, else the default; none keeps), counts match what the
/// batches then delete, holds keep documents, each batch commits its own audit record, and
/// index entries go with their documents.
pub async fn retention_expiry(s: &dyn Store) {
    chained(s);
    s.create_collection(coll("own", false, Some(10)), vec![]).await.unwrap();
    s.create_collection(coll("pii", true, None), vec![]).await.unwrap();
    s.create_collection(coll("plain", false, None), vec![]).await.unwrap();
    s.create_collection(coll("kept", false, Some(1000)), vec![]).await.unwrap();
    let docs = [
        aged("own", "o-old", Some("carol"), 11),
        aged("own", "o-edge", None, 10),
        aged("own", "o-new", None, 9),
        aged("pii", "p-old", None, 31),
        aged("pii", "p-new", None, 29),
        aged("plain", "s-old", Some("dave"), 31),
        aged("plain", "s-new", Some("dave"), 29),
        aged("plain", "d-old", None, 61),
        aged("plain", "d-mid", None, 31),
        aged("plain", "held", Some("erin"), 90),
        aged("kept", "k-old", Some("frank"), 500),
    ];
    for d in docs {
        s.insert_document(d, vec![entry("f", 7)], vec![]).await.unwrap();
    }
    s.place_legal_hold(hold("hold-e", HoldScope::Subject, "erin"), vec![]).await.unwrap();
    let rule = RetentionRule { now: now(), default_days: Some(60), pii_days: Some(30) };

    let mut counts = s.count_expired_documents(rule).await.unwrap();
    counts.sort_by(|a, b| (a.collection.as_str(), a.with_subject).cmp(&(b.collection.as_str(), b.with_subject)));
    let summary: Vec<(String, bool, u64, u64)> =
        counts.iter().map(|c| (c.collection.to_string(), c.with_subject, c.expired, c.held)).collect();
    assert_eq!(
        summary,
        [
            ("own".to_owned(), false, 1, 0),
            ("own".to_owned(), true, 1, 0),
            ("pii".to_owned(), false, 1, 0),
            ("plain".to_owned(), false, 1, 0),
            ("plain".to_owned(), true, 2, 1),
        ]
    );
    let plain_subjects = counts.iter().find(|c| c.collection.as_str() == "plain" && c.with_subject).unwrap();
    assert_eq!(plain_subjects.oldest_created_at, Some(t(10 * DAY)));

    // One document per batch: each batch is its own transaction with its own record.
    let before = audit_tail(s).await;
    let mut deleted = 0;
    loop {
        let audit: rampart_store::BatchAudit = Box::new(|n| vec![super::event("retention_delete", "system", n > 0, 0)]);
        let n = s.delete_expired_documents(&cname("plain"), rule, 1, audit).await.unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, 1);
        deleted += n;
    }
    assert_eq!(deleted, 2, "what the count reported, minus the held one");
    assert_eq!(audited_since(s, before).await, ["retention_delete", "retention_delete"]);
    let before = audit_tail(s).await;
    for c in ["own", "pii", "kept"] {
        s.delete_expired_documents(&cname(c), rule, 500, Box::new(|_| vec![ev("retention_delete")])).await.unwrap();
    }
    assert_eq!(audited_since(s, before).await, ["retention_delete", "retention_delete"], "nothing to do: no record");

    assert_eq!(ids(s, "own").await, ["o-new"]);
    assert_eq!(ids(s, "pii").await, ["p-new"]);
    assert_eq!(ids(s, "plain").await, ["d-mid", "held", "s-new"]);
    assert_eq!(ids(s, "kept").await, ["k-old"]);
    // The index entries went with their documents.
    for c in ["own", "pii", "plain"] {
        let q = DocumentQuery {
            collection: cname(c),
            filters: vec![entry("f", 7)],
            subject_id: None,
            after_seq: None,
            limit: 100,
        };
        assert_eq!(s.query_documents(q).await.unwrap().len(), ids(s, c).await.len());
    }
    assert!(s.count_expired_documents(rule).await.unwrap().iter().all(|c| c.expired == c.held));

    // Keep-forever rules delete nothing; releasing the hold lets the held one go.
    let forever = RetentionRule { now: t(10_000 * DAY), default_days: None, pii_days: None };
    let only_own: Vec<String> =
        s.count_expired_documents(forever).await.unwrap().iter().map(|c| c.collection.to_string()).collect();
    assert!(only_own.iter().all(|c| c == "own" || c == "kept"), "{only_own:?}");
    assert_eq!(s.delete_expired_documents(&cname("plain"), forever, 500, Box::new(|_| vec![])).await.unwrap(), 0);
    s.release_legal_hold(&HoldId::from_stored("hold-e".into()), "o", t(5), vec![]).await.unwrap();
    assert_eq!(s.delete_expired_documents(&cname("plain"), rule, 500, Box::new(|_| vec![])).await.unwrap(), 1);
    assert_eq!(ids(s, "plain").await, ["d-mid", "s-new"]);
}

/// Retention deletions stale cached documents like every other delete.
pub async fn retention_invalidation(s: &dyn Store) {
    let feed = s.invalidation();
    s.create_collection(coll("inv", false, Some(1)), vec![]).await.unwrap();
    s.insert_document(aged("inv", "old", None, 5), vec![], vec![]).await.unwrap();
    let g = feed.generation(rampart_store::Topic::Documents);
    let rule = RetentionRule { now: now(), default_days: None, pii_days: None };
    assert_eq!(s.delete_expired_documents(&cname("inv"), rule, 10, Box::new(|_| vec![])).await.unwrap(), 1);
    assert!(feed.generation(rampart_store::Topic::Documents) > g, "retention deletion did not invalidate documents");
}
