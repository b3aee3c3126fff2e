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
    /// The writer queue's depth and its group-commit sizes (for metrics; zeros for a store
    /// without a writer queue).
    fn writer_stats(&self) -> WriterStats {
        WriterStats::default()
    }
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

/// Upper bounds of the group-commit size buckets (changes per transaction).
pub const COMMIT_SIZE_BUCKETS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 256];

/// The writer's group commits, counted by the writer thread (lock-free).
#[derive(Debug, Default)]
pub struct CommitSizes {
    /// Transactions per size bucket (not cumulative).
    buckets: [std::sync::atomic::AtomicU64; COMMIT_SIZE_BUCKETS.len()],
    changes: std::sync::atomic::AtomicU64,
}

impl CommitSizes {
    /// One transaction holding `changes` queued changes (audit-only appends count as one).
    pub fn record(&self, changes: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = COMMIT_SIZE_BUCKETS.iter().position(|b| changes <= *b).unwrap_or(COMMIT_SIZE_BUCKETS.len() - 1);
        self.buckets[i].fetch_add(1, Relaxed);
        self.changes.fetch_add(u64::try_from(changes).unwrap_or(u64::MAX), Relaxed);
    }

    pub fn snapshot(&self, queue_depth: usize, queue_capacity: usize) -> WriterStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriterStats {
            queue_depth,
            queue_capacity,
            commits_by_size: self.buckets.each_ref().map(|b| b.load(Relaxed)),
            changes_committed: self.changes.load(Relaxed),
        }
    }
}

/// What the writer's queue holds now and how its transactions were filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Changes and audit appends waiting for the writer.
    pub queue_depth: usize,
    pub queue_capacity: usize,
    /// Transactions per [`COMMIT_SIZE_BUCKETS`] bucket (not cumulative).
    pub commits_by_size: [u64; COMMIT_SIZE_BUCKETS.len()],
    pub changes_committed: u64,
}
