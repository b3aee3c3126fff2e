//! A lease for the jobs that must run on one node at a time: a session-level advisory lock
//! held on a connection of its own. When the holder dies, its connection closes, the server
//! releases the lock, and the next node that asks takes it.

use std::sync::{Arc, Mutex};

use postgres::Client;

use crate::connector::Connector;

/// Any constant shared by every node; distinct from the migration lock.
const LEASE_LOCK: i64 = 0x7261_6d70_6172_7402;

/// This node's claim on the lease; cheap to clone.
#[derive(Clone)]
pub struct AdvisoryLease {
    config: Connector,
    /// The connection that holds the lock while it is held.
    holder: Arc<Mutex<Option<Client>>>,
}

impl AdvisoryLease {
    pub(crate) fn new(config: Connector) -> Self {
        Self { config, holder: Arc::new(Mutex::new(None)) }
    }

    fn held_blocking(&self) -> bool {
        let Ok(mut holder) = self.holder.lock() else { return false };
        if let Some(client) = holder.as_mut() {
            // Still ours while the connection that took it is alive.
            if !client.is_closed() && client.simple_query("SELECT 1").is_ok() {
                return true;
            }
            // Dropped on this blocking thread, not on an async worker.
            holder.take();
        }
        let Ok(mut client) = self.config.connect() else { return false };
        let taken = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_LOCK])
            .map(|row| row.get::<_, bool>(0))
            .unwrap_or(false);
        if taken {
            *holder = Some(client);
        }
        taken
    }
}

#[async_trait::async_trait]
impl rampart_store::LeaderLease for AdvisoryLease {
    /// Whether this node holds the lease now, taking it when it is free. A node that
    /// cannot reach the database does not hold it.
    async fn held(&self) -> bool {
        let lease = self.clone();
        tokio::task::spawn_blocking(move || lease.held_blocking()).await.unwrap_or(false)
    }

    fn holds(&self) -> bool {
        self.holder.lock().is_ok_and(|h| h.as_ref().is_some_and(|c| !c.is_closed()))
    }
}

impl Drop for AdvisoryLease {
    fn drop(&mut self) {
        // The last handle closes the holding connection off any async worker.
        if Arc::strong_count(&self.holder) == 1 {
            if let Ok(mut holder) = self.holder.lock() {
                if let Some(client) = holder.take() {
                    let _ = std::thread::spawn(move || drop(client)).join();
                }
            }
        }
    }
}
