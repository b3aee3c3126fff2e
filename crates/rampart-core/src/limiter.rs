//! Token-bucket rate limits per client address and per user, with bounded memory.

use std::net::IpAddr;
use std::sync::Arc;

use rampart_types::{Cidr, Timestamp};

use crate::bounded::{BoundedMap, Evictable};
use crate::Clock;

/// The outcome of one limiter check, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Unix seconds when the bucket is full again.
    pub reset_unix: i64,
    /// Seconds until the next request would be allowed (0 when allowed).
    pub retry_after_secs: u64,
    /// Whether this refusal should be audited: at most once a minute per key, so a flood
    /// cannot flood the audit log.
    pub audit: bool,
    /// The shared budget store could not answer: `allowed` is the configured fail mode,
    /// not a count.
    pub unavailable: bool,
}

impl Decision {
    /// The answer when the budget store cannot be asked: `allowed` by the fail mode, with
    /// no count to report.
    pub fn without_store(allowed: bool, limit: u32, now: Timestamp) -> Self {
        Self {
            allowed,
            limit,
            remaining: 0,
            reset_unix: now.as_unix_seconds() + 60,
            retry_after_secs: if allowed { 0 } else { 1 },
            audit: false,
            unavailable: true,
        }
    }
}

struct Bucket {
    tokens: f64,
    updated_ms: i64,
    last_audit_ms: i64,
}

impl Bucket {
    fn refill(&mut self, now_ms: i64, capacity: f64, per_ms: f64) {
        let elapsed = (now_ms - self.updated_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * per_ms).min(capacity);
        self.updated_ms = now_ms.max(self.updated_ms);
    }
}

/// A bucket's eviction score is how full it would be now: a full bucket is the same as no
/// bucket, so evicting it forgets nothing an attacker could exploit.
struct Scored {
    bucket: Bucket,
    capacity: f64,
    per_ms: f64,
}

impl Evictable for Scored {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        let elapsed = (now.as_millis() - self.bucket.updated_ms).max(0) as f64;
        ((self.bucket.tokens + elapsed * self.per_ms) / self.capacity).min(1.0)
    }
}

/// `per_minute` requests per key per minute, bursts up to `per_minute`.
pub struct RateLimiter<K> {
    map: BoundedMap<K, Scored>,
    per_minute: u32,
    clock: Arc<dyn Clock>,
}

const AUDIT_EVERY_MS: i64 = 60_000;

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(per_minute: u32, max_keys: usize, clock: Arc<dyn Clock>) -> Self {
        Self { map: BoundedMap::new(max_keys), per_minute: per_minute.max(1), clock }
    }

    pub fn check(&self, key: &K) -> Decision {
        let now = self.clock.now();
        let now_ms = now.as_millis();
        let capacity = f64::from(self.per_minute);
        let per_ms = capacity / 60_000.0;
        let init = || Scored {
            bucket: Bucket { tokens: capacity, updated_ms: now_ms, last_audit_ms: i64::MIN },
            capacity,
            per_ms,
        };
        let decided = self.map.with(key, now, init, |s| {
            let b = &mut s.bucket;
            b.refill(now_ms, capacity, per_ms);
            let allowed = b.tokens >= 1.0;
            if allowed {
                b.tokens -= 1.0;
            }
            let audit = !allowed && now_ms.saturating_sub(b.last_audit_ms) >= AUDIT_EVERY_MS;
            if audit {
                b.last_audit_ms = now_ms;
            }
            let until_full_ms = ((capacity - b.tokens) / per_ms).ceil() as i64;
            let retry_after_secs =
                if allowed { 0 } else { (((1.0 - b.tokens) / per_ms) / 1000.0).ceil().max(1.0) as u64 };
            Decision {
                allowed,
                limit: self.per_minute,
                remaining: b.tokens.floor().max(0.0) as u32,
                reset_unix: (now_ms + until_full_ms).div_euclid(1000) + 1,
                retry_after_secs,
                audit,
                unavailable: false,
            }
        });
        // The map only fails if a lock is poisoned; then fail open for this one request
        // rather than turning a bug into an outage, and the next request retries.
        decided.unwrap_or(Decision {
            allowed: true,
            limit: self.per_minute,
            remaining: 0,
            reset_unix: now.as_unix_seconds() + 60,
            retry_after_secs: 0,
            audit: false,
            unavailable: false,
        })
    }

    pub fn tracked_keys(&self) -> usize {
        self.map.len()
    }
}

/// The key a client address is limited under: IPv4 by address, IPv6 by /64 (one
/// customer's allocation), IPv4-mapped IPv6 as the IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => Cidr::new(ip, 64).network(),
        },
        v4 => v4,
    }
}

/// Which budget a request is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Every request, per client address.
    Api,
    /// Login and second-factor endpoints, per client address (stricter).
    Login,
    /// Every authenticated request, per user.
    User,
}

impl Budget {
    pub const ALL: [Budget; 3] = [Budget::Api, Budget::Login, Budget::User];

    /// The scope name audit records and headers use.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Api => "api",
            Budget::Login => "login",
            Budget::User => "user",
        }
    }
}

/// Who a budget is kept for.
#[derive(Debug, Clone, Copy)]
pub enum LimitKey<'a> {
    /// A client address (IPv6 by /64: see `client_key`).
    Address(IpAddr),
    User(&'a str),
}

/// The rate-limit port: in this process's memory, or shared by every node (Redis), so a
/// check may wait on I/O.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// False when rate limiting is switched off (`rate_limit.enabled = false`).
    fn enabled(&self) -> bool;
    async fn check(&self, budget: Budget, key: LimitKey<'_>) -> Decision;
    /// Where the budgets are kept and whether that store answers (operators' health detail).
    fn status(&self) -> LimiterStatus {
        LimiterStatus::memory()
    }
}

/// The limiter's state as operators see it (`GET /api/v1/admin/health`).
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimiterStatus {
    /// `memory` or `redis`.
    pub backend: &'static str,
    /// Whether the shared store answered the last check (always true in memory).
    pub reachable: bool,
    /// Since when it has been unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<Timestamp>,
    /// Why the last check could not reach it (a class such as `timeout`, never a URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<&'static str>,
    /// `open` or `closed` for login budgets while unreachable (shared stores only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_when_unreachable: Option<&'static str>,
    /// `open` or `closed` for every other budget while unreachable (shared stores only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_when_unreachable: Option<&'static str>,
    /// Checks answered by the fail mode instead of a count, since this process started.
    pub checks_without_store: u64,
}

impl LimiterStatus {
    pub fn memory() -> Self {
        Self {
            backend: "memory",
            reachable: true,
            unreachable_since: None,
            last_error: None,
            login_when_unreachable: None,
            api_when_unreachable: None,
            checks_without_store: 0,
        }
    }
}

/// Every budget in this process's memory, each bounded in the clients it tracks.
pub struct LocalLimiter {
    enabled: bool,
    api: RateLimiter<IpAddr>,
    login: RateLimiter<IpAddr>,
    user: RateLimiter<String>,
}

impl LocalLimiter {
    pub fn new(c: &rampart_config::RateLimitConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            enabled: c.enabled,
            api: RateLimiter::new(c.requests_per_minute, c.max_tracked_clients, Arc::clone(&clock)),
            login: RateLimiter::new(c.login_requests_per_minute, c.max_tracked_clients, Arc::clone(&clock)),
            user: RateLimiter::new(c.user_requests_per_minute, c.max_tracked_clients, clock),
        }
    }
}

#[async_trait::async_trait]
impl Limiter for LocalLimiter {
    fn enabled(&self) -> bool {
        self.enabled
    }

    async fn check(&self, budget: Budget, key: LimitKey<'_>) -> Decision {
        match (budget, key) {
            (Budget::Api, LimitKey::Address(ip)) => self.api.check(&client_key(ip)),
            (Budget::Login, LimitKey::Address(ip)) => self.login.check(&client_key(ip)),
            (_, LimitKey::User(name)) => self.user.check(&name.to_owned()),
            // A user budget asked for by address: charge the address's API budget.
            (Budget::User, LimitKey::Address(ip)) => self.api.check(&client_key(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeClock;

    fn limiter(per_minute: u32, keys: usize) -> (RateLimiter<u32>, FakeClock) {
        let clock = FakeClock::new(Timestamp::from_millis(1_700_000_000_000));
        (RateLimiter::new(per_minute, keys, Arc::new(clock.clone())), clock)
    }

    #[test]
    fn bucket_allows_the_limit_then_refuses_then_refills() {
        let (l, clock) = limiter(30, 1024);
        for i in 0..30 {
            let d = l.check(&1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 29 - i);
        }
        let d = l.check(&1);
        assert!(!d.allowed && d.audit && d.retry_after_secs == 2, "{d:?}");
        assert!(!l.check(&1).audit, "refusals audited at most once a minute");
        assert!(l.check(&2).allowed, "keys are independent");
        clock.advance_secs(2);
        assert!(l.check(&1).allowed);
        clock.advance_secs(60);
        assert_eq!(l.check(&1).remaining, 29);
    }

    #[test]
    fn memory_is_bounded_and_busy_keys_survive_a_spray() {
        let (l, clock) = limiter(1000, 1024);
        for _ in 0..1000 {
            l.check(&0);
        }
        assert!(!l.check(&0).allowed);
        for k in 1..200_000u32 {
            l.check(&k);
            if k % 1000 == 0 {
                clock.advance_secs(0);
            }
        }
        assert!(l.tracked_keys() <= 1024 + 16, "{}", l.tracked_keys());
        // The exhausted key is the least attractive to evict, so it is most likely still
        // limited; even if evicted, it would restart from a full bucket only.
        assert!(l.tracked_keys() >= 1000);
    }

    #[test]
    fn ipv6_clients_share_a_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap_or(IpAddr::from([0u8; 16]));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap_or(a);
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap_or(a));
    }
}
