//! The checks and controls: each check reads one fact of the live system and judges it
//! (pass, fail or not applicable, with the evidence used); each framework control names the
//! checks it rests on (`CONTROLS`). Adding a control is one entry in `CONTROLS`; adding a
//! fact is one `Check` variant, its field in `Facts` and its arm in `Check::evaluate`.

use std::collections::BTreeMap;

use rampart_store::{AlertRecord, AuditRecord, CollectionRecord, PrivacyCounts, RoleRecord, UserRecord};
use rampart_types::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

use super::Enforced;
use crate::rotation::KeysView;

pub(super) const DAY_MS: i64 = 86_400_000;
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
/// Passwords the policy must refuse for the password-policy check to pass.
const WEAK_PROBES: &[&str] = &["password", "Password1!", "correct horse battery staple", "aaaaaaaaaaaaaaaa"];

#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    pub(super) now: Timestamp,
    pub(super) settings: &'a Enforced,
    pub(super) users: Vec<UserRecord>,
    pub(super) roles: Vec<RoleRecord>,
    pub(super) collections: Vec<CollectionRecord>,
    pub(super) keys: KeysView,
    pub(super) last_backup_verified: Option<AuditRecord>,
    pub(super) last_backup_verify_failed: Option<AuditRecord>,
    pub(super) last_audit_verify: Option<AuditRecord>,
    pub(super) last_audit_verify_ok: Option<AuditRecord>,
    pub(super) audit_head_seq: Option<i64>,
    pub(super) anchor_problem: Option<&'static str>,
    pub(super) open_alerts: Vec<AlertRecord>,
    pub(super) privacy: PrivacyCounts,
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

    pub(super) fn evaluate(self, f: &Facts<'_>) -> Outcome {
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
