//! Crypto-shredding of data subjects and the erasure ledger.

use async_trait::async_trait;
use rampart_store::{Audit, ErasureEntry, MetaStore, PrivacyStore, StoreResult};
use rampart_types::{SubjectId, Timestamp};
use rusqlite::params;

use crate::{map_err, SqliteStore};

#[async_trait]
impl PrivacyStore for SqliteStore {
    async fn erase_subject(
        &self,
        subject: &SubjectId,
        subject_hash: &str,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<u64> {
        let (subject, hash) = (subject.as_str().to_owned(), subject_hash.to_owned());
        let erased = self
            .write(audit, move |tx| {
                tx.execute(
                    "DELETE FROM doc_index WHERE doc_seq IN (SELECT seq FROM documents WHERE subject_id = ?1)",
                    params![subject],
                )
                .map_err(map_err)?;
                let n = tx.execute("DELETE FROM documents WHERE subject_id = ?1", params![subject]).map_err(map_err)?;
                tx.execute(
                    "UPDATE data_keys SET wrapped = zeroblob(length(wrapped)) WHERE kind = 'subject' AND owner = ?1",
                    params![hash],
                )
                .map_err(map_err)?;
                tx.execute("DELETE FROM data_keys WHERE kind = 'subject' AND owner = ?1", params![hash])
                    .map_err(map_err)?;
                tx.execute(
                    "INSERT INTO erasure_ledger (subject_hash, erased_at) VALUES (?1, ?2)",
                    params![hash, at.as_millis()],
                )
                .map_err(map_err)?;
                Ok(n as u64)
            })
            .await?;
        // Push the erased pages out of the WAL too (secure_delete already zeroed them in
        // the main file). Best effort: readers may hold the WAL for a moment.
        let _ = self.close().await;
        Ok(erased)
    }

    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT subject_hash, erased_at FROM erasure_ledger ORDER BY seq").map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ErasureEntry { subject_hash: r.get(0)?, erased_at: Timestamp::from_millis(r.get(1)?) })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }
}
