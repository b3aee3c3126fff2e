//! Edits of the database that only someone with the database's credentials could make.
//! Tests outside this crate use them to show each one is found (the chain, the AEAD, the
//! signed head); they never open the database themselves. Compiled only with the `tamper`
//! feature, which only dev-dependencies enable. Each call runs on a thread of its own: the
//! synchronous client may not be used on an async worker.

pub use rampart_store::tamper::AuditEdit;
use rampart_store::StoreResult;

use crate::connector::Connector;
use crate::{internal, map_err};

/// The database of one node: `url` as the store was opened with, `node` its audit chain.
#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub node: String,
}

impl Database {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client, &str) -> Result<T, postgres::Error> + Send + 'static,
    ) -> StoreResult<T> {
        self.run_with(move |c, node| f(c, node).map_err(map_err))
    }

    fn run_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client, &str) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (url, node) = (self.url.clone(), self.node.clone());
        std::thread::spawn(move || f(&mut Connector::parse(&url)?.connect()?, &node))
            .join()
            .map_err(|_| internal(std::io::Error::other("tamper thread panicked")))?
    }

    /// The sealed (or, in an unencrypted collection, plain) body of a document as stored.
    pub fn document_body(&self, id: &str) -> StoreResult<Vec<u8>> {
        let id = id.to_owned();
        self.run(move |c, _| Ok(c.query_one("SELECT body FROM documents WHERE id = $1", &[&id])?.get(0)))
    }

    pub fn set_document_body(&self, id: &str, body: &[u8]) -> StoreResult<()> {
        let (id, body) = (id.to_owned(), body.to_vec());
        self.run(move |c, _| c.execute("UPDATE documents SET body = $1 WHERE id = $2", &[&body, &id]).map(drop))
    }

    /// Transplants one document's stored body onto another.
    pub fn copy_document_body(&self, from: &str, to: &str) -> StoreResult<()> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.run(move |c, _| {
            c.execute(
                "UPDATE documents SET body = (SELECT body FROM documents WHERE id = $1) WHERE id = $2",
                &[&from, &to],
            )
            .map(drop)
        })
    }

    /// Applies `edit` to this node's audit chain.
    pub fn edit_audit(&self, edit: &AuditEdit) -> StoreResult<()> {
        let edit = edit.clone();
        self.run(move |c, node| {
            let node = node.to_owned();
            let mut run = |sql: &str, p: &[&(dyn postgres::types::ToSql + Sync)]| c.execute(sql, p).map(drop);
            match &edit {
                AuditEdit::ChangeDetails(seq) => {
                    run("UPDATE audit_log SET details = '{\"k\":1}' WHERE node = $1 AND seq = $2", &[&node, seq])
                }
                AuditEdit::ChangeIp(seq, ip) => {
                    run("UPDATE audit_log SET ip_address = $3 WHERE node = $1 AND seq = $2", &[&node, seq, ip])
                }
                AuditEdit::Remove(seq) => run("DELETE FROM audit_log WHERE node = $1 AND seq = $2", &[&node, seq]),
                AuditEdit::Swap(a, b) => {
                    run("UPDATE audit_log SET seq = -seq WHERE node = $1 AND seq IN ($2, $3)", &[&node, a, b])?;
                    run(
                        "UPDATE audit_log SET seq = CASE seq WHEN -$2::BIGINT THEN $3::BIGINT ELSE $2::BIGINT END \
                         WHERE node = $1 AND seq IN (-$2::BIGINT, -$3::BIGINT)",
                        &[&node, a, b],
                    )
                }
                AuditEdit::InsertAt(seq) => {
                    run("UPDATE audit_log SET seq = seq + 1000000 WHERE node = $1 AND seq >= $2", &[&node, seq])?;
                    run("UPDATE audit_log SET seq = seq - 999999 WHERE node = $1 AND seq >= 1000000", &[&node])?;
                    run(
                        "INSERT INTO audit_log SELECT node, $2::BIGINT, timestamp, 'login', 'mallory', ip_address, true, \
                         details, request_id, prev_hash, hash FROM audit_log WHERE node = $1 AND seq = $2::BIGINT - 1",
                        &[&node, seq],
                    )
                }
                AuditEdit::TruncateFrom(seq) => {
                    run("DELETE FROM audit_log WHERE node = $1 AND seq >= $2", &[&node, seq])
                }
                AuditEdit::Forge(seq) => run(
                    "UPDATE audit_log SET \"user\" = 'mallory', hash = prev_hash WHERE node = $1 AND seq = $2",
                    &[&node, seq],
                ),
                AuditEdit::RemoveHead => run("DELETE FROM meta WHERE key = 'audit_head:' || $1", &[&node]),
            }
        })
    }

    /// While on, every audit append fails as a full or broken disk would.
    pub fn fail_audit_appends(&self, on: bool) -> StoreResult<()> {
        let sql = if on {
            "CREATE OR REPLACE FUNCTION tamper_no_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$; \
             CREATE TRIGGER tamper_no_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION tamper_no_audit();"
        } else {
            "DROP TRIGGER tamper_no_audit ON audit_log;"
        };
        self.run(move |c, _| c.batch_execute(sql))
    }

    /// The queued webhook deliveries as stored: (endpoint, event id, payload JSON text).
    pub fn webhook_outbox(&self) -> StoreResult<Vec<(String, String, String)>> {
        self.run(|c, _| {
            let rows = c.query("SELECT endpoint, event_id, payload FROM webhook_outbox", &[])?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
        })
    }

    /// Every table's rows exactly as the server holds them (binary `COPY`: byte columns
    /// raw, text as UTF-8), one entry per table, for checks that a secret or a plaintext
    /// never reached the database.
    pub fn table_bytes(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.run_with(|c, _| {
            let tables: Vec<String> = c
                .query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1", &[])
                .map_err(map_err)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut out = Vec::new();
            for table in tables {
                let mut bytes = Vec::new();
                let mut reader = c.copy_out(&format!("COPY \"{table}\" TO STDOUT (FORMAT binary)")).map_err(map_err)?;
                std::io::Read::read_to_end(&mut reader, &mut bytes).map_err(internal)?;
                out.push((format!("postgres table {table}"), bytes));
            }
            Ok(out)
        })
    }

    /// Another client holds an exclusive lock on the collections table until the returned
    /// guard is dropped: writes to it wait, and then fail, as on a database that is stuck.
    pub fn hold_write_lock(&self) -> StoreResult<HeldLock> {
        let url = self.url.clone();
        let (locked_tx, locked) = std::sync::mpsc::channel::<StoreResult<()>>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mut client = match Connector::parse(&url).and_then(|c| c.connect()) {
                Ok(c) => c,
                Err(e) => return drop(locked_tx.send(Err(e))),
            };
            let held = client.batch_execute("BEGIN; LOCK TABLE collections IN ACCESS EXCLUSIVE MODE").map_err(map_err);
            let ok = held.is_ok();
            let _ = locked_tx.send(held);
            if ok {
                let _ = released.recv();
                let _ = client.batch_execute("ROLLBACK");
            }
        });
        locked.recv().map_err(|_| internal(std::io::Error::other("lock thread ended")))??;
        Ok(HeldLock { release: Some(release), thread: Some(thread) })
    }
}

/// Releases the lock when dropped.
pub struct HeldLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
