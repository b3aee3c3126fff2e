//! OpenID Connect: users linked to (issuer, subject) and pending logins.

use rampart_store::{ExternalIdentity, PendingLogin, Store, StoreError};

use std::sync::Arc;

use super::{ev, name, seed_roles, t, user, TestChainer};

fn pending(state: u8, binding: u8, at: i64) -> PendingLogin {
    PendingLogin {
        state_hash: [state; 32],
        binding_hash: [binding; 32],
        nonce: format!("nonce-{state}"),
        pkce_verifier: format!("verifier-{state}"),
        mode: "token".into(),
        created_at: t(at),
        expires_at: t(at + 600_000),
    }
}

fn link(issuer: &str, subject: &str, u: &str) -> ExternalIdentity {
    ExternalIdentity { issuer: issuer.into(), subject: subject.into(), username: name(u), created_at: t(1) }
}

/// A pending login is taken once, only with its binding; expired ones are swept and the
/// number kept is bounded (the oldest go).
pub async fn oidc_pending_logins(s: &dyn Store) {
    s.create_pending_login(pending(1, 9, 1000), t(1000), 3).await.unwrap();
    // The wrong binding gets nothing and spends nothing.
    assert!(s.take_pending_login([1; 32], [8; 32]).await.unwrap().is_none());
    let got = s.take_pending_login([1; 32], [9; 32]).await.unwrap().expect("taken with its binding");
    assert_eq!(got, pending(1, 9, 1000));
    // Single use: a replayed state finds nothing.
    assert!(s.take_pending_login([1; 32], [9; 32]).await.unwrap().is_none());

    // Concurrent takes of one state: exactly one wins.
    s.create_pending_login(pending(2, 9, 2000), t(2000), 3).await.unwrap();
    let (a, b) = tokio::join!(s.take_pending_login([2; 32], [9; 32]), s.take_pending_login([2; 32], [9; 32]));
    assert_eq!(usize::from(a.unwrap().is_some()) + usize::from(b.unwrap().is_some()), 1);

    // Bounded: at the cap, the oldest is dropped for the new one.
    for i in 3..=6u8 {
        s.create_pending_login(pending(i, 9, 3000 + i64::from(i)), t(3000), 3).await.unwrap();
    }
    assert_eq!(s.count_pending_logins().await.unwrap(), 3);
    assert!(s.take_pending_login([3; 32], [9; 32]).await.unwrap().is_none(), "the oldest was dropped");
    // Swept: a creation after their expiry removes the expired ones.
    s.create_pending_login(pending(7, 9, 700_000), t(700_000), 3).await.unwrap();
    assert_eq!(s.count_pending_logins().await.unwrap(), 1);
}

/// A user linked to (issuer, subject) is created with the link in one transaction; a
/// taken name or an already linked subject creates nothing; the link goes with the user.
pub async fn external_identities(s: &dyn Store) {
    s.set_audit_chainer(Arc::new(TestChainer));
    seed_roles(s).await;
    s.create_user(user("root", "admin"), vec![]).await.unwrap();
    let iss = "https://idp.example";
    assert!(s.get_external_identity(iss, "sub-1").await.unwrap().is_none());
    s.create_external_user(user("carol", "viewer"), link(iss, "sub-1", "carol"), vec![ev("user_create")])
        .await
        .unwrap();
    assert_eq!(s.get_external_identity(iss, "sub-1").await.unwrap(), Some(link(iss, "sub-1", "carol")));
    // Same subject at another issuer: a different identity.
    assert!(s.get_external_identity("https://other.example", "sub-1").await.unwrap().is_none());

    // A taken username: refused, no link made.
    s.create_user(user("dave", "viewer"), vec![]).await.unwrap();
    let refused = s.create_external_user(user("dave", "viewer"), link(iss, "sub-2", "dave"), vec![ev("user_create")]);
    let err = audited!(s, [], refused.await).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert!(s.get_external_identity(iss, "sub-2").await.unwrap().is_none());
    // An identity already linked: refused, no user made.
    let err = s.create_external_user(user("erin", "viewer"), link(iss, "sub-1", "erin"), vec![]).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert!(s.get_user(&name("erin")).await.unwrap().is_none());

    // Deleting the user deletes the link: a later account of that name is never reached.
    s.delete_user(&name("carol"), vec![]).await.unwrap();
    assert!(s.get_external_identity(iss, "sub-1").await.unwrap().is_none());
}
