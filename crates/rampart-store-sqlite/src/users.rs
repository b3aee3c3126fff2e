use async_trait::async_trait;
use rampart_store::{Audit, StoreError, StoreResult, UserChange, UserRecord, UserStore};
use rampart_types::{AuthSource, RoleName, SessionId, Timestamp, Username};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::{map_err, parse_col, SqliteStore};

const COLUMNS: &str = "username, password_hash, role, disabled, mfa_enabled, created_at, updated_at, auth_source";
/// The built-in role whose holders count as admins for the last-admin rule.
const ADMIN_ROLE: &str = "admin";

fn from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        username: parse_col(r.get(0)?, Username::parse)?,
        password_hash: r.get(1)?,
        role: parse_col(r.get(2)?, RoleName::parse)?,
        disabled: r.get(3)?,
        mfa_enabled: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        updated_at: Timestamp::from_millis(r.get(6)?),
        auth_source: parse_col(r.get(7)?, AuthSource::parse)?,
    })
}

fn enabled_admins(tx: &Transaction<'_>) -> StoreResult<i64> {
    tx.query_row("SELECT count(*) FROM users WHERE role = ?1 AND disabled = 0", params![ADMIN_ROLE], |r| r.get(0))
        .map_err(map_err)
}

fn get_in(tx: &Transaction<'_>, username: &str) -> StoreResult<UserRecord> {
    tx.query_row(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"), params![username], from_row)
        .optional()
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)
}

/// Inserts a new user: `AlreadyExists` for a taken name, `NotFound` for an unknown role.
pub(crate) fn insert_user(tx: &Transaction<'_>, u: &UserRecord) -> StoreResult<()> {
    let exists: bool = tx
        .query_row("SELECT 1 FROM users WHERE username = ?1", params![u.username.as_str()], |_| Ok(true))
        .optional()
        .map_err(map_err)?
        .unwrap_or(false);
    if exists {
        return Err(StoreError::AlreadyExists);
    }
    let role_exists: bool = tx
        .query_row("SELECT 1 FROM roles WHERE name = ?1", params![u.role.as_str()], |_| Ok(true))
        .optional()
        .map_err(map_err)?
        .unwrap_or(false);
    if !role_exists {
        return Err(StoreError::NotFound);
    }
    tx.execute(
        &format!("INSERT INTO users ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            u.username.as_str(),
            u.password_hash,
            u.role.as_str(),
            u.disabled,
            u.mfa_enabled,
            u.created_at.as_millis(),
            u.updated_at.as_millis(),
            u.auth_source.as_str()
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, u: UserRecord, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| insert_user(tx, &u)).await
    }

    async fn get_user(&self, username: &Username) -> StoreResult<Option<UserRecord>> {
        let name = username.as_str().to_owned();
        self.read(move |c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM users WHERE username = ?1"), params![name], from_row)
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn list_users(&self, after: Option<&Username>, limit: usize) -> StoreResult<Vec<UserRecord>> {
        let after = after.map(|u| u.as_str().to_owned()).unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE username > ?1 ORDER BY username LIMIT ?2"))
                .map_err(map_err)?;
            let rows = stmt.query_map(params![after, limit], from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(map_err)
        })
        .await
    }

    async fn update_user(&self, username: &Username, change: UserChange, audit: Audit) -> StoreResult<UserRecord> {
        let name = username.as_str().to_owned();
        self.write(audit, move |tx| {
            let before = get_in(tx, &name)?;
            let at = change.at.unwrap_or(before.updated_at).as_millis();
            if let Some(role) = &change.role {
                tx.execute(
                    "UPDATE users SET role = ?2, updated_at = ?3 WHERE username = ?1",
                    params![name, role.as_str(), at],
                )
                .map_err(|e| match map_err(e) {
                    StoreError::AlreadyExists => StoreError::NotFound, // FK: role does not exist
                    other => other,
                })?;
            }
            if let Some(disabled) = change.disabled {
                tx.execute(
                    "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE username = ?1",
                    params![name, disabled, at],
                )
                .map_err(map_err)?;
            }
            if let Some(hash) = &change.password_hash {
                tx.execute(
                    "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE username = ?1",
                    params![name, hash, at],
                )
                .map_err(map_err)?;
            }
            if before.role.as_str() == ADMIN_ROLE && !before.disabled && enabled_admins(tx)? == 0 {
                return Err(StoreError::LastAdmin);
            }
            let role_changed = change.role.as_ref().is_some_and(|r| *r != before.role);
            let disabled_now = change.disabled == Some(true);
            if change.end_sessions || role_changed || disabled_now {
                tx.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE username = ?1 AND session_id IS NOT ?2",
                    params![name, change.keep_session.as_ref().map(SessionId::as_str)],
                )
                .map_err(map_err)?;
                tx.execute(
                    "DELETE FROM sessions WHERE username = ?1 AND id IS NOT ?2",
                    params![name, change.keep_session.as_ref().map(SessionId::as_str)],
                )
                .map_err(map_err)?;
            }
            get_in(tx, &name)
        })
        .await
    }

    async fn delete_user(&self, username: &Username, audit: Audit) -> StoreResult<()> {
        let name = username.as_str().to_owned();
        self.write(audit, move |tx| {
            let n = tx.execute("DELETE FROM users WHERE username = ?1", params![name]).map_err(map_err)?;
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
