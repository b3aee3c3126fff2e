//! Compliance evidence computed from the live system at request time: the control status
//! (HIPAA, GDPR, CCPA, SOC 2) and the signed SOC 2 evidence report.
//!
//! Nothing here is a canned answer. Each *check* reads one fact of the running deployment
//! (its settings as started, the store, this node's audit chain) and says pass, fail or not
//! applicable with the evidence it used; each *control* of a framework names the checks it
//! rests on (`CONTROLS`). Adding a control is adding one entry to `CONTROLS`; adding a fact
//! is one `Check` variant, its field in `Facts` and its arm in `Check::evaluate`.
//!
//! Facts that come from the audit chain (the last verified backup, the last audit
//! verification) are read from this node's chain: `backup_verify` events are what
//! `BackupService::verify_backup` records, and `audit_verify` events are what
//! `AuditLog::verify_and_record` records (the API's verification and every report).

mod checks;
mod verify;

pub use checks::{
    Check, Control, ControlStatus, Framework, Outcome, AUDIT_VERIFY_MAX_AGE_DAYS, BACKUP_VERIFY_MAX_AGE_DAYS,
    BREACH_RESPONSE_HOURS, CONTROLS, KEY_BACKUP_RETENTION_MAX_DAYS, MAX_IDLE_MINUTES, SUBJECT_REQUEST_DAYS,
};
pub use verify::{report_keys_from_jwks, verify_report, ReportError, ReportKey};

use checks::Facts;
use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_crypto::{canonical_json, jwk_x, report_digest, ReportSigner};
use rampart_store::{
    AlertFilter, AlertRecord, AuditFilter, AuditRecord, AuditStore, CollectionStore, PrivacyStore, RoleStore,
    SecurityStore, Store, UserRecord, UserStore,
};
use rampart_types::{perm, Timestamp, Username};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::EventType;
use crate::audit_anchor::AuditLog;
use crate::events::Events;
use crate::jwt::Jwk;
use crate::rotation::Keys;
use crate::{Authorized, CoreError, CoreResult};

/// The SOC 2 report's period: default and bounds, in days.
pub const REPORT_DEFAULT_DAYS: u32 = 90;
pub const REPORT_MAX_DAYS: u32 = 366;
/// Audit records listed per event kind in a report; beyond it the list says `truncated`.
const MAX_EVENTS_PER_KIND: usize = 1000;
const PAGE: usize = 1000;

/// One control as reported.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ControlView {
    pub id: &'static str,
    pub title: &'static str,
    pub status: ControlStatus,
    /// Each check's facts, by check id.
    pub evidence: BTreeMap<&'static str, Value>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct FrameworkSummary {
    /// `compliant` only when no control fails.
    pub status: &'static str,
    pub controls_met: usize,
    pub controls_failed: usize,
    pub controls_not_applicable: usize,
    pub controls_total: usize,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct FrameworkStatus {
    pub summary: FrameworkSummary,
    pub controls: Vec<ControlView>,
}

/// `GET /api/v1/admin/compliance/status`.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ComplianceStatus {
    pub generated_at: Timestamp,
    pub node_id: String,
    pub frameworks: BTreeMap<&'static str, FrameworkStatus>,
}

impl ComplianceStatus {
    /// The status of control `id` of `framework`, if reported.
    pub fn control(&self, framework: Framework, id: &str) -> Option<&ControlView> {
        self.frameworks.get(framework.as_str())?.controls.iter().find(|c| c.id == id)
    }
}

fn judge(facts: &Facts<'_>) -> ComplianceStatus {
    let outcomes: BTreeMap<&'static str, Outcome> =
        CONTROLS.iter().flat_map(|c| c.checks.iter()).map(|check| (check.id(), check.evaluate(facts))).collect();
    let mut frameworks = BTreeMap::new();
    for fw in Framework::ALL {
        let controls: Vec<ControlView> = CONTROLS
            .iter()
            .filter(|c| c.framework == fw)
            .map(|c| {
                let results: Vec<(&'static str, &Outcome)> =
                    c.checks.iter().filter_map(|k| outcomes.get(k.id()).map(|o| (k.id(), o))).collect();
                let status = if results.iter().any(|(_, o)| o.status == ControlStatus::Fail) {
                    ControlStatus::Fail
                } else if results.iter().all(|(_, o)| o.status == ControlStatus::NotApplicable) {
                    ControlStatus::NotApplicable
                } else {
                    ControlStatus::Pass
                };
                // Each check's facts, with its own verdict beside them.
                let evidence = results
                    .into_iter()
                    .map(|(id, o)| {
                        let mut e = o.evidence.clone();
                        if let Value::Object(m) = &mut e {
                            m.insert("status".into(), json!(o.status));
                        }
                        (id, e)
                    })
                    .collect();
                ControlView { id: c.id, title: c.title, status, evidence }
            })
            .collect();
        let count = |s: ControlStatus| controls.iter().filter(|c| c.status == s).count();
        let failed = count(ControlStatus::Fail);
        let summary = FrameworkSummary {
            status: if failed == 0 { "compliant" } else { "non_compliant" },
            controls_met: count(ControlStatus::Pass),
            controls_failed: failed,
            controls_not_applicable: count(ControlStatus::NotApplicable),
            controls_total: controls.len(),
        };
        frameworks.insert(fw.as_str(), FrameworkStatus { summary, controls });
    }
    ComplianceStatus { generated_at: facts.now, node_id: facts.settings.config.node_id.clone(), frameworks }
}

/// Configuration facts the checks read, taken from the validated config at start (the
/// binary and `TestApp` both build them with `CoreSettings::from_config`).
#[derive(Debug, Clone)]
pub struct ComplianceSettings {
    /// Served over TLS (false under `--insecure-http`).
    pub tls: bool,
    pub rate_limit_enabled: bool,
    pub requests_per_minute: u32,
    pub login_requests_per_minute: u32,
    /// `RAMPART_BACKUP_ENCRYPTION=required`.
    pub backup_encryption_required: bool,
    pub key_backup_retention_days: u32,
    /// This node's name (`server.node_id`).
    pub node_id: String,
    /// Names of the recipients of personal data told of erasures.
    pub service_providers: Vec<String>,
}

impl ComplianceSettings {
    pub fn from_config(c: &rampart_config::Config) -> Self {
        Self {
            tls: !c.server.insecure_http,
            rate_limit_enabled: c.rate_limit.enabled,
            requests_per_minute: c.rate_limit.requests_per_minute,
            login_requests_per_minute: c.rate_limit.login_requests_per_minute,
            backup_encryption_required: c.backup.encryption_required,
            key_backup_retention_days: c.backup.key_backup_retention_days,
            node_id: c.server.node_id.clone(),
            service_providers: c.privacy.service_providers.iter().map(|p| p.name.clone()).collect(),
        }
    }
}

/// The policies the other services enforce, as the core was opened with them (filled from
/// `CoreSettings` by `Core::open`, so the status reports what is enforced, not a copy).
#[derive(Debug, Clone)]
pub(crate) struct Enforced {
    pub config: ComplianceSettings,
    pub session_idle_secs: i64,
    pub session_lifetime_secs: i64,
    pub require_mfa_for_roles: Vec<String>,
    pub audit_reads: bool,
    pub breach_detection: bool,
    pub webhook_endpoints: usize,
    pub admin_allowed_networks: usize,
    pub instance_id: String,
}

/// What the compliance service is built from.
pub(crate) struct ComplianceParts {
    pub store: Arc<dyn Store>,
    pub signer: Arc<ReportSigner>,
    pub settings: Enforced,
}

/// The compliance status and the signed SOC 2 evidence report.
#[derive(Clone)]
pub struct Compliance {
    user_store: Arc<dyn UserStore>,
    role_store: Arc<dyn RoleStore>,
    collection_store: Arc<dyn CollectionStore>,
    audit_store: Arc<dyn AuditStore>,
    security_store: Arc<dyn SecurityStore>,
    privacy_store: Arc<dyn PrivacyStore>,
    keys: Keys,
    audit: AuditLog,
    events: Events,
    signer: Arc<ReportSigner>,
    settings: Arc<Enforced>,
}

fn record_view(r: &AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "timestamp": r.event.timestamp,
        "event_type": r.event.event_type,
        "user": r.event.user,
        "success": r.event.success,
        "details": r.event.details,
    })
}

impl Compliance {
    pub(crate) fn new(parts: ComplianceParts, keys: Keys, audit: AuditLog, events: Events) -> Self {
        let ComplianceParts { store, signer, settings } = parts;
        Self {
            user_store: store.clone(),
            role_store: store.clone(),
            collection_store: store.clone(),
            audit_store: store.clone(),
            privacy_store: store.clone(),
            security_store: store,
            keys,
            audit,
            events,
            signer,
            settings: Arc::new(settings),
        }
    }

    /// The report signing key as a JWKS entry (published beside the JWT keys; its kid
    /// starts with `report-`).
    pub fn report_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP",
            crv: "Ed25519",
            x: jwk_x(&self.signer.public_key()),
            kid: self.signer.kid().to_owned(),
            alg: "EdDSA",
            key_use: "sig",
        }
    }

    /// `(kid, public key)` of this deployment's report signing key, for offline verification.
    pub fn report_key(&self) -> (String, Vec<u8>) {
        (self.signer.kid().to_owned(), self.signer.public_key())
    }

    /// Pages through this node's `kind` records (from `from` on), oldest first, calling
    /// `each` on each; stops early when `each` says so.
    async fn scan(
        &self,
        kind: EventType,
        from: Option<Timestamp>,
        success: Option<bool>,
        mut each: impl FnMut(AuditRecord) -> bool,
    ) -> CoreResult<()> {
        let mut after_seq = None;
        loop {
            let filter = AuditFilter {
                event_type: Some(kind.as_str().to_owned()),
                user: None,
                from,
                to: None,
                success,
                after_seq,
                limit: PAGE,
            };
            let page = self.audit_store.query_audit(filter).await?;
            let n = page.len();
            after_seq = page.last().map(|r| r.seq);
            for r in page {
                if !each(r) {
                    return Ok(());
                }
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    async fn last_of(&self, kind: EventType, success: Option<bool>) -> CoreResult<Option<AuditRecord>> {
        let mut last = None;
        self.scan(kind, None, success, |r| {
            last = Some(r);
            true
        })
        .await?;
        Ok(last)
    }

    async fn all_users(&self) -> CoreResult<Vec<UserRecord>> {
        let mut users: Vec<UserRecord> = Vec::new();
        loop {
            let after: Option<Username> = users.last().map(|u| u.username.clone());
            let page = self.user_store.list_users(after.as_ref(), PAGE).await?;
            let n = page.len();
            users.extend(page);
            if n < PAGE {
                return Ok(users);
            }
        }
    }

    async fn facts(&self) -> CoreResult<Facts<'_>> {
        let open_alerts = self
            .security_store
            .list_alerts(AlertFilter { status: Some("open".into()), limit: PAGE, ..AlertFilter::default() })
            .await?;
        Ok(Facts {
            now: self.events.now(),
            settings: &self.settings,
            users: self.all_users().await?,
            roles: self.role_store.list_roles().await?,
            collections: self.collection_store.list_collections().await?,
            keys: self.keys.keys_status().await?,
            last_backup_verified: self.last_of(EventType::BackupVerify, Some(true)).await?,
            last_backup_verify_failed: self.last_of(EventType::BackupVerify, Some(false)).await?,
            last_audit_verify: self.last_of(EventType::AuditVerify, None).await?,
            last_audit_verify_ok: self.last_of(EventType::AuditVerify, Some(true)).await?,
            audit_head_seq: self.audit_store.audit_head().await?.map(|h| h.seq),
            anchor_problem: self.audit.anchor_problem().await?,
            open_alerts,
            privacy: self.privacy_store.privacy_counts(self.events.now(), &self.events.now().date()).await?,
        })
    }

    /// Every control of every framework, computed now.
    pub async fn status(&self, _: &Authorized<perm::ComplianceRead>) -> CoreResult<ComplianceStatus> {
        Ok(judge(&self.facts().await?))
    }

    async fn events_in(&self, kinds: &[EventType], from: Timestamp) -> CoreResult<Value> {
        let mut out = serde_json::Map::new();
        for kind in kinds {
            let mut records = Vec::new();
            let mut truncated = false;
            self.scan(*kind, Some(from), None, |r| {
                if records.len() == MAX_EVENTS_PER_KIND {
                    truncated = true;
                    return false;
                }
                records.push(record_view(&r));
                true
            })
            .await?;
            // Newest last, as the audit API lists them; `truncated` when more exist.
            out.insert(
                kind.as_str().to_owned(),
                json!({ "count": records.len(), "truncated": truncated, "records": records }),
            );
        }
        Ok(Value::Object(out))
    }

    /// The SOC 2 evidence report for the last `days` days, signed with the report key.
    /// Runs a fresh audit-chain verification (recorded like the API's) and records its own
    /// generation as a `compliance_report` event.
    pub async fn soc2_report(&self, access: &Authorized<perm::ComplianceRead>, days: Option<u32>) -> CoreResult<Value> {
        let days = days.unwrap_or(REPORT_DEFAULT_DAYS);
        if !(1..=REPORT_MAX_DAYS).contains(&days) {
            return Err(CoreError::validation("days", format!("must be between 1 and {REPORT_MAX_DAYS}")));
        }
        let who = access.who();
        let verification = self.audit.verify_and_record(who.username.as_str(), &who.origin).await?;
        let facts = self.facts().await?;
        let now = facts.now;
        let from = now.minus_seconds(i64::from(days) * 86_400);
        let status = judge(&facts);
        let users: Vec<Value> = facts
            .users
            .iter()
            .map(|u| {
                json!({
                    "username": u.username,
                    "role": u.role,
                    "mfa_enabled": u.mfa_enabled,
                    "disabled": u.disabled,
                    "created_at": u.created_at,
                })
            })
            .collect();
        let roles: Vec<Value> = facts
            .roles
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "builtin": r.builtin,
                    "permissions": r.permissions,
                    "collections": r.collections,
                })
            })
            .collect();
        let alerts = self.security_store.list_alerts(AlertFilter { limit: PAGE, ..AlertFilter::default() }).await?;
        let in_period: Vec<&AlertRecord> = alerts.iter().filter(|a| a.last_seen >= from).collect();
        let mut by_severity: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for a in &in_period {
            *by_severity.entry(a.severity.as_str()).or_default() += 1;
            *by_type.entry(a.breach_type.as_str()).or_default() += 1;
            *by_status.entry(a.status.as_str()).or_default() += 1;
        }
        let blocks: Vec<Value> = self
            .security_store
            .active_blocks(now)
            .await?
            .into_iter()
            .map(|b| {
                json!({
                    "cidr": b.cidr,
                    "reason": b.reason,
                    "created_at": b.created_at,
                    "expires_at": b.expires_at,
                    "created_by": b.created_by,
                })
            })
            .collect();
        use EventType as E;
        let changes = [
            E::ConfigChange,
            E::RoleChange,
            E::UserCreate,
            E::UserDelete,
            E::UserDisable,
            E::UserEnable,
            E::MfaReset,
            E::MfaDisable,
            E::KeyRotate,
            E::MasterKeyChange,
            E::AuditRepair,
        ];
        let collections: Vec<Value> =
            facts.collections.iter().map(|c| json!({ "name": c.name, "encrypted": c.encrypted })).collect();
        let report_id = format!("soc2-{}", rampart_crypto::random_id::<8>());
        let report = json!({
            "report_type": "soc2_evidence",
            "report_id": report_id,
            "generated_at": now,
            "node_id": self.settings.config.node_id,
            "instance_id": self.settings.instance_id,
            "generated_by": who.username,
            "period": { "days": days, "from": from, "to": now },
            "access_control": { "users": users, "roles": roles },
            "configuration_changes": self.events_in(&changes, from).await?,
            "security_events": {
                "alerts_in_period": in_period.len(),
                "alerts_by_severity": by_severity,
                "alerts_by_type": by_type,
                "alerts_by_status": by_status,
                "active_blocks": blocks,
                "block_events": self.events_in(&[E::IpBlock, E::IpUnblock], from).await?,
            },
            "encryption": {
                "collections": collections,
                "current_kek_version": facts.keys.current_kek_version,
                "kek_versions": facts.keys.kek_versions,
                "data_keys": facts.keys.data_keys,
                "key_rotation_days": facts.keys.rotation_days,
                "last_rotation_at": facts.keys.kek_versions.iter().map(|v| v.created_at).max(),
                "next_rotation_due": facts.keys.next_rotation_due,
                "backup_encryption_required": self.settings.config.backup_encryption_required,
            },
            "backup_verification_log": self.events_in(&[E::BackupCreate, E::BackupVerify, E::BackupRestore], from).await?,
            "audit_verification": verification,
            "compliance_status": status,
        });
        let canonical = canonical_json(&report);
        let signature = self.signer.sign(&canonical);
        let details = json!({
            "report_id": report_id,
            "period_days": days,
            "kid": self.signer.kid(),
            "sha256": report_digest(&canonical),
        });
        self.events
            .record_event(EventType::ComplianceReport, Some(who.username.as_str()), &who.origin, true, details)
            .await?;
        Ok(json!({
            "report": report,
            "signature": { "alg": "EdDSA", "kid": self.signer.kid(), "value": signature },
        }))
    }
}
