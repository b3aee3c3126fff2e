//! Per-account growing delay after failed logins: after `after` failures each further
//! attempt must wait 1 s, 2 s, 4 s, ... up to a cap. No permanent lockout.
//!
//! An attempt is *reserved* before any password hashing and counts while it is in flight,
//! so a burst of simultaneous guesses is held to the same budget as guesses in a row.
//! Buckets are keyed by account and client trust (see `Sessions::login_bucket`): clients that
//! once completed a login keep a budget of their own, so an attacker's failures from
//! elsewhere cannot lock the owner out.

use std::sync::Arc;

use rampart_types::Timestamp;

use crate::bounded::{BoundedMap, Evictable};

struct Failures {
    count: u32,
    in_flight: u32,
    last_ms: i64,
    next_allowed_ms: i64,
}

impl Evictable for Failures {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        // Entries with attempts in flight are never the ones to go; then the ones whose
        // delay ran out longest ago matter least.
        if self.in_flight > 0 {
            return f64::MIN;
        }
        (now.as_millis() - self.next_allowed_ms) as f64
    }
}

pub(crate) struct LoginThrottle {
    map: BoundedMap<String, Failures>,
    after: u32,
    max_delay_ms: i64,
}

/// Failures are forgotten after a quiet period of this length.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

impl LoginThrottle {
    pub fn new(after: u32, max_delay_secs: u32, capacity: usize) -> Arc<Self> {
        Arc::new(Self { map: BoundedMap::new(capacity), after, max_delay_ms: i64::from(max_delay_secs) * 1000 })
    }

    fn delay_ms(&self, count: u32) -> i64 {
        let exp = count.saturating_sub(self.after).min(20);
        (1000i64 << exp).min(self.max_delay_ms)
    }

    /// Reserves one attempt on `bucket`, or says how many seconds it must wait. While the
    /// reservation lives it counts as a failure that has not happened yet.
    pub fn reserve(self: &Arc<Self>, bucket: &str, now: Timestamp) -> Result<Attempt, u64> {
        let now_ms = now.as_millis();
        let init = || Failures { count: 0, in_flight: 0, last_ms: now_ms, next_allowed_ms: now_ms };
        let verdict = self.map.with(&bucket.to_owned(), now, init, |f| {
            if now_ms - f.last_ms > FORGET_AFTER_MS && f.in_flight == 0 {
                f.count = 0;
            }
            let pending = f.count.saturating_add(f.in_flight);
            if pending >= self.after {
                // In the delayed regime: one attempt at a time, each after its delay.
                if f.in_flight > 0 || now_ms < f.next_allowed_ms {
                    let wait = (f.next_allowed_ms - now_ms).max(1000);
                    return Err((wait as u64).div_ceil(1000));
                }
            }
            f.in_flight += 1;
            f.last_ms = now_ms;
            Ok(())
        });
        match verdict {
            Some(Err(wait)) => Err(wait),
            // A poisoned shard is not a reason to let guesses through unthrottled.
            None => Err(1),
            Some(Ok(())) => Ok(Attempt { throttle: Arc::clone(self), bucket: bucket.to_owned(), settled: false }),
        }
    }

    /// Seconds `bucket` must still wait, if any (no reservation).
    #[cfg(test)]
    pub fn wait_secs(&self, bucket: &str, now: Timestamp) -> Option<u64> {
        let now_ms = now.as_millis();
        let wait = self.map.get_with(&bucket.to_owned(), |f| f.next_allowed_ms - now_ms)?;
        (wait > 0).then(|| (wait as u64).div_ceil(1000))
    }

    fn settle(&self, bucket: &str, failed_at: Option<Timestamp>) {
        let after = self.after;
        self.map.get_with(&bucket.to_owned(), |f| {
            f.in_flight = f.in_flight.saturating_sub(1);
            if let Some(now) = failed_at {
                let now_ms = now.as_millis();
                f.count = f.count.saturating_add(1);
                f.last_ms = now_ms;
                if f.count >= after {
                    f.next_allowed_ms = f.next_allowed_ms.max(now_ms + self.delay_ms(f.count));
                }
            }
        });
    }

    pub fn clear(&self, bucket: &str) {
        self.map.remove(&bucket.to_owned());
    }
}

/// One reserved attempt. Settle it with `failed` or `succeeded`; dropped unsettled (the
/// request failed for another reason), it simply stops counting.
pub(crate) struct Attempt {
    throttle: Arc<LoginThrottle>,
    bucket: String,
    settled: bool,
}

impl Attempt {
    pub fn failed(mut self, now: Timestamp) {
        self.settled = true;
        self.throttle.settle(&self.bucket, Some(now));
    }

    /// The right credentials: the bucket starts over.
    pub fn succeeded(mut self) {
        self.settled = true;
        self.throttle.settle(&self.bucket, None);
        self.throttle.clear(&self.bucket);
    }

    /// Ends the reservation without counting it either way (a correct password whose
    /// second factor is still to come: the delay stays until that passes).
    pub fn release(mut self) {
        self.settled = true;
        self.throttle.settle(&self.bucket, None);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.bucket, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_caps_and_success_clears() {
        let t = LoginThrottle::new(3, 8, 1024);
        let mut now = Timestamp::from_millis(1_000_000);
        for _ in 0..3 {
            t.reserve("bob", now).unwrap().failed(now);
        }
        assert_eq!(t.reserve("bob", now).err(), Some(1), "the fourth waits 1 s");
        now = now.plus_seconds(1);
        t.reserve("bob", now).unwrap().failed(now);
        assert_eq!(t.wait_secs("bob", now), Some(2));
        for _ in 0..10 {
            now = now.plus_seconds(8);
            t.reserve("bob", now).unwrap().failed(now);
        }
        assert_eq!(t.wait_secs("bob", now), Some(8), "capped");
        assert!(t.reserve("alice", now).is_ok(), "other buckets unaffected");
        now = now.plus_seconds(8);
        t.reserve("bob", now).unwrap().succeeded();
        assert_eq!(t.wait_secs("bob", now), None, "never a permanent lockout; success clears");
    }

    #[test]
    fn attempts_in_flight_count_before_they_fail() {
        let t = LoginThrottle::new(5, 900, 1024);
        let now = Timestamp::from_millis(1_000_000);
        let held: Vec<Attempt> = (0..20).filter_map(|_| t.reserve("eve", now).ok()).collect();
        assert_eq!(held.len(), 5, "five attempts are evaluated, however many arrive at once");
        for a in held {
            a.failed(now);
        }
        assert!(t.reserve("eve", now).is_err());
    }

    #[test]
    fn an_abandoned_reservation_stops_counting() {
        let t = LoginThrottle::new(1, 900, 1024);
        let now = Timestamp::from_millis(1_000_000);
        drop(t.reserve("x", now).unwrap());
        assert!(t.reserve("x", now).is_ok());
    }
}
