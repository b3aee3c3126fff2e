//! Key rotation (re-wrap now, re-encrypt in the background), master key change and
//! crypto-shredding of a data subject.

use std::sync::Arc;
use std::time::Duration;

use rampart_crypto::MasterKey;
use rampart_store::{DocumentStore, KekVersion, KeyKind, KeyStore, LeaderLease, Reseal, Rewrapper, Store};
use serde::Serialize;
use serde_json::json;

use crate::audit::EventType;
use crate::events::Events;
use crate::jwt::Tokens;
use crate::keyring::KeyRing;
use crate::security::BreachDetection;
use crate::Authorized;
use crate::{CoreError, CoreResult, RequestMeta};
use rampart_types::perm;

/// Documents re-sealed per transaction by the background job.
const RESEAL_BATCH: usize = 100;
/// Damaged documents remembered per run (bounded; past it re-encryption stops and resumes
/// at the next start, as before).
const MAX_DAMAGED_TRACKED: usize = 10_000;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct KekVersionView {
    pub version: u32,
    pub created_at: rampart_types::Timestamp,
    pub current: bool,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct KeysView {
    pub current_kek_version: u32,
    pub kek_versions: Vec<KekVersionView>,
    pub data_keys: serde_json::Value,
    pub rotation_days: u32,
    pub next_rotation_due: rampart_types::Timestamp,
    pub reencryption: Option<serde_json::Value>,
}

fn rewrapper(master: Arc<MasterKey>, to: Arc<MasterKey>, version: Option<u32>) -> Rewrapper {
    Box::new(move |rec| {
        let key = master.kek(rec.kek_version).unwrap(&rec.key_id, &rec.wrapped).map_err(|e| e.to_string())?;
        to.kek(version.unwrap_or(rec.kek_version)).wrap(&rec.key_id, &key).map_err(|e| e.to_string())
    })
}

/// Key management: KEK rotation (re-wrapping every data key), background re-encryption
/// of documents under successor keys, master-key change, and the status view.
#[derive(Clone)]
pub struct Keys {
    key_store: Arc<dyn KeyStore>,
    document_store: Arc<dyn DocumentStore>,
    keys: Arc<KeyRing>,
    tokens: Tokens,
    events: Events,
    detection: BreachDetection,
    rotation_days: u32,
    reencrypt_pause: Duration,
    /// Wakes this process's re-encryption worker when a job starts here.
    reencrypt_wake: Arc<tokio::sync::Notify>,
    /// One re-encryption runner per process.
    reencrypting: Arc<tokio::sync::Mutex<()>>,
}

/// How often a node that may run re-encryption looks for a job started elsewhere or left by
/// a node that died.
const REENCRYPT_WATCH: Duration = Duration::from_secs(1);

impl Keys {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        keys: Arc<KeyRing>,
        tokens: Tokens,
        events: Events,
        detection: BreachDetection,
        (rotation_days, reencrypt_pause): (u32, Duration),
    ) -> Self {
        Self {
            key_store: store.clone(),
            document_store: store,
            keys,
            tokens,
            events,
            detection,
            rotation_days,
            reencrypt_pause,
            reencrypt_wake: Arc::default(),
            reencrypting: Arc::default(),
        }
    }

    fn now(&self) -> rampart_types::Timestamp {
        self.events.now()
    }

    pub async fn keys_view(&self, _: &Authorized<perm::KeysRead>) -> CoreResult<KeysView> {
        self.keys_status().await
    }

    pub async fn keys_status(&self) -> CoreResult<KeysView> {
        let store = &self.key_store;
        let current = self.keys.current_kek();
        let versions = store.kek_versions().await?;
        let latest = versions.iter().map(|v| v.created_at).max().unwrap_or_else(|| self.now());
        let counts: serde_json::Map<String, serde_json::Value> =
            store.count_keys().await?.into_iter().map(|(k, n)| (k.as_str().to_owned(), json!(n))).collect();
        let cursor = store.reencrypt_cursor().await?;
        Ok(KeysView {
            current_kek_version: current,
            kek_versions: versions
                .into_iter()
                .map(|v| KekVersionView { current: v.version == current, version: v.version, created_at: v.created_at })
                .collect(),
            data_keys: serde_json::Value::Object(counts),
            rotation_days: self.rotation_days,
            next_rotation_due: latest.plus_seconds(i64::from(self.rotation_days) * 86_400),
            reencryption: cursor.map(|c| json!({ "running": true, "last_document_seq": c })),
        })
    }

    /// A new KEK version re-wraps every data key at once; with `reencrypt`, every
    /// collection and subject key gets a successor and documents are re-sealed in the
    /// background (resumable: the cursor is committed with each batch).
    pub async fn rotate_keys(&self, access: &Authorized<perm::KeysRotate>, reencrypt: bool) -> CoreResult<KeysView> {
        let who = access.who();
        self.rotate_keys_as(&who.username.to_string(), &who.origin, reencrypt).await?;
        self.keys_status().await
    }

    pub(crate) async fn rotate_keys_as(&self, user: &str, meta: &RequestMeta, reencrypt: bool) -> CoreResult<u32> {
        let ring = &self.keys;
        // Not held past the re-wrap: what follows wraps keys itself (a second shared hold
        // behind a waiting master change would never be granted).
        let wrapping = ring.wrapping().await;
        let version = ring.current_kek() + 1;
        let master = ring.master();
        let details = json!({ "kek_version": version, "reencrypt": reencrypt });
        let event = self.events.event(EventType::KeyRotate, Some(user), meta, true, details);
        let kv = KekVersion { version, created_at: self.now() };
        let n =
            self.key_store.rotate_kek(kv, rewrapper(Arc::clone(&master), master, Some(version)), vec![event]).await?;
        ring.set_current_kek(version);
        drop(wrapping);
        // Signing keys rotate with the key-encrypting key; the old one stays in the JWKS.
        self.tokens.rotate_jwt_key(meta).await?;
        tracing::info!(version, keys = n, "key-encrypting key rotated");
        if reencrypt {
            self.start_reencrypt(user, meta).await?;
        }
        Ok(version)
    }

    async fn start_reencrypt(&self, user: &str, meta: &RequestMeta) -> CoreResult<()> {
        let store = &self.key_store;
        let _wrapping = self.keys.wrapping().await;
        let mut successors = Vec::new();
        let mut after = String::new();
        loop {
            let page = store.list_keys(&after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = last.key_id.clone();
            // The root and the small-secrets key (TOTP secrets, JWT signing keys) are only
            // re-wrapped: replacing them would strand what is sealed under them.
            let keep =
                |k: &rampart_store::KeyRecord| k.kind == KeyKind::Root || k.owner == crate::keyring::SECRETS_OWNER;
            for k in page.iter().filter(|k| !keep(k) && k.successor.is_none()) {
                successors.push((k.key_id.clone(), self.keys.successor_for(k, self.now())?));
            }
        }
        let details = json!({ "phase": "reencrypt_started", "keys": successors.len() });
        let event = self.events.event(EventType::KeyRotate, Some(user), meta, true, details);
        store.start_reencrypt(successors, vec![event]).await.map_err(|e| match e {
            rampart_store::StoreError::InUse(w) => CoreError::Conflict(w),
            e => e.into(),
        })?;
        // The node holding the lease runs it (this one, if it does, at once).
        self.reencrypt_wake.notify_one();
        Ok(())
    }

    /// The re-encryption worker of a serving node: runs any job (started on this node or
    /// another, or left by a node that died mid-way) while this node holds `lease`, so
    /// exactly one node re-seals at a time and the job moves when its runner dies.
    pub async fn keep_reencrypting(&self, lease: Arc<dyn LeaderLease>) {
        loop {
            match self.key_store.reencrypt_cursor().await {
                Ok(Some(_)) if lease.held().await => self.run_reencrypt(&*lease).await,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot look for a re-encryption job"),
            }
            let _ = tokio::time::timeout(REENCRYPT_WATCH, self.reencrypt_wake.notified()).await;
        }
    }

    /// Re-seals documents whose key has a successor, batch by batch, until none is left;
    /// then retires the old keys. Safe to call again after a crash: it resumes at the
    /// committed cursor. Stops (to be resumed by the lease's next holder) as soon as this
    /// node no longer holds `lease`. One runner per process; a second call returns at once.
    pub async fn run_reencrypt(&self, lease: &dyn LeaderLease) {
        let Ok(_running) = self.reencrypting.try_lock() else { return };
        if let Err(e) = self.reencrypt_loop(lease).await {
            tracing::error!(error = %e, "re-encryption stopped; the lease holder resumes it");
        }
    }

    async fn reencrypt_loop(&self, lease: &dyn LeaderLease) -> CoreResult<()> {
        let store = &self.key_store;
        let pause = self.reencrypt_pause;
        let mut passes = 0;
        // Documents that fail their integrity check cannot be re-sealed: each is recorded
        // and alerted once, left as it is, and the rest carry on.
        let mut damaged: std::collections::HashSet<i64> = std::collections::HashSet::new();
        while let Some(cursor) = store.reencrypt_cursor().await? {
            if !lease.held().await {
                tracing::warn!("this node lost the lease; re-encryption continues on its next holder");
                return Ok(());
            }
            let docs = self.document_store.documents_after(cursor, RESEAL_BATCH).await?;
            let Some(last) = docs.last().map(|d| d.seq) else {
                // A write that raced a batch may still be sealed under a retiring key: go
                // round again rather than destroy a key a document needs.
                if self.any_document_on_retiring_key(&damaged).await? {
                    passes += 1;
                    if passes > 3 {
                        return Err(CoreError::Conflict(
                            "documents still use retiring keys; re-encryption resumes at the next start",
                        ));
                    }
                    store.apply_reseal(Vec::new(), 0).await?;
                    continue;
                }
                let meta = RequestMeta::local("reencrypt");
                let details = json!({ "phase": "reencrypt_finished", "documents_failing_integrity": damaged.len() });
                let event = self.events.event(EventType::KeyRotate, None, &meta, true, details);
                let retired = store.finish_reencrypt(vec![event]).await?;
                self.keys.forget_all();
                tracing::info!(retired, "re-encryption finished");
                return Ok(());
            };
            let mut batch = Vec::new();
            for d in &docs {
                let Some(old) = KeyRing::key_id_of(&d.body) else { continue };
                let Some(rec) = store.get_key(old).await? else { continue };
                let Some(new) = rec.successor.clone() else { continue };
                let json = match self.keys.open_body(&d.collection, &d.id, &d.body, self.now()).await {
                    Ok(j) => j,
                    Err(CoreError::Integrity(why)) => {
                        if damaged.len() < MAX_DAMAGED_TRACKED && damaged.insert(d.seq) {
                            self.report_damaged(d, why).await?;
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let body = self.keys.seal_with(&d.collection, &d.id, &new, &json, self.now()).await?;
                batch.push(Reseal { seq: d.seq, version: d.version, body });
            }
            store.apply_reseal(batch, last).await?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(())
    }

    /// Audits and alerts a document that failed its integrity check during re-encryption.
    async fn report_damaged(&self, d: &rampart_store::DocumentRecord, why: &'static str) -> CoreResult<()> {
        let meta = RequestMeta::local("reencrypt");
        let details = json!({
            "collection": d.collection.as_str(),
            "document_id": d.id.as_str(),
            "reason": why,
            "phase": "reencrypt",
        });
        self.events.record_event(EventType::IntegrityError, None, &meta, false, details.clone()).await?;
        tracing::error!(collection = d.collection.as_str(), reason = why, "re-encryption skipped a damaged document");
        self.detection
            .raise(crate::security::Detection {
                breach_type: "integrity_error",
                severity: crate::security::Severity::High,
                dedup: format!("reencrypt:{}:{}", d.collection.as_str(), d.id.as_str()),
                details,
                ip: None,
                user: None,
                revoke_sessions: false,
                block_source: false,
            })
            .await
    }

    async fn any_document_on_retiring_key(&self, damaged: &std::collections::HashSet<i64>) -> CoreResult<bool> {
        let store = &self.key_store;
        let mut retiring: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        let mut after = 0;
        loop {
            let docs = self.document_store.documents_after(after, 1000).await?;
            let Some(last) = docs.last() else { return Ok(false) };
            after = last.seq;
            for d in docs.iter().filter(|d| !damaged.contains(&d.seq)) {
                let Some(id) = KeyRing::key_id_of(&d.body) else { continue };
                if !retiring.contains_key(id) {
                    let has_successor = store.get_key(id).await?.is_some_and(|k| k.successor.is_some());
                    retiring.insert(id.to_owned(), has_successor);
                }
                if retiring.get(id).copied().unwrap_or(false) {
                    return Ok(true);
                }
            }
        }
    }

    /// Rotates when the newest KEK version is older than `key_rotation_days`.
    pub async fn rotate_if_due(&self) -> CoreResult<bool> {
        let status = self.keys_status().await?;
        if self.now() < status.next_rotation_due {
            return Ok(false);
        }
        self.rotate_keys_as("system", &RequestMeta::local("scheduled-rotation"), false).await?;
        Ok(true)
    }

    /// Re-wraps every key under `new_master` and stores its check value, in one
    /// transaction (crash-safe: before commit the old key works, after it the new one).
    /// The caller then switches the key source; the running core must be reopened.
    pub async fn change_master(&self, new_master: &MasterKey) -> CoreResult<u64> {
        let old = self.keys.master();
        let new = Arc::new(
            MasterKey::from_base64(secrecy::ExposeSecret::expose_secret(&new_master.to_base64()))
                .map_err(CoreError::internal)?,
        );
        let meta = RequestMeta::local("cli");
        let event = self.events.event(EventType::MasterKeyChange, Some("local-cli"), &meta, true, json!({}));
        Ok(self
            .key_store
            .change_master(new.check_value().to_vec(), rewrapper(old, Arc::clone(&new), None), vec![event])
            .await?)
    }

    /// The master key in use, base64 (for `rotate-secrets` to keep the retired one for old
    /// backups).
    pub fn master_base64(&self) -> secrecy::SecretString {
        self.keys.master().to_base64()
    }

    /// A master-key change on a running core: waits for every wrap in flight, re-wraps every
    /// key and stores the new check value in one transaction, then swaps the key in memory,
    /// so no record wrapped under the old key is stored afterwards. Audited by `who`.
    pub async fn change_master_live(
        &self,
        access: &Authorized<perm::KeysRotate>,
        new_master: MasterKey,
    ) -> CoreResult<u64> {
        let who = access.who();
        let _alone = self.keys.changing_master().await;
        let old = self.keys.master();
        let new = Arc::new(new_master);
        let details = json!({ "live": true, "by": "rotate-secrets" });
        let user = who.username.to_string();
        let event = self.events.event(EventType::MasterKeyChange, Some(&user), &who.origin, true, details);
        let n = self
            .key_store
            .change_master(new.check_value().to_vec(), rewrapper(old, Arc::clone(&new), None), vec![event])
            .await?;
        self.keys.set_master(new);
        tracing::info!(keys = n, "master key changed");
        Ok(n)
    }
}
