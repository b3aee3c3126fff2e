//! `GET /metrics`, the part the core knows: this node's counters (see [`crate::metrics`])
//! and the gauges read from the store when scraped (blocked addresses, the webhook outbox,
//! the writer queue and its group commits, the key-encrypting key's age).

use std::fmt::Write as _;
use std::sync::Arc;

use rampart_store::{AuditStore, SecurityStore, COMMIT_SIZE_BUCKETS};
use rampart_types::perm;

use crate::metrics::{gauge, header};
use crate::rotation::Keys;
use crate::{Authorized, CoreResult, Events};

#[derive(Clone)]
pub struct Telemetry {
    security: Arc<dyn SecurityStore>,
    audit: Arc<dyn AuditStore>,
    keys: Keys,
    events: Events,
}

impl Telemetry {
    pub(crate) fn new(
        security: Arc<dyn SecurityStore>,
        audit: Arc<dyn AuditStore>,
        keys: Keys,
        events: Events,
    ) -> Self {
        Self { security, audit, keys, events }
    }

    /// The core's metrics in the Prometheus text format.
    pub async fn render(&self, _: &Authorized<perm::MetricsRead>) -> CoreResult<String> {
        let now = self.events.now();
        let mut out = String::with_capacity(16 * 1024);
        self.events.metrics().render(&mut out);
        let blocks = self.security.active_blocks(now).await?.len();
        gauge(&mut out, "rampart_blocked_addresses", "Addresses and networks blocked now.", blocks);
        let backlog = self.security.webhook_backlog().await?;
        gauge(&mut out, "rampart_webhook_outbox_backlog", "Webhook deliveries not yet made (all nodes).", backlog);
        let w = self.audit.writer_stats();
        gauge(
            &mut out,
            "rampart_write_queue_depth",
            "Changes and audit appends waiting for this node's writer.",
            w.queue_depth,
        );
        gauge(&mut out, "rampart_write_queue_capacity", "Capacity of this node's writer queue.", w.queue_capacity);
        let name = "rampart_group_commit_size";
        header(&mut out, name, "histogram", "Queued changes per write transaction (group commit) on this node.");
        let mut cumulative = 0;
        for (bound, n) in COMMIT_SIZE_BUCKETS.iter().zip(w.commits_by_size) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {}\n{name}_count {cumulative}",
            w.changes_committed
        );
        let keys = self.keys.keys_status().await?;
        if let Some(last) = keys.kek_versions.iter().map(|v| v.created_at).max() {
            let age = (now.as_millis() - last.as_millis()).max(0) / 1000;
            gauge(&mut out, "rampart_key_age_seconds", "Age of the current key-encrypting key.", age);
        }
        gauge(
            &mut out,
            "rampart_key_rotation_period_seconds",
            "Configured key rotation period.",
            u64::from(keys.rotation_days) * 86_400,
        );
        Ok(out)
    }
}
