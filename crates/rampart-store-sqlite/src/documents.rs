use async_trait::async_trait;
use rampart_store::{
    Audit, CollectionRecord, CollectionStore, DocumentQuery, DocumentRecord, DocumentStore, IndexEntry, Indexer,
    StoreError, StoreResult,
};
use rampart_types::{CollectionName, DocumentId, FieldPath, SubjectId, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};

use crate::{internal, map_err, parse_col, SqliteStore};

const COLL_COLUMNS: &str = "name, indexes, pii_fields, retention_days, encrypted, created_at, updated_at";
const DOC_COLUMNS: &str = "d.seq, d.collection, d.id, d.version, d.subject_id, d.body, d.created_at, d.updated_at";

fn fields_from(text: String) -> rusqlite::Result<Vec<FieldPath>> {
    parse_col(text, CollectionRecord::decode_fields)
}

fn fields_to(fields: &[FieldPath]) -> StoreResult<String> {
    CollectionRecord::encode_fields(fields).map_err(internal)
}

fn coll_from_row(r: &Row<'_>) -> rusqlite::Result<CollectionRecord> {
    Ok(CollectionRecord {
        name: parse_col(r.get(0)?, CollectionName::parse)?,
        indexes: fields_from(r.get(1)?)?,
        pii_fields: fields_from(r.get(2)?)?,
        retention_days: r.get(3)?,
        encrypted: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        updated_at: Timestamp::from_millis(r.get(6)?),
    })
}

fn doc_from_row(r: &Row<'_>) -> rusqlite::Result<DocumentRecord> {
    let subject: Option<String> = r.get(4)?;
    Ok(DocumentRecord {
        seq: r.get(0)?,
        collection: parse_col(r.get(1)?, CollectionName::parse)?,
        id: parse_col(r.get(2)?, DocumentId::parse)?,
        version: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        subject_id: subject.map(|s| parse_col(s, SubjectId::parse)).transpose()?,
        body: r.get(5)?,
        created_at: Timestamp::from_millis(r.get(6)?),
        updated_at: Timestamp::from_millis(r.get(7)?),
    })
}

fn write_index(tx: &Transaction<'_>, collection: &str, seq: i64, index: &[IndexEntry]) -> StoreResult<()> {
    tx.execute("DELETE FROM doc_index WHERE doc_seq = ?1", params![seq]).map_err(map_err)?;
    let mut stmt = tx
        .prepare_cached("INSERT OR IGNORE INTO doc_index (collection, field, token, doc_seq) VALUES (?1, ?2, ?3, ?4)")
        .map_err(map_err)?;
    for e in index {
        stmt.execute(params![collection, e.field.as_str(), e.token.as_slice(), seq]).map_err(map_err)?;
    }
    Ok(())
}

fn get_doc_in(conn: &rusqlite::Connection, c: &str, id: &str) -> StoreResult<Option<DocumentRecord>> {
    conn.prepare_cached(&format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.collection = ?1 AND d.id = ?2"))
        .map_err(map_err)?
        .query_row(params![c, id], doc_from_row)
        .optional()
        .map_err(map_err)
}

pub(crate) fn documents_after(c: &rusqlite::Connection, seq: i64, limit: i64) -> StoreResult<Vec<DocumentRecord>> {
    let mut stmt = c
        .prepare_cached(&format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.seq > ?1 ORDER BY d.seq LIMIT ?2"))
        .map_err(map_err)?;
    let rows = stmt.query_map(params![seq, limit], doc_from_row).map_err(map_err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
}

fn version_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::VersionMismatch)
}

#[async_trait]
impl CollectionStore for SqliteStore {
    async fn create_collection(&self, c: CollectionRecord, audit: Audit) -> StoreResult<()> {
        let (idx, pii) = (fields_to(&c.indexes)?, fields_to(&c.pii_fields)?);
        self.write(audit, move |tx| {
            tx.execute(
                &format!("INSERT INTO collections ({COLL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    c.name.as_str(),
                    idx,
                    pii,
                    c.retention_days,
                    c.encrypted,
                    c.created_at.as_millis(),
                    c.updated_at.as_millis()
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn get_collection(&self, name: &CollectionName) -> StoreResult<Option<CollectionRecord>> {
        let name = name.as_str().to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {COLL_COLUMNS} FROM collections WHERE name = ?1"))
                .map_err(map_err)?
                .query_row(params![name], coll_from_row)
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn list_collections(&self) -> StoreResult<Vec<CollectionRecord>> {
        self.read(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {COLL_COLUMNS} FROM collections ORDER BY name")).map_err(map_err)?;
            let rows = stmt.query_map([], coll_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn update_collection(&self, c: CollectionRecord, reindex: Option<Indexer>, audit: Audit) -> StoreResult<()> {
        let (idx, pii) = (fields_to(&c.indexes)?, fields_to(&c.pii_fields)?);
        self.write(audit, move |tx| {
            let n = tx
                .execute(
                    "UPDATE collections SET indexes = ?2, pii_fields = ?3, retention_days = ?4,
                        encrypted = ?5, updated_at = ?6 WHERE name = ?1",
                    params![c.name.as_str(), idx, pii, c.retention_days, c.encrypted, c.updated_at.as_millis()],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            let Some(indexer) = reindex else {
                return Ok(());
            };
            tx.execute("DELETE FROM doc_index WHERE collection = ?1", params![c.name.as_str()]).map_err(map_err)?;
            let mut stmt = tx
                .prepare(&format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.collection = ?1"))
                .map_err(map_err)?;
            let docs = stmt.query_map(params![c.name.as_str()], doc_from_row).map_err(map_err)?;
            for doc in docs {
                let doc = doc.map_err(map_err)?;
                let entries = indexer(&doc).map_err(|e| internal(std::io::Error::other(e)))?;
                write_index(tx, c.name.as_str(), doc.seq, &entries)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_collection(&self, name: &CollectionName, audit: Audit) -> StoreResult<()> {
        let name = name.as_str().to_owned();
        self.write(audit, move |tx| {
            if let Some(hold) = crate::retention::hold_on_collection(tx, &name)? {
                return Err(StoreError::LegalHold(hold));
            }
            tx.execute("DELETE FROM doc_index WHERE collection = ?1", params![name]).map_err(map_err)?;
            tx.execute("DELETE FROM documents WHERE collection = ?1", params![name]).map_err(map_err)?;
            let n = tx.execute("DELETE FROM collections WHERE name = ?1", params![name]).map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DocumentStore for SqliteStore {
    async fn insert_document(
        &self,
        doc: DocumentRecord,
        index: Vec<IndexEntry>,
        audit: Audit,
    ) -> StoreResult<DocumentRecord> {
        self.write(audit, move |tx| {
            let exists = tx
                .query_row("SELECT 1 FROM collections WHERE name = ?1", params![doc.collection.as_str()], |_| Ok(()))
                .optional()
                .map_err(map_err)?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "INSERT INTO documents (collection, id, version, subject_id, body, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    doc.collection.as_str(),
                    doc.id.as_str(),
                    version_i64(doc.version)?,
                    doc.subject_id.as_ref().map(SubjectId::as_str),
                    doc.body,
                    doc.created_at.as_millis(),
                    doc.updated_at.as_millis()
                ],
            )
            .map_err(map_err)?;
            let seq = tx.last_insert_rowid();
            write_index(tx, doc.collection.as_str(), seq, &index)?;
            Ok(DocumentRecord { seq, ..doc })
        })
        .await
    }

    async fn get_document(&self, c: &CollectionName, id: &DocumentId) -> StoreResult<Option<DocumentRecord>> {
        let (c, id) = (c.as_str().to_owned(), id.as_str().to_owned());
        self.read(move |conn| get_doc_in(conn, &c, &id)).await
    }

    async fn replace_document(
        &self,
        doc: DocumentRecord,
        expected_version: u64,
        index: Vec<IndexEntry>,
        audit: Audit,
    ) -> StoreResult<DocumentRecord> {
        self.write(audit, move |tx| {
            let expected = version_i64(expected_version)?;
            let new_version = expected_version.checked_add(1).ok_or(StoreError::VersionMismatch)?;
            let seq: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM documents WHERE collection = ?1 AND id = ?2",
                    params![doc.collection.as_str(), doc.id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            let Some(seq) = seq else {
                return Err(StoreError::NotFound);
            };
            // A held document is evidence: not rewritten, and not moved to another subject
            // (which would take it out from under a subject hold).
            if let Some(hold) = crate::retention::hold_on_document(tx, seq)? {
                return Err(StoreError::LegalHold(hold));
            }
            let n = tx
                .execute(
                    "UPDATE documents SET version = ?3, subject_id = ?4, body = ?5, updated_at = ?6
                     WHERE seq = ?1 AND version = ?2",
                    params![
                        seq,
                        expected,
                        version_i64(new_version)?,
                        doc.subject_id.as_ref().map(SubjectId::as_str),
                        doc.body,
                        doc.updated_at.as_millis()
                    ],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::VersionMismatch);
            }
            write_index(tx, doc.collection.as_str(), seq, &index)?;
            get_doc_in(tx, doc.collection.as_str(), doc.id.as_str())?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn delete_document(
        &self,
        c: &CollectionName,
        id: &DocumentId,
        expected_version: Option<u64>,
        audit: Audit,
    ) -> StoreResult<()> {
        let (c, id) = (c.as_str().to_owned(), id.as_str().to_owned());
        self.write(audit, move |tx| {
            let current = get_doc_in(tx, &c, &id)?.ok_or(StoreError::NotFound)?;
            if expected_version.is_some_and(|v| v != current.version) {
                return Err(StoreError::VersionMismatch);
            }
            if let Some(hold) = crate::retention::hold_on_document(tx, current.seq)? {
                return Err(StoreError::LegalHold(hold));
            }
            tx.execute("DELETE FROM doc_index WHERE doc_seq = ?1", params![current.seq]).map_err(map_err)?;
            tx.execute("DELETE FROM documents WHERE seq = ?1", params![current.seq]).map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn query_documents(&self, q: DocumentQuery) -> StoreResult<Vec<DocumentRecord>> {
        self.read(move |conn| {
            let mut args: Vec<Value> = Vec::new();
            let mut sql = format!("SELECT {DOC_COLUMNS} FROM documents d");
            let mut conds = vec!["d.collection = ?".to_owned(), "d.seq > ?".to_owned()];
            // The first filter drives the scan through the index; the rest are point probes.
            let mut filters = q.filters.iter();
            let first = filters.next();
            if let Some(f) = first {
                sql.push_str(" JOIN doc_index i ON i.doc_seq = d.seq AND i.collection = ? AND i.field = ? AND i.token = ?");
                args.push(Value::Text(q.collection.as_str().to_owned()));
                args.push(Value::Text(f.field.as_str().to_owned()));
                args.push(Value::Blob(f.token.to_vec()));
            }
            args.push(Value::Text(q.collection.as_str().to_owned()));
            args.push(Value::Integer(q.after_seq.unwrap_or(0)));
            for f in filters {
                conds.push(
                    "EXISTS (SELECT 1 FROM doc_index x WHERE x.collection = d.collection AND x.field = ? AND x.token = ? AND x.doc_seq = d.seq)"
                        .to_owned(),
                );
                args.push(Value::Text(f.field.as_str().to_owned()));
                args.push(Value::Blob(f.token.to_vec()));
            }
            if let Some(s) = &q.subject_id {
                conds.push("d.subject_id = ?".to_owned());
                args.push(Value::Text(s.as_str().to_owned()));
            }
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
            sql.push_str(" ORDER BY d.seq LIMIT ?");
            args.push(Value::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
            let mut stmt = conn.prepare_cached(&sql).map_err(map_err)?;
            let rows = stmt.query_map(params_from_iter(args), doc_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn max_document_seq(&self) -> StoreResult<i64> {
        self.read(|c| c.query_row("SELECT coalesce(max(seq), 0) FROM documents", [], |r| r.get(0)).map_err(map_err))
            .await
    }

    async fn count_subject_documents(&self, subject: &SubjectId) -> StoreResult<u64> {
        let s = subject.as_str().to_owned();
        self.read(move |c| {
            c.query_row("SELECT count(*) FROM documents WHERE subject_id = ?1", params![s], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(map_err)
        })
        .await
    }

    async fn documents_after(&self, seq: i64, limit: usize) -> StoreResult<Vec<DocumentRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| documents_after(c, seq, limit)).await
    }

    async fn subject_documents(
        &self,
        subject: &SubjectId,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<DocumentRecord>> {
        let (s, limit) = (subject.as_str().to_owned(), i64::try_from(limit).unwrap_or(i64::MAX));
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {DOC_COLUMNS} FROM documents d WHERE d.subject_id = ?1 AND d.seq > ?2 ORDER BY d.seq LIMIT ?3"
                ))
                .map_err(map_err)?;
            let rows = stmt.query_map(params![s, after_seq, limit], doc_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn subject_collections(&self, subject: &SubjectId) -> StoreResult<Vec<(CollectionName, u64)>> {
        let s = subject.as_str().to_owned();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT collection, count(*) FROM documents WHERE subject_id = ?1 GROUP BY collection ORDER BY collection",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![s], |r| {
                    Ok((parse_col(r.get(0)?, CollectionName::parse)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }
}
