//! Users, sessions, roles, collections and documents: the audit promise of every mutating
//! method, version checks, paging and the collection life cycle.

use std::sync::Arc;

use rampart_store::{
    CollectionRecord, DocumentQuery, DocumentRecord, IndexEntry, Indexer, Store, StoreError, UserChange,
};
use rampart_types::{CollectionName, DocumentId, FieldPath, Permission, RoleName, SubjectId};

use super::{doc, entry, ev, name, role, seed_roles, session, sid, t, user, TestChainer};

fn collection(c: &str, indexes: &[&str]) -> CollectionRecord {
    CollectionRecord {
        name: CollectionName::parse(c).unwrap(),
        indexes: indexes.iter().map(|f| FieldPath::parse(f).unwrap()).collect(),
        pii_fields: vec![],
        retention_days: None,
        encrypted: false,
        created_at: t(0),
        updated_at: t(0),
    }
}

fn cname(c: &str) -> CollectionName {
    CollectionName::parse(c).unwrap()
}

fn did(id: &str) -> DocumentId {
    DocumentId::parse(id).unwrap()
}

fn query(c: &str, filters: Vec<IndexEntry>, after_seq: Option<i64>, limit: usize) -> DocumentQuery {
    DocumentQuery { collection: cname(c), filters, subject_id: None, after_seq, limit }
}

fn ids(docs: Vec<DocumentRecord>) -> Vec<String> {
    docs.into_iter().map(|d| d.id.to_string()).collect()
}

/// Every audited write of the user, session, role, collection and document stores commits
/// its events with the change, and a refused change leaves no record.
pub async fn audited_changes(s: &dyn Store) {
    seed_roles(s).await;
    s.set_audit_chainer(Arc::new(TestChainer));
    let viewer = || RoleName::parse("viewer").unwrap();

    // Users.
    audited!(s, ["user_create"], s.create_user(user("root", "admin"), vec![ev("user_create")]).await.unwrap());
    audited!(s, ["user_create"], s.create_user(user("u", "viewer"), vec![ev("user_create")]).await.unwrap());
    let dup = audited!(s, [], s.create_user(user("u", "viewer"), vec![ev("user_create")]).await);
    assert!(matches!(dup, Err(StoreError::AlreadyExists)), "{dup:?}");
    let no_role = audited!(s, [], s.create_user(user("v", "no-such-role"), vec![ev("user_create")]).await);
    assert!(matches!(no_role, Err(StoreError::NotFound)), "{no_role:?}");
    let change = UserChange { password_hash: Some("$argon2id$other".into()), at: Some(t(5)), ..Default::default() };
    let changed =
        audited!(s, ["user_update"], s.update_user(&name("u"), change, vec![ev("user_update")]).await.unwrap());
    assert_eq!((changed.password_hash.as_str(), changed.updated_at), ("$argon2id$other", t(5)));
    let missing = audited!(
        s,
        [],
        s.update_user(&name("ghost"), UserChange { disabled: Some(true), ..Default::default() }, vec![ev("x")]).await
    );
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    let demote = UserChange { role: Some(viewer()), ..Default::default() };
    let last = audited!(s, [], s.update_user(&name("root"), demote, vec![ev("user_update")]).await);
    assert!(matches!(last, Err(StoreError::LastAdmin)), "{last:?}");
    let bad_role = UserChange { role: Some(RoleName::parse("no-such-role").unwrap()), ..Default::default() };
    let bad = audited!(s, [], s.update_user(&name("u"), bad_role, vec![ev("user_update")]).await);
    assert!(matches!(bad, Err(StoreError::NotFound)), "{bad:?}");
    assert_eq!(s.get_user(&name("u")).await.unwrap().unwrap().role, viewer(), "refused role change left no trace");
    let last = audited!(s, [], s.delete_user(&name("root"), vec![ev("user_delete")]).await);
    assert!(matches!(last, Err(StoreError::LastAdmin)), "{last:?}");
    assert!(s.get_user(&name("root")).await.unwrap().is_some(), "refused delete rolled back");
    let gone = audited!(s, [], s.delete_user(&name("ghost"), vec![ev("user_delete")]).await);
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    // Sessions.
    audited!(s, ["login"], s.create_session(session("s1", "u", 0), 10, vec![ev("login")]).await.unwrap());
    audited!(s, ["login"], s.create_session(session("s2", "u", 1), 10, vec![ev("login")]).await.unwrap());
    let orphan = audited!(s, [], s.create_session(session("s9", "ghost", 0), 10, vec![ev("login")]).await);
    assert!(orphan.is_err(), "a session needs its user");
    let taken = audited!(s, [], s.create_session(session("s1", "u", 2), 10, vec![ev("login")]).await);
    assert!(taken.is_err(), "session ids are unique");
    assert_eq!(s.list_sessions(&name("u")).await.unwrap().len(), 2);
    assert!(audited!(s, ["logout"], s.delete_session(&sid("s1"), vec![ev("logout")]).await.unwrap()));
    assert!(
        !audited!(s, [], s.delete_session(&sid("s1"), vec![ev("logout")]).await.unwrap()),
        "an unknown id records nothing"
    );
    let ended = audited!(s, ["revoke_all"], s.delete_user_sessions(&name("u"), None, vec![ev("revoke_all")]).await);
    assert_eq!(ended.unwrap(), 1);
    assert!(s.list_sessions(&name("u")).await.unwrap().is_empty());

    // Roles.
    let custom = role("custom", vec![Permission::DocumentsRead], false);
    audited!(s, ["role_create"], s.create_role(custom.clone(), 1000, vec![ev("role_create")]).await.unwrap());
    let dup = audited!(s, [], s.create_role(custom.clone(), 1000, vec![ev("role_create")]).await);
    assert!(matches!(dup, Err(StoreError::AlreadyExists)), "{dup:?}");
    // The role bound is counted in the transaction: at the bound, nothing is added or recorded.
    let count = s.list_roles().await.unwrap().len();
    let over = role("one-too-many", vec![], false);
    let refused = audited!(s, [], s.create_role(over.clone(), count, vec![ev("role_create")]).await);
    assert!(matches!(refused, Err(StoreError::LimitReached(_))), "{refused:?}");
    assert!(s.get_role(&over.name).await.unwrap().is_none());
    audited!(s, ["role_create"], s.create_role(over, count + 1, vec![ev("role_create")]).await.unwrap());
    let mut wider = custom.clone();
    wider.permissions.push(Permission::DocumentsWrite);
    audited!(s, ["role_update"], s.update_role(wider.clone(), vec![ev("role_update")]).await.unwrap());
    assert_eq!(s.get_role(&custom.name).await.unwrap().unwrap().permissions, wider.permissions);
    let builtin = audited!(s, [], s.update_role(role("admin", vec![], false), vec![ev("role_update")]).await);
    assert!(matches!(builtin, Err(StoreError::InUse(_))), "{builtin:?}");
    assert_eq!(
        s.get_role(&RoleName::parse("admin").unwrap()).await.unwrap().unwrap().permissions,
        Permission::ALL.to_vec(),
        "built-in role unchanged"
    );
    let unknown = audited!(s, [], s.update_role(role("nope", vec![], false), vec![ev("role_update")]).await);
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    s.update_user(&name("u"), UserChange { role: Some(custom.name.clone()), ..Default::default() }, vec![])
        .await
        .unwrap();
    let held = audited!(s, [], s.delete_role(&custom.name, vec![ev("role_delete")]).await);
    assert!(matches!(held, Err(StoreError::InUse(_))), "{held:?}");
    let unknown = audited!(s, [], s.delete_role(&RoleName::parse("nope").unwrap(), vec![ev("role_delete")]).await);
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    s.update_user(&name("u"), UserChange { role: Some(viewer()), ..Default::default() }, vec![]).await.unwrap();
    audited!(s, ["role_delete"], s.delete_role(&custom.name, vec![ev("role_delete")]).await.unwrap());
    assert!(s.get_role(&custom.name).await.unwrap().is_none());

    // Collections.
    let c = collection("c", &["f"]);
    audited!(s, ["coll_create"], s.create_collection(c.clone(), vec![ev("coll_create")]).await.unwrap());
    let dup = audited!(s, [], s.create_collection(c.clone(), vec![ev("coll_create")]).await);
    assert!(matches!(dup, Err(StoreError::AlreadyExists)), "{dup:?}");
    let mut changed = c.clone();
    changed.retention_days = Some(7);
    audited!(s, ["coll_update"], s.update_collection(changed.clone(), None, vec![ev("coll_update")]).await.unwrap());
    let unknown = audited!(s, [], s.update_collection(collection("nope", &[]), None, vec![ev("coll_update")]).await);
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");

    // Documents.
    let d = audited!(
        s,
        ["doc_insert"],
        s.insert_document(doc("c", "d1", None, b"a"), vec![entry("f", 1)], vec![ev("doc_insert")]).await.unwrap()
    );
    // A reindex failing on a stored document refuses the whole update.
    let failing: Indexer = Box::new(|_| Err("boom".into()));
    let reindex = audited!(s, [], s.update_collection(c.clone(), Some(failing), vec![ev("coll_update")]).await);
    assert!(reindex.is_err());
    assert_eq!(s.get_collection(&c.name).await.unwrap().unwrap(), changed, "failed reindex left the settings");
    let dup = audited!(s, [], s.insert_document(doc("c", "d1", None, b"b"), vec![], vec![ev("doc_insert")]).await);
    assert!(matches!(dup, Err(StoreError::AlreadyExists)), "{dup:?}");
    let nowhere =
        audited!(s, [], s.insert_document(doc("nope", "d1", None, b"b"), vec![], vec![ev("doc_insert")]).await);
    assert!(matches!(nowhere, Err(StoreError::NotFound)), "{nowhere:?}");
    let next = DocumentRecord { body: b"b".to_vec(), ..d.clone() };
    audited!(s, ["doc_replace"], s.replace_document(next.clone(), 1, vec![], vec![ev("doc_replace")]).await.unwrap());
    let stale = audited!(s, [], s.replace_document(next, 1, vec![], vec![ev("doc_replace")]).await);
    assert!(matches!(stale, Err(StoreError::VersionMismatch)), "{stale:?}");
    let stale = audited!(s, [], s.delete_document(&c.name, &d.id, Some(1), vec![ev("doc_delete")]).await);
    assert!(matches!(stale, Err(StoreError::VersionMismatch)), "{stale:?}");
    audited!(s, ["doc_delete"], s.delete_document(&c.name, &d.id, Some(2), vec![ev("doc_delete")]).await.unwrap());
    let gone = audited!(s, [], s.delete_document(&c.name, &d.id, None, vec![ev("doc_delete")]).await);
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
    audited!(s, ["coll_delete"], s.delete_collection(&c.name, vec![ev("coll_delete")]).await.unwrap());
    let gone = audited!(s, [], s.delete_collection(&c.name, vec![ev("coll_delete")]).await);
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");

    // Several events of one change are all recorded, in order, in one place in the chain.
    let two = vec![ev("first"), ev("second")];
    audited!(s, ["first", "second"], s.create_collection(collection("c2", &[]), two).await.unwrap());
}

/// Optimistic concurrency, the seq cursor, subjects across collections.
pub async fn document_versions(s: &dyn Store) {
    assert_eq!(s.max_document_seq().await.unwrap(), 0, "0 when no document was ever stored");
    for c in ["a", "b"] {
        s.create_collection(collection(c, &["f"]), vec![]).await.unwrap();
    }
    let a1 = s.insert_document(doc("a", "x1", Some("sub"), b"1"), vec![entry("f", 1)], vec![]).await.unwrap();
    let a2 = s.insert_document(doc("a", "x2", None, b"2"), vec![entry("f", 1)], vec![]).await.unwrap();
    let b1 = s.insert_document(doc("b", "x1", Some("sub"), b"3"), vec![entry("f", 1)], vec![]).await.unwrap();
    assert!(a1.seq > 0 && a1.seq < a2.seq && a2.seq < b1.seq, "seq follows insertion order");
    assert_eq!((a1.version, a1.body.as_slice()), (1, b"1".as_slice()));
    assert_eq!(s.max_document_seq().await.unwrap(), b1.seq);
    // The same id may exist in two collections; each read stays in its collection.
    assert_eq!(s.get_document(&cname("b"), &did("x1")).await.unwrap().unwrap().body, b"3");
    assert!(s.get_document(&cname("b"), &did("x2")).await.unwrap().is_none());
    assert_eq!(s.count_subject_documents(&SubjectId::parse("sub").unwrap()).await.unwrap(), 2, "across collections");
    assert_eq!(s.count_subject_documents(&SubjectId::parse("other").unwrap()).await.unwrap(), 0);

    // Queries stay in their collection, honour the limit and page by seq.
    assert_eq!(ids(s.query_documents(query("a", vec![entry("f", 1)], None, 10)).await.unwrap()), ["x1", "x2"]);
    assert_eq!(ids(s.query_documents(query("b", vec![entry("f", 1)], None, 10)).await.unwrap()), ["x1"]);
    assert_eq!(ids(s.query_documents(query("a", vec![], None, 1)).await.unwrap()), ["x1"]);
    assert_eq!(ids(s.query_documents(query("a", vec![], Some(a1.seq), 10)).await.unwrap()), ["x2"]);
    assert!(s.query_documents(query("a", vec![], Some(a2.seq), 10)).await.unwrap().is_empty());
    assert!(s.query_documents(query("a", vec![entry("g", 1)], None, 10)).await.unwrap().is_empty());
    assert!(s.query_documents(query("nope", vec![], None, 10)).await.unwrap().is_empty());

    // Replace: only from the expected version, which then moves by one; seq is kept.
    let mut next = DocumentRecord { body: b"1b".to_vec(), subject_id: None, updated_at: t(9), ..a1.clone() };
    let r = s.replace_document(next.clone(), 1, vec![entry("f", 2)], vec![]).await.unwrap();
    assert_eq!((r.version, r.seq, r.body.as_slice(), r.updated_at), (2, a1.seq, b"1b".as_slice(), t(9)));
    assert!(r.subject_id.is_none(), "the subject moves with the body");
    assert_eq!(s.count_subject_documents(&SubjectId::parse("sub").unwrap()).await.unwrap(), 1);
    for wrong in [0, 1, 3] {
        let m = s.replace_document(next.clone(), wrong, vec![], vec![]).await;
        assert!(matches!(m, Err(StoreError::VersionMismatch)), "expected {wrong}: {m:?}");
    }
    let stored = s.get_document(&cname("a"), &did("x1")).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.body.as_slice()), (2, b"1b".as_slice()), "a refused replace changes nothing");
    assert_eq!(ids(s.query_documents(query("a", vec![entry("f", 2)], None, 10)).await.unwrap()), ["x1"]);
    next.body = b"1c".to_vec();
    assert_eq!(s.replace_document(next.clone(), 2, vec![], vec![]).await.unwrap().version, 3);
    assert!(s.query_documents(query("a", vec![entry("f", 2)], None, 10)).await.unwrap().is_empty(), "index replaced");
    let ghost = DocumentRecord { id: did("ghost"), ..next.clone() };
    assert!(matches!(s.replace_document(ghost, 1, vec![], vec![]).await, Err(StoreError::NotFound)));

    // Delete: with a version, only at that version; without, unconditionally.
    assert!(matches!(
        s.delete_document(&cname("a"), &did("x1"), Some(2), vec![]).await,
        Err(StoreError::VersionMismatch)
    ));
    assert!(s.get_document(&cname("a"), &did("x1")).await.unwrap().is_some(), "a refused delete keeps the document");
    s.delete_document(&cname("a"), &did("x1"), Some(3), vec![]).await.unwrap();
    s.delete_document(&cname("b"), &did("x1"), None, vec![]).await.unwrap();
    assert!(s.get_document(&cname("b"), &did("x1")).await.unwrap().is_none());
    assert!(matches!(s.delete_document(&cname("b"), &did("x1"), None, vec![]).await, Err(StoreError::NotFound)));
    assert!(s.query_documents(query("b", vec![entry("f", 1)], None, 10)).await.unwrap().is_empty(), "index gone");
    assert_eq!(s.count_subject_documents(&SubjectId::parse("sub").unwrap()).await.unwrap(), 0);

    // A seq is never handed out twice, even after the newest document is deleted.
    let a3 = s.insert_document(doc("a", "x3", None, b"4"), vec![], vec![]).await.unwrap();
    assert!(a3.seq > b1.seq, "seq reused: {} after {}", a3.seq, b1.seq);
    assert_eq!(s.max_document_seq().await.unwrap(), a3.seq);
    // It reports the highest seq stored, not ever assigned (a bound for progress only).
    s.delete_document(&a3.collection, &a3.id, None, vec![]).await.unwrap();
    assert!(s.max_document_seq().await.unwrap() < a3.seq);
}

/// The collection life cycle: settings replaced with or without a reindex, listing order,
/// deletion with every document and index entry.
pub async fn collections(s: &dyn Store) {
    assert!(s.list_collections().await.unwrap().is_empty());
    for c in ["zeta", "alpha", "mid"] {
        s.create_collection(collection(c, &["f"]), vec![]).await.unwrap();
    }
    let names: Vec<_> = s.list_collections().await.unwrap().into_iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
    s.insert_document(doc("alpha", "d1", Some("p"), b"\x01"), vec![entry("f", 1)], vec![]).await.unwrap();
    s.insert_document(doc("alpha", "d2", None, b"\x02"), vec![entry("f", 2)], vec![]).await.unwrap();
    s.insert_document(doc("mid", "d1", Some("p"), b"\x03"), vec![entry("f", 1)], vec![]).await.unwrap();

    // Without a reindex, settings change and index entries stay.
    let mut settings = collection("alpha", &["f", "g"]);
    settings.pii_fields = vec![FieldPath::parse("g").unwrap()];
    settings.retention_days = Some(3);
    settings.encrypted = true;
    settings.updated_at = t(50);
    s.update_collection(settings.clone(), None, vec![]).await.unwrap();
    assert_eq!(s.get_collection(&cname("alpha")).await.unwrap().unwrap(), settings);
    assert_eq!(ids(s.query_documents(query("alpha", vec![entry("f", 1)], None, 10)).await.unwrap()), ["d1"]);

    // A reindex sees every document of that collection only, and replaces their entries.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let indexer: Indexer = Box::new(move |d: &DocumentRecord| {
        log.lock().unwrap().push(format!("{}/{}", d.collection, d.id));
        Ok(vec![IndexEntry { field: FieldPath::parse("g").unwrap(), token: [d.body[0]; 32] }])
    });
    s.update_collection(settings.clone(), Some(indexer), vec![]).await.unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["alpha/d1", "alpha/d2"]);
    assert!(s.query_documents(query("alpha", vec![entry("f", 1)], None, 10)).await.unwrap().is_empty());
    assert_eq!(ids(s.query_documents(query("alpha", vec![entry("g", 2)], None, 10)).await.unwrap()), ["d2"]);
    assert_eq!(ids(s.query_documents(query("mid", vec![entry("f", 1)], None, 10)).await.unwrap()), ["d1"], "untouched");

    // A reindex that fails part-way leaves settings and entries as they were.
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let half: Indexer = Box::new(move |_| {
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Ok(vec![entry("h", 9)])
        } else {
            Err("second document refused".into())
        }
    });
    let mut other = settings.clone();
    other.retention_days = None;
    assert!(s.update_collection(other, Some(half), vec![]).await.is_err());
    assert_eq!(s.get_collection(&cname("alpha")).await.unwrap().unwrap(), settings, "settings rolled back");
    assert!(s.query_documents(query("alpha", vec![entry("h", 9)], None, 10)).await.unwrap().is_empty());
    assert_eq!(ids(s.query_documents(query("alpha", vec![entry("g", 1)], None, 10)).await.unwrap()), ["d1"]);

    // Delete takes documents and entries with it; a new collection of that name starts empty.
    s.delete_collection(&cname("alpha"), vec![]).await.unwrap();
    assert!(s.get_collection(&cname("alpha")).await.unwrap().is_none());
    assert!(s.get_document(&cname("alpha"), &did("d1")).await.unwrap().is_none());
    assert_eq!(s.count_subject_documents(&SubjectId::parse("p").unwrap()).await.unwrap(), 1, "mid/d1 stays");
    s.create_collection(collection("alpha", &["g"]), vec![]).await.unwrap();
    assert!(s.query_documents(query("alpha", vec![entry("g", 1)], None, 10)).await.unwrap().is_empty());
    assert!(s.query_documents(query("alpha", vec![], None, 10)).await.unwrap().is_empty());
    assert!(matches!(s.delete_collection(&cname("nope"), vec![]).await, Err(StoreError::NotFound)));
    let names: Vec<_> = s.list_collections().await.unwrap().into_iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

/// Listings sort text keys bytewise (whatever the backend's collation: `-` < digits < `_`
/// < lower case, upper case before lower), and the edges of the document and collection
/// methods: a duplicate id, a missing collection.
pub async fn ordering_and_edges(s: &dyn Store) {
    for c in ["b", "ab", "a_b", "a1", "a-b"] {
        s.create_collection(collection(c, &[]), vec![]).await.unwrap();
    }
    let names: Vec<_> = s.list_collections().await.unwrap().into_iter().map(|c| c.name.to_string()).collect();
    assert_eq!(names, ["a-b", "a1", "a_b", "ab", "b"], "collections in byte order");

    for id in ["k_1", "Z", "k1", "K-2", "k-1"] {
        let key = rampart_store::KeyRecord {
            key_id: id.into(),
            kind: rampart_store::KeyKind::Collection,
            owner: format!("owner-{id}"),
            kek_version: 1,
            wrapped: vec![1],
            created_at: t(0),
            successor: None,
        };
        s.insert_key(key, vec![]).await.unwrap();
    }
    let ids_after = |after: &'static str| async move {
        s.list_keys(after, 10).await.unwrap().into_iter().map(|k| k.key_id).collect::<Vec<_>>()
    };
    assert_eq!(ids_after("").await, ["K-2", "Z", "k-1", "k1", "k_1"], "keys in byte order");
    assert_eq!(ids_after("k-1").await, ["k1", "k_1"], "paging follows byte order");
    assert_eq!(ids_after("Z").await, ["k-1", "k1", "k_1"]);

    // A second document with an id taken in the collection is refused; the first stays.
    s.insert_document(doc("ab", "x", None, b"first"), vec![], vec![]).await.unwrap();
    let dup = s.insert_document(doc("ab", "x", None, b"second"), vec![], vec![]).await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists)), "{dup:?}");
    assert_eq!(s.get_document(&cname("ab"), &did("x")).await.unwrap().unwrap().body, b"first");
    s.insert_document(doc("b", "x", None, b"other"), vec![], vec![]).await.unwrap();

    // A missing collection is `NotFound` for every method that names one.
    let missing = s.update_collection(collection("nope", &[]), None, vec![]).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert!(s.get_collection(&cname("nope")).await.unwrap().is_none(), "an update creates nothing");
    let replaced = s.replace_document(doc("nope", "x", None, b"1"), 1, vec![], vec![]).await;
    assert!(matches!(replaced, Err(StoreError::NotFound)), "{replaced:?}");
    let deleted = s.delete_document(&cname("nope"), &did("x"), None, vec![]).await;
    assert!(matches!(deleted, Err(StoreError::NotFound)), "{deleted:?}");
}
