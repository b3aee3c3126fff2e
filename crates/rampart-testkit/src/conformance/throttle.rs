//! The login delay's buckets (`ThrottleStore`): the rules of the core's in-memory throttle,
//! kept by the store so that every node on it charges one budget; plus the bound on
//! reservations a dead node never settles.

use rampart_store::{Admission, BucketKey, DelayPolicy, Store};

use super::{all, t, Boxed};

const ADMITTED: Admission = Admission::Admitted;

fn wait(secs: u64) -> Admission {
    Admission::Wait { secs }
}

fn bucket(n: u8) -> BucketKey {
    [n; 32]
}

/// Reserves hold `id` at `at` and fails it at once; panics when it is not admitted.
async fn fail(s: &dyn Store, b: BucketKey, id: u64, at: i64, p: DelayPolicy) {
    assert_eq!(s.reserve_attempt(b, id, t(at), p).await.unwrap(), ADMITTED, "attempt {id} at {at} ms");
    s.settle_attempt(b, id, Some(t(at)), p).await.unwrap();
}

/// Reservations, failures, the growing and capped delay, success and release: the rules of
/// `LoginThrottle`, kept by the store.
pub async fn login_delay(s: &dyn Store) {
    let p = DelayPolicy::new(3, 8);
    let b = bucket(1);
    for id in 0..3 {
        fail(s, b, id, 0, p).await;
    }
    assert_eq!(s.reserve_attempt(b, 10, t(0), p).await.unwrap(), wait(1), "the fourth waits 1 s");
    fail(s, b, 11, 1_000, p).await;
    assert_eq!(s.reserve_attempt(b, 12, t(1_000), p).await.unwrap(), wait(2), "then 2 s");
    assert_eq!(s.reserve_attempt(b, 13, t(2_500), p).await.unwrap(), wait(1), "at least 1 s");
    let mut at = 1_000;
    for id in 20..30 {
        at += 8_000;
        fail(s, b, id, at, p).await;
    }
    assert_eq!(s.reserve_attempt(b, 30, t(at), p).await.unwrap(), wait(8), "capped");
    assert_eq!(s.reserve_attempt(bucket(2), 31, t(at), p).await.unwrap(), ADMITTED, "other buckets unaffected");

    // In the delayed regime one attempt is in flight at a time, even once its delay is over.
    at += 8_000;
    assert_eq!(s.reserve_attempt(b, 40, t(at), p).await.unwrap(), ADMITTED);
    assert_eq!(s.reserve_attempt(b, 41, t(at + 60), p).await.unwrap(), wait(1), "one in flight");
    // Success forgets the bucket, the attempt's own hold included: counting starts over.
    s.clear_attempts(b).await.unwrap();
    for id in 50..53 {
        fail(s, b, id, at, p).await;
    }
    assert_eq!(s.reserve_attempt(b, 53, t(at), p).await.unwrap(), wait(1), "counting starts over");
    // Settling after a success cleared the bucket changes nothing.
    s.clear_attempts(b).await.unwrap();
    s.settle_attempt(b, 40, Some(t(at)), p).await.unwrap();
    for id in 60..63 {
        fail(s, b, id, at, p).await;
    }

    // Release (a right password, the second factor still to come) ends the reservation
    // without counting it either way.
    let (m, one) = (bucket(3), DelayPolicy::new(1, 900));
    assert_eq!(s.reserve_attempt(m, 1, t(0), one).await.unwrap(), ADMITTED);
    assert_eq!(s.reserve_attempt(m, 2, t(0), one).await.unwrap(), wait(1), "its hold counts while in flight");
    s.settle_attempt(m, 1, None, one).await.unwrap();
    fail(s, m, 3, 0, one).await;
    assert_eq!(s.reserve_attempt(m, 4, t(0), one).await.unwrap(), wait(1), "one failure counted, not two");
    // Settling the same hold twice ends it once; a failure still counts.
    fail(s, m, 5, 1_000, one).await;
    s.settle_attempt(m, 5, Some(t(1_000)), one).await.unwrap();
    assert_eq!(s.reserve_attempt(m, 6, t(1_000), one).await.unwrap(), wait(4), "three failures: 4 s");

    // Failures are forgotten after a quiet day.
    let later = at + DelayPolicy::FORGET_AFTER_MS + 1;
    for id in 70..73 {
        fail(s, b, id, later, p).await;
    }
    assert_eq!(s.reserve_attempt(b, 73, t(later), p).await.unwrap(), wait(1));
}

/// A reservation its node never settles (the node died) stops counting once older than
/// `hold_ms`: no bucket stays blocked by one.
pub async fn login_delay_stale_holds(s: &dyn Store) {
    let one = DelayPolicy::new(1, 900);
    let b = bucket(7);
    assert_eq!(s.reserve_attempt(b, 1, t(0), one).await.unwrap(), ADMITTED, "never settled");
    assert_eq!(s.reserve_attempt(b, 2, t(1_000), one).await.unwrap(), wait(1));
    assert_eq!(s.reserve_attempt(b, 3, t(one.hold_ms), one).await.unwrap(), wait(1), "counts up to its bound");
    assert_eq!(s.reserve_attempt(b, 4, t(one.hold_ms + 1), one).await.unwrap(), ADMITTED, "then no longer");
    // The late settle of the dead hold does not end the live one.
    s.settle_attempt(b, 1, None, one).await.unwrap();
    assert_eq!(s.reserve_attempt(b, 5, t(one.hold_ms + 2), one).await.unwrap(), wait(1), "hold 4 is in flight");
    s.settle_attempt(b, 4, Some(t(one.hold_ms + 2)), one).await.unwrap();
    assert_eq!(s.reserve_attempt(b, 6, t(one.hold_ms + 2), one).await.unwrap(), wait(1), "hold 4 failed");

    // Below the threshold too: three abandoned holds fill a budget of three, for a while.
    let p = DelayPolicy::new(3, 900);
    let c = bucket(8);
    for id in 10..13 {
        assert_eq!(s.reserve_attempt(c, id, t(0), p).await.unwrap(), ADMITTED);
    }
    assert_eq!(s.reserve_attempt(c, 13, t(30_000), p).await.unwrap(), wait(1));
    for id in 14..17 {
        assert_eq!(s.reserve_attempt(c, id, t(p.hold_ms + 1), p).await.unwrap(), ADMITTED, "{id}");
    }
    assert_eq!(s.reserve_attempt(c, 17, t(p.hold_ms + 1), p).await.unwrap(), wait(1));
}

/// Reservations made together are decided one after the other: below the threshold exactly
/// `after` are admitted, in the delayed regime exactly one.
pub async fn login_delay_concurrent(s: &dyn Store) {
    let p = DelayPolicy::new(3, 900);
    let b = bucket(9);
    let together = |ids: std::ops::Range<u64>, at: i64| {
        all(ids
            .map(|id| Box::pin(async move { (id, s.reserve_attempt(b, id, t(at), p).await.unwrap()) }) as Boxed<_>)
            .collect())
    };
    let admitted = |answers: Vec<(u64, Admission)>| -> Vec<u64> {
        answers.into_iter().filter(|(_, a)| *a == ADMITTED).map(|(id, _)| id).collect()
    };
    let first = admitted(together(0..16, 0).await);
    assert_eq!(first.len(), 3, "the budget, however many arrive at once: {first:?}");
    for id in first {
        s.settle_attempt(b, id, Some(t(0)), p).await.unwrap();
    }
    for (round, at) in [(1u64, 1_000i64), (2, 3_000), (3, 7_000)] {
        let won = admitted(together(round * 100..round * 100 + 16, at).await);
        assert_eq!(won.len(), 1, "round {round}: exactly one in the delayed regime: {won:?}");
        s.settle_attempt(b, won[0], Some(t(at)), p).await.unwrap();
    }
    assert_eq!(s.reserve_attempt(b, 999, t(7_000), p).await.unwrap(), wait(8), "six failures: 8 s");
}

/// The session sweep's deletion of buckets quiet for a day, and buckets holding nothing
/// (no failure, no hold) are not kept at all: the table stays bounded.
pub async fn login_delay_forgetting(s: &dyn Store) {
    let one = DelayPolicy::new(1, 900);
    let (quiet, busy, idle) = (bucket(10), bucket(11), bucket(12));
    fail(s, quiet, 1, 0, one).await;
    fail(s, busy, 2, 200, one).await;
    assert_eq!(s.reserve_attempt(idle, 3, t(0), one).await.unwrap(), ADMITTED);
    s.settle_attempt(idle, 3, None, one).await.unwrap();
    assert_eq!(s.forget_quiet_buckets(t(100)).await.unwrap(), 1, "the quiet one; the idle one is gone already");
    assert_eq!(s.reserve_attempt(quiet, 4, t(500), one).await.unwrap(), ADMITTED, "forgotten");
    assert_eq!(s.reserve_attempt(busy, 5, t(500), one).await.unwrap(), wait(1), "kept");
    assert_eq!(s.forget_quiet_buckets(t(100)).await.unwrap(), 0);
}
