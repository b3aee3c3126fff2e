use async_trait::async_trait;
use rampart_types::{AlertId, Timestamp};
use serde_json::Value;

use crate::{Audit, StoreResult};

#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub id: AlertId,
    pub severity: String,
    pub breach_type: String,
    /// Alerts with the same key within the dedup window are one alert with a count.
    pub dedup_key: String,
    pub details: Value,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub acknowledged_by: Option<String>,
}

/// How an alert's details are stored by every backend: JSON text. Control characters in
/// strings and keys (NUL included) come out escaped (`\u0000`), so the stored text never
/// holds a raw NUL, which PostgreSQL's `text` refuses.
impl AlertRecord {
    pub fn encode_details(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.details)
    }

    /// The details back from their stored text; an error when it is not JSON.
    pub fn decode_details(stored: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(stored)
    }
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub breach_type: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    /// An address or CIDR block, normalised.
    pub cidr: String,
    pub reason: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub created_by: String,
}

/// A webhook delivery waiting in the outbox (durable: survives restarts).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Stable event id: receivers deduplicate on it.
    pub event_id: String,
    pub endpoint: String,
    pub payload: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
}

#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// Folds `alert` into an unresolved alert with the same dedup key seen since
    /// `since`, or inserts it. When it is new, `webhooks` are queued in the same
    /// transaction. Returns the stored alert and whether it is new. Folding counts one more
    /// occurrence and never moves `last_seen` back (nor `first_seen` forward): a report from
    /// a node whose clock is behind keeps the later time, and the details of the later
    /// report. Atomic: concurrent raises of one key (from any node) make one alert and lose
    /// no count.
    async fn raise_alert(
        &self,
        alert: AlertRecord,
        since: Timestamp,
        webhooks: Vec<OutboxItem>,
        audit: Audit,
    ) -> StoreResult<(AlertRecord, bool)>;
    /// Queues deliveries that belong to no alert (signed audit checkpoints).
    async fn enqueue_webhooks(&self, items: Vec<OutboxItem>) -> StoreResult<()>;
    async fn list_alerts(&self, filter: AlertFilter) -> StoreResult<Vec<AlertRecord>>;
    async fn set_alert_status(&self, id: &AlertId, status: &str, by: &str, audit: Audit) -> StoreResult<AlertRecord>;
    async fn add_block(&self, block: IpBlock, audit: Audit) -> StoreResult<()>;
    /// Returns whether a block was removed.
    async fn remove_block(&self, cidr: &str, audit: Audit) -> StoreResult<bool>;
    /// Blocks whose expiry is after `now`.
    async fn active_blocks(&self, now: Timestamp) -> StoreResult<Vec<IpBlock>>;
    async fn due_webhooks(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<OutboxItem>>;
    /// Deliveries not yet made, due or not (every node's).
    async fn webhook_backlog(&self) -> StoreResult<u64>;
    async fn webhook_delivered(&self, event_id: &str, endpoint: &str, at: Timestamp) -> StoreResult<()>;
    async fn webhook_failed(
        &self,
        event_id: &str,
        endpoint: &str,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<()>;
    /// Remembers that `username` completed a login from `address` (forgetting the user's
    /// addresses last seen before `forget_before`, which bounds the rows per user).
    async fn remember_login_address(
        &self,
        username: &str,
        address: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> StoreResult<()>;
    /// Whether `username` completed a login from `address` since `since`.
    async fn login_address_known(&self, username: &str, address: &str, since: Timestamp) -> StoreResult<bool>;
    /// Records that `username` logged in from `network`; returns whether it was new.
    async fn note_login_network(&self, username: &str, network: &str, at: Timestamp) -> StoreResult<bool>;
}
