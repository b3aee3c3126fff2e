//! The store conformance suite: the same behaviour asserted against every backend.
//! Each function takes a fresh, empty, migrated store. A backend runs all of them with one
//! line: `rampart_testkit::conformance_suite!(open_fresh_store());`, where the expression
//! yields `(guard, store)` (the guard, a temp dir or a database, lives as long as the test).

/// One `#[tokio::test]` per conformance case, in a `conformance` module, each opening a
/// fresh store with `$open`.
#[macro_export]
macro_rules! conformance_suite {
    ($open:expr) => {
        mod conformance {
            $crate::conformance_suite!(@cases $open;
                users user_auth_source sessions roles documents meta audit concurrent_writes invalidation
                audited_changes document_versions collections ordering_and_edges
                audit_queries audit_reanchor writer_stats
                data_keys kek_and_master reencryption erasure key_invalidation
                mfa_enrolment recovery_codes mfa_challenges jwt_signing_keys refresh_tokens refresh_concurrent_use
                alerts webhook_outbox ip_blocks login_history
                alert_folding_out_of_order client_text_with_nul listing_order
                login_delay login_delay_stale_holds login_delay_concurrent login_delay_forgetting
                verification_tokens subject_rights opt_out_bound erasure_respects_legal_holds refused_changes_see_what_refused_them
                legal_holds legal_holds_block_deletes retention_expiry retention_invalidation
                oidc_pending_logins external_identities
            );
        }
    };
    (@cases $open:expr; $($case:ident)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                #[allow(unused_imports)]
                use super::*;
                let (_guard, store) = $open;
                $crate::conformance::$case(&store).await;
            }
        )*
    };
}

use rampart_store::{
    CollectionRecord, DocumentQuery, DocumentRecord, IndexEntry, RoleRecord, SessionRecord, Store, StoreError,
    UserChange, UserRecord,
};
use rampart_types::{
    AuthSource, CollectionName, DocumentId, FieldPath, Permission, RoleName, SubjectId, Timestamp, Username,
};

/// Runs `$call` and asserts that exactly the audit events named in `$kinds` (by event type,
/// in order) joined the chain with it: `[]` for a refused change, which must leave no record.
/// Evaluates to the call's result.
macro_rules! audited {
    ($s:expr, $kinds:expr, $call:expr) => {{
        let before = $crate::conformance::audit_tail($s).await;
        let out = $call;
        let expected: &[&str] = &$kinds;
        let got = $crate::conformance::audited_since($s, before).await;
        assert_eq!(got, expected, "audit records written by `{}`", stringify!($call));
        out
    }};
}

// The cases beyond the originals, one file per aggregate (all share the helpers below).
mod audit_log;
mod content;
mod external;
mod keys;
mod mfa;
mod privacy;
mod retention;
mod security;
mod throttle;
pub use audit_log::{audit_queries, audit_reanchor, writer_stats};
pub use content::{audited_changes, collections, document_versions, ordering_and_edges};
pub use external::{external_identities, oidc_pending_logins};
pub use keys::{
    data_keys, erasure, kek_and_master, key_invalidation, reencryption, refused_changes_see_what_refused_them,
};
pub use mfa::{
    jwt_signing_keys, mfa_challenges, mfa_enrolment, recovery_codes, refresh_concurrent_use, refresh_tokens,
};
pub use privacy::{erasure_respects_legal_holds, opt_out_bound, subject_rights, verification_tokens};
pub use retention::{legal_holds, legal_holds_block_deletes, retention_expiry, retention_invalidation};
pub use security::{
    alert_folding_out_of_order, alerts, client_text_with_nul, ip_blocks, listing_order, login_history, webhook_outbox,
};
pub use throttle::{login_delay, login_delay_concurrent, login_delay_forgetting, login_delay_stale_holds};

/// Seq of the newest audit record (0 when the chain is empty).
pub(crate) async fn audit_tail(s: &dyn Store) -> i64 {
    s.read_audit(0, usize::MAX).await.unwrap().last().map_or(0, |r| r.seq)
}

/// Event types of the audit records after `seq`, in chain order.
pub(crate) async fn audited_since(s: &dyn Store, seq: i64) -> Vec<String> {
    s.read_audit(seq, usize::MAX).await.unwrap().into_iter().map(|r| r.event.event_type).collect()
}

/// An audit event of type `kind` (the type names the change it records).
pub fn ev(kind: &str) -> rampart_store::AuditEvent {
    event(kind, "operator", true, 0)
}

/// An erasure of `subject` (known as `hash`) at `at`, on an administrator's override.
pub fn erasure_of(subject: &SubjectId, hash: &str, at: Timestamp) -> rampart_store::Erasure {
    erasure_with(subject, hash, at, rampart_store::Verification::Override)
}

pub fn erasure_with(
    subject: &SubjectId,
    hash: &str,
    at: Timestamp,
    verification: rampart_store::Verification,
) -> rampart_store::Erasure {
    rampart_store::Erasure {
        subject: subject.clone(),
        subject_hash: hash.to_owned(),
        verification,
        request: rampart_store::PrivacyRequest {
            request_id: format!("erasure-{hash}-{}", at.as_millis()),
            kind: "gdpr_erasure".into(),
            subject_hash: hash.to_owned(),
            requested_by: "tester".into(),
            requested_at: at,
            records_deleted: 0,
            providers: vec![],
            status: String::new(),
            completed_at: None,
        },
        notices: vec![],
    }
}

pub fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_767_225_600_000 + ms)
}

/// Ids as a store holds them (the conformance cases use short readable ones).
pub(crate) fn sid(s: &str) -> rampart_types::SessionId {
    rampart_types::SessionId::from_stored(s.to_owned())
}

pub(crate) fn aid(s: &str) -> rampart_types::AlertId {
    rampart_types::AlertId::from_stored(s.to_owned())
}

pub fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

pub fn role(s: &str, perms: Vec<Permission>, builtin: bool) -> RoleRecord {
    RoleRecord {
        name: RoleName::parse(s).unwrap(),
        description: String::new(),
        permissions: perms,
        collections: None,
        builtin,
        created_at: t(0),
    }
}

pub fn user(s: &str, r: &str) -> UserRecord {
    UserRecord {
        username: name(s),
        password_hash: "$argon2id$stub".into(),
        role: RoleName::parse(r).unwrap(),
        disabled: false,
        mfa_enabled: false,
        auth_source: AuthSource::Local,
        created_at: t(0),
        updated_at: t(0),
    }
}

pub fn session(id: &str, u: &str, at: i64) -> SessionRecord {
    let mut hash = [0u8; 32];
    hash[..id.len().min(32)].copy_from_slice(&id.as_bytes()[..id.len().min(32)]);
    SessionRecord {
        id: sid(id),
        token_hash: hash,
        username: name(u),
        created_at: t(at),
        last_seen_at: t(at),
        expires_at: t(at + 3_600_000),
        ip_address: Some("127.0.0.1".into()),
        user_agent: None,
        assurance: rampart_store::Assurance::Password,
    }
}

pub async fn seed_roles(s: &dyn Store) {
    s.upsert_builtin_role(role("admin", Permission::ALL.to_vec(), true)).await.unwrap();
    s.upsert_builtin_role(role("viewer", vec![Permission::DocumentsRead], true)).await.unwrap();
}

pub async fn users(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("root", "admin"), vec![]).await.unwrap();
    assert!(matches!(s.create_user(user("root", "viewer"), vec![]).await, Err(StoreError::AlreadyExists)));
    assert!(matches!(s.create_user(user("x", "no-such-role"), vec![]).await, Err(StoreError::NotFound)));
    for n in ["b", "c", "a"] {
        s.create_user(user(n, "viewer"), vec![]).await.unwrap();
    }
    let page1 = s.list_users(None, 2).await.unwrap();
    let names: Vec<_> = page1.iter().map(|u| u.username.to_string()).collect();
    assert_eq!(names, ["a", "b"]);
    let page2 = s.list_users(Some(&name("b")), 10).await.unwrap();
    assert_eq!(page2.iter().map(|u| u.username.to_string()).collect::<Vec<_>>(), ["c", "root"]);
    assert_eq!(s.count_users().await.unwrap(), 4);

    let up = s
        .update_user(
            &name("a"),
            UserChange { role: Some(RoleName::parse("admin").unwrap()), ..Default::default() },
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(up.role.as_str(), "admin");
    // Two admins: one may be disabled, then the other is the last.
    s.update_user(&name("a"), UserChange { disabled: Some(true), ..Default::default() }, vec![]).await.unwrap();
    let last = s
        .update_user(
            &name("root"),
            UserChange { role: Some(RoleName::parse("viewer").unwrap()), ..Default::default() },
            vec![],
        )
        .await;
    assert!(matches!(last, Err(StoreError::LastAdmin)), "{last:?}");
    assert!(matches!(s.delete_user(&name("root"), vec![]).await, Err(StoreError::LastAdmin)));
    assert_eq!(s.get_user(&name("root")).await.unwrap().unwrap().role.as_str(), "admin", "rolled back");
    s.delete_user(&name("c"), vec![]).await.unwrap();
    assert!(s.get_user(&name("c")).await.unwrap().is_none());
    assert!(matches!(s.delete_user(&name("c"), vec![]).await, Err(StoreError::NotFound)));
}

/// Each account keeps the identity provider it was made for (`users.auth_source`): read back
/// as written, listed with it, and left alone by a role change.
pub async fn user_auth_source(s: &dyn Store) {
    seed_roles(s).await;
    for (n, source) in [("loc", AuthSource::Local), ("dir", AuthSource::Ldap), ("idp", AuthSource::Oidc)] {
        s.create_user(UserRecord { auth_source: source, ..user(n, "viewer") }, vec![]).await.unwrap();
        assert_eq!(s.get_user(&name(n)).await.unwrap().unwrap().auth_source, source, "{n}");
    }
    let listed: Vec<_> = s.list_users(None, 10).await.unwrap().iter().map(|u| u.auth_source).collect();
    assert_eq!(listed, [AuthSource::Ldap, AuthSource::Oidc, AuthSource::Local]);
    let change = UserChange { role: Some(RoleName::parse("admin").unwrap()), ..Default::default() };
    let up = s.update_user(&name("dir"), change, vec![]).await.unwrap();
    assert_eq!((up.role.as_str(), up.auth_source), ("admin", AuthSource::Ldap));
}

pub async fn sessions(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("root", "admin"), vec![]).await.unwrap();
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    for (i, id) in ["s1", "s2", "s3"].iter().enumerate() {
        s.create_session(session(id, "u", i as i64), 2, vec![]).await.unwrap();
    }
    let ids: Vec<_> = s.list_sessions(&name("u")).await.unwrap().into_iter().map(|x| x.id.to_string()).collect();
    assert_eq!(ids, ["s2", "s3"], "oldest evicted beyond the limit");
    let by_token = s.get_session_by_token(&session("s3", "u", 0).token_hash).await.unwrap().unwrap();
    assert_eq!(by_token.id, "s3");
    s.touch_session(&sid("s3"), t(10_000)).await.unwrap();
    s.touch_session(&sid("s3"), t(5_000)).await.unwrap();
    let touched = s.get_session_by_token(&by_token.token_hash).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_at, t(10_000), "last_seen never moves back");
    assert_eq!(s.delete_user_sessions(&name("u"), Some(&sid("s3")), vec![]).await.unwrap(), 1);
    assert!(s.delete_session(&sid("s3"), vec![]).await.unwrap());
    assert!(!s.delete_session(&sid("s3"), vec![]).await.unwrap());

    s.create_session(session("old", "u", 0), 10, vec![]).await.unwrap();
    s.create_session(session("new", "u", 100_000), 10, vec![]).await.unwrap();
    assert_eq!(s.delete_expired_sessions(t(50_000), t(60_000)).await.unwrap(), 1);
    // Role change and disable end sessions in the same transaction.
    s.update_user(
        &name("u"),
        UserChange { role: Some(RoleName::parse("admin").unwrap()), ..Default::default() },
        vec![],
    )
    .await
    .unwrap();
    assert!(s.list_sessions(&name("u")).await.unwrap().is_empty());
    s.create_session(session("k", "u", 0), 10, vec![]).await.unwrap();
    s.delete_user(&name("u"), vec![]).await.unwrap();
    assert!(s.get_session_by_token(&session("k", "u", 0).token_hash).await.unwrap().is_none(), "cascade");
}

pub async fn roles(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("root", "admin"), vec![]).await.unwrap();
    let mut custom = role("custom", vec![Permission::DocumentsRead], false);
    custom.collections = Some(vec![CollectionName::parse("a").unwrap()]);
    s.create_role(custom.clone(), 1000, vec![]).await.unwrap();
    assert!(matches!(s.create_role(custom.clone(), 1000, vec![]).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get_role(&custom.name).await.unwrap().unwrap(), custom);
    s.create_user(user("h", "custom"), vec![]).await.unwrap();
    s.create_session(session("hs", "h", 0), 10, vec![]).await.unwrap();
    custom.permissions.push(Permission::DocumentsWrite);
    s.update_role(custom.clone(), vec![]).await.unwrap();
    assert!(s.list_sessions(&name("h")).await.unwrap().is_empty(), "holders' sessions end");
    assert!(matches!(s.delete_role(&custom.name, vec![]).await, Err(StoreError::InUse(_))));
    assert!(matches!(s.update_role(role("viewer", vec![], false), vec![]).await, Err(StoreError::InUse(_))));
    assert!(matches!(s.delete_role(&RoleName::parse("viewer").unwrap(), vec![]).await, Err(StoreError::InUse(_))));
    s.delete_user(&name("h"), vec![]).await.unwrap();
    s.delete_role(&custom.name, vec![]).await.unwrap();
    assert_eq!(s.list_roles().await.unwrap().len(), 2);
}

pub(crate) fn doc(c: &str, id: &str, subject: Option<&str>, body: &[u8]) -> DocumentRecord {
    DocumentRecord {
        collection: CollectionName::parse(c).unwrap(),
        id: DocumentId::parse(id).unwrap(),
        version: 1,
        subject_id: subject.map(|x| SubjectId::parse(x).unwrap()),
        body: body.to_vec(),
        created_at: t(0),
        updated_at: t(0),
        seq: 0,
    }
}

pub(crate) fn entry(field: &str, v: u8) -> IndexEntry {
    IndexEntry { field: FieldPath::parse(field).unwrap(), token: [v; 32] }
}

pub async fn documents(s: &dyn Store) {
    let c = CollectionName::parse("c").unwrap();
    let coll = CollectionRecord {
        name: c.clone(),
        indexes: vec![FieldPath::parse("f").unwrap(), FieldPath::parse("g").unwrap()],
        pii_fields: vec![],
        retention_days: Some(30),
        encrypted: true,
        created_at: t(0),
        updated_at: t(0),
    };
    s.create_collection(coll.clone(), vec![]).await.unwrap();
    assert!(matches!(s.create_collection(coll.clone(), vec![]).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get_collection(&c).await.unwrap().unwrap(), coll);
    assert!(matches!(s.insert_document(doc("nope", "x", None, b"1"), vec![], vec![]).await, Err(StoreError::NotFound)));
    for i in 0..6u8 {
        let subject = if i % 2 == 0 { Some("even") } else { None };
        let d = doc("c", &format!("d{i}"), subject, &[i]);
        s.insert_document(d, vec![entry("f", i % 3), entry("g", 9)], vec![]).await.unwrap();
    }
    let q = |filters: Vec<IndexEntry>, subject: Option<&str>, after: Option<i64>, limit: usize| DocumentQuery {
        collection: c.clone(),
        filters,
        subject_id: subject.map(|x| SubjectId::parse(x).unwrap()),
        after_seq: after,
        limit,
    };
    let ids = |v: Vec<DocumentRecord>| v.into_iter().map(|d| d.id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(s.query_documents(q(vec![entry("f", 0)], None, None, 10)).await.unwrap()), ["d0", "d3"]);
    assert_eq!(
        ids(s.query_documents(q(vec![entry("f", 0), entry("g", 9)], Some("even"), None, 10)).await.unwrap()),
        ["d0"]
    );
    assert!(s.query_documents(q(vec![entry("f", 0), entry("g", 1)], None, None, 10)).await.unwrap().is_empty());
    let first = s.query_documents(q(vec![], None, None, 4)).await.unwrap();
    let rest = s.query_documents(q(vec![], None, first.last().map(|d| d.seq), 4)).await.unwrap();
    assert_eq!(ids(first).into_iter().chain(ids(rest)).collect::<Vec<_>>(), ["d0", "d1", "d2", "d3", "d4", "d5"]);
    assert_eq!(s.count_subject_documents(&SubjectId::parse("even").unwrap()).await.unwrap(), 3);

    let current = s.get_document(&c, &DocumentId::parse("d1").unwrap()).await.unwrap().unwrap();
    let next = DocumentRecord { body: b"new".to_vec(), ..current.clone() };
    let stored = s.replace_document(next.clone(), 1, vec![entry("f", 7)], vec![]).await.unwrap();
    assert_eq!((stored.version, stored.body.as_slice()), (2, b"new".as_slice()));
    assert!(matches!(s.replace_document(next, 1, vec![], vec![]).await, Err(StoreError::VersionMismatch)));
    assert_eq!(ids(s.query_documents(q(vec![entry("f", 7)], None, None, 10)).await.unwrap()), ["d1"]);
    assert!(s
        .query_documents(q(vec![entry("f", 1)], None, None, 10))
        .await
        .unwrap()
        .iter()
        .all(|d| d.id.as_str() != "d1"));
    let id1 = DocumentId::parse("d1").unwrap();
    assert!(matches!(s.delete_document(&c, &id1, Some(1), vec![]).await, Err(StoreError::VersionMismatch)));
    s.delete_document(&c, &id1, Some(2), vec![]).await.unwrap();
    assert!(s.get_document(&c, &id1).await.unwrap().is_none());

    // Reindex replaces every entry through the callback, in one transaction.
    let mut changed = coll.clone();
    changed.indexes = vec![FieldPath::parse("h").unwrap()];
    let indexer: rampart_store::Indexer = Box::new(|d: &DocumentRecord| {
        Ok(vec![IndexEntry { field: FieldPath::parse("h").unwrap(), token: [d.body[0]; 32] }])
    });
    s.update_collection(changed, Some(indexer), vec![]).await.unwrap();
    assert!(s.query_documents(q(vec![entry("f", 0)], None, None, 10)).await.unwrap().is_empty());
    assert_eq!(ids(s.query_documents(q(vec![entry("h", 4)], None, None, 10)).await.unwrap()), ["d4"]);
    let failing: rampart_store::Indexer = Box::new(|_| Err("boom".into()));
    assert!(s.update_collection(coll.clone(), Some(failing), vec![]).await.is_err());
    assert_eq!(
        ids(s.query_documents(q(vec![entry("h", 4)], None, None, 10)).await.unwrap()),
        ["d4"],
        "failed reindex rolled back"
    );

    s.delete_collection(&c, vec![]).await.unwrap();
    assert!(s.get_collection(&c).await.unwrap().is_none());
    assert_eq!(s.count_subject_documents(&SubjectId::parse("even").unwrap()).await.unwrap(), 0);
}

pub async fn meta(s: &dyn Store) {
    assert!(s.get_meta("k").await.unwrap().is_none());
    assert_eq!(s.init_meta("k", b"first".to_vec()).await.unwrap(), b"first");
    assert_eq!(s.init_meta("k", b"second".to_vec()).await.unwrap(), b"first", "init never overwrites");
}

/// A chainer with a fixed key, standing in for the core's HMAC key.
pub struct TestChainer;

impl rampart_store::AuditChainer for TestChainer {
    fn chain(&self, prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        test_audit_key().chain(prev, canonical)
    }
    fn head_mac(&self, seq: i64, hash: &[u8; 32]) -> [u8; 32] {
        test_audit_key().head_mac(seq, hash)
    }
    fn head_is_signed(&self, seq: i64, hash: &[u8; 32], mac: &[u8; 32]) -> bool {
        test_audit_key().head_is_signed(seq, hash, mac)
    }
}

fn test_audit_key() -> &'static rampart_crypto::AuditMacKey {
    static KEY: std::sync::OnceLock<rampart_crypto::AuditMacKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| rampart_crypto::DataKey::generate().audit_key())
}

pub fn event(kind: &str, user: &str, ok: bool, at: i64) -> rampart_store::AuditEvent {
    rampart_store::AuditEvent {
        timestamp: t(at),
        event_type: kind.into(),
        user: Some(user.into()),
        ip_address: Some("127.0.0.1".into()),
        success: ok,
        details: serde_json::json!({"k": "v"}),
        request_id: Some("req".into()),
    }
}

/// Audit records join the chain in the same transaction as their change, or not at all.
pub async fn audit(s: &dyn Store) {
    use std::sync::Arc;
    seed_roles(s).await;
    // Without a chain key, an audited change fails closed.
    let refused = s.create_user(user("early", "viewer"), vec![event("user_create", "x", true, 0)]).await;
    assert!(matches!(refused, Err(StoreError::AuditUnavailable(_))), "{refused:?}");
    assert!(s.get_user(&name("early")).await.unwrap().is_none(), "no change without its audit record");
    s.set_audit_chainer(Arc::new(TestChainer));
    let seqs = s.append_audit(vec![event("login", "a", false, 1), event("login", "a", true, 2)]).await.unwrap();
    assert_eq!(seqs, [1, 2]);
    s.create_user(user("root", "admin"), vec![event("user_create", "root", true, 3)]).await.unwrap();
    // A failing change writes no audit record either.
    assert!(s.create_user(user("root", "admin"), vec![event("user_create", "root", true, 4)]).await.is_err());
    let all = s.read_audit(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[0].prev_hash, rampart_store::GENESIS_HASH);
    assert_eq!(all[1].prev_hash, all[0].hash);
    assert_eq!(all[2].prev_hash, all[1].hash);
    let expect = TestChainer.chain_of(&all[1]);
    assert_eq!(all[1].hash, expect);
    let head = s.audit_head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (3, all[2].hash));
    let filtered = s
        .query_audit(rampart_store::AuditFilter {
            event_type: Some("login".into()),
            success: Some(false),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    let by_time = s
        .query_audit(rampart_store::AuditFilter { from: Some(t(2)), to: Some(t(3)), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_time.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
    let paged =
        s.query_audit(rampart_store::AuditFilter { after_seq: Some(1), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(paged.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);
}

impl TestChainer {
    pub(crate) fn chain_of(&self, r: &rampart_store::AuditRecord) -> [u8; 32] {
        rampart_store::AuditChainer::chain(self, &r.prev_hash, &rampart_store::AuditRecord::canonical(r.seq, &r.event))
    }
}

/// A boxed future, for `all`.
pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// Polls every future in one task, so the backend receives the writes together.
pub async fn all<'a, T>(mut pending: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>>) -> Vec<T> {
    let mut done: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, fut) in done.iter_mut().zip(pending.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// Concurrent writes each commit or fail alone: when a backend commits them together, a
/// failing change undoes only itself (its audit records too) and the chain stays whole.
pub async fn concurrent_writes(s: &dyn Store) {
    use std::sync::Arc;
    seed_roles(s).await;
    s.set_audit_chainer(Arc::new(TestChainer));
    s.create_user(user("taken", "viewer"), vec![event("user_create", "taken", true, 0)]).await.unwrap();
    let names: Vec<String> = (0..48).map(|i| if i % 8 == 0 { "taken".into() } else { format!("u{i}") }).collect();
    let writes = names
        .iter()
        .map(|n| {
            Box::pin(s.create_user(user(n, "viewer"), vec![event("user_create", n, true, 1)]))
                as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>
        })
        .collect();
    let results = all(writes).await;
    for (n, r) in names.iter().zip(&results) {
        if n == "taken" {
            assert!(matches!(r, Err(StoreError::AlreadyExists)), "{n}: {r:?}");
        } else {
            assert!(r.is_ok(), "{n}: {r:?}");
            assert!(s.get_user(&name(n)).await.unwrap().is_some(), "{n} acknowledged but missing");
        }
    }
    let records = s.read_audit(0, 1000).await.unwrap();
    let mut subjects: Vec<_> = records.iter().filter_map(|r| r.event.user.clone()).collect();
    subjects.sort();
    let mut expected: Vec<_> = names.iter().filter(|n| *n != "taken").cloned().chain(["taken".into()]).collect();
    expected.sort();
    assert_eq!(subjects, expected, "one audit record per committed change, none for a failed one");
    assert_eq!(records[0].prev_hash, rampart_store::GENESIS_HASH);
    for pair in records.windows(2) {
        assert_eq!((pair[1].seq, pair[1].prev_hash), (pair[0].seq + 1, pair[0].hash), "chain broken");
        assert_eq!(pair[1].hash, TestChainer.chain_of(&pair[1]));
    }
    assert_eq!(s.audit_head().await.unwrap().unwrap().seq, records.last().unwrap().seq);

    // Audit-only appends made together: each caller gets its own seqs, in its own order,
    // and the chain stays whole.
    let sizes = [1usize, 3, 2, 1, 4, 2, 1, 1];
    let appends = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let events = (0..n).map(|k| event("read", &format!("r{i}-{k}"), true, 2)).collect();
            Box::pin(s.append_audit(events))
                as std::pin::Pin<Box<dyn std::future::Future<Output = rampart_store::StoreResult<Vec<i64>>>>>
        })
        .collect();
    let before = records.last().unwrap().seq;
    let mut all_seqs = Vec::new();
    for ((i, n), got) in sizes.iter().enumerate().zip(all(appends).await) {
        let seqs = got.unwrap();
        assert_eq!(seqs.len(), *n);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "a caller's events are consecutive: {seqs:?}");
        let stored = s.read_audit(seqs[0] - 1, *n).await.unwrap();
        let users: Vec<_> = stored.iter().map(|r| r.event.user.clone().unwrap()).collect();
        assert_eq!(users, (0..*n).map(|k| format!("r{i}-{k}")).collect::<Vec<_>>(), "each seq holds its own event");
        all_seqs.extend(seqs);
    }
    all_seqs.sort_unstable();
    let total: usize = sizes.iter().sum();
    assert_eq!(all_seqs, (before + 1..=before + total as i64).collect::<Vec<_>>(), "no gaps, no overlaps");
    let chain = s.read_audit(0, 1000).await.unwrap();
    for pair in chain.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "chain broken");
    }
}

/// The invalidation feed moves before a write returns whenever a committed change could
/// alter what a cache derived from it (sessions, users, roles; collections), and not for
/// changes caches apply themselves (a new session, the idle-timer touch).
pub async fn invalidation(s: &dyn Store) {
    use rampart_store::Topic;
    let feed = s.invalidation();
    let auth = || feed.generation(Topic::Auth);
    let before = auth();
    seed_roles(s).await;
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    assert!(auth() > before, "users and roles written");
    let quiet = auth();
    s.create_session(session("s1", "u", 0), 10, vec![]).await.unwrap();
    s.touch_session(&sid("s1"), t(1_000)).await.unwrap();
    assert_eq!(auth(), quiet, "a new session and a touch stale nothing");
    // Each change must move the generation by the time it returns.
    macro_rules! invalidates {
        ($what:expr, $change:expr) => {{
            let g = auth();
            $change;
            assert!(auth() > g, "{} did not invalidate", $what);
        }};
    }
    invalidates!("delete_session", assert!(s.delete_session(&sid("s1"), vec![]).await.unwrap()));
    s.create_session(session("s2", "u", 1), 1, vec![]).await.unwrap();
    invalidates!(
        "eviction beyond the session limit",
        s.create_session(session("s3", "u", 2), 1, vec![]).await.unwrap()
    );
    invalidates!("delete_user_sessions", s.delete_user_sessions(&name("u"), None, vec![]).await.unwrap());
    invalidates!(
        "update_user",
        s.update_user(&name("u"), UserChange { disabled: Some(true), ..Default::default() }, vec![]).await.unwrap()
    );
    invalidates!("create_role", s.create_role(role("custom", vec![], false), 1000, vec![]).await.unwrap());
    invalidates!(
        "update_role",
        s.update_role(role("custom", vec![Permission::DocumentsRead], false), vec![]).await.unwrap()
    );
    let g = feed.generation(Topic::Collections);
    let c = CollectionRecord {
        name: CollectionName::parse("inv").unwrap(),
        indexes: vec![],
        pii_fields: vec![],
        retention_days: None,
        encrypted: false,
        created_at: t(0),
        updated_at: t(0),
    };
    s.create_collection(c.clone(), vec![]).await.unwrap();
    assert!(feed.generation(Topic::Collections) > g, "collections written");
    // Every way a stored document changes or goes moves the documents generation.
    let docs = || feed.generation(Topic::Documents);
    macro_rules! stales_documents {
        ($what:expr, $change:expr) => {{
            let g = docs();
            $change;
            assert!(docs() > g, "{} did not invalidate documents", $what);
        }};
    }
    let d = doc("inv", "d1", Some("subj"), b"one");
    stales_documents!("insert_document", s.insert_document(d.clone(), vec![], vec![]).await.unwrap());
    let changed = DocumentRecord { body: b"two".to_vec(), version: 2, ..d.clone() };
    stales_documents!("replace_document", s.replace_document(changed, 1, vec![], vec![]).await.unwrap());
    stales_documents!("delete_document", s.delete_document(&d.collection, &d.id, None, vec![]).await.unwrap());
    s.insert_document(doc("inv", "d2", Some("subj"), b"x"), vec![], vec![]).await.unwrap();
    let subject = SubjectId::parse("subj").unwrap();
    stales_documents!("erase_subject", s.erase_subject(erasure_of(&subject, "h", t(5)), vec![]).await.unwrap());
    s.insert_document(doc("inv", "d3", None, b"x"), vec![], vec![]).await.unwrap();
    stales_documents!("delete_collection", s.delete_collection(&c.name, vec![]).await.unwrap());
}
