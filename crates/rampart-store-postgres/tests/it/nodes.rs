//! Several nodes on one database: the check-then-act races of the documents, keys and
//! privacy stores. A "transaction in flight on another node" is held open on a raw
//! connection, so each race is played in the one order that would break a naive port.

use std::sync::mpsc;
use std::time::Duration;

use rampart_store::{
    CollectionRecord, CollectionStore, DocumentRecord, DocumentStore, KeyKind, KeyRecord, KeyStore, MetaStore, Reseal,
    Rewrapper, StoreError,
};
use rampart_testkit::conformance::{ev, t};
use rampart_testkit::postgres::{off_runtime, server_url, with_database, PgDatabase};
use rampart_types::{CollectionName, DocumentId};

use super::node;

/// How long a racing call gets to reach its lock wait before the held transaction ends.
const SETTLE: Duration = Duration::from_millis(400);

/// A transaction held open on a connection of its own (another node's write in flight):
/// it runs `statements`, then waits to be committed.
struct Held {
    commit: mpsc::Sender<()>,
    done: std::thread::JoinHandle<()>,
}

impl Held {
    fn begin(url: &str, statements: &[&str]) -> Self {
        let (url, statements) = (url.to_owned(), statements.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        let (ready_tx, ready) = mpsc::channel();
        let (commit, wait) = mpsc::channel::<()>();
        let done = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut tx = client.transaction().unwrap();
            for s in &statements {
                tx.batch_execute(s).unwrap();
            }
            ready_tx.send(()).unwrap();
            let _ = wait.recv();
            tx.commit().unwrap();
        });
        ready.recv().expect("the held transaction started");
        Self { commit, done }
    }

    fn commit(self) {
        self.commit.send(()).unwrap();
        self.done.join().unwrap();
    }
}

fn collection(name: &str) -> CollectionRecord {
    CollectionRecord {
        name: CollectionName::parse(name).unwrap(),
        indexes: vec![],
        pii_fields: vec![],
        retention_days: None,
        encrypted: true,
        created_at: t(0),
        updated_at: t(0),
    }
}

fn doc(c: &str, id: &str, body: &[u8]) -> DocumentRecord {
    DocumentRecord {
        collection: CollectionName::parse(c).unwrap(),
        id: DocumentId::parse(id).unwrap(),
        version: 1,
        subject_id: None,
        body: body.to_vec(),
        created_at: t(0),
        updated_at: t(0),
        seq: 0,
    }
}

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

async fn body_of(s: &impl DocumentStore, c: &str, id: &str) -> Option<Vec<u8>> {
    let found = s.get_document(&CollectionName::parse(c).unwrap(), &DocumentId::parse(id).unwrap()).await.unwrap();
    found.map(|d| d.body)
}

/// The re-encryption pitfall: seqs are drawn at insert, but commits come in any order. A
/// row drawn a lower seq and committed after a scan passed that seq would never be
/// re-sealed (and then lose its key). The scan must wait for it.
#[tokio::test]
async fn reencryption_does_not_pass_a_document_committed_late_with_a_lower_seq() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    a.create_collection(collection("c"), vec![]).await.unwrap();
    // Another node's insert draws its seq, and its transaction is still open.
    let late = Held::begin(
        &db.url,
        &["INSERT INTO documents (collection, id, version, body, created_at, updated_at)
           VALUES ('c', 'late', 1, 'old', 0, 0)"],
    );
    let early = a.insert_document(doc("c", "early", b"old"), vec![], vec![]).await.unwrap();
    b.start_reencrypt(vec![], vec![ev("reencrypt_start")]).await.unwrap();

    // The re-encryption loop on node B: page by seq, re-seal, advance the cursor.
    let worker = b.clone();
    let job = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(cursor) = worker.reencrypt_cursor().await.unwrap() {
            let docs = worker.documents_after(cursor, 100).await.unwrap();
            let Some(last) = docs.last().map(|d| d.seq) else { break };
            let batch = docs.iter().map(|d| Reseal { seq: d.seq, version: d.version, body: b"new".to_vec() }).collect();
            seen.extend(docs.iter().map(|d| d.id.to_string()));
            worker.apply_reseal(batch, last).await.unwrap();
        }
        seen
    });
    tokio::time::sleep(SETTLE).await;
    assert!(!job.is_finished(), "the scan went past a seq whose row had not committed yet");
    late.commit();
    let mut seen = tokio::time::timeout(Duration::from_secs(10), job).await.unwrap().unwrap();
    seen.sort();
    assert_eq!(seen, ["early", "late"], "every document was visited");
    assert!(early.seq > 0);
    assert_eq!(body_of(&a, "c", "late").await.unwrap(), b"new", "the late document was re-sealed");
    assert_eq!(body_of(&a, "c", "early").await.unwrap(), b"new");
}

/// Two nodes starting a re-encryption at once: one job starts, the other is told one runs
/// (not a constraint error), and each old key has exactly the winner's successor.
#[tokio::test]
async fn two_nodes_starting_a_reencryption_together_start_one_job() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    a.insert_key(key("kc", KeyKind::Collection, "c"), vec![]).await.unwrap();
    // A writer elsewhere holds the key row, so both starts are in flight together.
    let holder = Held::begin(&db.url, &["SELECT 1 FROM data_keys WHERE key_id = 'kc' FOR UPDATE"]);
    let start = |s: rampart_store_postgres::PostgresStore, new: &'static str| {
        tokio::spawn(async move {
            let successors = vec![("kc".to_owned(), key(new, KeyKind::Collection, "c"))];
            s.start_reencrypt(successors, vec![ev("reencrypt_start")]).await
        })
    };
    let (on_a, on_b) = (start(a.clone(), "kc-a"), start(b.clone(), "kc-b"));
    tokio::time::sleep(SETTLE).await;
    holder.commit();
    let (on_a, on_b) = (on_a.await.unwrap(), on_b.await.unwrap());
    let (winner, loser) = match (&on_a, &on_b) {
        (Ok(()), Err(StoreError::InUse(_))) => ("kc-a", "kc-b"),
        (Err(StoreError::InUse(_)), Ok(())) => ("kc-b", "kc-a"),
        other => panic!("one start must win and the other be told a job runs: {other:?}"),
    };
    assert_eq!(a.current_key(KeyKind::Collection, "c").await.unwrap().unwrap().key_id, winner);
    assert_eq!(a.get_key("kc").await.unwrap().unwrap().successor.as_deref(), Some(winner));
    assert!(a.get_key(loser).await.unwrap().is_none(), "the losing start left nothing behind");
    assert_eq!(b.reencrypt_cursor().await.unwrap(), Some(0));
}

/// A master change re-wraps every key; a key another node is inserting meanwhile must be
/// among them, or it stays wrapped under the old master and is lost with it.
#[tokio::test]
async fn a_master_change_rewraps_a_key_inserted_meanwhile_on_another_node() {
    let db = PgDatabase::create();
    let a = node(&db, "a").await;
    for k in [key("k1", KeyKind::Root, "root"), key("k2", KeyKind::Collection, "c")] {
        a.insert_key(k, vec![]).await.unwrap();
    }
    a.init_meta("master_key_check_value", b"old".to_vec()).await.unwrap();
    let late = Held::begin(
        &db.url,
        &["INSERT INTO data_keys (key_id, kind, owner, kek_version, wrapped, created_at)
           VALUES ('k3', 'subject', 'h', 1, 'wrapped:k3', 0)"],
    );
    let changer = a.clone();
    let change = tokio::spawn(async move {
        let rewrap: Rewrapper = Box::new(|k: &KeyRecord| Ok([b"m|".as_slice(), &k.wrapped].concat()));
        changer.change_master(b"new".to_vec(), rewrap, vec![ev("master_change")]).await
    });
    tokio::time::sleep(SETTLE).await;
    late.commit();
    let n = change.await.unwrap().unwrap();
    assert_eq!(n, 3, "the key committed meanwhile was re-wrapped too");
    for id in ["k1", "k2", "k3"] {
        let k = a.get_key(id).await.unwrap().unwrap();
        assert_eq!(k.wrapped, format!("m|wrapped:{id}").into_bytes(), "{id} left under the old master");
    }
}

/// A delete at a version must not remove a document another node replaced meanwhile.
#[tokio::test]
async fn a_versioned_delete_loses_to_a_replace_committed_meanwhile() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    a.create_collection(collection("c"), vec![]).await.unwrap();
    a.insert_document(doc("c", "x", b"v1"), vec![], vec![]).await.unwrap();
    let replace =
        Held::begin(&db.url, &["UPDATE documents SET version = 2, body = 'v2' WHERE collection = 'c' AND id = 'x'"]);
    let deleter = b.clone();
    let delete = tokio::spawn(async move {
        let (c, id) = (CollectionName::parse("c").unwrap(), DocumentId::parse("x").unwrap());
        deleter.delete_document(&c, &id, Some(1), vec![ev("document_delete")]).await
    });
    tokio::time::sleep(SETTLE).await;
    replace.commit();
    let deleted = delete.await.unwrap();
    assert!(matches!(deleted, Err(StoreError::VersionMismatch)), "{deleted:?}");
    assert_eq!(body_of(&a, "c", "x").await.unwrap(), b"v2", "the replaced document stays");
}

/// Replaces from the same version on two nodes: exactly one wins each round.
#[tokio::test]
async fn concurrent_replaces_on_two_nodes_let_exactly_one_win() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    a.create_collection(collection("c"), vec![]).await.unwrap();
    a.insert_document(doc("c", "x", b"v1"), vec![], vec![]).await.unwrap();
    for version in 1..=20u64 {
        let next = |body: &str| DocumentRecord { body: body.as_bytes().to_vec(), ..doc("c", "x", b"") };
        let (on_a, on_b) = tokio::join!(
            a.replace_document(next("a"), version, vec![], vec![]),
            b.replace_document(next("b"), version, vec![], vec![])
        );
        let wins = [&on_a, &on_b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {version}: {on_a:?} / {on_b:?}");
        let lost = if on_a.is_ok() { on_b } else { on_a };
        assert!(matches!(lost, Err(StoreError::VersionMismatch)), "{lost:?}");
    }
    let stored = a.get_document(&CollectionName::parse("c").unwrap(), &DocumentId::parse("x").unwrap()).await;
    assert_eq!(stored.unwrap().unwrap().version, 21);
}

/// Inserts on one node racing the collection's deletion on another leave no document
/// behind a deleted collection.
#[tokio::test]
async fn inserts_racing_a_collection_delete_leave_no_orphan() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    for round in 0..10 {
        a.create_collection(collection("c"), vec![]).await.unwrap();
        let name = CollectionName::parse("c").unwrap();
        let inserts = async {
            let mut ok = 0;
            for i in 0..5 {
                match b.insert_document(doc("c", &format!("d{round}-{i}"), b"x"), vec![], vec![]).await {
                    Ok(_) => ok += 1,
                    Err(StoreError::NotFound) => {}
                    Err(e) => panic!("an insert racing a delete: {e:?}"),
                }
            }
            ok
        };
        let (_, deleted) = tokio::join!(inserts, a.delete_collection(&name, vec![]));
        deleted.unwrap();
        let q = rampart_store::DocumentQuery {
            collection: name,
            filters: vec![],
            subject_id: None,
            after_seq: None,
            limit: 100,
        };
        let left = b.query_documents(q).await.unwrap();
        let left_after: Vec<_> = left.iter().map(|d| d.id.to_string()).collect();
        // Inserts after the delete find no collection; none survives it.
        assert!(left_after.is_empty(), "round {round}: documents outlived their collection: {left_after:?}");
    }
}

/// Listing order must not depend on the database's collation: the ordering conformance
/// case, on a database whose default collation is ICU `en-US` (which sorts `a_b` before
/// `a-b` before `a1`, and `k1` after `K-2`).
#[tokio::test]
async fn listings_keep_byte_order_under_an_icu_collation() {
    let admin = server_url();
    let name = format!("t_icu_{}", std::process::id());
    let create =
        format!("CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'");
    off_runtime(&admin, move |c| c.batch_execute(&create));
    struct DropDatabase(String, String);
    impl Drop for DropDatabase {
        fn drop(&mut self) {
            let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.1);
            off_runtime(&self.0, move |c| c.batch_execute(&statement));
        }
    }
    let _guard = DropDatabase(admin.clone(), name.clone());
    let url = with_database(&admin, &name);
    let check = url.clone();
    off_runtime(&check, |c| {
        let first: String = c.query_one("SELECT x FROM (VALUES ('a-b'), ('a_b')) v(x) ORDER BY x LIMIT 1", &[])?.get(0);
        assert_eq!(first, "a_b", "the database's own collation is not bytewise (else this test proves nothing)");
        Ok(())
    });
    let options = rampart_store_postgres::PostgresOptions::default();
    let store = rampart_store_postgres::PostgresStore::open(&url, options).await.unwrap();
    rampart_testkit::conformance::ordering_and_edges(&store).await;
}

/// An erasure while another node gives the subject's key a successor (a re-encryption
/// start in flight): both keys go, none survives the erasure.
#[tokio::test]
async fn an_erasure_takes_a_subject_key_added_meanwhile_on_another_node() {
    use rampart_store::PrivacyStore;
    let db = PgDatabase::create();
    let a = node(&db, "a").await;
    a.insert_key(key("ks1", KeyKind::Subject, "h1"), vec![]).await.unwrap();
    a.insert_key(key("ks2", KeyKind::Subject, "h2"), vec![]).await.unwrap();
    let successor = Held::begin(
        &db.url,
        &[
            "UPDATE data_keys SET successor = 'ks1b' WHERE key_id = 'ks1'",
            "INSERT INTO data_keys (key_id, kind, owner, kek_version, wrapped, created_at)
             VALUES ('ks1b', 'subject', 'h1', 1, 'wrapped:ks1b', 0)",
        ],
    );
    let eraser = a.clone();
    let erase = tokio::spawn(async move {
        let subject = rampart_types::SubjectId::parse("s1").unwrap();
        eraser
            .erase_subject(rampart_testkit::conformance::erasure_of(&subject, "h1", t(5)), vec![ev("subject_erase")])
            .await
    });
    tokio::time::sleep(SETTLE).await;
    successor.commit();
    erase.await.unwrap().unwrap();
    assert!(a.get_key("ks1").await.unwrap().is_none());
    assert!(a.get_key("ks1b").await.unwrap().is_none(), "the successor added meanwhile outlived the erasure");
    assert!(a.get_key("ks2").await.unwrap().is_some(), "another subject's key stays");
}
