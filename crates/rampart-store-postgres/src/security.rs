#![allow(unused_variables)]
//! STUB: to be ported from rampart-store-sqlite.
use async_trait::async_trait;
use rampart_store::*;
use rampart_types::*;

use crate::PostgresStore;

#[async_trait]
impl SecurityStore for PostgresStore {
    async fn raise_alert(
        &self,
        alert: AlertRecord,
        since: Timestamp,
        webhooks: Vec<OutboxItem>,
        audit: Audit,
    ) -> StoreResult<(AlertRecord, bool)> {
        Err(crate::not_yet())
    }

    async fn enqueue_webhooks(&self, items: Vec<OutboxItem>) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn list_alerts(&self, filter: AlertFilter) -> StoreResult<Vec<AlertRecord>> {
        Err(crate::not_yet())
    }

    async fn set_alert_status(&self, id: &AlertId, status: &str, by: &str, audit: Audit) -> StoreResult<AlertRecord> {
        Err(crate::not_yet())
    }

    async fn add_block(&self, block: IpBlock, audit: Audit) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn remove_block(&self, cidr: &str, audit: Audit) -> StoreResult<bool> {
        Err(crate::not_yet())
    }

    async fn active_blocks(&self, now: Timestamp) -> StoreResult<Vec<IpBlock>> {
        Err(crate::not_yet())
    }

    async fn due_webhooks(&self, now: Timestamp, limit: usize) -> StoreResult<Vec<OutboxItem>> {
        Err(crate::not_yet())
    }

    async fn webhook_delivered(&self, event_id: &str, endpoint: &str, at: Timestamp) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn webhook_failed(
        &self,
        event_id: &str,
        endpoint: &str,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn remember_login_address(
        &self,
        username: &str,
        address: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> StoreResult<()> {
        Err(crate::not_yet())
    }

    async fn login_address_known(&self, username: &str, address: &str, since: Timestamp) -> StoreResult<bool> {
        Err(crate::not_yet())
    }

    async fn note_login_network(&self, username: &str, network: &str, at: Timestamp) -> StoreResult<bool> {
        Err(crate::not_yet())
    }
}
