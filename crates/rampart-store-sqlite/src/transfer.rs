//! Reading every table as it is stored, for `rampart migrate` (see `rampart_store::transfer`).

use rampart_store::transfer::{Cell, Rows, TRANSFER_TABLES};
use rampart_store::{StoreError, StoreResult};
use rusqlite::types::ValueRef;
use tokio::sync::mpsc;

use crate::SqliteStore;
use crate::{internal, map_err};

/// `table` when it is one of the transfer tables (the only names put into SQL text here).
fn known(table: &str) -> StoreResult<&'static str> {
    TRANSFER_TABLES.iter().copied().find(|t| *t == table).ok_or(StoreError::NotFound)
}

impl SqliteStore {
    /// Sends every row of `table` to `out` in batches of `batch`, in storage order, from one
    /// read transaction. Returns the number of rows sent.
    pub async fn export_table(&self, table: &str, batch: usize, out: mpsc::Sender<Rows>) -> StoreResult<u64> {
        let table = known(table)?;
        self.read(move |c| {
            let mut stmt = c.prepare(&format!("SELECT * FROM {table}")).map_err(map_err)?;
            let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
            let width = columns.len();
            let mut rows = stmt.query([]).map_err(map_err)?;
            let mut pending = Vec::with_capacity(batch);
            let mut sent = 0u64;
            let send = |rows: Vec<Vec<Cell>>| {
                out.blocking_send(Rows { table, columns: columns.clone(), rows })
                    .map_err(|_| internal(std::io::Error::other("the copy was abandoned")))
            };
            while let Some(row) = rows.next().map_err(map_err)? {
                let mut cells = Vec::with_capacity(width);
                for i in 0..width {
                    cells.push(match row.get_ref(i).map_err(map_err)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(v) => Cell::Int(v),
                        ValueRef::Real(v) => Cell::Real(v),
                        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                    });
                }
                pending.push(cells);
                sent += 1;
                if pending.len() == batch {
                    send(std::mem::take(&mut pending))?;
                }
            }
            if !pending.is_empty() {
                send(pending)?;
            }
            Ok(sent)
        })
        .await
    }

    /// How many rows `table` holds.
    pub async fn count_rows(&self, table: &str) -> StoreResult<u64> {
        let table = known(table)?;
        self.read(move |c| {
            let n: i64 = c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).map_err(map_err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Every table of this database, for checking that `TRANSFER_TABLES` leaves none out.
    pub async fn table_names(&self) -> StoreResult<Vec<String>> {
        self.read(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .map_err(map_err)?;
            let names = stmt.query_map([], |r| r.get(0)).map_err(map_err)?;
            names.collect::<Result<Vec<String>, _>>().map_err(map_err)
        })
        .await
    }
}
