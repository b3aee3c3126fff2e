//! Writing a deployment copied from another backend (`rampart migrate`; see
//! `rampart_store::transfer`). The target must be empty; rows go in as they are, in the
//! order of `TRANSFER_TABLES`. The one-node source's audit chain becomes the chain of the
//! node named here (its records and its signed head), so that node continues it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use postgres::types::ToSql;
use postgres::Client;
use rampart_store::transfer::{Cell, Rows, REENCRYPT_CURSOR_KEY, SINGLE_NODE_AUDIT_HEAD, TRANSFER_TABLES};
use rampart_store::StoreError;

use crate::connector::Connector;
use crate::{internal, map_err};

/// A column of the target table: its name, SQL type and whether it is an identity.
#[derive(Clone)]
struct Column {
    name: String,
    data_type: String,
    identity: bool,
}

/// A connection that copies rows into an empty Rampart database.
pub struct PgImport {
    client: Arc<Mutex<Option<Client>>>,
    node: String,
    columns: HashMap<&'static str, Vec<Column>>,
}

/// Why rows could not be copied in.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source holds something the target cannot take as it is.
    #[error("{0}")]
    Refused(String),
}

type ImportResult<T> = Result<T, ImportError>;

fn refused(why: String) -> ImportError {
    ImportError::Refused(why)
}

fn known(table: &str) -> ImportResult<&'static str> {
    TRANSFER_TABLES.iter().copied().find(|t| *t == table).ok_or_else(|| refused(format!("unknown table {table}")))
}

/// How many tables the target's schema already has, asked before anything is created in it
/// (a wrong URL must not get Rampart's schema, an older Rampart database no upgrade).
pub async fn existing_tables(url: &str) -> ImportResult<i64> {
    let connector = Connector::parse(url)?;
    tokio::task::spawn_blocking(move || {
        let mut client = connector.connect()?;
        let n: i64 = client
            .query_one("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()", &[])
            .map_err(map_err)?
            .get(0);
        // The synchronous client owns a runtime: dropped here, on this blocking thread.
        drop(client);
        Ok(n)
    })
    .await
    .map_err(|e| ImportError::Store(internal(e)))?
}

impl PgImport {
    /// Connects to `url` (whose schema `PostgresStore::open` has created) as node `node`.
    pub async fn connect(url: &str, node: &str) -> ImportResult<Self> {
        let connector = Connector::parse(url)?;
        let (client, columns) = tokio::task::spawn_blocking(move || {
            let mut client = connector.connect()?;
            let mut columns = HashMap::new();
            for table in TRANSFER_TABLES {
                let rows = client
                    .query(
                        "SELECT column_name::text, data_type::text, is_identity::text FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                        &[table],
                    )
                    .map_err(map_err)?;
                let cols: Vec<Column> = rows
                    .iter()
                    .map(|r| Column { name: r.get(0), data_type: r.get(1), identity: r.get::<_, String>(2) == "YES" })
                    .collect::<Vec<_>>();
                if cols.is_empty() {
                    return Err(refused(format!("the target has no table {table}: is its schema Rampart's?")));
                }
                columns.insert(*table, cols);
            }
            Ok((client, columns))
        })
        .await
        .map_err(|e| ImportError::Store(internal(e)))??;
        Ok(Self { client: Arc::new(Mutex::new(Some(client))), node: node.to_owned(), columns })
    }

    async fn with_client<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> ImportResult<T> + Send + 'static,
    ) -> ImportResult<T> {
        let client = Arc::clone(&self.client);
        tokio::task::spawn_blocking(move || {
            let mut guard = client.lock().map_err(|_| internal(std::io::Error::other("import connection poisoned")))?;
            let c = guard.as_mut().ok_or_else(|| internal(std::io::Error::other("import connection closed")))?;
            f(c)
        })
        .await
        .map_err(|e| ImportError::Store(internal(e)))?
    }

    /// The first table that holds a row, if any: a copy goes only into an empty database.
    pub async fn first_non_empty_table(&self) -> ImportResult<Option<&'static str>> {
        self.with_client(|c| {
            for table in TRANSFER_TABLES {
                let any: bool =
                    c.query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[]).map_err(map_err)?.get(0);
                if any {
                    return Ok(Some(*table));
                }
            }
            Ok(None)
        })
        .await
    }

    /// How many rows `table` holds.
    pub async fn count_rows(&self, table: &str) -> ImportResult<u64> {
        let table = known(table)?;
        self.with_client(move |c| {
            let n: i64 = c.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]).map_err(map_err)?.get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Inserts `rows` in one transaction. Audit records are filed under this node's chain
    /// and the source's single audit head becomes this node's; a running re-encryption is
    /// refused (finish it on the source first).
    pub async fn insert(&self, rows: Rows) -> ImportResult<()> {
        let table = known(rows.table)?;
        let target = self.columns.get(table).cloned().unwrap_or_default();
        let node = self.node.clone();
        self.with_client(move |c| {
            let mut names = rows.columns.clone();
            let mut kinds = Vec::with_capacity(names.len() + 1);
            for name in &names {
                let col = target
                    .iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| refused(format!("the target's {table} has no column {name}")))?;
                kinds.push(col.clone());
            }
            let filed_under_node = table == "audit_log";
            if filed_under_node {
                names.push("node".to_owned());
            }
            let identity = kinds.iter().any(|k| k.identity);
            let slots: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) {} VALUES ({})",
                names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "),
                if identity { "OVERRIDING SYSTEM VALUE" } else { "" },
                slots.join(", "),
            );
            let mut tx = c.transaction().map_err(map_err)?;
            let stmt = tx.prepare(&sql).map_err(map_err)?;
            for row in rows.rows {
                let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(names.len());
                let mut key: Option<String> = None;
                for (cell, col) in row.into_iter().zip(&kinds) {
                    if table == "meta" && col.name == "key" {
                        if let Cell::Text(k) = &cell {
                            key = Some(k.clone());
                        }
                    }
                    values.push(convert(cell, col, table)?);
                }
                match key.as_deref() {
                    Some(REENCRYPT_CURSOR_KEY) => {
                        return Err(refused(
                            "a key re-encryption is still running on the source: let it finish first".to_owned(),
                        ))
                    }
                    Some(SINGLE_NODE_AUDIT_HEAD) => values[0] = Box::new(crate::audit::head_key(&node)),
                    _ => {}
                }
                if filed_under_node {
                    values.push(Box::new(node.clone()));
                }
                let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
                tx.execute(&stmt, &params).map_err(map_err)?;
            }
            Ok(tx.commit().map_err(map_err)?)
        })
        .await
    }

    /// After the last row: identity sequences continue after the copied values.
    pub async fn finish(&self) -> ImportResult<()> {
        let identities: Vec<(&'static str, String)> = self
            .columns
            .iter()
            .flat_map(|(t, cols)| cols.iter().filter(|c| c.identity).map(|c| (*t, c.name.clone())))
            .collect();
        self.with_client(move |c| {
            for (table, column) in identities {
                c.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                         (SELECT COALESCE(MAX(\"{column}\"), 0) + 1 FROM {table}), false)"
                    ),
                    &[],
                )
                .map_err(map_err)?;
            }
            Ok(())
        })
        .await
    }
}

/// A cell as the target column's type wants it (SQLite stores booleans as integers).
fn convert(cell: Cell, col: &Column, table: &str) -> ImportResult<Box<dyn ToSql + Sync>> {
    let mismatch = || refused(format!("{table}.{}: a stored value does not fit the column's type", col.name));
    Ok(match (cell, col.data_type.as_str()) {
        (Cell::Null, "boolean") => Box::new(None::<bool>),
        (Cell::Null, "bigint" | "integer") => Box::new(None::<i64>),
        (Cell::Null, "bytea") => Box::new(None::<Vec<u8>>),
        (Cell::Null, "double precision") => Box::new(None::<f64>),
        (Cell::Null, _) => Box::new(None::<String>),
        (Cell::Int(v), "boolean") => Box::new(v != 0),
        (Cell::Int(v), "bigint") => Box::new(v),
        (Cell::Int(v), "integer") => Box::new(i32::try_from(v).map_err(|_| mismatch())?),
        (Cell::Int(v), "double precision") => Box::new(v as f64),
        (Cell::Real(v), "double precision") => Box::new(v),
        (Cell::Text(t), "text") if !t.contains('\0') => Box::new(t),
        (Cell::Blob(b), "bytea") => Box::new(b),
        _ => return Err(mismatch()),
    })
}

impl Drop for PgImport {
    /// The synchronous client owns a runtime: dropped off any async worker.
    fn drop(&mut self) {
        if let Ok(mut guard) = self.client.lock() {
            if let Some(client) = guard.take() {
                let _ = std::thread::spawn(move || drop(client)).join();
            }
        }
    }
}
