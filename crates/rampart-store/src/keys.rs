use async_trait::async_trait;
use rampart_types::Timestamp;

use crate::{Audit, StoreResult};

/// What a data key protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The root secret the audit, blind-index and backup keys are derived from.
    Root,
    Collection,
    Subject,
}

impl KeyKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Collection => "collection",
            Self::Subject => "subject",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "root" => Some(Self::Root),
            "collection" => Some(Self::Collection),
            "subject" => Some(Self::Subject),
            _ => None,
        }
    }
}

/// A data key as stored: only ever wrapped by a key-encrypting key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub kind: KeyKind,
    /// Collection name, or a keyed hash of the subject id (never the id itself).
    pub owner: String,
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
    pub created_at: Timestamp,
    /// Set while a re-encryption moves this key's records to the successor.
    pub successor: Option<String>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("kind", &self.kind)
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekVersion {
    pub version: u32,
    pub created_at: Timestamp,
}

/// Re-wraps one key under the new key-encrypting key (called inside the transaction).
pub type Rewrapper = Box<dyn Fn(&KeyRecord) -> Result<Vec<u8>, String> + Send>;

/// One re-sealed document body, applied only if the document is still at `version`.
#[derive(Debug, Clone)]
pub struct Reseal {
    pub seq: i64,
    pub version: u64,
    pub body: Vec<u8>,
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>>;
    /// The key new records of `(kind, owner)` are sealed with: not retired, no successor.
    async fn current_key(&self, kind: KeyKind, owner: &str) -> StoreResult<Option<KeyRecord>>;
    /// Inserts a new current key; `AlreadyExists` if `(kind, owner)` already has one
    /// (a concurrent insert won: read it back).
    async fn insert_key(&self, key: KeyRecord, audit: Audit) -> StoreResult<()>;
    /// Keys ordered by id after `after`.
    async fn list_keys(&self, after: &str, limit: usize) -> StoreResult<Vec<KeyRecord>>;
    async fn count_keys(&self) -> StoreResult<Vec<(KeyKind, u64)>>;
    async fn kek_versions(&self) -> StoreResult<Vec<KekVersion>>;
    /// Records KEK `version` and re-wraps every key under it, in one transaction.
    async fn rotate_kek(&self, version: KekVersion, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64>;
    /// Re-wraps every key and replaces the master key check value, in one transaction.
    async fn change_master(&self, kcv: Vec<u8>, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64>;
    /// Gives each current collection and subject key a successor (new records use it),
    /// and records a re-encryption job starting at document seq 0.
    async fn start_reencrypt(&self, successors: Vec<(String, KeyRecord)>, audit: Audit) -> StoreResult<()>;
    /// The running job's cursor (last document seq done), if a job is running.
    async fn reencrypt_cursor(&self) -> StoreResult<Option<i64>>;
    /// Applies re-sealed bodies and advances the cursor, in one transaction.
    async fn apply_reseal(&self, batch: Vec<Reseal>, cursor: i64) -> StoreResult<()>;
    /// Ends the job: retires (deletes) every key that has a successor.
    async fn finish_reencrypt(&self, audit: Audit) -> StoreResult<u64>;
}
