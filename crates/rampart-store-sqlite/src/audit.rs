use std::sync::Arc;

use async_trait::async_trait;
use rampart_store::{
    Audit, AuditChainer, AuditEvent, AuditFilter, AuditHead, AuditRecord, AuditStore, StoreError, StoreResult,
    GENESIS_HASH,
};
use rampart_types::Timestamp;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};

use crate::{map_err, SqliteStore};

const COLUMNS: &str = "seq, timestamp, event_type, user, ip_address, success, details, request_id, prev_hash, hash";
const HEAD_KEY: &str = rampart_store::transfer::SINGLE_NODE_AUDIT_HEAD;

fn audit_err(e: rusqlite::Error) -> StoreError {
    StoreError::AuditUnavailable(Box::new(e))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let details: String = r.get(6)?;
    Ok(AuditRecord {
        seq: r.get(0)?,
        event: AuditEvent {
            timestamp: Timestamp::from_millis(r.get(1)?),
            event_type: r.get(2)?,
            user: r.get(3)?,
            ip_address: r.get(4)?,
            success: r.get(5)?,
            // A details column that is not JSON is kept as a string so verification can
            // still recompute (and reject) the record instead of failing to read it.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
            request_id: r.get(7)?,
        },
        prev_hash: r.get(8)?,
        hash: r.get(9)?,
    })
}

fn table_tail(tx: &Transaction<'_>) -> StoreResult<Option<(i64, [u8; 32])>> {
    tx.query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(audit_err)
}

fn decode_head(raw: &[u8]) -> Option<AuditHead> {
    if raw.len() != 72 {
        return None;
    }
    let seq = i64::from_be_bytes(raw[..8].try_into().ok()?);
    Some(AuditHead { seq, hash: raw[8..40].try_into().ok()?, mac: raw[40..72].try_into().ok()? })
}

/// Where the next record links: the table's tail, but only when it is exactly what the
/// signed head says. Otherwise records were removed (or the head was), and continuing
/// from whatever tail is there would re-sign the loss away.
fn anchored_tail(tx: &Transaction<'_>, chainer: &dyn AuditChainer) -> StoreResult<(i64, [u8; 32])> {
    let tail = table_tail(tx)?;
    let head: Option<Vec<u8>> = tx
        .query_row("SELECT value FROM meta WHERE key = ?1", params![HEAD_KEY], |r| r.get(0))
        .optional()
        .map_err(audit_err)?;
    match (tail, head) {
        (None, None) => Ok((0, GENESIS_HASH)),
        (Some(_), None) => Err(StoreError::AuditChainBroken("chain head missing")),
        (tail, Some(raw)) => {
            let head = decode_head(&raw).ok_or(StoreError::AuditChainBroken("chain head malformed"))?;
            if !chainer.head_is_signed(head.seq, &head.hash, &head.mac) {
                return Err(StoreError::AuditChainBroken("chain head signature invalid"));
            }
            match tail {
                // Both hashes are public (the signed head vouches for its own): plain equality.
                Some((seq, hash)) if seq == head.seq && hash == head.hash => Ok((seq, hash)),
                Some((seq, _)) if seq < head.seq => Err(StoreError::AuditChainBroken("records missing at the end")),
                _ => Err(StoreError::AuditChainBroken("table tail does not match the signed head")),
            }
        }
    }
}

fn write_head(tx: &Transaction<'_>, chainer: &dyn AuditChainer, seq: i64, hash: &[u8; 32]) -> StoreResult<()> {
    let mut head = Vec::with_capacity(72);
    head.extend_from_slice(&seq.to_be_bytes());
    head.extend_from_slice(hash);
    head.extend_from_slice(&chainer.head_mac(seq, hash));
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![HEAD_KEY, head],
    )
    .map_err(audit_err)?;
    Ok(())
}

fn insert_record(tx: &Transaction<'_>, r: &AuditRecord) -> StoreResult<()> {
    let details = serde_json::to_string(&r.event.details).map_err(|x| StoreError::AuditUnavailable(Box::new(x)))?;
    let e = &r.event;
    tx.prepare_cached(&format!("INSERT INTO audit_log ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"))
        .map_err(audit_err)?
        .execute(params![
            r.seq,
            e.timestamp.as_millis(),
            e.event_type,
            e.user,
            e.ip_address,
            e.success,
            details,
            e.request_id,
            r.prev_hash.as_slice(),
            r.hash.as_slice()
        ])
        .map_err(audit_err)?;
    Ok(())
}

/// The chain key is installed by the core at start; without it nothing audited may commit.
pub(crate) fn chain_key_missing() -> StoreError {
    StoreError::AuditUnavailable(Box::new(std::io::Error::other("audit chain key not installed")))
}

/// `append_in` with the chainer the store may not have yet (then: `chain_key_missing`).
pub(crate) fn append_chained(
    tx: &Transaction<'_>,
    chainer: Option<&Arc<dyn AuditChainer>>,
    events: &Audit,
) -> StoreResult<Vec<i64>> {
    append_in(tx, chainer.ok_or_else(chain_key_missing)?.as_ref(), events)
}

/// Appends `events` to the chain inside `tx`, continuing from the signed head. Failures
/// are `AuditUnavailable` or `AuditChainBroken`, so callers answer 503 and the surrounding
/// change rolls back.
pub(crate) fn append_in(tx: &Transaction<'_>, chainer: &dyn AuditChainer, events: &Audit) -> StoreResult<Vec<i64>> {
    let (mut seq, mut prev) = anchored_tail(tx, chainer)?;
    let mut seqs = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let hash = chainer.chain(&prev, &AuditRecord::canonical(seq, e));
        insert_record(tx, &AuditRecord { seq, event: e.clone(), prev_hash: prev, hash })?;
        seqs.push(seq);
        prev = hash;
    }
    if !events.is_empty() {
        write_head(tx, chainer, seq, &prev)?;
    }
    Ok(seqs)
}

#[async_trait]
impl AuditStore for SqliteStore {
    fn writer_stats(&self) -> rampart_store::WriterStats {
        self.queue_stats()
    }

    fn set_audit_chainer(&self, chainer: Arc<dyn AuditChainer>) {
        let _ = self.inner_chainer().set(chainer);
    }

    async fn append_audit(&self, events: Audit) -> StoreResult<Vec<i64>> {
        // Merged with the other audit-only appends queued now: one chain walk, one sync.
        self.append_only(events).await
    }

    async fn read_audit(&self, after_seq: i64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2"))
                .map_err(map_err)?;
            let rows = stmt.query_map(params![after_seq, limit], from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn query_audit(&self, f: AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |c| {
            let mut conds = vec!["seq > ?".to_owned()];
            let mut args = vec![Value::Integer(f.after_seq.unwrap_or(0))];
            if let Some(t) = f.event_type {
                conds.push("event_type = ?".into());
                args.push(Value::Text(t));
            }
            if let Some(u) = f.user {
                conds.push("user = ?".into());
                args.push(Value::Text(u));
            }
            if let Some(from) = f.from {
                conds.push("timestamp >= ?".into());
                args.push(Value::Integer(from.as_millis()));
            }
            if let Some(to) = f.to {
                conds.push("timestamp < ?".into());
                args.push(Value::Integer(to.as_millis()));
            }
            if let Some(s) = f.success {
                conds.push("success = ?".into());
                args.push(Value::Integer(i64::from(s)));
            }
            args.push(Value::Integer(i64::try_from(f.limit).unwrap_or(i64::MAX)));
            let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT ?", conds.join(" AND "));
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            let rows = stmt.query_map(params_from_iter(args), from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn audit_head(&self) -> StoreResult<Option<AuditHead>> {
        let raw: Option<Vec<u8>> = self.get_meta_raw(HEAD_KEY).await?;
        let Some(raw) = raw else { return Ok(None) };
        // A mangled head is reported as a head that cannot verify.
        Ok(Some(decode_head(&raw).unwrap_or(AuditHead { seq: -1, hash: [0; 32], mac: [0; 32] })))
    }

    async fn reanchor_audit(&self, event: AuditEvent, seq: i64) -> StoreResult<AuditRecord> {
        let chainer = self.inner_chainer().get().cloned().ok_or_else(chain_key_missing)?;
        self.write(Vec::new(), move |tx| {
            let (tail, prev) = table_tail(tx)?.unwrap_or((0, GENESIS_HASH));
            if seq <= tail {
                return Err(StoreError::AuditChainBroken("a repair record must follow the table's tail"));
            }
            let hash = chainer.chain(&prev, &AuditRecord::canonical(seq, &event));
            let record = AuditRecord { seq, event, prev_hash: prev, hash };
            insert_record(tx, &record)?;
            write_head(tx, chainer.as_ref(), seq, &hash)?;
            Ok(record)
        })
        .await
    }
}
