//! The audit chain, one per node: records carry the node's name, each node's head is signed
//! and stored apart, and appends of one node are serialised by an advisory lock (its writer
//! and any CLI verb using the same node name).

use std::sync::Arc;

use async_trait::async_trait;
use postgres::types::ToSql;
use postgres::{Row, Transaction};
use rampart_store::{
    Audit, AuditChainer, AuditEvent, AuditFilter, AuditHead, AuditRecord, AuditStore, StoreError, StoreResult,
    GENESIS_HASH,
};
use rampart_types::Timestamp;

use crate::conn::Chain;
use crate::{big, bytes32, PostgresStore};

const COLUMNS: &str =
    r#"seq, timestamp, event_type, "user", ip_address, success, details, request_id, prev_hash, hash"#;

pub(crate) fn head_key(node: &str) -> String {
    format!("{}:{node}", rampart_store::transfer::SINGLE_NODE_AUDIT_HEAD)
}

fn audit_err(e: postgres::Error) -> StoreError {
    StoreError::AuditUnavailable(Box::new(e))
}

fn from_row(r: &Row) -> StoreResult<AuditRecord> {
    let details: String = r.get(6);
    Ok(AuditRecord {
        seq: r.get(0),
        event: AuditEvent {
            timestamp: Timestamp::from_millis(r.get(1)),
            event_type: r.get(2),
            user: r.get(3),
            ip_address: r.get(4),
            success: r.get(5),
            // A details column that is not JSON is kept as a string so verification can
            // still recompute (and reject) the record instead of failing to read it.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
            request_id: r.get(7),
        },
        prev_hash: bytes32(r.get(8))?,
        hash: bytes32(r.get(9))?,
    })
}

fn table_tail(tx: &mut Transaction<'_>, node: &str) -> StoreResult<Option<(i64, [u8; 32])>> {
    let row = tx
        .query_opt("SELECT seq, hash FROM audit_log WHERE node = $1 ORDER BY seq DESC LIMIT 1", &[&node])
        .map_err(audit_err)?;
    row.map(|r| Ok((r.get(0), bytes32(r.get(1))?))).transpose()
}

fn decode_head(raw: &[u8]) -> Option<AuditHead> {
    if raw.len() != 72 {
        return None;
    }
    let seq = i64::from_be_bytes(raw[..8].try_into().ok()?);
    Some(AuditHead { seq, hash: raw[8..40].try_into().ok()?, mac: raw[40..72].try_into().ok()? })
}

/// Takes the node's append lock, then finds where the next record links: the table's
/// tail, but only when it is exactly what the signed head says.
fn anchored_tail(tx: &mut Transaction<'_>, chainer: &dyn AuditChainer, node: &str) -> StoreResult<(i64, [u8; 32])> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&head_key(node)]).map_err(audit_err)?;
    let tail = table_tail(tx, node)?;
    let head: Option<Vec<u8>> =
        tx.query_opt("SELECT value FROM meta WHERE key = $1", &[&head_key(node)]).map_err(audit_err)?.map(|r| r.get(0));
    match (tail, head) {
        (None, None) => Ok((0, GENESIS_HASH)),
        (Some(_), None) => Err(StoreError::AuditChainBroken("chain head missing")),
        (tail, Some(raw)) => {
            let head = decode_head(&raw).ok_or(StoreError::AuditChainBroken("chain head malformed"))?;
            if !chainer.head_is_signed(head.seq, &head.hash, &head.mac) {
                return Err(StoreError::AuditChainBroken("chain head signature invalid"));
            }
            match tail {
                Some((seq, hash)) if seq == head.seq && hash == head.hash => Ok((seq, hash)),
                Some((seq, _)) if seq < head.seq => Err(StoreError::AuditChainBroken("records missing at the end")),
                _ => Err(StoreError::AuditChainBroken("table tail does not match the signed head")),
            }
        }
    }
}

fn write_head(
    tx: &mut Transaction<'_>,
    chainer: &dyn AuditChainer,
    node: &str,
    seq: i64,
    hash: &[u8; 32],
) -> StoreResult<()> {
    let mut head = Vec::with_capacity(72);
    head.extend_from_slice(&seq.to_be_bytes());
    head.extend_from_slice(hash);
    head.extend_from_slice(&chainer.head_mac(seq, hash));
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&head_key(node), &head],
    )
    .map_err(audit_err)?;
    Ok(())
}

fn insert_record(tx: &mut Transaction<'_>, node: &str, r: &AuditRecord) -> StoreResult<()> {
    let details = serde_json::to_string(&r.event.details).map_err(|x| StoreError::AuditUnavailable(Box::new(x)))?;
    let e = &r.event;
    let statement =
        format!(r#"INSERT INTO audit_log (node, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"#);
    tx.execute(
        &statement,
        &[
            &node,
            &r.seq,
            &e.timestamp.as_millis(),
            &e.event_type,
            &e.user,
            &e.ip_address,
            &e.success,
            &details,
            &e.request_id,
            &r.prev_hash.as_slice(),
            &r.hash.as_slice(),
        ],
    )
    .map_err(audit_err)?;
    Ok(())
}

/// The chain key is installed by the core at start; without it nothing audited may commit.
pub(crate) fn chain_key_missing() -> StoreError {
    StoreError::AuditUnavailable(Box::new(std::io::Error::other("audit chain key not installed")))
}

/// Appends `events` to this node's chain inside `tx`, continuing from the signed head.
/// Failures are `AuditUnavailable` or `AuditChainBroken`: the surrounding change rolls back.
pub(crate) fn append_chained(tx: &mut Transaction<'_>, chain: &Chain<'_>, events: &Audit) -> StoreResult<Vec<i64>> {
    let chainer = chain.chainer.ok_or_else(chain_key_missing)?.as_ref();
    let (mut seq, mut prev) = anchored_tail(tx, chainer, chain.node)?;
    let mut seqs = Vec::with_capacity(events.len());
    for e in events {
        seq += 1;
        let hash = chainer.chain(&prev, &AuditRecord::canonical(seq, e));
        insert_record(tx, chain.node, &AuditRecord { seq, event: e.clone(), prev_hash: prev, hash })?;
        seqs.push(seq);
        prev = hash;
    }
    if !events.is_empty() {
        write_head(tx, chainer, chain.node, seq, &prev)?;
    }
    Ok(seqs)
}

#[async_trait]
impl AuditStore for PostgresStore {
    fn writer_stats(&self) -> rampart_store::WriterStats {
        self.queue_stats()
    }

    fn set_audit_chainer(&self, chainer: Arc<dyn AuditChainer>) {
        let _ = self.inner_chainer().set(chainer);
    }

    async fn append_audit(&self, events: Audit) -> StoreResult<Vec<i64>> {
        self.append_only(events).await
    }

    async fn read_audit(&self, after_seq: i64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let node = self.node().to_owned();
        self.read_node_audit(&node, after_seq, limit).await
    }

    async fn query_audit(&self, f: AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        let node = self.node().to_owned();
        self.read(move |c| {
            let after = f.after_seq.unwrap_or(0);
            let (from, to) = (f.from.map(|t| t.as_millis()), f.to.map(|t| t.as_millis()));
            let limit = big(f.limit);
            let mut args: Vec<&(dyn ToSql + Sync)> = vec![&node, &after];
            let mut conds = vec!["node = $1".to_owned(), "seq > $2".to_owned()];
            if let Some(t) = &f.event_type {
                args.push(t);
                conds.push(format!("event_type = ${}", args.len()));
            }
            if let Some(u) = &f.user {
                args.push(u);
                conds.push(format!(r#""user" = ${}"#, args.len()));
            }
            if let Some(from) = &from {
                args.push(from);
                conds.push(format!("timestamp >= ${}", args.len()));
            }
            if let Some(to) = &to {
                args.push(to);
                conds.push(format!("timestamp < ${}", args.len()));
            }
            if let Some(s) = &f.success {
                args.push(s);
                conds.push(format!("success = ${}", args.len()));
            }
            args.push(&limit);
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_log WHERE {} ORDER BY seq LIMIT ${}",
                conds.join(" AND "),
                args.len()
            );
            let rows = c.query(&sql, &args).map_err(crate::map_err)?;
            rows.iter().map(from_row).collect()
        })
        .await
    }

    async fn audit_head(&self) -> StoreResult<Option<AuditHead>> {
        let node = self.node().to_owned();
        self.node_audit_head(&node).await
    }

    async fn other_audit_nodes(&self) -> StoreResult<Vec<String>> {
        let node = self.node().to_owned();
        let prefix = head_key("");
        self.read(move |c| {
            // A chain whose records were all deleted still has its head; a head deleted
            // still leaves records: either names the node.
            let rows = c
                .query(
                    "SELECT node FROM audit_log WHERE node <> $1 GROUP BY node \
                     UNION SELECT substr(key, length($2) + 1) FROM meta WHERE starts_with(key, $2) \
                     AND substr(key, length($2) + 1) <> $1 ORDER BY 1",
                    &[&node, &prefix],
                )
                .map_err(crate::map_err)?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
        .await
    }

    async fn read_node_audit(&self, node: &str, after_seq: i64, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let node = node.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE node = $1 AND seq > $2 ORDER BY seq LIMIT $3");
            let rows = c.query(&sql, &[&node, &after_seq, &big(limit)]).map_err(crate::map_err)?;
            rows.iter().map(from_row).collect()
        })
        .await
    }

    async fn node_audit_head(&self, node: &str) -> StoreResult<Option<AuditHead>> {
        let Some(raw) = rampart_store::MetaStore::get_meta(self, &head_key(node)).await? else {
            return Ok(None);
        };
        // A mangled head is reported as a head that cannot verify.
        Ok(Some(decode_head(&raw).unwrap_or(AuditHead { seq: -1, hash: [0; 32], mac: [0; 32] })))
    }

    async fn reanchor_audit(&self, event: AuditEvent, seq: i64) -> StoreResult<AuditRecord> {
        let chainer = self.inner_chainer().get().cloned().ok_or_else(chain_key_missing)?;
        let node = self.node().to_owned();
        self.write(Vec::new(), move |tx| {
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&head_key(&node)]).map_err(audit_err)?;
            let (tail, prev) = table_tail(tx, &node)?.unwrap_or((0, GENESIS_HASH));
            if seq <= tail {
                return Err(StoreError::AuditChainBroken("a repair record must follow the table's tail"));
            }
            let hash = chainer.chain(&prev, &AuditRecord::canonical(seq, &event));
            let record = AuditRecord { seq, event, prev_hash: prev, hash };
            insert_record(tx, &node, &record)?;
            write_head(tx, chainer.as_ref(), &node, seq, &hash)?;
            Ok(record)
        })
        .await
    }
}
