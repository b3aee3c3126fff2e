use async_trait::async_trait;
use rampart_store::{AlertFilter, AlertRecord, Audit, IpBlock, OutboxItem, SecurityStore, StoreError, StoreResult};
use rampart_types::{AlertId, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, OptionalExtension, Row, Transaction};

use crate::{map_err, SqliteStore};

const ALERT_COLUMNS: &str =
    "id, severity, breach_type, dedup_key, details, first_seen, last_seen, count, status, acknowledged_by";

fn alert_from_row(r: &Row<'_>) -> rusqlite::Result<AlertRecord> {
    let details: String = r.get(4)?;
    let details = AlertRecord::decode_details(&details)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(AlertRecord {
        id: AlertId::from_stored(r.get(0)?),
        severity: r.get(1)?,
        breach_type: r.get(2)?,
        dedup_key: r.get(3)?,
        details,
        first_seen: Timestamp::from_millis(r.get(5)?),
        last_seen: Timestamp::from_millis(r.get(6)?),
        count: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        status: r.get(8)?,
        acknowledged_by: r.get(9)?,
    })
}

fn get_alert(tx: &Transaction<'_>, id: &str) -> StoreResult<Option<AlertRecord>> {
    tx.query_row(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"), params![id], alert_from_row)
        .optional()
        .map_err(map_err)
}

fn outbox_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxItem> {
    Ok(OutboxItem {
        event_id: r.get(0)?,
        endpoint: r.get(1)?,
        payload: r.get(2)?,
        attempts: r.get(3)?,
        next_attempt_at: Timestamp::from_millis(r.get(4)?),
    })
}

pub(crate) fn insert_outbox(tx: &rusqlite::Transaction<'_>, items: &[OutboxItem]) -> StoreResult<()> {
    for w in items {
        tx.execute(
            "INSERT OR IGNORE INTO webhook_outbox (event_id, endpoint, payload, attempts, next_attempt_at)
             VALUES (?1, ?2, ?3, 0, ?4)",
            params![w.event_id, w.endpoint, w.payload, w.next_attempt_at.as_millis()],
        )
        .map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl SecurityStore for SqliteStore {
    async fn enqueue_webhooks(&self, items: Vec<OutboxItem>) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| insert_outbox(tx, &items)).await
    }

    async fn raise_alert(
        &self,
        alert: AlertRecord,
        since: Timestamp,
        webhooks: Vec<OutboxItem>,
        audit: Audit,
    ) -> StoreResult<(AlertRecord, bool)> {
        self.write(audit, move |tx| {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT id FROM alerts WHERE dedup_key = ?1 AND status != 'resolved' AND last_seen >= ?2
                     ORDER BY last_seen DESC, id DESC LIMIT 1",
                    params![alert.dedup_key, since.as_millis()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)?;
            let details = alert.encode_details().map_err(|e| StoreError::Internal(Box::new(e)))?;
            if let Some(id) = existing {
                // A report from a node whose clock is behind never moves the alert back.
                tx.execute(
                    "UPDATE alerts SET count = count + 1,
                        details = CASE WHEN ?2 >= last_seen THEN ?3 ELSE details END,
                        last_seen = max(last_seen, ?2), first_seen = min(first_seen, ?4)
                     WHERE id = ?1",
                    params![id, alert.last_seen.as_millis(), details, alert.first_seen.as_millis()],
                )
                .map_err(map_err)?;
                return Ok((get_alert(tx, &id)?.ok_or(StoreError::NotFound)?, false));
            }
            tx.execute(
                &format!("INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    alert.id.as_str(),
                    alert.severity,
                    alert.breach_type,
                    alert.dedup_key,
                    details,
                    alert.first_seen.as_millis(),
                    alert.last_seen.as_millis(),
                    i64::try_from(alert.count).unwrap_or(1),
                    alert.status,
                    alert.acknowledged_by
                ],
            )
            .map_err(map_err)?;
            insert_outbox(tx, &webhooks)?;
            Ok((alert, true))
        })
        .await
    }

    async fn list_alerts(&self, f: AlertFilter) -> StoreResult<Vec<AlertRecord>> {
        self.read(move |c| {
            let mut conds = vec!["1 = 1".to_owned()];
            let mut args = Vec::new();
            for (col, v) in [("status", f.status), ("severity", f.severity), ("breach_type", f.breach_type)] {
                if let Some(v) = v {
                    conds.push(format!("{col} = ?"));
                    args.push(Value::Text(v));
                }
            }
            args.push(Value::Integer(i64::try_from(f.limit).unwrap_or(i64::MAX)));
            let sql = format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE {} ORDER BY last_seen DESC, id DESC LIMIT ?",
                conds.join(" AND ")
            );
            let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
            let rows = stmt.query_map(params_from_iter(args), alert_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn set_alert_status(&self, id: &AlertId, status: &str, by: &str, audit: Audit) -> StoreResult<AlertRecord> {
        let (id, status, by) = (id.as_str().to_owned(), status.to_owned(), by.to_owned());
        self.write(audit, move |tx| {
            let n = tx
                .execute("UPDATE alerts SET status = ?2, acknowledged_by = ?3 WHERE id = ?1", params![id, status, by])
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            get_alert(tx, &id)?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn add_block(&self, b: IpBlock, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            tx.execute(
                "INSERT INTO ip_blocks (cidr, reason, created_at, expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(cidr) DO UPDATE SET reason = excluded.reason, expires_at = max(expires_at, excluded.expires_at)",
                params![b.cidr, b.reason, b.created_at.as_millis(), b.expires_at.as_millis(), b.created_by],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn remove_block(&self, cidr: &str, audit: Audit) -> StoreResult<bool> {
        let cidr = cidr.to_owned();
        let removed = self.write(audit, move |tx| {
            match tx.execute("DELETE FROM ip_blocks WHERE cidr = ?1", params![cidr]).map_err(map_err)? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        });
        crate::changed(removed.await)
    }

    async fn active_blocks(&self, now: Timestamp) -> StoreResult<Vec<IpBlock>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT cidr, reason, created_at, expires_at, created_by FROM ip_blocks WHERE expires_at > ?1 ORDER BY created_at, cidr",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![now.as_millis()], |r| {
                    Ok(IpBlock {
                        cidr: r.get(0)?,
                        reason: r.get(1)?,
                        created_at: Timestamp::from_millis(r.get(2)?),
                        expires_at: Timestamp::from_millis(r.get(3)?),
                        created_by: r.get(4)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn due_webhooks(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<OutboxItem>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT event_id, endpoint, payload, attempts, next_attempt_at FROM webhook_outbox
                     WHERE delivered_at IS NULL AND next_attempt_at <= ?1 ORDER BY next_attempt_at, event_id, endpoint LIMIT ?2",
                )
                .map_err(map_err)?;
            let rows = stmt.query_map(params![now.as_millis(), limit], outbox_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn webhook_backlog(&self) -> StoreResult<u64> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL", [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(map_err)
        })
        .await
    }

    async fn webhook_delivered(&self, event_id: &str, endpoint: &str, at: Timestamp) -> StoreResult<()> {
        let (id, ep) = (event_id.to_owned(), endpoint.to_owned());
        self.write(Vec::new(), move |tx| {
            tx.execute(
                // A delivered message keeps no body: it may name a data subject.
                "UPDATE webhook_outbox SET delivered_at = ?3, attempts = attempts + 1, payload = ''
                 WHERE event_id = ?1 AND endpoint = ?2",
                params![id, ep, at.as_millis()],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn webhook_failed(&self, event_id: &str, endpoint: &str, next: Timestamp, error: &str) -> StoreResult<()> {
        let (id, ep, err) = (event_id.to_owned(), endpoint.to_owned(), error.chars().take(300).collect::<String>());
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4
                 WHERE event_id = ?1 AND endpoint = ?2",
                params![id, ep, next.as_millis(), err],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn remember_login_address(
        &self,
        username: &str,
        address: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> StoreResult<()> {
        let (u, a) = (username.to_owned(), address.to_owned());
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "DELETE FROM login_addresses WHERE username = ?1 AND last_login < ?2",
                params![u, forget_before.as_millis()],
            )
            .map_err(map_err)?;
            tx.execute(
                "INSERT INTO login_addresses (username, address, last_login) VALUES (?1, ?2, ?3)
                 ON CONFLICT (username, address) DO UPDATE SET last_login = max(last_login, excluded.last_login)",
                params![u, a, at.as_millis()],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn login_address_known(&self, username: &str, address: &str, since: Timestamp) -> StoreResult<bool> {
        let (u, a) = (username.to_owned(), address.to_owned());
        self.read(move |c| {
            c.prepare_cached("SELECT 1 FROM login_addresses WHERE username = ?1 AND address = ?2 AND last_login >= ?3")
                .map_err(map_err)?
                .exists(params![u, a, since.as_millis()])
                .map_err(map_err)
        })
        .await
    }

    async fn note_login_network(&self, username: &str, network: &str, at: Timestamp) -> StoreResult<bool> {
        let (u, n) = (username.to_owned(), network.to_owned());
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO login_networks (username, network, first_seen) VALUES (?1, ?2, ?3)",
                params![u, n, at.as_millis()],
            )
            .map(|n| n > 0)
            .map_err(map_err)
        })
        .await
    }
}
