//! Per-account growing delay after failed logins: after `after` failures each further
//! attempt must wait 1 s, 2 s, 4 s, ... up to a cap. No permanent lockout, so an attacker
//! cannot lock a user out for longer than the cap; attempts inside the delay are refused
//! before any password hashing.

use rampart_types::Timestamp;

use crate::bounded::{BoundedMap, Evictable};

struct Failures {
    count: u32,
    last_ms: i64,
    next_allowed_ms: i64,
}

impl Evictable for Failures {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        // Entries whose delay ran out long ago matter least.
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
    pub fn new(after: u32, max_delay_secs: u32, capacity: usize) -> Self {
        Self { map: BoundedMap::new(capacity), after, max_delay_ms: i64::from(max_delay_secs) * 1000 }
    }

    /// Seconds the account must still wait, if any.
    pub fn wait_secs(&self, account: &str, now: Timestamp) -> Option<u64> {
        let now_ms = now.as_millis();
        let init = || Failures { count: 0, last_ms: now_ms, next_allowed_ms: now_ms };
        let wait = self.map.with(&account.to_owned(), now, init, |f| f.next_allowed_ms - now_ms)?;
        (wait > 0).then(|| (wait as u64).div_ceil(1000))
    }

    pub fn failed(&self, account: &str, now: Timestamp) {
        let now_ms = now.as_millis();
        let init = || Failures { count: 0, last_ms: now_ms, next_allowed_ms: now_ms };
        let (after, max) = (self.after, self.max_delay_ms);
        self.map.with(&account.to_owned(), now, init, |f| {
            if now_ms - f.last_ms > FORGET_AFTER_MS {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last_ms = now_ms;
            if f.count >= after {
                let exp = (f.count - after).min(20);
                f.next_allowed_ms = now_ms + (1000i64 << exp).min(max);
            }
        });
    }

    pub fn succeeded(&self, account: &str) {
        self.map.remove(&account.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_caps_and_success_clears() {
        let t = LoginThrottle::new(3, 8, 1024);
        let mut now = Timestamp::from_millis(1_000_000);
        for _ in 0..2 {
            t.failed("bob", now);
            assert_eq!(t.wait_secs("bob", now), None);
        }
        t.failed("bob", now);
        assert_eq!(t.wait_secs("bob", now), Some(1));
        t.failed("bob", now);
        assert_eq!(t.wait_secs("bob", now), Some(2));
        for _ in 0..10 {
            t.failed("bob", now);
        }
        assert_eq!(t.wait_secs("bob", now), Some(8), "capped");
        assert_eq!(t.wait_secs("alice", now), None, "other accounts unaffected");
        now = now.plus_seconds(8);
        assert_eq!(t.wait_secs("bob", now), None, "never a permanent lockout");
        t.succeeded("bob");
        t.failed("bob", now);
        assert_eq!(t.wait_secs("bob", now), None);
    }
}
