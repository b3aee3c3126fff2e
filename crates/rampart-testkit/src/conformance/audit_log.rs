//! The audit chain beyond the basics: every query filter, paging, the signed head, and
//! the operator's re-anchoring of a broken chain.

use std::sync::Arc;

use rampart_store::{AuditChainer, AuditEvent, AuditFilter, AuditRecord, Store, StoreError, GENESIS_HASH};

use super::{event, t, TestChainer};

fn seqs(records: &[AuditRecord]) -> Vec<i64> {
    records.iter().map(|r| r.seq).collect()
}

async fn query(s: &dyn Store, f: AuditFilter) -> Vec<i64> {
    seqs(&s.query_audit(f).await.unwrap())
}

fn all(limit: usize) -> AuditFilter {
    AuditFilter { limit, ..Default::default() }
}

/// Checks each record links to the one before it and carries its own MAC.
fn assert_linked(records: &[AuditRecord]) {
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "record {} not linked to {}", pair[1].seq, pair[0].seq);
    }
    for r in records {
        assert_eq!(r.hash, TestChainer.chain_of(r), "record {} carries a wrong MAC", r.seq);
    }
}

async fn assert_head_signed(s: &dyn Store, last: &AuditRecord) {
    let head = s.audit_head().await.unwrap().unwrap();
    assert_eq!((head.seq, head.hash), (last.seq, last.hash));
    assert!(TestChainer.head_is_signed(head.seq, &head.hash, &head.mac), "head MAC does not verify");
    assert!(!TestChainer.head_is_signed(head.seq + 1, &head.hash, &head.mac), "head MAC covers the seq");
}

pub async fn audit_queries(s: &dyn Store) {
    assert!(s.audit_head().await.unwrap().is_none(), "an empty chain has no head");
    let closed = s.append_audit(vec![event("login", "alice", true, 0)]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "no chain key: {closed:?}");
    assert!(s.read_audit(0, 10).await.unwrap().is_empty() && s.audit_head().await.unwrap().is_none());
    s.set_audit_chainer(Arc::new(TestChainer));
    assert!(s.append_audit(vec![]).await.unwrap().is_empty());
    assert!(s.audit_head().await.unwrap().is_none(), "an empty batch writes nothing");

    let system = AuditEvent { user: None, ip_address: None, request_id: None, ..event("system", "-", true, 60) };
    let events = vec![
        event("login", "alice", false, 10),
        event("login", "alice", true, 20),
        event("logout", "alice", true, 30),
        event("login", "bob", true, 40),
        event("login", "bob", false, 50),
        system,
    ];
    assert_eq!(s.append_audit(events[..4].to_vec()).await.unwrap(), [1, 2, 3, 4]);
    assert_eq!(s.append_audit(events[4..].to_vec()).await.unwrap(), [5, 6], "seqs continue across batches");

    let records = s.read_audit(0, 100).await.unwrap();
    assert_eq!(records.iter().map(|r| r.event.clone()).collect::<Vec<_>>(), events, "events read back unchanged");
    assert_eq!(records[0].prev_hash, GENESIS_HASH);
    assert_linked(&records);
    assert_head_signed(s, &records[5]).await;

    // read_audit pages by seq.
    assert_eq!(seqs(&s.read_audit(0, 2).await.unwrap()), [1, 2]);
    assert_eq!(seqs(&s.read_audit(2, 3).await.unwrap()), [3, 4, 5]);
    assert_eq!(seqs(&s.read_audit(5, 10).await.unwrap()), [6]);
    assert!(s.read_audit(6, 10).await.unwrap().is_empty());

    // Each filter alone.
    assert_eq!(query(s, all(100)).await, [1, 2, 3, 4, 5, 6]);
    assert_eq!(query(s, AuditFilter { event_type: Some("login".into()), ..all(100) }).await, [1, 2, 4, 5]);
    assert_eq!(query(s, AuditFilter { user: Some("alice".into()), ..all(100) }).await, [1, 2, 3]);
    assert_eq!(query(s, AuditFilter { success: Some(false), ..all(100) }).await, [1, 5]);
    assert_eq!(query(s, AuditFilter { success: Some(true), ..all(100) }).await, [2, 3, 4, 6]);
    // The time range is half-open: from inclusive, to exclusive.
    assert_eq!(query(s, AuditFilter { from: Some(t(20)), to: Some(t(40)), ..all(100) }).await, [2, 3]);
    assert_eq!(query(s, AuditFilter { from: Some(t(50)), ..all(100) }).await, [5, 6]);
    assert_eq!(query(s, AuditFilter { to: Some(t(20)), ..all(100) }).await, [1]);
    assert_eq!(query(s, AuditFilter { after_seq: Some(4), ..all(100) }).await, [5, 6]);
    assert_eq!(query(s, all(2)).await, [1, 2], "limit keeps the oldest first");
    assert!(query(s, AuditFilter { user: Some("carol".into()), ..all(100) }).await.is_empty());
    assert!(query(s, AuditFilter { event_type: Some("nothing".into()), ..all(100) }).await.is_empty());
    // Filters combine with AND, and page with after_seq and limit.
    let bob_failed = AuditFilter { user: Some("bob".into()), success: Some(false), ..all(100) };
    assert_eq!(query(s, bob_failed).await, [5]);
    let logins = AuditFilter { event_type: Some("login".into()), user: Some("alice".into()), ..all(100) };
    assert_eq!(query(s, AuditFilter { success: Some(true), ..logins.clone() }).await, [2]);
    let window = AuditFilter { event_type: Some("login".into()), from: Some(t(10)), to: Some(t(50)), ..all(100) };
    assert_eq!(query(s, window.clone()).await, [1, 2, 4]);
    assert_eq!(query(s, AuditFilter { limit: 2, ..window.clone() }).await, [1, 2]);
    assert_eq!(query(s, AuditFilter { after_seq: Some(2), limit: 2, ..window }).await, [4]);
    // Query results are whole records that verify like read_audit's.
    let found = s.query_audit(AuditFilter { after_seq: Some(2), ..logins }).await.unwrap();
    assert!(found.is_empty(), "alice has no login after seq 2");
    let found = s.query_audit(AuditFilter { user: Some("bob".into()), ..all(100) }).await.unwrap();
    assert_eq!(found, records[3..5].to_vec());
}

pub async fn audit_reanchor(s: &dyn Store) {
    let repair = |what: &str, at: i64| AuditEvent {
        details: serde_json::json!({ "lost": what }),
        ..event("audit_chain_repair", "operator", true, at)
    };
    let closed = s.reanchor_audit(repair("none", 0), 5).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "no chain key: {closed:?}");
    assert!(s.read_audit(0, 10).await.unwrap().is_empty());
    s.set_audit_chainer(Arc::new(TestChainer));

    // On an empty table the repair links to the genesis hash.
    let refused = s.reanchor_audit(repair("x", 0), 0).await;
    assert!(matches!(refused, Err(StoreError::AuditChainBroken(_))), "seq 0 does not follow the tail: {refused:?}");
    let first = s.reanchor_audit(repair("1-4", 1), 5).await.unwrap();
    assert_eq!((first.seq, first.prev_hash), (5, GENESIS_HASH));
    assert_eq!(first.event, repair("1-4", 1));
    assert_eq!(first.hash, TestChainer.chain_of(&first));
    assert_head_signed(s, &first).await;
    // The chain continues after the repair record.
    assert_eq!(s.append_audit(vec![event("login", "a", true, 2), event("login", "a", true, 3)]).await.unwrap(), [6, 7]);

    // A repair must lie beyond the table's tail; a refused one writes nothing.
    for seq in [1, 6, 7] {
        let r = s.reanchor_audit(repair("bad", 4), seq).await;
        assert!(matches!(r, Err(StoreError::AuditChainBroken(_))), "seq {seq}: {r:?}");
    }
    assert_eq!(seqs(&s.read_audit(0, 100).await.unwrap()), [5, 6, 7]);
    let tail = s.read_audit(6, 1).await.unwrap().remove(0);
    assert_head_signed(s, &tail).await;

    // A gap is declared, linked to the actual tail, and signed as the new head.
    let second = s.reanchor_audit(repair("8-19", 5), 20).await.unwrap();
    assert_eq!((second.seq, second.prev_hash), (20, tail.hash));
    assert_eq!(second.hash, TestChainer.chain_of(&second));
    assert_head_signed(s, &second).await;
    assert_eq!(s.append_audit(vec![event("logout", "a", true, 6)]).await.unwrap(), [21]);
    let records = s.read_audit(0, 100).await.unwrap();
    assert_eq!(seqs(&records), [5, 6, 7, 20, 21]);
    assert_eq!(records[3], second, "the returned record is the stored one");
    assert_linked(&records);
    assert_head_signed(s, &records[4]).await;
    let repairs = s
        .query_audit(AuditFilter { event_type: Some("audit_chain_repair".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(seqs(&repairs), [5, 20]);
}

/// The writer's figures for `/metrics`: its queue is bounded and empty once the writes it
/// was handed are answered, and every transaction it committed is counted by size.
pub async fn writer_stats(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    let before = s.writer_stats();
    assert!(before.queue_capacity > 0, "a bounded queue reports its capacity");
    for i in 0..20 {
        assert_eq!(s.append_audit(vec![event("login", "alice", true, i)]).await.unwrap().len(), 1);
    }
    let after = s.writer_stats();
    assert_eq!(after.queue_depth, 0, "every answered write has left the queue");
    let commits = |w: &rampart_store::WriterStats| w.commits_by_size.iter().sum::<u64>();
    assert!(commits(&after) > commits(&before), "commits counted: {after:?}");
    let changes = after.changes_committed - before.changes_committed;
    assert_eq!(changes, 20, "20 appends, one change each");
    assert!(commits(&after) - commits(&before) <= changes);
}
