//! GDPR data-subject rights (SPEC section 11): verification, erasure (art. 17), export
//! (art. 20), access (art. 15) and consent.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body::Frame;
use rampart_core::{
    AccessSummary, ConsentAsk, ConsentStatus, ConsentView, CoreError, ErasureAsk, ErasureReceipt, Export,
    IssuedVerification, Proof,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::export_format::ExportFormat;
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

/// Header a verification token may come in instead of the query string (which proxies log).
const VERIFICATION_HEADER: &str = "x-verification-token";

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerificationRequest {
    #[schema(value_type = rampart_types::SubjectId)]
    subject_id: String,
}

/// `POST /api/v1/gdpr/verification`: after the operator checked the subject's identity out
/// of band. The token is shown once.
pub(crate) async fn issue_verification(
    auth: Authz<perm::GdprVerify>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<VerificationRequest>,
) -> ApiResult<(StatusCode, Json<IssuedVerification>)> {
    let issued = state.core.privacy().issue_verification(&auth, &req.subject_id).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// An erasure or deletion request's fields; each may come in the body or the query string
/// (a `DELETE` body is not carried by every client), never differently in both.
#[derive(utoipa::IntoParams, utoipa::ToSchema, Deserialize, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureFields {
    subject_id: Option<String>,
    consumer_id: Option<String>,
    reason: Option<String>,
    request_type: Option<String>,
    verification_method: Option<String>,
    verification_token: Option<String>,
    override_reason: Option<String>,
}

fn one_of(field: &str, body: Option<String>, query: Option<String>) -> Result<Option<String>, CoreError> {
    match (body, query) {
        (Some(b), Some(q)) if b != q => {
            Err(CoreError::validation(field, "given differently in the body and the query"))
        }
        (b, q) => Ok(b.or(q)),
    }
}

/// Merges body and query into one ask; `id_field` is `subject_id` (GDPR) or `consumer_id`
/// (CCPA), and the other is refused.
pub(crate) fn erasure_ask(
    body: ErasureFields,
    query: ErasureFields,
    headers: &HeaderMap,
    id_field: &str,
) -> Result<ErasureAsk, CoreError> {
    let (ids_body, ids_query) = if id_field == "subject_id" {
        if body.consumer_id.is_some() || query.consumer_id.is_some() {
            return Err(CoreError::validation("consumer_id", "unknown field here: use subject_id"));
        }
        (body.subject_id, query.subject_id)
    } else {
        if body.subject_id.is_some() || query.subject_id.is_some() {
            return Err(CoreError::validation("subject_id", "unknown field here: use consumer_id"));
        }
        (body.consumer_id, query.consumer_id)
    };
    let subject_id =
        one_of(id_field, ids_body, ids_query)?.ok_or_else(|| CoreError::validation(id_field, "required"))?;
    let reason = one_of("reason", body.reason, query.reason)?;
    let request_type = one_of("request_type", body.request_type, query.request_type)?;
    // Recorded by the operator's own process; not proof of identity here.
    let _ = one_of("verification_method", body.verification_method, query.verification_method)?;
    let token = one_of("verification_token", body.verification_token, query.verification_token)?;
    let token = one_of("verification_token", token, header_token(headers)?)?;
    Ok(ErasureAsk {
        subject_id,
        reason: reason.or(request_type),
        proof: Proof {
            verification_token: token.map(SecretString::from),
            override_reason: one_of("override_reason", body.override_reason, query.override_reason)?,
        },
    })
}

fn header_token(headers: &HeaderMap) -> Result<Option<String>, CoreError> {
    headers
        .get(VERIFICATION_HEADER)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| CoreError::validation(VERIFICATION_HEADER, "must be visible ASCII"))
        })
        .transpose()
}

/// The erasure report (SPEC section 11).
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct ErasureReport {
    erasure_id: String,
    /// `completed`: the subject's data is gone from this system when the call returns.
    status: &'static str,
    records_deleted: u64,
    completed_at: Option<rampart_types::Timestamp>,
    /// The audit records of this erasure carry this request's id.
    audit_reference: String,
    /// Recipients told to erase their copies; `GET /api/v1/gdpr/erasure/{id}` follows
    /// the delivery of those notices.
    service_providers_notified: Vec<String>,
    notifications: String,
}

/// `DELETE /api/v1/gdpr/erasure`: deletes the subject's records in every collection,
/// its index entries, consent and opt-outs, and destroys its key, so copies in backups
/// cannot be opened either.
pub(crate) async fn erase(
    auth: Authz<perm::GdprErase>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ErasureFields>,
    ApiJson(body): ApiJson<ErasureFields>,
) -> ApiResult<Json<ErasureReport>> {
    let ask = erasure_ask(body, query, &headers, "subject_id")?;
    let r = state.core.privacy().erase(&auth, ask).await?;
    Ok(Json(ErasureReport {
        audit_reference: format!("request:{}", auth.who().origin.request_id),
        erasure_id: r.request_id,
        status: "completed",
        records_deleted: r.records_deleted,
        completed_at: Some(r.requested_at),
        notifications: r.status,
        service_providers_notified: r.service_providers_notified,
    }))
}

/// `GET /api/v1/gdpr/erasure/{erasure_id}`.
pub(crate) async fn erasure_status(
    auth: Authz<perm::GdprErase>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ErasureReceipt>> {
    Ok(Json(state.core.privacy().request_status(&auth, &id, "gdpr_erasure").await?))
}

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    #[param(pattern = "^[!-~]{1,128}$")]
    subject_id: String,
    #[param(pattern = "^(json|csv|xml)$")]
    format: Option<String>,
    verification_token: Option<String>,
    override_reason: Option<String>,
}

/// Chunks of a running export: a bounded channel, so an export of any size holds a few
/// pages at most, and a client that goes away stops the reader.
struct ExportBody {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, ExportAborted>>,
}

/// Reading or opening a record failed after the response started: the transfer is cut
/// (never finished as if complete); the cause is logged.
#[derive(Debug, thiserror::Error)]
#[error("export aborted")]
struct ExportAborted;

impl http_body::Body for ExportBody {
    type Data = Bytes;
    type Error = ExportAborted;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ExportAborted>>> {
        self.rx.poll_recv(cx).map(|next| next.map(|chunk| chunk.map(Frame::data)))
    }
}

async fn produce(
    mut export: Export,
    format: ExportFormat,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, ExportAborted>>,
) {
    let send = |s: String| tx.send(Ok(Bytes::from(s)));
    if send(format.start(&export.header)).await.is_err() {
        return;
    }
    // One record per chunk: the channel holds at most four formatted records.
    let mut written = 0u64;
    loop {
        match export.next_record().await {
            Ok(Some(record)) => {
                let chunk = format.records(written, std::slice::from_ref(&record));
                written += 1;
                if send(chunk).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, export_id = export.header.export_id, "export aborted");
                let _ = tx.send(Err(ExportAborted)).await;
                return;
            }
        }
    }
    let _ = send(format.end(&export.header, written)).await;
}

/// `GET /api/v1/gdpr/export?subject_id=&format=json|csv|xml`: every record of the subject in
/// every collection, its consent history and opt-outs, as a download. Needs a verification
/// token (query or `X-Verification-Token`), spent before the first byte.
pub(crate) async fn export(
    auth: Authz<perm::GdprExport>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let format = match q.format.as_deref() {
        None => ExportFormat::Json,
        Some(f) => ExportFormat::parse(f).ok_or_else(|| CoreError::validation("format", "one of json, csv, xml"))?,
    };
    let token = one_of("verification_token", q.verification_token, header_token(&headers)?)?;
    let proof = Proof { verification_token: token.map(SecretString::from), override_reason: q.override_reason };
    let export = state.core.privacy().start_export(&auth, &q.subject_id, format.as_str(), proof).await?;
    let disposition = format!("attachment; filename=\"{}.{}\"", export.header.export_id, format.as_str());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(export, format, tx));
    let mut response = Body::new(ExportBody { rx }).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubjectQuery {
    #[param(pattern = "^[!-~]{1,128}$")]
    subject_id: String,
}

/// `GET /api/v1/gdpr/access?subject_id=`: the Article 15 summary.
pub(crate) async fn access(
    auth: Authz<perm::GdprAccess>,
    State(state): State<AppState>,
    Query(q): Query<SubjectQuery>,
) -> ApiResult<Json<AccessSummary>> {
    Ok(Json(state.core.privacy().access_summary(&auth, &q.subject_id).await?))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsentRequest {
    #[schema(value_type = rampart_types::SubjectId)]
    subject_id: String,
    purpose: String,
    granted: bool,
    /// When the subject decided (RFC 3339, not in the future); default now.
    #[schema(format = DateTime)]
    timestamp: Option<String>,
}

/// `POST /api/v1/gdpr/consent`: appends a decision (withdrawal is `granted: false`).
pub(crate) async fn record_consent(
    auth: Authz<perm::GdprConsent>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ConsentRequest>,
) -> ApiResult<(StatusCode, Json<ConsentView>)> {
    let ask =
        ConsentAsk { subject_id: req.subject_id, purpose: req.purpose, granted: req.granted, timestamp: req.timestamp };
    Ok((StatusCode::CREATED, Json(state.core.privacy().record_consent(&auth, ask).await?)))
}

/// `GET /api/v1/gdpr/consent?subject_id=`: the current decision per purpose and the history.
pub(crate) async fn consent(
    auth: Authz<perm::GdprConsent>,
    State(state): State<AppState>,
    Query(q): Query<SubjectQuery>,
) -> ApiResult<Json<ConsentStatus>> {
    Ok(Json(state.core.privacy().consent(&auth, &q.subject_id).await?))
}
