//! The per-account login delay kept in the database, so that every node sharing it charges
//! one budget per bucket (what a bucket is, account and client trust, is the core's
//! business: here it is a keyed hash). The rules live here, as plain functions over one
//! bucket's row, so that every backend applies the same ones: a backend locks the row,
//! runs the rule and writes the result back, all in one transaction.
//!
//! The rules are those of the core's in-memory throttle: after `after` failures each
//! further attempt waits 1 s, 2 s, 4 s, ... up to a cap; an attempt is reserved (a *hold*)
//! before any password hashing and counts while in flight; in the delayed regime only one
//! attempt is in flight at a time; a success forgets the bucket; failures are forgotten
//! after a quiet day. One rule more, because a node can die holding a reservation: a hold
//! older than `DelayPolicy::hold_ms` no longer counts.

use async_trait::async_trait;
use rampart_types::Timestamp;

use crate::StoreResult;

/// A bucket's name as stored: a keyed hash (never a user name or an address).
pub type BucketKey = [u8; 32];

/// Most reservations one bucket holds at once: bounds the row (16 bytes each). Only a
/// configured `after` beyond it could reach it; a bucket at the bound refuses more.
pub const MAX_HOLDS: usize = 1024;

/// How the delay grows and how long things count. Every node passes the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayPolicy {
    /// Failures before attempts are delayed.
    pub after: u32,
    /// The longest delay, in milliseconds.
    pub max_delay_ms: i64,
    /// A reservation older than this no longer counts: longer than any login takes, so
    /// only a node that died (or lost its answer) leaves one that old.
    pub hold_ms: i64,
    /// Failures are forgotten after this long without an attempt.
    pub forget_after_ms: i64,
}

impl DelayPolicy {
    /// A quiet day forgets a bucket's failures.
    pub const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;
    /// A reservation counts for at most a minute.
    pub const HOLD_MS: i64 = 60_000;

    pub fn new(after: u32, max_delay_secs: u32) -> Self {
        Self {
            after,
            max_delay_ms: i64::from(max_delay_secs) * 1000,
            hold_ms: Self::HOLD_MS,
            forget_after_ms: Self::FORGET_AFTER_MS,
        }
    }

    /// The wait after the `failures`th failure (from the `after`th on): 1 s, 2 s, 4 s, ...
    /// up to the cap.
    pub fn delay_ms(&self, failures: u32) -> i64 {
        let exp = failures.saturating_sub(self.after).min(20);
        (1000i64 << exp).min(self.max_delay_ms)
    }
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The attempt is reserved: settle it.
    Admitted,
    /// Nothing was reserved: the bucket must wait this many seconds (at least 1).
    Wait { secs: u64 },
}

/// One reservation in flight: its id (unique to the attempt) and when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub id: u64,
    pub at_ms: i64,
}

/// One bucket's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayBucket {
    pub failures: u32,
    /// The last attempt or failure.
    pub last_ms: i64,
    /// No attempt before this once `failures` reached `after`.
    pub next_allowed_ms: i64,
    pub holds: Vec<Hold>,
}

/// Bytes per hold as stored: id and time, big-endian.
const HOLD_BYTES: usize = 16;

impl DelayBucket {
    /// The row a first attempt finds.
    pub fn fresh(now: Timestamp) -> Self {
        Self { failures: 0, last_ms: now.as_millis(), next_allowed_ms: now.as_millis(), holds: Vec::new() }
    }

    /// The holds as stored.
    pub fn encode_holds(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.holds.len() * HOLD_BYTES);
        for h in &self.holds {
            out.extend_from_slice(&h.id.to_be_bytes());
            out.extend_from_slice(&h.at_ms.to_be_bytes());
        }
        out
    }

    /// The holds from their stored bytes; `None` when they are not a list of holds.
    pub fn decode_holds(bytes: &[u8]) -> Option<Vec<Hold>> {
        if !bytes.len().is_multiple_of(HOLD_BYTES) || bytes.len() / HOLD_BYTES > MAX_HOLDS {
            return None;
        }
        bytes
            .chunks_exact(HOLD_BYTES)
            .map(|c| {
                let (id, at) = c.split_at(8);
                Some(Hold {
                    id: u64::from_be_bytes(id.try_into().ok()?),
                    at_ms: i64::from_be_bytes(at.try_into().ok()?),
                })
            })
            .collect()
    }

    /// Reserves attempt `hold` at `now`, or says how long to wait (changing nothing but
    /// dropping holds too old to count).
    pub fn reserve(&mut self, hold: u64, now: Timestamp, policy: &DelayPolicy) -> Admission {
        let now_ms = now.as_millis();
        self.holds.retain(|h| now_ms - h.at_ms <= policy.hold_ms);
        if now_ms - self.last_ms > policy.forget_after_ms && self.holds.is_empty() {
            self.failures = 0;
        }
        let in_flight = u32::try_from(self.holds.len()).unwrap_or(u32::MAX);
        let pending = self.failures.saturating_add(in_flight);
        // In the delayed regime: one attempt at a time, each after its delay.
        let delayed = pending >= policy.after && (in_flight > 0 || now_ms < self.next_allowed_ms);
        if delayed || self.holds.len() >= MAX_HOLDS {
            let wait = (self.next_allowed_ms - now_ms).max(1000);
            return Admission::Wait { secs: u64::try_from(wait).unwrap_or(1000).div_ceil(1000) };
        }
        self.holds.push(Hold { id: hold, at_ms: now_ms });
        self.last_ms = now_ms;
        Admission::Admitted
    }

    /// Ends reservation `hold` (nothing when it no longer counts); with `failed_at`, counts
    /// a failure and moves the next allowed attempt.
    pub fn settle(&mut self, hold: u64, failed_at: Option<Timestamp>, policy: &DelayPolicy) {
        if let Some(i) = self.holds.iter().position(|h| h.id == hold) {
            self.holds.swap_remove(i);
        }
        if let Some(now) = failed_at {
            let now_ms = now.as_millis();
            self.failures = self.failures.saturating_add(1);
            self.last_ms = now_ms;
            if self.failures >= policy.after {
                self.next_allowed_ms = self.next_allowed_ms.max(now_ms + policy.delay_ms(self.failures));
            }
        }
    }

    /// Holds nothing a fresh row would not: the row may go.
    pub fn is_idle(&self) -> bool {
        self.failures == 0 && self.holds.is_empty()
    }
}

/// The login delay shared by every node on the database. Each method is one transaction
/// (PostgreSQL: under the bucket's row lock), so concurrent calls from any node act as if
/// one after the other. Times come from the caller's clock.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Reserves attempt `hold` (an id unique to the attempt) on `bucket`, creating the
    /// bucket if needed, or answers how long it must wait and reserves nothing. While the
    /// hold counts (until settled, cleared, or `policy.hold_ms` old) it counts as a failure
    /// not yet made; of concurrent reservations in the delayed regime exactly one is
    /// admitted.
    async fn reserve_attempt(
        &self,
        bucket: BucketKey,
        hold: u64,
        now: Timestamp,
        policy: DelayPolicy,
    ) -> StoreResult<Admission>;
    /// Ends reservation `hold`; with `failed_at`, counts a failure. Nothing when the bucket
    /// is gone (a success cleared it). A bucket left with no failure and no hold is deleted.
    async fn settle_attempt(
        &self,
        bucket: BucketKey,
        hold: u64,
        failed_at: Option<Timestamp>,
        policy: DelayPolicy,
    ) -> StoreResult<()>;
    /// Forgets `bucket` (a success), its holds included.
    async fn clear_attempts(&self, bucket: BucketKey) -> StoreResult<()>;
    /// Deletes the buckets without an attempt or failure since `quiet_since` (their failures
    /// would be forgotten anyway); returns how many. Bounds the table.
    async fn forget_quiet_buckets(&self, quiet_since: Timestamp) -> StoreResult<u64>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn holds_round_trip_and_malformed_bytes_are_refused() {
        let mut b = DelayBucket::fresh(Timestamp::from_millis(5));
        b.holds = vec![Hold { id: 1, at_ms: -3 }, Hold { id: u64::MAX, at_ms: i64::MAX }];
        assert_eq!(DelayBucket::decode_holds(&b.encode_holds()).unwrap(), b.holds);
        assert_eq!(DelayBucket::decode_holds(&[]).unwrap(), Vec::new());
        assert!(DelayBucket::decode_holds(&[0; 15]).is_none());
        assert!(DelayBucket::decode_holds(&vec![0; HOLD_BYTES * (MAX_HOLDS + 1)]).is_none());
    }

    #[test]
    fn a_hold_older_than_its_bound_stops_counting() {
        let p = DelayPolicy::new(1, 900);
        let t0 = Timestamp::from_millis(1_000_000);
        let mut b = DelayBucket::fresh(t0);
        assert_eq!(b.reserve(1, t0, &p), Admission::Admitted);
        let almost = Timestamp::from_millis(t0.as_millis() + p.hold_ms);
        assert_eq!(b.reserve(2, almost, &p), Admission::Wait { secs: 1 });
        let past = Timestamp::from_millis(t0.as_millis() + p.hold_ms + 1);
        assert_eq!(b.reserve(3, past, &p), Admission::Admitted);
        assert_eq!(b.holds.iter().map(|h| h.id).collect::<Vec<_>>(), [3]);
    }
}
