//! The audit trail: event construction, group commit for events that accompany no change,
//! and verification of the keyed chain.

use rampart_crypto::ct_eq;
use std::sync::Arc;

use rampart_crypto::AuditMacKey;
use rampart_store::{AuditChainer, AuditEvent, AuditRecord, AuditStore, GENESIS_HASH};
use serde::Serialize;
use serde_json::Value;

use crate::CoreResult;

/// Event names of SPEC section 7 (and the ones later issues add).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Login,
    Logout,
    PasswordChange,
    UserCreate,
    UserDelete,
    UserDisable,
    UserEnable,
    RoleChange,
    SessionRevoke,
    Query,
    ConfigChange,
    PermissionDenied,
    RateLimited,
    IntegrityError,
    KeyRotate,
    MasterKeyChange,
    SubjectErase,
    BackupCreate,
    BackupVerify,
    BackupRestore,
    IpBlock,
    IpUnblock,
    AlertAck,
    MfaEnable,
    MfaVerify,
    MfaDisable,
    MfaReset,
    RecoveryCodeUsed,
    JwtIssue,
    AuditRepair,
    /// The shared rate-limit store stopped answering; the fail modes now decide.
    RateLimitStoreUnreachable,
    /// It answers again; budgets are counted again.
    RateLimitStoreRestored,
    /// Data-subject requests (SPEC section 11). Their details name the subject only by
    /// its keyed hash: the chain outlives every erasure.
    GdprVerification,
    GdprErasure,
    GdprExport,
    GdprAccess,
    GdprConsent,
    CcpaAccess,
    CcpaDelete,
    CcpaOptOut,
    /// A full verification of the audit chain and its result (compliance evidence).
    AuditVerify,
    /// A signed compliance evidence report was generated.
    ComplianceReport,
    /// A legal hold was placed (subject holds name the subject's keyed hash only).
    LegalHoldPlace,
    LegalHoldRelease,
    /// A retention batch deleted expired documents (collection, count, cutoff).
    RetentionDelete,
    /// The user list was exported (`rampart user export`); says whether hashes were included.
    UserExport,
}

impl EventType {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [EventType; 46] = [
        Self::Login,
        Self::Logout,
        Self::PasswordChange,
        Self::UserCreate,
        Self::UserDelete,
        Self::UserDisable,
        Self::UserEnable,
        Self::RoleChange,
        Self::SessionRevoke,
        Self::Query,
        Self::ConfigChange,
        Self::PermissionDenied,
        Self::RateLimited,
        Self::IntegrityError,
        Self::KeyRotate,
        Self::MasterKeyChange,
        Self::SubjectErase,
        Self::BackupCreate,
        Self::BackupVerify,
        Self::BackupRestore,
        Self::IpBlock,
        Self::IpUnblock,
        Self::AlertAck,
        Self::MfaEnable,
        Self::MfaVerify,
        Self::MfaDisable,
        Self::MfaReset,
        Self::RecoveryCodeUsed,
        Self::JwtIssue,
        Self::AuditRepair,
        Self::RateLimitStoreUnreachable,
        Self::RateLimitStoreRestored,
        Self::GdprVerification,
        Self::GdprErasure,
        Self::GdprExport,
        Self::GdprAccess,
        Self::GdprConsent,
        Self::CcpaAccess,
        Self::CcpaDelete,
        Self::CcpaOptOut,
        Self::AuditVerify,
        Self::ComplianceReport,
        Self::LegalHoldPlace,
        Self::LegalHoldRelease,
        Self::RetentionDelete,
        Self::UserExport,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Logout => "logout",
            Self::PasswordChange => "password_change",
            Self::UserCreate => "user_create",
            Self::UserDelete => "user_delete",
            Self::UserDisable => "user_disable",
            Self::UserEnable => "user_enable",
            Self::RoleChange => "role_change",
            Self::SessionRevoke => "session_revoke",
            Self::Query => "query",
            Self::ConfigChange => "config_change",
            Self::PermissionDenied => "permission_denied",
            Self::RateLimited => "rate_limited",
            Self::IntegrityError => "integrity_error",
            Self::KeyRotate => "key_rotate",
            Self::MasterKeyChange => "master_key_change",
            Self::SubjectErase => "subject_erase",
            Self::BackupCreate => "backup_create",
            Self::BackupVerify => "backup_verify",
            Self::BackupRestore => "backup_restore",
            Self::IpBlock => "ip_block",
            Self::IpUnblock => "ip_unblock",
            Self::AlertAck => "alert_ack",
            Self::MfaEnable => "mfa_enable",
            Self::MfaVerify => "mfa_verify",
            Self::MfaDisable => "mfa_disable",
            Self::MfaReset => "mfa_reset",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::JwtIssue => "jwt_issue",
            Self::AuditRepair => AUDIT_REPAIR,
            Self::RateLimitStoreUnreachable => "rate_limit_store_unreachable",
            Self::RateLimitStoreRestored => "rate_limit_store_restored",
            Self::GdprVerification => "gdpr_verification",
            Self::GdprErasure => "gdpr_erasure",
            Self::GdprExport => "gdpr_export",
            Self::GdprAccess => "gdpr_access",
            Self::GdprConsent => "gdpr_consent",
            Self::CcpaAccess => "ccpa_access",
            Self::CcpaDelete => "ccpa_delete",
            Self::CcpaOptOut => "ccpa_opt_out",
            Self::AuditVerify => "audit_verify",
            Self::ComplianceReport => "compliance_report",
            Self::LegalHoldPlace => "legal_hold_place",
            Self::LegalHoldRelease => "legal_hold_release",
            Self::RetentionDelete => "retention_delete",
            Self::UserExport => "user_export",
        }
    }
}

/// Longest user name or free text kept in a record: attacker-chosen input stays bounded.
const MAX_FIELD: usize = 256;

pub(crate) fn bounded(s: &str) -> String {
    s.chars().take(MAX_FIELD).collect()
}

/// Installs the keyed MAC into the store.
pub(crate) struct Chainer(pub Arc<AuditMacKey>);

impl AuditChainer for Chainer {
    fn chain(&self, prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        self.0.chain(prev_hash, canonical)
    }
    fn head_mac(&self, seq: i64, hash: &[u8; 32]) -> [u8; 32] {
        self.0.head_mac(seq, hash)
    }
    fn head_is_signed(&self, seq: i64, hash: &[u8; 32], mac: &[u8; 32]) -> bool {
        self.0.head_is_signed(seq, hash, mac)
    }
}

/// A record as clients see it: the event's fields beside the sequence number and the
/// chain hashes in hex. The API's audit query returns these.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct AuditRecordView {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditRecord> for AuditRecordView {
    fn from(r: AuditRecord) -> Self {
        Self { seq: r.seq, event: r.event, prev_hash: hex::encode(r.prev_hash), hash: hex::encode(r.hash) }
    }
}

/// The JSON form of a record, as the API returns it and `audit.log` stores it (one line
/// each; JSON escaping keeps newlines, quotes and control characters inside the line).
pub fn record_json(r: &AuditRecord) -> Value {
    // Strings, numbers and a JSON value under string keys: serializing cannot fail.
    serde_json::to_value(AuditRecordView::from(r.clone())).unwrap_or(Value::Null)
}

/// Parses a line written by `record_json`; `None` for anything malformed.
pub fn parse_record_line(line: &str) -> Option<AuditRecord> {
    let v: Value = serde_json::from_str(line).ok()?;
    let hash = |k: &str| -> Option<[u8; 32]> {
        let bytes = hex::decode(v.get(k)?.as_str()?).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok()
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(AuditRecord {
        seq: v.get("seq")?.as_i64()?,
        event: AuditEvent {
            timestamp: rampart_types::Timestamp::parse_rfc3339(v.get("timestamp")?.as_str()?)?,
            event_type: text("event_type")?,
            user: text("user"),
            ip_address: text("ip_address"),
            success: v.get("success")?.as_bool()?,
            details: v.get("details")?.clone(),
            request_id: text("request_id"),
        },
        prev_hash: hash("prev_hash")?,
        hash: hash("hash")?,
    })
}

/// Event type of an operator's repair record (see `AuditLog::repair_audit`).
pub const AUDIT_REPAIR: &str = "audit_repair";

/// A range of records an operator declared lost, in a repair record under the chain key.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeclaredGap {
    /// Seq of the repair record that declares the gap.
    pub repair_seq: i64,
    pub missing_from: i64,
    pub missing_to: i64,
}

impl DeclaredGap {
    pub fn covers(&self, seq: i64) -> bool {
        (self.missing_from..=self.missing_to).contains(&seq)
    }

    /// The gap a repair record declares, if `r` is one.
    fn of(r: &AuditRecord) -> Option<Self> {
        if r.event.event_type != AUDIT_REPAIR {
            return None;
        }
        let d = &r.event.details;
        let (from, to) = (d.get("missing_from")?.as_i64()?, d.get("missing_to")?.as_i64()?);
        (from >= 1 && r.seq.checked_sub(1) == Some(to) && from <= r.seq).then_some(Self {
            repair_seq: r.seq,
            missing_from: from,
            missing_to: to,
        })
    }
}

/// Outcome of checking the chain.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditVerification {
    pub valid: bool,
    pub records: u64,
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
    /// Records declared lost by an operator's repair (empty when none ever was).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<DeclaredGap>,
}

pub(crate) fn broken(records: u64, seq: i64, reason: &str) -> AuditVerification {
    AuditVerification {
        valid: false,
        records,
        first_bad_seq: Some(seq),
        reason: Some(reason.to_owned()),
        repairs: Vec::new(),
    }
}

/// Walks records in order, checking sequence, links and MACs, and the head against the
/// tail. Finds changed, removed, reordered, inserted and truncated records.
pub struct ChainVerifier<'a> {
    key: &'a AuditMacKey,
    expected_seq: i64,
    prev: [u8; 32],
    records: u64,
    repairs: Vec<DeclaredGap>,
    /// The copy may still hold records a repair declared lost (audit.log keeps what the
    /// database lost), so a repair record may link behind the last record seen.
    mirror: bool,
}

impl<'a> ChainVerifier<'a> {
    pub fn new(key: &'a AuditMacKey) -> Self {
        Self { key, expected_seq: 1, prev: GENESIS_HASH, records: 0, repairs: Vec::new(), mirror: false }
    }

    /// A verifier for the audit.log mirror (see `mirror`).
    pub fn for_mirror(key: &'a AuditMacKey) -> Self {
        Self { mirror: true, ..Self::new(key) }
    }

    /// Checks the next record; `Err` carries the verdict at the first bad one.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), AuditVerification> {
        let seq = self.expected_seq;
        // A gap (or, in the mirror, a relink behind the lost records) is accepted only
        // where a repair record under the chain key declares exactly that range.
        let gap = DeclaredGap::of(r).filter(|g| {
            let mac_ok = ct_eq(self.key.chain(&r.prev_hash, &AuditRecord::canonical(r.seq, &r.event)), r.hash);
            mac_ok && (g.missing_from == seq || (self.mirror && g.missing_from <= seq && r.seq >= seq))
        });
        if r.seq != seq && gap.is_none() {
            let why =
                if r.seq > seq { "record missing (gap in sequence)" } else { "record out of order or duplicated" };
            return Err(broken(self.records, seq, why));
        }
        let relinked = gap.is_some() && self.mirror;
        if !relinked && !ct_eq(r.prev_hash, self.prev) {
            return Err(broken(self.records, seq, "link to the previous record broken"));
        }
        let expect = self.key.chain(&r.prev_hash, &AuditRecord::canonical(r.seq, &r.event));
        if !ct_eq(expect, r.hash) {
            return Err(broken(self.records, seq, "record content does not match its MAC"));
        }
        // No record can follow the largest seq (a gap may jump straight to it).
        let Some(next) = r.seq.checked_add(1) else {
            return Err(broken(self.records, seq, "sequence number out of range"));
        };
        if let Some(g) = gap.filter(|g| g.missing_from <= g.missing_to) {
            self.repairs.push(g);
        }
        self.prev = r.hash;
        self.expected_seq = next;
        self.records += 1;
        Ok(())
    }

    pub fn repairs(&self) -> &[DeclaredGap] {
        &self.repairs
    }

    /// Ends a walk over a copy that carries no head (the audit.log files), whose end the
    /// caller checks against the database instead.
    pub fn finish_unanchored(self) -> AuditVerification {
        self.intact()
    }

    pub fn last_seq(&self) -> i64 {
        self.expected_seq - 1
    }

    /// Compares the end of the chain with the stored head (seq, hash, MAC).
    pub fn finish(self, head: Option<(i64, [u8; 32], [u8; 32])>) -> AuditVerification {
        let last = self.expected_seq - 1;
        match head {
            None if last == 0 => {}
            None => return broken(self.records, last, "chain head missing"),
            Some((seq, hash, mac)) => {
                if !ct_eq(self.key.head_mac(seq, &hash), mac) {
                    return broken(self.records, last.max(1), "chain head MAC invalid");
                }
                if seq > last {
                    return broken(self.records, last + 1, "records missing at the end (truncated)");
                }
                if seq < last || !ct_eq(hash, self.prev) {
                    return broken(self.records, seq + 1, "records after the recorded head");
                }
            }
        }
        self.intact()
    }

    fn intact(self) -> AuditVerification {
        AuditVerification {
            valid: true,
            records: self.records,
            first_bad_seq: None,
            reason: None,
            repairs: self.repairs,
        }
    }
}

/// Verifies this node's chain in the store with `key` (used by the API and, offline, the CLI).
pub async fn verify_store(store: &dyn AuditStore, key: &AuditMacKey) -> CoreResult<AuditVerification> {
    verify_chain(store, key, None).await
}

/// How often verification reads on when a live chain grew while it was read.
const VERIFY_CATCH_UP_ROUNDS: usize = 20;

/// Verifies the chain of `node` (another node's), or this node's when `None`.
pub async fn verify_chain(
    store: &dyn AuditStore,
    key: &AuditMacKey,
    node: Option<&str>,
) -> CoreResult<AuditVerification> {
    let mut v = ChainVerifier::new(key);
    let mut after = 0;
    let mut read_up_to = -1;
    // A running node keeps appending (records and their signed head commit together): when
    // the head read after the records is ahead of them, the records up to it are there to
    // read, so reading goes on. Records past the head are still reported by `finish`.
    for _ in 0..VERIFY_CATCH_UP_ROUNDS {
        loop {
            let page = match node {
                None => store.read_audit(after, 1000).await?,
                Some(n) => store.read_node_audit(n, after, 1000).await?,
            };
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                if let Err(verdict) = v.push(r) {
                    return Ok(verdict);
                }
            }
        }
        let head = chain_head(store, node).await?;
        // Only while reading made progress: records missing at the end are not waited for.
        if head.as_ref().is_some_and(|h| h.seq > after) && after != read_up_to {
            read_up_to = after;
            continue;
        }
        return Ok(v.finish(head.map(|h| (h.seq, h.hash, h.mac))));
    }
    let head = chain_head(store, node).await?;
    Ok(v.finish(head.map(|h| (h.seq, h.hash, h.mac))))
}

/// The signed head of `node`'s chain, or this node's.
async fn chain_head(store: &dyn AuditStore, node: Option<&str>) -> CoreResult<Option<rampart_store::AuditHead>> {
    Ok(match node {
        None => store.audit_head().await?,
        Some(n) => store.node_audit_head(n).await?,
    })
}
