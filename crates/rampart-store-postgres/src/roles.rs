use async_trait::async_trait;
use postgres::error::SqlState;
use postgres::{Row, Transaction};
use rampart_store::{Audit, RoleRecord, RoleStore, StoreError, StoreResult};
use rampart_types::{RoleName, Timestamp};

use crate::{internal, map_err, parse_col, PostgresStore};

const COLUMNS: &str = "name, description, permissions, collections, builtin, created_at";

fn from_row(r: &Row) -> StoreResult<RoleRecord> {
    let (perms, cols): (String, Option<String>) = (r.get(2), r.get(3));
    let (permissions, collections) = RoleRecord::decode_lists(&perms, cols.as_deref())
        .map_err(|e| internal(std::io::Error::other(format!("stored role does not parse: {e}"))))?;
    Ok(RoleRecord {
        name: parse_col(r.get(0), RoleName::parse)?,
        description: r.get(1),
        permissions,
        collections,
        builtin: r.get(4),
        created_at: Timestamp::from_millis(r.get(5)),
    })
}

fn get_in(tx: &mut Transaction<'_>, name: &str) -> StoreResult<Option<RoleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM roles WHERE name = $1 FOR UPDATE");
    tx.query_opt(&sql, &[&name]).map_err(map_err)?.as_ref().map(from_row).transpose()
}

#[async_trait]
impl RoleStore for PostgresStore {
    async fn list_roles(&self) -> StoreResult<Vec<RoleRecord>> {
        self.read(|c| {
            c.query(&format!("SELECT {COLUMNS} FROM roles ORDER BY name"), &[])
                .map_err(map_err)?
                .iter()
                .map(from_row)
                .collect()
        })
        .await
    }

    async fn get_role(&self, name: &RoleName) -> StoreResult<Option<RoleRecord>> {
        let name = name.as_str().to_owned();
        self.read(move |c| {
            let row =
                c.query_opt(&format!("SELECT {COLUMNS} FROM roles WHERE name = $1"), &[&name]).map_err(map_err)?;
            row.as_ref().map(from_row).transpose()
        })
        .await
    }

    async fn create_role(&self, role: RoleRecord, max_roles: usize, audit: Audit) -> StoreResult<()> {
        let (perms, cols) = role.encode_lists().map_err(internal)?;
        self.write(audit, move |tx| {
            // Creations on every node count one after another, so none passes the bound together.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:roles'))", &[]).map_err(map_err)?;
            if get_in(tx, role.name.as_str())?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            let count: i64 = tx.query_one("SELECT count(*) FROM roles", &[]).map_err(map_err)?.get(0);
            if usize::try_from(count).unwrap_or(usize::MAX) >= max_roles {
                return Err(StoreError::LimitReached("too many roles"));
            }
            tx.execute(
                &format!("INSERT INTO roles ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
                &[&role.name.as_str(), &role.description, &perms, &cols, &role.builtin, &role.created_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn upsert_builtin_role(&self, role: RoleRecord) -> StoreResult<()> {
        let (perms, cols) = role.encode_lists().map_err(internal)?;
        self.write(Vec::new(), move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO roles ({COLUMNS}) VALUES ($1, $2, $3, $4, TRUE, $5)
                     ON CONFLICT (name) DO UPDATE SET description = excluded.description,
                        permissions = excluded.permissions, collections = excluded.collections,
                        builtin = TRUE"
                ),
                &[&role.name.as_str(), &role.description, &perms, &cols, &role.created_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn update_role(&self, role: RoleRecord, audit: Audit) -> StoreResult<()> {
        let (perms, cols) = role.encode_lists().map_err(internal)?;
        self.write(audit, move |tx| {
            match get_in(tx, role.name.as_str())? {
                None => return Err(StoreError::NotFound),
                Some(r) if r.builtin => return Err(StoreError::InUse("built-in roles cannot be changed")),
                Some(_) => {}
            }
            let name = role.name.as_str();
            tx.execute(
                "UPDATE roles SET description = $2, permissions = $3, collections = $4 WHERE name = $1",
                &[&name, &role.description, &perms, &cols],
            )
            .map_err(map_err)?;
            // Holders' privileges changed: their sessions end, as on a role change, and with
            // them the refresh tokens that could open new ones.
            let holders = "SELECT username FROM users WHERE role = $1";
            // The holders' rows first, in one order, as every change to sessions and refresh
            // tokens locks its user's row before them: a refresh rotating meanwhile waits
            // (or is waited for) on the user row instead of deadlocking on a session.
            tx.execute(&format!("{holders} ORDER BY username COLLATE \"C\" FOR UPDATE"), &[&name]).map_err(map_err)?;
            tx.execute(&format!("DELETE FROM sessions WHERE username IN ({holders})"), &[&name]).map_err(map_err)?;
            tx.execute(&format!("UPDATE refresh_tokens SET revoked = TRUE WHERE username IN ({holders})"), &[&name])
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
            // A holder assigned on another node meanwhile is caught by the foreign key.
            tx.execute("DELETE FROM roles WHERE name = $1", &[&name]).map_err(|e| {
                if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                    StoreError::InUse("the role is assigned to users")
                } else {
                    map_err(e)
                }
            })?;
            Ok(())
        })
        .await
    }
}
