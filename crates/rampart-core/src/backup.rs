//! Backups as the core sees them: a `Backups` service (files are the binary's business),
//! wrapped with permission checks, the encryption policy and audit records; and the
//! erasure ledger that every restore re-applies.

use std::sync::Arc;

use async_trait::async_trait;
use rampart_types::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::EventType;
use crate::events::Events;
use crate::Authorized;
use crate::{CoreError, CoreResult};
use rampart_types::perm;

/// Called with the keyed hash of each erased subject.
pub type ErasureHook = Arc<dyn Fn(&str) + Send + Sync>;

/// SPEC section 9's metadata, stored beside each backup.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupMeta {
    pub backup_id: String,
    pub encrypted: bool,
    pub encryption_algorithm: Option<String>,
    pub created_at: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance_mode: Option<String>,
    /// Set on unencrypted backups: what the file exposes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What an unencrypted backup exposes, said wherever one is made.
pub const UNENCRYPTED_WARNING: &str = "unencrypted backup: anyone who can read the file can read the usernames, \
     password hashes, audit log, collection settings and every document of unencrypted collections (documents of \
     encrypted collections stay sealed: their keys are kept in a separate file)";

#[derive(utoipa::ToSchema, Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupVerification {
    pub backup_id: String,
    pub valid: bool,
    pub reason: Option<String>,
    pub documents: Option<u64>,
}

#[async_trait]
pub trait Backups: Send + Sync {
    async fn create(&self, encrypted: bool, compliance_mode: Option<String>) -> CoreResult<BackupMeta>;
    async fn list(&self) -> CoreResult<Vec<BackupMeta>>;
    async fn verify(&self, backup_id: &str) -> CoreResult<BackupVerification>;
}

/// Compliance modes that demand encryption.
const ENCRYPTION_MODES: &[&str] = &["hipaa"];

/// Refuses unencrypted backups when policy or the compliance mode requires encryption.
pub fn check_policy(encrypted: bool, required: bool, mode: Option<&str>) -> CoreResult<()> {
    if let Some(m) = mode {
        if !ENCRYPTION_MODES.contains(&m) {
            return Err(CoreError::validation("compliance_mode", "the only supported mode is \"hipaa\""));
        }
    }
    if !encrypted && (required || mode.is_some()) {
        return Err(CoreError::validation(
            "encrypted",
            "unencrypted backups are refused (RAMPART_BACKUP_ENCRYPTION=required or compliance_mode)",
        ));
    }
    Ok(())
}

/// Backups with permission checks, the encryption policy and audit records, over the
/// deployment's `Backups` adapter (files are the binary's business).
#[derive(Clone)]
pub struct BackupService {
    backups: Arc<dyn Backups>,
    events: Events,
}

impl BackupService {
    pub fn new(backups: Arc<dyn Backups>, events: Events) -> Self {
        Self { backups, events }
    }

    pub async fn create_backup(
        &self,
        access: &Authorized<perm::BackupCreate>,
        encrypted: bool,
        mode: Option<String>,
    ) -> CoreResult<BackupMeta> {
        let who = access.who();
        let user = Some(who.username.as_str());
        match self.backups.create(encrypted, mode.clone()).await {
            Ok(meta) => {
                let details = json!({ "backup_id": meta.backup_id, "encrypted": meta.encrypted, "size_bytes": meta.size_bytes, "compliance_mode": mode });
                self.events.record_event(EventType::BackupCreate, user, &who.origin, true, details).await?;
                Ok(meta)
            }
            Err(e) => {
                let details = json!({ "encrypted": encrypted, "compliance_mode": mode, "error": e.to_string() });
                self.events.record_event(EventType::BackupCreate, user, &who.origin, false, details).await?;
                Err(e)
            }
        }
    }

    pub async fn list_backups(&self, _: &Authorized<perm::BackupRead>) -> CoreResult<Vec<BackupMeta>> {
        self.backups.list().await
    }

    /// When the newest backup was made, for `/metrics` (nothing else of the list).
    pub async fn newest_backup_at(&self, _: &Authorized<perm::MetricsRead>) -> CoreResult<Option<Timestamp>> {
        let list = self.backups.list().await?;
        Ok(list.iter().filter_map(|b| Timestamp::parse_rfc3339(&b.created_at)).max())
    }

    pub async fn verify_backup(
        &self,
        access: &Authorized<perm::BackupRead>,
        id: &str,
    ) -> CoreResult<BackupVerification> {
        let who = access.who();
        let v = self.backups.verify(id).await?;
        let details = json!({ "backup_id": v.backup_id, "reason": v.reason });
        self.events
            .record_event(EventType::BackupVerify, Some(who.username.as_str()), &who.origin, v.valid, details)
            .await?;
        Ok(v)
    }
}
