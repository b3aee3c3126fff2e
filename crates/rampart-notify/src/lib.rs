//! The webhook adapter of the `Notifier` port: each configured endpoint gets alerts in
//! its own format (generic JSON, Slack, PagerDuty Events v2), and generic endpoints also
//! get signed audit checkpoints. Formatting only; delivery (signing, SSRF guard,
//! backoff) is the binary's outbox worker.

use rampart_config::{ServiceProvider, WebhookEndpoint, WebhookFormat};
use rampart_core::notify::{Notice, Notifier};
use rampart_store::OutboxItem;
use rampart_types::Timestamp;
use serde_json::{json, Value};

pub struct WebhookNotifier {
    endpoints: Vec<WebhookEndpoint>,
    /// Recipients of personal data: they get erasures and nothing else.
    providers: Vec<ServiceProvider>,
    instance_id: String,
}

impl WebhookNotifier {
    pub fn new(endpoints: Vec<WebhookEndpoint>, providers: Vec<ServiceProvider>, instance_id: String) -> Self {
        Self { endpoints, providers, instance_id }
    }

    fn alert_payload(&self, format: WebhookFormat, base: &Value, event_id: &str, summary: &Summary<'_>) -> Value {
        match format {
            WebhookFormat::Generic => base.clone(),
            WebhookFormat::Slack => json!({
                "text": format!("[{}] {} on {}: {}", summary.severity.to_uppercase(), summary.breach_type, self.instance_id, summary.action),
                "event_id": event_id,
            }),
            WebhookFormat::PagerDuty => json!({
                // The routing key is the endpoint's secret: `delivery_body` adds it, so
                // the outbox never holds it.
                "event_action": "trigger",
                "dedup_key": event_id,
                "payload": {
                    "summary": format!("{} ({})", summary.breach_type, self.instance_id),
                    "severity": match summary.severity { "critical" => "critical", "high" => "error", "medium" => "warning", _ => "info" },
                    "source": self.instance_id,
                    "custom_details": base,
                },
            }),
        }
    }
}

struct Summary<'a> {
    severity: &'a str,
    breach_type: &'a str,
    action: &'a str,
}

impl Notifier for WebhookNotifier {
    fn messages(&self, notice: &Notice<'_>, at: Timestamp) -> Vec<OutboxItem> {
        let item = |endpoint: &WebhookEndpoint, event_id: &str, payload: String| OutboxItem {
            event_id: event_id.to_owned(),
            endpoint: endpoint.url.clone(),
            payload,
            attempts: 0,
            next_attempt_at: at,
        };
        match notice {
            Notice::Alert { alert, recommended_action } => {
                let event_id = format!("evt-{}", alert.id.as_str().trim_start_matches("alert-"));
                let base = json!({
                    "event_type": "security_breach",
                    "event_id": event_id,
                    "severity": alert.severity,
                    "timestamp": at,
                    "breach_type": alert.breach_type,
                    "details": alert.details,
                    "recommended_action": recommended_action,
                    "instance_id": self.instance_id,
                });
                let summary =
                    Summary { severity: &alert.severity, breach_type: &alert.breach_type, action: recommended_action };
                self.endpoints
                    .iter()
                    .map(|w| item(w, &event_id, self.alert_payload(w.format, &base, &event_id, &summary).to_string()))
                    .collect()
            }
            Notice::AuditCheckpoint { seq, hash, mac } => {
                let event_id = format!("audit-checkpoint-{}-{seq}", self.instance_id);
                let payload = json!({
                    "event_type": "audit_checkpoint",
                    "event_id": event_id,
                    "instance_id": self.instance_id,
                    "timestamp": at,
                    "seq": seq,
                    "hash": hex::encode(hash),
                    "mac": hex::encode(mac),
                })
                .to_string();
                self.endpoints
                    .iter()
                    .filter(|w| w.format == WebhookFormat::Generic)
                    .map(|w| item(w, &event_id, payload.clone()))
                    .collect()
            }
            Notice::SubjectErased { request_id, kind, subject_id } => self
                .providers
                .iter()
                .map(|p| {
                    let payload = json!({
                        "event_type": "subject_erased",
                        "event_id": request_id,
                        "request_type": kind,
                        "subject_id": subject_id,
                        "service_provider": p.name,
                        "instance_id": self.instance_id,
                        "timestamp": at,
                        "action_required": "delete every record of this subject you received from us",
                    });
                    item(&p.endpoint, request_id, payload.to_string())
                })
                .collect(),
        }
    }

    fn recipients(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name.clone()).collect()
    }
}

/// The body to send: PagerDuty needs the routing key (the endpoint's secret) inside it,
/// which the outbox never stores; other formats go out as queued.
pub fn delivery_body(item: &OutboxItem, format: WebhookFormat, secret: &str) -> Result<Vec<u8>, String> {
    if format != WebhookFormat::PagerDuty {
        return Ok(item.payload.clone().into_bytes());
    }
    let mut v: Value = serde_json::from_str(&item.payload).map_err(|_| "queued payload is not JSON".to_owned())?;
    if let Some(o) = v.as_object_mut() {
        o.insert("routing_key".into(), Value::String(secret.to_owned()));
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pagerduty_gets_its_routing_key_only_at_delivery() {
        let item = OutboxItem {
            event_id: "evt-1".into(),
            endpoint: "https://events.example/pd".into(),
            payload: r#"{"event_action":"trigger"}"#.into(),
            attempts: 0,
            next_attempt_at: rampart_types::Timestamp::from_millis(0),
        };
        let pd: serde_json::Value =
            serde_json::from_slice(&delivery_body(&item, WebhookFormat::PagerDuty, "rk-1").unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(pd["routing_key"], "rk-1");
        assert_eq!(delivery_body(&item, WebhookFormat::Generic, "rk-1").unwrap_or_default(), item.payload.as_bytes());
    }
}
