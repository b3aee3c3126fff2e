//! The `Notifier` port: what leaves the system when something happens (a security alert,
//! a signed audit checkpoint). Core decides *what* to tell, as a typed `Notice`; the
//! adapter decides where it goes and in which wire format. Messages are durable: the
//! caller queues them in the store's outbox (an alert's in the alert's own transaction),
//! and delivery happens later, away from any request.

use rampart_store::{AlertRecord, OutboxItem};
use rampart_types::Timestamp;

pub enum Notice<'a> {
    /// A new security alert, and what an operator should do about it.
    Alert { alert: &'a AlertRecord, recommended_action: &'static str },
    /// A signed head of the audit chain, for anchoring it off this machine.
    AuditCheckpoint { seq: i64, hash: [u8; 32], mac: [u8; 32] },
    /// A data subject's personal data was erased here (GDPR art. 17/19, CCPA deletion):
    /// every recipient of personal data must erase its copy. Names the subject, so the
    /// queued message is the one place its id outlives the erasure, until delivered.
    SubjectErased { request_id: &'a str, kind: &'a str, subject_id: &'a str },
}

pub trait Notifier: Send + Sync {
    /// One outbox item per endpoint that takes `notice`, formatted for it (no secrets:
    /// the outbox is stored; delivery adds what must stay secret).
    fn messages(&self, notice: &Notice<'_>, at: Timestamp) -> Vec<OutboxItem>;
    /// Names of the recipients of personal data that `SubjectErased` reaches.
    fn recipients(&self) -> Vec<String> {
        Vec::new()
    }
}

/// No endpoints: nothing is queued.
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn messages(&self, _: &Notice<'_>, _: Timestamp) -> Vec<OutboxItem> {
        Vec::new()
    }
}
