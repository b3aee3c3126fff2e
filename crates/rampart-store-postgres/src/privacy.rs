//! Crypto-shredding of data subjects and the erasure ledger.

use async_trait::async_trait;
use rampart_store::{Audit, ErasureEntry, PrivacyStore, StoreResult};
use rampart_types::{SubjectId, Timestamp};

use crate::{internal, map_err, PostgresStore};

#[async_trait]
impl PrivacyStore for PostgresStore {
    async fn erase_subject(
        &self,
        subject: &SubjectId,
        subject_hash: &str,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<u64> {
        // The hash is made by the server (hex); PostgreSQL text cannot hold NUL.
        if subject_hash.contains('\0') {
            return Err(internal(std::io::Error::other("a subject hash contains NUL")));
        }
        let (subject, hash) = (subject.as_str().to_owned(), subject_hash.to_owned());
        self.write(audit, move |tx| {
            // Key writers on every node wait (and are waited for): a successor key a
            // re-encryption start or a first write is adding for this subject right now is
            // committed and seen below, or comes after the erasure.
            tx.batch_execute("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE").map_err(map_err)?;
            tx.execute(
                "DELETE FROM doc_index WHERE doc_seq IN (SELECT seq FROM documents WHERE subject_id = $1)",
                &[&subject],
            )
            .map_err(map_err)?;
            let n = tx.execute("DELETE FROM documents WHERE subject_id = $1", &[&subject]).map_err(map_err)?;
            tx.execute("DELETE FROM data_keys WHERE kind = 'subject' AND owner = $1", &[&hash]).map_err(map_err)?;
            tx.execute(
                "INSERT INTO erasure_ledger (subject_hash, erased_at) VALUES ($1, $2)",
                &[&hash, &at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(n)
        })
        .await
    }

    async fn erasure_ledger(&self) -> StoreResult<Vec<ErasureEntry>> {
        self.read(|c| {
            let rows =
                c.query("SELECT subject_hash, erased_at FROM erasure_ledger ORDER BY seq", &[]).map_err(map_err)?;
            Ok(rows
                .iter()
                .map(|r| ErasureEntry { subject_hash: r.get(0), erased_at: Timestamp::from_millis(r.get(1)) })
                .collect())
        })
        .await
    }
}
