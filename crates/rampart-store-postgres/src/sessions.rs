use async_trait::async_trait;
use postgres::{Row, Transaction};
use rampart_store::{Assurance, Audit, SessionRecord, SessionStore, StoreError, StoreResult};
use rampart_types::{SessionId, Timestamp, Username};

use crate::{map_err, parse_col, PostgresStore};

const COLUMNS: &str =
    "id, token_hash, username, created_at, last_seen_at, expires_at, ip_address, user_agent, assurance";

pub(crate) fn from_row(r: &Row) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: SessionId::from_stored(r.get(0)),
        token_hash: crate::bytes32(r.get(1))?,
        username: parse_col(r.get(2), Username::parse)?,
        created_at: Timestamp::from_millis(r.get(3)),
        last_seen_at: Timestamp::from_millis(r.get(4)),
        expires_at: Timestamp::from_millis(r.get(5)),
        ip_address: r.get(6),
        user_agent: r.get(7),
        assurance: Assurance::from_i64(r.get(8)),
    })
}

/// Inserts a session (optionally in a refresh-token family) and ends the user's oldest
/// sessions beyond `max_per_user`: a new login always succeeds.
pub(crate) fn insert_session(
    tx: &mut Transaction<'_>,
    s: &SessionRecord,
    family: Option<&str>,
    max_per_user: u32,
) -> StoreResult<()> {
    // One login at a time per user, across nodes, so that the count below is exact.
    crate::lock_user(tx, s.username.as_str())?;
    tx.execute(
        &format!("INSERT INTO sessions ({COLUMNS}, family_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &s.id.as_str(),
            &s.token_hash.as_slice(),
            &s.username.as_str(),
            &s.created_at.as_millis(),
            &s.last_seen_at.as_millis(),
            &s.expires_at.as_millis(),
            // Both come from the client: a NUL in them must not fail the login.
            &crate::text_opt(s.ip_address.as_deref()),
            &crate::text_opt(s.user_agent.as_deref()),
            &s.assurance.as_i64(),
            &family,
        ],
    )
    .map_err(crate::must_exist)?;
    // The sessions beyond the limit end, and so do their refresh tokens: an evicted
    // session must not come back through its refresh token.
    // Exact under the user's row lock. Nothing is deleted (and so no cache staled: the
    // invalidation trigger fires per statement) unless the limit was passed.
    let beyond: Vec<String> = tx
        .query(
            "SELECT id FROM sessions WHERE username = $1 ORDER BY created_at DESC, ordinal DESC OFFSET $2",
            &[&s.username.as_str(), &i64::from(max_per_user)],
        )
        .map_err(map_err)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !beyond.is_empty() {
        tx.execute("UPDATE refresh_tokens SET revoked = TRUE WHERE session_id = ANY($1)", &[&beyond])
            .map_err(map_err)?;
        tx.execute("DELETE FROM sessions WHERE id = ANY($1)", &[&beyond]).map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn create_session(&self, s: SessionRecord, max_per_user: u32, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| insert_session(tx, &s, None, max_per_user)).await
    }

    async fn get_session_by_token(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        let hash = token_hash.to_vec();
        self.read(move |c| {
            let row = c
                .query_opt(&format!("SELECT {COLUMNS} FROM sessions WHERE token_hash = $1"), &[&hash])
                .map_err(map_err)?;
            row.as_ref().map(from_row).transpose()
        })
        .await
    }

    async fn touch_session(&self, id: &SessionId, at: Timestamp) -> StoreResult<()> {
        let id = id.as_str().to_owned();
        self.write_quiet(move |tx| {
            tx.execute(
                "UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $2) WHERE id = $1",
                &[&id, &at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn list_sessions(&self, username: &Username) -> StoreResult<Vec<SessionRecord>> {
        let name = username.as_str().to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM sessions WHERE username = $1 ORDER BY created_at, ordinal");
            c.query(&sql, &[&name]).map_err(map_err)?.iter().map(from_row).collect()
        })
        .await
    }

    async fn delete_session(&self, id: &SessionId, audit: Audit) -> StoreResult<bool> {
        let id = id.as_str().to_owned();
        let deliberate = !audit.is_empty();
        let deleted = self.write(audit, move |tx| {
            // Ending a session deliberately (an audited logout or revoke, unlike an idle
            // expiry) also ends the refresh token that would renew it.
            if deliberate {
                // The user's row first, as every change to sessions and refresh tokens does.
                let owner = tx.query_opt("SELECT username FROM sessions WHERE id = $1", &[&id]).map_err(map_err)?;
                if let Some(owner) = owner {
                    crate::lock_user(tx, owner.get(0))?;
                }
                tx.execute("UPDATE refresh_tokens SET revoked = TRUE WHERE session_id = $1", &[&id])
                    .map_err(map_err)?;
            }
            match tx.execute("DELETE FROM sessions WHERE id = $1", &[&id]).map_err(map_err)? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        });
        crate::changed(deleted.await)
    }

    async fn delete_user_sessions(
        &self,
        username: &Username,
        keep: Option<&SessionId>,
        audit: Audit,
    ) -> StoreResult<u64> {
        let name = username.as_str().to_owned();
        let keep = keep.map(|k| k.as_str().to_owned());
        self.write(audit, move |tx| crate::users::end_sessions(tx, &name, keep.as_deref())).await
    }

    async fn delete_expired_sessions(&self, idle_cutoff: Timestamp, now: Timestamp) -> StoreResult<u64> {
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "DELETE FROM sessions WHERE last_seen_at < $1 OR expires_at <= $2",
                &[&idle_cutoff.as_millis(), &now.as_millis()],
            )
            .map_err(map_err)
        })
        .await
    }
}
