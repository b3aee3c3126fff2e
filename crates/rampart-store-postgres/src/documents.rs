//! Collections and documents. Several nodes write to one database, so every
//! check-then-act holds the row it checks: a document insert or replace holds its
//! collection's row shared (a delete or a reindex of that collection waits for it, and it
//! for them), a delete holds the document's row while it compares the version.

use async_trait::async_trait;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{GenericClient, Row, Transaction};
use rampart_store::{
    Audit, CollectionRecord, CollectionStore, DocumentQuery, DocumentRecord, DocumentStore, IndexEntry, Indexer,
    StoreError, StoreResult,
};
use rampart_types::{CollectionName, DocumentId, FieldPath, SubjectId, Timestamp};

use crate::{big, internal, map_err, parse_col, PostgresStore};

const COLL_COLUMNS: &str = "name, indexes, pii_fields, retention_days, encrypted, created_at, updated_at";
const DOC_COLUMNS: &str = "d.seq, d.collection, d.id, d.version, d.subject_id, d.body, d.created_at, d.updated_at";

fn fields_to(fields: &[FieldPath]) -> StoreResult<String> {
    CollectionRecord::encode_fields(fields).map_err(internal)
}

fn coll_from_row(r: &Row) -> StoreResult<CollectionRecord> {
    let retention: Option<i64> = r.get(3);
    Ok(CollectionRecord {
        name: parse_col(r.get(0), CollectionName::parse)?,
        indexes: parse_col(r.get(1), CollectionRecord::decode_fields)?,
        pii_fields: parse_col(r.get(2), CollectionRecord::decode_fields)?,
        retention_days: retention
            .map(|d| u32::try_from(d).map_err(|_| internal(std::io::Error::other("stored retention out of range"))))
            .transpose()?,
        encrypted: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
        updated_at: Timestamp::from_millis(r.get(6)),
    })
}

fn doc_from_row(r: &Row) -> StoreResult<DocumentRecord> {
    let subject: Option<&str> = r.get(4);
    Ok(DocumentRecord {
        seq: r.get(0),
        collection: parse_col(r.get(1), CollectionName::parse)?,
        id: parse_col(r.get(2), DocumentId::parse)?,
        version: u64::try_from(r.get::<_, i64>(3)).unwrap_or(0),
        subject_id: subject.map(|s| parse_col(s, SubjectId::parse)).transpose()?,
        body: r.get(5),
        created_at: Timestamp::from_millis(r.get(6)),
        updated_at: Timestamp::from_millis(r.get(7)),
    })
}

fn version_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::VersionMismatch)
}

fn write_index(tx: &mut Transaction<'_>, collection: &str, seq: i64, index: &[IndexEntry]) -> StoreResult<()> {
    tx.execute("DELETE FROM doc_index WHERE doc_seq = $1", &[&seq]).map_err(map_err)?;
    if index.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare(
            "INSERT INTO doc_index (collection, field, token, doc_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .map_err(map_err)?;
    for e in index {
        tx.execute(&insert, &[&collection, &e.field.as_str(), &e.token.as_slice(), &seq]).map_err(map_err)?;
    }
    Ok(())
}

fn get_doc_in(c: &mut impl GenericClient, collection: &str, id: &str) -> StoreResult<Option<DocumentRecord>> {
    let sql = format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.collection = $1 AND d.id = $2");
    c.query_opt(&sql, &[&collection, &id]).map_err(map_err)?.as_ref().map(doc_from_row).transpose()
}

/// Holds the collection's row shared until commit, so that a delete or a reindex of the
/// collection on any node waits for this write (and this write for them); `NotFound` when
/// the collection does not exist (or was deleted while this write waited).
fn hold_collection(tx: &mut Transaction<'_>, collection: &str) -> StoreResult<()> {
    match tx.query_opt("SELECT 1 FROM collections WHERE name = $1 FOR SHARE", &[&collection]).map_err(map_err)? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound),
    }
}

/// Documents after `seq` in seq order, with no row of a lower seq still to commit: the
/// scan waits for the inserts in flight (see `rampart_document_seq_gate` in the schema),
/// so a caller paging with the last seq it saw never passes a row committed late.
fn documents_after(c: &mut postgres::Client, seq: i64, limit: i64) -> StoreResult<Vec<DocumentRecord>> {
    let mut tx = c.transaction().map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:document-seqs'))", &[]).map_err(map_err)?;
    let sql = format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.seq > $1 ORDER BY d.seq LIMIT $2");
    let docs = tx.query(&sql, &[&seq, &limit]).map_err(map_err)?.iter().map(doc_from_row).collect();
    tx.commit().map_err(map_err)?;
    docs
}

#[async_trait]
impl CollectionStore for PostgresStore {
    async fn create_collection(&self, c: CollectionRecord, audit: Audit) -> StoreResult<()> {
        let (idx, pii) = (fields_to(&c.indexes)?, fields_to(&c.pii_fields)?);
        self.write(audit, move |tx| {
            tx.execute(
                &format!("INSERT INTO collections ({COLL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &c.name.as_str(),
                    &idx,
                    &pii,
                    &c.retention_days.map(i64::from),
                    &c.encrypted,
                    &c.created_at.as_millis(),
                    &c.updated_at.as_millis(),
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
            let sql = format!("SELECT {COLL_COLUMNS} FROM collections WHERE name = $1");
            c.query_opt(&sql, &[&name]).map_err(map_err)?.as_ref().map(coll_from_row).transpose()
        })
        .await
    }

    async fn list_collections(&self) -> StoreResult<Vec<CollectionRecord>> {
        self.read(|c| {
            // `name` is COLLATE "C": byte order, whatever the database's collation.
            let sql = format!("SELECT {COLL_COLUMNS} FROM collections ORDER BY name");
            c.query(&sql, &[]).map_err(map_err)?.iter().map(coll_from_row).collect()
        })
        .await
    }

    async fn update_collection(&self, c: CollectionRecord, reindex: Option<Indexer>, audit: Audit) -> StoreResult<()> {
        let (idx, pii) = (fields_to(&c.indexes)?, fields_to(&c.pii_fields)?);
        self.write(audit, move |tx| {
            let name = c.name.as_str();
            // The update locks the row first: document writes in flight on any node (which
            // hold it shared) commit before the reindex reads, and later ones wait for it.
            let n = tx
                .execute(
                    "UPDATE collections SET indexes = $2, pii_fields = $3, retention_days = $4,
                        encrypted = $5, updated_at = $6 WHERE name = $1",
                    &[&name, &idx, &pii, &c.retention_days.map(i64::from), &c.encrypted, &c.updated_at.as_millis()],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            let Some(indexer) = reindex else {
                return Ok(());
            };
            tx.execute("DELETE FROM doc_index WHERE collection = $1", &[&name]).map_err(map_err)?;
            let sql = format!("SELECT {DOC_COLUMNS} FROM documents d WHERE d.collection = $1 ORDER BY d.seq");
            let docs = tx.query(&sql, &[&name]).map_err(map_err)?;
            for row in &docs {
                let doc = doc_from_row(row)?;
                let entries = indexer(&doc).map_err(|e| internal(std::io::Error::other(e)))?;
                write_index(tx, name, doc.seq, &entries)?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_collection(&self, name: &CollectionName, audit: Audit) -> StoreResult<()> {
        let name = name.as_str().to_owned();
        self.write(audit, move |tx| {
            // The holds gate before the row (the order a hold placement takes them in).
            crate::retention::lock_holds_shared(tx)?;
            // Locked first: inserts in flight on other nodes (holding the row shared) commit
            // before the documents are deleted, and later ones find the collection gone.
            let exists =
                tx.query_opt("SELECT 1 FROM collections WHERE name = $1 FOR UPDATE", &[&name]).map_err(map_err)?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            if let Some(hold) = crate::retention::hold_on_collection(tx, &name)? {
                return Err(StoreError::LegalHold(hold));
            }
            tx.execute("DELETE FROM doc_index WHERE collection = $1", &[&name]).map_err(map_err)?;
            tx.execute("DELETE FROM documents WHERE collection = $1", &[&name]).map_err(map_err)?;
            tx.execute("DELETE FROM collections WHERE name = $1", &[&name]).map_err(map_err)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DocumentStore for PostgresStore {
    async fn insert_document(
        &self,
        doc: DocumentRecord,
        index: Vec<IndexEntry>,
        audit: Audit,
    ) -> StoreResult<DocumentRecord> {
        self.write(audit, move |tx| {
            let collection = doc.collection.as_str();
            hold_collection(tx, collection)?;
            let row = tx
                .query_one(
                    "INSERT INTO documents (collection, id, version, subject_id, body, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING seq",
                    &[
                        &collection,
                        &doc.id.as_str(),
                        &version_i64(doc.version)?,
                        &doc.subject_id.as_ref().map(SubjectId::as_str),
                        &doc.body,
                        &doc.created_at.as_millis(),
                        &doc.updated_at.as_millis(),
                    ],
                )
                .map_err(|e| {
                    // Only if the collection went between the check and the insert.
                    if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                        StoreError::NotFound
                    } else {
                        map_err(e)
                    }
                })?;
            let seq: i64 = row.get(0);
            write_index(tx, collection, seq, &index)?;
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
            let new_version = version_i64(expected_version.checked_add(1).ok_or(StoreError::VersionMismatch)?)?;
            let (collection, id) = (doc.collection.as_str(), doc.id.as_str());
            hold_collection(tx, collection)?;
            // A held document is evidence: not rewritten, and not moved to another subject
            // (which would take it out from under a subject hold). The row is locked first,
            // so the hold is judged on the row the update changes.
            let current = tx
                .query_opt(
                    "SELECT seq FROM documents WHERE collection = $1 AND id = $2 FOR UPDATE",
                    &[&collection, &id],
                )
                .map_err(map_err)?;
            if let Some(row) = current {
                if let Some(hold) = crate::retention::hold_on_document(tx, row.get(0))? {
                    return Err(StoreError::LegalHold(hold));
                }
            }
            // Compare-and-set in one statement: a concurrent replace on another node holds
            // the row until it commits, and then this one sees its version.
            let updated = tx
                .query_opt(
                    "UPDATE documents SET version = $4, subject_id = $5, body = $6, updated_at = $7
                     WHERE collection = $1 AND id = $2 AND version = $3 RETURNING seq",
                    &[
                        &collection,
                        &id,
                        &expected,
                        &new_version,
                        &doc.subject_id.as_ref().map(SubjectId::as_str),
                        &doc.body,
                        &doc.updated_at.as_millis(),
                    ],
                )
                .map_err(map_err)?;
            let Some(row) = updated else {
                return Err(match get_doc_in(tx, collection, id)? {
                    Some(_) => StoreError::VersionMismatch,
                    None => StoreError::NotFound,
                });
            };
            write_index(tx, collection, row.get(0), &index)?;
            get_doc_in(tx, collection, id)?.ok_or(StoreError::NotFound)
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
            // The row stays locked from the version check to the delete: a replace on
            // another node either committed before (its version is seen) or waits.
            let row = tx
                .query_opt(
                    "SELECT seq, version FROM documents WHERE collection = $1 AND id = $2 FOR UPDATE",
                    &[&c, &id],
                )
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
            let (seq, version): (i64, i64) = (row.get(0), row.get(1));
            if expected_version.is_some_and(|v| i64::try_from(v).ok() != Some(version)) {
                return Err(StoreError::VersionMismatch);
            }
            if let Some(hold) = crate::retention::hold_on_document(tx, seq)? {
                return Err(StoreError::LegalHold(hold));
            }
            tx.execute("DELETE FROM doc_index WHERE doc_seq = $1", &[&seq]).map_err(map_err)?;
            tx.execute("DELETE FROM documents WHERE seq = $1", &[&seq]).map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn query_documents(&self, q: DocumentQuery) -> StoreResult<Vec<DocumentRecord>> {
        self.read(move |conn| {
            let collection = q.collection.as_str().to_owned();
            let after = q.after_seq.unwrap_or(0);
            let limit = big(q.limit);
            let fields: Vec<String> = q.filters.iter().map(|f| f.field.as_str().to_owned()).collect();
            let tokens: Vec<Vec<u8>> = q.filters.iter().map(|f| f.token.to_vec()).collect();
            let subject = q.subject_id.as_ref().map(|s| s.as_str().to_owned());
            let mut args: Vec<&(dyn ToSql + Sync)> = vec![&collection, &after];
            let mut sql = format!("SELECT {DOC_COLUMNS} FROM documents d");
            let mut conds = vec!["d.collection = $1".to_owned(), "d.seq > $2".to_owned()];
            // The first filter drives the scan through the index; the rest are point probes.
            for (i, (field, token)) in fields.iter().zip(&tokens).enumerate() {
                let (f, t) = (args.len() + 1, args.len() + 2);
                if i == 0 {
                    sql.push_str(&format!(
                        " JOIN doc_index i ON i.doc_seq = d.seq AND i.collection = $1 AND i.field = ${f} AND i.token = ${t}"
                    ));
                } else {
                    conds.push(format!(
                        "EXISTS (SELECT 1 FROM doc_index x WHERE x.collection = d.collection AND x.field = ${f} \
                         AND x.token = ${t} AND x.doc_seq = d.seq)"
                    ));
                }
                args.push(field);
                args.push(token);
            }
            if let Some(s) = &subject {
                conds.push(format!("d.subject_id = ${}", args.len() + 1));
                args.push(s);
            }
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
            sql.push_str(&format!(" ORDER BY d.seq LIMIT ${}", args.len() + 1));
            args.push(&limit);
            conn.query(&sql, &args).map_err(map_err)?.iter().map(doc_from_row).collect()
        })
        .await
    }

    async fn count_subject_documents(&self, subject: &SubjectId) -> StoreResult<u64> {
        let s = subject.as_str().to_owned();
        self.read(move |c| {
            let n: i64 =
                c.query_one("SELECT count(*) FROM documents WHERE subject_id = $1", &[&s]).map_err(map_err)?.get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn max_document_seq(&self) -> StoreResult<i64> {
        self.read(|c| Ok(c.query_one("SELECT coalesce(max(seq), 0) FROM documents", &[]).map_err(map_err)?.get(0)))
            .await
    }

    async fn documents_after(&self, seq: i64, limit: usize) -> StoreResult<Vec<DocumentRecord>> {
        let limit = big(limit);
        self.read(move |c| documents_after(c, seq, limit)).await
    }

    async fn subject_documents(
        &self,
        subject: &SubjectId,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<DocumentRecord>> {
        let (s, limit) = (subject.as_str().to_owned(), big(limit));
        self.read(move |c| {
            // Seqs are handed out before commit: wait for inserts in flight, as
            // `documents_after` does, so a page never skips one that commits later.
            let mut tx = c.transaction().map_err(map_err)?;
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:document-seqs'))", &[]).map_err(map_err)?;
            let sql = format!(
                "SELECT {DOC_COLUMNS} FROM documents d WHERE d.subject_id = $1 AND d.seq > $2 ORDER BY d.seq LIMIT $3"
            );
            let docs = tx.query(&sql, &[&s, &after_seq, &limit]).map_err(map_err)?.iter().map(doc_from_row).collect();
            tx.commit().map_err(map_err)?;
            docs
        })
        .await
    }

    async fn subject_collections(&self, subject: &SubjectId) -> StoreResult<Vec<(CollectionName, u64)>> {
        let s = subject.as_str().to_owned();
        self.read(move |c| {
            c.query(
                "SELECT collection, count(*) FROM documents WHERE subject_id = $1 GROUP BY collection ORDER BY collection",
                &[&s],
            )
            .map_err(map_err)?
            .iter()
            .map(|r| Ok((parse_col(r.get(0), CollectionName::parse)?, u64::try_from(r.get::<_, i64>(1)).unwrap_or(0))))
            .collect()
        })
        .await
    }
}
