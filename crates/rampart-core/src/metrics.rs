//! This node's counters for Prometheus (`GET /metrics`), rendered in the text exposition
//! format. Every label value comes from a fixed set the code names (event kinds, alert
//! types, budgets): never a username, address, token or subject id, and no label set can
//! grow with traffic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::audit::EventType;
use crate::limiter::Budget;

/// Alert severities by name (`security::Severity::as_str`; named here so that this module,
/// which every service reaches through `Events`, depends on none of them).
pub(crate) const ALERT_SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
/// Distinct alert types counted; the detectors name fewer. A type past the cap is counted
/// under `other`, so the series stay bounded whatever a future detector does.
const MAX_ALERT_TYPES: usize = 32;
/// The types the detectors raise, exported at zero from the start: a series that first
/// appears at 1 is no increase to `increase()`, so the first alert of a type would alert
/// nobody. A test keeps this list in step with the `breach_type`s in the code.
const ALERT_TYPES: [&str; 8] = [
    "multiple_failed_logins",
    "unusual_access",
    "unauthorized_access",
    "privilege_escalation",
    "sql_injection",
    "data_exfiltration",
    "audit_chain_broken",
    "integrity_error",
];

/// Counters updated by the services; one per process, shared through [`crate::Events`].
pub struct Metrics {
    /// Per event kind: [failure, success].
    events: Vec<[AtomicU64; 2]>,
    /// Per budget (`Budget::ALL` order): requests refused.
    rate_limited: [AtomicU64; 3],
    alerts: std::sync::Mutex<Vec<(&'static str, [u64; 4])>>,
    webhook_delivered: AtomicU64,
    webhook_failed: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            events: EventType::ALL.iter().map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(),
            rate_limited: Default::default(),
            alerts: std::sync::Mutex::new(ALERT_TYPES.iter().map(|t| (*t, [0; 4])).collect()),
            webhook_delivered: AtomicU64::new(0),
            webhook_failed: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub(crate) fn event(&self, kind: EventType, success: bool) {
        if let Some(slot) = self.events.get(kind as usize) {
            slot[usize::from(success)].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rate_limited(&self, budget: Budget) {
        let i = Budget::ALL.iter().position(|b| *b == budget).unwrap_or(0);
        self.rate_limited[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn alert(&self, breach_type: &'static str, severity: &str) {
        let s = ALERT_SEVERITIES.iter().position(|x| *x == severity).unwrap_or(0);
        let Ok(mut alerts) = self.alerts.lock() else { return };
        let i = match alerts.iter().position(|(t, _)| *t == breach_type) {
            Some(i) => i,
            None if alerts.len() < MAX_ALERT_TYPES => {
                alerts.push((breach_type, [0; 4]));
                alerts.len() - 1
            }
            None => match alerts.iter().position(|(t, _)| *t == "other") {
                Some(i) => i,
                None => {
                    // The cap's last slot becomes `other`.
                    if let Some(last) = alerts.last_mut() {
                        last.0 = "other";
                    }
                    alerts.len() - 1
                }
            },
        };
        alerts[i].1[s] += 1;
    }

    /// A webhook or service-provider delivery: answered 2xx, or failed (to be retried).
    pub fn webhook_delivery(&self, delivered: bool) {
        let c = if delivered { &self.webhook_delivered } else { &self.webhook_failed };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends this node's counters in the text format.
    pub fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        header(out, "rampart_audit_events_total", "counter", "Audit events recorded, by kind and outcome.");
        for (kind, slot) in EventType::ALL.iter().zip(&self.events) {
            for (success, outcome) in [(1, "success"), (0, "failure")] {
                let _ = writeln!(
                    out,
                    "rampart_audit_events_total{{event=\"{}\",outcome=\"{outcome}\"}} {}",
                    kind.as_str(),
                    load(&slot[success])
                );
            }
        }
        header(
            out,
            "rampart_logins_total",
            "counter",
            "Login attempts (password, directory, OIDC, second factor), by outcome.",
        );
        if let Some(login) = self.events.get(EventType::Login as usize) {
            let _ = writeln!(out, "rampart_logins_total{{outcome=\"success\"}} {}", load(&login[1]));
            let _ = writeln!(out, "rampart_logins_total{{outcome=\"failure\"}} {}", load(&login[0]));
        }
        header(out, "rampart_rate_limited_total", "counter", "Requests refused by a rate limit, by budget.");
        for (budget, c) in Budget::ALL.iter().zip(&self.rate_limited) {
            let _ = writeln!(out, "rampart_rate_limited_total{{budget=\"{}\"}} {}", budget.as_str(), load(c));
        }
        header(
            out,
            "rampart_alerts_total",
            "counter",
            "Security alerts raised (new, not folded into an open one), by type and severity.",
        );
        if let Ok(alerts) = self.alerts.lock() {
            for (kind, counts) in alerts.iter() {
                for (severity, n) in ALERT_SEVERITIES.iter().zip(counts) {
                    let _ = writeln!(out, "rampart_alerts_total{{type=\"{kind}\",severity=\"{severity}\"}} {n}");
                }
            }
        }
        header(out, "rampart_webhook_deliveries_total", "counter", "Webhook deliveries by this node, by result.");
        let _ =
            writeln!(out, "rampart_webhook_deliveries_total{{result=\"delivered\"}} {}", load(&self.webhook_delivered));
        let _ = writeln!(out, "rampart_webhook_deliveries_total{{result=\"failed\"}} {}", load(&self.webhook_failed));
    }
}

/// `# HELP` and `# TYPE` lines of a metric family.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// One sample without labels.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_fixed_labels_only() {
        let m = Metrics::default();
        m.event(EventType::Login, false);
        m.event(EventType::Login, false);
        m.event(EventType::Login, true);
        m.rate_limited(Budget::Login);
        m.alert("brute_force", "high");
        m.webhook_delivery(false);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("rampart_logins_total{outcome=\"failure\"} 2\n"), "{out}");
        assert!(out.contains("rampart_logins_total{outcome=\"success\"} 1\n"));
        assert!(out.contains("rampart_rate_limited_total{budget=\"login\"} 1\n"));
        assert!(out.contains("rampart_alerts_total{type=\"brute_force\",severity=\"high\"} 1\n"));
        assert!(out.contains("rampart_alerts_total{type=\"sql_injection\",severity=\"critical\"} 0\n"), "{out}");
        assert!(out.contains("rampart_webhook_deliveries_total{result=\"failed\"} 1\n"));
    }

    #[test]
    fn every_event_kind_has_its_own_slot() {
        for (i, kind) in EventType::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, i, "{kind:?} is out of order in EventType::ALL");
        }
    }

    /// Every alert type a detection in this crate's sources names is pre-registered.
    #[test]
    fn every_raised_alert_type_is_exported_from_the_start() {
        fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut texts = Vec::new();
        sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut texts);
        // Split so that this test's own source holds no match.
        let owned = ["breach_type", ": \""].concat();
        let needle = owned.as_str();
        let mut raised: Vec<&str> = texts
            .iter()
            .flat_map(|t| t.match_indices(needle).map(move |(i, _)| &t[i + needle.len()..]))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        raised.sort_unstable();
        raised.dedup();
        assert!(raised.len() >= 5, "the scan found too few detectors: {raised:?}");
        for t in raised {
            assert!(ALERT_TYPES.contains(&t), "alert type {t} is not in ALERT_TYPES");
        }
    }

    #[test]
    fn alert_types_past_the_cap_share_one_series() {
        let m = Metrics::default();
        let names: Vec<&'static str> =
            (0..MAX_ALERT_TYPES + 10).map(|i| &*Box::leak(format!("type_{i}").into_boxed_str())).collect();
        for n in &names {
            m.alert(n, "low");
        }
        let alerts = m.alerts.lock().unwrap();
        assert_eq!(alerts.len(), MAX_ALERT_TYPES);
        let other = alerts.iter().find(|(t, _)| *t == "other").unwrap();
        // The slot that became `other` held one; every name that found the table full adds one.
        let past_the_cap = names.len() - (MAX_ALERT_TYPES - ALERT_TYPES.len());
        assert_eq!(other.1[0], 1 + past_the_cap as u64, "the last slot and those past the cap");
    }
}
