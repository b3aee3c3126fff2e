//! Rate-limit budgets shared by every node, kept in Redis (`[rate_limit] backend = "redis"`).
//!
//! Invariants:
//! - Each check is one atomic Lua script run on Redis's clock: nodes never race each other
//!   or disagree about time. Keys expire once their bucket would be full again (a minute at
//!   least), so Redis holds only the clients of the last minute.
//! - Key names are keyed MACs of the budget and the client (address or user name), so Redis
//!   never holds an address or a user name.
//! - A check never waits on a connect: while Redis is unreachable each check is answered at
//!   once by the configured fail mode (login budgets closed, the others open, by default),
//!   and one background task reconnects with backoff. Every outage and recovery is audited.

mod link;

use std::sync::Arc;
use std::time::Duration;

use rampart_config::{FailMode, RateLimitBackend, RateLimitConfig, RedisLimits};
use rampart_core::{client_key, Budget, Clock, Core, Decision, Events, LimitKey, Limiter, LimiterStatus, LocalLimiter};
use rampart_crypto::PurposeKey;

use link::Link;

/// Longest a check waits for Redis before the fail mode answers instead.
const CHECK_TIMEOUT: Duration = Duration::from_millis(250);

/// A `Limiter` over Redis, shared by every node that names the same Redis.
pub struct RedisLimiter {
    enabled: bool,
    per_minute: PerMinute,
    modes: Modes,
    script: redis::Script,
    key: Arc<PurposeKey>,
    clock: Arc<dyn Clock>,
    link: Arc<Link>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for RedisLimiter {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

#[derive(Clone, Copy)]
struct PerMinute {
    api: u32,
    login: u32,
    user: u32,
}

#[derive(Clone, Copy)]
pub(crate) struct Modes {
    login: FailMode,
    api: FailMode,
}

impl Modes {
    fn for_budget(self, budget: Budget) -> FailMode {
        match budget {
            Budget::Login => self.login,
            Budget::Api | Budget::User => self.api,
        }
    }
}

fn mode_name(m: FailMode) -> &'static str {
    match m {
        FailMode::Open => "open",
        FailMode::Closed => "closed",
    }
}

/// The limiter `rate_limit.backend` asks for: this process's memory, or Redis shared by
/// every node, waiting up to `first_connect` for Redis (down is no error: the fail modes
/// answer until it is back; a URL that names no Redis server is).
pub async fn open_limiter(
    c: &RateLimitConfig,
    core: &Core,
    first_connect: Duration,
) -> Result<Arc<dyn Limiter>, BadRedisUrl> {
    match &c.backend {
        RateLimitBackend::Memory => Ok(Arc::new(LocalLimiter::new(c, core.clock()))),
        RateLimitBackend::Redis(redis) => {
            let events = core.events().clone();
            let limiter = RedisLimiter::start(c, redis, core.rate_limit_key(), events, first_connect).await?;
            if !limiter.status().reachable {
                tracing::warn!("Redis (rate_limit.redis_url) does not answer yet; the fail modes apply until it does");
            }
            Ok(Arc::new(limiter))
        }
    }
}

/// The URL did not describe a Redis server. Never repeats the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("rate_limit.redis_url is not a usable Redis URL (expected redis://[:PASSWORD@]HOST:PORT[/DB])")]
pub struct BadRedisUrl;

impl RedisLimiter {
    /// Starts the connection keeper and waits up to `first_connect` for Redis to answer.
    /// Redis being down is not an error: the fail modes answer until it is back.
    pub async fn start(
        c: &RateLimitConfig,
        redis: &RedisLimits,
        key: Arc<PurposeKey>,
        events: Events,
        first_connect: Duration,
    ) -> Result<Self, BadRedisUrl> {
        let client = redis::Client::open(redis.url.expose()).map_err(|_| BadRedisUrl)?;
        let modes = Modes { login: redis.login_when_unreachable, api: redis.api_when_unreachable };
        let clock = events.clock();
        let (link, keeper) = Link::start(client, events, modes, first_connect).await;
        Ok(Self {
            enabled: c.enabled,
            per_minute: PerMinute {
                api: c.requests_per_minute,
                login: c.login_requests_per_minute,
                user: c.user_requests_per_minute,
            },
            modes,
            script: redis::Script::new(include_str!("bucket.lua")),
            key,
            clock,
            link,
            keeper,
        })
    }

    /// The Redis key of one budget: `rampart:rl:<budget>:<MAC>`. The budget's name is in
    /// the MAC too, so an address and a user name can never share a bucket.
    fn bucket_key(&self, budget: Budget, who: &[u8]) -> String {
        let mut input = Vec::with_capacity(who.len() + 8);
        input.extend_from_slice(budget.as_str().as_bytes());
        input.push(0);
        input.extend_from_slice(who);
        let mac = self.key.mac(&input);
        format!("rampart:rl:{}:{}", budget.as_str(), hex::encode(&mac[..16]))
    }

    fn answer_without_store(&self, budget: Budget, limit: u32) -> Decision {
        self.link.count_check_without_store();
        let allowed = self.modes.for_budget(budget) == FailMode::Open;
        Decision::without_store(allowed, limit, self.clock.now())
    }
}

/// The script's reply: {allowed, remaining, full_at_ms, retry_after_ms, audit}.
fn decision(reply: &[i64], limit: u32) -> Option<Decision> {
    let &[allowed, remaining, full_at_ms, retry_after_ms, audit] = reply else {
        return None;
    };
    let allowed = allowed == 1;
    Some(Decision {
        allowed,
        limit,
        remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
        reset_unix: full_at_ms.div_euclid(1000) + 1,
        retry_after_secs: if allowed { 0 } else { u64::try_from((retry_after_ms + 999) / 1000).unwrap_or(1).max(1) },
        audit: audit == 1,
        unavailable: false,
    })
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    fn enabled(&self) -> bool {
        self.enabled
    }

    async fn check(&self, budget: Budget, key: LimitKey<'_>) -> Decision {
        // The same budgets as the in-memory limiter: addresses by client key (IPv6 by /64).
        let (budget, who) = match (budget, key) {
            (_, LimitKey::User(name)) => (Budget::User, name.as_bytes().to_vec()),
            (Budget::Login, LimitKey::Address(ip)) => (Budget::Login, client_key(ip).to_string().into_bytes()),
            (Budget::Api | Budget::User, LimitKey::Address(ip)) => {
                (Budget::Api, client_key(ip).to_string().into_bytes())
            }
        };
        let limit = match budget {
            Budget::Api => self.per_minute.api,
            Budget::Login => self.per_minute.login,
            Budget::User => self.per_minute.user,
        };
        let Some(conn) = self.link.connection() else {
            return self.answer_without_store(budget, limit);
        };
        let mut call = self.script.prepare_invoke();
        call.key(self.bucket_key(budget, &who)).arg(limit);
        match tokio::time::timeout(CHECK_TIMEOUT, call.invoke_async::<Vec<i64>>(&mut conn.handle.clone())).await {
            Ok(Ok(reply)) => match decision(&reply, limit) {
                Some(d) => {
                    self.link.answered();
                    d
                }
                None => {
                    self.link.failed(&conn, "unexpected_reply", false);
                    self.answer_without_store(budget, limit)
                }
            },
            Ok(Err(e)) => {
                let (class, drop_connection) = link::classify(&e);
                self.link.failed(&conn, class, drop_connection);
                self.answer_without_store(budget, limit)
            }
            Err(_elapsed) => {
                self.link.failed(&conn, "timeout", true);
                self.answer_without_store(budget, limit)
            }
        }
    }

    fn status(&self) -> LimiterStatus {
        let health = self.link.health();
        LimiterStatus {
            backend: "redis",
            reachable: health.reachable,
            unreachable_since: health.unreachable_since,
            last_error: health.last_error,
            login_when_unreachable: Some(mode_name(self.modes.login)),
            api_when_unreachable: Some(mode_name(self.modes.api)),
            checks_without_store: self.link.checks_without_store(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_decisions_and_odd_replies_do_not() {
        let d = decision(&[1, 29, 1_700_000_002_000, 0, 0], 30).unwrap_or(Decision::without_store(
            false,
            0,
            rampart_types::Timestamp::from_millis(0),
        ));
        assert!(d.allowed && d.remaining == 29 && d.reset_unix == 1_700_000_003 && !d.unavailable, "{d:?}");
        let refused = decision(&[0, 0, 1_700_000_060_000, 1500, 1], 30);
        assert!(matches!(refused, Some(Decision { allowed: false, retry_after_secs: 2, audit: true, .. })));
        assert!(decision(&[1, 2, 3], 30).is_none());
        assert!(decision(&[], 30).is_none());
    }
}
