#![allow(unused_variables)]
//! STUB: to be ported from rampart-store-sqlite.
use async_trait::async_trait;
use rampart_store::*;
use rampart_types::*;

use crate::PostgresStore;

#[async_trait]
impl CollectionStore for PostgresStore {
    async fn create_collection(&self, c: CollectionRecord, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn get_collection(&self, name: &CollectionName) -> StoreResult<Option<CollectionRecord>> {
        Err(crate::not_yet())
    }

    async fn list_collections(&self) -> StoreResult<Vec<CollectionRecord>> {
        Err(crate::not_yet())
    }

    async fn update_collection(&self, c: CollectionRecord, reindex: Option<Indexer>, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn delete_collection(&self, name: &CollectionName, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
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
        Err(crate::not_yet())
    }

    async fn get_document(&self, c: &CollectionName, id: &DocumentId) -> StoreResult<Option<DocumentRecord>> {
        Err(crate::not_yet())
    }

    async fn replace_document(
        &self,
        doc: DocumentRecord,
        expected_version: u64,
        index: Vec<IndexEntry>,
        audit: Audit,
    ) -> StoreResult<DocumentRecord> {
        Err(crate::not_yet())
    }

    async fn delete_document(
        &self,
        c: &CollectionName,
        id: &DocumentId,
        expected_version: Option<u64>,
        audit: Audit,
    ) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn query_documents(&self, q: DocumentQuery) -> StoreResult<Vec<DocumentRecord>> {
        Err(crate::not_yet())
    }

    async fn count_subject_documents(&self, subject: &SubjectId) -> StoreResult<u64> {
        Err(crate::not_yet())
    }

    async fn max_document_seq(&self) -> StoreResult<i64> {
        Err(crate::not_yet())
    }

    async fn documents_after(&self, seq: i64, limit: usize) -> StoreResult<Vec<DocumentRecord>> {
        Err(crate::not_yet())
    }
}
