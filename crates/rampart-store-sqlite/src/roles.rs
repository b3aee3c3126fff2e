use async_trait::async_trait;
use rampart_store::{Audit, RoleRecord, RoleStore, StoreError, StoreResult};
use rampart_types::{RoleName, Timestamp};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::{internal, map_err, parse_col, SqliteStore};

const COLUMNS: &str = "name, description, permissions, collections, builtin, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<RoleRecord> {
    let (perms, cols): (String, Option<String>) = (r.get(2)?, r.get(3)?);
    let (permissions, collections) = RoleRecord::decode_lists(&perms, cols.as_deref())
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into()))?;
    Ok(RoleRecord {
        name: parse_col(r.get(0)?, RoleName::parse)?,
        description: r.get(1)?,
        permissions,
        collections,
        builtin: r.get(4)?,
        created_at: Timestamp::from_millis(r.get(5)?),
    })
}

fn encode(role: &RoleRecord) -> StoreResult<(String, Option<String>)> {
    role.encode_lists().map_err(internal)
}

fn get_in(tx: &Transaction<'_>, name: &str) -> StoreResult<Option<RoleRecord>> {
    tx.query_row(&format!("SELECT {COLUMNS} FROM roles WHERE name = ?1"), params![name], from_row)
        .optional()
        .map_err(map_err)
}

#[async_trait]
impl RoleStore for SqliteStore {
    async fn list_roles(&self) -> StoreResult<Vec<RoleRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM roles ORDER BY name")).map_err(map_err)?;
            let rows = stmt.query_map([], from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(map_err)
        })
        .await
    }

    async fn get_role(&self, name: &RoleName) -> StoreResult<Option<RoleRecord>> {
        let name = name.as_str().to_owned();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {COLUMNS} FROM roles WHERE name = ?1"))
                .map_err(map_err)?
                .query_row(params![name], from_row)
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn create_role(&self, role: RoleRecord, max_roles: usize, audit: Audit) -> StoreResult<()> {
        let (perms, cols) = encode(&role)?;
        self.write(audit, move |tx| {
            if get_in(tx, role.name.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            let count: i64 = tx.query_row("SELECT count(*) FROM roles", [], |r| r.get(0)).map_err(map_err)?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= max_roles {
                return Err(StoreError::LimitReached("too many roles"));
            }
            tx.execute(
                &format!("INSERT INTO roles ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                params![role.name.as_str(), role.description, perms, cols, role.builtin, role.created_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn upsert_builtin_role(&self, role: RoleRecord) -> StoreResult<()> {
        let (perms, cols) = encode(&role)?;
        self.write(Vec::new(), move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO roles ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, 1, ?5)
                     ON CONFLICT(name) DO UPDATE SET description = excluded.description,
                        permissions = excluded.permissions, collections = excluded.collections,
                        builtin = 1"
                ),
                params![role.name.as_str(), role.description, perms, cols, role.created_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn update_role(&self, role: RoleRecord, audit: Audit) -> StoreResult<()> {
        let (perms, cols) = encode(&role)?;
        self.write(audit, move |tx| {
            match get_in(tx, role.name.as_str())? {
                None => return Err(StoreError::NotFound),
                Some(r) if r.builtin => return Err(StoreError::InUse("built-in roles cannot be changed")),
                Some(_) => {}
            }
            tx.execute(
                "UPDATE roles SET description = ?2, permissions = ?3, collections = ?4 WHERE name = ?1",
                params![role.name.as_str(), role.description, perms, cols],
            )
            .map_err(map_err)?;
            // Holders' privileges changed: their sessions end, as on a role change, and with
            // them the refresh tokens that could open new ones.
            let holders = "SELECT username FROM users WHERE role = ?1";
            tx.execute(&format!("DELETE FROM sessions WHERE username IN ({holders})"), params![role.name.as_str()])
                .map_err(map_err)?;
            tx.execute(
                &format!("UPDATE refresh_tokens SET revoked = 1 WHERE username IN ({holders})"),
                params![role.name.as_str()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn delete_role(&self, name: &RoleName, audit: Audit) -> StoreResult<()> {
        let name = name.as_str().to_owned();
        self.write(audit, move |tx| {
            match get_in(tx, &name)? {
                None => return Err(StoreError::NotFound),
                Some(r) if r.builtin => return Err(StoreError::InUse("built-in roles cannot be deleted")),
                Some(_) => {}
            }
            let holders: i64 = tx
                .query_row("SELECT count(*) FROM users WHERE role = ?1", params![name], |r| r.get(0))
                .map_err(map_err)?;
            if holders > 0 {
                return Err(StoreError::InUse("the role is assigned to users"));
            }
            tx.execute("DELETE FROM roles WHERE name = ?1", params![name]).map_err(map_err)?;
            Ok(())
        })
        .await
    }
}
