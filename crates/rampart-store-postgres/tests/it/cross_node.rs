//! Two (or more) nodes on one database racing each other: every check-then-act of the
//! token, MFA and security stores must hold across nodes, not only within one writer.

use rampart_store::{
    Admission, AlertFilter, AlertRecord, Assurance, DelayPolicy, IpBlock, JwtKeyRecord, MfaStore, OutboxItem,
    RefreshOutcome, RefreshRecord, RoleStore, SecurityStore, SessionStore, StoreResult, ThrottleStore, TokenStore,
    UserStore,
};
use rampart_store_postgres::PostgresStore;
use rampart_testkit::conformance::{all, name, role, seed_roles, session, t, user, Boxed};
use rampart_testkit::postgres::{off_runtime, PgDatabase};
use rampart_types::{AlertId, FamilyId, Permission, SessionId, SigningKeyId};

use super::node;

/// A distinct 32-byte token hash per (round, index).
fn hash(round: u8, i: u8) -> [u8; 32] {
    let mut h = [0xA5; 32];
    h[0] = round;
    h[1] = i;
    h
}

fn refresh(token: [u8; 32], family: &str, session_id: &str, u: &str) -> RefreshRecord {
    RefreshRecord {
        token_hash: token,
        family_id: FamilyId::from_stored(family.into()),
        session_id: SessionId::from_stored(session_id.into()),
        username: name(u),
        created_at: t(0),
        expires_at: t(100_000_000),
        assurance: Assurance::Password,
    }
}

fn rotated(o: &RefreshOutcome) -> bool {
    matches!(o, RefreshOutcome::Rotated { .. })
}

async fn exists(s: &dyn SessionStore, id: &str, u: &str) -> bool {
    s.get_session_by_token(&session(id, u, 0).token_hash).await.unwrap().is_some()
}

#[tokio::test]
async fn refresh_rotation_racing_on_two_nodes_has_exactly_one_winner() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    seed_roles(&a).await;
    a.create_user(user("u", "viewer"), vec![]).await.unwrap();
    for round in 0..20u8 {
        let (family, first) = (format!("f{round}"), format!("s{round}"));
        let old = hash(round, 0);
        a.create_session_with_refresh(session(&first, "u", 0), refresh(old, &family, &first, "u"), 100, vec![])
            .await
            .unwrap();
        let (ida, idb) = (format!("s{round}a"), format!("s{round}b"));
        let on_a =
            a.rotate_refresh(old, refresh(hash(round, 1), "x", &ida, "u"), session(&ida, "u", 10), t(10), 100, vec![]);
        let on_b =
            b.rotate_refresh(old, refresh(hash(round, 2), "x", &idb, "u"), session(&idb, "u", 10), t(10), 100, vec![]);
        let (ra, rb) = tokio::join!(on_a, on_b);
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(u8::from(rotated(&ra)) + u8::from(rotated(&rb)), 1, "round {round}: {ra:?} / {rb:?}");
        let loser = if rotated(&ra) { &rb } else { &ra };
        assert!(matches!(loser, RefreshOutcome::Invalid), "the loser is a lost race, not a replay: {loser:?}");
        assert!(!exists(&a, &first, "u").await, "the spent pair's session ended");
        assert_eq!(exists(&b, &ida, "u").await, rotated(&ra), "only the winner's session opened");
        assert_eq!(exists(&a, &idb, "u").await, rotated(&rb), "only the winner's session opened");
    }
}

#[tokio::test]
async fn reuse_on_another_node_revokes_the_family_only_after_the_grace_window() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    seed_roles(&a).await;
    a.create_user(user("u", "viewer"), vec![]).await.unwrap();
    a.create_session_with_refresh(session("s0", "u", 0), refresh(hash(1, 0), "f", "s0", "u"), 10, vec![])
        .await
        .unwrap();
    let out = a
        .rotate_refresh(hash(1, 0), refresh(hash(1, 1), "f", "s1", "u"), session("s1", "u", 10), t(10), 10, vec![])
        .await
        .unwrap();
    assert!(rotated(&out));
    // Within 5 s on the other node: the client racing itself; nothing is revoked.
    let out = b
        .rotate_refresh(
            hash(1, 0),
            refresh(hash(1, 2), "f", "s2", "u"),
            session("s2", "u", 1_000),
            t(1_000),
            10,
            vec![],
        )
        .await
        .unwrap();
    assert!(matches!(out, RefreshOutcome::Invalid), "{out:?}");
    assert!(exists(&a, "s1", "u").await && !exists(&a, "s2", "u").await);
    // A minute later: a replay. The family ends, as seen from the first node.
    let out = b
        .rotate_refresh(
            hash(1, 0),
            refresh(hash(1, 3), "f", "s3", "u"),
            session("s3", "u", 60_010),
            t(60_010),
            10,
            vec![],
        )
        .await
        .unwrap();
    assert!(matches!(out, RefreshOutcome::Reused { .. }), "{out:?}");
    assert!(a.list_sessions(&name("u")).await.unwrap().is_empty(), "the family's sessions ended");
    let out = a
        .rotate_refresh(
            hash(1, 1),
            refresh(hash(1, 4), "f", "s4", "u"),
            session("s4", "u", 60_020),
            t(60_020),
            10,
            vec![],
        )
        .await
        .unwrap();
    assert!(!rotated(&out), "the family's live token is revoked: {out:?}");
}

#[tokio::test]
async fn the_session_cap_holds_under_concurrent_logins_on_two_nodes() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    seed_roles(&a).await;
    a.create_user(user("u", "viewer"), vec![]).await.unwrap();
    // One login on each node at the same moment, many times: each transaction alone sees
    // only its own new session, so without the per-user lock both would stay.
    for round in 0..40u8 {
        let (ida, idb) = (format!("r{round}a"), format!("r{round}b"));
        let at = i64::from(round) * 10;
        let (ra, rb) = tokio::join!(
            a.create_session(session(&ida, "u", at), 1, vec![]),
            b.create_session_with_refresh(
                session(&idb, "u", at + 1),
                refresh(hash(round, 0), &idb, &idb, "u"),
                1,
                vec![]
            )
        );
        ra.unwrap();
        rb.unwrap();
        let open = a.list_sessions(&name("u")).await.unwrap();
        assert_eq!(open.len(), 1, "round {round}: {:?}", open.iter().map(|s| s.id.to_string()).collect::<Vec<_>>());
    }
    // Many logins on both nodes at once.
    const MAX: u32 = 3;
    let logins: Vec<Boxed<'_, StoreResult<()>>> = (0..16u8)
        .map(|i| {
            let id = format!("m{i}");
            let s = if i % 2 == 0 { &a } else { &b };
            if i % 4 < 2 {
                Box::pin(s.create_session(session(&id, "u", 1_000 + i64::from(i)), MAX, vec![])) as Boxed<'_, _>
            } else {
                let r = refresh(hash(200, i), &id, &id, "u");
                Box::pin(s.create_session_with_refresh(session(&id, "u", 1_000 + i64::from(i)), r, MAX, vec![]))
                    as Boxed<'_, _>
            }
        })
        .collect();
    for r in all(logins).await {
        r.unwrap();
    }
    assert_eq!(a.list_sessions(&name("u")).await.unwrap().len(), MAX as usize);
}

#[tokio::test]
async fn mfa_claims_are_single_use_across_nodes() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    seed_roles(&a).await;
    a.create_user(user("u", "viewer"), vec![]).await.unwrap();
    let u = name("u");
    let both = |n: usize| (0..n).map(move |i| if i % 2 == 0 { 0 } else { 1 });
    let stores = [&a, &b];

    // A login challenge consumed once.
    a.create_challenge([1; 32], &u, t(1_000)).await.unwrap();
    let consumers: Vec<Boxed<'_, StoreResult<bool>>> =
        both(8).map(|k| Box::pin(stores[k].consume_challenge([1; 32])) as Boxed<'_, _>).collect();
    let won = all(consumers).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1, "a challenge consumed by exactly one of concurrent uses");

    // Attempts never pass the limit.
    b.create_challenge([2; 32], &u, t(1_000)).await.unwrap();
    let attempts: Vec<Boxed<'_, StoreResult<Option<rampart_types::Username>>>> =
        both(10).map(|k| Box::pin(stores[k].attempt_challenge([2; 32], t(0), 3)) as Boxed<'_, _>).collect();
    let admitted = all(attempts).await.into_iter().filter(|r| r.as_ref().unwrap().is_some()).count();
    assert_eq!(admitted, 3);

    // A recovery code spent once.
    a.replace_recovery_codes(&u, vec![[7; 32], [8; 32]], vec![]).await.unwrap();
    let uses: Vec<Boxed<'_, StoreResult<bool>>> =
        both(8).map(|k| Box::pin(stores[k].use_recovery_code(&u, [7; 32], t(5), vec![])) as Boxed<'_, _>).collect();
    let won = all(uses).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1, "a recovery code spent by exactly one of concurrent uses");

    // Replacing the set on both nodes at once leaves one set, not both.
    let (ra, rb) = tokio::join!(
        a.replace_recovery_codes(&u, vec![[10; 32]], vec![]),
        b.replace_recovery_codes(&u, vec![[11; 32]], vec![])
    );
    ra.unwrap();
    rb.unwrap();
    let (ua, ub) = (
        a.use_recovery_code(&u, [10; 32], t(6), vec![]).await.unwrap(),
        a.use_recovery_code(&u, [11; 32], t(6), vec![]).await.unwrap(),
    );
    assert!(ua ^ ub, "exactly one replacement's set remains ({ua}, {ub})");
    assert!(!a.use_recovery_code(&u, [8; 32], t(6), vec![]).await.unwrap(), "the old set is gone");

    // A TOTP step accepted once.
    let claims: Vec<Boxed<'_, StoreResult<bool>>> =
        both(8).map(|k| Box::pin(stores[k].claim_totp_step(&u, 42)) as Boxed<'_, _>).collect();
    let won = all(claims).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1);
}

fn block(cidr: &str, expires: i64) -> IpBlock {
    IpBlock {
        cidr: cidr.into(),
        reason: "test".into(),
        created_at: t(0),
        expires_at: t(expires),
        created_by: "op".into(),
    }
}

#[tokio::test]
async fn a_block_made_on_one_node_is_seen_by_the_other() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    a.add_block(block("192.0.2.0/24", 10_000), vec![]).await.unwrap();
    let seen = b.active_blocks(t(1)).await.unwrap();
    assert_eq!(seen, [block("192.0.2.0/24", 10_000)]);
    // Re-added on B with a shorter expiry: never shortened.
    b.add_block(block("192.0.2.0/24", 500), vec![]).await.unwrap();
    assert_eq!(a.active_blocks(t(1_000)).await.unwrap()[0].expires_at, t(10_000));
    assert!(b.remove_block("192.0.2.0/24", vec![]).await.unwrap());
    assert!(a.active_blocks(t(1)).await.unwrap().is_empty(), "the removal on B is seen on A");
    assert!(!a.remove_block("192.0.2.0/24", vec![]).await.unwrap());
}

fn alert(id: &str, at: i64) -> AlertRecord {
    AlertRecord {
        id: AlertId::from_stored(id.into()),
        severity: "high".into(),
        breach_type: "brute_force".into(),
        dedup_key: "account:u".into(),
        details: serde_json::json!({ "id": id }),
        first_seen: t(at),
        last_seen: t(at),
        count: 1,
        status: "open".into(),
        acknowledged_by: None,
    }
}

#[tokio::test]
async fn alerts_raised_on_two_nodes_with_skewed_clocks_fold_into_one() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    let hook = |id: &str| OutboxItem {
        event_id: id.into(),
        endpoint: "ep".into(),
        payload: "{}".into(),
        attempts: 0,
        next_attempt_at: t(0),
    };
    // B's clock is 2 s behind A's.
    let raises: Vec<Boxed<'_, StoreResult<(AlertRecord, bool)>>> = (0..12i64)
        .map(|i| {
            let (s, at) = if i % 2 == 0 { (&a, 2_000 + i) } else { (&b, i) };
            let id = format!("al{i}");
            Box::pin(s.raise_alert(alert(&id, at), t(-60_000), vec![hook(&id)], vec![])) as Boxed<'_, _>
        })
        .collect();
    let outcomes: Vec<_> = all(raises).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.iter().filter(|(_, new)| *new).count(), 1, "one alert opened");
    let stored = b.list_alerts(AlertFilter { limit: 10, ..AlertFilter::default() }).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].count, 12, "no occurrence lost");
    assert_eq!(stored[0].last_seen, t(2_010), "the latest time, whichever node reported last");
    assert_eq!(stored[0].first_seen, t(1));
    assert_eq!(a.due_webhooks(t(0), 100).await.unwrap().len(), 1, "the new alert's webhooks, once");
}

#[tokio::test]
async fn signing_keys_added_on_two_nodes_leave_one_current() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    let key = |kid: String, at: i64| JwtKeyRecord {
        kid: SigningKeyId::from_stored(kid),
        sealed: vec![1],
        public_key: vec![2],
        created_at: t(at),
        retired_at: None,
    };
    for round in 0..10i64 {
        let (ra, rb) = tokio::join!(
            a.add_jwt_key(key(format!("a{round}"), round), t(round), vec![]),
            b.add_jwt_key(key(format!("b{round}"), round), t(round), vec![])
        );
        ra.unwrap();
        rb.unwrap();
        let current = a.jwt_keys().await.unwrap().into_iter().filter(|k| k.retired_at.is_none()).count();
        assert_eq!(current, 1, "round {round}");
    }
    assert_eq!(b.jwt_keys().await.unwrap().len(), 20);
}

#[tokio::test]
async fn a_login_network_is_new_once_across_nodes() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    for round in 0..10 {
        let network = format!("198.51.{round}.0/24");
        let (na, nb) =
            tokio::join!(a.note_login_network("u", &network, t(0)), b.note_login_network("u", &network, t(0)));
        assert!(na.unwrap() ^ nb.unwrap(), "new for exactly one node");
    }
}

/// A role redefinition ends its holders' sessions and refresh tokens while refreshes of
/// those tokens run on another node: both lock the user row first, so neither deadlocks
/// (PostgreSQL would abort one of them as a retryable error).
#[tokio::test]
async fn role_updates_and_refresh_rotations_do_not_deadlock() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    seed_roles(&a).await;
    a.create_role(role("custom", vec![Permission::DocumentsRead], false), 100, vec![]).await.unwrap();
    let holders: Vec<String> = (0..4).map(|i| format!("h{i}")).collect();
    for h in &holders {
        a.create_user(user(h, "custom"), vec![]).await.unwrap();
    }
    for round in 0..15u8 {
        for (i, h) in holders.iter().enumerate() {
            for k in 0..3u8 {
                let id = format!("{h}-{round}-{k}");
                let r = refresh(hash(round, (i as u8) * 8 + k), &id, &id, h);
                a.create_session_with_refresh(session(&id, h, i64::from(round)), r, 100, vec![]).await.unwrap();
            }
        }
        let perms = if round % 2 == 0 { vec![] } else { vec![Permission::DocumentsRead] };
        let mut work: Vec<Boxed<'_, StoreResult<()>>> =
            vec![Box::pin(a.update_role(role("custom", perms, false), vec![])) as Boxed<'_, _>];
        for (i, h) in holders.iter().enumerate() {
            for k in 0..3u8 {
                let id = format!("{h}-{round}-{k}-next");
                let s = if k == 1 { &a } else { &b };
                let rotation = s.rotate_refresh(
                    hash(round, (i as u8) * 8 + k),
                    refresh(hash(round, 200 + (i as u8) * 8 + k), "x", &id, h),
                    session(&id, h, i64::from(round) + 1),
                    t(i64::from(round) + 1),
                    2,
                    vec![],
                );
                work.push(Box::pin(async move { rotation.await.map(|_| ()) }) as Boxed<'_, _>);
            }
        }
        for (i, r) in all(work).await.into_iter().enumerate() {
            assert!(r.is_ok(), "round {round}, change {i}: {r:?}");
        }
    }
}

/// The conformance case on tie order, on a database whose default collation orders text
/// naturally (ICU, en-US) rather than by bytes.
#[tokio::test]
async fn listing_order_does_not_depend_on_the_database_collation() {
    let db = PgDatabase::create_with("TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'");
    // The database really orders differently from bytes, or this test proves nothing.
    off_runtime(&db.url, |c| {
        let row = c.query_one("SELECT array_agg(x ORDER BY x) FROM (VALUES ('a1'), ('Z1'), ('a-2')) v(x)", &[])?;
        let sorted: Vec<String> = row.get(0);
        assert_eq!(sorted, ["a-2", "a1", "Z1"]);
        Ok(())
    });
    let s = node(&db, "a").await;
    rampart_testkit::conformance::listing_order(&s).await;
}

/// The login delay is one budget whichever node an attempt reaches: failures recorded
/// through node A delay a reservation on node B, holds in flight on one node count on the
/// other, and of reservations racing on both nodes in the delayed regime exactly one is
/// admitted. A hold left by a node that died stops counting after its bound.
#[tokio::test]
async fn the_login_delay_is_one_budget_across_nodes() {
    let db = PgDatabase::create();
    let (a, b) = (node(&db, "a").await, node(&db, "b").await);
    let p = DelayPolicy::new(5, 900);
    let (victim, other) = ([0x11; 32], [0x22; 32]);
    for id in 0..5 {
        assert_eq!(a.reserve_attempt(victim, id, t(0), p).await.unwrap(), Admission::Admitted);
        a.settle_attempt(victim, id, Some(t(0)), p).await.unwrap();
    }
    assert_eq!(b.reserve_attempt(victim, 5, t(0), p).await.unwrap(), Admission::Wait { secs: 1 }, "A's failures");
    assert_eq!(b.reserve_attempt(other, 6, t(0), p).await.unwrap(), Admission::Admitted, "another bucket");

    // In flight on A, it holds B back, whatever the delay says.
    assert_eq!(a.reserve_attempt(victim, 7, t(1_000), p).await.unwrap(), Admission::Admitted);
    assert_eq!(b.reserve_attempt(victim, 8, t(5_000), p).await.unwrap(), Admission::Wait { secs: 1 });
    a.settle_attempt(victim, 7, Some(t(1_000)), p).await.unwrap();

    // Racing on both nodes, each round well after the previous delay ran out.
    for round in 1..=20u64 {
        let at = i64::try_from(round).unwrap() * 1_000_000;
        let on = |node: &PostgresStore, ids: std::ops::Range<u64>| -> Vec<Boxed<'static, (u64, Admission)>> {
            ids.map(|id| {
                let node = node.clone();
                Box::pin(async move { (id, node.reserve_attempt(victim, id, t(at), p).await.unwrap()) })
                    as Boxed<'static, _>
            })
            .collect()
        };
        let (from_a, from_b) =
            tokio::join!(all(on(&a, round * 100..round * 100 + 8)), all(on(&b, round * 100 + 50..round * 100 + 58)));
        let won: Vec<u64> =
            from_a.into_iter().chain(from_b).filter(|(_, x)| *x == Admission::Admitted).map(|(id, _)| id).collect();
        assert_eq!(won.len(), 1, "round {round}: exactly one admitted across the nodes: {won:?}");
        let settler = if won[0] % 100 < 50 { &a } else { &b };
        settler.settle_attempt(victim, won[0], Some(t(at)), p).await.unwrap();
    }

    // Node A dies holding a reservation: B is held back for the bound, not for ever.
    let fresh = [0x33; 32];
    let one = DelayPolicy::new(1, 900);
    assert_eq!(a.reserve_attempt(fresh, 1, t(0), one).await.unwrap(), Admission::Admitted);
    drop(a);
    assert_eq!(b.reserve_attempt(fresh, 2, t(one.hold_ms), one).await.unwrap(), Admission::Wait { secs: 1 });
    assert_eq!(b.reserve_attempt(fresh, 3, t(one.hold_ms + 1), one).await.unwrap(), Admission::Admitted);
}
