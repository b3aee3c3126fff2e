use async_trait::async_trait;
use postgres::{Row, Transaction};
use rampart_store::{Audit, StoreError, StoreResult, UserChange, UserRecord, UserStore};
use rampart_types::{AuthSource, RoleName, SessionId, Timestamp, Username};

use crate::{big, map_err, must_exist, parse_col, PostgresStore};

const COLUMNS: &str = "username, password_hash, role, disabled, mfa_enabled, created_at, updated_at, auth_source";
/// The built-in role whose holders count as admins for the last-admin rule.
const ADMIN_ROLE: &str = "admin";

pub(crate) fn from_row(r: &Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        username: parse_col(r.get(0), Username::parse)?,
        password_hash: r.get(1),
        role: parse_col(r.get(2), RoleName::parse)?,
        disabled: r.get(3),
        mfa_enabled: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
        updated_at: Timestamp::from_millis(r.get(6)),
        auth_source: parse_col(r.get(7), AuthSource::parse)?,
    })
}

/// Serialises every change that can lower the number of enabled admins, across nodes:
/// without it two nodes could each disable a different last-but-one admin, each seeing
/// the other's admin still enabled.
pub(crate) fn lock_admins(tx: &mut Transaction<'_>) -> StoreResult<()> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:admins'))", &[]).map_err(map_err)?;
    Ok(())
}

fn enabled_admins(tx: &mut Transaction<'_>) -> StoreResult<i64> {
    let row =
        tx.query_one("SELECT count(*) FROM users WHERE role = $1 AND NOT disabled", &[&ADMIN_ROLE]).map_err(map_err)?;
    Ok(row.get(0))
}

fn get_in(tx: &mut Transaction<'_>, username: &str) -> StoreResult<UserRecord> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = $1 FOR UPDATE");
    tx.query_opt(&sql, &[&username]).map_err(map_err)?.as_ref().map(from_row).transpose()?.ok_or(StoreError::NotFound)
}

/// Ends the user's sessions but `keep`, and the refresh tokens that would renew them; under
/// the user's row lock, like every change to them (see `lock_user`).
pub(crate) fn end_sessions(tx: &mut Transaction<'_>, username: &str, keep: Option<&str>) -> StoreResult<u64> {
    crate::lock_user(tx, username)?;
    tx.execute(
        "UPDATE refresh_tokens SET revoked = TRUE WHERE username = $1 AND session_id IS DISTINCT FROM $2",
        &[&username, &keep],
    )
    .map_err(map_err)?;
    tx.execute("DELETE FROM sessions WHERE username = $1 AND id IS DISTINCT FROM $2", &[&username, &keep])
        .map_err(map_err)
}

/// Inserts a new user: `AlreadyExists` for a taken name, `NotFound` for an unknown role.
pub(crate) fn insert_user(tx: &mut Transaction<'_>, u: &UserRecord) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
        &[
            &u.username.as_str(),
            &u.password_hash,
            &u.role.as_str(),
            &u.disabled,
            &u.mfa_enabled,
            &u.created_at.as_millis(),
            &u.updated_at.as_millis(),
            &u.auth_source.as_str(),
        ],
    )
    .map_err(must_exist)?;
    Ok(())
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, u: UserRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| insert_user(tx, &u)).await
    }

    async fn get_user(&self, username: &Username) -> StoreResult<Option<UserRecord>> {
        let name = username.as_str().to_owned();
        self.read(move |c| {
            let row =
                c.query_opt(&format!("SELECT {COLUMNS} FROM users WHERE username = $1"), &[&name]).map_err(map_err)?;
            row.as_ref().map(from_row).transpose()
        })
        .await
    }

    async fn list_users(&self, after: Option<&Username>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        let after = after.map(|u| u.as_str().to_owned()).unwrap_or_default();
        self.read(move |c| {
            let sql = format!("SELECT {COLUMNS} FROM users WHERE username > $1 ORDER BY username LIMIT $2");
            c.query(&sql, &[&after, &big(limit)]).map_err(map_err)?.iter().map(from_row).collect()
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|c| {
            let n: i64 = c.query_one("SELECT count(*) FROM users", &[]).map_err(map_err)?.get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn update_user(&self, username: &Username, change: UserChange, audit: Audit) -> StoreResult<UserRecord> {
        let name = username.as_str().to_owned();
        self.write(audit, move |tx| {
            lock_admins(tx)?;
            let before = get_in(tx, &name)?;
            let at = change.at.unwrap_or(before.updated_at).as_millis();
            if let Some(role) = &change.role {
                tx.execute(
                    "UPDATE users SET role = $2, updated_at = $3 WHERE username = $1",
                    &[&name, &role.as_str(), &at],
                )
                .map_err(must_exist)?;
            }
            if let Some(disabled) = change.disabled {
                tx.execute(
                    "UPDATE users SET disabled = $2, updated_at = $3 WHERE username = $1",
                    &[&name, &disabled, &at],
                )
                .map_err(map_err)?;
            }
            if let Some(hash) = &change.password_hash {
                tx.execute(
                    "UPDATE users SET password_hash = $2, updated_at = $3 WHERE username = $1",
                    &[&name, hash, &at],
                )
                .map_err(map_err)?;
            }
            if before.role.as_str() == ADMIN_ROLE && !before.disabled && enabled_admins(tx)? == 0 {
                return Err(StoreError::LastAdmin);
            }
            let role_changed = change.role.as_ref().is_some_and(|r| *r != before.role);
            let disabled_now = change.disabled == Some(true);
            if change.end_sessions || role_changed || disabled_now {
                end_sessions(tx, &name, change.keep_session.as_ref().map(SessionId::as_str))?;
            }
            get_in(tx, &name)
        })
        .await
    }

    async fn delete_user(&self, username: &Username, audit: Audit) -> StoreResult<()> {
        let name = username.as_str().to_owned();
        self.write(audit, move |tx| {
            lock_admins(tx)?;
            let n = tx.execute("DELETE FROM users WHERE username = $1", &[&name]).map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            if enabled_admins(tx)? == 0 {
                return Err(StoreError::LastAdmin);
            }
            Ok(())
        })
        .await
    }
}
