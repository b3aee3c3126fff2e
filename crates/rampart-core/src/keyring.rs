//! Data keys: created on first use, stored only wrapped by the current key-encrypting key,
//! cached unwrapped in a bounded map. Documents are sealed with AES-256-GCM under their
//! subject's key (if they name one) or their collection's key, with AAD binding the
//! ciphertext to collection, document id and key id.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use rampart_crypto::{BlindIndexKey, DataKey, MasterKey, SealingKey};
use rampart_store::{CacheInvalidation, KekVersion, KeyKind, KeyRecord, KeyStore, Store, StoreError, Topic};
use rampart_types::{CollectionName, DocumentId, SubjectId, Timestamp};

use crate::bounded::{BoundedMap, Evictable};
use crate::{CoreError, CoreResult};

/// Body format tags: plain JSON (unencrypted collections) and sealed JSON.
pub(crate) const BODY_JSON: u8 = 0;
pub(crate) const BODY_SEALED: u8 = 1;
const ROOT_OWNER: &str = "root";
const KEY_CACHE: usize = 10_000;

struct Cached {
    key: Arc<SealingKey>,
    used_ms: i64,
}

impl Evictable for Cached {
    fn eviction_score(&self, now: Timestamp) -> f64 {
        (now.as_millis() - self.used_ms) as f64
    }
}

pub(crate) struct KeyRing {
    /// Swapped in place by a live master-key change (`Keys::change_master_live`).
    master: std::sync::RwLock<Arc<MasterKey>>,
    /// Held shared from wrapping a key under the master until its record is stored, and
    /// alone by a master-key change: no record wrapped under the old master can be stored
    /// after the change re-wrapped every record.
    wrapping: tokio::sync::RwLock<()>,
    store: Arc<dyn KeyStore>,
    current_kek: AtomicU32,
    cache: BoundedMap<String, Cached>,
    /// Announces key changes made elsewhere (another node, the CLI): an erased subject's
    /// or a retired key must not outlive its record in this node's memory.
    feed: Arc<dyn CacheInvalidation>,
    seen_keys: AtomicU64,
}

pub(crate) struct RootKeys {
    pub audit: Arc<rampart_crypto::AuditMacKey>,
    pub blind: Arc<BlindIndexKey>,
    pub backup: Arc<rampart_crypto::PurposeKey>,
    pub device: Arc<rampart_crypto::DeviceKey>,
    pub rate_limit: Arc<rampart_crypto::PurposeKey>,
    pub login_delay: Arc<rampart_crypto::PurposeKey>,
    pub report: Arc<rampart_crypto::ReportSigner>,
}

fn new_key_id(prefix: &str) -> String {
    let id = rampart_crypto::random_id::<8>();
    format!("{prefix}-{id}")
}

fn doc_aad(c: &CollectionName, id: &DocumentId, key_id: &str) -> Vec<u8> {
    format!("rampart-doc\0{}\0{}\0{key_id}", c.as_str(), id.as_str()).into_bytes()
}

fn integrity(what: &'static str) -> CoreError {
    CoreError::Integrity(what)
}

impl KeyRing {
    /// Loads (or, on a new data directory, creates) the KEK version and the root key.
    pub async fn open(
        master: Arc<MasterKey>,
        store: Arc<dyn KeyStore>,
        feed: Arc<dyn CacheInvalidation>,
        now: Timestamp,
    ) -> CoreResult<(Self, RootKeys)> {
        let mut versions = store.kek_versions().await?;
        if versions.is_empty() {
            let v1 = KekVersion { version: 1, created_at: now };
            store.rotate_kek(v1.clone(), Box::new(|k| Ok(k.wrapped.clone())), vec![]).await?;
            versions.push(v1);
        }
        let current = versions.iter().map(|v| v.version).max().unwrap_or(1);
        let seen_keys = AtomicU64::new(feed.generation(Topic::Keys));
        let cache = BoundedMap::new(KEY_CACHE);
        let ring = Self {
            master: std::sync::RwLock::new(master),
            wrapping: tokio::sync::RwLock::new(()),
            store,
            current_kek: AtomicU32::new(current),
            cache,
            feed,
            seen_keys,
        };
        let root = match ring.store.current_key(KeyKind::Root, ROOT_OWNER).await? {
            Some(rec) => ring.unwrap(&rec)?,
            None => {
                let key = DataKey::generate();
                let rec = ring.wrap_new(KeyKind::Root, ROOT_OWNER, &key, now)?;
                match ring.store.insert_key(rec, vec![]).await {
                    Ok(()) => key,
                    Err(StoreError::AlreadyExists) => {
                        let rec = ring
                            .store
                            .current_key(KeyKind::Root, ROOT_OWNER)
                            .await?
                            .ok_or(integrity("root key missing"))?;
                        ring.unwrap(&rec)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let keys = RootKeys {
            audit: Arc::new(root.audit_key()),
            blind: Arc::new(root.blind_index_key()),
            backup: Arc::new(root.backup_key()),
            device: Arc::new(root.device_key()),
            rate_limit: Arc::new(root.rate_limit_key()),
            login_delay: Arc::new(root.login_delay_key()),
            report: Arc::new(root.report_signing_key().map_err(CoreError::internal)?),
        };
        Ok((ring, keys))
    }

    pub fn current_kek(&self) -> u32 {
        self.current_kek.load(Ordering::Acquire)
    }

    pub fn set_current_kek(&self, v: u32) {
        self.current_kek.store(v, Ordering::Release);
    }

    pub fn master(&self) -> Arc<MasterKey> {
        // A poisoned lock still holds a whole key (the swap is one assignment).
        Arc::clone(&self.master.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Taken shared by whatever wraps keys under the master and stores them.
    pub async fn wrapping(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.wrapping.read().await
    }

    /// Taken alone by a master-key change, for the re-wrap and the swap.
    pub async fn changing_master(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.wrapping.write().await
    }

    /// The master key every later wrap and unwrap uses (after the store switched to it).
    pub fn set_master(&self, new: Arc<MasterKey>) {
        *self.master.write().unwrap_or_else(std::sync::PoisonError::into_inner) = new;
    }

    fn wrap_new(&self, kind: KeyKind, owner: &str, key: &DataKey, now: Timestamp) -> CoreResult<KeyRecord> {
        let prefix = match kind {
            KeyKind::Root => "root",
            KeyKind::Collection => "col",
            KeyKind::Subject => "sub",
        };
        let key_id = new_key_id(prefix);
        let kek = self.master().kek(self.current_kek());
        Ok(KeyRecord {
            wrapped: kek.wrap(&key_id, key).map_err(CoreError::internal)?,
            key_id,
            kind,
            owner: owner.to_owned(),
            kek_version: kek.version(),
            created_at: now,
            successor: None,
        })
    }

    /// A new key record for `(kind, owner)` under the current KEK, with its plaintext key.
    pub fn successor_for(&self, old: &KeyRecord, now: Timestamp) -> CoreResult<KeyRecord> {
        self.wrap_new(old.kind, &old.owner, &DataKey::generate(), now)
    }

    pub fn unwrap(&self, rec: &KeyRecord) -> CoreResult<DataKey> {
        self.master()
            .kek(rec.kek_version)
            .unwrap(&rec.key_id, &rec.wrapped)
            .map_err(|_| integrity("a data key failed to unwrap"))
    }

    /// Drops the unwrapped keys when the store announced a key change since the last look,
    /// and follows a key-encrypting key rotated elsewhere; the change counts as seen only
    /// once that refresh succeeded. Returns the generation read, before the cache is used.
    async fn follow_key_changes(&self) -> CoreResult<u64> {
        let generation = self.feed.generation(Topic::Keys);
        if self.seen_keys.load(Ordering::Acquire) != generation {
            self.cache.clear();
            if let Some(v) = self.store.kek_versions().await?.iter().map(|v| v.version).max() {
                self.current_kek.fetch_max(v, Ordering::AcqRel);
            }
            self.seen_keys.store(generation, Ordering::Release);
        }
        Ok(generation)
    }

    async fn sealing_key(&self, key_id: &str, now: Timestamp) -> CoreResult<Arc<SealingKey>> {
        let generation = self.follow_key_changes().await?;
        let touch = |c: &mut Cached| {
            c.used_ms = now.as_millis();
            Arc::clone(&c.key)
        };
        if let Some(k) = self.cache.get_with(&key_id.to_owned(), touch) {
            return Ok(k);
        }
        let rec = self.store.get_key(key_id).await?.ok_or(integrity("the data key is gone (destroyed or erased)"))?;
        let key = Arc::new(self.unwrap(&rec)?.sealing_key().map_err(CoreError::internal)?);
        // A key destroyed while it was being read is used this once, never cached: the
        // clear that its change caused may already have run.
        if self.feed.generation(Topic::Keys) == generation {
            let stored = Arc::clone(&key);
            self.cache.with(&key_id.to_owned(), now, || Cached { key: stored, used_ms: now.as_millis() }, |_| ());
        }
        Ok(key)
    }

    /// The key `key_id`, unwrapped for work that holds it only briefly (a reindex inside
    /// one transaction); not cached.
    pub async fn load_sealing_key(&self, key_id: &str) -> CoreResult<SealingKey> {
        let rec = self.store.get_key(key_id).await?.ok_or(integrity("the data key is gone"))?;
        self.unwrap(&rec)?.sealing_key().map_err(CoreError::internal)
    }

    /// The current key id for `(kind, owner)`, creating the key on first use.
    async fn current(&self, kind: KeyKind, owner: &str, now: Timestamp) -> CoreResult<String> {
        self.follow_key_changes().await?;
        if let Some(rec) = self.store.current_key(kind, owner).await? {
            return Ok(rec.key_id);
        }
        let _wrapping = self.wrapping().await;
        let rec = self.wrap_new(kind, owner, &DataKey::generate(), now)?;
        let id = rec.key_id.clone();
        match self.store.insert_key(rec, vec![]).await {
            Ok(()) => Ok(id),
            // Someone else created it first: use theirs.
            Err(StoreError::AlreadyExists) => {
                Ok(self.store.current_key(kind, owner).await?.ok_or(integrity("data key vanished"))?.key_id)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops every unwrapped key from memory (after an erasure, so a destroyed key cannot
    /// outlive its record in the cache).
    pub fn forget_all(&self) {
        self.cache.clear();
    }

    /// Seals a document body under the subject's key, or the collection's.
    pub async fn seal_body(
        &self,
        blind: &BlindIndexKey,
        c: &CollectionName,
        id: &DocumentId,
        subject: Option<&SubjectId>,
        json: &[u8],
        now: Timestamp,
    ) -> CoreResult<Vec<u8>> {
        let key_id = match subject {
            Some(s) => self.current(KeyKind::Subject, &subject_hash(blind, s), now).await?,
            None => self.current(KeyKind::Collection, c.as_str(), now).await?,
        };
        self.seal_with(c, id, &key_id, json, now).await
    }

    pub async fn seal_with(
        &self,
        c: &CollectionName,
        id: &DocumentId,
        key_id: &str,
        json: &[u8],
        now: Timestamp,
    ) -> CoreResult<Vec<u8>> {
        let key = self.sealing_key(key_id, now).await?;
        let id_len = u8::try_from(key_id.len()).map_err(|_| integrity("key id too long"))?;
        let mut out = Vec::with_capacity(json.len() + key_id.len() + 32);
        out.push(BODY_SEALED);
        out.push(id_len);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&key.seal(&doc_aad(c, id, key_id), json).map_err(CoreError::internal)?);
        Ok(out)
    }

    /// The key id a sealed body names, if it is sealed.
    pub fn key_id_of(body: &[u8]) -> Option<&str> {
        let (&tag, rest) = body.split_first()?;
        if tag != BODY_SEALED {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        rest.get(..usize::from(len)).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Opens a stored body into JSON bytes. Any failure is an integrity error.
    pub async fn open_body(
        &self,
        c: &CollectionName,
        id: &DocumentId,
        body: &[u8],
        now: Timestamp,
    ) -> CoreResult<Vec<u8>> {
        match body.split_first() {
            Some((&BODY_JSON, json)) => Ok(json.to_vec()),
            Some((&BODY_SEALED, _)) => {
                let key_id = Self::key_id_of(body).ok_or(integrity("sealed body header damaged"))?;
                let sealed = body.get(2 + key_id.len()..).ok_or(integrity("sealed body truncated"))?;
                let key = self.sealing_key(key_id, now).await?;
                key.open(&doc_aad(c, id, key_id), sealed)
                    .map_err(|_| integrity("document ciphertext failed authentication"))
            }
            _ => Err(integrity("unknown document body format")),
        }
    }
}

pub(crate) const SECRETS_OWNER: &str = "_secrets";

impl KeyRing {
    /// Seals a small secret the store keeps (TOTP secrets, ...) under the secrets key, bound
    /// to `aad` (its owner and purpose): `[key id len][key id][nonce|ciphertext|tag]`.
    pub async fn seal_secret(&self, aad: &[u8], plain: &[u8], now: Timestamp) -> CoreResult<Vec<u8>> {
        let key_id = self.current(KeyKind::Collection, SECRETS_OWNER, now).await?;
        let key = self.sealing_key(&key_id, now).await?;
        let mut full_aad = aad.to_vec();
        full_aad.extend_from_slice(key_id.as_bytes());
        let mut out = vec![u8::try_from(key_id.len()).map_err(|_| integrity("key id too long"))?];
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&key.seal(&full_aad, plain).map_err(CoreError::internal)?);
        Ok(out)
    }

    pub async fn open_secret(&self, aad: &[u8], sealed: &[u8], now: Timestamp) -> CoreResult<Vec<u8>> {
        let (&len, rest) = sealed.split_first().ok_or(integrity("sealed secret truncated"))?;
        let key_id = rest
            .get(..usize::from(len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or(integrity("sealed secret header damaged"))?;
        let body = rest.get(usize::from(len)..).ok_or(integrity("sealed secret truncated"))?;
        let key = self.sealing_key(key_id, now).await?;
        let mut full_aad = aad.to_vec();
        full_aad.extend_from_slice(key_id.as_bytes());
        key.open(&full_aad, body).map_err(|_| integrity("a stored secret failed authentication"))
    }
}

/// Opens a body with already-unwrapped keys (inside a store transaction).
pub(crate) fn open_with(
    keys: &std::collections::HashMap<String, SealingKey>,
    doc: &rampart_store::DocumentRecord,
) -> CoreResult<Vec<u8>> {
    match doc.body.split_first() {
        Some((&BODY_JSON, json)) => Ok(json.to_vec()),
        Some((&BODY_SEALED, _)) => {
            let key_id = KeyRing::key_id_of(&doc.body).ok_or(integrity("sealed body header damaged"))?;
            let sealed = doc.body.get(2 + key_id.len()..).ok_or(integrity("sealed body truncated"))?;
            let key =
                keys.get(key_id).ok_or(integrity("document sealed with a key written after the reindex began"))?;
            key.open(&doc_aad(&doc.collection, &doc.id, key_id), sealed)
                .map_err(|_| integrity("document ciphertext failed authentication"))
        }
        _ => Err(integrity("unknown document body format")),
    }
}

/// The keyed hash a subject is known by in key records and the erasure ledger.
pub(crate) fn subject_hash(blind: &BlindIndexKey, s: &SubjectId) -> String {
    hex::encode(blind.token("", "subject", s.as_str()))
}

/// Unwraps the root key of a data directory (for offline tools such as `audit verify`).
pub async fn root_audit_key(store: &dyn Store, master: &MasterKey) -> CoreResult<rampart_crypto::AuditMacKey> {
    let rec = store.current_key(KeyKind::Root, ROOT_OWNER).await?.ok_or(integrity("root key missing"))?;
    let root = master
        .kek(rec.kek_version)
        .unwrap(&rec.key_id, &rec.wrapped)
        .map_err(|_| integrity("root key failed to unwrap"))?;
    Ok(root.audit_key())
}
