//! Breach detection wired into the request paths, with automatic response: stored and
//! deduplicated alerts, temporary IP blocks, session revocation, and signed webhooks queued
//! in a durable outbox. Detection runs in spawned tasks so it never slows the request.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use rampart_config::BreachConfig;
use rampart_store::{AlertFilter, AlertRecord, IpBlock, OutboxItem, SecurityStore, SessionStore};
use rampart_types::{AlertId, Cidr, Timestamp};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::EventType;
use crate::bounded::{BoundedMap, Evictable};
use crate::events::Events;
use crate::notify::{Notice, Notifier};
use crate::refusal::{Area, Refusal, RefusalObserver};
use crate::Authorized;
use crate::{CoreError, CoreResult, Principal, RequestMeta};
use rampart_types::perm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Sliding-window estimate from two tumbling windows: the previous window's count is
/// weighted by how much of it still overlaps the sliding window.
struct Window {
    prev: u64,
    cur: u64,
    start_ms: i64,
}

impl Window {
    fn add(&mut self, now_ms: i64, window_ms: i64, n: u64) -> u64 {
        let elapsed = now_ms - self.start_ms;
        if elapsed >= 2 * window_ms {
            (self.prev, self.cur, self.start_ms) = (0, 0, now_ms);
        } else if elapsed >= window_ms {
            (self.prev, self.cur, self.start_ms) = (self.cur, 0, self.start_ms + window_ms);
        }
        self.cur = self.cur.saturating_add(n);
        let into = (now_ms - self.start_ms) as f64 / window_ms as f64;
        (self.prev as f64 * (1.0 - into)).round() as u64 + self.cur
    }
}

impl Evictable for Window {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        (now.as_millis() - self.start_ms) as f64
    }
}

struct Counter {
    map: BoundedMap<String, Window>,
    window_ms: i64,
}

impl Counter {
    fn new(window_minutes: u32) -> Self {
        Self { map: BoundedMap::new(100_000), window_ms: i64::from(window_minutes.max(1)) * 60_000 }
    }
    /// Adds `n` and returns the windowed total.
    fn add(&self, key: &str, now: Timestamp, n: u64) -> u64 {
        let w = self.window_ms;
        let init = || Window { prev: 0, cur: 0, start_ms: now.as_millis() };
        self.map.with(&key.to_owned(), now, init, |win| win.add(now.as_millis(), w, n)).unwrap_or(0)
    }
}

/// A user's request rate: this minute's count and an exponentially weighted baseline of
/// past minutes.
struct RateBaseline {
    minute: i64,
    count: u64,
    baseline: f64,
    minutes_seen: u32,
    alerted_minute: i64,
}

impl Evictable for RateBaseline {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        (now.as_millis() / 60_000 - self.minute) as f64
    }
}

/// Minutes of history before a baseline is trusted, and how far above it is "far".
const BASELINE_MINUTES: u32 = 5;
const BASELINE_FACTOR: f64 = 10.0;
const BASELINE_FLOOR: f64 = 100.0;

impl RateBaseline {
    /// Counts one request; true when this minute first goes far above the baseline.
    fn count(&mut self, now_minute: i64) -> bool {
        if now_minute != self.minute {
            // Fold finished minutes (idle ones count as zero) into the baseline.
            let gap = (now_minute - self.minute).clamp(1, 60);
            for i in 0..gap {
                let c = if i == 0 { self.count as f64 } else { 0.0 };
                self.baseline = if self.minutes_seen == 0 { c } else { 0.8 * self.baseline + 0.2 * c };
                self.minutes_seen = self.minutes_seen.saturating_add(1);
            }
            (self.minute, self.count) = (now_minute, 0);
        }
        self.count += 1;
        let limit = (self.baseline * BASELINE_FACTOR).max(BASELINE_FLOOR);
        let far =
            self.minutes_seen >= BASELINE_MINUTES && self.count as f64 > limit && self.alerted_minute != now_minute;
        if far {
            self.alerted_minute = now_minute;
        }
        far
    }
}

pub(crate) struct Detector {
    pub config: BreachConfig,
    rates: BoundedMap<String, RateBaseline>,
    failed_ip: Counter,
    failed_account: Counter,
    token_failures: Counter,
    forbidden: Counter,
    bytes_out: Counter,
    blocks: RwLock<Vec<(Cidr, i64)>>,
    /// Last audited refusal (blocked address, CSRF, origin) per address and reason.
    refusals: BoundedMap<String, LastSeen>,
}

struct LastSeen(i64);

impl Evictable for LastSeen {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        (now.as_millis() - self.0) as f64
    }
}

/// Refusals that do no work (blocked address, CSRF, origin) are audited at most this
/// often per address and reason, so a flood cannot flood the audit log.
const REFUSAL_AUDIT_INTERVAL_MS: i64 = 60_000;

impl Detector {
    fn new(config: BreachConfig) -> Self {
        let w = config.failed_login_window_minutes;
        Self {
            failed_ip: Counter::new(w),
            failed_account: Counter::new(w),
            token_failures: Counter::new(w),
            forbidden: Counter::new(w),
            bytes_out: Counter::new(config.exfiltration_window_minutes),
            rates: BoundedMap::new(100_000),
            blocks: RwLock::new(Vec::new()),
            refusals: BoundedMap::new(100_000),
            config,
        }
    }
}

/// The network an address belongs to for "new network" checks: /24 or /64.
fn network_of(ip: IpAddr) -> String {
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    Cidr::new(ip, prefix).to_string()
}

fn recommended_action(breach_type: &str) -> &'static str {
    match breach_type {
        "multiple_failed_logins" => {
            "Review the source address (now blocked); reset credentials of targeted accounts if any login succeeded."
        }
        "unauthorized_access" => "Check for leaked or forged tokens; the source keeps getting 401.",
        "privilege_escalation" => "The account's sessions were revoked; review its role and recent activity.",
        "sql_injection" => "The input was refused safely; review the client and block it if it persists.",
        "data_exfiltration" => {
            "The user's sessions were revoked; review what was read and whether the account is compromised."
        }
        "unusual_access" => "Confirm with the user that this login from a new network was theirs.",
        _ => "Review the alert details.",
    }
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct BlockView {
    pub ip_address: String,
    pub reason: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_by: String,
}

impl From<IpBlock> for BlockView {
    fn from(b: IpBlock) -> Self {
        Self {
            ip_address: b.cidr,
            reason: b.reason,
            created_at: b.created_at,
            expires_at: b.expires_at,
            created_by: b.created_by,
        }
    }
}

pub struct Detection<'a> {
    pub breach_type: &'static str,
    pub severity: Severity,
    pub dedup: String,
    pub details: Value,
    pub ip: Option<IpAddr>,
    pub user: Option<&'a str>,
    pub revoke_sessions: bool,
    /// The evidence is the source's own doing (it cannot have been made to send it by a
    /// victim's browser or a stolen token): only then may a High or Critical alert block
    /// `ip`. Everything else alerts and never blocks.
    pub block_source: bool,
}

/// Breach detection: counts what the request paths report, raises alerts and takes the
/// automatic responses. Holds the security store (alerts, blocks, outbox), the session
/// store (only to revoke on an alert) and the `Notifier`.
#[derive(Clone)]
pub struct BreachDetection {
    state: Arc<Detector>,
    store: Arc<dyn SecurityStore>,
    sessions: Arc<dyn SessionStore>,
    notifier: Arc<dyn Notifier>,
    events: Events,
}

impl BreachDetection {
    pub(crate) fn new(
        config: BreachConfig,
        store: Arc<dyn SecurityStore>,
        sessions: Arc<dyn SessionStore>,
        notifier: Arc<dyn Notifier>,
        events: Events,
    ) -> Self {
        Self { state: Arc::new(Detector::new(config)), store, sessions, notifier, events }
    }

    fn detector(&self) -> &Detector {
        &self.state
    }

    fn now(&self) -> Timestamp {
        self.events.now()
    }

    /// Whether `ip` is blocked right now (in-memory; refreshed on every change).
    /// When the latest active block covering `ip` ends, if any.
    pub fn blocked_until(&self, ip: IpAddr) -> Option<Timestamp> {
        let now = self.now().as_millis();
        let blocks = self.detector().blocks.read().ok()?;
        blocks
            .iter()
            .filter(|(c, exp)| *exp > now && c.contains(&ip))
            .map(|(_, exp)| *exp)
            .max()
            .map(Timestamp::from_millis)
    }

    /// Whether `ip` may use the admin API (`admin_allowed_ips`, when set).
    pub fn admin_ip_allowed(&self, ip: IpAddr) -> bool {
        let allowed = &self.detector().config.admin_allowed_ips;
        allowed.is_empty() || allowed.iter().any(|c| c.contains(&ip))
    }

    pub async fn refresh_blocks(&self) -> CoreResult<()> {
        let active = self.store.active_blocks(self.now()).await?;
        let parsed =
            active.iter().filter_map(|b| Cidr::parse(&b.cidr).ok().map(|c| (c, b.expires_at.as_millis()))).collect();
        if let Ok(mut guard) = self.detector().blocks.write() {
            *guard = parsed;
        }
        Ok(())
    }

    pub fn breach_enabled(&self) -> bool {
        self.detector().config.enabled
    }

    /// Stores (or folds into an existing) alert and takes the automatic actions.
    pub async fn raise(&self, d: Detection<'_>) -> CoreResult<()> {
        let cfg = &self.detector().config;
        let now = self.now();
        let id: AlertId = rampart_crypto::new_id();
        let mut details = d.details;
        if let Some(obj) = details.as_object_mut() {
            obj.insert("ip_address".into(), json!(d.ip.map(|i| i.to_string())));
            obj.insert("user".into(), json!(d.user));
        }
        let alert = AlertRecord {
            id: id.clone(),
            severity: d.severity.as_str().to_owned(),
            breach_type: d.breach_type.to_owned(),
            dedup_key: format!("{}:{}", d.breach_type, d.dedup),
            details: details.clone(),
            first_seen: now,
            last_seen: now,
            count: 1,
            status: "open".into(),
            acknowledged_by: None,
        };
        let webhooks = self.webhooks_for(&alert, now);
        let since = now.minus_seconds(i64::from(cfg.alert_dedup_minutes) * 60);
        let (stored, new) = self.store.raise_alert(alert, since, webhooks, vec![]).await?;
        if !new {
            return Ok(());
        }
        self.events.metrics().alert(d.breach_type, d.severity.as_str());
        tracing::warn!(
            breach_type = d.breach_type,
            severity = d.severity.as_str(),
            alert = stored.id.as_str(),
            "security alert"
        );
        let meta = RequestMeta { ip: d.ip.map(|i| i.to_string()), user_agent: None, request_id: id.to_string() };
        if d.severity >= Severity::High && d.block_source {
            if let Some(ip) = d.ip {
                let reason = format!("automatic: {} ({})", d.breach_type, stored.id);
                self.add_block(
                    Cidr::new(ip, if ip.is_ipv4() { 32 } else { 64 }),
                    &reason,
                    cfg.block_duration_hours,
                    "system",
                    &meta,
                )
                .await?;
            }
        }
        if d.revoke_sessions {
            if let Some(user) = d.user.and_then(|u| rampart_types::Username::parse(u).ok()) {
                let details = json!({ "target": user.as_str(), "reason": d.breach_type, "alert": stored.id });
                let event = self.events.event(EventType::SessionRevoke, Some("system"), &meta, true, details);
                self.sessions.delete_user_sessions(&user, None, vec![event]).await?;
            }
        }
        Ok(())
    }

    fn webhooks_for(&self, alert: &AlertRecord, now: Timestamp) -> Vec<OutboxItem> {
        let notice = Notice::Alert { alert, recommended_action: recommended_action(&alert.breach_type) };
        self.notifier.messages(&notice, now)
    }

    async fn add_block(
        &self,
        cidr: Cidr,
        reason: &str,
        hours: u32,
        by: &str,
        meta: &RequestMeta,
    ) -> CoreResult<IpBlock> {
        let now = self.now();
        let block = IpBlock {
            cidr: cidr.to_string(),
            reason: reason.chars().take(500).collect(),
            created_at: now,
            expires_at: now.plus_seconds(i64::from(hours) * 3600),
            created_by: by.to_owned(),
        };
        let details = json!({ "ip_address": block.cidr, "reason": block.reason, "expires_at": block.expires_at });
        let event = self.events.event(EventType::IpBlock, Some(by), meta, true, details);
        self.store.add_block(block.clone(), vec![event]).await?;
        self.refresh_blocks().await?;
        Ok(block)
    }

    // ----- detectors, called from the request paths -----

    pub(crate) fn spawn_detection(&self, f: impl std::future::Future<Output = CoreResult<()>> + Send + 'static) {
        tokio::spawn(async move {
            if let Err(e) = f.await {
                tracing::warn!(error = %e, "breach detection failed");
            }
        });
    }

    pub(crate) fn on_failed_login(&self, meta: &RequestMeta, account: &str) {
        if !self.breach_enabled() {
            return;
        }
        let (core, meta, account) = (self.clone(), meta.clone(), crate::audit::bounded(account));
        self.spawn_detection(async move {
            let cfg = &core.detector().config;
            let now = core.now();
            let threshold = u64::from(cfg.failed_login_threshold);
            let ip = meta.client_ip();
            if let Some(ip) = ip {
                // Counted per client key (IPv6 by /64), as the rate limiter does.
                let n = core.detector().failed_ip.add(&crate::client_key(ip).to_string(), now, 1);
                if n > threshold {
                    let details =
                        json!({ "scope": "ip", "failures": n, "window_minutes": cfg.failed_login_window_minutes });
                    core.raise(Detection {
                        breach_type: "multiple_failed_logins",
                        severity: Severity::High,
                        dedup: ip.to_string(),
                        details,
                        ip: Some(ip),
                        user: None,
                        revoke_sessions: false,
                        block_source: true,
                    })
                    .await?;
                }
            }
            let n = core.detector().failed_account.add(&account, now, 1);
            if n > threshold {
                // Password spraying and credential stuffing come from many addresses: alert
                // on the account, but block no single address for it.
                let details =
                    json!({ "scope": "account", "failures": n, "window_minutes": cfg.failed_login_window_minutes });
                core.raise(Detection {
                    breach_type: "multiple_failed_logins",
                    severity: Severity::High,
                    dedup: format!("account:{account}"),
                    details,
                    ip: None,
                    user: Some(&account),
                    revoke_sessions: false,
                    block_source: false,
                })
                .await?;
            }
            Ok(())
        });
    }

    pub(crate) fn on_login_success(&self, meta: &RequestMeta, user: &str) {
        if !self.breach_enabled() || !self.detector().config.anomaly_detection {
            return;
        }
        let (core, meta, user) = (self.clone(), meta.clone(), user.to_owned());
        self.spawn_detection(async move {
            let Some(ip) = meta.client_ip() else { return Ok(()) };
            let network = network_of(ip);
            let first_ever = core.store.note_login_network(&user, "*", core.now()).await?;
            let new_network = core.store.note_login_network(&user, &network, core.now()).await?;
            if new_network && !first_ever {
                let details = json!({ "network": network });
                core.raise(Detection {
                    breach_type: "unusual_access",
                    severity: Severity::Medium,
                    dedup: format!("{user}:{network}"),
                    details,
                    ip: Some(ip),
                    user: Some(&user),
                    revoke_sessions: false,
                    block_source: false,
                })
                .await?;
            }
            Ok(())
        });
    }

    /// Every authenticated request: a rate far above the account's own baseline is unusual
    /// access (Medium). Cheap on the hot path; work is spawned only when it trips.
    pub fn on_authenticated_request(&self, who: &Principal) {
        if !self.breach_enabled() || !self.detector().config.anomaly_detection {
            return;
        }
        let now = self.now();
        let minute = now.as_millis() / 60_000;
        let init = || RateBaseline { minute, count: 0, baseline: 0.0, minutes_seen: 0, alerted_minute: -1 };
        let key = who.username.to_string();
        let tripped = self.detector().rates.with(&key, now, init, |r| r.count(minute).then_some((r.count, r.baseline)));
        let Some(Some((count, baseline))) = tripped else { return };
        let (core, origin) = (self.clone(), who.origin.clone());
        self.spawn_detection(async move {
            let ip = origin.client_ip();
            let details =
                json!({ "requests_this_minute": count, "baseline_per_minute": (baseline * 10.0).round() / 10.0 });
            core.raise(Detection {
                breach_type: "unusual_access",
                severity: Severity::Medium,
                dedup: format!("rate:{key}"),
                details,
                ip,
                user: Some(&key),
                revoke_sessions: false,
                block_source: false,
            })
            .await
        });
    }

    /// Audits a refusal that needed no authorization decision (blocked address, CSRF or
    /// origin check), sampled per address and reason; durable before the caller answers.
    pub async fn record_refusal(&self, meta: &RequestMeta, reason: &'static str) {
        let now = self.now();
        let key = format!("{}\0{reason}", meta.ip.as_deref().unwrap_or("-"));
        let due = self
            .detector()
            .refusals
            .with(
                &key,
                now,
                || LastSeen(i64::MIN),
                |last| {
                    let due = now.as_millis().saturating_sub(last.0) >= REFUSAL_AUDIT_INTERVAL_MS;
                    if due {
                        last.0 = now.as_millis();
                    }
                    due
                },
            )
            .unwrap_or(false);
        if due {
            let details = json!({ "reason": reason, "sampled": "at most once a minute per address and reason" });
            if let Err(e) = self.events.record_event(EventType::PermissionDenied, None, meta, false, details).await {
                tracing::warn!(error = %e, "could not audit a refusal");
            }
        }
    }

    /// A request presented an invalid, expired or tampered token.
    pub fn on_token_failure(&self, meta: &RequestMeta) {
        if !self.breach_enabled() {
            return;
        }
        let (core, meta) = (self.clone(), meta.clone());
        self.spawn_detection(async move {
            let Some(ip) = meta.client_ip() else { return Ok(()) };
            let n = core.detector().token_failures.add(&ip.to_string(), core.now(), 1);
            if n > u64::from(core.detector().config.token_failure_threshold) {
                let details = json!({ "failures": n });
                core.raise(Detection {
                    breach_type: "unauthorized_access",
                    severity: Severity::Medium,
                    dedup: ip.to_string(),
                    details,
                    ip: Some(ip),
                    user: None,
                    revoke_sessions: false,
                    block_source: false,
                })
                .await?;
            }
            Ok(())
        });
    }

    /// A refusal: trying to raise one's own privileges is Critical at once; repeated
    /// refusals in the admin area cross a threshold.
    fn on_refusal(&self, who: &Principal, area: Area, refusal: &Refusal, details: &Value) {
        if !self.breach_enabled() {
            return;
        }
        let escalation = refusal.is_self_raise();
        let counts = escalation || area == Area::Admin;
        let (core, user, origin, details) =
            (self.clone(), who.username.to_string(), who.origin.clone(), details.clone());
        self.spawn_detection(async move {
            let n = core.detector().forbidden.add(&user, core.now(), u64::from(counts));
            let ip = origin.client_ip();
            if escalation || (counts && n >= u64::from(core.detector().config.forbidden_threshold)) {
                let details = json!({ "refused": details, "admin_refusals": n });
                core.raise(Detection {
                    breach_type: "privilege_escalation",
                    severity: Severity::Critical,
                    dedup: user.clone(),
                    details,
                    ip,
                    user: Some(&user),
                    revoke_sessions: true,
                    block_source: true,
                })
                .await?;
            }
            Ok(())
        });
    }

    /// Input that libinjection classifies as SQL injection. The request itself is still
    /// answered normally: nothing is ever concatenated into SQL.
    /// `self_produced`: authenticated and not cross-site (see `Detection::block_source`).
    pub fn on_sqli(
        &self,
        meta: &RequestMeta,
        user: Option<&str>,
        self_produced: bool,
        location: &str,
        fingerprint: &str,
    ) {
        if !self.breach_enabled() || !self.detector().config.sqli_detection {
            return;
        }
        let (core, meta, user, location, fp) =
            (self.clone(), meta.clone(), user.map(str::to_owned), location.to_owned(), fingerprint.to_owned());
        self.spawn_detection(async move {
            let ip = meta.client_ip();
            let details = json!({
                "location": location,
                "fingerprint": fp,
                "request_id": meta.request_id,
                "authenticated": user.is_some(),
                "address_blocked": self_produced,
            });
            let dedup = ip.map(|i| i.to_string()).unwrap_or_default();
            core.raise(Detection {
                breach_type: "sql_injection",
                severity: Severity::High,
                dedup,
                details,
                ip,
                user: user.as_deref(),
                revoke_sessions: false,
                block_source: self_produced,
            })
            .await
        });
    }

    pub(crate) fn on_data_returned(&self, who: &Principal, bytes: u64) {
        if !self.breach_enabled() {
            return;
        }
        let (core, user, origin) = (self.clone(), who.username.to_string(), who.origin.clone());
        self.spawn_detection(async move {
            let cfg = &core.detector().config;
            let total = core.detector().bytes_out.add(&user, core.now(), bytes);
            if total > cfg.data_exfiltration_threshold_mb.saturating_mul(1024 * 1024) {
                let ip = origin.client_ip();
                let details = json!({ "bytes": total, "window_minutes": cfg.exfiltration_window_minutes, "threshold_mb": cfg.data_exfiltration_threshold_mb });
                core.raise(Detection { breach_type: "data_exfiltration", severity: Severity::Critical, dedup: user.clone(), details, ip, user: Some(&user), revoke_sessions: true, block_source: true }).await?;
            }
            Ok(())
        });
    }

    // ----- incident-response API -----

    pub async fn list_alerts(
        &self,
        _: &Authorized<perm::SecurityRead>,
        filter: AlertFilter,
    ) -> CoreResult<Vec<AlertRecord>> {
        Ok(self.store.list_alerts(filter).await?)
    }

    pub async fn set_alert_status(
        &self,
        access: &Authorized<perm::SecurityManage>,
        id: &str,
        status: &str,
    ) -> CoreResult<AlertRecord> {
        let who = access.who();
        let id = AlertId::parse(id).map_err(|_| CoreError::NotFound("alert"))?;
        let details = json!({ "alert": id, "status": status });
        let event = self.events.event(EventType::AlertAck, Some(who.username.as_str()), &who.origin, true, details);
        self.store.set_alert_status(&id, status, who.username.as_str(), vec![event]).await.map_err(|e| match e {
            rampart_store::StoreError::NotFound => CoreError::NotFound("alert"),
            e => e.into(),
        })
    }

    pub async fn block_ip(
        &self,
        access: &Authorized<perm::SecurityManage>,
        ip: &str,
        reason: &str,
        hours: u32,
    ) -> CoreResult<BlockView> {
        let who = access.who();
        let cidr = Cidr::parse(ip).map_err(|e| CoreError::validation("ip_address", e.to_string()))?;
        if !(1..=24 * 365).contains(&hours) {
            return Err(CoreError::validation("duration_hours", "must be between 1 and 8760"));
        }
        // A block this wide, or one covering the caller, would lock the operators out of
        // the very API that lifts it.
        let min_prefix = if cidr.network().is_ipv4() { 16 } else { 32 };
        if cidr.prefix() < min_prefix {
            return Err(CoreError::validation("ip_address", "blocks wider than /16 (IPv4) or /32 (IPv6) are refused"));
        }
        let caller = who.origin.client_ip();
        if caller.is_some_and(|c| cidr.contains(&c)) {
            return Err(CoreError::validation("ip_address", "the block would cover your own address"));
        }
        Ok(self.add_block(cidr, reason, hours, who.username.as_str(), &who.origin).await?.into())
    }

    pub async fn unblock_ip(&self, access: &Authorized<perm::SecurityManage>, ip: &str) -> CoreResult<()> {
        let who = access.who();
        let cidr = Cidr::parse(ip).map_err(|e| CoreError::validation("ip_address", e.to_string()))?;
        let event = self.events.event(
            EventType::IpUnblock,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "ip_address": cidr.to_string() }),
        );
        if !self.store.remove_block(&cidr.to_string(), vec![event]).await? {
            return Err(CoreError::NotFound("block"));
        }
        self.refresh_blocks().await
    }

    pub async fn list_blocks(&self, _: &Authorized<perm::SecurityRead>) -> CoreResult<Vec<BlockView>> {
        Ok(self.store.active_blocks(self.now()).await?.into_iter().map(Into::into).collect())
    }
}

impl RefusalObserver for BreachDetection {
    fn refused(&self, who: &Principal, area: Area, refusal: &Refusal, details: &Value) {
        self.on_refusal(who, area, refusal, details);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_know_every_severity_by_its_name() {
        let names = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical].map(Severity::as_str);
        assert_eq!(names, crate::metrics::ALERT_SEVERITIES);
    }

    #[test]
    fn rate_far_above_the_accounts_own_baseline_trips_once_per_minute() {
        let mut r = RateBaseline { minute: 0, count: 0, baseline: 0.0, minutes_seen: 0, alerted_minute: -1 };
        for minute in 0..6 {
            for _ in 0..20 {
                assert!(!r.count(minute), "steady traffic is normal");
            }
        }
        let trips = (0..500).filter(|_| r.count(6)).count();
        assert_eq!(trips, 1, "200 over a 20/min baseline trips, once");
        let mut fresh = RateBaseline { minute: 0, count: 0, baseline: 0.0, minutes_seen: 0, alerted_minute: -1 };
        assert!((0..1000).all(|_| !fresh.count(0)), "no baseline yet, no verdict");
    }
}
