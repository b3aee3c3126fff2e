//! Alerts, IP blocks, the webhook outbox and the login history. Client-provided text passes
//! through `text` (PostgreSQL's text holds no NUL); alert details are JSON text, encoded by
//! `AlertRecord` as on every backend.
//!
//! The outbox is delivered under the advisory lease, by one node at a time, and
//! `due_webhooks` is a plain read (the trait lists due items without claiming them: a second
//! listing must see them again), so it takes no row locks: `FOR UPDATE SKIP LOCKED` in a
//! reader's one-statement transaction would release its locks as soon as it answered. If the
//! lease moves during a delivery, an item may be sent twice; receivers deduplicate on the
//! event id, and a delivery or failure is recorded once: reports for a delivered item change
//! nothing.

use async_trait::async_trait;
use postgres::{Row, Transaction};
use rampart_store::{AlertFilter, AlertRecord, Audit, IpBlock, OutboxItem, SecurityStore, StoreError, StoreResult};
use rampart_types::{AlertId, Timestamp};

use crate::{big, internal, map_err, must_exist, text, text_opt, PostgresStore};

const ALERT_COLUMNS: &str =
    "id, severity, breach_type, dedup_key, details, first_seen, last_seen, count, status, acknowledged_by";

/// Advisory-lock class (the first of two keys) for raising alerts: one lock per dedup key.
const ALERT_LOCK_CLASS: i32 = 0x616c_7274;

/// Longest stored delivery error, in characters.
const ERROR_CHARS: usize = 300;

fn alert_from_row(r: &Row) -> StoreResult<AlertRecord> {
    let details = AlertRecord::decode_details(r.get(4))
        .map_err(|e| internal(std::io::Error::other(format!("stored alert details do not parse: {e}"))))?;
    Ok(AlertRecord {
        id: AlertId::from_stored(r.get(0)),
        severity: r.get(1),
        breach_type: r.get(2),
        dedup_key: r.get(3),
        details,
        first_seen: Timestamp::from_millis(r.get(5)),
        last_seen: Timestamp::from_millis(r.get(6)),
        count: u64::try_from(r.get::<_, i64>(7)).unwrap_or(0),
        status: r.get(8),
        acknowledged_by: r.get(9),
    })
}

fn get_alert(tx: &mut Transaction<'_>, id: &str) -> StoreResult<Option<AlertRecord>> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1");
    tx.query_opt(&sql, &[&id]).map_err(map_err)?.as_ref().map(alert_from_row).transpose()
}

fn outbox_from_row(r: &Row) -> OutboxItem {
    OutboxItem {
        event_id: r.get(0),
        endpoint: r.get(1),
        payload: r.get(2),
        attempts: u32::try_from(r.get::<_, i64>(3)).unwrap_or(u32::MAX),
        next_attempt_at: Timestamp::from_millis(r.get(4)),
    }
}

/// Queues deliveries; an event id already queued for an endpoint keeps its schedule.
pub(crate) fn insert_outbox(tx: &mut Transaction<'_>, items: &[OutboxItem]) -> StoreResult<()> {
    for w in items {
        tx.execute(
            "INSERT INTO webhook_outbox (event_id, endpoint, payload, attempts, next_attempt_at)
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (event_id, endpoint) DO NOTHING",
            &[&text(&w.event_id), &text(&w.endpoint), &text(&w.payload), &w.next_attempt_at.as_millis()],
        )
        .map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl SecurityStore for PostgresStore {
    async fn raise_alert(
        &self,
        alert: AlertRecord,
        since: Timestamp,
        webhooks: Vec<OutboxItem>,
        audit: Audit,
    ) -> StoreResult<(AlertRecord, bool)> {
        let details = alert.encode_details().map_err(internal)?;
        self.write(audit, move |tx| {
            let key = text(&alert.dedup_key).into_owned();
            // Raises of one key on every node run one after another: a second node finds the
            // first one's alert and folds into it instead of opening another.
            tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&ALERT_LOCK_CLASS, &key])
                .map_err(map_err)?;
            let existing = tx
                .query_opt(
                    r#"SELECT id FROM alerts WHERE dedup_key = $1 AND status <> 'resolved' AND last_seen >= $2
                       ORDER BY last_seen DESC, id COLLATE "C" DESC LIMIT 1 FOR UPDATE"#,
                    &[&key, &since.as_millis()],
                )
                .map_err(map_err)?;
            if let Some(row) = existing {
                let id: String = row.get(0);
                // A report from a node whose clock is behind never moves the alert back; the
                // count is the row's own, so no concurrent report is lost.
                tx.execute(
                    "UPDATE alerts SET count = count + 1,
                        details = CASE WHEN $2 >= last_seen THEN $3 ELSE details END,
                        last_seen = GREATEST(last_seen, $2), first_seen = LEAST(first_seen, $4)
                     WHERE id = $1",
                    &[&id, &alert.last_seen.as_millis(), &details, &alert.first_seen.as_millis()],
                )
                .map_err(map_err)?;
                return Ok((get_alert(tx, &id)?.ok_or(StoreError::NotFound)?, false));
            }
            tx.execute(
                &format!("INSERT INTO alerts ({ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &alert.id.as_str(),
                    &text(&alert.severity),
                    &text(&alert.breach_type),
                    &key,
                    &details,
                    &alert.first_seen.as_millis(),
                    &alert.last_seen.as_millis(),
                    &i64::try_from(alert.count).unwrap_or(1),
                    &text(&alert.status),
                    &text_opt(alert.acknowledged_by.as_deref()),
                ],
            )
            .map_err(map_err)?;
            insert_outbox(tx, &webhooks)?;
            // What was stored (NUL-free), as a later read returns it.
            Ok((get_alert(tx, alert.id.as_str())?.ok_or(StoreError::NotFound)?, true))
        })
        .await
    }

    async fn enqueue_webhooks(&self, items: Vec<OutboxItem>) -> StoreResult<()> {
        self.write(Vec::new(), move |tx| insert_outbox(tx, &items)).await
    }

    async fn list_alerts(&self, f: AlertFilter) -> StoreResult<Vec<AlertRecord>> {
        self.read(move |c| {
            // Unset filters are NULL and match everything: one statement for every filter.
            let (status, severity, breach) =
                (text_opt(f.status.as_deref()), text_opt(f.severity.as_deref()), text_opt(f.breach_type.as_deref()));
            let sql = format!(
                r#"SELECT {ALERT_COLUMNS} FROM alerts
                   WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR severity = $2)
                     AND ($3::text IS NULL OR breach_type = $3)
                   ORDER BY last_seen DESC, id COLLATE "C" DESC LIMIT $4"#
            );
            c.query(&sql, &[&status, &severity, &breach, &big(f.limit)])
                .map_err(map_err)?
                .iter()
                .map(alert_from_row)
                .collect()
        })
        .await
    }

    async fn set_alert_status(&self, id: &AlertId, status: &str, by: &str, audit: Audit) -> StoreResult<AlertRecord> {
        let (id, status, by) = (id.as_str().to_owned(), text(status).into_owned(), text(by).into_owned());
        self.write(audit, move |tx| {
            let sql =
                format!("UPDATE alerts SET status = $2, acknowledged_by = $3 WHERE id = $1 RETURNING {ALERT_COLUMNS}");
            let row = tx.query_opt(&sql, &[&id, &status, &by]).map_err(map_err)?;
            row.as_ref().map(alert_from_row).transpose()?.ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn add_block(&self, b: IpBlock, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            // Adding a block again (on any node) extends it but never shortens it.
            tx.execute(
                "INSERT INTO ip_blocks (cidr, reason, created_at, expires_at, created_by) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (cidr) DO UPDATE SET reason = excluded.reason,
                    expires_at = GREATEST(ip_blocks.expires_at, excluded.expires_at)",
                &[
                    &text(&b.cidr),
                    &text(&b.reason),
                    &b.created_at.as_millis(),
                    &b.expires_at.as_millis(),
                    &text(&b.created_by),
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn remove_block(&self, cidr: &str, audit: Audit) -> StoreResult<bool> {
        let cidr = text(cidr).into_owned();
        let removed = self.write(audit, move |tx| {
            match tx.execute("DELETE FROM ip_blocks WHERE cidr = $1", &[&cidr]).map_err(map_err)? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        });
        crate::changed(removed.await)
    }

    async fn active_blocks(&self, now: Timestamp) -> StoreResult<Vec<IpBlock>> {
        self.read(move |c| {
            let rows = c
                .query(
                    r#"SELECT cidr, reason, created_at, expires_at, created_by FROM ip_blocks
                       WHERE expires_at > $1 ORDER BY created_at, cidr COLLATE "C""#,
                    &[&now.as_millis()],
                )
                .map_err(map_err)?;
            Ok(rows
                .iter()
                .map(|r| IpBlock {
                    cidr: r.get(0),
                    reason: r.get(1),
                    created_at: Timestamp::from_millis(r.get(2)),
                    expires_at: Timestamp::from_millis(r.get(3)),
                    created_by: r.get(4),
                })
                .collect())
        })
        .await
    }

    async fn due_webhooks(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<OutboxItem>> {
        self.read(move |c| {
            let rows = c
                .query(
                    r#"SELECT event_id, endpoint, payload, attempts, next_attempt_at FROM webhook_outbox
                       WHERE delivered_at IS NULL AND next_attempt_at <= $1
                       ORDER BY next_attempt_at, event_id COLLATE "C", endpoint COLLATE "C" LIMIT $2"#,
                    &[&now.as_millis(), &big(limit)],
                )
                .map_err(map_err)?;
            Ok(rows.iter().map(outbox_from_row).collect())
        })
        .await
    }

    async fn webhook_backlog(&self) -> StoreResult<u64> {
        self.read(|c| {
            let row =
                c.query_one("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL", &[]).map_err(map_err)?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
        .await
    }

    async fn webhook_delivered(&self, event_id: &str, endpoint: &str, at: Timestamp) -> StoreResult<()> {
        let (id, ep) = (text(event_id).into_owned(), text(endpoint).into_owned());
        self.write(Vec::new(), move |tx| {
            tx.execute(
                // A delivered message keeps no body: it may name a data subject.
                "UPDATE webhook_outbox SET delivered_at = $3, attempts = attempts + 1, payload = ''
                 WHERE event_id = $1 AND endpoint = $2 AND delivered_at IS NULL",
                &[&id, &ep, &at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn webhook_failed(&self, event_id: &str, endpoint: &str, next: Timestamp, error: &str) -> StoreResult<()> {
        let (id, ep) = (text(event_id).into_owned(), text(endpoint).into_owned());
        let err = text(&error.chars().take(ERROR_CHARS).collect::<String>()).into_owned();
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4
                 WHERE event_id = $1 AND endpoint = $2 AND delivered_at IS NULL",
                &[&id, &ep, &next.as_millis(), &err],
            )
            .map_err(map_err)?;
            Ok(())
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
        let (u, a) = (text(username).into_owned(), text(address).into_owned());
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "DELETE FROM login_addresses WHERE username = $1 AND last_login < $2",
                &[&u, &forget_before.as_millis()],
            )
            .map_err(map_err)?;
            // A login reported late (or by a node whose clock is behind) never hides a newer one.
            tx.execute(
                "INSERT INTO login_addresses (username, address, last_login) VALUES ($1, $2, $3)
                 ON CONFLICT (username, address) DO UPDATE
                    SET last_login = GREATEST(login_addresses.last_login, excluded.last_login)",
                &[&u, &a, &at.as_millis()],
            )
            .map_err(must_exist)?;
            Ok(())
        })
        .await
    }

    async fn login_address_known(&self, username: &str, address: &str, since: Timestamp) -> StoreResult<bool> {
        let (u, a) = (text(username).into_owned(), text(address).into_owned());
        self.read(move |c| {
            let row = c
                .query_opt(
                    "SELECT 1 FROM login_addresses WHERE username = $1 AND address = $2 AND last_login >= $3",
                    &[&u, &a, &since.as_millis()],
                )
                .map_err(map_err)?;
            Ok(row.is_some())
        })
        .await
    }

    async fn note_login_network(&self, username: &str, network: &str, at: Timestamp) -> StoreResult<bool> {
        let (u, n) = (text(username).into_owned(), text(network).into_owned());
        self.write(Vec::new(), move |tx| {
            // Of concurrent first logins from one network (on any node), one inserts the row.
            let n = tx
                .execute(
                    "INSERT INTO login_networks (username, network, first_seen) VALUES ($1, $2, $3)
                     ON CONFLICT (username, network) DO NOTHING",
                    &[&u, &n, &at.as_millis()],
                )
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }
}
