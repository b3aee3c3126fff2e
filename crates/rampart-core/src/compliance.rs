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

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_crypto::{canonical_json, jwk_x, report_digest, ReportSigner};
use rampart_store::{
    AlertFilter, AlertRecord, AuditFilter, AuditRecord, AuditStore, CollectionRecord, CollectionStore, PrivacyCounts,
    PrivacyStore, RoleRecord, RoleStore, SecurityStore, Store, UserRecord, UserStore,
};
use rampart_types::{perm, Timestamp, Username};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::EventType;
use crate::audit_anchor::AuditLog;
use crate::events::Events;
use crate::jwt::Jwk;
use crate::rotation::{Keys, KeysView};
use crate::{Authorized, CoreError, CoreResult};

const DAY_MS: i64 = 86_400_000;
/// Longest idle timeout that passes (HIPAA automatic logoff; common audit expectation).
pub const MAX_IDLE_MINUTES: i64 = 30;
/// A backup must have been verified (decrypted and opened) this recently.
pub const BACKUP_VERIFY_MAX_AGE_DAYS: i64 = 7;
/// The audit chain must have been fully verified, successfully, this recently.
pub const AUDIT_VERIFY_MAX_AGE_DAYS: i64 = 7;
/// GDPR art. 33: a High or Critical alert left open longer than this is overdue.
pub const BREACH_RESPONSE_HOURS: i64 = 72;
/// A data-subject request must be carried through (recipients told) within a month
/// (GDPR art. 12(3); the CCPA allows 45 days).
pub const SUBJECT_REQUEST_DAYS: i64 = 30;
/// Key-store backups may outlive an erasure at most this long (SPEC section 9's default).
pub const KEY_BACKUP_RETENTION_MAX_DAYS: u32 = 30;
/// The SOC 2 report's period: default and bounds, in days.
pub const REPORT_DEFAULT_DAYS: u32 = 90;
pub const REPORT_MAX_DAYS: u32 = 366;
/// Audit records listed per event kind in a report; beyond it the list says `truncated`.
const MAX_EVENTS_PER_KIND: usize = 1000;
const PAGE: usize = 1000;
/// Passwords the policy must refuse for the password-policy check to pass.
const WEAK_PROBES: &[&str] = &["password", "Password1!", "correct horse battery staple", "aaaaaaaaaaaaaaaa"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlStatus {
    Pass,
    Fail,
    NotApplicable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Framework {
    Hipaa,
    Gdpr,
    Ccpa,
    Soc2,
}

impl Framework {
    pub const ALL: [Framework; 4] = [Framework::Hipaa, Framework::Gdpr, Framework::Ccpa, Framework::Soc2];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hipaa => "hipaa",
            Self::Gdpr => "gdpr",
            Self::Ccpa => "ccpa",
            Self::Soc2 => "soc2",
        }
    }
}

/// One fact of the live system, judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Tls,
    SessionTimeout,
    EncryptionAtRest,
    KeyRotation,
    BackupVerified,
    BackupEncryption,
    KeyBackupRetention,
    AuditLogging,
    AuditIntegrity,
    AdminMfa,
    PasswordPolicy,
    RateLimiting,
    AccessControl,
    BreachResponse,
    SubjectRequests,
}

/// A framework's control and the checks it rests on: it fails when any of them fails, is
/// not applicable when all of them are, and passes otherwise.
pub struct Control {
    pub framework: Framework,
    pub id: &'static str,
    pub title: &'static str,
    pub checks: &'static [Check],
}

const fn control(framework: Framework, id: &'static str, title: &'static str, checks: &'static [Check]) -> Control {
    Control { framework, id, title, checks }
}

use Check as C;
use Framework::{Ccpa, Gdpr, Hipaa, Soc2};

/// Every control reported, in order. One entry per control.
pub const CONTROLS: &[Control] = &[
    control(Hipaa, "164.312(a)(1)", "Access control (incl. automatic logoff)", &[C::AccessControl, C::SessionTimeout]),
    control(
        Hipaa,
        "164.312(a)(2)(iv)",
        "Encryption and decryption",
        &[C::EncryptionAtRest, C::KeyRotation, C::BackupEncryption],
    ),
    control(Hipaa, "164.312(b)", "Audit controls", &[C::AuditLogging]),
    control(Hipaa, "164.312(c)(1)", "Integrity", &[C::AuditIntegrity]),
    control(Hipaa, "164.312(d)", "Person or entity authentication", &[C::AdminMfa, C::PasswordPolicy]),
    control(Hipaa, "164.312(e)(1)", "Transmission security", &[C::Tls]),
    control(Hipaa, "164.308(a)(7)(ii)(A)", "Contingency plan: data backup", &[C::BackupVerified]),
    control(Gdpr, "art5(1)(f)", "Integrity and confidentiality", &[C::EncryptionAtRest, C::Tls, C::AuditIntegrity]),
    control(
        Gdpr,
        "art25",
        "Data protection by design and by default",
        &[C::EncryptionAtRest, C::SessionTimeout, C::KeyBackupRetention],
    ),
    control(
        Gdpr,
        "art12-20",
        "Data-subject requests (access, erasure, portability) answered within a month",
        &[C::SubjectRequests, C::AuditLogging],
    ),
    control(Gdpr, "art30", "Records of processing activities", &[C::AuditLogging]),
    control(
        Gdpr,
        "art32",
        "Security of processing",
        &[
            C::EncryptionAtRest,
            C::Tls,
            C::KeyRotation,
            C::AdminMfa,
            C::PasswordPolicy,
            C::RateLimiting,
            C::BackupVerified,
            C::BackupEncryption,
        ],
    ),
    control(Gdpr, "art33", "Notification of a personal data breach", &[C::BreachResponse]),
    control(
        Ccpa,
        "1798.81.5",
        "Reasonable security procedures and practices",
        &[C::EncryptionAtRest, C::Tls, C::AdminMfa, C::AccessControl],
    ),
    control(
        Ccpa,
        "1798.105-120",
        "Deletion requests reach service providers; opt-outs of sale are honoured",
        &[C::SubjectRequests],
    ),
    control(
        Ccpa,
        "1798.150",
        "Breach of nonencrypted personal information",
        &[C::EncryptionAtRest, C::BackupEncryption],
    ),
    control(
        Soc2,
        "CC6.1",
        "Logical access security and encryption",
        &[C::AccessControl, C::PasswordPolicy, C::EncryptionAtRest, C::KeyRotation],
    ),
    control(Soc2, "CC6.2", "User registration and authorization", &[C::AccessControl, C::AdminMfa]),
    control(Soc2, "CC6.3", "Role-based access and least privilege", &[C::AccessControl, C::SessionTimeout]),
    control(
        Soc2,
        "CC6.6",
        "Protection against threats from outside the system boundaries",
        &[C::Tls, C::RateLimiting, C::BreachResponse],
    ),
    control(Soc2, "CC6.7", "Restriction of data transmission and movement", &[C::Tls, C::BackupEncryption]),
    control(Soc2, "A1.2", "Backup and recovery", &[C::BackupVerified, C::BackupEncryption]),
    control(
        Soc2,
        "C1.1",
        "Identification and protection of confidential information",
        &[C::EncryptionAtRest, C::KeyRotation],
    ),
    control(
        Soc2,
        "C1.2",
        "Disposal of confidential information (crypto-shredding)",
        &[C::EncryptionAtRest, C::KeyBackupRetention],
    ),
    control(Soc2, "PI1.1", "Processing integrity", &[C::AuditIntegrity, C::AuditLogging]),
];

/// The verdict of one check: its status and the facts it was computed from.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: ControlStatus,
    pub evidence: Value,
}

fn outcome(pass: bool, evidence: Value) -> Outcome {
    Outcome { status: if pass { ControlStatus::Pass } else { ControlStatus::Fail }, evidence }
}

fn age_days(now: Timestamp, then: Timestamp) -> i64 {
    (now.as_millis() - then.as_millis()).div_euclid(DAY_MS)
}

/// Everything the checks read, gathered once per request.
pub(crate) struct Facts<'a> {
    now: Timestamp,
    settings: &'a Enforced,
    users: Vec<UserRecord>,
    roles: Vec<RoleRecord>,
    collections: Vec<CollectionRecord>,
    keys: KeysView,
    last_backup_verified: Option<AuditRecord>,
    last_backup_verify_failed: Option<AuditRecord>,
    last_audit_verify: Option<AuditRecord>,
    last_audit_verify_ok: Option<AuditRecord>,
    audit_head_seq: Option<i64>,
    anchor_problem: Option<&'static str>,
    open_alerts: Vec<AlertRecord>,
    privacy: PrivacyCounts,
}

impl Check {
    pub const fn id(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::SessionTimeout => "session_timeout",
            Self::EncryptionAtRest => "encryption_at_rest",
            Self::KeyRotation => "key_rotation",
            Self::BackupVerified => "backup_verified",
            Self::BackupEncryption => "backup_encryption",
            Self::KeyBackupRetention => "key_backup_retention",
            Self::AuditLogging => "audit_logging",
            Self::AuditIntegrity => "audit_integrity",
            Self::AdminMfa => "admin_mfa",
            Self::PasswordPolicy => "password_policy",
            Self::RateLimiting => "rate_limiting",
            Self::AccessControl => "access_control",
            Self::BreachResponse => "breach_response",
            Self::SubjectRequests => "subject_requests",
        }
    }

    fn evaluate(self, f: &Facts<'_>) -> Outcome {
        let s = f.settings;
        match self {
            Self::Tls => {
                let tls = s.config.tls;
                outcome(tls, json!({ "tls_enabled": tls, "insecure_http": !tls }))
            }
            Self::SessionTimeout => {
                let idle_minutes = s.session_idle_secs.div_euclid(60);
                outcome(
                    s.session_idle_secs <= MAX_IDLE_MINUTES * 60,
                    json!({
                        "idle_timeout_minutes": idle_minutes,
                        "max_idle_timeout_minutes": MAX_IDLE_MINUTES,
                        "absolute_lifetime_hours": s.session_lifetime_secs.div_euclid(3600),
                    }),
                )
            }
            Self::EncryptionAtRest => {
                let unencrypted: Vec<&str> =
                    f.collections.iter().filter(|c| !c.encrypted).map(|c| c.name.as_str()).collect();
                let evidence = json!({ "collections": f.collections.len(), "unencrypted_collections": unencrypted });
                if f.collections.is_empty() {
                    Outcome { status: ControlStatus::NotApplicable, evidence }
                } else {
                    outcome(unencrypted.is_empty(), evidence)
                }
            }
            Self::KeyRotation => {
                let last = f.keys.kek_versions.iter().map(|v| v.created_at).max();
                let days = i64::from(f.keys.rotation_days);
                let due = last.is_some_and(|l| f.now.as_millis() - l.as_millis() <= days * DAY_MS);
                outcome(
                    due,
                    json!({
                        "last_rotation_at": last,
                        "age_days": last.map(|l| age_days(f.now, l)),
                        "key_rotation_days": days,
                        "current_kek_version": f.keys.current_kek_version,
                        "next_rotation_due": f.keys.next_rotation_due,
                    }),
                )
            }
            Self::BackupVerified => {
                let last = f.last_backup_verified.as_ref();
                let at = last.map(|r| r.event.timestamp);
                let fresh =
                    at.is_some_and(|t| f.now.as_millis() - t.as_millis() <= BACKUP_VERIFY_MAX_AGE_DAYS * DAY_MS);
                outcome(
                    fresh,
                    json!({
                        "last_verified_at": at,
                        "backup_id": last.and_then(|r| r.event.details.get("backup_id").cloned()),
                        "age_days": at.map(|t| age_days(f.now, t)),
                        "max_age_days": BACKUP_VERIFY_MAX_AGE_DAYS,
                        "last_failed_verification_at": f.last_backup_verify_failed.as_ref().map(|r| r.event.timestamp),
                    }),
                )
            }
            Self::BackupEncryption => {
                let required = s.config.backup_encryption_required;
                outcome(required, json!({ "backup_encryption": if required { "required" } else { "optional" } }))
            }
            Self::KeyBackupRetention => {
                let days = s.config.key_backup_retention_days;
                outcome(
                    days <= KEY_BACKUP_RETENTION_MAX_DAYS,
                    json!({ "key_backup_retention_days": days, "max_days": KEY_BACKUP_RETENTION_MAX_DAYS }),
                )
            }
            Self::AuditLogging => outcome(
                f.audit_head_seq.is_some() && f.anchor_problem.is_none(),
                json!({
                    "head_seq": f.audit_head_seq,
                    "accepting_records": f.anchor_problem.is_none(),
                    "anchor_problem": f.anchor_problem,
                    "records_reads": s.audit_reads,
                }),
            ),
            Self::AuditIntegrity => {
                let last = f.last_audit_verify.as_ref();
                let at = last.map(|r| r.event.timestamp);
                let last_ok = last.is_some_and(|r| r.event.success);
                let fresh = at.is_some_and(|t| f.now.as_millis() - t.as_millis() <= AUDIT_VERIFY_MAX_AGE_DAYS * DAY_MS);
                outcome(
                    last_ok && fresh && f.anchor_problem.is_none(),
                    json!({
                        "last_verified_at": at,
                        "last_result_valid": last.map(|r| r.event.success),
                        "records_verified": last.and_then(|r| r.event.details.get("records").cloned()),
                        "age_days": at.map(|t| age_days(f.now, t)),
                        "max_age_days": AUDIT_VERIFY_MAX_AGE_DAYS,
                        "last_valid_verification_at": f.last_audit_verify_ok.as_ref().map(|r| r.event.timestamp),
                        "anchor_problem": f.anchor_problem,
                    }),
                )
            }
            Self::AdminMfa => {
                let admins: Vec<&UserRecord> =
                    f.users.iter().filter(|u| !u.disabled && u.role.as_str() == crate::ADMIN_ROLE).collect();
                let without: Vec<&str> =
                    admins.iter().filter(|u| !u.mfa_enabled).map(|u| u.username.as_str()).collect();
                outcome(
                    !admins.is_empty() && without.is_empty(),
                    json!({
                        "enabled_admins": admins.len(),
                        "admins_without_mfa": without,
                        "mfa_required_for_roles": s.require_mfa_for_roles,
                    }),
                )
            }
            Self::PasswordPolicy => {
                let refused = WEAK_PROBES
                    .iter()
                    .filter(|p| rampart_crypto::check_password_policy(p, "compliance-probe").is_err())
                    .count();
                outcome(
                    refused == WEAK_PROBES.len(),
                    json!({
                        "min_length": rampart_crypto::MIN_PASSWORD_CHARS,
                        "weak_probes_refused": refused,
                        "weak_probes": WEAK_PROBES.len(),
                        "hash": "argon2id",
                    }),
                )
            }
            Self::RateLimiting => {
                let c = &s.config;
                outcome(
                    c.rate_limit_enabled,
                    json!({
                        "enabled": c.rate_limit_enabled,
                        "requests_per_minute": c.requests_per_minute,
                        "login_requests_per_minute": c.login_requests_per_minute,
                    }),
                )
            }
            Self::AccessControl => {
                let known: Vec<&str> = f.roles.iter().map(|r| r.name.as_str()).collect();
                let mut by_role: BTreeMap<&str, u64> = BTreeMap::new();
                for u in f.users.iter().filter(|u| !u.disabled) {
                    *by_role.entry(u.role.as_str()).or_default() += 1;
                }
                let unknown: Vec<&str> =
                    f.users.iter().filter(|u| !known.contains(&u.role.as_str())).map(|u| u.username.as_str()).collect();
                outcome(
                    unknown.is_empty(),
                    json!({
                        "users": f.users.len(),
                        "disabled_users": f.users.iter().filter(|u| u.disabled).count(),
                        "roles": f.roles.len(),
                        "enabled_users_by_role": by_role,
                        "users_with_unknown_role": unknown,
                        "admin_allowed_networks": s.admin_allowed_networks,
                    }),
                )
            }
            Self::BreachResponse => {
                let cutoff = f.now.minus_seconds(BREACH_RESPONSE_HOURS * 3600);
                let overdue: Vec<Value> = f
                    .open_alerts
                    .iter()
                    .filter(|a| matches!(a.severity.as_str(), "high" | "critical") && a.first_seen < cutoff)
                    .map(|a| json!({ "id": a.id, "severity": a.severity, "breach_type": a.breach_type, "first_seen": a.first_seen }))
                    .collect();
                outcome(
                    s.breach_detection && overdue.is_empty(),
                    json!({
                        "breach_detection_enabled": s.breach_detection,
                        "webhook_endpoints": s.webhook_endpoints,
                        "open_alerts": f.open_alerts.len(),
                        "overdue_high_or_critical_alerts": overdue,
                        "response_hours": BREACH_RESPONSE_HOURS,
                    }),
                )
            }
            Self::SubjectRequests => {
                // A request is answered here at once; what can be left waiting is telling the
                // recipients (GDPR art. 12(3) and 19: within a month).
                let p = &f.privacy;
                let cutoff = f.now.minus_seconds(SUBJECT_REQUEST_DAYS * 86_400);
                let overdue = p.oldest_processing_at.is_some_and(|t| t < cutoff);
                outcome(
                    !overdue,
                    json!({
                        "verified_requests_not_yet_made": p.open_verifications,
                        "requests_awaiting_recipients": p.processing_requests,
                        "oldest_awaiting_since": p.oldest_processing_at,
                        "answer_within_days": SUBJECT_REQUEST_DAYS,
                        "requests_completed": p.completed_requests,
                        "erased_subjects": p.erased_subjects,
                        "do_not_sell_count": p.do_not_sell,
                        "consent_records": p.consent_records,
                        "service_providers": s.config.service_providers,
                    }),
                )
            }
        }
    }
}

/// One control as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ControlView {
    pub id: &'static str,
    pub title: &'static str,
    pub status: ControlStatus,
    /// Each check's facts, by check id.
    pub evidence: BTreeMap<&'static str, Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkSummary {
    /// `compliant` only when no control fails.
    pub status: &'static str,
    pub controls_met: usize,
    pub controls_failed: usize,
    pub controls_not_applicable: usize,
    pub controls_total: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkStatus {
    pub summary: FrameworkSummary,
    pub controls: Vec<ControlView>,
}

/// `GET /api/v1/admin/compliance/status`.
#[derive(Debug, Clone, Serialize)]
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

/// A public key a report may be verified with: from the local deployment or a JWKS.
#[derive(Debug, Clone)]
pub struct ReportKey {
    pub kid: String,
    pub public_key: Vec<u8>,
}

/// Why a report does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("malformed report: {0}")]
    Malformed(&'static str),
    #[error("unsupported signature algorithm {0:?} (expected EdDSA)")]
    Algorithm(String),
    #[error("signed by an unknown key {0:?}: not this deployment's report key")]
    UnknownKey(String),
    #[error("the signature does not match the report: it was changed after signing, or signed by another key")]
    BadSignature,
}

/// The report signing keys of a JWKS document (`/.well-known/jwks.json`): Ed25519 entries
/// whose kid starts with `report-` and is the one their key yields. JWT keys are skipped.
pub fn report_keys_from_jwks(jwks: &Value) -> Vec<ReportKey> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else { return Vec::new() };
    keys.iter()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some("OKP"))
        .filter(|k| k.get("crv").and_then(Value::as_str) == Some("Ed25519"))
        .filter_map(|k| {
            let kid = k.get("kid")?.as_str()?;
            let public_key = rampart_crypto::jwk_public_key(k.get("x")?.as_str()?)?;
            (kid.starts_with(rampart_crypto::REPORT_KID_PREFIX) && rampart_crypto::report_kid(&public_key) == kid)
                .then(|| ReportKey { kid: kid.to_owned(), public_key })
        })
        .collect()
}

/// Checks a signed report envelope `{"report", "signature": {"alg", "kid", "value"}}`
/// against `trusted` keys only: a key inside the report itself anchors nothing and is never
/// used. Returns the kid that verified it.
pub fn verify_report(envelope: &Value, trusted: &[ReportKey]) -> Result<String, ReportError> {
    let report = envelope.get("report").filter(|r| r.is_object()).ok_or(ReportError::Malformed("no report object"))?;
    let sig = envelope.get("signature").ok_or(ReportError::Malformed("no signature"))?;
    let text = |k: &'static str| sig.get(k).and_then(Value::as_str).ok_or(ReportError::Malformed(k));
    let alg = text("alg")?;
    if alg != "EdDSA" {
        return Err(ReportError::Algorithm(alg.chars().take(32).collect()));
    }
    let kid = text("kid")?;
    let value = text("value")?;
    let key =
        trusted.iter().find(|k| k.kid == kid).ok_or_else(|| ReportError::UnknownKey(kid.chars().take(64).collect()))?;
    if rampart_crypto::verify_report_signature(&key.public_key, &canonical_json(report), value) {
        Ok(key.kid.clone())
    } else {
        Err(ReportError::BadSignature)
    }
}
