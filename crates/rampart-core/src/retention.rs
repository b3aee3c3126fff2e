//! Retention and legal holds: the holds API (place, list, release), the retention plan (a
//! dry run: what has expired, per collection and rule) and the background deletion of
//! expired documents that the lease holder runs.
//!
//! Which period applies to a document: its collection's `retention_days` if set, else
//! `pii_retention_days` if the collection declares `pii_fields` or the document names a
//! `subject_id`, else `default_retention_days`; none keeps it. A document expires that
//! many days after its `created_at`. The store applies the rule in SQL, in the deleting
//! transaction, together with the legal holds, so a batch never deletes a document that
//! is not expired or is held at its commit, whatever happened since the plan was made.

use std::sync::Arc;
use std::time::Duration;

use rampart_config::RetentionConfig;
use rampart_crypto::BlindIndexKey;
use rampart_store::{
    CollectionRecord, CollectionStore, HoldScope, LeaderLease, LegalHold, RetentionRule, RetentionStore, Store,
    StoreError,
};
use rampart_types::{perm, CollectionName, HoldId, SubjectId, Timestamp};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::EventType;
use crate::events::Events;
use crate::{Authorized, CoreError, CoreResult, RequestMeta};

const DAY_SECS: i64 = 86_400;
/// Longest hold reason kept.
const MAX_REASON: usize = 1000;

/// A legal hold as the API shows it. A subject hold shows its subject id to those who may
/// manage holds; the audit trail records only the subject's keyed hash.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct HoldView {
    pub hold_id: String,
    pub scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    pub reason: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
}

impl From<LegalHold> for HoldView {
    fn from(h: LegalHold) -> Self {
        let (subject_id, collection) = match h.scope {
            HoldScope::Subject => (Some(h.target), None),
            HoldScope::Collection => (None, Some(h.target)),
        };
        Self {
            hold_id: h.id.to_string(),
            scope: h.scope.as_str(),
            subject_id,
            collection,
            reason: h.reason,
            created_by: h.created_by,
            created_at: h.created_at,
            active: h.released_at.is_none(),
            released_at: h.released_at,
            released_by: h.released_by,
        }
    }
}

/// A request to place a hold: exactly one of `subject_id` and `collection`.
#[derive(Debug, Clone, Default)]
pub struct HoldRequest {
    pub subject_id: Option<String>,
    pub collection: Option<String>,
    pub reason: String,
}

/// One rule of one collection in the retention plan.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlanRow {
    pub collection: String,
    /// `collection`, `pii`, `default` or `none` (kept forever).
    pub source: &'static str,
    /// `all` documents, or, in collections without a period or PII fields of their own,
    /// `with_subject` (the PII period) or `without_subject` (the default one).
    pub applies_to: &'static str,
    pub days: Option<u32>,
    /// Documents created at or before this have expired.
    pub cutoff: Option<Timestamp>,
    pub expired: u64,
    /// Of the expired ones, kept by a legal hold.
    pub held: u64,
    /// What the job would delete now: expired and not held.
    pub deletable: u64,
    pub oldest_expired_created_at: Option<Timestamp>,
}

/// The retention plan: what the job would delete now. Computing it changes nothing.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionPlan {
    pub enabled: bool,
    pub auto_delete_expired: bool,
    pub default_retention_days: Option<u32>,
    pub pii_retention_days: Option<u32>,
    pub now: Timestamp,
    pub collections: Vec<PlanRow>,
}

impl RetentionPlan {
    pub fn total_deletable(&self) -> u64 {
        self.collections.iter().map(|r| r.deletable).sum()
    }
}

/// Retention and legal holds. *Holds* `RetentionStore`, `CollectionStore`, the blind-index
/// key (subject hashes for the audit trail), `Events`, the settings.
#[derive(Clone)]
pub struct Retention {
    retention_store: Arc<dyn RetentionStore>,
    collection_store: Arc<dyn CollectionStore>,
    blind_index: Arc<BlindIndexKey>,
    events: Events,
    settings: RetentionConfig,
    batch_pause: Duration,
    /// One deleting run per process.
    running: Arc<tokio::sync::Mutex<()>>,
}

impl Retention {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        blind_index: Arc<BlindIndexKey>,
        events: Events,
        settings: RetentionConfig,
    ) -> Self {
        let batch_pause = Duration::from_millis(settings.batch_pause_ms);
        Self {
            retention_store: store.clone(),
            collection_store: store,
            blind_index,
            events,
            settings,
            batch_pause,
            running: Arc::default(),
        }
    }

    pub fn settings(&self) -> &RetentionConfig {
        &self.settings
    }

    fn rule(&self, now: Timestamp) -> RetentionRule {
        RetentionRule {
            now,
            default_days: self.settings.default_retention_days,
            pii_days: self.settings.pii_retention_days,
        }
    }

    fn hold_details(&self, h: &LegalHold) -> Value {
        match h.scope {
            // Never the subject id: the audit chain is never erased.
            HoldScope::Subject => match SubjectId::parse(&h.target) {
                Ok(s) => json!({
                    "hold_id": h.id.as_str(),
                    "scope": "subject",
                    "subject_hash": crate::keyring::subject_hash(&self.blind_index, &s),
                }),
                Err(_) => json!({ "hold_id": h.id.as_str(), "scope": "subject" }),
            },
            HoldScope::Collection => json!({ "hold_id": h.id.as_str(), "scope": "collection", "collection": h.target }),
        }
    }

    /// Places a legal hold on a data subject or a collection: from its commit on, nothing
    /// it covers can be deleted (documents, the collection, by retention).
    pub async fn place_hold(
        &self,
        access: &Authorized<perm::ComplianceLegalHold>,
        req: HoldRequest,
    ) -> CoreResult<HoldView> {
        let who = access.who();
        let (scope, target) = match (req.subject_id, req.collection) {
            (Some(s), None) => {
                let s = SubjectId::parse(&s).map_err(|e| CoreError::validation("subject_id", e.to_string()))?;
                (HoldScope::Subject, s.as_str().to_owned())
            }
            (None, Some(c)) => {
                let c = CollectionName::parse(&c).map_err(|e| CoreError::validation("collection", e.to_string()))?;
                (HoldScope::Collection, c.as_str().to_owned())
            }
            _ => return Err(CoreError::validation("subject_id", "give exactly one of subject_id and collection")),
        };
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(CoreError::validation(
                "reason",
                format!("required: 1-{MAX_REASON} characters without control characters"),
            ));
        }
        let hold = LegalHold {
            id: rampart_crypto::new_id::<HoldId>(),
            scope,
            target,
            reason: reason.to_owned(),
            created_by: who.username.to_string(),
            created_at: self.events.now(),
            released_at: None,
            released_by: None,
        };
        let event = self.events.event(
            EventType::LegalHoldPlace,
            Some(who.username.as_str()),
            &who.origin,
            true,
            self.hold_details(&hold),
        );
        self.retention_store
            .place_legal_hold(hold.clone(), vec![event])
            .await
            .map_err(CoreError::about("collection"))?;
        Ok(hold.into())
    }

    /// Active holds, or all of them with `include_released`.
    pub async fn list_holds(
        &self,
        _: &Authorized<perm::ComplianceLegalHold>,
        include_released: bool,
    ) -> CoreResult<Vec<HoldView>> {
        Ok(self.retention_store.list_legal_holds(include_released).await?.into_iter().map(HoldView::from).collect())
    }

    /// Releases an active hold; deletion of what it covered may proceed (unless another
    /// hold covers it too).
    pub async fn release_hold(&self, access: &Authorized<perm::ComplianceLegalHold>, id: &str) -> CoreResult<HoldView> {
        let who = access.who();
        let id = HoldId::parse(id).map_err(|_| CoreError::NotFound("legal hold"))?;
        let hold = self.retention_store.get_legal_hold(&id).await?.ok_or(CoreError::NotFound("legal hold"))?;
        if !hold.active() {
            return Err(CoreError::Conflict("the legal hold is already released"));
        }
        let event = self.events.event(
            EventType::LegalHoldRelease,
            Some(who.username.as_str()),
            &who.origin,
            true,
            self.hold_details(&hold),
        );
        let released = self
            .retention_store
            .release_legal_hold(&id, who.username.as_str(), self.events.now(), vec![event])
            .await
            .map_err(|e| match e {
                // Released by someone else since it was read.
                StoreError::NotFound => CoreError::Conflict("the legal hold is already released"),
                e => e.into(),
            })?;
        Ok(released.into())
    }

    /// The retention plan for the API's readers.
    pub async fn plan_as(&self, _: &Authorized<perm::ComplianceRead>) -> CoreResult<RetentionPlan> {
        self.plan().await
    }

    /// What has expired now, per collection and rule, and how much of it is held. The
    /// counts come from the same SQL rule the deleting batches apply. Changes nothing.
    pub async fn plan(&self) -> CoreResult<RetentionPlan> {
        let now = self.events.now();
        let rule = self.rule(now);
        let counts = self.retention_store.count_expired_documents(rule).await?;
        let mut rows = Vec::new();
        for c in self.collection_store.list_collections().await? {
            let found = |with_subject: Option<bool>| {
                counts
                    .iter()
                    .filter(|n| n.collection == c.name && with_subject.is_none_or(|w| n.with_subject == w))
                    .fold((0, 0, None), |(e, h, o): (u64, u64, Option<Timestamp>), n| {
                        let oldest = match (o, n.oldest_created_at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        (e + n.expired, h + n.held, oldest)
                    })
            };
            for (source, applies_to, days, with_subject) in self.rules_of(&c) {
                let (expired, held, oldest) = found(with_subject);
                rows.push(PlanRow {
                    collection: c.name.to_string(),
                    source,
                    applies_to,
                    days,
                    cutoff: days.map(|d| cutoff(now, d)),
                    expired,
                    held,
                    deletable: expired.saturating_sub(held),
                    oldest_expired_created_at: oldest,
                });
            }
        }
        Ok(RetentionPlan {
            enabled: self.settings.enabled,
            auto_delete_expired: self.settings.auto_delete_expired,
            default_retention_days: self.settings.default_retention_days,
            pii_retention_days: self.settings.pii_retention_days,
            now,
            collections: rows,
        })
    }

    /// The rules of a collection: (source, applies to, days, which documents by subject).
    fn rules_of(&self, c: &CollectionRecord) -> Vec<(&'static str, &'static str, Option<u32>, Option<bool>)> {
        let (pii, default) = (self.settings.pii_retention_days, self.settings.default_retention_days);
        let named = |source, days: Option<u32>| if days.is_some() { source } else { "none" };
        if let Some(days) = c.retention_days {
            vec![("collection", "all", Some(days), None)]
        } else if !c.pii_fields.is_empty() {
            vec![(named("pii", pii), "all", pii, None)]
        } else {
            vec![
                (named("pii", pii), "with_subject", pii, Some(true)),
                (named("default", default), "without_subject", default, Some(false)),
            ]
        }
    }

    /// The background job of the lease holder: deletes expired documents every
    /// `interval_secs` while `enabled && auto_delete_expired`, starting at once (a run cut
    /// short by a crash is finished by the next start).
    pub async fn keep_deleting(&self, lease: Arc<dyn LeaderLease>) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.interval_secs));
        loop {
            tick.tick().await;
            match self.delete_expired(&*lease).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(documents = n, "retention deleted expired documents"),
                Err(e) => tracing::warn!(error = %e, "retention run stopped; the next run resumes it"),
            }
        }
    }

    /// One retention run: every collection's expired, unheld documents, `batch_size` per
    /// transaction, each batch with its `retention_delete` record. Only while this node
    /// holds `lease` (checked before each batch) and only when the settings ask for it; one
    /// run per process. Returns how many documents went.
    pub async fn delete_expired(&self, lease: &dyn LeaderLease) -> CoreResult<u64> {
        if !self.settings.deletes() {
            return Ok(0);
        }
        let Ok(_running) = self.running.try_lock() else { return Ok(0) };
        let now = self.events.now();
        let rule = self.rule(now);
        let batch = self.settings.batch_size;
        let mut total = 0;
        for c in self.collection_store.list_collections().await? {
            let rules = self.rules_of(&c);
            if rules.iter().all(|(_, _, days, _)| days.is_none()) {
                continue;
            }
            let cutoffs = cutoff_details(now, &rules);
            loop {
                if !lease.held().await {
                    tracing::warn!("this node lost the lease; retention continues on its next holder");
                    return Ok(total);
                }
                let (events, name, cutoffs) = (self.events.clone(), c.name.to_string(), cutoffs.clone());
                let audit: rampart_store::BatchAudit = Box::new(move |count| {
                    let meta = RequestMeta::local("retention");
                    let details = json!({ "collection": name, "count": count, "cutoff": cutoffs });
                    vec![events.event(EventType::RetentionDelete, Some("system"), &meta, true, details)]
                });
                let n = self.retention_store.delete_expired_documents(&c.name, rule, batch, audit).await?;
                total += n;
                if n < u64::try_from(batch).unwrap_or(u64::MAX) {
                    break;
                }
                if !self.batch_pause.is_zero() {
                    tokio::time::sleep(self.batch_pause).await;
                }
            }
        }
        Ok(total)
    }
}

fn cutoff(now: Timestamp, days: u32) -> Timestamp {
    now.minus_seconds(i64::from(days) * DAY_SECS)
}

/// The cutoff(s) a batch applied, for its audit record: one time, or one per kind of
/// document when the PII and default periods both apply.
fn cutoff_details(now: Timestamp, rules: &[(&'static str, &'static str, Option<u32>, Option<bool>)]) -> Value {
    let at = |d: &Option<u32>| d.map(|d| cutoff(now, d));
    match rules {
        [(_, _, days, _)] => json!(at(days)),
        _ => {
            Value::Object(rules.iter().map(|(_, applies, days, _)| ((*applies).to_owned(), json!(at(days)))).collect())
        }
    }
}
