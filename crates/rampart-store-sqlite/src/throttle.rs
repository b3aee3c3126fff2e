//! The login delay's buckets (`login_delays`). A SQLite deployment has one node and keeps
//! its delay in memory; the table is here so that every backend holds every store trait.
//! Each operation runs in the writer's transaction, which holds SQLite's write lock: the
//! row is read, the shared rule applied and the result written with nothing in between.

use async_trait::async_trait;
use rampart_store::{Admission, BucketKey, DelayBucket, DelayPolicy, StoreResult, ThrottleStore};
use rampart_types::Timestamp;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::{internal, map_err, SqliteStore};

fn read_bucket(tx: &Transaction<'_>, bucket: &BucketKey) -> StoreResult<Option<DelayBucket>> {
    let row = tx
        .prepare_cached("SELECT failures, last_ms, next_allowed_ms, holds FROM login_delays WHERE bucket = ?1")
        .map_err(map_err)?
        .query_row(params![bucket.as_slice()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?))
        })
        .optional()
        .map_err(map_err)?;
    let Some((failures, last_ms, next_allowed_ms, holds)) = row else {
        return Ok(None);
    };
    let holds = DelayBucket::decode_holds(&holds)
        .ok_or_else(|| internal(std::io::Error::other("stored login delay holds do not parse")))?;
    let failures = u32::try_from(failures).unwrap_or(u32::MAX);
    Ok(Some(DelayBucket { failures, last_ms, next_allowed_ms, holds }))
}

/// Writes `b` back, or deletes the row when it holds nothing a fresh one would not.
fn write_bucket(tx: &Transaction<'_>, bucket: &BucketKey, b: &DelayBucket) -> StoreResult<()> {
    if b.is_idle() {
        tx.execute("DELETE FROM login_delays WHERE bucket = ?1", params![bucket.as_slice()]).map_err(map_err)?;
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO login_delays (bucket, failures, last_ms, next_allowed_ms, holds) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (bucket) DO UPDATE SET failures = excluded.failures, last_ms = excluded.last_ms,
             next_allowed_ms = excluded.next_allowed_ms, holds = excluded.holds",
    )
    .map_err(map_err)?
    .execute(params![bucket.as_slice(), i64::from(b.failures), b.last_ms, b.next_allowed_ms, b.encode_holds()])
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl ThrottleStore for SqliteStore {
    async fn reserve_attempt(
        &self,
        bucket: BucketKey,
        hold: u64,
        now: Timestamp,
        policy: DelayPolicy,
    ) -> StoreResult<Admission> {
        self.write(Vec::new(), move |tx| {
            let stored = read_bucket(tx, &bucket)?;
            let mut b = stored.clone().unwrap_or_else(|| DelayBucket::fresh(now));
            let answer = b.reserve(hold, now, &policy);
            if stored.as_ref() != Some(&b) {
                write_bucket(tx, &bucket, &b)?;
            }
            Ok(answer)
        })
        .await
    }

    async fn settle_attempt(
        &self,
        bucket: BucketKey,
        hold: u64,
        failed_at: Option<Timestamp>,
        policy: DelayPolicy,
    ) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| {
            let Some(mut b) = read_bucket(tx, &bucket)? else {
                return Ok(());
            };
            b.settle(hold, failed_at, &policy);
            write_bucket(tx, &bucket, &b)
        })
        .await
    }

    async fn clear_attempts(&self, bucket: BucketKey) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| {
            tx.execute("DELETE FROM login_delays WHERE bucket = ?1", params![bucket.as_slice()]).map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn forget_quiet_buckets(&self, quiet_since: Timestamp) -> StoreResult<u64> {
        self.write(Vec::new(), move |tx| {
            let n = tx
                .execute("DELETE FROM login_delays WHERE last_ms < ?1", params![quiet_since.as_millis()])
                .map_err(map_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}
