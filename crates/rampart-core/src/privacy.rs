//! Data-subject erasure (crypto-shredding) and the erasure ledger that every restore
//! re-applies, so an erased subject never comes back from a backup.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use rampart_crypto::BlindIndexKey;
use rampart_store::{DocumentStore, PrivacyStore, Store};
use rampart_types::{perm, SubjectId};
use serde_json::json;

use crate::audit::EventType;
use crate::backup::ErasureHook;
use crate::events::Events;
use crate::keyring::KeyRing;
use crate::{Authorized, CoreError, CoreResult, RequestMeta};

/// Holds the privacy store (erasure and its ledger), the document store (to find
/// subjects again after a restore) and the key ring (to drop destroyed keys from memory).
#[derive(Clone)]
pub struct Privacy {
    privacy_store: Arc<dyn PrivacyStore>,
    document_store: Arc<dyn DocumentStore>,
    keys: Arc<KeyRing>,
    blind_index: Arc<BlindIndexKey>,
    events: Events,
    erasure_hook: Arc<OnceLock<ErasureHook>>,
}

impl Privacy {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        keys: Arc<KeyRing>,
        blind_index: Arc<BlindIndexKey>,
        events: Events,
    ) -> Self {
        Self {
            privacy_store: store.clone(),
            document_store: store,
            keys,
            blind_index,
            events,
            erasure_hook: Arc::default(),
        }
    }

    fn now(&self) -> rampart_types::Timestamp {
        self.events.now()
    }

    /// Crypto-shredding: deletes the subject's documents in every collection, destroys
    /// the subject's data keys (so copies in backups cannot be opened) and appends a keyed
    /// hash of the subject id to the erasure ledger. Returns how many documents went.
    pub async fn erase_subject(&self, access: &Authorized<perm::GdprErase>, subject: &str) -> CoreResult<u64> {
        let who = access.who();
        let subject = SubjectId::parse(subject).map_err(|e| CoreError::validation("subject_id", e.to_string()))?;
        let hash = crate::keyring::subject_hash(&self.blind_index, &subject);
        let details = json!({ "subject_hash": hash });
        let event = self.events.event(EventType::SubjectErase, Some(who.username.as_str()), &who.origin, true, details);
        let n = self.privacy_store.erase_subject(&subject, &hash, self.now(), vec![event]).await?;
        self.keys.forget_all();
        if let Some(hook) = self.erasure_hook.get() {
            hook(&hash);
        }
        Ok(n)
    }
    /// Keyed hashes of every erased subject.
    pub async fn erasure_hashes(&self) -> CoreResult<HashSet<String>> {
        Ok(self.privacy_store.erasure_ledger().await?.into_iter().map(|e| e.subject_hash).collect())
    }

    /// Erases again, in this store, every subject whose hash is in `ledger`: used after a
    /// restore so an erased subject never comes back. Returns documents removed.
    pub async fn apply_erasures(&self, ledger: &HashSet<String>) -> CoreResult<u64> {
        let mut subjects = HashSet::new();
        let mut after = 0;
        loop {
            let docs = self.document_store.documents_after(after, 1000).await?;
            let Some(last) = docs.last() else { break };
            after = last.seq;
            for d in docs.iter().filter_map(|d| d.subject_id.as_ref()) {
                if ledger.contains(&crate::keyring::subject_hash(&self.blind_index, d)) {
                    subjects.insert(d.clone());
                }
            }
        }
        let meta = RequestMeta::local("restore");
        let mut removed = 0;
        for s in subjects {
            let hash = crate::keyring::subject_hash(&self.blind_index, &s);
            let details = json!({ "subject_hash": hash, "reason": "erasure_ledger_reapplied" });
            let event = self.events.event(EventType::SubjectErase, Some("local-cli"), &meta, true, details);
            removed += self.privacy_store.erase_subject(&s, &hash, self.now(), vec![event]).await?;
        }
        self.keys.forget_all();
        Ok(removed)
    }

    /// Called with each erased subject's hash, so a copy of the ledger can live beside the
    /// backups (restores into a fresh directory consult it).
    pub fn on_erasure(&self, hook: ErasureHook) {
        let _ = self.erasure_hook.set(hook);
    }
}
