use std::sync::Arc;

use rampart_crypto::{random_bytes, BlindIndexKey};
use rampart_store::{
    CollectionRecord, CollectionStore, DocumentQuery, DocumentRecord, DocumentStore, IndexEntry, Indexer, Store,
    StoreError, Topic,
};
use rampart_types::{CollectionName, DocumentId, FieldPath, SubjectId, Timestamp};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::access::Access;
use crate::audit::EventType;
use crate::events::Events;
use crate::keyring::KeyRing;
use crate::security::BreachDetection;
use crate::stamped_cache::StampedCache;
use crate::{Authorized, CoreError, CoreResult, Principal};
use rampart_types::perm;

const MAX_INDEXES: usize = 32;
const DEFAULT_PAGE: usize = 50;
/// Optimistic-concurrency retries for writes without `If-Match`.
const WRITE_RETRIES: usize = 5;
use crate::keyring::BODY_JSON;

pub struct CollectionSpec {
    pub name: String,
    pub indexes: Vec<String>,
    pub pii_fields: Vec<String>,
    pub retention_days: Option<u32>,
    pub encrypted: Option<bool>,
}

#[derive(Default)]
pub struct CollectionUpdate {
    pub indexes: Option<Vec<String>>,
    pub pii_fields: Option<Vec<String>>,
    /// `Some(None)` clears retention.
    pub retention_days: Option<Option<u32>>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct CollectionView {
    pub name: CollectionName,
    pub indexes: Vec<FieldPath>,
    pub pii_fields: Vec<FieldPath>,
    pub retention_days: Option<u32>,
    pub encrypted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<CollectionRecord> for CollectionView {
    fn from(c: CollectionRecord) -> Self {
        Self {
            name: c.name,
            indexes: c.indexes,
            pii_fields: c.pii_fields,
            retention_days: c.retention_days,
            encrypted: c.encrypted,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// A document as clients see it (SPEC section 3).
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct Document {
    pub id: DocumentId,
    pub version: u64,
    pub subject_id: Option<SubjectId>,
    pub data: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct DocumentList {
    pub documents: Vec<Document>,
    pub next_cursor: Option<String>,
}

/// A list request: `filters` are `field=value` pairs from the query string.
#[derive(Debug, Default)]
pub struct ListParams {
    pub filters: Vec<(String, String)>,
    pub subject_id: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

fn parse_fields(what: &str, fields: &[String]) -> CoreResult<Vec<FieldPath>> {
    let mut out: Vec<FieldPath> = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let path = FieldPath::parse(f).ok().filter(FieldPath::is_well_formed).ok_or_else(|| {
            CoreError::validation(format!("{what}[{i}]"), "must be a dotted field path like address.city")
        })?;
        if !out.contains(&path) {
            out.push(path);
        }
    }
    if out.len() > MAX_INDEXES {
        return Err(CoreError::validation(what, "at most 32 fields"));
    }
    Ok(out)
}

fn parse_collection(name: &str) -> CoreResult<CollectionName> {
    CollectionName::parse(name).map_err(|e| CoreError::validation("collection", e.to_string()))
}

fn parse_subject(s: &str) -> CoreResult<SubjectId> {
    SubjectId::parse(s).map_err(|e| CoreError::validation("subject_id", e.to_string()))
}

fn field_value<'a>(data: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.segments().try_fold(data, |v, seg| v.get(seg))
}

/// The text a scalar is indexed and queried by: strings as themselves, other scalars as JSON.
fn canonical(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

/// Collections and documents: sealing and opening bodies, blind-index queries, and the
/// audit of every read and write. Holds the collection and document stores and the key
/// ring, nothing else.
#[derive(Clone)]
pub struct Documents {
    collection_store: Arc<dyn CollectionStore>,
    document_store: Arc<dyn DocumentStore>,
    keys: Arc<KeyRing>,
    blind_index: Arc<BlindIndexKey>,
    events: Events,
    detection: BreachDetection,
    access: Access,
    max_page_size: usize,
    audit_reads: bool,
    records: Arc<StampedCache<(CollectionName, DocumentId), Arc<DocumentRecord>>>,
}

/// Sealed records kept in memory: at most this many, each at most `MAX_CACHED_BODY` bytes
/// (16 MiB in all).
const RECORD_CACHE_CAPACITY: usize = 1024;
const MAX_CACHED_BODY: usize = 16 * 1024;

/// What `Documents` is built from, beside the other services.
pub(crate) struct DocumentParts {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub blind_index: Arc<BlindIndexKey>,
    pub max_page_size: usize,
    pub audit_reads: bool,
}

impl Documents {
    pub(crate) fn new(parts: DocumentParts, events: Events, detection: BreachDetection, access: Access) -> Self {
        let DocumentParts { store, keys, blind_index, max_page_size, audit_reads } = parts;
        Self {
            records: Arc::new(StampedCache::new(store.invalidation(), Topic::Documents, RECORD_CACHE_CAPACITY)),
            collection_store: store.clone(),
            document_store: store,
            keys,
            blind_index,
            events,
            detection,
            access,
            max_page_size,
            audit_reads,
        }
    }

    fn now(&self) -> Timestamp {
        self.events.now()
    }

    /// Encodes a body: sealed under the subject's or collection's key when the collection
    /// is encrypted (the default), plain JSON otherwise.
    async fn encode_body(
        &self,
        c: &CollectionRecord,
        id: &DocumentId,
        subject: Option<&SubjectId>,
        data: &Value,
    ) -> CoreResult<Vec<u8>> {
        let json = serde_json::to_vec(data).map_err(CoreError::internal)?;
        if !c.encrypted {
            let mut out = Vec::with_capacity(json.len() + 1);
            out.push(BODY_JSON);
            out.extend_from_slice(&json);
            return Ok(out);
        }
        self.keys.seal_body(&self.blind_index, &c.name, id, subject, &json, self.now()).await
    }

    /// Opens a stored body. A body that fails authentication is never returned: the
    /// failure is audited and answered as an integrity error.
    async fn decode_body(&self, actor: &Principal, r: &DocumentRecord) -> CoreResult<Value> {
        Ok(self.decode_body_sized(actor, r).await?.0)
    }

    /// `decode_body`, with the size of the opened JSON (what exfiltration detection counts).
    async fn decode_body_sized(&self, actor: &Principal, r: &DocumentRecord) -> CoreResult<(Value, usize)> {
        let opened = self.keys.open_body(&r.collection, &r.id, &r.body, self.now()).await;
        let json = match opened {
            Ok(j) => j,
            Err(CoreError::Integrity(why)) => {
                let details = json!({ "collection": r.collection.as_str(), "id": r.id.as_str(), "reason": why });
                self.events
                    .record_event(
                        EventType::IntegrityError,
                        Some(actor.username.as_str()),
                        &actor.origin,
                        false,
                        details,
                    )
                    .await?;
                tracing::error!(
                    collection = r.collection.as_str(),
                    id = r.id.as_str(),
                    reason = why,
                    "document failed its integrity check"
                );
                return Err(CoreError::Integrity(why));
            }
            Err(e) => return Err(e),
        };
        let value = serde_json::from_slice(&json).map_err(|_| CoreError::Integrity("document body is not JSON"))?;
        Ok((value, json.len()))
    }

    /// Opens a record for a data-subject request (export, access summary): audited as an
    /// integrity error when it fails, and counted by exfiltration detection like any read.
    pub(crate) async fn open_for_subject(&self, actor: &Principal, r: &DocumentRecord) -> CoreResult<Value> {
        let (data, size) = self.decode_body_sized(actor, r).await?;
        self.detection.on_data_returned(actor, size as u64);
        Ok(data)
    }

    /// A stored (still sealed) record, from memory when no document was written since it
    /// was read (see `stamped_cache`); opened by the caller either way.
    async fn stored_document(&self, name: &CollectionName, id: &DocumentId) -> CoreResult<Arc<DocumentRecord>> {
        let key = (name.clone(), id.clone());
        if let Some(hit) = self.records.get(&key) {
            return Ok(hit);
        }
        let stamp = self.records.stamp();
        let record = self.document_store.get_document(name, id).await?.ok_or(CoreError::NotFound("document"))?;
        let record = Arc::new(record);
        if record.body.len() <= MAX_CACHED_BODY {
            self.records.put(key, stamp, Arc::clone(&record));
        }
        Ok(record)
    }

    async fn to_document(&self, actor: &Principal, r: &DocumentRecord) -> CoreResult<Document> {
        Ok(Document {
            data: self.decode_body(actor, r).await?,
            id: r.id.clone(),
            version: r.version,
            subject_id: r.subject_id.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }

    /// Unwraps every key the collection's documents use, so a reindex can open them inside
    /// the store's (synchronous) transaction.
    async fn reindexer(&self, c: &CollectionRecord) -> CoreResult<Indexer> {
        let mut keys = std::collections::HashMap::new();
        let mut after = None;
        loop {
            let q = DocumentQuery {
                collection: c.name.clone(),
                filters: vec![],
                subject_id: None,
                after_seq: after,
                limit: 500,
            };
            let page = self.document_store.query_documents(q).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            for d in &page {
                if let Some(id) = crate::keyring::KeyRing::key_id_of(&d.body) {
                    if !keys.contains_key(id) {
                        keys.insert(id.to_owned(), self.keys.load_sealing_key(id).await?);
                    }
                }
            }
        }
        let blind = Arc::clone(&self.blind_index);
        let coll = c.clone();
        Ok(Box::new(move |doc: &DocumentRecord| {
            let json = crate::keyring::open_with(&keys, doc).map_err(|e| e.to_string())?;
            let data: Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
            Ok(index_entries_with(&blind, &coll, &data))
        }))
    }
}

/// Bytes of document data handed to a client (what exfiltration detection counts).
fn json_size(v: &Value) -> u64 {
    serde_json::to_vec(v).map(|b| b.len() as u64).unwrap_or(0)
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

impl Documents {
    fn index_entries(&self, c: &CollectionRecord, data: &Value) -> Vec<IndexEntry> {
        index_entries_with(&self.blind_index, c, data)
    }

    fn collection_event(&self, actor: &Principal, action: &str, name: &CollectionName) -> rampart_store::AuditEvent {
        let details = json!({ "object": "collection", "action": action, "name": name.as_str() });
        self.events.event(EventType::ConfigChange, Some(actor.username.as_str()), &actor.origin, true, details)
    }

    fn query_event(
        &self,
        actor: &Principal,
        c: &CollectionName,
        operation: &str,
        extra: Value,
    ) -> rampart_store::AuditEvent {
        let mut details = json!({ "collection": c.as_str(), "operation": operation });
        if let (Some(d), Value::Object(more)) = (details.as_object_mut(), extra) {
            d.extend(more);
        }
        self.events.event(EventType::Query, Some(actor.username.as_str()), &actor.origin, true, details)
    }

    async fn collection(&self, name: &CollectionName) -> CoreResult<CollectionRecord> {
        self.collection_store.get_collection(name).await?.ok_or(CoreError::NotFound("collection"))
    }

    pub async fn create_collection(
        &self,
        access: &Authorized<perm::CollectionsCreate>,
        spec: CollectionSpec,
    ) -> CoreResult<CollectionView> {
        // The route names no collection: the grant is narrowed to the one in the body.
        let name = parse_collection(&spec.name)?;
        let access: Authorized<perm::CollectionsCreate> =
            self.access.authorize_also(access, Some(name.clone())).await?;
        let actor = access.who();
        let now = self.now();
        let record = CollectionRecord {
            name,
            indexes: parse_fields("indexes", &spec.indexes)?,
            pii_fields: parse_fields("pii_fields", &spec.pii_fields)?,
            retention_days: spec.retention_days,
            encrypted: spec.encrypted.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        if record.retention_days == Some(0) {
            return Err(CoreError::validation("retention_days", "must be at least 1"));
        }
        if !record.encrypted {
            // Plaintext at rest weakens a default: a configuration decision, not an editor's.
            self.access.authorize_also::<_, perm::ConfigWrite>(&access, None).await?;
        }
        let mut event = self.collection_event(actor, "create", &record.name);
        if let Some(d) = event.details.as_object_mut() {
            d.insert("encrypted".into(), json!(record.encrypted));
        }
        self.collection_store
            .create_collection(record.clone(), vec![event])
            .await
            .map_err(CoreError::about("collection"))?;
        Ok(record.into())
    }

    pub async fn list_collections(
        &self,
        access: &Authorized<perm::CollectionsRead>,
    ) -> CoreResult<Vec<CollectionView>> {
        let actor = access.who();
        let all = self.collection_store.list_collections().await?;
        Ok(all.into_iter().filter(|c| actor.sees_collection(&c.name)).map(Into::into).collect())
    }

    pub async fn get_collection(&self, access: &Authorized<perm::CollectionsRead>) -> CoreResult<CollectionView> {
        let name = access.collection()?.clone();
        Ok(self.collection(&name).await?.into())
    }

    /// Changing `indexes` rebuilds the collection's blind index in the same transaction.
    pub async fn update_collection(
        &self,
        access: &Authorized<perm::CollectionsUpdate>,
        up: CollectionUpdate,
    ) -> CoreResult<CollectionView> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        let mut c = self.collection(&name).await?;
        let mut reindex = false;
        if let Some(ix) = up.indexes {
            let ix = parse_fields("indexes", &ix)?;
            reindex = ix != c.indexes;
            c.indexes = ix;
        }
        if let Some(p) = up.pii_fields {
            c.pii_fields = parse_fields("pii_fields", &p)?;
        }
        if let Some(r) = up.retention_days {
            if r == Some(0) {
                return Err(CoreError::validation("retention_days", "must be at least 1"));
            }
            c.retention_days = r;
        }
        c.updated_at = self.now();
        let indexer = if reindex { Some(self.reindexer(&c).await?) } else { None };
        let event = self.collection_event(actor, "update", &c.name);
        self.collection_store
            .update_collection(c.clone(), indexer, vec![event])
            .await
            .map_err(CoreError::about("collection"))?;
        Ok(c.into())
    }

    pub async fn delete_collection(&self, access: &Authorized<perm::CollectionsDelete>) -> CoreResult<()> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        let event = self.collection_event(actor, "delete", &name);
        self.collection_store.delete_collection(&name, vec![event]).await.map_err(CoreError::about("collection"))
    }

    pub async fn insert_document(
        &self,
        access: &Authorized<perm::DocumentsWrite>,
        data: Value,
        subject_id: Option<String>,
    ) -> CoreResult<Document> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        if !data.is_object() {
            return Err(CoreError::validation("data", "must be a JSON object"));
        }
        let subject_id = subject_id.as_deref().map(parse_subject).transpose()?;
        let c = self.collection(&name).await?;
        let now = self.now();
        let id = DocumentId::from_random(random_bytes::<16>());
        let body = self.encode_body(&c, &id, subject_id.as_ref(), &data).await?;
        let record = DocumentRecord {
            collection: name,
            id,
            version: 1,
            subject_id,
            body,
            created_at: now,
            updated_at: now,
            seq: 0,
        };
        let index = self.index_entries(&c, &data);
        let event = self.query_event(actor, &record.collection, "insert", json!({ "id": record.id.as_str() }));
        let stored = self
            .document_store
            .insert_document(record, index, vec![event])
            .await
            .map_err(CoreError::about("collection"))?;
        Ok(Document {
            id: stored.id,
            version: stored.version,
            subject_id: stored.subject_id,
            data,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
        })
    }

    pub async fn get_document(&self, access: &Authorized<perm::DocumentsRead>, id: &str) -> CoreResult<Document> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        let id = DocumentId::parse(id).map_err(|_| CoreError::NotFound("document"))?;
        let doc = self.stored_document(&name, &id).await?;
        let doc = self.to_document(actor, &doc).await?;
        self.detection.on_data_returned(actor, json_size(&doc.data));
        if self.audit_reads {
            self.events.record(vec![self.query_event(actor, &name, "read", json!({ "id": id.as_str() }))]).await?;
        }
        Ok(doc)
    }

    /// Applies `change` to the current body and writes it back; `if_match` is the version
    /// the client last saw (412 when it is stale).
    pub async fn modify_document(
        &self,
        access: &Authorized<perm::DocumentsWrite>,
        id: &str,
        if_match: Option<u64>,
        change: DocumentChange,
    ) -> CoreResult<Document> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        let id = DocumentId::parse(id).map_err(|_| CoreError::NotFound("document"))?;
        let c = self.collection(&name).await?;
        let new_subject = match &change {
            DocumentChange::Replace { subject_id: Some(s), .. } => Some(parse_subject(s)?),
            _ => None,
        };
        for _ in 0..WRITE_RETRIES {
            let current = self.document_store.get_document(&name, &id).await?.ok_or(CoreError::NotFound("document"))?;
            if if_match.is_some_and(|v| v != current.version) {
                return Err(CoreError::PreconditionFailed);
            }
            let mut data = self.decode_body(actor, &current).await?;
            match &change {
                DocumentChange::Replace { data: new, .. } => data = new.clone(),
                DocumentChange::MergePatch(p) => merge_patch(&mut data, p),
            }
            if !data.is_object() {
                return Err(CoreError::validation("data", "must be a JSON object"));
            }
            let subject = new_subject.clone().or(current.subject_id.clone());
            let record = DocumentRecord {
                body: self.encode_body(&c, &id, subject.as_ref(), &data).await?,
                subject_id: subject,
                updated_at: self.now(),
                ..current.clone()
            };
            let index = self.index_entries(&c, &data);
            let op = match &change {
                DocumentChange::Replace { .. } => "replace",
                DocumentChange::MergePatch(_) => "patch",
            };
            let event =
                self.query_event(actor, &name, op, json!({ "id": id.as_str(), "version": current.version + 1 }));
            match self.document_store.replace_document(record, current.version, index, vec![event]).await {
                Ok(stored) => return self.to_document(actor, &stored).await,
                Err(StoreError::VersionMismatch) if if_match.is_none() => continue,
                Err(StoreError::VersionMismatch) => return Err(CoreError::PreconditionFailed),
                Err(e) => return Err(CoreError::about("document")(e)),
            }
        }
        Err(CoreError::Conflict("the document is being changed concurrently; retry"))
    }

    pub async fn delete_document(
        &self,
        access: &Authorized<perm::DocumentsDelete>,
        id: &str,
        if_match: Option<u64>,
    ) -> CoreResult<()> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        let id = DocumentId::parse(id).map_err(|_| CoreError::NotFound("document"))?;
        let event = self.query_event(actor, &name, "delete", json!({ "id": id.as_str() }));
        self.document_store
            .delete_document(&name, &id, if_match, vec![event])
            .await
            .map_err(CoreError::about("document"))
    }

    /// Equality queries on declared indexes, by blind-index token; cursor pagination.
    pub async fn list_documents(
        &self,
        access: &Authorized<perm::DocumentsRead>,
        p: ListParams,
    ) -> CoreResult<DocumentList> {
        let (actor, name) = (access.who(), access.collection()?.clone());
        let c = self.collection(&name).await?;
        let mut filters = Vec::with_capacity(p.filters.len());
        for (field, value) in &p.filters {
            let path = FieldPath::parse(field)
                .ok()
                .filter(|f| c.indexes.contains(f))
                .ok_or_else(|| CoreError::validation(field.clone(), "is not an indexed field of this collection"))?;
            let token = self.blind_index.token(name.as_str(), path.as_str(), value);
            filters.push(IndexEntry { field: path, token });
        }
        let limit = p.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > self.max_page_size {
            return Err(CoreError::validation("limit", format!("must be between 1 and {}", self.max_page_size)));
        }
        let after_seq = p
            .cursor
            .as_deref()
            .map(|s| {
                s.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| CoreError::validation("cursor", "is not a cursor returned by this API"))
            })
            .transpose()?;
        let query = DocumentQuery {
            collection: name.clone(),
            filters,
            subject_id: p.subject_id.as_deref().map(parse_subject).transpose()?,
            after_seq,
            // One extra row tells whether another page exists.
            limit: limit + 1,
        };
        let mut rows = self.document_store.query_documents(query).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(|r| r.seq.to_string()) } else { None };
        let mut documents = Vec::with_capacity(rows.len());
        for r in rows {
            documents.push(self.to_document(actor, &r).await?);
        }
        // Field names only: the queried values may be personal data.
        let fields: Vec<&str> = p.filters.iter().map(|(f, _)| f.as_str()).collect();
        let details = json!({ "filters": fields, "subject_filter": p.subject_id.is_some(), "count": documents.len() });
        if self.audit_reads {
            self.events.record(vec![self.query_event(actor, &name, "list", details)]).await?;
        }
        self.detection.on_data_returned(actor, documents.iter().map(|d| json_size(&d.data)).sum());
        Ok(DocumentList { documents, next_cursor })
    }
}

/// How a write changes a document.
pub enum DocumentChange {
    Replace { data: Value, subject_id: Option<String> },
    MergePatch(Value),
}

fn index_entries_with(key: &rampart_crypto::BlindIndexKey, c: &CollectionRecord, data: &Value) -> Vec<IndexEntry> {
    let mut out = Vec::new();
    for field in &c.indexes {
        let Some(v) = field_value(data, field) else {
            continue;
        };
        let values: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            if let Some(text) = canonical(v) {
                out.push(IndexEntry { field: field.clone(), token: key.token(c.name.as_str(), field.as_str(), &text) });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut doc, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }
}
