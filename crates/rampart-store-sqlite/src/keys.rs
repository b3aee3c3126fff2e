use async_trait::async_trait;
use rampart_store::{Audit, KekVersion, KeyKind, KeyRecord, KeyStore, Reseal, Rewrapper, StoreError, StoreResult};
use rampart_types::Timestamp;
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::{internal, map_err, SqliteStore};

const COLUMNS: &str = "key_id, kind, owner, kek_version, wrapped, created_at, successor";
const REENCRYPT_CURSOR: &str = rampart_store::transfer::REENCRYPT_CURSOR_KEY;
const KCV_META: &str = "master_key_check_value";

fn from_row(r: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let kind: String = r.get(1)?;
    Ok(KeyRecord {
        key_id: r.get(0)?,
        kind: KeyKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, "unknown key kind".into())
        })?,
        owner: r.get(2)?,
        kek_version: r.get(3)?,
        wrapped: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        successor: r.get(6)?,
    })
}

fn insert(tx: &Transaction<'_>, k: &KeyRecord) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO data_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![k.key_id, k.kind.as_str(), k.owner, k.kek_version, k.wrapped, k.created_at.as_millis(), k.successor],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Re-wraps every key with `rewrap`, in the caller's transaction.
fn rewrap_all(tx: &Transaction<'_>, rewrap: &Rewrapper, version: Option<u32>) -> StoreResult<u64> {
    let keys: Vec<KeyRecord> = {
        let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM data_keys")).map_err(map_err)?;
        let rows = stmt.query_map([], from_row).map_err(map_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(map_err)?
    };
    let mut update =
        tx.prepare("UPDATE data_keys SET wrapped = ?2, kek_version = ?3 WHERE key_id = ?1").map_err(map_err)?;
    for k in &keys {
        let wrapped = rewrap(k).map_err(|e| internal(std::io::Error::other(e)))?;
        update.execute(params![k.key_id, wrapped, version.unwrap_or(k.kek_version)]).map_err(map_err)?;
    }
    Ok(keys.len() as u64)
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn get_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let id = key_id.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM data_keys WHERE key_id = ?1"))
                .map_err(map_err)?
                .query_row(params![id], from_row)
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn current_key(&self, kind: KeyKind, owner: &str) -> StoreResult<Option<KeyRecord>> {
        let owner = owner.to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM data_keys WHERE kind = ?1 AND owner = ?2 AND successor IS NULL"
            ))
            .map_err(map_err)?
            .query_row(params![kind.as_str(), owner], from_row)
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn insert_key(&self, key: KeyRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| insert(tx, &key)).await
    }

    async fn list_keys(&self, after: &str, limit: usize) -> StoreResult<Vec<KeyRecord>> {
        let after = after.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM data_keys WHERE key_id > ?1 ORDER BY key_id LIMIT ?2"))
                .map_err(map_err)?;
            let rows = stmt.query_map(params![after, limit], from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn count_keys(&self) -> StoreResult<Vec<(KeyKind, u64)>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT kind, count(*) FROM data_keys GROUP BY kind ORDER BY kind").map_err(map_err)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(map_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (kind, n) = row.map_err(map_err)?;
                if let Some(kind) = KeyKind::parse(&kind) {
                    out.push((kind, u64::try_from(n).unwrap_or(0)));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn kek_versions(&self) -> StoreResult<Vec<KekVersion>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT version, created_at FROM kek_versions ORDER BY version").map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| Ok(KekVersion { version: r.get(0)?, created_at: Timestamp::from_millis(r.get(1)?) }))
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn rotate_kek(&self, version: KekVersion, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64> {
        self.write(audit, move |tx| {
            tx.execute(
                "INSERT INTO kek_versions (version, created_at) VALUES (?1, ?2)",
                params![version.version, version.created_at.as_millis()],
            )
            .map_err(map_err)?;
            rewrap_all(tx, &rewrap, Some(version.version))
        })
        .await
    }

    async fn change_master(&self, kcv: Vec<u8>, rewrap: Rewrapper, audit: Audit) -> StoreResult<u64> {
        self.write(audit, move |tx| {
            let n = rewrap_all(tx, &rewrap, None)?;
            tx.execute("UPDATE meta SET value = ?2 WHERE key = ?1", params![KCV_META, kcv]).map_err(map_err)?;
            Ok(n)
        })
        .await
    }

    async fn start_reencrypt(&self, successors: Vec<(String, KeyRecord)>, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            let running = tx
                .query_row("SELECT 1 FROM meta WHERE key = ?1", params![REENCRYPT_CURSOR], |_| Ok(()))
                .optional()
                .map_err(map_err)?;
            if running.is_some() {
                return Err(StoreError::InUse("a re-encryption is already running"));
            }
            for (old, new) in &successors {
                // Retire the old key first: the partial unique index allows one current key.
                tx.execute("UPDATE data_keys SET successor = ?2 WHERE key_id = ?1", params![old, new.key_id])
                    .map_err(map_err)?;
                insert(tx, new)?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![REENCRYPT_CURSOR, 0i64.to_be_bytes().to_vec()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn reencrypt_cursor(&self) -> StoreResult<Option<i64>> {
        let raw = self.get_meta_raw(REENCRYPT_CURSOR).await?;
        Ok(raw.and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok()).map(i64::from_be_bytes))
    }

    async fn apply_reseal(&self, batch: Vec<Reseal>, cursor: i64) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| {
            let mut stmt =
                tx.prepare_cached("UPDATE documents SET body = ?3 WHERE seq = ?1 AND version = ?2").map_err(map_err)?;
            for r in &batch {
                // A document changed since it was read was written with the new key already.
                stmt.execute(params![r.seq, i64::try_from(r.version).unwrap_or(i64::MAX), r.body]).map_err(map_err)?;
            }
            tx.execute(
                "UPDATE meta SET value = ?2 WHERE key = ?1",
                params![REENCRYPT_CURSOR, cursor.to_be_bytes().to_vec()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn finish_reencrypt(&self, audit: Audit) -> StoreResult<u64> {
        self.write(audit, move |tx| {
            // Overwrite before deleting so no copy of the retired key stays in free pages.
            tx.execute("UPDATE data_keys SET wrapped = zeroblob(length(wrapped)) WHERE successor IS NOT NULL", [])
                .map_err(map_err)?;
            let n = tx.execute("DELETE FROM data_keys WHERE successor IS NOT NULL", []).map_err(map_err)?;
            tx.execute("DELETE FROM meta WHERE key = ?1", params![REENCRYPT_CURSOR]).map_err(map_err)?;
            Ok(n as u64)
        })
        .await
    }
}
