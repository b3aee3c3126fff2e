//! Refresh-token families and JWT signing keys.

use async_trait::async_trait;
use rampart_store::{Audit, JwtKeyRecord, RefreshOutcome, RefreshRecord, SessionRecord, StoreResult, TokenStore};
use rampart_types::{FamilyId, SigningKeyId, Timestamp, Username};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::{map_err, parse_col, SqliteStore};

/// How soon after its use a spent refresh token counts as the client racing itself (the
/// second use loses, nothing is revoked) rather than as a replay.
const CONCURRENT_USE_GRACE_MS: i64 = 5_000;

fn insert_refresh(tx: &Transaction<'_>, r: &RefreshRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, session_id, username, created_at, expires_at, assurance)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.token_hash.as_slice(),
            r.family_id.as_str(),
            r.session_id.as_str(),
            r.username.as_str(),
            r.created_at.as_millis(),
            r.expires_at.as_millis(),
            r.assurance.as_i64()
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create_session_with_refresh(
        &self,
        s: SessionRecord,
        r: RefreshRecord,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<()> {
        self.write(audit, move |tx| {
            crate::sessions::insert_session(tx, &s, Some(r.family_id.as_str()), max_per_user)?;
            insert_refresh(tx, &r)
        })
        .await
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT kid, sealed, public_key, created_at, retired_at FROM jwt_keys ORDER BY created_at, kid",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(JwtKeyRecord {
                        kid: SigningKeyId::from_stored(r.get(0)?),
                        sealed: r.get(1)?,
                        public_key: r.get(2)?,
                        created_at: Timestamp::from_millis(r.get(3)?),
                        retired_at: r.get::<_, Option<i64>>(4)?.map(Timestamp::from_millis),
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn add_jwt_key(&self, key: JwtKeyRecord, now: Timestamp, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            tx.execute("UPDATE jwt_keys SET retired_at = ?1 WHERE retired_at IS NULL", params![now.as_millis()])
                .map_err(map_err)?;
            tx.execute(
                "INSERT INTO jwt_keys (kid, sealed, public_key, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.kid.as_str(), key.sealed, key.public_key, key.created_at.as_millis()],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old: [u8; 32],
        new: RefreshRecord,
        session: SessionRecord,
        now: Timestamp,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<RefreshOutcome> {
        self.write(audit, move |tx| {
            type Row = (String, String, String, i64, Option<i64>, bool, i64);
            let row: Option<Row> = tx
                .query_row(
                    "SELECT family_id, session_id, username, expires_at, used_at, revoked, assurance
                     FROM refresh_tokens WHERE token_hash = ?1",
                    params![old.as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
                )
                .optional()
                .map_err(map_err)?;
            let Some((family, old_session, user, expires, used_at, revoked, assurance)) = row else {
                return Ok(RefreshOutcome::Invalid);
            };
            let username = parse_col(user, Username::parse).map_err(map_err)?;
            // The same token presented twice within moments is a client racing itself (two
            // tabs, a retry): the second loses, nothing is revoked. Later, it is a replay.
            if used_at.is_some_and(|t| now.as_millis() - t < CONCURRENT_USE_GRACE_MS) && !revoked {
                return Ok(RefreshOutcome::Invalid);
            }
            if revoked && used_at.is_none() {
                // Ended by logout or revocation, never spent: refuse, nothing to escalate.
                return Ok(RefreshOutcome::Invalid);
            }
            if used_at.is_some() {
                // A spent token came back: someone holds a stolen copy. End the family.
                tx.execute("UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1", params![family])
                    .map_err(map_err)?;
                tx.execute("DELETE FROM sessions WHERE family_id = ?1", params![family]).map_err(map_err)?;
                return Ok(RefreshOutcome::Reused { username, family_id: FamilyId::from_stored(family) });
            }
            if expires <= now.as_millis() {
                return Ok(RefreshOutcome::Invalid);
            }
            tx.execute(
                "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1",
                params![old.as_slice(), now.as_millis()],
            )
            .map_err(map_err)?;
            tx.execute("DELETE FROM sessions WHERE id = ?1", params![old_session]).map_err(map_err)?;
            // The new pair belongs to the family's user, keeps the assurance of the login
            // that started the family, and the family keeps its absolute lifetime: rotation
            // never extends or upgrades it.
            let assurance = rampart_store::Assurance::from_i64(assurance);
            let session = SessionRecord { username: username.clone(), assurance, ..session };
            crate::sessions::insert_session(tx, &session, Some(&family), max_per_user)?;
            let new = RefreshRecord {
                family_id: FamilyId::from_stored(family.clone()),
                username: username.clone(),
                expires_at: Timestamp::from_millis(expires),
                assurance,
                ..new
            };
            insert_refresh(tx, &new)?;
            Ok(RefreshOutcome::Rotated { username, family_id: FamilyId::from_stored(family), assurance })
        })
        .await
    }
}
