//! Per-account growing delay after failed logins: after `after` failures each further
//! attempt must wait 1 s, 2 s, 4 s, ... up to a cap. No permanent lockout.
//!
//! An attempt is *reserved* before any password hashing and counts while it is in flight,
//! so a burst of simultaneous guesses is held to the same budget as guesses in a row.
//! Buckets are keyed by account and client trust (see `Sessions::login_bucket`): clients that
//! once completed a login keep a budget of their own, so an attacker's failures from
//! elsewhere cannot lock the owner out.
//!
//! One port, `LoginDelay`, two implementations chosen by `CorePorts::login_delay`:
//! `LoginThrottle` keeps the buckets in this process's memory (one node, SQLite: no write on
//! the login path); `SharedThrottle` keeps them in the database through `ThrottleStore`, so
//! that every node sharing it (PostgreSQL) charges one budget per bucket, under a keyed hash
//! of the bucket's name. The rules are the same (`rampart_store::DelayBucket` for the shared
//! one); the shared one adds that a reservation older than `DelayPolicy::HOLD_MS` stops
//! counting, as a node that dies holding one never settles it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rampart_crypto::PurposeKey;
use rampart_store::{Admission, BucketKey, DelayBucket, DelayPolicy, ThrottleStore};
use rampart_types::Timestamp;
use tokio::sync::Semaphore;

use crate::bounded::{BoundedMap, Evictable};
use crate::CoreResult;

/// Where the login delay is kept: chosen where a deployment is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThrottleBackend {
    /// This process's memory: the one node of a SQLite deployment.
    #[default]
    Memory,
    /// The database (`ThrottleStore`), shared by every node on it: PostgreSQL.
    Shared,
}

/// The login delay's buckets, wherever they are kept.
#[async_trait]
pub(crate) trait LoginDelay: Send + Sync {
    /// Reserves one attempt on `bucket`: its hold id, or the seconds it must wait.
    async fn reserve(&self, bucket: &str, now: Timestamp) -> CoreResult<Result<u64, u64>>;
    /// Ends reservation `hold`; with `failed_at`, counts a failure.
    async fn settle(&self, bucket: &str, hold: u64, failed_at: Option<Timestamp>) -> CoreResult<()>;
    /// The right credentials: the bucket starts over.
    async fn clear(&self, bucket: &str) -> CoreResult<()>;
    /// Ends reservation `hold` without counting it, from `Drop`: never waits.
    fn abandon(&self, bucket: &str, hold: u64);
    /// Forgets the buckets quiet for a day (the session sweep).
    async fn forget_quiet(&self, now: Timestamp) -> CoreResult<u64>;
}

impl dyn LoginDelay {
    /// Reserves one attempt on `bucket`, or says how many seconds it must wait. While the
    /// reservation lives it counts as a failure that has not happened yet.
    pub(crate) async fn reserve_attempt(
        self: &Arc<Self>,
        bucket: &str,
        now: Timestamp,
    ) -> CoreResult<Result<Attempt, u64>> {
        Ok(self.reserve(bucket, now).await?.map(|hold| Attempt {
            delay: Arc::clone(self),
            bucket: bucket.to_owned(),
            hold,
            settled: false,
        }))
    }
}

/// The login delay of `backend`; `store` and `key` serve the shared one.
pub(crate) fn open(
    backend: ThrottleBackend,
    policy: DelayPolicy,
    capacity: usize,
    store: Arc<dyn ThrottleStore>,
    key: Arc<PurposeKey>,
) -> Arc<dyn LoginDelay> {
    match backend {
        ThrottleBackend::Memory => LoginThrottle::new(policy, capacity),
        ThrottleBackend::Shared => Arc::new(SharedThrottle::new(store, key, policy)),
    }
}

/// A bucket's eviction score: one with an attempt in flight is never the one to go; then
/// the ones whose delay ran out longest ago matter least.
impl Evictable for DelayBucket {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        if !self.holds.is_empty() {
            return f64::MIN;
        }
        (now.as_millis() - self.next_allowed_ms) as f64
    }
}

/// The buckets in this process's memory (bounded: sampled eviction, never of a bucket with
/// an attempt in flight), under the same rules as the shared ones (`DelayBucket`).
/// Reservations are settled synchronously, from `Drop` too.
pub(crate) struct LoginThrottle {
    map: BoundedMap<String, DelayBucket>,
    policy: DelayPolicy,
    next_hold: AtomicU64,
}

impl LoginThrottle {
    pub fn new(policy: DelayPolicy, capacity: usize) -> Arc<Self> {
        Arc::new(Self { map: BoundedMap::new(capacity), policy, next_hold: AtomicU64::new(0) })
    }

    fn reserve_now(&self, bucket: &str, now: Timestamp) -> Result<u64, u64> {
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let fresh = || DelayBucket::fresh(now);
        match self.map.with(&bucket.to_owned(), now, fresh, |b| b.reserve(hold, now, &self.policy)) {
            Some(Admission::Admitted) => Ok(hold),
            Some(Admission::Wait { secs }) => Err(secs),
            // A poisoned shard is not a reason to let guesses through unthrottled.
            None => Err(1),
        }
    }

    /// Seconds `bucket` must still wait, if any (no reservation).
    #[cfg(test)]
    pub fn wait_secs(&self, bucket: &str, now: Timestamp) -> Option<u64> {
        let now_ms = now.as_millis();
        let wait = self.map.get_with(&bucket.to_owned(), |b| b.next_allowed_ms - now_ms)?;
        (wait > 0).then(|| (wait as u64).div_ceil(1000))
    }

    fn settle_now(&self, bucket: &str, hold: u64, failed_at: Option<Timestamp>) {
        self.map.get_with(&bucket.to_owned(), |b| b.settle(hold, failed_at, &self.policy));
    }
}

#[async_trait]
impl LoginDelay for LoginThrottle {
    async fn reserve(&self, bucket: &str, now: Timestamp) -> CoreResult<Result<u64, u64>> {
        Ok(self.reserve_now(bucket, now))
    }

    async fn settle(&self, bucket: &str, hold: u64, failed_at: Option<Timestamp>) -> CoreResult<()> {
        self.settle_now(bucket, hold, failed_at);
        Ok(())
    }

    async fn clear(&self, bucket: &str) -> CoreResult<()> {
        self.map.remove(&bucket.to_owned());
        Ok(())
    }

    fn abandon(&self, bucket: &str, hold: u64) {
        self.settle_now(bucket, hold, None);
    }

    /// Nothing to do: the map is bounded, and a quiet day resets a bucket when it is next
    /// used.
    async fn forget_quiet(&self, _now: Timestamp) -> CoreResult<u64> {
        Ok(0)
    }
}

/// Abandoned reservations being released at once; beyond it, one is left to stop counting
/// by itself (`DelayPolicy::hold_ms`).
const MAX_ABANDONS: usize = 256;

/// The buckets in the database, shared by every node on it. Each operation is one atomic
/// store call; a bucket is stored under the HMAC of its name (account and client trust) with
/// a root-derived key, the same on every node.
pub(crate) struct SharedThrottle {
    store: Arc<dyn ThrottleStore>,
    key: Arc<PurposeKey>,
    policy: DelayPolicy,
    abandons: Arc<Semaphore>,
}

impl SharedThrottle {
    pub fn new(store: Arc<dyn ThrottleStore>, key: Arc<PurposeKey>, policy: DelayPolicy) -> Self {
        Self { store, key, policy, abandons: Arc::new(Semaphore::new(MAX_ABANDONS)) }
    }

    fn stored_name(&self, bucket: &str) -> BucketKey {
        self.key.mac(bucket.as_bytes())
    }
}

#[async_trait]
impl LoginDelay for SharedThrottle {
    async fn reserve(&self, bucket: &str, now: Timestamp) -> CoreResult<Result<u64, u64>> {
        let hold = u64::from_be_bytes(rampart_crypto::random_bytes::<8>());
        match self.store.reserve_attempt(self.stored_name(bucket), hold, now, self.policy).await? {
            Admission::Admitted => Ok(Ok(hold)),
            Admission::Wait { secs } => Ok(Err(secs)),
        }
    }

    async fn settle(&self, bucket: &str, hold: u64, failed_at: Option<Timestamp>) -> CoreResult<()> {
        Ok(self.store.settle_attempt(self.stored_name(bucket), hold, failed_at, self.policy).await?)
    }

    async fn clear(&self, bucket: &str) -> CoreResult<()> {
        Ok(self.store.clear_attempts(self.stored_name(bucket)).await?)
    }

    /// Releases the hold from a task of its own (bounded); without a permit or a runtime it
    /// is left to stop counting by itself.
    fn abandon(&self, bucket: &str, hold: u64) {
        let Ok(permit) = Arc::clone(&self.abandons).try_acquire_owned() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, name, policy) = (Arc::clone(&self.store), self.stored_name(bucket), self.policy);
        runtime.spawn(async move {
            if let Err(e) = store.settle_attempt(name, hold, None, policy).await {
                tracing::debug!(error = %e, "an abandoned login attempt is left to expire");
            }
            drop(permit);
        });
    }

    async fn forget_quiet(&self, now: Timestamp) -> CoreResult<u64> {
        let quiet_since = Timestamp::from_millis(now.as_millis() - self.policy.forget_after_ms);
        Ok(self.store.forget_quiet_buckets(quiet_since).await?)
    }
}

/// One reserved attempt. Settle it with `failed`, `succeeded` or `release`; dropped
/// unsettled (the request failed for another reason, or was cancelled), it simply stops
/// counting.
pub(crate) struct Attempt {
    delay: Arc<dyn LoginDelay>,
    bucket: String,
    hold: u64,
    settled: bool,
}

impl Attempt {
    pub async fn failed(mut self, now: Timestamp) -> CoreResult<()> {
        let out = self.delay.settle(&self.bucket, self.hold, Some(now)).await;
        self.settled = true;
        out
    }

    /// The right credentials: the bucket starts over.
    pub async fn succeeded(mut self) -> CoreResult<()> {
        let out = self.delay.clear(&self.bucket).await;
        self.settled = true;
        out
    }

    /// Ends the reservation without counting it either way (a correct password whose
    /// second factor is still to come: the delay stays until that passes).
    pub async fn release(mut self) -> CoreResult<()> {
        let out = self.delay.settle(&self.bucket, self.hold, None).await;
        self.settled = true;
        out
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.delay.abandon(&self.bucket, self.hold);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case runs against both implementations: memory, and the shared one on a real
    /// (SQLite) store. The guard keeps the store's directory.
    async fn both(after: u32, max_delay_secs: u32) -> Vec<(Arc<dyn LoginDelay>, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let store = rampart_store_sqlite::SqliteStore::open(dir.path()).unwrap();
        let key = Arc::new(rampart_crypto::DataKey::generate().login_delay_key());
        let policy = DelayPolicy::new(after, max_delay_secs);
        let memory: Arc<dyn LoginDelay> = LoginThrottle::new(policy, 1024);
        let shared: Arc<dyn LoginDelay> = Arc::new(SharedThrottle::new(Arc::new(store), key, policy));
        vec![(memory, None), (shared, Some(dir))]
    }

    async fn reserve(t: &Arc<dyn LoginDelay>, bucket: &str, now: Timestamp) -> Result<Attempt, u64> {
        t.reserve_attempt(bucket, now).await.unwrap()
    }

    /// Settles whatever abandoned reservations spawned.
    async fn settle_spawned() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn delay_grows_and_caps_and_success_clears() {
        for (t, _guard) in both(3, 8).await {
            let mut now = Timestamp::from_millis(1_000_000);
            for _ in 0..3 {
                reserve(&t, "bob", now).await.unwrap().failed(now).await.unwrap();
            }
            assert_eq!(reserve(&t, "bob", now).await.err(), Some(1), "the fourth waits 1 s");
            now = now.plus_seconds(1);
            reserve(&t, "bob", now).await.unwrap().failed(now).await.unwrap();
            assert_eq!(reserve(&t, "bob", now).await.err(), Some(2));
            for _ in 0..10 {
                now = now.plus_seconds(8);
                reserve(&t, "bob", now).await.unwrap().failed(now).await.unwrap();
            }
            assert_eq!(reserve(&t, "bob", now).await.err(), Some(8), "capped");
            assert!(reserve(&t, "alice", now).await.is_ok(), "other buckets unaffected");
            now = now.plus_seconds(8);
            reserve(&t, "bob", now).await.unwrap().succeeded().await.unwrap();
            for _ in 0..3 {
                let a = reserve(&t, "bob", now).await.expect("never a permanent lockout; success clears");
                a.failed(now).await.unwrap();
            }
            assert_eq!(reserve(&t, "bob", now).await.err(), Some(1), "counting starts over");
        }
    }

    #[test]
    fn the_memory_throttle_reports_its_wait() {
        let t = LoginThrottle::new(DelayPolicy::new(1, 900), 16);
        let now = Timestamp::from_millis(1_000_000);
        let hold = t.reserve_now("x", now);
        assert!(hold.is_ok());
        t.settle_now("x", hold.unwrap_or_default(), Some(now));
        assert_eq!(t.wait_secs("x", now), Some(1));
        assert_eq!(t.wait_secs("y", now), None);
    }

    #[tokio::test]
    async fn attempts_in_flight_count_before_they_fail() {
        for (t, _guard) in both(5, 900).await {
            let now = Timestamp::from_millis(1_000_000);
            let mut held = Vec::new();
            for _ in 0..20 {
                if let Ok(a) = reserve(&t, "eve", now).await {
                    held.push(a);
                }
            }
            assert_eq!(held.len(), 5, "five attempts are evaluated, however many arrive at once");
            for a in held {
                a.failed(now).await.unwrap();
            }
            assert!(reserve(&t, "eve", now).await.is_err());
        }
    }

    #[tokio::test]
    async fn an_abandoned_reservation_stops_counting() {
        for (t, _guard) in both(1, 900).await {
            let now = Timestamp::from_millis(1_000_000);
            drop(reserve(&t, "x", now).await.unwrap());
            settle_spawned().await;
            assert!(reserve(&t, "x", now).await.is_ok());
        }
    }

    #[tokio::test]
    async fn a_released_reservation_counts_neither_way() {
        for (t, _guard) in both(1, 900).await {
            let now = Timestamp::from_millis(1_000_000);
            reserve(&t, "m", now).await.unwrap().release().await.unwrap();
            reserve(&t, "m", now).await.unwrap().failed(now).await.unwrap();
            assert_eq!(reserve(&t, "m", now).await.err(), Some(1), "one failure counted, not two");
        }
    }
}
