//! What anchors the audit chain outside its own table: the signed head (checked by the
//! store on every append), signed checkpoints that leave the database (audit.log and the
//! webhook outbox), the audit.log mirror, and the operator's repair of a broken chain.

use rampart_crypto::ct_eq;
use std::sync::{Arc, OnceLock};

use rampart_crypto::AuditMacKey;
use rampart_store::{AuditEvent, AuditRecord, AuditStore, SecurityStore, Store};
use rampart_types::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{broken, parse_record_line, verify_store, AuditVerification, ChainVerifier, DeclaredGap, EventType};
use crate::events::Events;
use crate::notify::{Notice, Notifier};
use crate::security::BreachDetection;
use crate::security::{Detection, Severity};
use crate::{Authorized, CoreError, CoreResult, RequestMeta};
use rampart_types::perm;

/// A signed statement that the chain reached `seq` with `hash` at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub hash: [u8; 32],
    pub at: Timestamp,
    pub mac: [u8; 32],
}

impl AuditCheckpoint {
    pub fn sign(key: &AuditMacKey, seq: i64, hash: [u8; 32], at: Timestamp) -> Self {
        Self { seq, hash, at, mac: key.checkpoint_mac(seq, &hash, at.as_millis()) }
    }

    pub fn verifies(&self, key: &AuditMacKey) -> bool {
        ct_eq(key.checkpoint_mac(self.seq, &self.hash, self.at.as_millis()), self.mac)
    }

    /// The audit.log line: `{"checkpoint": {...}}`, never mistaken for a record.
    pub fn to_json(&self) -> Value {
        json!({ "checkpoint": {
            "seq": self.seq,
            "hash": hex::encode(self.hash),
            "at": self.at,
            "mac": hex::encode(self.mac),
        }})
    }

    pub fn parse_line(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        let c = v.get("checkpoint")?;
        let bytes = |k: &str| -> Option<[u8; 32]> { hex::decode(c.get(k)?.as_str()?).ok()?.try_into().ok() };
        Some(Self {
            seq: c.get("seq")?.as_i64()?,
            hash: bytes("hash")?,
            at: Timestamp::parse_rfc3339(c.get("at")?.as_str()?)?,
            mac: bytes("mac")?,
        })
    }
}

/// The audit.log files, read by the binary that writes them.
pub trait AuditMirror: Send + Sync {
    /// Every line, oldest file first. Blocking I/O: called on the blocking pool.
    fn lines(&self) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<String>> + Send>>;
}

/// What a walk over the mirror found.
pub struct MirrorScan {
    pub verdict: AuditVerification,
    pub last: Option<(i64, [u8; 32])>,
    pub checkpoint: Option<AuditCheckpoint>,
}

/// Walks the mirror: its own chain must verify, and every checkpoint must carry a valid MAC.
pub fn scan_mirror(key: &AuditMacKey, mirror: &dyn AuditMirror) -> std::io::Result<MirrorScan> {
    let mut v = ChainVerifier::for_mirror(key);
    let mut last = None;
    let mut checkpoint = None;
    let bad =
        |v: &ChainVerifier<'_>, seq: i64, reason: &str| broken(u64::try_from(v.last_seq()).unwrap_or(0), seq, reason);
    for line in mirror.lines()? {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(record) = parse_record_line(&line) {
            if let Err(verdict) = v.push(&record) {
                return Ok(MirrorScan { verdict, last, checkpoint });
            }
            last = Some((record.seq, record.hash));
        } else if let Some(cp) = AuditCheckpoint::parse_line(&line) {
            if !cp.verifies(key) {
                let verdict = bad(&v, cp.seq, "audit.log holds a checkpoint with an invalid signature");
                return Ok(MirrorScan { verdict, last, checkpoint });
            }
            checkpoint = Some(cp);
        } else {
            let verdict = bad(&v, v.last_seq() + 1, "unparseable line in audit.log");
            return Ok(MirrorScan { verdict, last, checkpoint });
        }
    }
    Ok(MirrorScan { verdict: v.finish_unanchored(), last, checkpoint })
}

/// The whole verdict: the database chain, the audit.log mirror, and the last checkpoint.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct FullVerification {
    pub valid: bool,
    pub records: u64,
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<DeclaredGap>,
    pub database: AuditVerification,
    /// `None` when no mirror is configured (in-process tests).
    pub audit_log: Option<AuditVerification>,
    /// The newest signed checkpoint found in audit.log: `{seq, at}`.
    pub checkpoint: Option<Value>,
    /// The last record seq audit.log holds.
    pub mirror_last_seq: Option<i64>,
    /// Every other node's chain in the same database (PostgreSQL), each verified with the
    /// same key; `valid` is false when any of them fails. Their audit.log mirrors are on
    /// their own machines and are checked there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_nodes: Vec<NodeVerification>,
}

/// One other node's chain.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct NodeVerification {
    pub node: String,
    #[serde(flatten)]
    pub chain: AuditVerification,
}

impl FullVerification {
    pub fn checkpoint_seq(&self) -> i64 {
        self.checkpoint.as_ref().and_then(|c| c.get("seq")).and_then(Value::as_i64).unwrap_or(0)
    }
}

async fn hash_at(store: &dyn AuditStore, seq: i64) -> CoreResult<Option<[u8; 32]>> {
    Ok(store.read_audit(seq - 1, 1).await?.into_iter().find(|r| r.seq == seq).map(|r| r.hash))
}

/// Checks the database chain, then the mirror and its last checkpoint against it.
/// `complete`: the server is stopped, so the mirror must reach the database's end.
pub async fn verify_everything(
    store: &dyn AuditStore,
    key: &Arc<AuditMacKey>,
    mirror: Option<Arc<dyn AuditMirror>>,
    complete: bool,
) -> CoreResult<FullVerification> {
    let db = verify_store(store, key).await?;
    let mut file = None;
    let mut checkpoint = None;
    let mut mirror_last_seq = None;
    if let Some(mirror) = mirror {
        let key = Arc::clone(key);
        let scan = tokio::task::spawn_blocking(move || scan_mirror(&key, mirror.as_ref()))
            .await
            .map_err(CoreError::internal)?
            .map_err(CoreError::internal)?;
        let tail = store.audit_head().await?.map(|h| h.seq).unwrap_or(0);
        let lost = |seq: i64| db.repairs.iter().any(|g| g.covers(seq));
        mirror_last_seq = scan.last.map(|l| l.0);
        let mut verdict = scan.verdict;
        if verdict.valid {
            if let Some((seq, hash)) = scan.last {
                if seq > tail {
                    verdict = broken(verdict.records, tail + 1, "the database chain ends before audit.log (truncated)");
                } else if !lost(seq) && !matches!(hash_at(store, seq).await?, Some(h) if ct_eq(h, hash)) {
                    verdict = broken(verdict.records, seq, "audit.log and the database disagree");
                }
            }
        }
        if verdict.valid && complete && scan.last.map_or(0, |l| l.0) < tail {
            let at = scan.last.map_or(0, |l| l.0) + 1;
            verdict = broken(verdict.records, at, "audit.log ends before the database chain (truncated)");
        }
        if let Some(cp) = &scan.checkpoint {
            checkpoint = Some(json!({ "seq": cp.seq, "at": cp.at }));
            if verdict.valid && !lost(cp.seq) {
                if cp.seq > tail {
                    verdict = broken(verdict.records, tail + 1, "the chain ends before its last signed checkpoint");
                } else if !matches!(hash_at(store, cp.seq).await?, Some(h) if ct_eq(h, cp.hash)) {
                    verdict = broken(verdict.records, cp.seq, "the chain does not match its last signed checkpoint");
                }
            }
        }
        file = Some(verdict);
    }
    let mut other_nodes = Vec::new();
    for node in store.other_audit_nodes().await? {
        let chain = crate::audit::verify_chain(store, key, Some(&node)).await?;
        other_nodes.push(NodeVerification { node, chain });
    }
    let first_bad = if !db.valid { Some(&db) } else { file.as_ref().filter(|f| !f.valid) };
    let other_bad = other_nodes.iter().find(|n| !n.chain.valid);
    let (first_bad_seq, reason) = match (first_bad, other_bad) {
        (Some(f), _) => (f.first_bad_seq, f.reason.clone()),
        (None, Some(n)) => {
            (n.chain.first_bad_seq, Some(format!("node {}: {}", n.node, n.chain.reason.clone().unwrap_or_default())))
        }
        (None, None) => (None, None),
    };
    Ok(FullVerification {
        valid: first_bad.is_none() && other_bad.is_none(),
        records: db.records,
        first_bad_seq,
        reason,
        repairs: db.repairs.clone(),
        database: db,
        audit_log: file,
        checkpoint,
        mirror_last_seq,
        other_nodes,
    })
}

/// The audit trail as operators see it: queries, full verification (chain, audit.log
/// mirror, checkpoint), signed checkpoints for anchoring, and repair of a broken chain.
#[derive(Clone)]
pub struct AuditLog {
    audit_store: Arc<dyn AuditStore>,
    security_store: Arc<dyn SecurityStore>,
    audit_key: Arc<AuditMacKey>,
    audit_mirror: Arc<OnceLock<Arc<dyn AuditMirror>>>,
    notifier: Arc<dyn Notifier>,
    events: Events,
    detection: BreachDetection,
}

impl AuditLog {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        audit_key: Arc<AuditMacKey>,
        notifier: Arc<dyn Notifier>,
        events: Events,
        detection: BreachDetection,
    ) -> Self {
        Self {
            audit_store: store.clone(),
            security_store: store,
            audit_key,
            audit_mirror: Arc::default(),
            notifier,
            events,
            detection,
        }
    }

    fn now(&self) -> rampart_types::Timestamp {
        self.events.now()
    }

    /// Audit records matching `filter`.
    pub async fn query_audit(
        &self,
        _: &Authorized<perm::AuditRead>,
        filter: rampart_store::AuditFilter,
    ) -> CoreResult<Vec<AuditRecord>> {
        Ok(self.audit_store.query_audit(filter).await?)
    }

    /// Verifies the chain, its mirror and checkpoint, and records the result.
    pub async fn verify_audit_as(&self, access: &Authorized<perm::AuditVerify>) -> CoreResult<FullVerification> {
        let who = access.who();
        self.verify_and_record(who.username.as_str(), &who.origin).await
    }

    /// A full verification whose result is recorded as an `audit_verify` event, so the
    /// compliance status can say when the chain was last verified and with what result
    /// without walking the whole chain on every request. Recording is best effort: a chain
    /// whose tail no longer matches its head refuses appends, and the verdict is still
    /// returned (the compliance status checks that anchor itself on every request).
    pub(crate) async fn verify_and_record(&self, user: &str, meta: &RequestMeta) -> CoreResult<FullVerification> {
        let v = self.verify_audit().await?;
        let details = json!({
            "records": v.records,
            "first_bad_seq": v.first_bad_seq,
            "reason": v.reason.as_deref().map(crate::audit::bounded),
            "other_nodes": v.other_nodes.len(),
            "audit_log_checked": v.audit_log.is_some(),
        });
        if let Err(e) = self.events.record_event(EventType::AuditVerify, Some(user), meta, v.valid, details).await {
            tracing::warn!(error = %e, valid = v.valid, "the audit verification result could not be recorded");
        }
        Ok(v)
    }

    /// What is wrong with the chain's anchor right now, if anything: the signed head must
    /// verify and the table's tail must be exactly the record it names. Cheap (two reads),
    /// so it runs on every compliance status request.
    pub async fn anchor_problem(&self) -> CoreResult<Option<&'static str>> {
        Ok(self.anchor_state().await?.err().map(|(reason, _)| reason))
    }

    async fn anchor_state(&self) -> CoreResult<Result<(), (&'static str, Option<i64>)>> {
        let store = &self.audit_store;
        let head = store.audit_head().await?;
        let reason = match &head {
            None if store.read_audit(0, 1).await?.is_empty() => return Ok(Ok(())),
            None => "chain head missing",
            Some(h) if !ct_eq(self.audit_key.head_mac(h.seq, &h.hash), h.mac) => "chain head signature invalid",
            Some(h) => match hash_at(store.as_ref(), h.seq).await? {
                Some(hash) if ct_eq(hash, h.hash) && store.read_audit(h.seq, 1).await?.is_empty() => return Ok(Ok(())),
                Some(_) => "table tail does not match the signed head",
                None => "records missing at the end",
            },
        };
        Ok(Err((reason, head.map(|h| h.seq))))
    }

    /// Installs the reader of the audit.log mirror, so API verification checks it too.
    pub fn set_audit_mirror(&self, mirror: Arc<dyn AuditMirror>) {
        let _ = self.audit_mirror.set(mirror);
    }

    /// Database chain, mirror and checkpoint (the server is running: the mirror may lag).
    pub async fn verify_audit(&self) -> CoreResult<FullVerification> {
        let mirror = self.audit_mirror.get().cloned();
        verify_everything(self.audit_store.as_ref(), &self.audit_key, mirror, false).await
    }

    /// A signed checkpoint of the current head for audit.log, also queued to every generic
    /// webhook endpoint. `None` on an empty chain or one whose head does not verify.
    pub async fn audit_checkpoint(&self) -> CoreResult<Option<AuditCheckpoint>> {
        let Some(head) = self.audit_store.audit_head().await? else { return Ok(None) };
        if !ct_eq(self.audit_key.head_mac(head.seq, &head.hash), head.mac) {
            return Ok(None);
        }
        let now = self.now();
        let cp = AuditCheckpoint::sign(&self.audit_key, head.seq, head.hash, now);
        let items = self.notifier.messages(&Notice::AuditCheckpoint { seq: cp.seq, hash: cp.hash, mac: cp.mac }, now);
        if !items.is_empty() {
            self.security_store.enqueue_webhooks(items).await?;
        }
        Ok(Some(cp))
    }

    /// At start: a chain whose table tail does not match its signed head cannot take new
    /// records (the store refuses them); say so loudly and raise a Critical alert, which
    /// needs no audit record of its own.
    pub(crate) async fn check_audit_anchor(&self) -> CoreResult<()> {
        let Err((reason, head_seq)) = self.anchor_state().await? else { return Ok(()) };
        tracing::error!(reason, "audit chain broken: audited changes are refused until `rampart audit repair`");
        self.detection
            .raise(Detection {
                breach_type: "audit_chain_broken",
                severity: Severity::Critical,
                dedup: "audit-anchor".into(),
                details: json!({ "reason": reason, "head_seq": head_seq }),
                ip: None,
                user: None,
                revoke_sessions: false,
                block_source: false,
            })
            .await
    }

    /// Operator repair (stopped server, CLI): records what was lost in a signed
    /// `audit_repair` record placed after every seq the chain is known to have reached
    /// (head, checkpoint, mirror), linked to the table's real tail. Verification then
    /// shows the declared gap instead of failing, and new records can be appended.
    pub async fn repair_audit(
        &self,
        reason: &str,
        known_seq: i64,
        found: &FullVerification,
    ) -> CoreResult<AuditRecord> {
        let store = &self.audit_store;
        let head_seq = store.audit_head().await?.map(|h| h.seq).unwrap_or(0);
        let mut tail = 0;
        let mut after = 0;
        loop {
            let page = store.read_audit(after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            tail = last.seq;
        }
        let seq = head_seq.max(known_seq).max(tail) + 1;
        let details = json!({
            "reason": crate::audit::bounded(reason),
            "missing_from": tail + 1,
            "missing_to": seq - 1,
            "head_seq": head_seq,
            "verification": { "first_bad_seq": found.first_bad_seq, "reason": found.reason },
        });
        let event: AuditEvent = self.events.event(
            EventType::AuditRepair,
            Some("local-cli"),
            &RequestMeta::local("audit-repair"),
            true,
            details,
        );
        Ok(store.reanchor_audit(event, seq).await?)
    }
}
