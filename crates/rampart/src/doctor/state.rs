//! Checks on what the store holds: admins (second factor, default or common passwords),
//! encryption of every collection, key rotation age, backups and their verification, the
//! audit chain with its checkpoint, and alerts left open.

use std::sync::Arc;

use anyhow::Context;
use rampart_config::Config;
use rampart_core::backup::BackupService;
use rampart_core::compliance::{Framework, BACKUP_VERIFY_MAX_AGE_DAYS};
use rampart_core::{Clock as _, Core, SystemClock};
use rampart_crypto::{PasswordHasher, StoredPasswordHash};
use rampart_store::{AlertFilter, UserRecord};
use rampart_types::{perm, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{Findings, Severity};
use crate::app::{App, Backend};
use crate::datadir::{self, KEY_FILE};

const DAY_MS: i64 = 86_400_000;
/// A backup older than this is a warning (the same week the compliance check allows for
/// verification).
const BACKUP_MAX_AGE_DAYS: i64 = 7;
/// Passwords tried against every local admin's hash, besides the bootstrap one and the
/// username itself. Imported hashes are where these can still hide: Rampart's own policy
/// refuses them at every change.
const COMMON_PASSWORDS: &[&str] =
    &["admin", "password", "changeme", "rampart", "123456", "12345678", "admin123", "Password1!", "letmein", "welcome"];

pub async fn check(config: &Config, out: &mut Findings) {
    if !Backend::exists(&config.server.database) {
        out.flag(
            "database",
            Severity::Info,
            "no database yet: only the configuration and files were checked",
            json!({ "data_dir": config.server.data_dir }),
            "rampart serve",
        );
        return;
    }
    let key_known = config.secrets.encryption_key.is_some() || config.server.data_dir.join(KEY_FILE).exists();
    if !key_known {
        out.flag(
            "master_key",
            Severity::Critical,
            "the database exists but no master key is configured or on disk: the server cannot read it",
            json!({ "data_dir": config.server.data_dir }),
            "restore the master key file or set RAMPART_ENCRYPTION_KEY_FILE",
        );
        return;
    }
    if let Err(e) = check_store(config, out).await {
        out.flag(
            "database",
            Severity::Critical,
            "the data directory cannot be opened",
            json!({ "error": format!("{e:#}") }),
            "fix what the error names; `rampart serve` would fail the same way",
        );
    }
}

async fn check_store(config: &Config, out: &mut Findings) -> anyhow::Result<()> {
    // Held while the server is stopped, so the audit mirror can be required to be complete.
    let stopped = datadir::lock(&config.server.data_dir).ok();
    // Not `App::open`: that also tightens the data directory's mode, and a diagnosis must
    // leave what it diagnoses as it found it (the master key file exists: checked above).
    let key = datadir::master_key(config)?;
    let found = Backend::open_as_found(&config.server.database, &config.server.node_id).await?;
    let App { core, backend } = App::assemble(config, found, key).await?;
    let now = SystemClock.now();
    let users = all_users(&backend).await?;
    admins(config, &users, out).await;
    collections(&backend, out).await?;
    key_age(&core, now, out).await?;
    backups(config, &core, &backend, now, out).await?;
    audit(config, &backend, stopped.is_some(), out).await?;
    alerts(&backend, out).await?;
    let _ = backend.close().await;
    drop(stopped);
    Ok(())
}

async fn all_users(store: &Backend) -> anyhow::Result<Vec<UserRecord>> {
    let mut users: Vec<UserRecord> = Vec::new();
    loop {
        let page = store.list_users(users.last().map(|u| &u.username), 1000).await?;
        let done = page.len() < 1000;
        users.extend(page);
        if done {
            return Ok(users);
        }
    }
}

async fn admins(config: &Config, users: &[UserRecord], out: &mut Findings) {
    let admins: Vec<&UserRecord> =
        users.iter().filter(|u| !u.disabled && u.role.as_str() == rampart_core::ADMIN_ROLE).collect();
    let without: Vec<&str> = admins.iter().filter(|u| !u.mfa_enabled).map(|u| u.username.as_str()).collect();
    out.judge(
        "admin_mfa",
        !admins.is_empty() && without.is_empty(),
        if admins.is_empty() { Severity::Warning } else { Severity::Critical },
        ("every enabled admin has a second factor", "admins without a second factor, or no enabled admin"),
        json!({ "enabled_admins": admins.len(), "admins_without_mfa": without }),
        "each admin enrols TOTP (POST /api/v1/auth/mfa/enable, then /confirm); an admin's first login forces it",
    );
    let local: Vec<(String, String)> = admins
        .iter()
        .filter(|u| u.auth_source == rampart_types::AuthSource::Local)
        .map(|u| (u.username.as_str().to_owned(), u.password_hash.clone()))
        .collect();
    let bootstrap = config.secrets.admin_password.clone();
    let weak = tokio::task::spawn_blocking(move || guessable_admins(&local, bootstrap.as_ref())).await;
    let Ok(Ok((default, common))) = weak else { return };
    let evidence = json!({
        "checked_admins": admins.len(),
        "bootstrap_password_still_valid": default,
        "common_password": common,
        "candidates_tried": COMMON_PASSWORDS.len() + 1,
    });
    if !common.is_empty() {
        out.flag(
            "admin_passwords",
            Severity::Critical,
            "an admin's password is a common one or the username",
            evidence,
            "the admin sets a new password (POST /api/v1/auth/password), or `rampart user disable USERNAME` until then",
        );
    } else if !default.is_empty() {
        out.flag(
            "admin_passwords",
            Severity::Warning,
            "the bootstrap admin password (RAMPART_ADMIN_PASSWORD / .secrets) still logs in",
            evidence,
            "rampart rotate-secrets (replaces the bootstrap credential), or the admin changes the password",
        );
    } else {
        out.pass("admin_passwords", "no admin uses the bootstrap password, a common one or the username", evidence);
    }
}

/// `(admins the bootstrap password opens, admins a common password opens)`.
fn guessable_admins(
    admins: &[(String, String)],
    bootstrap: Option<&SecretString>,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let hasher = PasswordHasher::new().context("password hashing")?;
    let (mut default, mut common) = (Vec::new(), Vec::new());
    for (username, hash) in admins {
        let stored = StoredPasswordHash::from_stored(hash.clone());
        let opens = |p: &str| hasher.verify(&SecretString::from(p.to_owned()), Some(&stored)).matches;
        if bootstrap.is_some_and(|b| opens(b.expose_secret())) {
            default.push(username.clone());
        }
        if COMMON_PASSWORDS.iter().copied().chain([username.as_str()]).any(opens) {
            common.push(username.clone());
        }
    }
    Ok((default, common))
}

async fn collections(store: &Backend, out: &mut Findings) -> anyhow::Result<()> {
    let all = store.list_collections().await?;
    let plain: Vec<&str> = all.iter().filter(|c| !c.encrypted).map(|c| c.name.as_str()).collect();
    out.judge(
        "collection_encryption",
        plain.is_empty(),
        Severity::Critical,
        ("every collection is encrypted at rest", "collections stored without encryption"),
        json!({ "collections": all.len(), "unencrypted": plain }),
        "recreate the collection with encryption on and copy its documents over",
    );
    Ok(())
}

async fn key_age(core: &Core, now: Timestamp, out: &mut Findings) -> anyhow::Result<()> {
    let view = core.keys().keys_status().await?;
    let last = view.kek_versions.iter().map(|v| v.created_at).max();
    let age = last.map(|l| (now.as_millis() - l.as_millis()).div_euclid(DAY_MS));
    out.judge(
        "key_rotation_age",
        age.is_some_and(|a| a <= i64::from(view.rotation_days)),
        Severity::Warning,
        ("the key-encryption key is younger than its rotation period", "the key-encryption key is overdue for rotation"),
        json!({ "last_rotation_at": last, "age_days": age, "rotation_days": view.rotation_days, "current_kek_version": view.current_kek_version }),
        "rampart keys rotate (the server also rotates on schedule while it runs)",
    );
    Ok(())
}

async fn backups(
    config: &Config,
    core: &Core,
    store: &Backend,
    now: Timestamp,
    out: &mut Findings,
) -> anyhow::Result<()> {
    let service =
        BackupService::new(Arc::new(crate::backup_cmd::file_backups(config, core, store)), core.events().clone());
    let list = service.list_backups(&core.authorize_local().await?).await?;
    let newest = list.iter().filter_map(|b| Timestamp::parse_rfc3339(&b.created_at)).max();
    let age = newest.map(|t| (now.as_millis() - t.as_millis()).div_euclid(DAY_MS));
    let unencrypted: Vec<&str> = list.iter().filter(|b| !b.encrypted).map(|b| b.backup_id.as_str()).collect();
    out.judge(
        "backup_age",
        age.is_some_and(|a| a <= BACKUP_MAX_AGE_DAYS) && unencrypted.is_empty(),
        Severity::Warning,
        ("a recent, encrypted backup exists", "no backup in the last week, or unencrypted backups lie in the backup directory"),
        json!({ "backups": list.len(), "newest_at": newest, "age_days": age, "max_age_days": BACKUP_MAX_AGE_DAYS, "unencrypted": unencrypted, "dir": config.backup.dir }),
        "rampart backup create (and schedule it); delete unencrypted ones once an encrypted copy exists",
    );
    // The last successful verification, from the audit chain (the compliance check's facts).
    let status = core.compliance().status(&core.authorize_local::<perm::ComplianceRead>().await?).await?;
    let evidence = status
        .control(Framework::Hipaa, "164.308(a)(7)(ii)(A)")
        .and_then(|c| c.evidence.get("backup_verified").cloned())
        .unwrap_or_else(|| json!({}));
    let verified = evidence.get("status").and_then(|s| s.as_str()) == Some("pass");
    out.judge(
        "backup_verified",
        verified,
        Severity::Warning,
        ("a backup was decrypted and checked in the last week", "no backup has been verified in the last week"),
        json!({ "max_age_days": BACKUP_VERIFY_MAX_AGE_DAYS, "facts": evidence }),
        "rampart backup verify BACKUP_ID",
    );
    Ok(())
}

async fn audit(config: &Config, store: &Backend, stopped: bool, out: &mut Findings) -> anyhow::Result<()> {
    let key = Arc::new(
        rampart_core::keyring::root_audit_key(&**store, &datadir::master_key(config)?)
            .await
            .context("cannot open the key store")?,
    );
    let mirror = crate::audit_cmd::mirror(config);
    let v = rampart_core::audit_anchor::verify_everything(&**store, &key, mirror, stopped).await?;
    let anchored = v.checkpoint.is_some();
    let evidence = json!({
        "valid": v.valid,
        "records": v.records,
        "first_bad_seq": v.first_bad_seq,
        "reason": v.reason,
        "checkpoint": v.checkpoint,
        "server_running": !stopped,
    });
    if !v.valid {
        out.flag(
            "audit_chain",
            Severity::Critical,
            "the audit chain does not verify: records were changed, removed or reordered",
            evidence,
            "rampart audit verify (for the details); investigate before anything else",
        );
    } else if !anchored && v.records > 0 {
        // A running server writes its first checkpoint after an interval; a stopped one
        // wrote one at shutdown, unless it was killed.
        out.flag(
            "audit_chain",
            if stopped { Severity::Warning } else { Severity::Info },
            "the audit chain verifies but audit.log holds no signed checkpoint yet",
            evidence,
            "let the server run until it writes one (it does on a schedule and at shutdown)",
        );
    } else {
        out.pass("audit_chain", "the audit chain, its mirror and its last checkpoint agree", evidence);
    }
    Ok(())
}

async fn alerts(store: &Backend, out: &mut Findings) -> anyhow::Result<()> {
    let open = store
        .list_alerts(AlertFilter { status: Some("open".into()), severity: None, breach_type: None, limit: 1000 })
        .await?;
    let serious: Vec<_> = open.iter().filter(|a| matches!(a.severity.as_str(), "high" | "critical")).collect();
    out.judge(
        "open_alerts",
        serious.is_empty(),
        Severity::Warning,
        ("no high or critical alert is open", "high or critical security alerts are open"),
        json!({ "open": open.len(), "high_or_critical": serious.len() }),
        "review them: GET /api/v1/admin/security/alerts?status=open, then acknowledge or resolve",
    );
    Ok(())
}
