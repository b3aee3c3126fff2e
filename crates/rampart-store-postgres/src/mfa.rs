//! The second factor. Every claim or spend is one conditional `UPDATE`: PostgreSQL re-checks
//! its condition on the row's newest version once a concurrent writer (on any node) commits,
//! so of concurrent claims of one step, code or challenge exactly one changes a row.

use async_trait::async_trait;
use postgres::Transaction;
use rampart_store::{Audit, MfaState, MfaStore, StoreError, StoreResult};
use rampart_types::{Timestamp, Username};

use crate::{lock_user, map_err, must_exist, parse_col, PostgresStore};

/// How long after their expiry spent or abandoned challenges are kept before removal.
const CHALLENGE_KEEP_MS: i64 = 3_600_000;

/// Replaces the user's recovery codes as a set, under the user's row lock: two replacements
/// on two nodes never leave both sets behind. `NotFound` for an unknown user.
fn replace_codes(tx: &mut Transaction<'_>, user: &str, hashes: &[[u8; 32]]) -> StoreResult<()> {
    if !lock_user(tx, user)? {
        return Err(StoreError::NotFound);
    }
    tx.execute("DELETE FROM recovery_codes WHERE username = $1", &[&user]).map_err(map_err)?;
    let hashes: Vec<&[u8]> = hashes.iter().map(<[u8; 32]>::as_slice).collect();
    // One statement for the whole set; a hash given twice is one code.
    tx.execute(
        "INSERT INTO recovery_codes (username, code_hash) SELECT $1, h FROM unnest($2::bytea[]) AS h
         ON CONFLICT (username, code_hash) DO NOTHING",
        &[&user, &hashes],
    )
    .map_err(must_exist)?;
    Ok(())
}

/// Ends every session of the user and the refresh tokens that would renew them (the user's
/// row is already locked by the caller's `UPDATE users`).
fn end_all_sessions(tx: &mut Transaction<'_>, user: &str) -> StoreResult<()> {
    tx.execute("UPDATE refresh_tokens SET revoked = TRUE WHERE username = $1", &[&user]).map_err(map_err)?;
    tx.execute("DELETE FROM sessions WHERE username = $1", &[&user]).map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl MfaStore for PostgresStore {
    async fn mfa_state(&self, user: &Username) -> StoreResult<MfaState> {
        let u = user.as_str().to_owned();
        self.read(move |c| {
            let row = c
                .query_opt("SELECT mfa_secret, mfa_pending, mfa_last_step FROM users WHERE username = $1", &[&u])
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
            Ok(MfaState { secret: row.get(0), pending: row.get(1), last_step: row.get(2) })
        })
        .await
    }

    async fn set_mfa_pending(&self, user: &Username, sealed: Option<Vec<u8>>) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(Vec::new(), move |tx| {
            match tx
                .execute("UPDATE users SET mfa_pending = $2 WHERE username = $1", &[&u, &sealed])
                .map_err(map_err)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn activate_mfa(&self, user: &Username, code_hashes: Vec<[u8; 32]>, audit: Audit) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(audit, move |tx| {
            // The UPDATE takes the user's row lock first, as every change to sessions does.
            let n = tx
                .execute(
                    "UPDATE users SET mfa_secret = mfa_pending, mfa_pending = NULL, mfa_enabled = TRUE
                     WHERE username = $1 AND mfa_pending IS NOT NULL",
                    &[&u],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            // Every session so far was opened without the new factor: end them all.
            end_all_sessions(tx, &u)?;
            replace_codes(tx, &u, &code_hashes)
        })
        .await
    }

    async fn disable_mfa(&self, user: &Username, end_sessions: bool, audit: Audit) -> StoreResult<()> {
        let u = user.as_str().to_owned();
        self.write(audit, move |tx| {
            let found = tx
                .execute(
                    "UPDATE users SET mfa_secret = NULL, mfa_pending = NULL, mfa_enabled = FALSE, mfa_last_step = 0
                     WHERE username = $1",
                    &[&u],
                )
                .map_err(map_err)?;
            if found == 0 {
                return Err(StoreError::NotFound);
            }
            tx.execute("DELETE FROM recovery_codes WHERE username = $1", &[&u]).map_err(map_err)?;
            if end_sessions {
                end_all_sessions(tx, &u)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_totp_step(&self, user: &Username, step: i64) -> StoreResult<bool> {
        let u = user.as_str().to_owned();
        self.write(Vec::new(), move |tx| {
            let n = tx
                .execute("UPDATE users SET mfa_last_step = $2 WHERE username = $1 AND mfa_last_step < $2", &[&u, &step])
                .map_err(map_err)?;
            Ok(n == 1)
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
                "UPDATE recovery_codes SET used_at = $3 WHERE username = $1 AND code_hash = $2 AND used_at IS NULL";
            match tx.execute(sql, &[&u, &hash.as_slice(), &at.as_millis()]).map_err(map_err)? {
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
            tx.execute(
                "DELETE FROM mfa_challenges WHERE expires_at < $1",
                &[&(expires_at.as_millis() - CHALLENGE_KEEP_MS)],
            )
            .map_err(map_err)?;
            tx.execute(
                "INSERT INTO mfa_challenges (token_hash, username, expires_at) VALUES ($1, $2, $3)",
                &[&hash.as_slice(), &u, &expires_at.as_millis()],
            )
            .map_err(must_exist)?;
            Ok(())
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
            let row = tx
                .query_opt(
                    "UPDATE mfa_challenges SET attempts = attempts + 1
                     WHERE token_hash = $1 AND NOT used AND expires_at > $2 AND attempts < $3
                     RETURNING username",
                    &[&hash.as_slice(), &now.as_millis(), &i64::from(max_attempts)],
                )
                .map_err(map_err)?;
            row.map(|r| parse_col(r.get(0), Username::parse)).transpose()
        })
        .await
    }

    async fn consume_challenge(&self, hash: [u8; 32]) -> StoreResult<bool> {
        self.write(Vec::new(), move |tx| {
            let n = tx
                .execute(
                    "UPDATE mfa_challenges SET used = TRUE WHERE token_hash = $1 AND NOT used",
                    &[&hash.as_slice()],
                )
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }
}
