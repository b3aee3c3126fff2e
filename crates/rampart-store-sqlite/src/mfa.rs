use async_trait::async_trait;
use rampart_store::{Audit, MfaState, MfaStore, StoreError, StoreResult};
use rampart_types::{Timestamp, Username};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::{map_err, parse_col, SqliteStore};

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
            let found = tx
                .execute(
                    "UPDATE users SET mfa_secret = NULL, mfa_pending = NULL, mfa_enabled = 0, mfa_last_step = 0 WHERE username = ?1",
                    params![u],
                )
                .map_err(map_err)?;
            if found == 0 {
                return Err(StoreError::NotFound);
            }
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
        // The code's use and its audit record commit together; an unknown or spent code
        // rolls back with its record (see `changed`).
        let spent = self.write(audit, move |tx| {
            let sql =
                "UPDATE recovery_codes SET used_at = ?3 WHERE username = ?1 AND code_hash = ?2 AND used_at IS NULL";
            match tx.execute(sql, params![u, hash.as_slice(), at.as_millis()]).map_err(map_err)? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        });
        crate::changed(spent.await)
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
}
