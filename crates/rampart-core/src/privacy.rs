//! Data-subject rights (SPEC section 11): verification tokens, erasure by crypto-shredding
//! with the ledger every restore re-applies, export, the Article 15 / CCPA access summary,
//! consent history and CCPA opt-outs.
//!
//! A subject is named by its id only in documents and in answers to the caller. Everything
//! this service stores or audits carries the keyed `subject_hash` instead, so nothing but
//! the documents themselves (deleted at erasure) ever ties a row to a person.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use rampart_crypto::{BlindIndexKey, SessionToken, TokenHash};
use rampart_store::{
    CollectionStore, ConsentRecord, DocumentRecord, DocumentStore, Erasure, OptOutRecord, PrivacyCounts,
    PrivacyRequest, PrivacyStore, Store, Verification, VerificationRecord,
};
use rampart_types::{perm, CollectionName, SubjectId, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Value};

use crate::access::Access;
use crate::audit::EventType;
use crate::backup::ErasureHook;
use crate::data::Documents;
use crate::events::Events;
use crate::keyring::KeyRing;
use crate::notify::{Notice, Notifier};
use crate::{Authorized, CoreError, CoreResult, Principal, RequestMeta};

/// Documents read per page of an export (a document is at most 1 MiB: a page is bounded).
const EXPORT_PAGE: usize = 100;
/// Field names an access summary lists per collection.
const MAX_SUMMARY_FIELDS: usize = 200;
/// Opt-out kinds of the CCPA as amended by the CPRA.
const OPT_OUT_TYPES: &[&str] = &["do_not_sell", "do_not_share", "limit_sensitive_use"];

/// What `Privacy` is built from, beside the other services.
pub(crate) struct PrivacyParts {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub blind_index: Arc<BlindIndexKey>,
    pub notifier: Arc<dyn Notifier>,
    pub verification_minutes: u32,
}

#[derive(Clone)]
pub struct Privacy {
    privacy_store: Arc<dyn PrivacyStore>,
    document_store: Arc<dyn DocumentStore>,
    collection_store: Arc<dyn CollectionStore>,
    keys: Arc<KeyRing>,
    blind_index: Arc<BlindIndexKey>,
    notifier: Arc<dyn Notifier>,
    verification_minutes: u32,
    documents: Documents,
    events: Events,
    access: Access,
    erasure_hook: Arc<OnceLock<ErasureHook>>,
}

/// A request that must prove the subject's identity: a verification token, or an
/// administrator's override with its reason.
#[derive(Default)]
pub struct Proof {
    pub verification_token: Option<SecretString>,
    pub override_reason: Option<String>,
}

/// An erasure or CCPA deletion as asked.
pub struct ErasureAsk {
    pub subject_id: String,
    /// Why (`user_request`, `consumer_request`, ...): recorded, `[a-z0-9_-]{1,64}`.
    pub reason: Option<String>,
    pub proof: Proof,
}

#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct IssuedVerification {
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub verification_token: SecretString,
    pub subject_id: SubjectId,
    pub expires_at: Timestamp,
}

fn expose<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

/// The outcome of an erasure or deletion request.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ErasureReceipt {
    pub request_id: String,
    pub kind: String,
    /// `completed` once the data is gone here and every recipient was told; `processing`
    /// while notices to recipients are still queued.
    pub status: String,
    pub records_deleted: u64,
    pub requested_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub service_providers_notified: Vec<String>,
}

impl ErasureReceipt {
    fn from_request(r: PrivacyRequest) -> Self {
        Self {
            request_id: r.request_id,
            kind: r.kind,
            status: r.status,
            records_deleted: r.records_deleted,
            requested_at: r.requested_at,
            completed_at: r.completed_at,
            service_providers_notified: r.providers,
        }
    }
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ConsentView {
    pub consent_id: String,
    pub purpose: String,
    pub granted: bool,
    pub timestamp: Timestamp,
    pub recorded_at: Timestamp,
    pub recorded_by: String,
}

impl From<ConsentRecord> for ConsentView {
    fn from(c: ConsentRecord) -> Self {
        Self {
            consent_id: c.consent_id,
            purpose: c.purpose,
            granted: c.granted,
            timestamp: c.given_at,
            recorded_at: c.recorded_at,
            recorded_by: c.recorded_by,
        }
    }
}

/// A subject's consent: the latest decision per purpose, and the whole history.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ConsentStatus {
    pub subject_id: SubjectId,
    pub current: Vec<ConsentView>,
    pub history: Vec<ConsentView>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct OptOutView {
    pub opt_out_id: String,
    pub consumer_id: SubjectId,
    pub opt_out_type: String,
    /// `active` from the effective date on, `scheduled` before it.
    pub status: String,
    pub effective_date: String,
    pub confirmation_number: String,
    pub created_at: Timestamp,
}

/// A consent as asked.
pub struct ConsentAsk {
    pub subject_id: String,
    pub purpose: String,
    pub granted: bool,
    pub timestamp: Option<String>,
}

/// An opt-out as asked.
pub struct OptOutAsk {
    pub consumer_id: String,
    pub opt_out_type: String,
    pub effective_date: Option<String>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct CollectionHoldings {
    pub name: CollectionName,
    pub records: u64,
    /// Fields the collection declares personal.
    pub pii_fields: Vec<String>,
    /// Top-level fields present in this subject's records.
    pub fields: Vec<String>,
    pub encrypted: bool,
    pub retention_days: Option<u32>,
}

/// What is held about a subject and why (GDPR art. 15; CCPA right to know). Computed
/// from the stored records, consent history and opt-outs at the time of the request.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct AccessSummary {
    pub subject_id: SubjectId,
    pub generated_at: Timestamp,
    pub records: u64,
    pub collections: Vec<CollectionHoldings>,
    /// Categories of personal data: the personal fields present, across collections.
    pub categories: Vec<String>,
    /// Purposes the subject currently consents to.
    pub purposes: Vec<String>,
    pub consent: Vec<ConsentView>,
    /// Recipients personal data is disclosed to (the configured service providers).
    pub recipients: Vec<String>,
    pub do_not_sell: bool,
    pub opt_outs: Vec<OptOutView>,
    /// Erasure requests already carried out for this subject id.
    pub previously_erased: bool,
}

/// One record of an export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportRecord {
    pub collection: CollectionName,
    pub id: rampart_types::DocumentId,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub data: Value,
}

/// What an export says besides the records (small; the records are paged).
#[derive(Debug, Clone, Serialize)]
pub struct ExportHeader {
    pub export_id: String,
    pub subject_id: SubjectId,
    pub generated_at: Timestamp,
    pub consent: Vec<ConsentView>,
    pub do_not_sell: bool,
    pub opt_outs: Vec<OptOutView>,
}

/// A started export: the header, then the records one at a time, read a page of sealed
/// records at a time and opened only when asked for, so an export of any size holds one
/// sealed page and one opened record in memory (a record may be 1 MiB of JSON whose opened
/// and formatted forms are many times that: a page of them opened at once would not be
/// bounded in any useful sense).
pub struct Export {
    pub header: ExportHeader,
    subject: SubjectId,
    after: i64,
    actor: Principal,
    documents: Documents,
    document_store: Arc<dyn DocumentStore>,
    sealed: VecDeque<DocumentRecord>,
    done: bool,
}

impl Export {
    /// The next record, `None` at the end.
    pub async fn next_record(&mut self) -> CoreResult<Option<ExportRecord>> {
        if self.sealed.is_empty() && !self.done {
            let page = self.document_store.subject_documents(&self.subject, self.after, EXPORT_PAGE).await?;
            match page.last() {
                Some(last) => self.after = last.seq,
                None => self.done = true,
            }
            self.sealed.extend(page);
        }
        let Some(r) = self.sealed.pop_front() else { return Ok(None) };
        let data = self.documents.open_for_subject(&self.actor, &r).await?;
        Ok(Some(ExportRecord {
            collection: r.collection,
            id: r.id,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            data,
        }))
    }
}

fn parse_subject(field: &str, s: &str) -> CoreResult<SubjectId> {
    SubjectId::parse(s).map_err(|e| CoreError::validation(field, e.to_string()))
}

/// `[a-z0-9_-]{1,64}`: purposes, reasons and opt-out kinds are labels, not prose.
fn parse_label(field: &str, s: &str) -> CoreResult<String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    ok.then(|| s.to_owned()).ok_or_else(|| CoreError::validation(field, "must match [a-z0-9_-]{1,64}"))
}

/// An override reason is prose for the audit record: 8 to 500 characters, no controls.
fn parse_override_reason(s: &str) -> CoreResult<String> {
    let s = s.trim();
    let ok = (8..=500).contains(&s.chars().count()) && !s.chars().any(char::is_control);
    ok.then(|| s.to_owned())
        .ok_or_else(|| CoreError::validation("override_reason", "8 to 500 characters, no control characters"))
}

fn new_request_id(prefix: &str) -> String {
    format!("{prefix}-{}", rampart_crypto::random_id::<12>())
}

impl Privacy {
    pub(crate) fn new(parts: PrivacyParts, documents: Documents, events: Events, access: Access) -> Self {
        let PrivacyParts { store, keys, blind_index, notifier, verification_minutes } = parts;
        Self {
            privacy_store: store.clone(),
            document_store: store.clone(),
            collection_store: store,
            keys,
            blind_index,
            notifier,
            verification_minutes,
            documents,
            events,
            access,
            erasure_hook: Arc::default(),
        }
    }

    fn now(&self) -> Timestamp {
        self.events.now()
    }

    fn hash(&self, s: &SubjectId) -> String {
        crate::keyring::subject_hash(&self.blind_index, s)
    }

    /// Records a refused data-subject request (the refusal itself changes nothing).
    async fn refused(&self, kind: EventType, who: &Principal, mut details: Value, err: &CoreError) {
        if let Some(d) = details.as_object_mut() {
            d.insert("refused".into(), Value::String(err.to_string()));
        }
        let _ = self.events.record_event(kind, Some(who.username.as_str()), &who.origin, false, details).await;
    }

    /// Turns the proof into what the store spends: a token (checked there, in the
    /// request's own transaction), or an override that needs `gdpr.override`.
    async fn verification<P: rampart_types::PermissionMarker>(
        &self,
        access: &Authorized<P>,
        proof: &Proof,
    ) -> CoreResult<(Verification, Value)> {
        match (&proof.verification_token, &proof.override_reason) {
            (Some(token), None) => Ok((
                Verification::Token(*TokenHash::of(token.expose_secret()).as_bytes()),
                json!({"verified_by": "token"}),
            )),
            (None, Some(reason)) => {
                let reason = parse_override_reason(reason)?;
                self.access.authorize_also::<P, perm::GdprOverride>(access, None).await?;
                Ok((Verification::Override, json!({"verified_by": "override", "override_reason": reason})))
            }
            (Some(_), Some(_)) => {
                Err(CoreError::validation("override_reason", "give a verification token or an override, not both"))
            }
            (None, None) => Err(CoreError::validation(
                "verification_token",
                "required: issue one with POST /api/v1/gdpr/verification after checking the subject's identity",
            )),
        }
    }

    /// Issues a single-use verification token for `subject` after the operator checked the
    /// subject's identity out of band. Shown once; stored only as its hash.
    pub async fn issue_verification(
        &self,
        access: &Authorized<perm::GdprVerify>,
        subject: &str,
    ) -> CoreResult<IssuedVerification> {
        let who = access.who();
        let subject = parse_subject("subject_id", subject)?;
        let token = SessionToken::generate("rpv_");
        let now = self.now();
        let expires_at = now.plus_seconds(i64::from(self.verification_minutes) * 60);
        let hash = self.hash(&subject);
        let details = json!({ "subject_hash": hash, "expires_at": expires_at });
        let event =
            self.events.event(EventType::GdprVerification, Some(who.username.as_str()), &who.origin, true, details);
        let record = VerificationRecord {
            token_hash: *token.hash.as_bytes(),
            subject_hash: hash,
            issued_by: who.username.as_str().to_owned(),
            issued_at: now,
            expires_at,
        };
        self.privacy_store.issue_verification(record, vec![event]).await?;
        Ok(IssuedVerification { verification_token: token.token, subject_id: subject, expires_at })
    }

    /// GDPR art. 17: erases the subject everywhere (documents in every collection, index
    /// entries, keys, consent, opt-outs) and tells every recipient of personal data.
    pub async fn erase(&self, access: &Authorized<perm::GdprErase>, ask: ErasureAsk) -> CoreResult<ErasureReceipt> {
        self.erase_as(access, ask, EventType::GdprErasure, "gdpr_erasure", "erasure").await
    }

    /// CCPA right to delete: the same erasure, recorded as a consumer deletion.
    pub async fn ccpa_delete(
        &self,
        access: &Authorized<perm::CcpaDelete>,
        ask: ErasureAsk,
    ) -> CoreResult<ErasureReceipt> {
        self.erase_as(access, ask, EventType::CcpaDelete, "ccpa_delete", "deletion").await
    }

    /// A deletion or erasure request's current state (`processing` until every recipient
    /// was told).
    pub async fn request_status<P: rampart_types::PermissionMarker>(
        &self,
        _: &Authorized<P>,
        id: &str,
        kind: &str,
    ) -> CoreResult<ErasureReceipt> {
        let found = self.privacy_store.privacy_request(id).await?;
        found.filter(|r| r.kind == kind).map(ErasureReceipt::from_request).ok_or(CoreError::NotFound("request"))
    }

    async fn erase_as<P: rampart_types::PermissionMarker>(
        &self,
        access: &Authorized<P>,
        ask: ErasureAsk,
        event: EventType,
        kind: &str,
        prefix: &str,
    ) -> CoreResult<ErasureReceipt> {
        let who = access.who();
        let subject = parse_subject(if kind == "ccpa_delete" { "consumer_id" } else { "subject_id" }, &ask.subject_id)?;
        let reason = ask.reason.as_deref().map(|r| parse_label("reason", r)).transpose()?;
        let hash = self.hash(&subject);
        let request_id = new_request_id(prefix);
        let mut details = json!({ "subject_hash": hash, "request_id": request_id, "reason": reason });
        let (verification, proof) = match self.verification(access, &ask.proof).await {
            Ok(v) => v,
            Err(e) => {
                self.refused(event, who, details, &e).await;
                return Err(e);
            }
        };
        if let (Some(d), Value::Object(p)) = (details.as_object_mut(), proof) {
            d.extend(p);
        }
        let now = self.now();
        let notice = Notice::SubjectErased { request_id: &request_id, kind, subject_id: subject.as_str() };
        let notices = self.notifier.messages(&notice, now);
        let providers = self.notifier.recipients();
        if let Some(d) = details.as_object_mut() {
            d.insert("service_providers".into(), json!(providers));
        }
        let request = PrivacyRequest {
            request_id: request_id.clone(),
            kind: kind.to_owned(),
            subject_hash: hash.clone(),
            requested_by: who.username.as_str().to_owned(),
            requested_at: now,
            records_deleted: 0,
            providers: providers.clone(),
            status: String::new(),
            completed_at: None,
        };
        let audit = vec![self.events.event(event, Some(who.username.as_str()), &who.origin, true, details.clone())];
        let erasure = Erasure { subject, subject_hash: hash.clone(), verification, request, notices };
        let deleted = match self.privacy_store.erase_subject(erasure, audit).await {
            Ok(n) => n,
            Err(e) => {
                let e = CoreError::from(e);
                if matches!(e, CoreError::VerificationInvalid | CoreError::LegalHold { .. }) {
                    self.refused(event, who, details, &e).await;
                }
                return Err(e);
            }
        };
        self.keys.forget_all();
        if let Some(hook) = self.erasure_hook.get() {
            hook(&hash);
        }
        let pending = !providers.is_empty();
        Ok(ErasureReceipt {
            request_id,
            kind: kind.to_owned(),
            status: if pending { "processing" } else { "completed" }.to_owned(),
            records_deleted: deleted,
            requested_at: now,
            completed_at: (!pending).then_some(now),
            service_providers_notified: providers,
        })
    }

    /// GDPR art. 20: starts an export of everything held about the subject. The
    /// verification is spent and the export audited before the first record is read.
    pub async fn start_export(
        &self,
        access: &Authorized<perm::GdprExport>,
        subject: &str,
        format: &str,
        proof: Proof,
    ) -> CoreResult<Export> {
        let who = access.who();
        let subject = parse_subject("subject_id", subject)?;
        let hash = self.hash(&subject);
        let export_id = new_request_id("export");
        let mut details = json!({ "subject_hash": hash, "request_id": export_id, "format": format });
        let (verification, proof) = match self.verification(access, &proof).await {
            Ok(v) => v,
            Err(e) => {
                self.refused(EventType::GdprExport, who, details, &e).await;
                return Err(e);
            }
        };
        if let (Some(d), Value::Object(p)) = (details.as_object_mut(), proof) {
            d.extend(p);
        }
        let now = self.now();
        let request = PrivacyRequest {
            request_id: export_id.clone(),
            kind: "gdpr_export".into(),
            subject_hash: hash.clone(),
            requested_by: who.username.as_str().to_owned(),
            requested_at: now,
            records_deleted: 0,
            providers: Vec::new(),
            status: String::new(),
            completed_at: None,
        };
        let audit = vec![self.events.event(
            EventType::GdprExport,
            Some(who.username.as_str()),
            &who.origin,
            true,
            details.clone(),
        )];
        if let Err(e) = self.privacy_store.spend_verification(verification, request, audit).await {
            let e = CoreError::from(e);
            if matches!(e, CoreError::VerificationInvalid) {
                self.refused(EventType::GdprExport, who, details, &e).await;
            }
            return Err(e);
        }
        let (consent, opt_outs) = self.consent_and_opt_outs(&subject, &hash, now).await?;
        let do_not_sell = opt_outs.iter().any(|o| o.opt_out_type == "do_not_sell" && o.status == "active");
        let header = ExportHeader {
            export_id,
            subject_id: subject.clone(),
            generated_at: now,
            consent: consent.into_iter().map(ConsentView::from).collect(),
            do_not_sell,
            opt_outs,
        };
        Ok(Export {
            header,
            subject,
            after: 0,
            actor: who.clone(),
            documents: self.documents.clone(),
            document_store: Arc::clone(&self.document_store),
            sealed: VecDeque::new(),
            done: false,
        })
    }

    async fn consent_and_opt_outs(
        &self,
        subject: &SubjectId,
        hash: &str,
        now: Timestamp,
    ) -> CoreResult<(Vec<ConsentRecord>, Vec<OptOutView>)> {
        let consent = self.privacy_store.consent_history(hash).await?;
        let today = now.date();
        let opt_outs =
            self.privacy_store.opt_outs(hash).await?.into_iter().map(|o| opt_out_view(subject, o, &today)).collect();
        Ok((consent, opt_outs))
    }

    /// GDPR art. 15: what is held about the subject, where, why, for how long and who
    /// receives it.
    pub async fn access_summary(
        &self,
        access: &Authorized<perm::GdprAccess>,
        subject: &str,
    ) -> CoreResult<AccessSummary> {
        let subject = parse_subject("subject_id", subject)?;
        self.summarize(access.who(), subject, EventType::GdprAccess).await
    }

    /// CCPA right to know: the same summary, recorded as a consumer request.
    pub async fn ccpa_access(
        &self,
        access: &Authorized<perm::CcpaAccess>,
        consumer: &str,
    ) -> CoreResult<AccessSummary> {
        let subject = parse_subject("consumer_id", consumer)?;
        self.summarize(access.who(), subject, EventType::CcpaAccess).await
    }

    async fn summarize(&self, who: &Principal, subject: SubjectId, event: EventType) -> CoreResult<AccessSummary> {
        let hash = self.hash(&subject);
        let now = self.now();
        let mut collections = Vec::new();
        let mut categories = BTreeSet::new();
        let mut total = 0;
        let mut fields: BTreeMap<CollectionName, BTreeSet<String>> = BTreeMap::new();
        let mut after = 0;
        loop {
            let page = self.document_store.subject_documents(&subject, after, EXPORT_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for r in &page {
                let data = self.documents.open_for_subject(who, r).await?;
                let names = fields.entry(r.collection.clone()).or_default();
                if let Value::Object(o) = data {
                    for k in o.keys().take(MAX_SUMMARY_FIELDS) {
                        if names.len() < MAX_SUMMARY_FIELDS {
                            names.insert(k.clone());
                        }
                    }
                }
            }
        }
        for (name, records) in self.document_store.subject_collections(&subject).await? {
            let Some(c) = self.collection_store.get_collection(&name).await? else { continue };
            let present = fields.remove(&name).unwrap_or_default();
            let pii: Vec<String> = c.pii_fields.iter().map(|f| f.as_str().to_owned()).collect();
            for p in &pii {
                let top = p.split('.').next().unwrap_or(p);
                if present.contains(top) {
                    categories.insert(p.clone());
                }
            }
            total += records;
            collections.push(CollectionHoldings {
                name,
                records,
                pii_fields: pii,
                fields: present.into_iter().collect(),
                encrypted: c.encrypted,
                retention_days: c.retention_days,
            });
        }
        let (consent, opt_outs) = self.consent_and_opt_outs(&subject, &hash, now).await?;
        let mut current: BTreeMap<String, ConsentRecord> = BTreeMap::new();
        for c in &consent {
            current.insert(c.purpose.clone(), c.clone());
        }
        let purposes = current.values().filter(|c| c.granted).map(|c| c.purpose.clone()).collect();
        let previously_erased = self.privacy_store.is_erased(&hash).await?;
        let details = json!({ "subject_hash": hash, "records": total, "collections": collections.len() });
        self.events.record_event(event, Some(who.username.as_str()), &who.origin, true, details).await?;
        Ok(AccessSummary {
            do_not_sell: opt_outs.iter().any(|o| o.opt_out_type == "do_not_sell" && o.status == "active"),
            subject_id: subject,
            generated_at: now,
            records: total,
            collections,
            categories: categories.into_iter().collect(),
            purposes,
            consent: consent.into_iter().map(ConsentView::from).collect(),
            recipients: self.notifier.recipients(),
            opt_outs,
            previously_erased,
        })
    }

    /// Appends a consent decision (given or withdrawn) to the subject's history.
    pub async fn record_consent(
        &self,
        access: &Authorized<perm::GdprConsent>,
        ask: ConsentAsk,
    ) -> CoreResult<ConsentView> {
        let who = access.who();
        let subject = parse_subject("subject_id", &ask.subject_id)?;
        let purpose = parse_label("purpose", &ask.purpose)?;
        let now = self.now();
        let given_at = match ask.timestamp.as_deref() {
            None => now,
            Some(t) => {
                let t = Timestamp::parse_rfc3339(t)
                    .ok_or_else(|| CoreError::validation("timestamp", "must be an RFC 3339 time"))?;
                // A decision cannot be dated after it was recorded (5 minutes of skew).
                if t > now.plus_seconds(300) {
                    return Err(CoreError::validation("timestamp", "must not be in the future"));
                }
                t
            }
        };
        let hash = self.hash(&subject);
        let record = ConsentRecord {
            consent_id: new_request_id("consent"),
            subject_hash: hash.clone(),
            purpose: purpose.clone(),
            granted: ask.granted,
            given_at,
            recorded_at: now,
            recorded_by: who.username.as_str().to_owned(),
        };
        let details = json!({ "subject_hash": hash, "purpose": purpose, "granted": ask.granted, "consent_id": record.consent_id });
        let event = self.events.event(EventType::GdprConsent, Some(who.username.as_str()), &who.origin, true, details);
        self.privacy_store.record_consent(record.clone(), vec![event]).await?;
        Ok(record.into())
    }

    /// The subject's consent (audited: it is personal data read).
    pub async fn consent(&self, access: &Authorized<perm::GdprConsent>, subject: &str) -> CoreResult<ConsentStatus> {
        let who = access.who();
        let subject = parse_subject("subject_id", subject)?;
        let hash = self.hash(&subject);
        let history: Vec<ConsentView> =
            self.privacy_store.consent_history(&hash).await?.into_iter().map(ConsentView::from).collect();
        let details = json!({ "subject_hash": hash, "action": "read", "records": history.len() });
        self.events
            .record_event(EventType::GdprConsent, Some(who.username.as_str()), &who.origin, true, details)
            .await?;
        let mut current: BTreeMap<&str, &ConsentView> = BTreeMap::new();
        for c in &history {
            current.insert(c.purpose.as_str(), c);
        }
        let current = current.into_values().cloned().collect();
        Ok(ConsentStatus { subject_id: subject, current, history })
    }

    /// CCPA opt-out (do not sell, do not share, limit use of sensitive data).
    pub async fn opt_out(&self, access: &Authorized<perm::CcpaOptOut>, ask: OptOutAsk) -> CoreResult<OptOutView> {
        let who = access.who();
        let subject = parse_subject("consumer_id", &ask.consumer_id)?;
        let kind = parse_label("opt_out_type", &ask.opt_out_type)?;
        if !OPT_OUT_TYPES.contains(&kind.as_str()) {
            return Err(CoreError::validation("opt_out_type", "one of do_not_sell, do_not_share, limit_sensitive_use"));
        }
        let now = self.now();
        let effective_date = match ask.effective_date.as_deref() {
            None => now.date(),
            Some(d) => {
                let t = Timestamp::parse_date(d)
                    .ok_or_else(|| CoreError::validation("effective_date", "must be a date, YYYY-MM-DD"))?;
                // An opt-out takes effect at once by law; it may be scheduled, not backdated.
                if t.date() < now.date() {
                    return Err(CoreError::validation("effective_date", "must not be before today"));
                }
                if t > now.plus_seconds(366 * 86_400) {
                    return Err(CoreError::validation("effective_date", "must be within a year"));
                }
                t.date()
            }
        };
        let hash = self.hash(&subject);
        let confirmation = rampart_crypto::random_bytes::<5>();
        let record = OptOutRecord {
            opt_out_id: new_request_id("optout"),
            subject_hash: hash.clone(),
            opt_out_type: kind.clone(),
            effective_date,
            confirmation_number: format!("CCPA-{}", hex::encode_upper(confirmation)),
            created_at: now,
            created_by: who.username.as_str().to_owned(),
        };
        let details = json!({ "subject_hash": hash, "opt_out_type": kind, "opt_out_id": record.opt_out_id,
            "effective_date": record.effective_date });
        let event = self.events.event(EventType::CcpaOptOut, Some(who.username.as_str()), &who.origin, true, details);
        self.privacy_store.record_opt_out(record.clone(), vec![event]).await?;
        Ok(opt_out_view(&subject, record, &now.date()))
    }

    /// Counts for compliance evidence.
    pub async fn counts(&self) -> CoreResult<PrivacyCounts> {
        let now = self.now();
        Ok(self.privacy_store.privacy_counts(now, &now.date()).await?)
    }

    /// Keyed hashes of every erased subject.
    pub async fn erasure_hashes(&self) -> CoreResult<HashSet<String>> {
        Ok(self.privacy_store.erasure_ledger().await?.into_iter().map(|e| e.subject_hash).collect())
    }

    /// Erases again, in this store, every subject whose hash is in `ledger`: used after a
    /// restore so an erased subject never comes back. Returns documents removed.
    pub async fn apply_erasures(&self, ledger: &HashSet<String>) -> CoreResult<u64> {
        let mut subjects = HashSet::new();
        let mut after = 0;
        loop {
            let docs = self.document_store.documents_after(after, 1000).await?;
            let Some(last) = docs.last() else { break };
            after = last.seq;
            for d in docs.iter().filter_map(|d| d.subject_id.as_ref()) {
                if ledger.contains(&self.hash(d)) {
                    subjects.insert(d.clone());
                }
            }
        }
        let meta = RequestMeta::local("restore");
        let mut removed = 0;
        for s in subjects {
            let hash = self.hash(&s);
            let request_id = new_request_id("erasure");
            let details =
                json!({ "subject_hash": hash, "request_id": request_id, "reason": "erasure_ledger_reapplied" });
            let event = self.events.event(EventType::SubjectErase, Some("local-cli"), &meta, true, details);
            let request = PrivacyRequest {
                request_id,
                kind: "gdpr_erasure".into(),
                subject_hash: hash.clone(),
                requested_by: "local-cli".into(),
                requested_at: self.now(),
                records_deleted: 0,
                providers: Vec::new(),
                status: String::new(),
                completed_at: None,
            };
            let erasure = Erasure {
                subject: s,
                subject_hash: hash,
                verification: Verification::Override,
                request,
                notices: vec![],
            };
            removed += self.privacy_store.erase_subject(erasure, vec![event]).await?;
        }
        self.keys.forget_all();
        Ok(removed)
    }

    /// Called with each erased subject's hash, so a copy of the ledger can live beside the
    /// backups (restores into a fresh directory consult it).
    pub fn on_erasure(&self, hook: ErasureHook) {
        let _ = self.erasure_hook.set(hook);
    }
}

fn opt_out_view(subject: &SubjectId, o: OptOutRecord, today: &str) -> OptOutView {
    OptOutView {
        status: if o.effective_date.as_str() <= today { "active" } else { "scheduled" }.to_owned(),
        opt_out_id: o.opt_out_id,
        consumer_id: subject.clone(),
        opt_out_type: o.opt_out_type,
        effective_date: o.effective_date,
        confirmation_number: o.confirmation_number,
        created_at: o.created_at,
    }
}
