//! The key store: data keys, KEK rotation, master key change, re-encryption jobs and
//! crypto-shredding.

use std::collections::HashMap;
use std::sync::Arc;

use rampart_store::{
    CollectionRecord, DocumentQuery, DocumentRecord, ErasureEntry, KekVersion, KeyKind, KeyRecord, Reseal, Rewrapper,
    Store, StoreError,
};
use rampart_types::{CollectionName, DocumentId, SubjectId};

use super::{doc, entry, erasure_of, ev, t, TestChainer};

/// The meta key the core keeps the master key check value under (`KEY_CHECK_META`).
const KCV_META: &str = "master_key_check_value";

fn key(id: &str, kind: KeyKind, owner: &str) -> KeyRecord {
    KeyRecord {
        key_id: id.into(),
        kind,
        owner: owner.into(),
        kek_version: 1,
        wrapped: format!("wrapped:{id}").into_bytes(),
        created_at: t(0),
        successor: None,
    }
}

async fn stored(s: &dyn Store, id: &str) -> KeyRecord {
    s.get_key(id).await.unwrap().unwrap_or_else(|| panic!("key {id} missing"))
}

async fn all_keys(s: &dyn Store) -> Vec<KeyRecord> {
    s.list_keys("", usize::MAX).await.unwrap()
}

async fn counts(s: &dyn Store) -> HashMap<KeyKind, u64> {
    s.count_keys().await.unwrap().into_iter().filter(|(_, n)| *n > 0).collect()
}

fn prefixing(prefix: &'static str) -> Rewrapper {
    Box::new(move |k: &KeyRecord| Ok([prefix.as_bytes(), &k.wrapped].concat()))
}

/// Re-wraps every key but `refuse`, which fails.
fn failing_on(refuse: &'static str) -> Rewrapper {
    Box::new(move |k: &KeyRecord| if k.key_id == refuse { Err("cannot unwrap".into()) } else { Ok(b"x".to_vec()) })
}

pub(super) fn collection(c: &str) -> CollectionRecord {
    CollectionRecord {
        name: CollectionName::parse(c).unwrap(),
        indexes: vec![],
        pii_fields: vec![],
        retention_days: None,
        encrypted: true,
        created_at: t(0),
        updated_at: t(0),
    }
}

async fn body(s: &dyn Store, c: &str, id: &str) -> Option<(u64, Vec<u8>)> {
    let d = s.get_document(&CollectionName::parse(c).unwrap(), &DocumentId::parse(id).unwrap()).await.unwrap();
    d.map(|d| (d.version, d.body))
}

fn seqs(docs: &[DocumentRecord]) -> Vec<i64> {
    docs.iter().map(|d| d.seq).collect()
}

/// Insert, read, current key per (kind, owner), paging and counts.
pub async fn data_keys(s: &dyn Store) {
    let root = key("k-root", KeyKind::Root, "root");
    let closed = s.insert_key(root.clone(), vec![ev("key_create")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(s.get_key("k-root").await.unwrap().is_none(), "no key without its audit record");
    s.set_audit_chainer(Arc::new(TestChainer));

    assert!(s.get_key("k-root").await.unwrap().is_none());
    assert!(s.current_key(KeyKind::Root, "root").await.unwrap().is_none());
    assert!(s.list_keys("", 10).await.unwrap().is_empty());
    assert!(counts(s).await.is_empty());

    audited!(s, ["key_create"], s.insert_key(root.clone(), vec![ev("key_create")]).await.unwrap());
    assert_eq!(stored(s, "k-root").await, root, "read back unchanged");
    assert_eq!(s.current_key(KeyKind::Root, "root").await.unwrap(), Some(root.clone()));
    let mut others = vec![
        key("k-c1", KeyKind::Collection, "c1"),
        key("k-c2", KeyKind::Collection, "c2"),
        key("k-s1", KeyKind::Subject, "h1"),
        key("k-s2", KeyKind::Subject, "h2"),
        key("k-s3", KeyKind::Subject, "h3"),
        // Another kind with the same owner is a different current key.
        key("k-x", KeyKind::Subject, "c1"),
    ];
    others[1].kek_version = 7;
    others[1].created_at = t(99);
    for k in &others {
        s.insert_key(k.clone(), vec![]).await.unwrap();
    }
    assert_eq!(stored(s, "k-c2").await, others[1]);
    assert_eq!(s.current_key(KeyKind::Collection, "c1").await.unwrap().unwrap().key_id, "k-c1");
    assert_eq!(s.current_key(KeyKind::Subject, "c1").await.unwrap().unwrap().key_id, "k-x");
    assert!(s.current_key(KeyKind::Collection, "h1").await.unwrap().is_none(), "owner is per kind");

    // One current key per (kind, owner): a second insert loses and changes nothing.
    let rival = key("k-c1-rival", KeyKind::Collection, "c1");
    let lost = audited!(s, [], s.insert_key(rival, vec![ev("key_create")]).await);
    assert!(matches!(lost, Err(StoreError::AlreadyExists)), "{lost:?}");
    assert!(s.get_key("k-c1-rival").await.unwrap().is_none());
    assert_eq!(s.current_key(KeyKind::Collection, "c1").await.unwrap().unwrap().key_id, "k-c1");
    // Key ids are unique too.
    let same_id = audited!(s, [], s.insert_key(key("k-c1", KeyKind::Collection, "c9"), vec![ev("key_create")]).await);
    assert!(same_id.is_err(), "duplicate key id accepted");
    assert!(s.current_key(KeyKind::Collection, "c9").await.unwrap().is_none());

    // Paging by id.
    let mut expected: Vec<String> = others.iter().map(|k| k.key_id.clone()).chain(["k-root".to_owned()]).collect();
    expected.sort();
    let (mut after, mut paged) = (String::new(), Vec::new());
    loop {
        let page = s.list_keys(&after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.key_id.clone();
        paged.extend(page.into_iter().map(|k| k.key_id));
    }
    assert_eq!(paged, expected);
    let ids: Vec<_> = s.list_keys("k-r", 2).await.unwrap().into_iter().map(|k| k.key_id).collect();
    assert_eq!(ids, ["k-root", "k-s1"], "`after` need not be an existing id");
    assert!(s.list_keys("k-x", 10).await.unwrap().is_empty());
    assert_eq!(s.list_keys("", 10).await.unwrap()[1], others[1], "listed records are whole");

    let want = HashMap::from([(KeyKind::Root, 1), (KeyKind::Collection, 2), (KeyKind::Subject, 4)]);
    assert_eq!(counts(s).await, want);
}

/// KEK rotation and master key change re-wrap every key in one transaction.
pub async fn kek_and_master(s: &dyn Store) {
    for k in [key("k1", KeyKind::Root, "root"), key("k2", KeyKind::Collection, "c"), key("k3", KeyKind::Subject, "h")] {
        s.insert_key(k, vec![]).await.unwrap();
    }
    s.init_meta(KCV_META, b"kcv-old".to_vec()).await.unwrap();
    let before = all_keys(s).await;
    let v = |n: u32| KekVersion { version: n, created_at: t(i64::from(n)) };
    let closed = s.rotate_kek(v(1), prefixing("v1|"), vec![ev("kek_rotate")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    let closed = s.change_master(b"kcv-x".to_vec(), prefixing("m|"), vec![ev("master_change")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(s.kek_versions().await.unwrap().is_empty(), "no version without its audit record");
    assert_eq!(all_keys(s).await, before, "no re-wrap without its audit record");
    assert_eq!(s.get_meta(KCV_META).await.unwrap().unwrap(), b"kcv-old");
    s.set_audit_chainer(Arc::new(TestChainer));

    assert!(s.kek_versions().await.unwrap().is_empty());
    let n = audited!(s, ["kek_rotate"], s.rotate_kek(v(1), prefixing("v1|"), vec![ev("kek_rotate")]).await.unwrap());
    assert_eq!(n, 3);
    assert_eq!(s.kek_versions().await.unwrap(), [v(1)]);
    for k in all_keys(s).await {
        assert_eq!((k.kek_version, k.wrapped), (1, format!("v1|wrapped:{}", k.key_id).into_bytes()));
    }

    // The re-wrapper sees each key as stored.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let observe: Rewrapper = Box::new(move |k: &KeyRecord| {
        log.lock().unwrap().push(k.clone());
        Ok([b"v2|".as_slice(), &k.wrapped].concat())
    });
    assert_eq!(s.rotate_kek(v(2), observe, vec![]).await.unwrap(), 3);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    let at_v1 = {
        let mut k = all_keys(s).await;
        for k in &mut k {
            k.kek_version = 1;
            k.wrapped = k.wrapped[3..].to_vec();
        }
        k
    };
    assert_eq!(seen, at_v1);
    assert_eq!(s.kek_versions().await.unwrap(), [v(1), v(2)], "ordered by version");
    let at_v2 = all_keys(s).await;
    assert!(at_v2.iter().all(|k| k.kek_version == 2));

    // A version is recorded once; a failing re-wrap leaves every key and version as it was.
    let again = audited!(s, [], s.rotate_kek(v(2), prefixing("v2'|"), vec![ev("kek_rotate")]).await);
    assert!(again.is_err(), "KEK version 2 recorded twice");
    let broken = audited!(s, [], s.rotate_kek(v(3), failing_on("k2"), vec![ev("kek_rotate")]).await);
    assert!(broken.is_err());
    assert_eq!(s.kek_versions().await.unwrap(), [v(1), v(2)]);
    assert_eq!(all_keys(s).await, at_v2, "partial re-wrap rolled back");

    // Master change: every key re-wrapped (KEK version kept) and the check value replaced.
    let n = audited!(
        s,
        ["master_change"],
        s.change_master(b"kcv-new".to_vec(), prefixing("m|"), vec![ev("master_change")]).await.unwrap()
    );
    assert_eq!(n, 3);
    let changed = all_keys(s).await;
    for (new, old) in changed.iter().zip(&at_v2) {
        assert_eq!(new.kek_version, old.kek_version);
        assert_eq!(new.wrapped, [b"m|".as_slice(), &old.wrapped].concat());
    }
    assert_eq!(s.get_meta(KCV_META).await.unwrap().unwrap(), b"kcv-new");
    let broken =
        audited!(s, [], s.change_master(b"kcv-bad".to_vec(), failing_on("k3"), vec![ev("master_change")]).await);
    assert!(broken.is_err());
    assert_eq!(all_keys(s).await, changed, "failed master change re-wrapped nothing");
    assert_eq!(s.get_meta(KCV_META).await.unwrap().unwrap(), b"kcv-new", "check value kept");
    assert_eq!(s.kek_versions().await.unwrap(), [v(1), v(2)]);
}

/// A re-encryption job: successors, the resumable cursor, version-checked reseals, and
/// the retirement of the old keys.
pub async fn reencryption(s: &dyn Store) {
    s.create_collection(collection("c"), vec![]).await.unwrap();
    s.create_collection(collection("c2"), vec![]).await.unwrap();
    let d1 = s.insert_document(doc("c", "d1", Some("sub"), b"old1"), vec![], vec![]).await.unwrap();
    let d2 = s.insert_document(doc("c", "d2", None, b"old2"), vec![], vec![]).await.unwrap();
    let e1 = s.insert_document(doc("c2", "e1", None, b"olde"), vec![], vec![]).await.unwrap();
    let d3 = s.insert_document(doc("c", "d3", None, b"old3"), vec![], vec![]).await.unwrap();
    let (kr, kc, ks) =
        (key("kr", KeyKind::Root, "root"), key("kc", KeyKind::Collection, "c"), key("ks", KeyKind::Subject, "hs"));
    for k in [&kr, &kc, &ks] {
        s.insert_key(k.clone(), vec![]).await.unwrap();
    }

    // documents_after: every collection, in seq order, paged.
    assert_eq!(seqs(&s.documents_after(0, 10).await.unwrap()), [d1.seq, d2.seq, e1.seq, d3.seq]);
    assert_eq!(seqs(&s.documents_after(d1.seq, 2).await.unwrap()), [d2.seq, e1.seq]);
    assert!(s.documents_after(d3.seq, 10).await.unwrap().is_empty());
    let first = s.documents_after(0, 1).await.unwrap().remove(0);
    assert_eq!((first.id.as_str(), first.body.as_slice(), first.version), ("d1", b"old1".as_slice(), 1));

    assert_eq!(s.reencrypt_cursor().await.unwrap(), None, "no job yet");
    let successors = || {
        let mut kc2 = key("kc2", KeyKind::Collection, "c");
        kc2.created_at = t(10);
        vec![("kc".to_owned(), kc2), ("ks".to_owned(), key("ks2", KeyKind::Subject, "hs"))]
    };
    let closed = s.start_reencrypt(successors(), vec![ev("reencrypt_start")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert_eq!(s.reencrypt_cursor().await.unwrap(), None);
    assert!(s.get_key("kc2").await.unwrap().is_none() && stored(s, "kc").await.successor.is_none());
    s.set_audit_chainer(Arc::new(TestChainer));

    // A start that fails part-way (a successor id already taken) leaves nothing behind.
    let clash = vec![
        ("kc".to_owned(), key("kc2", KeyKind::Collection, "c")),
        ("ks".to_owned(), key("kr", KeyKind::Subject, "hs")),
    ];
    let r = audited!(s, [], s.start_reencrypt(clash, vec![ev("reencrypt_start")]).await);
    assert!(r.is_err(), "successor id clash accepted");
    assert_eq!(s.reencrypt_cursor().await.unwrap(), None);
    assert!(s.get_key("kc2").await.unwrap().is_none());
    assert_eq!(s.current_key(KeyKind::Collection, "c").await.unwrap().unwrap(), kc);

    audited!(s, ["reencrypt_start"], s.start_reencrypt(successors(), vec![ev("reencrypt_start")]).await.unwrap());
    assert_eq!(s.reencrypt_cursor().await.unwrap(), Some(0), "the job starts at seq 0");
    assert_eq!(
        s.current_key(KeyKind::Collection, "c").await.unwrap().unwrap(),
        successors()[0].1,
        "new records use the successor"
    );
    assert_eq!(s.current_key(KeyKind::Subject, "hs").await.unwrap().unwrap().key_id, "ks2");
    assert_eq!(stored(s, "kc").await.successor.as_deref(), Some("kc2"), "the old key stays readable");
    assert_eq!(stored(s, "ks").await.successor.as_deref(), Some("ks2"));
    assert_eq!(s.current_key(KeyKind::Root, "root").await.unwrap().unwrap(), kr, "keys not listed keep going");
    let running = audited!(
        s,
        [],
        s.start_reencrypt(vec![("kr".to_owned(), key("kr2", KeyKind::Root, "root"))], vec![ev("reencrypt_start")])
            .await
    );
    assert!(matches!(running, Err(StoreError::InUse(_))), "second job while one runs: {running:?}");
    assert!(s.get_key("kr2").await.unwrap().is_none());
    assert_eq!(s.current_key(KeyKind::Root, "root").await.unwrap().unwrap(), kr);

    // Reseals apply only to documents still at the version read; the cursor moves with them.
    let reseal = |d: &DocumentRecord, version: u64, body: &[u8]| Reseal { seq: d.seq, version, body: body.to_vec() };
    s.apply_reseal(vec![reseal(&d1, 1, b"new1"), reseal(&d2, 0, b"stale")], d2.seq).await.unwrap();
    assert_eq!(s.reencrypt_cursor().await.unwrap(), Some(d2.seq));
    assert_eq!(body(s, "c", "d1").await.unwrap(), (1, b"new1".to_vec()), "re-sealed, version unchanged");
    assert_eq!(body(s, "c", "d2").await.unwrap(), (1, b"old2".to_vec()), "a reseal for another version is skipped");
    let moved = DocumentRecord { body: b"client".to_vec(), ..d3.clone() };
    s.replace_document(moved, 1, vec![], vec![]).await.unwrap();
    s.apply_reseal(vec![reseal(&e1, 1, b"newe"), reseal(&d3, 1, b"new3")], d3.seq).await.unwrap();
    assert_eq!(
        body(s, "c", "d3").await.unwrap(),
        (2, b"client".to_vec()),
        "a document written since is not overwritten"
    );
    assert_eq!(body(s, "c2", "e1").await.unwrap(), (1, b"newe".to_vec()));
    assert_eq!(s.reencrypt_cursor().await.unwrap(), Some(d3.seq));
    // The cursor can go round again (an empty batch).
    s.apply_reseal(vec![], 0).await.unwrap();
    assert_eq!(s.reencrypt_cursor().await.unwrap(), Some(0));

    let retired = audited!(s, ["reencrypt_finish"], s.finish_reencrypt(vec![ev("reencrypt_finish")]).await.unwrap());
    assert_eq!(retired, 2);
    assert_eq!(s.reencrypt_cursor().await.unwrap(), None, "the job is over");
    assert!(s.get_key("kc").await.unwrap().is_none() && s.get_key("ks").await.unwrap().is_none(), "old keys deleted");
    assert_eq!(stored(s, "kc2").await, successors()[0].1);
    assert_eq!(stored(s, "kr").await, kr);
    let want = HashMap::from([(KeyKind::Root, 1), (KeyKind::Collection, 1), (KeyKind::Subject, 1)]);
    assert_eq!(counts(s).await, want);
    // The next job may start once this one has ended.
    s.start_reencrypt(vec![], vec![]).await.unwrap();
    assert_eq!(s.reencrypt_cursor().await.unwrap(), Some(0));
    assert_eq!(s.finish_reencrypt(vec![]).await.unwrap(), 0, "nothing to retire");
    assert_eq!(s.reencrypt_cursor().await.unwrap(), None);
}

/// Crypto-shredding: the subject's documents in every collection, its keys (old and new),
/// and a ledger entry, in one transaction.
pub async fn erasure(s: &dyn Store) {
    for c in ["a", "b"] {
        s.create_collection(collection(c), vec![]).await.unwrap();
    }
    s.insert_document(doc("a", "x1", Some("s1"), b"1"), vec![entry("f", 1)], vec![]).await.unwrap();
    s.insert_document(doc("a", "x2", Some("s2"), b"2"), vec![entry("f", 1)], vec![]).await.unwrap();
    s.insert_document(doc("b", "y1", Some("s1"), b"3"), vec![entry("f", 1)], vec![]).await.unwrap();
    s.insert_document(doc("b", "y2", None, b"4"), vec![entry("f", 1)], vec![]).await.unwrap();
    for k in
        [key("ks1", KeyKind::Subject, "h1"), key("ks2", KeyKind::Subject, "h2"), key("kc", KeyKind::Collection, "h1")]
    {
        s.insert_key(k, vec![]).await.unwrap();
    }
    // Mid re-encryption the subject has an old and a new key: both must go.
    s.start_reencrypt(vec![("ks1".to_owned(), key("ks1b", KeyKind::Subject, "h1"))], vec![]).await.unwrap();
    let s1 = SubjectId::parse("s1").unwrap();
    assert!(s.erasure_ledger().await.unwrap().is_empty());

    let closed = s.erase_subject(erasure_of(&s1, "h1", t(7)), vec![ev("erase")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert_eq!(s.count_subject_documents(&s1).await.unwrap(), 2, "nothing erased without its audit record");
    assert!(s.get_key("ks1").await.unwrap().is_some() && s.get_key("ks1b").await.unwrap().is_some());
    assert!(s.erasure_ledger().await.unwrap().is_empty());
    s.set_audit_chainer(Arc::new(TestChainer));

    let n = audited!(s, ["erase"], s.erase_subject(erasure_of(&s1, "h1", t(7)), vec![ev("erase")]).await.unwrap());
    assert_eq!(n, 2, "documents erased");
    assert_eq!(s.count_subject_documents(&s1).await.unwrap(), 0);
    assert!(body(s, "a", "x1").await.is_none() && body(s, "b", "y1").await.is_none());
    assert!(body(s, "a", "x2").await.is_some() && body(s, "b", "y2").await.is_some(), "other subjects stay");
    for c in ["a", "b"] {
        let q = DocumentQuery {
            collection: CollectionName::parse(c).unwrap(),
            filters: vec![entry("f", 1)],
            subject_id: None,
            after_seq: None,
            limit: 10,
        };
        let found: Vec<_> = s.query_documents(q).await.unwrap().into_iter().map(|d| d.id.to_string()).collect();
        assert_eq!(found, [if c == "a" { "x2" } else { "y2" }], "index entries of erased documents are gone");
    }
    let left: Vec<_> = s.documents_after(0, 10).await.unwrap().into_iter().map(|d| d.id.to_string()).collect();
    assert_eq!(left, ["x2", "y2"]);
    assert!(
        s.get_key("ks1").await.unwrap().is_none() && s.get_key("ks1b").await.unwrap().is_none(),
        "subject keys shredded"
    );
    assert!(s.current_key(KeyKind::Subject, "h1").await.unwrap().is_none());
    assert!(s.get_key("ks2").await.unwrap().is_some(), "another subject's key stays");
    assert!(s.get_key("kc").await.unwrap().is_some(), "a non-subject key with that owner stays");
    assert_eq!(s.erasure_ledger().await.unwrap(), [ErasureEntry { subject_hash: "h1".into(), erased_at: t(7) }]);

    // A subject with nothing stored is still recorded, after the first.
    let none = s.erase_subject(erasure_of(&SubjectId::parse("s9").unwrap(), "h9", t(8)), vec![]).await.unwrap();
    assert_eq!(none, 0);
    let ledger: Vec<_> = s.erasure_ledger().await.unwrap().into_iter().map(|e| (e.subject_hash, e.erased_at)).collect();
    assert_eq!(ledger, [("h1".to_owned(), t(7)), ("h9".to_owned(), t(8))]);
}

/// Whatever makes an unwrapped key in memory stale moves `Topic::Keys` by the time it
/// returns (nodes drop their cached keys then); a new key does not.
pub async fn key_invalidation(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    let keys = || s.invalidation().generation(rampart_store::Topic::Keys);
    let before = keys();
    for k in
        [key("k-root", KeyKind::Root, "root"), key("ks1", KeyKind::Subject, "h1"), key("kc", KeyKind::Collection, "c")]
    {
        s.insert_key(k, vec![]).await.unwrap();
    }
    assert_eq!(keys(), before, "a new key stales nothing");
    let g = keys();
    s.rotate_kek(KekVersion { version: 2, created_at: t(1) }, prefixing("v2|"), vec![]).await.unwrap();
    assert!(keys() > g, "a key-encrypting key rotation re-wraps every key");
    let g = keys();
    s.start_reencrypt(vec![("kc".to_owned(), key("kc2", KeyKind::Collection, "c"))], vec![]).await.unwrap();
    assert!(keys() > g, "a key given a successor");
    let g = keys();
    s.finish_reencrypt(vec![]).await.unwrap();
    assert!(keys() > g, "retired keys");
    let g = keys();
    s.erase_subject(erasure_of(&SubjectId::parse("s1").unwrap(), "h1", t(2)), vec![]).await.unwrap();
    assert!(keys() > g, "an erased subject's key is destroyed");
}

/// A change refused because of another change committed in the same transaction is
/// answered only after that commit: the loser of a race to create a subject's first key
/// finds the winner's key when it looks at once (it was answered `AlreadyExists` before the
/// commit and found nothing, so a document insert failed).
pub async fn refused_changes_see_what_refused_them(s: &dyn Store) {
    for round in 0..20 {
        let owner = format!("o{round}");
        let racers = (0..8)
            .map(|i| {
                let (id, owner) = (format!("k{round}-{i}"), owner.clone());
                Box::pin(async move {
                    match s.insert_key(key(&id, KeyKind::Subject, &owner), vec![]).await {
                        Ok(()) => (true, true),
                        Err(StoreError::AlreadyExists) => {
                            (false, s.current_key(KeyKind::Subject, &owner).await.unwrap().is_some())
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = (bool, bool)>>>
            })
            .collect();
        let results = super::all(racers).await;
        assert_eq!(results.iter().filter(|(won, _)| *won).count(), 1, "round {round}: one key wins");
        assert!(results.iter().all(|(_, seen)| *seen), "round {round}: a loser did not see the winner: {results:?}");
    }
}
