//! The connection to Redis, its health, and the one task that reconnects and audits
//! outages. Checks only ever take the current connection or find none; they never connect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rampart_core::{EventType, Events, RequestMeta};
use rampart_types::Timestamp;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::{mode_name, Modes};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// A recovery is audited once Redis has answered this long without a failure, so a
/// flapping link gives one outage record and one recovery record, not one per flap.
const STABLE_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    pub reachable: bool,
    pub unreachable_since: Option<Timestamp>,
    pub last_error: Option<&'static str>,
}

/// The current connection and its generation: a check that failed on an older one must not
/// drop a newer one.
#[derive(Clone)]
pub(crate) struct Conn {
    generation: u64,
    pub handle: MultiplexedConnection,
}

struct State {
    conn: Option<Conn>,
    generation: u64,
    health: Health,
}

pub(crate) struct Link {
    state: Mutex<State>,
    /// Wakes the keeper: the connection was dropped or the health changed.
    changed: Notify,
    checks_without_store: AtomicU64,
    events: Events,
}

/// The error's class, safe to audit and show (never the server's text, never the URL),
/// and whether the connection itself is gone.
pub(crate) fn classify(e: &redis::RedisError) -> (&'static str, bool) {
    use redis::ErrorKind as K;
    if e.is_timeout() {
        ("timeout", true)
    } else if e.is_connection_refusal() {
        ("connection_refused", true)
    } else if e.is_connection_dropped() || e.is_io_error() {
        ("connection_lost", true)
    } else {
        match e.kind() {
            K::AuthenticationFailed => ("authentication_failed", true),
            K::BusyLoadingError => ("loading", false),
            K::ReadOnly => ("read_only", false),
            K::ResponseError | K::ExtensionError if e.code() == Some("OOM") => ("out_of_memory", false),
            K::ResponseError | K::ExtensionError if e.code() == Some("NOAUTH") => ("authentication_failed", true),
            K::ParseError | K::TypeError => ("unexpected_reply", true),
            _ => ("error_reply", false),
        }
    }
}

impl Link {
    /// Starts the keeper and waits up to `first_connect` for the first connection. The
    /// keeper runs until its handle is aborted.
    pub(crate) async fn start(
        client: redis::Client,
        events: Events,
        modes: Modes,
        first_connect: Duration,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let link = Arc::new(Self {
            state: Mutex::new(State {
                conn: None,
                generation: 0,
                health: Health { reachable: false, unreachable_since: None, last_error: None },
            }),
            changed: Notify::new(),
            checks_without_store: AtomicU64::new(0),
            events,
        });
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let keeper = tokio::spawn(keep(Arc::clone(&link), client, modes, first_tx));
        let _ = tokio::time::timeout(first_connect, first_rx).await;
        (link, keeper)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn connection(&self) -> Option<Conn> {
        self.lock().conn.clone()
    }

    pub(crate) fn health(&self) -> Health {
        self.lock().health
    }

    pub(crate) fn count_check_without_store(&self) {
        self.checks_without_store.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn checks_without_store(&self) -> u64 {
        self.checks_without_store.load(Ordering::Relaxed)
    }

    /// A check was answered.
    pub(crate) fn answered(&self) {
        let mut s = self.lock();
        if !s.health.reachable {
            s.health = Health { reachable: true, unreachable_since: None, last_error: None };
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A check on `used` failed; the connection is dropped if it is gone (and is still the
    /// current one: a check that failed late must not drop a fresh connection).
    pub(crate) fn failed(&self, used: &Conn, class: &'static str, drop_connection: bool) {
        let now = self.events.now();
        let mut s = self.lock();
        if drop_connection && s.conn.as_ref().is_some_and(|c| c.generation == used.generation) {
            s.conn = None;
        }
        s.health.last_error = Some(class);
        if s.health.reachable {
            s.health.reachable = false;
            s.health.unreachable_since = Some(now);
        }
        drop(s);
        self.changed.notify_one();
    }

    fn connected(&self, handle: MultiplexedConnection) {
        let mut s = self.lock();
        s.generation += 1;
        s.conn = Some(Conn { generation: s.generation, handle });
        s.health = Health { reachable: true, unreachable_since: None, last_error: None };
    }

    fn connect_failed(&self, class: &'static str) {
        let now = self.events.now();
        let mut s = self.lock();
        s.health.last_error = Some(class);
        if s.health.reachable || s.health.unreachable_since.is_none() {
            s.health.reachable = false;
            s.health.unreachable_since = Some(now);
        }
    }

    async fn audit(&self, kind: EventType, modes: Modes, class: Option<&'static str>) {
        let mut details = json!({
            "backend": "redis",
            "login_when_unreachable": mode_name(modes.login),
            "api_when_unreachable": mode_name(modes.api),
        });
        if let Some(class) = class {
            details["error"] = json!(class);
        }
        let success = kind == EventType::RateLimitStoreRestored;
        let meta = RequestMeta::local("rate-limit");
        if let Err(e) = self.events.record_event(kind, None, &meta, success, details).await {
            tracing::error!(error = %e, event = kind.as_str(), "could not audit a rate-limit store change");
        }
        match kind {
            EventType::RateLimitStoreRestored => tracing::info!("the rate-limit store (Redis) answers again"),
            _ => tracing::warn!(
                error = class.unwrap_or("unknown"),
                login = mode_name(modes.login),
                api = mode_name(modes.api),
                "the rate-limit store (Redis) is unreachable; budgets are answered by the fail modes"
            ),
        }
    }
}

/// Connects, reconnects with backoff, and audits each outage once and each recovery once
/// it has held for `STABLE_FOR`. Aborted when the limiter is dropped.
async fn keep(l: Arc<Link>, client: redis::Client, modes: Modes, first: tokio::sync::oneshot::Sender<()>) {
    let mut first = Some(first);
    let mut retry = FIRST_RETRY;
    // What the audit log last said: down (an outage record without its recovery) or not.
    let mut audited_down = false;
    loop {
        if l.connection().is_none() {
            match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
                Ok(Ok(conn)) => {
                    l.connected(conn);
                    retry = FIRST_RETRY;
                }
                Ok(Err(e)) => l.connect_failed(classify(&e).0),
                Err(_elapsed) => l.connect_failed("timeout"),
            }
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
        }
        let health = l.health();
        if !health.reachable && !audited_down {
            l.audit(EventType::RateLimitStoreUnreachable, modes, health.last_error).await;
            audited_down = true;
        }
        if l.connection().is_none() {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(LONGEST_RETRY);
            continue;
        }
        if audited_down && health.reachable {
            // Recovered: audited once it has stayed so (a failure meanwhile wakes us early).
            let changed = tokio::time::timeout(STABLE_FOR, l.changed.notified()).await;
            if changed.is_err() && l.health().reachable {
                l.audit(EventType::RateLimitStoreRestored, modes, None).await;
                audited_down = false;
            }
            continue;
        }
        l.changed.notified().await;
    }
}
