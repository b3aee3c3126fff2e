//! The second factor: enrolment, TOTP steps, recovery codes, login challenges, JWT signing
//! keys and refresh-token families.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rampart_store::{
    Assurance, JwtKeyRecord, RefreshOutcome, RefreshRecord, SessionRecord, Store, StoreError, StoreResult, Topic,
    UserChange,
};
use rampart_types::{Permission, RoleName, Username};

use super::{all, ev, name, role, seed_roles, session, sid, t, user, TestChainer};

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

fn code(n: u8) -> [u8; 32] {
    [n; 32]
}

fn refresh(token: u8, family: &str, session_id: &str, u: &str, at: i64, expires: i64, a: Assurance) -> RefreshRecord {
    RefreshRecord {
        token_hash: [token; 32],
        family_id: rampart_types::FamilyId::from_stored(family.into()),
        session_id: sid(session_id),
        username: name(u),
        created_at: t(at),
        expires_at: t(expires),
        assurance: a,
    }
}

fn session_with(id: &str, u: &str, at: i64, a: Assurance) -> SessionRecord {
    SessionRecord { assurance: a, ..session(id, u, at) }
}

/// What the core hands `rotate_refresh`: a pair built for a nominal user with the weakest
/// assurance, which the store must replace with the family's.
fn nominal(token: u8, session_id: &str, at: i64) -> (RefreshRecord, SessionRecord) {
    let r = refresh(token, "nominal-family", session_id, "refresh", at, at + 1_000_000_000, Assurance::Password);
    (r, session_with(session_id, "refresh", at, Assurance::Password))
}

async fn rotate(s: &dyn Store, old: u8, token: u8, session_id: &str, now: i64, max: u32) -> RefreshOutcome {
    let (r, sess) = nominal(token, session_id, now);
    s.rotate_refresh([old; 32], r, sess, t(now), max, vec![]).await.unwrap()
}

fn rotated(o: &RefreshOutcome) -> Option<(String, String, Assurance)> {
    match o {
        RefreshOutcome::Rotated { username, family_id, assurance } => {
            Some((username.to_string(), family_id.to_string(), *assurance))
        }
        _ => None,
    }
}

async fn session_ids(s: &dyn Store, u: &str) -> Vec<String> {
    s.list_sessions(&name(u)).await.unwrap().into_iter().map(|x| x.id.to_string()).collect()
}

async fn exists(s: &dyn Store, session_id: &str, u: &str) -> bool {
    s.get_session_by_token(&session(session_id, u, 0).token_hash).await.unwrap().is_some()
}

/// Pending secret, activation (ending every session and refresh token), TOTP step claims,
/// deactivation.
pub async fn mfa_enrolment(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("root", "admin"), vec![]).await.unwrap();
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    assert!(matches!(s.mfa_state(&name("ghost")).await, Err(StoreError::NotFound)));
    assert!(matches!(s.set_mfa_pending(&name("ghost"), Some(b"p".to_vec())).await, Err(StoreError::NotFound)));
    let fresh = s.mfa_state(&name("u")).await.unwrap();
    assert_eq!((fresh.secret, fresh.pending, fresh.last_step), (None, None, 0));

    // Activation without a chain key fails closed and changes nothing.
    s.set_mfa_pending(&name("u"), Some(b"p1".to_vec())).await.unwrap();
    assert_eq!(s.mfa_state(&name("u")).await.unwrap().pending.as_deref(), Some(b"p1".as_slice()));
    s.create_session(session("s1", "u", 0), 10, vec![]).await.unwrap();
    let closed = s.activate_mfa(&name("u"), vec![code(1)], vec![ev("mfa_enable")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    let st = s.mfa_state(&name("u")).await.unwrap();
    assert_eq!((st.secret, st.pending.as_deref()), (None, Some(b"p1".as_slice())));
    assert!(!s.get_user(&name("u")).await.unwrap().unwrap().mfa_enabled);
    assert_eq!(session_ids(s, "u").await, ["s1"], "sessions kept when activation failed");
    assert!(!s.use_recovery_code(&name("u"), code(1), t(0), vec![]).await.unwrap(), "codes not stored");
    s.set_audit_chainer(Arc::new(TestChainer));

    // Nothing pending: activation is refused.
    s.set_mfa_pending(&name("u"), None).await.unwrap();
    assert!(s.mfa_state(&name("u")).await.unwrap().pending.is_none());
    let none = audited!(s, [], s.activate_mfa(&name("u"), vec![code(1)], vec![ev("mfa_enable")]).await);
    assert!(matches!(none, Err(StoreError::NotFound)), "{none:?}");
    assert!(!s.get_user(&name("u")).await.unwrap().unwrap().mfa_enabled);
    assert_eq!(session_ids(s, "u").await, ["s1"]);
    let ghost = audited!(s, [], s.activate_mfa(&name("ghost"), vec![], vec![ev("mfa_enable")]).await);
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");

    // A later pending secret replaces an earlier one.
    s.set_mfa_pending(&name("u"), Some(b"p1".to_vec())).await.unwrap();
    s.set_mfa_pending(&name("u"), Some(b"p2".to_vec())).await.unwrap();
    s.create_session(session("s2", "u", 1), 10, vec![]).await.unwrap();
    let family = refresh(7, "f1", "s3", "u", 2, 1_000_000, Assurance::Password);
    s.create_session_with_refresh(session("s3", "u", 2), family, 10, vec![]).await.unwrap();
    s.create_session(session("r1", "root", 0), 10, vec![]).await.unwrap();
    let generation = s.invalidation().generation(Topic::Auth);
    audited!(
        s,
        ["mfa_enable"],
        s.activate_mfa(&name("u"), vec![code(1), code(2)], vec![ev("mfa_enable")]).await.unwrap()
    );
    assert!(s.invalidation().generation(Topic::Auth) > generation, "ended sessions reach the caches");
    let st = s.mfa_state(&name("u")).await.unwrap();
    assert_eq!((st.secret.as_deref(), st.pending), (Some(b"p2".as_slice()), None), "pending secret made active");
    assert!(s.get_user(&name("u")).await.unwrap().unwrap().mfa_enabled);
    assert!(session_ids(s, "u").await.is_empty(), "every session opened without the factor ended");
    assert_eq!(rotated(&rotate(s, 7, 8, "s4", 10, 10).await), None, "refresh tokens ended too");
    assert!(session_ids(s, "u").await.is_empty());
    assert_eq!(session_ids(s, "root").await, ["r1"], "other users untouched");
    assert!(s.use_recovery_code(&name("u"), code(2), t(3), vec![]).await.unwrap(), "codes stored with activation");
    assert!(!s.get_user(&name("root")).await.unwrap().unwrap().mfa_enabled);

    // TOTP steps: each accepted once, never an older one.
    let u = name("u");
    let claim = |step: i64| s.claim_totp_step(&u, step);
    assert!(claim(100).await.unwrap());
    assert!(!claim(100).await.unwrap(), "the same step twice");
    assert!(!claim(99).await.unwrap(), "an older step");
    assert!(claim(105).await.unwrap());
    assert!(!claim(101).await.unwrap(), "older than the last accepted");
    assert_eq!(s.mfa_state(&name("u")).await.unwrap().last_step, 105);
    assert!(s.claim_totp_step(&name("root"), 100).await.unwrap(), "steps are per user");
    let racing: Vec<Boxed<'_, StoreResult<bool>>> = (0..8).map(|_| Box::pin(claim(200)) as Boxed<'_, _>).collect();
    let won = all(racing).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1, "a step is claimed by exactly one of concurrent uses");
    assert_eq!(s.mfa_state(&name("u")).await.unwrap().last_step, 200);

    // Disable without ending sessions: secrets and codes go, sessions stay.
    s.create_session(session("s5", "u", 5), 10, vec![]).await.unwrap();
    audited!(s, ["mfa_disable"], s.disable_mfa(&name("u"), false, vec![ev("mfa_disable")]).await.unwrap());
    let st = s.mfa_state(&name("u")).await.unwrap();
    assert_eq!((st.secret, st.pending), (None, None));
    assert!(!s.get_user(&name("u")).await.unwrap().unwrap().mfa_enabled);
    assert!(!s.use_recovery_code(&name("u"), code(1), t(6), vec![]).await.unwrap(), "codes cleared");
    assert_eq!(session_ids(s, "u").await, ["s5"]);

    // Re-enrol, then disable ending every session (and the refresh tokens that renew them).
    s.set_mfa_pending(&name("u"), Some(b"p3".to_vec())).await.unwrap();
    s.activate_mfa(&name("u"), vec![code(3)], vec![]).await.unwrap();
    assert_eq!(s.mfa_state(&name("u")).await.unwrap().secret.as_deref(), Some(b"p3".as_slice()));
    s.create_session(session("s6", "u", 6), 10, vec![]).await.unwrap();
    let family = refresh(9, "f2", "s7", "u", 7, 1_000_000, Assurance::MultiFactor);
    s.create_session_with_refresh(session_with("s7", "u", 7, Assurance::MultiFactor), family, 10, vec![])
        .await
        .unwrap();
    s.set_mfa_pending(&name("u"), Some(b"p4".to_vec())).await.unwrap();
    let generation = s.invalidation().generation(Topic::Auth);
    audited!(s, ["mfa_reset"], s.disable_mfa(&name("u"), true, vec![ev("mfa_reset")]).await.unwrap());
    let ghost = audited!(s, [], s.disable_mfa(&name("ghost"), true, vec![ev("mfa_reset")]).await);
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");
    assert!(s.invalidation().generation(Topic::Auth) > generation);
    let st = s.mfa_state(&name("u")).await.unwrap();
    assert_eq!((st.secret, st.pending), (None, None), "pending secret cleared as well");
    assert!(session_ids(s, "u").await.is_empty());
    assert_eq!(rotated(&rotate(s, 9, 10, "s8", 20, 10).await), None, "refresh token ended");
    assert!(!s.use_recovery_code(&name("u"), code(3), t(8), vec![]).await.unwrap());
    assert_eq!(session_ids(s, "root").await, ["r1"]);
}

/// Recovery codes: single use (also under concurrency), per user, replaced as a set; the
/// use and its audit record commit together.
pub async fn recovery_codes(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    s.create_user(user("v", "viewer"), vec![]).await.unwrap();
    let (u, v) = (name("u"), name("v"));
    s.replace_recovery_codes(&u, vec![code(1), code(2), code(3)], vec![]).await.unwrap();
    let closed = s.replace_recovery_codes(&u, vec![code(9)], vec![ev("codes")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    let closed = s.use_recovery_code(&u, code(1), t(1), vec![ev("code_use")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    s.set_audit_chainer(Arc::new(TestChainer));

    assert!(
        audited!(s, ["code_use"], s.use_recovery_code(&u, code(1), t(2), vec![ev("code_use")]).await.unwrap()),
        "the failed use did not spend the code"
    );
    assert!(
        !audited!(s, [], s.use_recovery_code(&u, code(1), t(3), vec![ev("code_use")]).await.unwrap()),
        "single use"
    );
    assert!(
        !audited!(s, [], s.use_recovery_code(&u, code(9), t(3), vec![ev("code_use")]).await.unwrap()),
        "the refused replacement stored nothing"
    );
    assert!(
        !audited!(s, [], s.use_recovery_code(&v, code(2), t(3), vec![ev("code_use")]).await.unwrap()),
        "another user's code"
    );
    assert!(!s.use_recovery_code(&name("ghost"), code(2), t(3), vec![]).await.unwrap());

    // Concurrent uses of one code: exactly one succeeds, with exactly one record.
    let before = super::audit_tail(s).await;
    let racing: Vec<Boxed<'_, StoreResult<bool>>> = (0..6)
        .map(|i| Box::pin(s.use_recovery_code(&u, code(2), t(10 + i), vec![ev("code_use")])) as Boxed<'_, _>)
        .collect();
    let won = all(racing).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1, "a code spent by exactly one of concurrent uses");
    assert_eq!(super::audited_since(s, before).await, ["code_use"]);

    // Replacement: the old set is gone, the new one usable; other users untouched.
    s.replace_recovery_codes(&v, vec![code(3), code(5)], vec![]).await.unwrap();
    audited!(s, ["codes"], s.replace_recovery_codes(&u, vec![code(4), code(5)], vec![ev("codes")]).await.unwrap());
    assert!(!s.use_recovery_code(&u, code(3), t(20), vec![]).await.unwrap(), "old codes replaced");
    assert!(s.use_recovery_code(&u, code(4), t(20), vec![]).await.unwrap());
    assert!(s.use_recovery_code(&v, code(3), t(20), vec![]).await.unwrap(), "v's codes are its own");
    assert!(s.use_recovery_code(&v, code(5), t(20), vec![]).await.unwrap());
    assert!(s.use_recovery_code(&u, code(5), t(20), vec![]).await.unwrap(), "the same code for two users is two codes");
    // A replacement brings a spent code back as new; an empty one removes them all.
    s.replace_recovery_codes(&u, vec![code(4), code(6)], vec![]).await.unwrap();
    assert!(s.use_recovery_code(&u, code(4), t(21), vec![]).await.unwrap());
    s.replace_recovery_codes(&u, vec![], vec![]).await.unwrap();
    assert!(!s.use_recovery_code(&u, code(6), t(22), vec![]).await.unwrap());
}

/// Login challenges: attempts counted against a limit, expiry, single consumption.
pub async fn mfa_challenges(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    s.create_user(user("v", "viewer"), vec![]).await.unwrap();
    let h = |n: u8| [n; 32];
    s.create_challenge(h(1), &name("u"), t(1_000)).await.unwrap();
    s.create_challenge(h(2), &name("v"), t(1_000)).await.unwrap();
    for i in 0..3 {
        assert_eq!(s.attempt_challenge(h(1), t(i), 3).await.unwrap(), Some(name("u")), "attempt {i}");
    }
    assert_eq!(s.attempt_challenge(h(1), t(4), 3).await.unwrap(), None, "out of attempts");
    assert_eq!(s.attempt_challenge(h(1), t(5), 4).await.unwrap(), Some(name("u")), "the count is the challenge's");
    assert_eq!(s.attempt_challenge(h(1), t(6), 4).await.unwrap(), None);
    assert_eq!(s.attempt_challenge(h(2), t(999), 3).await.unwrap(), Some(name("v")), "each challenge its own user");
    assert_eq!(s.attempt_challenge(h(2), t(1_000), 3).await.unwrap(), None, "expired at its expiry");
    assert_eq!(s.attempt_challenge(h(2), t(5_000), 3).await.unwrap(), None);
    assert_eq!(s.attempt_challenge(h(9), t(0), 3).await.unwrap(), None, "unknown");
    assert!(!s.consume_challenge(h(9)).await.unwrap());

    s.create_challenge(h(3), &name("u"), t(1_000)).await.unwrap();
    assert_eq!(s.attempt_challenge(h(3), t(0), 5).await.unwrap(), Some(name("u")));
    assert!(s.consume_challenge(h(3)).await.unwrap());
    assert!(!s.consume_challenge(h(3)).await.unwrap(), "consumed once");
    assert_eq!(s.attempt_challenge(h(3), t(1), 5).await.unwrap(), None, "a used challenge takes no attempts");

    // Concurrent attempts never exceed the limit; concurrent consumption succeeds once.
    s.create_challenge(h(4), &name("u"), t(1_000)).await.unwrap();
    let attempts: Vec<Boxed<'_, StoreResult<Option<Username>>>> =
        (0..7).map(|_| Box::pin(s.attempt_challenge(h(4), t(0), 3)) as Boxed<'_, _>).collect();
    let admitted = all(attempts).await.into_iter().filter(|r| r.as_ref().unwrap().is_some()).count();
    assert_eq!(admitted, 3, "attempts beyond the limit admitted");
    s.create_challenge(h(5), &name("u"), t(1_000)).await.unwrap();
    let consumers: Vec<Boxed<'_, StoreResult<bool>>> =
        (0..8).map(|_| Box::pin(s.consume_challenge(h(5))) as Boxed<'_, _>).collect();
    let won = all(consumers).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1, "exactly one of concurrent consumers");
    assert_eq!(s.attempt_challenge(h(5), t(0), 3).await.unwrap(), None);
}

fn jwt(kid: &str, at: i64) -> JwtKeyRecord {
    JwtKeyRecord {
        kid: rampart_types::SigningKeyId::from_stored(kid.into()),
        sealed: format!("sealed:{kid}").into_bytes(),
        public_key: format!("public:{kid}").into_bytes(),
        created_at: t(at),
        retired_at: None,
    }
}

/// JWT signing keys: a new key retires every current one, atomically.
pub async fn jwt_signing_keys(s: &dyn Store) {
    type Row = (String, Vec<u8>, Vec<u8>, rampart_types::Timestamp, Option<rampart_types::Timestamp>);
    let keys = || async {
        let keys = s.jwt_keys().await.unwrap();
        keys.into_iter()
            .map(|k| (k.kid.to_string(), k.sealed, k.public_key, k.created_at, k.retired_at))
            .collect::<Vec<Row>>()
    };
    let row = |kid: &str, at: i64, retired: Option<i64>| -> Row {
        let k = jwt(kid, at);
        (k.kid.to_string(), k.sealed, k.public_key, k.created_at, retired.map(t))
    };
    assert!(keys().await.is_empty());
    let closed = s.add_jwt_key(jwt("k1", 0), t(0), vec![ev("jwt_key")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(keys().await.is_empty());
    s.set_audit_chainer(Arc::new(TestChainer));

    audited!(s, ["jwt_key"], s.add_jwt_key(jwt("k1", 0), t(0), vec![ev("jwt_key")]).await.unwrap());
    assert_eq!(keys().await, [row("k1", 0, None)]);
    s.add_jwt_key(jwt("k2", 10), t(10), vec![]).await.unwrap();
    assert_eq!(keys().await, [row("k1", 0, Some(10)), row("k2", 10, None)]);
    audited!(s, ["jwt_key"], s.add_jwt_key(jwt("k3", 20), t(25), vec![ev("jwt_key")]).await.unwrap());
    assert_eq!(
        keys().await,
        [row("k1", 0, Some(10)), row("k2", 10, Some(25)), row("k3", 20, None)],
        "only current keys retire; a retired key keeps its time"
    );
    // A refused key (kid taken) retires nothing.
    let dup = audited!(s, [], s.add_jwt_key(jwt("k3", 30), t(30), vec![ev("jwt_key")]).await);
    assert!(dup.is_err(), "kid reused");
    assert_eq!(keys().await, [row("k1", 0, Some(10)), row("k2", 10, Some(25)), row("k3", 20, None)]);
}

/// Refresh-token families: the first token with its session, rotation carrying user,
/// assurance and lifetime, reuse revoking the family, and every way a session ends
/// reaching its refresh token.
pub async fn refresh_tokens(s: &dyn Store) {
    use Assurance::{MultiFactor, Password};
    seed_roles(s).await;
    s.create_user(user("root", "admin"), vec![]).await.unwrap();
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    s.create_session(session("root1", "root", 0), 10, vec![]).await.unwrap();

    // Without a chain key: an audited login or rotation is refused and leaves no trace.
    let closed = s
        .create_session_with_refresh(
            session("x0", "u", 0),
            refresh(0xA0, "fx", "x0", "u", 0, 10_000_000, Password),
            10,
            vec![ev("login")],
        )
        .await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(!exists(s, "x0", "u").await);
    assert_eq!(rotated(&rotate(s, 0xA0, 0xA1, "x1", 1, 10).await), None, "its token was not stored");
    s.create_session_with_refresh(
        session("s0", "u", 0),
        refresh(0xB0, "f0", "s0", "u", 0, 10_000_000, Password),
        10,
        vec![],
    )
    .await
    .unwrap();
    let (r, sess) = nominal(0xB1, "s0b", 1);
    let closed = s.rotate_refresh([0xB0; 32], r, sess, t(1), 10, vec![ev("refresh")]).await;
    assert!(matches!(closed, Err(StoreError::AuditUnavailable(_))), "{closed:?}");
    assert!(exists(s, "s0", "u").await && !exists(s, "s0b", "u").await);
    s.set_audit_chainer(Arc::new(TestChainer));
    assert_eq!(
        rotated(&rotate(s, 0xB0, 0xB1, "s0b", 2, 10).await).unwrap().1,
        "f0",
        "the failed rotation spent nothing"
    );

    // Login: session and first token together.
    let first = refresh(1, "f1", "s1", "u", 10, 10_000_000, MultiFactor);
    audited!(
        s,
        ["login"],
        s.create_session_with_refresh(session_with("s1", "u", 10, MultiFactor), first, 10, vec![ev("login")])
            .await
            .unwrap()
    );
    assert_eq!(
        s.get_session_by_token(&session("s1", "u", 0).token_hash).await.unwrap().unwrap().assurance,
        MultiFactor
    );
    // Session and token are one: a login failing on either stores neither.
    let taken_session = refresh(0xC0, "fc", "s1", "u", 10, 10_000_000, Password);
    let r = audited!(
        s,
        [],
        s.create_session_with_refresh(session("s1", "u", 11), taken_session, 10, vec![ev("login")]).await
    );
    assert!(r.is_err(), "session id reused");
    assert_eq!(rotated(&rotate(s, 0xC0, 0xC1, "c1", 12, 10).await), None, "token of the refused login not stored");
    let taken_token = refresh(1, "fd", "d1", "u", 10, 10_000_000, Password);
    let r = audited!(
        s,
        [],
        s.create_session_with_refresh(session("d1", "u", 11), taken_token, 10, vec![ev("login")]).await
    );
    assert!(r.is_err(), "token hash reused");
    assert!(!exists(s, "d1", "u").await, "session of the refused login not stored");

    // Unknown token: nothing happens.
    assert!(matches!(rotate(s, 0xEE, 0xEF, "e1", 20, 10).await, RefreshOutcome::Invalid));
    assert!(!exists(s, "e1", "refresh").await && !exists(s, "e1", "u").await);

    // Rotation: the old pair's session ends; the new pair is the family's user and keeps the
    // assurance of the family's login whatever the caller passed.
    let generation = s.invalidation().generation(Topic::Auth);
    let (r, sess) = nominal(2, "s2", 30);
    let out =
        audited!(s, ["refresh"], s.rotate_refresh([1; 32], r, sess, t(30), 10, vec![ev("refresh")]).await.unwrap());
    assert_eq!(rotated(&out), Some(("u".into(), "f1".into(), MultiFactor)));
    assert!(s.invalidation().generation(Topic::Auth) > generation, "the ended session reaches the caches");
    assert!(!exists(s, "s1", "u").await, "old pair's session ended");
    let s2 = s.get_session_by_token(&session("s2", "u", 0).token_hash).await.unwrap().unwrap();
    assert_eq!((s2.username.as_str(), s2.assurance), ("u", MultiFactor));
    assert!(s.list_sessions(&name("refresh")).await.unwrap().is_empty(), "no session for the nominal user");
    assert_eq!(session_ids(s, "root").await, ["root1"]);

    // The new session counts against the limit like a login's: the oldest ends.
    s.create_session(session("p1", "u", 40), 10, vec![]).await.unwrap();
    s.create_session(session("p2", "u", 41), 10, vec![]).await.unwrap();
    let out = rotate(s, 2, 3, "s3", 50, 2).await;
    assert_eq!(rotated(&out).unwrap().1, "f1");
    assert_eq!(session_ids(s, "u").await, ["p2", "s3"], "s2 (rotated away) and p1 (oldest) ended");

    // A spent token coming back (well after its use) revokes the whole family. (The SQLite
    // store answers a reuse within 5 s as a lost race: `Invalid`, nothing revoked. The trait
    // doc does not mention that window, so this waits well past it.)
    let generation = s.invalidation().generation(Topic::Auth);
    let (r, sess) = nominal(4, "s4", 120_000);
    let out = audited!(
        s,
        ["refresh"],
        s.rotate_refresh([2; 32], r, sess, t(120_000), 10, vec![ev("refresh")]).await.unwrap()
    );
    match out {
        RefreshOutcome::Reused { username, family_id } => {
            assert_eq!((username.as_str(), family_id.as_str()), ("u", "f1"))
        }
        other => panic!("reuse not detected: {other:?}"),
    }
    assert!(s.invalidation().generation(Topic::Auth) > generation);
    assert_eq!(session_ids(s, "u").await, ["p2"], "the family's sessions ended; no new one opened");
    assert!(!exists(s, "s4", "u").await && !exists(s, "s4", "refresh").await);
    assert_eq!(rotated(&rotate(s, 3, 5, "s5", 120_001, 10).await), None, "the family's live token is revoked");
    assert!(!exists(s, "s5", "u").await);
    assert_eq!(session_ids(s, "root").await, ["root1"], "other families untouched");

    // Expiry: a token is refused at its expiry, and the refusal spends nothing.
    let late = refresh(10, "f2", "s10", "u", 100, 200_000, Password);
    s.create_session_with_refresh(session("s10", "u", 100), late, 10, vec![]).await.unwrap();
    assert!(matches!(rotate(s, 10, 11, "s11", 200_000, 10).await, RefreshOutcome::Invalid));
    assert!(exists(s, "s10", "u").await && !exists(s, "s11", "u").await);
    assert_eq!(rotated(&rotate(s, 10, 11, "s11", 199_999, 10).await).unwrap().1, "f2", "still live before expiry");

    // The family keeps its absolute lifetime and its assurance: rotation never extends or
    // upgrades them, whatever the new pair says.
    let pw = refresh(20, "f3", "s20", "u", 150_000, 300_000, Password);
    s.create_session_with_refresh(session("s20", "u", 150_000), pw, 10, vec![]).await.unwrap();
    let mut longer = refresh(21, "other", "s21", "u", 150_010, 99_000_000, MultiFactor);
    longer.username = name("root");
    let upgraded = session_with("s21", "root", 150_010, MultiFactor);
    let out = s.rotate_refresh([20; 32], longer, upgraded, t(150_010), 10, vec![]).await.unwrap();
    assert_eq!(rotated(&out), Some(("u".into(), "f3".into(), Password)));
    let s21 = s.get_session_by_token(&session("s21", "u", 0).token_hash).await.unwrap().unwrap();
    assert_eq!((s21.username.as_str(), s21.assurance), ("u", Password));
    assert_eq!(session_ids(s, "root").await, ["root1"]);
    assert!(matches!(rotate(s, 21, 22, "s22", 300_000, 10).await, RefreshOutcome::Invalid), "lifetime extended");
    assert_eq!(rotated(&rotate(s, 21, 22, "s22", 299_999, 10).await).unwrap(), ("u".into(), "f3".into(), Password));

    // Every way a session ends takes its refresh token along: eviction, logout, ending all
    // sessions, disabling the user.
    let open = |tok: u8, id: &'static str, at: i64| {
        s.create_session_with_refresh(
            session(id, "u", at),
            refresh(tok, id, id, "u", at, 10_000_000, Password),
            10,
            vec![],
        )
    };
    open(30, "e30", 400_000).await.unwrap();
    for (i, id) in ["q1", "q2"].iter().enumerate() {
        s.create_session(session(id, "u", 400_001 + i as i64), 1, vec![]).await.unwrap();
    }
    assert_eq!(session_ids(s, "u").await, ["q2"]);
    assert_eq!(rotated(&rotate(s, 30, 31, "e31", 400_010, 10).await), None, "an evicted session came back");
    open(32, "e32", 400_020).await.unwrap();
    assert!(s.delete_session(&sid("e32"), vec![ev("logout")]).await.unwrap());
    assert_eq!(rotated(&rotate(s, 32, 33, "e33", 400_030, 10).await), None, "a logged-out session came back");
    open(34, "e34", 400_040).await.unwrap();
    open(35, "e35", 400_041).await.unwrap();
    assert_eq!(s.delete_user_sessions(&name("u"), Some(&sid("e35")), vec![]).await.unwrap(), 2);
    assert_eq!(rotated(&rotate(s, 34, 36, "e36", 400_050, 10).await), None, "an ended session came back");
    assert!(rotated(&rotate(s, 35, 37, "e37", 400_060, 10).await).is_some(), "the kept session's token still works");
    open(38, "e38", 400_070).await.unwrap();
    let disable = UserChange { disabled: Some(true), ..Default::default() };
    s.update_user(&name("u"), disable, vec![]).await.unwrap();
    assert_eq!(rotated(&rotate(s, 38, 39, "e39", 400_080, 10).await), None, "a disabled user's session came back");
    assert!(s.list_sessions(&name("u")).await.unwrap().is_empty());
    // Redefining a role ends its holders' sessions, refresh tokens included.
    s.create_role(role("custom", vec![Permission::DocumentsRead], false), 1000, vec![]).await.unwrap();
    let to_custom =
        UserChange { disabled: Some(false), role: Some(RoleName::parse("custom").unwrap()), ..Default::default() };
    s.update_user(&name("u"), to_custom, vec![]).await.unwrap();
    open(40, "e40", 400_090).await.unwrap();
    s.update_role(role("custom", vec![], false), vec![]).await.unwrap();
    assert_eq!(rotated(&rotate(s, 40, 41, "e41", 400_100, 10).await), None, "a redefined role's session came back");
    assert!(s.list_sessions(&name("u")).await.unwrap().is_empty());
}

/// Of concurrent uses of one refresh token, exactly one rotates.
pub async fn refresh_concurrent_use(s: &dyn Store) {
    seed_roles(s).await;
    s.create_user(user("u", "viewer"), vec![]).await.unwrap();
    for (round, ways) in [(0u8, 2usize), (1, 6)] {
        let family = format!("f{round}");
        let first = format!("s{round}");
        let tok = 100 + round * 10;
        let r = refresh(tok, &family, &first, "u", 0, 10_000_000, Assurance::Password);
        s.create_session_with_refresh(session(&first, "u", 0), r, 10, vec![]).await.unwrap();
        let ids: Vec<String> = (0..ways).map(|i| format!("s{round}-{i}")).collect();
        let uses: Vec<Boxed<'_, StoreResult<RefreshOutcome>>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (r, sess) = nominal(tok + 1 + i as u8, id, 10);
                Box::pin(s.rotate_refresh([tok; 32], r, sess, t(10), 10, vec![])) as Boxed<'_, _>
            })
            .collect();
        let outcomes: Vec<_> = all(uses).await.into_iter().map(|o| o.unwrap()).collect();
        let winners: Vec<usize> = (0..ways).filter(|i| rotated(&outcomes[*i]).is_some()).collect();
        assert_eq!(winners.len(), 1, "{ways} concurrent uses: {outcomes:?}");
        assert!(!exists(s, &first, "u").await, "the spent pair's session ended");
        let mut open = Vec::new();
        for id in &ids {
            if exists(s, id, "u").await {
                open.push(id.clone());
            }
        }
        assert_eq!(open, [ids[winners[0]].clone()], "only the winner's session opened");
        // Only the winner's new token was stored.
        for i in (0..ways).filter(|i| *i != winners[0]) {
            assert_eq!(rotated(&rotate(s, tok + 1 + i as u8, 250, "never", 20, 10).await), None);
        }
    }
}
