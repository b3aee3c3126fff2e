//! Backups as the core sees them: a `Backups` service (files are the binary's business),
//! wrapped with permission checks, the encryption policy and audit records; and the
//! erasure ledger that every restore re-applies.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::EventType;
use crate::Authorized;
use crate::{Core, CoreError, CoreResult, RequestMeta};
use rampart_types::perm;

/// Called with the keyed hash of each erased subject.
pub type ErasureHook = Arc<dyn Fn(&str) + Send + Sync>;

/// SPEC section 9's metadata, stored beside each backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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

impl Core {
    pub async fn create_backup(
        &self,
        access: &Authorized<perm::BackupCreate>,
        backups: &dyn Backups,
        encrypted: bool,
        mode: Option<String>,
    ) -> CoreResult<BackupMeta> {
        let who = access.who();
        let user = Some(who.username.as_str());
        match backups.create(encrypted, mode.clone()).await {
            Ok(meta) => {
                let details = json!({ "backup_id": meta.backup_id, "encrypted": meta.encrypted, "size_bytes": meta.size_bytes, "compliance_mode": mode });
                self.record_event(EventType::BackupCreate, user, &who.origin, true, details).await?;
                Ok(meta)
            }
            Err(e) => {
                let details = json!({ "encrypted": encrypted, "compliance_mode": mode, "error": e.to_string() });
                self.record_event(EventType::BackupCreate, user, &who.origin, false, details).await?;
                Err(e)
            }
        }
    }

    pub async fn list_backups(
        &self,
        _: &Authorized<perm::BackupRead>,
        backups: &dyn Backups,
    ) -> CoreResult<Vec<BackupMeta>> {
        backups.list().await
    }

    pub async fn verify_backup(
        &self,
        access: &Authorized<perm::BackupRead>,
        backups: &dyn Backups,
        id: &str,
    ) -> CoreResult<BackupVerification> {
        let who = access.who();
        let v = backups.verify(id).await?;
        let details = json!({ "backup_id": v.backup_id, "reason": v.reason });
        self.record_event(EventType::BackupVerify, Some(who.username.as_str()), &who.origin, v.valid, details).await?;
        Ok(v)
    }

    /// Records a restore in the restored data directory's own audit chain.
    /// `ledger_source`: where the current erasure ledger came from; `None` when the
    /// operator restored without one (recorded, since erased subjects may be back).
    pub async fn record_restore(
        &self,
        backup_id: &str,
        erased: u64,
        key_source: &str,
        ledger_source: Option<&str>,
    ) -> CoreResult<()> {
        let ledger = ledger_source.map_or_else(
            || json!({ "current": false, "risk": "restored with --without-erasure-ledger: subjects erased after the backup may be back" }),
            |s| json!({ "current": true, "source": s }),
        );
        let details = json!({
            "backup_id": backup_id,
            "erased_documents": erased,
            "key_store": key_source,
            "erasure_ledger": ledger,
        });
        self.record_event(EventType::BackupRestore, Some("local-cli"), &RequestMeta::local("restore"), true, details)
            .await
    }

    /// Keyed hashes of every erased subject.
    pub async fn erasure_hashes(&self) -> CoreResult<HashSet<String>> {
        Ok(self.inner.store.erasure_ledger().await?.into_iter().map(|e| e.subject_hash).collect())
    }

    /// Erases again, in this store, every subject whose hash is in `ledger`: used after a
    /// restore so an erased subject never comes back. Returns documents removed.
    pub async fn apply_erasures(&self, ledger: &HashSet<String>) -> CoreResult<u64> {
        let mut subjects = HashSet::new();
        let mut after = 0;
        loop {
            let docs = self.inner.store.documents_after(after, 1000).await?;
            let Some(last) = docs.last() else { break };
            after = last.seq;
            for d in docs.iter().filter_map(|d| d.subject_id.as_ref()) {
                if ledger.contains(&crate::keyring::subject_hash(&self.inner.blind_index, d)) {
                    subjects.insert(d.clone());
                }
            }
        }
        let meta = RequestMeta::local("restore");
        let mut removed = 0;
        for s in subjects {
            let hash = crate::keyring::subject_hash(&self.inner.blind_index, &s);
            let details = json!({ "subject_hash": hash, "reason": "erasure_ledger_reapplied" });
            let event = self.event(EventType::SubjectErase, Some("local-cli"), &meta, true, details);
            removed += self.inner.store.erase_subject(&s, &hash, self.now(), vec![event]).await?;
        }
        self.inner.keys.forget_all();
        Ok(removed)
    }

    /// Called with each erased subject's hash, so a copy of the ledger can live beside the
    /// backups (restores into a fresh directory consult it).
    pub fn on_erasure(&self, hook: ErasureHook) {
        let _ = self.inner.erasure_hook.set(hook);
    }
}
