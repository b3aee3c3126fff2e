//! The store conformance suite against PostgreSQL, plus PostgreSQL-specific checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rampart_store_postgres::{PostgresOptions, PostgresStore};
use rampart_testkit::postgres::PgDatabase;

mod nodes;

async fn fresh() -> (PgDatabase, PostgresStore) {
    let db = PgDatabase::create();
    let store = PostgresStore::open(&db.url, PostgresOptions::default()).await.unwrap();
    (db, store)
}

// The whole conformance suite, one test per case, each on a fresh database.
rampart_testkit::conformance_suite!(fresh().await);

mod cross_node;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_store::{
    AuditStore, CollectionStore, LeaderLease, MetaStore, RoleStore, SecurityStore, SessionStore, StoreError, Topic,
    UserStore,
};
use rampart_testkit::conformance::{ev, name, seed_roles, session, user, TestChainer};
use rampart_testkit::postgres::off_runtime;

async fn node(db: &PgDatabase, id: &str) -> PostgresStore {
    let options = PostgresOptions { node: id.to_owned(), ..PostgresOptions::default() };
    let store = PostgresStore::open(&db.url, options).await.unwrap();
    store.set_audit_chainer(Arc::new(TestChainer));
    store
}

/// Polls `done` every 5 ms until it holds or `bound` has passed; the time it took.
async fn within(bound: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if done() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let db = PgDatabase::create();
    let (a, b, c) = tokio::join!(node(&db, "a"), node(&db, "b"), node(&db, "c"));
    seed_roles(&a).await;
    for s in [&a, &b, &c] {
        assert_eq!(s.list_roles().await.unwrap().len(), 2, "every node sees one schema and its rows");
    }
    let url = db.url.clone();
    off_runtime(&url, |client| {
        let n: i64 = client.query_one("SELECT count(*) FROM schema_migrations", &[])?.get(0);
        let versions: i64 = client.query_one("SELECT count(DISTINCT version) FROM schema_migrations", &[])?.get(0);
        assert_eq!(n, versions, "each migration recorded once");
        assert!(n >= 1);
        Ok(())
    });
}

#[tokio::test]
async fn a_change_on_one_node_stales_the_other_nodes_caches_within_a_second() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    seed_roles(&a).await;
    a.create_user(user("alice", "viewer"), vec![ev("user_create")]).await.unwrap();
    a.create_session(session("s1", "alice", 0), 10, vec![]).await.unwrap();
    let feed = b.invalidation();
    // What the user's creation announced has reached node B by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A session insert stales nothing and a touch is quiet, on the other node as on this one.
    let before = feed.generation(Topic::Auth);
    a.touch_session(&rampart_types::SessionId::from_stored("s1".into()), rampart_testkit::conformance::t(5))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(feed.generation(Topic::Auth), before, "a quiet touch must not stale other nodes' caches");
    // A logout on node A: node B's session cache must drop what it holds.
    let ended = a.delete_user_sessions(&name("alice"), None, vec![ev("session_revoke")]).await.unwrap();
    assert_eq!(ended, 1);
    let took = within(Duration::from_secs(1), || feed.generation(Topic::Auth) > before).await;
    assert!(took.is_some(), "node B heard of node A's logout within 1 s");
    // Documents and collections reach it too.
    let docs = feed.generation(Topic::Documents);
    let collection = rampart_store::CollectionRecord {
        name: rampart_types::CollectionName::parse("notes").unwrap(),
        indexes: vec![],
        pii_fields: vec![],
        retention_days: None,
        encrypted: false,
        created_at: rampart_testkit::conformance::t(0),
        updated_at: rampart_testkit::conformance::t(0),
    };
    a.create_collection(collection, vec![]).await.unwrap();
    assert!(within(Duration::from_secs(1), || feed.generation(Topic::Documents) > docs).await.is_some());
    // So do address blocks, added and lifted.
    for add in [true, false] {
        let blocks = feed.generation(Topic::Blocks);
        if add {
            let block = rampart_store::IpBlock {
                cidr: "192.0.2.9/32".into(),
                reason: "test".into(),
                created_at: rampart_testkit::conformance::t(0),
                expires_at: rampart_testkit::conformance::t(3_600_000),
                created_by: "admin".into(),
            };
            a.add_block(block, vec![ev("ip_block")]).await.unwrap();
        } else {
            assert!(a.remove_block("192.0.2.9/32", vec![ev("ip_unblock")]).await.unwrap());
        }
        let took = within(Duration::from_secs(1), || feed.generation(Topic::Blocks) > blocks).await;
        assert!(took.is_some(), "node B heard of the block change (add: {add}) within 1 s");
    }
    // And a subject's key destroyed on A: B drops the unwrapped keys it holds.
    let subject_key = rampart_store::KeyRecord {
        key_id: "ks".into(),
        kind: rampart_store::KeyKind::Subject,
        owner: "h".into(),
        kek_version: 1,
        wrapped: b"w".to_vec(),
        created_at: rampart_testkit::conformance::t(0),
        successor: None,
    };
    rampart_store::KeyStore::insert_key(&a, subject_key, vec![]).await.unwrap();
    let keys = feed.generation(Topic::Keys);
    let subject = rampart_types::SubjectId::parse("s").unwrap();
    let at = rampart_testkit::conformance::t(1);
    rampart_store::PrivacyStore::erase_subject(
        &a,
        rampart_testkit::conformance::erasure_of(&subject, "h", at),
        vec![ev("subject_erase")],
    )
    .await
    .unwrap();
    let took = within(Duration::from_secs(1), || feed.generation(Topic::Keys) > keys).await;
    assert!(took.is_some(), "node B heard of the destroyed key within 1 s");
}

#[tokio::test]
async fn each_node_appends_to_its_own_chain() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    let append = |s: PostgresStore, kind: &'static str| async move {
        for _ in 0..20 {
            s.append_audit(vec![ev(kind), ev(kind)]).await.unwrap();
        }
    };
    tokio::join!(append(a.clone(), "on_a"), append(b.clone(), "on_b"));
    for (s, kind) in [(&a, "on_a"), (&b, "on_b")] {
        let records = s.read_audit(0, 1000).await.unwrap();
        assert_eq!(records.len(), 40);
        assert!(records.iter().all(|r| r.event.event_type == kind), "a node reads its own chain");
        let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "no gaps, no interleaving");
        assert!(records.windows(2).all(|w| w[1].prev_hash == w[0].hash), "linked");
        assert_eq!(s.audit_head().await.unwrap().unwrap().seq, 40);
    }
}

#[tokio::test]
async fn a_node_comes_back_after_losing_its_connections() {
    let db = PgDatabase::create();
    let s = node(&db, "a").await;
    seed_roles(&s).await;
    s.create_user(user("before", "viewer"), vec![ev("user_create")]).await.unwrap();
    // What a restart or failover of the database does to every open connection.
    let name_of_db = db.url.rsplit('/').next().unwrap().to_owned();
    off_runtime(&rampart_testkit::postgres::server_url(), move |c| {
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name_of_db],
        )
        .map(|_| ())
    });
    // The first attempts may fail, but only as retryable; then writes and reads work again.
    let mut written = false;
    for attempt in 0..20 {
        match s.create_user(user(&format!("after{attempt}"), "viewer"), vec![ev("user_create")]).await {
            Ok(()) => {
                written = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("a lost connection must read as retryable, not {e:?}"),
        }
    }
    assert!(written, "the writer reconnected");
    let mut read = None;
    for _ in 0..20 {
        match s.get_user(&name("before")).await {
            Ok(u) => {
                read = u;
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("a lost connection must read as retryable, not {e:?}"),
        }
    }
    assert!(read.is_some(), "readers reconnected and the acknowledged user is there");
    let n = s.count_users().await.unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_retryable_error() {
    let err = PostgresStore::open("postgres://nobody@127.0.0.1:1/none", PostgresOptions::default()).await.err();
    assert!(matches!(err, Some(StoreError::Unavailable(_))), "{err:?}");
}

#[tokio::test]
async fn one_node_holds_the_lease_and_it_moves_when_the_holder_dies() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    let (lease_a, lease_b) = (a.lease(), b.lease());
    assert!(lease_a.held().await, "a free lease is taken");
    assert!(lease_a.held().await, "and kept");
    assert!(!lease_b.held().await, "while held, no other node has it");
    // The holder dies: its connections close (what kill -9 of the node does to them).
    let name_of_db = db.url.rsplit('/').next().unwrap().to_owned();
    off_runtime(&rampart_testkit::postgres::server_url(), move |c| {
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')",
            &[&name_of_db],
        )
        .map(|_| ())
    });
    let mut moved = false;
    for _ in 0..50 {
        if lease_b.held().await {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "another node takes the lease once the holder is gone");
    assert!(!lease_a.held().await, "the old holder knows it lost it");
}

/// `url` with `localhost` for the address (the name in the server's certificate) and `tls`.
fn tls_url(url: &str, tls: &str) -> String {
    format!("{}?{tls}", url.replace("127.0.0.1", "localhost"))
}

#[tokio::test]
async fn tls_to_the_database_verifies_the_server() {
    let db = PgDatabase::create();
    let (ca, other) = rampart_testkit::postgres::server_ca();
    let url = tls_url(&db.url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let s = PostgresStore::open(&url, PostgresOptions::default()).await.unwrap();
    s.set_audit_chainer(Arc::new(TestChainer));
    s.init_meta("over-tls", b"1".to_vec()).await.unwrap();
    // The server sees every connection of this node encrypted.
    let db_name = db.url.rsplit('/').next().unwrap().to_owned();
    off_runtime(&rampart_testkit::postgres::server_url(), move |c| {
        let rows = c.query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
            &[&db_name],
        )?;
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r.get::<_, bool>(0)), "a connection of the node is not encrypted");
        Ok(())
    });
    // A server whose certificate another CA signed is refused, and so is TLS without a CA.
    let wrong = tls_url(&db.url, &format!("sslmode=verify-full&sslrootcert={other}"));
    let refused = PostgresStore::open(&wrong, PostgresOptions::default()).await.err();
    assert!(matches!(refused, Some(StoreError::Unavailable(_))), "{refused:?}");
    let no_ca = tls_url(&db.url, "sslmode=require");
    let refused = PostgresStore::open(&no_ca, PostgresOptions::default()).await.err();
    assert!(format!("{refused:?}").contains("sslrootcert"), "{refused:?}");
    // The name is checked too: the certificate names localhost and 127.0.0.1, not this.
    let wrong_name = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url.replace("127.0.0.1", "127.0.0.2"));
    let refused = PostgresStore::open(&wrong_name, PostgresOptions::default()).await.err();
    assert!(refused.is_some(), "a certificate for another name must not pass");
}
