//! The security store: alerts with deduplication, the webhook outbox, IP blocks and the
//! login history behind new-device detection.

use std::sync::Arc;

use rampart_store::{AlertFilter, AlertRecord, IpBlock, OutboxItem, Store, StoreError};

use super::{aid, ev, seed_roles, t, user, TestChainer};

fn alert(id: &str, key: &str, severity: &str, breach: &str, at: i64) -> AlertRecord {
    AlertRecord {
        id: aid(id),
        severity: severity.into(),
        breach_type: breach.into(),
        dedup_key: key.into(),
        details: serde_json::json!({ "raised": id }),
        first_seen: t(at),
        last_seen: t(at),
        count: 1,
        status: "open".into(),
        acknowledged_by: None,
    }
}

fn hook(event_id: &str, endpoint: &str, at: i64) -> OutboxItem {
    OutboxItem {
        event_id: event_id.into(),
        endpoint: endpoint.into(),
        payload: format!("payload:{event_id}"),
        attempts: 0,
        next_attempt_at: t(at),
    }
}

async fn listed(s: &dyn Store, f: AlertFilter) -> Vec<String> {
    s.list_alerts(f).await.unwrap().into_iter().map(|a| a.id.to_string()).collect()
}

fn filter(status: Option<&str>, severity: Option<&str>, breach: Option<&str>, limit: usize) -> AlertFilter {
    AlertFilter {
        status: status.map(Into::into),
        severity: severity.map(Into::into),
        breach_type: breach.map(Into::into),
        limit,
    }
}

async fn due(s: &dyn Store, at: i64) -> Vec<(String, String, u32)> {
    let items = s.due_webhooks(t(at), 100).await.unwrap();
    items.into_iter().map(|w| (w.event_id, w.endpoint, w.attempts)).collect()
}

fn item(event: &str, endpoint: &str, attempts: u32) -> (String, String, u32) {
    (event.into(), endpoint.into(), attempts)
}

/// Raising folds repeats into one open alert per dedup key and window, queues the new
/// alert's webhooks with it, and listing filters by status, severity and breach type.
pub async fn alerts(s: &dyn Store) {
    let closed = s
        .raise_alert(
            alert("a1", "k1", "high", "brute_force", 100),
            t(0),
            vec![hook("w-a1", "ep1", 100)],
            vec![ev("alert")],
        )
        .await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(listed(s, filter(None, None, None, 10)).await.is_empty(), "no alert without its audit record");
    assert!(due(s, 10_000).await.is_empty(), "nor its webhooks");
    s.set_audit_chainer(Arc::new(TestChainer));

    // New: stored as given, with its webhooks.
    let a1 = alert("a1", "k1", "high", "brute_force", 100);
    let hooks = vec![hook("w-a1", "ep1", 100), hook("w-a1", "ep2", 100)];
    let (stored, new) =
        audited!(s, ["alert"], s.raise_alert(a1.clone(), t(0), hooks, vec![ev("alert")]).await.unwrap());
    assert!(new);
    assert_eq!(stored, a1);
    assert_eq!(s.list_alerts(filter(None, None, None, 10)).await.unwrap(), std::slice::from_ref(&a1));
    assert_eq!(due(s, 100).await, [item("w-a1", "ep1", 0), item("w-a1", "ep2", 0)]);

    // Seen again within the window: one alert with a count; no second round of webhooks.
    let again = AlertRecord {
        details: serde_json::json!({ "raised": "again" }),
        ..alert("a1-2", "k1", "high", "brute_force", 200)
    };
    let (folded, new) = audited!(
        s,
        ["alert"],
        s.raise_alert(again, t(50), vec![hook("w-a1-2", "ep1", 200)], vec![ev("alert")]).await.unwrap()
    );
    assert!(!new);
    assert_eq!((folded.id.as_str(), folded.count, folded.first_seen, folded.last_seen), ("a1", 2, t(100), t(200)));
    assert_eq!(listed(s, filter(None, None, None, 10)).await, ["a1"]);
    assert_eq!(s.list_alerts(filter(None, None, None, 10)).await.unwrap()[0], folded, "the stored alert is returned");
    assert_eq!(due(s, 10_000).await.len(), 2, "a folded alert queues no webhooks");

    // Acknowledged is still unresolved: it keeps folding.
    let acked = audited!(
        s,
        ["alert_ack"],
        s.set_alert_status(&aid("a1"), "acknowledged", "op", vec![ev("alert_ack")]).await.unwrap()
    );
    assert_eq!((acked.status.as_str(), acked.acknowledged_by.as_deref(), acked.count), ("acknowledged", Some("op"), 2));
    let (folded, new) =
        s.raise_alert(alert("a1-3", "k1", "high", "brute_force", 300), t(150), vec![], vec![]).await.unwrap();
    assert_eq!((new, folded.id.as_str(), folded.count, folded.last_seen), (false, "a1", 3, t(300)));

    // Outside the window (last seen before `since`): a new alert.
    let (a2, new) = s
        .raise_alert(alert("a2", "k1", "high", "brute_force", 1_000), t(500), vec![hook("w-a2", "ep1", 1_000)], vec![])
        .await
        .unwrap();
    assert!(new && a2.id == "a2" && a2.count == 1);
    assert!(due(s, 10_000).await.contains(&item("w-a2", "ep1", 0)));

    // A resolved alert never absorbs a repeat.
    s.raise_alert(alert("b1", "k2", "critical", "exfiltration", 400), t(0), vec![], vec![]).await.unwrap();
    let resolved = s.set_alert_status(&aid("b1"), "resolved", "op2", vec![]).await.unwrap();
    assert_eq!((resolved.status.as_str(), resolved.acknowledged_by.as_deref()), ("resolved", Some("op2")));
    let (b2, new) =
        s.raise_alert(alert("b2", "k2", "critical", "exfiltration", 500), t(0), vec![], vec![]).await.unwrap();
    assert!(new && b2.id == "b2", "folded into a resolved alert");
    let (c1, new) = s.raise_alert(alert("c1", "k3", "low", "anomaly", 600), t(0), vec![], vec![]).await.unwrap();
    assert!(new && c1.count == 1, "another key is another alert");

    // A refused alert (its id taken) stores nothing and queues nothing.
    let taken = audited!(
        s,
        [],
        s.raise_alert(alert("a1", "k9", "low", "anomaly", 700), t(0), vec![hook("w-x", "ep1", 0)], vec![ev("alert")])
            .await
    );
    assert!(taken.is_err(), "alert id reused");
    assert!(!due(s, 10_000).await.iter().any(|w| w.0 == "w-x"));
    assert!(s.list_alerts(filter(None, None, None, 10)).await.unwrap().iter().all(|a| a.dedup_key != "k9"));
    let unknown = audited!(s, [], s.set_alert_status(&aid("nope"), "resolved", "op", vec![ev("alert_ack")]).await);
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");

    // Listing: newest first, filters combine, limit applies.
    assert_eq!(listed(s, filter(None, None, None, 10)).await, ["a2", "c1", "b2", "b1", "a1"]);
    assert_eq!(listed(s, filter(None, None, None, 2)).await, ["a2", "c1"]);
    assert_eq!(listed(s, filter(Some("open"), None, None, 10)).await, ["a2", "c1", "b2"]);
    assert_eq!(listed(s, filter(Some("acknowledged"), None, None, 10)).await, ["a1"]);
    assert_eq!(listed(s, filter(Some("resolved"), None, None, 10)).await, ["b1"]);
    assert_eq!(listed(s, filter(None, Some("critical"), None, 10)).await, ["b2", "b1"]);
    assert_eq!(listed(s, filter(None, None, Some("brute_force"), 10)).await, ["a2", "a1"]);
    assert_eq!(listed(s, filter(Some("open"), Some("high"), Some("brute_force"), 10)).await, ["a2"]);
    assert!(listed(s, filter(Some("open"), Some("low"), Some("exfiltration"), 10)).await.is_empty());
}

/// The outbox: due items in due order, delivered ones never again, failures rescheduled
/// with their attempt counted, and a re-queued event id never delivered twice.
pub async fn webhook_outbox(s: &dyn Store) {
    s.enqueue_webhooks(vec![]).await.unwrap();
    assert!(due(s, i64::MAX / 2).await.is_empty());
    let (w1, w2, w3) = (hook("e1", "ep1", 100), hook("e1", "ep2", 50), hook("e2", "ep1", 200));
    assert_eq!(s.webhook_backlog().await.unwrap(), 0);
    s.enqueue_webhooks(vec![w1.clone(), w2.clone(), w3.clone()]).await.unwrap();
    assert_eq!(s.webhook_backlog().await.unwrap(), 3, "the backlog counts what is not yet due too");
    assert!(due(s, 49).await.is_empty(), "nothing before its time");
    assert_eq!(s.due_webhooks(t(100), 10).await.unwrap(), [w2.clone(), w1.clone()], "due order, whole items");
    assert_eq!(s.due_webhooks(t(100), 1).await.unwrap(), std::slice::from_ref(&w2), "limit");
    assert_eq!(due(s, 1_000).await, [item("e1", "ep2", 0), item("e1", "ep1", 0), item("e2", "ep1", 0)]);

    // Delivered: gone for good, for that endpoint only.
    s.webhook_delivered("e1", "ep2", t(60)).await.unwrap();
    assert_eq!(s.webhook_backlog().await.unwrap(), 2);
    assert_eq!(due(s, 1_000).await, [item("e1", "ep1", 0), item("e2", "ep1", 0)]);

    // Failed: back off until the given time, attempt counted.
    s.webhook_failed("e1", "ep1", t(5_000), "timeout").await.unwrap();
    assert_eq!(due(s, 1_000).await, [item("e2", "ep1", 0)]);
    assert_eq!(due(s, 4_999).await, [item("e2", "ep1", 0)]);
    assert_eq!(due(s, 5_000).await, [item("e2", "ep1", 0), item("e1", "ep1", 1)]);
    let retried = s.due_webhooks(t(5_000), 10).await.unwrap().remove(1);
    assert_eq!(retried, OutboxItem { attempts: 1, next_attempt_at: t(5_000), ..w1.clone() }, "payload kept");
    s.webhook_failed("e1", "ep1", t(9_000), &"a very long error ".repeat(100)).await.unwrap();
    assert_eq!(due(s, 8_999).await, [item("e2", "ep1", 0)]);
    assert_eq!(due(s, 9_000).await, [item("e2", "ep1", 0), item("e1", "ep1", 2)]);

    // Queuing an event id again neither redelivers it nor resets its schedule.
    s.enqueue_webhooks(vec![hook("e1", "ep2", 0), OutboxItem { payload: "other".into(), ..hook("e1", "ep1", 0) }])
        .await
        .unwrap();
    assert_eq!(due(s, 8_999).await, [item("e2", "ep1", 0)], "delivered or backing off: not due");
    let kept = s.due_webhooks(t(9_000), 10).await.unwrap().remove(1);
    assert_eq!(kept, OutboxItem { attempts: 2, next_attempt_at: t(9_000), ..w1.clone() });

    s.webhook_delivered("e1", "ep1", t(9_001)).await.unwrap();
    s.webhook_delivered("e2", "ep1", t(9_002)).await.unwrap();
    assert!(due(s, i64::MAX / 2).await.is_empty(), "everything delivered");
    assert_eq!(s.webhook_backlog().await.unwrap(), 0);
    // A late failure report for a delivered item does not bring it back.
    s.webhook_failed("e2", "ep1", t(9_500), "late").await.unwrap();
    assert!(due(s, i64::MAX / 2).await.is_empty());
}

fn block(cidr: &str, created: i64, expires: i64) -> IpBlock {
    IpBlock {
        cidr: cidr.into(),
        reason: "test".into(),
        created_at: t(created),
        expires_at: t(expires),
        created_by: "op".into(),
    }
}

async fn active(s: &dyn Store, at: i64) -> Vec<IpBlock> {
    let mut blocks = s.active_blocks(t(at)).await.unwrap();
    blocks.sort_by(|a, b| a.cidr.cmp(&b.cidr));
    blocks
}

/// Blocks: active until (not at) their expiry, re-adding never shortens one, removal.
pub async fn ip_blocks(s: &dyn Store) {
    let b1 = block("10.0.0.0/24", 0, 1_000);
    let closed = s.add_block(b1.clone(), vec![ev("ip_block")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(active(s, 0).await.is_empty());
    s.set_audit_chainer(Arc::new(TestChainer));

    let blocks = || s.invalidation().generation(rampart_store::Topic::Blocks);
    let before = blocks();
    audited!(s, ["ip_block"], s.add_block(b1.clone(), vec![ev("ip_block")]).await.unwrap());
    assert!(blocks() > before, "a new block reaches every node's block list");
    assert_eq!(active(s, 0).await, std::slice::from_ref(&b1));
    assert_eq!(active(s, 999).await, std::slice::from_ref(&b1));
    assert!(active(s, 1_000).await.is_empty(), "expired at its expiry");
    let b2 = block("192.0.2.1/32", 10, 5_000);
    s.add_block(b2.clone(), vec![]).await.unwrap();
    assert_eq!(active(s, 500).await, [b1.clone(), b2.clone()]);
    assert_eq!(active(s, 1_500).await, std::slice::from_ref(&b2));

    // Adding an existing block again extends it but never shortens it.
    s.add_block(block("10.0.0.0/24", 20, 500), vec![]).await.unwrap();
    assert_eq!(
        active(s, 700).await.iter().map(|b| b.cidr.as_str()).collect::<Vec<_>>(),
        ["10.0.0.0/24", "192.0.2.1/32"]
    );
    assert_eq!(active(s, 700).await[0].expires_at, t(1_000));
    s.add_block(block("10.0.0.0/24", 30, 3_000), vec![]).await.unwrap();
    assert_eq!(active(s, 2_000).await.len(), 2, "extended");
    assert_eq!(active(s, 2_000).await[0].expires_at, t(3_000));
    // An expired block is renewed by adding it again.
    s.add_block(block("198.51.100.0/24", 40, 100), vec![]).await.unwrap();
    assert!(active(s, 200).await.iter().all(|b| b.cidr != "198.51.100.0/24"));
    s.add_block(block("198.51.100.0/24", 300, 900), vec![]).await.unwrap();
    assert!(active(s, 200).await.iter().any(|b| b.cidr == "198.51.100.0/24" && b.expires_at == t(900)));

    // Removal.
    let before = blocks();
    assert!(audited!(s, ["ip_unblock"], s.remove_block("10.0.0.0/24", vec![ev("ip_unblock")]).await.unwrap()));
    assert!(blocks() > before, "a lifted block reaches every node's block list");
    assert_eq!(
        active(s, 700).await.iter().map(|b| b.cidr.as_str()).collect::<Vec<_>>(),
        ["192.0.2.1/32", "198.51.100.0/24"]
    );
    assert!(!s.remove_block("10.0.0.0/24", vec![]).await.unwrap(), "removed once");
    assert!(!s.remove_block("203.0.113.0/24", vec![]).await.unwrap(), "never blocked");
    assert!(!audited!(s, [], s.remove_block("203.0.113.0/24", vec![ev("ip_unblock")]).await.unwrap()), "no record");
    assert!(s.remove_block("192.0.2.1/32", vec![]).await.unwrap());
    assert_eq!(active(s, 700).await.len(), 1);
}

/// Known login addresses (with the per-user forgetting horizon) and first-seen networks.
pub async fn login_history(s: &dyn Store) {
    seed_roles(s).await;
    for u in ["u", "v"] {
        s.create_user(user(u, "viewer"), vec![]).await.unwrap();
    }
    let known = |u: &'static str, a: &'static str, since: i64| async move {
        s.login_address_known(u, a, t(since)).await.unwrap()
    };
    assert!(!known("u", "192.0.2.1", 0).await);
    s.remember_login_address("u", "192.0.2.1", t(100), t(0)).await.unwrap();
    assert!(known("u", "192.0.2.1", 50).await && known("u", "192.0.2.1", 100).await, "since is inclusive");
    assert!(!known("u", "192.0.2.1", 101).await, "not since after the login");
    assert!(!known("v", "192.0.2.1", 0).await, "per user");
    assert!(!known("u", "192.0.2.2", 0).await, "per address");
    // An older login reported late does not hide the newer one.
    s.remember_login_address("u", "192.0.2.1", t(50), t(0)).await.unwrap();
    assert!(known("u", "192.0.2.1", 100).await);
    s.remember_login_address("u", "192.0.2.1", t(120), t(0)).await.unwrap();
    assert!(known("u", "192.0.2.1", 120).await, "a newer login moves it forward");

    s.remember_login_address("u", "198.51.100.7", t(200), t(0)).await.unwrap();
    s.remember_login_address("v", "192.0.2.1", t(10), t(0)).await.unwrap();
    // Forgetting applies to this user's addresses last seen before the horizon.
    s.remember_login_address("u", "203.0.113.9", t(1_000), t(150)).await.unwrap();
    assert!(!known("u", "192.0.2.1", 0).await, "forgotten");
    assert!(known("u", "198.51.100.7", 0).await && known("u", "203.0.113.9", 1_000).await);
    assert!(known("v", "192.0.2.1", 0).await, "another user's history is kept");

    // Networks: new once per user.
    assert!(s.note_login_network("u", "192.0.2.0/24", t(0)).await.unwrap());
    assert!(!s.note_login_network("u", "192.0.2.0/24", t(0)).await.unwrap());
    assert!(!s.note_login_network("u", "192.0.2.0/24", t(5_000)).await.unwrap(), "seen before, whenever");
    assert!(s.note_login_network("v", "192.0.2.0/24", t(1)).await.unwrap(), "per user");
    assert!(s.note_login_network("u", "198.51.100.0/24", t(2)).await.unwrap());
}

/// Folding reports that arrive out of order (a node whose clock is behind, a late report):
/// `last_seen` never moves back, `first_seen` never forward, the newest report's details
/// stay, and no count is lost, also under concurrent raises of one key.
pub async fn alert_folding_out_of_order(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    let first = alert("o1", "ko", "high", "brute_force", 1_000);
    s.raise_alert(first, t(0), vec![hook("w-o1", "ep1", 0)], vec![]).await.unwrap();
    let newer = AlertRecord {
        details: serde_json::json!({ "raised": "newer" }),
        ..alert("o2", "ko", "high", "brute_force", 3_000)
    };
    s.raise_alert(newer, t(0), vec![], vec![]).await.unwrap();
    // From a node 2 s behind: older than what is stored.
    let behind = AlertRecord {
        details: serde_json::json!({ "raised": "behind" }),
        ..alert("o3", "ko", "high", "brute_force", 2_000)
    };
    let (folded, new) = s.raise_alert(behind, t(0), vec![], vec![]).await.unwrap();
    assert!(!new);
    assert_eq!((folded.id.as_str(), folded.count), ("o1", 3));
    assert_eq!(folded.last_seen, t(3_000), "last_seen moved back");
    assert_eq!(folded.first_seen, t(1_000));
    assert_eq!(folded.details, serde_json::json!({ "raised": "newer" }), "the later report's details stay");
    // A report of an occurrence before the first one moves first_seen back.
    let (folded, _) = s.raise_alert(alert("o4", "ko", "high", "brute_force", 500), t(0), vec![], vec![]).await.unwrap();
    assert_eq!((folded.count, folded.first_seen, folded.last_seen), (4, t(500), t(3_000)));

    // Concurrent raises of a new key: one alert, every occurrence counted, webhooks once.
    let raises: Vec<super::Boxed<'_, rampart_store::StoreResult<(AlertRecord, bool)>>> = (0..8)
        .map(|i| {
            let a = alert(&format!("c{i}"), "kc", "low", "anomaly", 10_000 + i);
            Box::pin(s.raise_alert(a, t(0), vec![hook(&format!("w-c{i}"), "ep1", 0)], vec![])) as super::Boxed<'_, _>
        })
        .collect();
    let outcomes: Vec<_> = super::all(raises).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|(_, new)| *new).count(), 1, "one of the concurrent raises opens the alert");
    let stored = s.list_alerts(filter(None, Some("low"), None, 10)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].count, stored[0].last_seen), (8, t(10_007)));
    let hooks = s.due_webhooks(t(0), 100).await.unwrap();
    assert_eq!(hooks.iter().filter(|w| w.event_id.starts_with("w-c")).count(), 1, "webhooks of the new alert only");
}

/// Text that clients control (user agents, attempted usernames folded into dedup keys and
/// details, addresses, delivery errors) may hold NUL; no store may fail on it. A value read
/// back is the original, or on a backend whose text cannot hold NUL, the original with each
/// NUL replaced by U+FFFD.
pub async fn client_text_with_nul(s: &dyn Store) {
    let same = |stored: &str, given: &str| stored == given || stored == given.replace('\0', "\u{FFFD}");
    seed_roles(s).await;
    s.set_audit_chainer(Arc::new(TestChainer));
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();

    // Sessions: a user agent and an address with NUL, through both ways a session opens.
    let mut plain = super::session("n1", "u", 0);
    plain.user_agent = Some("curl\0/8".into());
    plain.ip_address = Some("192.0.2.1\0".into());
    s.create_session(plain.clone(), 10, vec![ev("login")]).await.unwrap();
    let mut with_refresh = super::session("n2", "u", 1);
    with_refresh.user_agent = Some("\0".into());
    let r = rampart_store::RefreshRecord {
        token_hash: [0x4e; 32],
        family_id: rampart_types::FamilyId::from_stored("fn".into()),
        session_id: super::sid("n2"),
        username: super::name("u"),
        created_at: t(1),
        expires_at: t(1_000_000),
        assurance: rampart_store::Assurance::Password,
    };
    s.create_session_with_refresh(with_refresh, r, 10, vec![ev("login")]).await.unwrap();
    let stored = s.get_session_by_token(&plain.token_hash).await.unwrap().unwrap();
    assert!(same(stored.user_agent.as_deref().unwrap(), "curl\0/8"), "{:?}", stored.user_agent);
    assert!(same(stored.ip_address.as_deref().unwrap(), "192.0.2.1\0"));
    assert_eq!(s.list_sessions(&super::name("u")).await.unwrap().len(), 2);

    // Alerts: details round-trip exactly (JSON escapes NUL); a dedup key with NUL folds.
    let details = serde_json::json!({ "user": "ev\0il", "k\0ey": ["\0"] });
    let a = AlertRecord { details: details.clone(), ..alert("n1", "account:ev\0il", "high\0", "brute\0force", 100) };
    let (stored, new) = s.raise_alert(a, t(0), vec![hook("w\0n1", "ep\0", 0)], vec![ev("alert")]).await.unwrap();
    assert!(new);
    assert_eq!(stored.details, details, "details round-trip exactly");
    assert!(same(&stored.dedup_key, "account:ev\0il") && same(&stored.severity, "high\0"));
    let again =
        AlertRecord { details: details.clone(), ..alert("n2", "account:ev\0il", "high\0", "brute\0force", 200) };
    let (folded, new) = s.raise_alert(again, t(0), vec![], vec![]).await.unwrap();
    assert_eq!((new, folded.id.as_str(), folded.count), (false, "n1", 2), "the same key folds");
    let listed = s.list_alerts(filter(None, Some("high\0"), Some("brute\0force"), 10)).await.unwrap();
    assert_eq!(listed.len(), 1, "filters with NUL find what was stored with it");
    assert_eq!(listed[0].details, details);
    let acked = s.set_alert_status(&aid("n1"), "acknowledged", "op\0", vec![ev("alert_ack")]).await.unwrap();
    assert!(same(acked.acknowledged_by.as_deref().unwrap(), "op\0"));

    // The outbox: ids, endpoints and errors with NUL.
    let due = s.due_webhooks(t(0), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(same(&due[0].event_id, "w\0n1") && same(&due[0].endpoint, "ep\0"));
    s.webhook_failed("w\0n1", "ep\0", t(50), "reset\0by peer").await.unwrap();
    assert!(s.due_webhooks(t(49), 10).await.unwrap().is_empty(), "the failure was recorded");
    s.webhook_delivered("w\0n1", "ep\0", t(60)).await.unwrap();
    assert!(s.due_webhooks(t(1_000), 10).await.unwrap().is_empty(), "the delivery was recorded");

    // Blocks and the login history.
    let b = IpBlock { reason: "because\0".into(), created_by: "op\0".into(), ..block("192.0.2.0/24", 0, 1_000) };
    s.add_block(b, vec![ev("ip_block")]).await.unwrap();
    let blocks = s.active_blocks(t(0)).await.unwrap();
    assert!(same(&blocks[0].reason, "because\0") && same(&blocks[0].created_by, "op\0"));
    assert!(!s.remove_block("192.0.2.0/24\0", vec![]).await.unwrap(), "another block");
    assert!(s.remove_block("192.0.2.0/24", vec![]).await.unwrap());
    assert!(!s.login_address_known("u\0", "192.0.2.1", t(0)).await.unwrap());
    assert!(!s.login_address_known("u", "192.0.2.1\0", t(0)).await.unwrap());
    s.remember_login_address("u", "192.0.2.1\0", t(10), t(0)).await.unwrap();
    assert!(s.login_address_known("u", "192.0.2.1\0", t(0)).await.unwrap(), "found as remembered");
    assert!(!s.login_address_known("u", "192.0.2.1", t(0)).await.unwrap(), "another address");
    assert!(s.note_login_network("u\0x", "192.0.2.0/24\0", t(0)).await.unwrap());
    assert!(!s.note_login_network("u\0x", "192.0.2.0/24\0", t(1)).await.unwrap());
    assert!(s.note_login_network("u", "192.0.2.0/24", t(0)).await.unwrap(), "another user and network");
}

/// Listings with equal times come out in one order on every backend, whatever the database's
/// collation: ties broken by the byte order of the id (or address), as `COLLATE "C"` orders.
pub async fn listing_order(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    // Under a natural-language collation these order differently ("a-2" < "a1" < "Z1").
    let ids = ["a-2", "Z1", "a1"];
    for (i, id) in ids.iter().enumerate() {
        let key = format!("key{i}");
        s.raise_alert(alert(id, &key, "low", "anomaly", 100), t(0), vec![hook(id, "ep", 5)], vec![]).await.unwrap();
        s.add_block(block(id, 7, 1_000), vec![]).await.unwrap();
        let key = rampart_store::JwtKeyRecord {
            kid: rampart_types::SigningKeyId::from_stored((*id).into()),
            sealed: vec![1],
            public_key: vec![2],
            created_at: t(9),
            retired_at: None,
        };
        s.add_jwt_key(key, t(9), vec![]).await.unwrap();
    }
    // Newest first, ties by id descending.
    assert_eq!(listed(s, filter(None, None, None, 10)).await, ["a1", "a-2", "Z1"]);
    assert_eq!(listed(s, filter(None, None, None, 1)).await, ["a1"], "the limit takes the first in that order");
    let due: Vec<String> = s.due_webhooks(t(5), 10).await.unwrap().into_iter().map(|w| w.event_id).collect();
    assert_eq!(due, ["Z1", "a-2", "a1"], "due order, ties by event id");
    let blocks: Vec<String> = s.active_blocks(t(8)).await.unwrap().into_iter().map(|b| b.cidr).collect();
    assert_eq!(blocks, ["Z1", "a-2", "a1"], "ties by address");
    let kids: Vec<String> = s.jwt_keys().await.unwrap().into_iter().map(|k| k.kid.to_string()).collect();
    assert_eq!(kids, ["Z1", "a-2", "a1"], "keys by creation, ties by kid");
}
