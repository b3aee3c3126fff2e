use std::sync::Arc;

use async_trait::async_trait;
use rampart_types::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::StoreResult;

/// One security-relevant event, before it joins the chain.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub timestamp: Timestamp,
    pub event_type: String,
    pub user: Option<String>,
    pub ip_address: Option<String>,
    pub success: bool,
    /// A JSON object; never holds secrets (passwords, tokens, keys, codes).
    pub details: Value,
    pub request_id: Option<String>,
}

/// An event in the chain: `hash = HMAC(audit_key, prev_hash || canonical(seq, event))`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// The hash of "no previous record".
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    timestamp_ms: i64,
    event_type: &'a str,
    user: &'a Option<String>,
    ip_address: &'a Option<String>,
    success: bool,
    details: &'a Value,
    request_id: &'a Option<String>,
}

impl AuditRecord {
    /// The exact bytes the chain MAC covers: JSON with fixed field order and sorted object
    /// keys (serde_json maps are ordered), so every reader reproduces them.
    pub fn canonical(seq: i64, e: &AuditEvent) -> Vec<u8> {
        let c = Canonical {
            seq,
            timestamp_ms: e.timestamp.as_millis(),
            event_type: &e.event_type,
            user: &e.user,
            ip_address: &e.ip_address,
            success: e.success,
            details: &e.details,
            request_id: &e.request_id,
        };
        serde_json::to_vec(&c).unwrap_or_default()
    }
}

/// Computes chain MACs with a key the store never sees.
pub trait AuditChainer: Send + Sync {
    fn chain(&self, prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32];
    /// MAC over the head (last seq and hash), stored beside the chain so truncation of the
    /// tail is detectable.
    fn head_mac(&self, seq: i64, hash: &[u8; 32]) -> [u8; 32];
    /// Whether `mac` signs the head, compared in constant time (the crypto side owns that).
    fn head_is_signed(&self, seq: i64, hash: &[u8; 32], mac: &[u8; 32]) -> bool;
}

/// The newest record's seq and hash, with its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: [u8; 32],
    pub mac: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    pub user: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub success: Option<bool>,
    pub after_seq: Option<i64>,
    pub limit: usize,
}

/// Events to record in the same transaction as a change (possibly none).
pub type Audit = Vec<AuditEvent>;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Installs the MAC function; until then every audited write fails (closed).
    fn set_audit_chainer(&self, chainer: Arc<dyn AuditChainer>);
    /// Appends events in one transaction (one sync for the whole batch); returns their seqs.
    async fn append_audit(&self, events: Audit) -> StoreResult<Vec<i64>>;
    /// Records in seq order after `after_seq`, for verification and export.
    async fn read_audit(&self, after_seq: i64, limit: usize) -> StoreResult<Vec<AuditRecord>>;
    async fn query_audit(&self, filter: AuditFilter) -> StoreResult<Vec<AuditRecord>>;
    async fn audit_head(&self) -> StoreResult<Option<AuditHead>>;
    /// Operator repair of a broken chain: appends `event` at `seq` (beyond every seq the
    /// chain is known to have reached), linked to the table's actual tail, and signs the
    /// head there. The event declares the lost range; verification accepts the gap only
    /// because that declaration is under the chain key.
    async fn reanchor_audit(&self, event: AuditEvent, seq: i64) -> StoreResult<AuditRecord>;
    /// The other nodes whose audit chains this database holds (records or a signed head),
    /// so that any node can verify them all. A one-node backend has none.
    async fn other_audit_nodes(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
    /// `read_audit` of another node's chain.
    async fn read_node_audit(&self, node: &str, after_seq: i64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let _ = (node, after_seq, limit);
        Err(crate::StoreError::NotFound)
    }
    /// `audit_head` of another node's chain.
    async fn node_audit_head(&self, node: &str) -> StoreResult<Option<AuditHead>> {
        let _ = node;
        Err(crate::StoreError::NotFound)
    }
}
