//! The lease that one-node-at-a-time jobs (sweeps, scheduled rotation, re-encryption,
//! webhook delivery) run under. A single node always holds it; nodes sharing PostgreSQL
//! take it as an advisory lock, so it moves to another node when its holder dies.

#[async_trait::async_trait]
pub trait LeaderLease: Send + Sync {
    /// Whether this node holds the lease now, taking it when it is free.
    async fn held(&self) -> bool;
    /// Whether this node held the lease when it last looked, without asking or taking it
    /// (for reports: a health probe must not move the lease).
    fn holds(&self) -> bool;
}

/// The lease of a deployment with one node (SQLite): always held.
pub struct SingleNode;

#[async_trait::async_trait]
impl LeaderLease for SingleNode {
    async fn held(&self) -> bool {
        true
    }
    fn holds(&self) -> bool {
        true
    }
}
