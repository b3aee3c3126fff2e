//! Audit events: every service builds its records here (stamped by the injected clock,
//! with the request's origin) and records the ones that accompany no change. Records that
//! accompany a change are handed to the store with it, in the same transaction.

use std::sync::Arc;

use rampart_store::{AuditEvent, AuditStore, StoreError};
use rampart_types::Timestamp;
use serde_json::Value;

use crate::audit::{bounded, EventType};
use crate::metrics::Metrics;
use crate::{Clock, CoreError, CoreResult, RequestMeta};

#[derive(Clone)]
pub struct Events {
    store: Arc<dyn AuditStore>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Events {
    pub(crate) fn new(store: Arc<dyn AuditStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, metrics: Arc::default() }
    }

    /// This process's counters (every service reaches them through its `Events`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Builds an event stamped with the clock and the request's origin.
    pub(crate) fn event(
        &self,
        kind: EventType,
        user: Option<&str>,
        meta: &RequestMeta,
        success: bool,
        details: Value,
    ) -> AuditEvent {
        // Counted when built: an event whose change then fails to commit is counted as tried.
        self.metrics.event(kind, success);
        AuditEvent {
            timestamp: self.now(),
            event_type: kind.as_str().to_owned(),
            user: user.map(bounded),
            ip_address: meta.ip.clone(),
            success,
            details,
            request_id: Some(meta.request_id.clone()).filter(|r| !r.is_empty()),
        }
    }

    /// Records events that accompany no change, durably, before returning. The store
    /// merges concurrent audit-only appends into one transaction (one sync).
    pub async fn record(&self, events: Vec<AuditEvent>) -> CoreResult<()> {
        let unavailable = |why: String| CoreError::Unavailable(StoreError::AuditUnavailable(why.into()));
        self.store.append_audit(events).await.map(|_| ()).map_err(|e| unavailable(e.to_string()))
    }

    /// Records one event (see `record`).
    pub async fn record_event(
        &self,
        kind: EventType,
        user: Option<&str>,
        meta: &RequestMeta,
        success: bool,
        details: Value,
    ) -> CoreResult<()> {
        self.record(vec![self.event(kind, user, meta, success, details)]).await
    }
}
