//! Data keys, KEK versions and re-encryption jobs. Across nodes: one current key per
//! (kind, owner) is a partial unique index; a re-wrap of every key locks the table against
//! writers first, so no key inserted meanwhile stays wrapped the old way; starting and
//! ending a re-encryption job are serialised by an advisory lock.

use async_trait::async_trait;
use postgres::{Row, Transaction};
use rampart_store::{Audit, KekVersion, KeyKind, KeyRecord, KeyStore, Reseal, Rewrapper, StoreError, StoreResult};
use rampart_types::Timestamp;

use crate::{big, internal, map_err, PostgresStore};

const COLUMNS: &str = "key_id, kind, owner, kek_version, wrapped, created_at, successor";
const REENCRYPT_CURSOR: &str = rampart_store::transfer::REENCRYPT_CURSOR_KEY;
const KCV_META: &str = "master_key_check_value";

fn from_row(r: &Row) -> StoreResult<KeyRecord> {
    let kind: &str = r.get(1);
    Ok(KeyRecord {
        key_id: r.get(0),
        kind: KeyKind::parse(kind).ok_or_else(|| internal(std::io::Error::other("stored key kind unknown")))?,
        owner: r.get(2),
        kek_version: kek_version(r.get(3))?,
        wrapped: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
        successor: r.get(6),
    })
}

fn kek_version(v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| internal(std::io::Error::other("stored KEK version out of range")))
}

/// Key ids and owners are made by the server, never by clients; PostgreSQL text cannot
/// hold NUL, and no stored key has one, so a lookup with one finds nothing.
fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// A key the server tried to store with a NUL in a text field: a bug, refused clearly.
fn check_storable(k: &KeyRecord) -> StoreResult<()> {
    if storable(&k.key_id) && storable(&k.owner) && k.successor.as_deref().is_none_or(storable) {
        Ok(())
    } else {
        Err(internal(std::io::Error::other("a key id or owner contains NUL")))
    }
}

fn insert(tx: &mut Transaction<'_>, k: &KeyRecord) -> StoreResult<()> {
    check_storable(k)?;
    tx.execute(
        &format!("INSERT INTO data_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        &[
            &k.key_id,
            &k.kind.as_str(),
            &k.owner,
            &i64::from(k.kek_version),
            &k.wrapped,
            &k.created_at.as_millis(),
            &k.successor,
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Re-wraps every key with `rewrap`, in the caller's transaction. The table is locked
/// against writers (not readers) first: key inserts in flight on other nodes commit before
/// the keys are read, and later ones wait until this transaction has committed.
fn rewrap_all(tx: &mut Transaction<'_>, rewrap: &Rewrapper, version: Option<u32>) -> StoreResult<u64> {
    tx.batch_execute("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE").map_err(map_err)?;
    let keys = tx
        .query(&format!("SELECT {COLUMNS} FROM data_keys ORDER BY key_id"), &[])
        .map_err(map_err)?
        .iter()
        .map(from_row)
        .collect::<StoreResult<Vec<_>>>()?;
    let update =
        tx.prepare("UPDATE data_keys SET wrapped = $2, kek_version = $3 WHERE key_id = $1").map_err(map_err)?;
    for k in &keys {
        let wrapped = rewrap(k).map_err(|e| internal(std::io::Error::other(e)))?;
        let v = i64::from(version.unwrap_or(k.kek_version));
        tx.execute(&update, &[&k.key_id, &wrapped, &v]).map_err(map_err)?;
    }
    Ok(u64::try_from(keys.len()).unwrap_or(u64::MAX))
}

/// Serialises starting and finishing re-encryption jobs across nodes.
fn lock_reencrypt(tx: &mut Transaction<'_>) -> StoreResult<()> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:reencrypt'))", &[]).map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        if !storable(key_id) {
            return Ok(None);
        }
        let id = key_id.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM data_keys WHERE key_id = $1");
            c.query_opt(&sql, &[&id]).map_err(map_err)?.as_ref().map(from_row).transpose()
        })
        .await
    }

    async fn current_key(&self, kind: KeyKind, owner: &str) -> StoreResult<Option<KeyRecord>> {
        if !storable(owner) {
            return Ok(None);
        }
        let owner = owner.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM data_keys WHERE kind = $1 AND owner = $2 AND successor IS NULL");
            c.query_opt(&sql, &[&kind.as_str(), &owner]).map_err(map_err)?.as_ref().map(from_row).transpose()
        })
        .await
    }

    async fn insert_key(&self, key: KeyRecord, audit: Audit) -> StoreResult<()> {
        // A rival current key for (kind, owner), from any node, is a unique violation.
        self.write(audit, move |tx| insert(tx, &key)).await
    }

    async fn list_keys(&self, after: &str, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        // Every stored id sorts after the part of `after` before a NUL (byte order).
        let after = after.split('\0').next().unwrap_or_default().to_owned();
        let limit = big(limit);
        self.read(move |c| {
            // `key_id` is COLLATE "C": byte order, whatever the database's collation.
            let sql = format!("SELECT {COLUMNS} FROM data_keys WHERE key_id > $1 ORDER BY key_id LIMIT $2");
            c.query(&sql, &[&after, &limit]).map_err(map_err)?.iter().map(from_row).collect()
        })
        .await
    }

    async fn count_keys(&self) -> StoreResult<Vec<(KeyKind, u64)>> {
        self.read(|c| {
            let rows =
                c.query("SELECT kind, count(*) FROM data_keys GROUP BY kind ORDER BY kind", &[]).map_err(map_err)?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    let n: i64 = r.get(1);
                    KeyKind::parse(r.get(0)).map(|kind| (kind, u64::try_from(n).unwrap_or(0)))
                })
                .collect())
        })
        .await
    }

    async fn kek_versions(&self) -> StoreResult<Vec<KekVersion>> {
        self.read(|c| {
            c.query("SELECT version, created_at FROM kek_versions ORDER BY version", &[])
                .map_err(map_err)?
                .iter()
                .map(|r| {
                    Ok(KekVersion { version: kek_version(r.get(0))?, created_at: Timestamp::from_millis(r.get(1)) })
                })
                .collect()
        })
        .await
    }

    async fn rotate_kek(&self, version: KekVersion, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64> {
        self.write(audit, move |tx| {
            // A version recorded twice (two nodes rotating at once) is a unique violation.
            tx.execute(
                "INSERT INTO kek_versions (version, created_at) VALUES ($1, $2)",
                &[&i64::from(version.version), &version.created_at.as_millis()],
            )
            .map_err(map_err)?;
            rewrap_all(tx, &rewrap, Some(version.version))
        })
        .await
    }

    async fn change_master(&self, kcv: Vec<u8>, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64> {
        self.write(audit, move |tx| {
            let n = rewrap_all(tx, &rewrap, None)?;
            tx.execute("UPDATE meta SET value = $2 WHERE key = $1", &[&KCV_META, &kcv]).map_err(map_err)?;
            Ok(n)
        })
        .await
    }

    async fn start_reencrypt(&self, successors: Vec<(String, KeyRecord)>, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            // Two nodes starting at once: the second waits here, then finds the job running.
            lock_reencrypt(tx)?;
            let running = tx.query_opt("SELECT 1 FROM meta WHERE key = $1", &[&REENCRYPT_CURSOR]).map_err(map_err)?;
            if running.is_some() {
                return Err(StoreError::InUse("a re-encryption is already running"));
            }
            for (old, new) in &successors {
                // Retire the old key first: the partial unique index allows one current key.
                tx.execute("UPDATE data_keys SET successor = $2 WHERE key_id = $1", &[old, &new.key_id])
                    .map_err(map_err)?;
                insert(tx, new)?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)",
                &[&REENCRYPT_CURSOR, &0i64.to_be_bytes().to_vec()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn reencrypt_cursor(&self) -> StoreResult<Option<i64>> {
        self.read(|c| {
            let row = c.query_opt("SELECT value FROM meta WHERE key = $1", &[&REENCRYPT_CURSOR]).map_err(map_err)?;
            Ok(row.and_then(|r| <[u8; 8]>::try_from(r.get::<_, &[u8]>(0)).ok()).map(i64::from_be_bytes))
        })
        .await
    }

    async fn apply_reseal(&self, batch: Vec<Reseal>, cursor: i64) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| {
            let update =
                tx.prepare("UPDATE documents SET body = $3 WHERE seq = $1 AND version = $2").map_err(map_err)?;
            for r in &batch {
                // A document changed since it was read was written with the new key already.
                let version = i64::try_from(r.version).unwrap_or(i64::MAX);
                tx.execute(&update, &[&r.seq, &version, &r.body]).map_err(map_err)?;
            }
            tx.execute(
                "UPDATE meta SET value = $2 WHERE key = $1",
                &[&REENCRYPT_CURSOR, &cursor.to_be_bytes().to_vec()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn finish_reencrypt(&self, audit: Audit) -> StoreResult<u64> {
        self.write(audit, move |tx| {
            lock_reencrypt(tx)?;
            // Unlike SQLite's secure_delete, overwriting first would not help here: the old
            // row version stays until VACUUM either way. The keys are wrapped under the KEK.
            let n = tx.execute("DELETE FROM data_keys WHERE successor IS NOT NULL", &[]).map_err(map_err)?;
            tx.execute("DELETE FROM meta WHERE key = $1", &[&REENCRYPT_CURSOR]).map_err(map_err)?;
            Ok(n)
        })
        .await
    }
}
