use async_trait::async_trait;
use rampart_store::{
    Audit, JwtKeyRecord, MfaState, MfaStore, RefreshOutcome, RefreshRecord, SessionRecord, StoreError, StoreResult,
};
use rampart_types::{Timestamp, Username};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::{map_err, parse_col, SqliteStore};

const CONCURRENT_USE_GRACE_MS: i64 = 5_000;

fn insert_refresh(tx: &Transaction<'_>, r: &RefreshRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, session_id, username, created_at, expires_at, assurance)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.token_hash.as_slice(),
            r.family_id,
            r.session_id,
            r.username.as_str(),
            r.created_at.as_millis(),
            r.expires_at.as_millis(),
            r.assurance.as_i64()
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

fn replace_codes(tx: &Transaction<'_>, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
    tx.execute("DELETE FROM recovery_codes WHERE username = ?1", params![user]).map_err(map_err)?;
    for h in hashes {
        tx.execute("INSERT INTO recovery_codes (username, code_hash) VALUES (?1, ?2)", params![user, h.as_slice()])
            .map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl MfaStore for SqliteStore {
    async fn mfa_state(&self, user: &Username) -> StoreResult<MfaState> {
        let u = user.as_str().to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT mfa_secret, mfa_pending, mfa_last_step FROM users WHERE username = ?1",
                params![u],
                |r| Ok(MfaState { secret: r.get(0)?, pending: r.get(1)?, last_step: r.get(2)? }),
            )
            .optional()
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn set_mfa_pending(&self, user: &Username, sealed: Option<Vec<u8>>) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(Vec::new(), move |tx| {
            let n = tx
                .execute("UPDATE users SET mfa_pending = ?2 WHERE username = ?1", params![u, sealed])
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn activate_mfa(&self, user: &Username, code_hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(audit, move |tx| {
            let n = tx
                .execute(
                    "UPDATE users SET mfa_secret = mfa_pending, mfa_pending = NULL, mfa_enabled = 1
                     WHERE username = ?1 AND mfa_pending IS NOT NULL",
                    params![u],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            // Every session so far was opened without the new factor: end them all.
            tx.execute("UPDATE refresh_tokens SET revoked = 1 WHERE username = ?1", params![u]).map_err(map_err)?;
            tx.execute("DELETE FROM sessions WHERE username = ?1", params![u]).map_err(map_err)?;
            replace_codes(tx, &u, &code_hashes)
        })
        .await
    }

    async fn disable_mfa(&self, user: &Username, end_sessions: bool, audit: Audit) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(audit, move |tx| {
            tx.execute(
                "UPDATE users SET mfa_secret = NULL, mfa_pending = NULL, mfa_enabled = 0, mfa_last_step = 0 WHERE username = ?1",
                params![u],
            )
            .map_err(map_err)?;
            tx.execute("DELETE FROM recovery_codes WHERE username = ?1", params![u]).map_err(map_err)?;
            if end_sessions {
                tx.execute("DELETE FROM sessions WHERE username = ?1", params![u]).map_err(map_err)?;
                tx.execute("UPDATE refresh_tokens SET revoked = 1 WHERE username = ?1", params![u]).map_err(map_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_totp_step(&self, user: &Username, step: i64) -> StoreResult<bool> {
        let u = user.as_str().to_owned();
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "UPDATE users SET mfa_last_step = ?2 WHERE username = ?1 AND mfa_last_step < ?2",
                params![u, step],
            )
            .map(|n| n == 1)
            .map_err(map_err)
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user: &Username,
        hash: [u8; 32],
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<bool> {
        let u = user.as_str().to_owned();
        let chainer = self.inner_chainer().get().cloned();
        // The code's use and its audit record commit together, or neither does.
        self.write(Vec::new(), move |tx| {
            let used = tx
                .execute(
                    "UPDATE recovery_codes SET used_at = ?3 WHERE username = ?1 AND code_hash = ?2 AND used_at IS NULL",
                    params![u, hash.as_slice(), at.as_millis()],
                )
                .map(|n| n == 1)
                .map_err(map_err)?;
            if used && !audit.is_empty() {
                let chainer = chainer.ok_or_else(|| {
                    StoreError::AuditUnavailable(Box::new(std::io::Error::other("audit chain key not installed")))
                })?;
                crate::audit::append_in(tx, chainer.as_ref(), &audit)?;
            }
            Ok(used)
        })
        .await
    }

    async fn replace_recovery_codes(&self, user: &Username, hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(audit, move |tx| replace_codes(tx, &u, &hashes)).await
    }

    async fn create_challenge(&self, hash: [u8; 32], user: &Username, expires_at: Timestamp) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(Vec::new(), move |tx| {
            tx.execute("DELETE FROM mfa_challenges WHERE expires_at < ?1", params![expires_at.as_millis() - 3_600_000])
                .map_err(map_err)?;
            tx.execute(
                "INSERT INTO mfa_challenges (token_hash, username, expires_at) VALUES (?1, ?2, ?3)",
                params![hash.as_slice(), u, expires_at.as_millis()],
            )
            .map(|_| ())
            .map_err(map_err)
        })
        .await
    }

    async fn attempt_challenge(
        &self,
        hash: [u8; 32],
        now: Timestamp,
        max_attempts: u32,
    ) -> StoreResult<Option<Username>> {
        self.write(Vec::new(), move |tx| {
            let n = tx
                .execute(
                    "UPDATE mfa_challenges SET attempts = attempts + 1
                     WHERE token_hash = ?1 AND used = 0 AND expires_at > ?2 AND attempts < ?3",
                    params![hash.as_slice(), now.as_millis(), max_attempts],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Ok(None);
            }
            let user: String = tx
                .query_row("SELECT username FROM mfa_challenges WHERE token_hash = ?1", params![hash.as_slice()], |r| {
                    r.get(0)
                })
                .map_err(map_err)?;
            parse_col(user, Username::parse).map(Some).map_err(map_err)
        })
        .await
    }

    async fn consume_challenge(&self, hash: [u8; 32]) -> StoreResult<bool> {
        self.write(Vec::new(), move |tx| {
            tx.execute(
                "UPDATE mfa_challenges SET used = 1 WHERE token_hash = ?1 AND used = 0",
                params![hash.as_slice()],
            )
            .map(|n| n == 1)
            .map_err(map_err)
        })
        .await
    }

    async fn create_session_with_refresh(
        &self,
        s: SessionRecord,
        r: RefreshRecord,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<()> {
        self.write(audit, move |tx| {
            crate::sessions::insert_session(tx, &s, Some(&r.family_id), max_per_user)?;
            insert_refresh(tx, &r)
        })
        .await
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT kid, sealed, public_key, created_at, retired_at FROM jwt_keys ORDER BY created_at",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(JwtKeyRecord {
                        kid: r.get(0)?,
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
                params![key.kid, key.sealed, key.public_key, key.created_at.as_millis()],
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
                return Ok(RefreshOutcome::Reused { username, family_id: family });
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
                family_id: family.clone(),
                username: username.clone(),
                expires_at: Timestamp::from_millis(expires),
                assurance,
                ..new
            };
            insert_refresh(tx, &new)?;
            Ok(RefreshOutcome::Rotated { username, family_id: family, assurance })
        })
        .await
    }
}
