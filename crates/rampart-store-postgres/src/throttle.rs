//! The login delay shared by every node (`login_delays`). Each operation takes the bucket's
//! row lock with its first statement (a reservation creates the row in the same statement:
//! `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` locks and returns it either way), applies
//! the shared rule and writes the result before the lock is released at commit: concurrent
//! operations on one bucket, from any node, run one after the other.

use async_trait::async_trait;
use postgres::{Row, Transaction};
use rampart_store::{Admission, BucketKey, DelayBucket, DelayPolicy, StoreResult, ThrottleStore};
use rampart_types::Timestamp;

use crate::{internal, map_err, PostgresStore};

fn bucket_from_row(r: &Row) -> StoreResult<DelayBucket> {
    let holds = DelayBucket::decode_holds(r.get(3))
        .ok_or_else(|| internal(std::io::Error::other("stored login delay holds do not parse")))?;
    Ok(DelayBucket {
        failures: u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
        last_ms: r.get(1),
        next_allowed_ms: r.get(2),
        holds,
    })
}

/// Writes `b` back into the locked row, or deletes it when it holds nothing a fresh one
/// would not.
fn write_bucket(tx: &mut Transaction<'_>, bucket: &BucketKey, b: &DelayBucket) -> StoreResult<()> {
    let key = bucket.as_slice();
    if b.is_idle() {
        tx.execute("DELETE FROM login_delays WHERE bucket = $1", &[&key]).map_err(map_err)?;
        return Ok(());
    }
    tx.execute(
        "UPDATE login_delays SET failures = $2, last_ms = $3, next_allowed_ms = $4, holds = $5 WHERE bucket = $1",
        &[&key, &i64::from(b.failures), &b.last_ms, &b.next_allowed_ms, &b.encode_holds()],
    )
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl ThrottleStore for PostgresStore {
    async fn reserve_attempt(
        &self,
        bucket: BucketKey,
        hold: u64,
        now: Timestamp,
        policy: DelayPolicy,
    ) -> StoreResult<Admission> {
        self.write(Vec::new(), move |tx| {
            let key = bucket.as_slice();
            let fresh = DelayBucket::fresh(now);
            // Creates the row or locks the existing one (the no-op update takes its lock),
            // and returns it as it now stands.
            let row = tx
                .query_one(
                    "INSERT INTO login_delays AS d (bucket, failures, last_ms, next_allowed_ms, holds)
                     VALUES ($1, 0, $2, $2, $3)
                     ON CONFLICT (bucket) DO UPDATE SET last_ms = d.last_ms
                     RETURNING failures, last_ms, next_allowed_ms, holds",
                    &[&key, &fresh.last_ms, &fresh.encode_holds()],
                )
                .map_err(map_err)?;
            let stored = bucket_from_row(&row)?;
            let mut b = stored.clone();
            let answer = b.reserve(hold, now, &policy);
            if b != stored {
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
            let key = bucket.as_slice();
            let row = tx
                .query_opt(
                    "SELECT failures, last_ms, next_allowed_ms, holds FROM login_delays WHERE bucket = $1 FOR UPDATE",
                    &[&key],
                )
                .map_err(map_err)?;
            let Some(row) = row else {
                return Ok(());
            };
            let mut b = bucket_from_row(&row)?;
            b.settle(hold, failed_at, &policy);
            write_bucket(tx, &bucket, &b)
        })
        .await
    }

    async fn clear_attempts(&self, bucket: BucketKey) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| {
            tx.execute("DELETE FROM login_delays WHERE bucket = $1", &[&bucket.as_slice()]).map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn forget_quiet_buckets(&self, quiet_since: Timestamp) -> StoreResult<u64> {
        self.write(Vec::new(), move |tx| {
            tx.execute("DELETE FROM login_delays WHERE last_ms < $1", &[&quiet_since.as_millis()]).map_err(map_err)
        })
        .await
    }
}
