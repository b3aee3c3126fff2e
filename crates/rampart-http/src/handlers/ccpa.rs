//! CCPA consumer rights (SPEC section 11): right to know, to delete, to opt out.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rampart_core::{AccessSummary, ErasureReceipt, OptOutAsk, OptOutView};
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::handlers::gdpr::{erasure_ask, ErasureFields};
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsumerQuery {
    #[param(pattern = "^[!-~]{1,128}$")]
    consumer_id: String,
}

/// `GET /api/v1/ccpa/access?consumer_id=`: categories, sources and recipients of what is held.
pub(crate) async fn access(
    auth: Authz<perm::CcpaAccess>,
    State(state): State<AppState>,
    Query(q): Query<ConsumerQuery>,
) -> ApiResult<Json<AccessSummary>> {
    Ok(Json(state.core.privacy().ccpa_access(&auth, &q.consumer_id).await?))
}

#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct DeletionReport {
    deletion_id: String,
    consumer_id: String,
    /// `processing` until every service provider was told, then `completed`
    /// (`GET /api/v1/ccpa/delete/{deletion_id}`).
    status: String,
    records_deleted: u64,
    requested_at: rampart_types::Timestamp,
    completed_at: Option<rampart_types::Timestamp>,
    service_providers_notified: Vec<String>,
}

/// `DELETE /api/v1/ccpa/delete`: erases the consumer's data here and tells every service
/// provider through the durable, signed webhook outbox.
pub(crate) async fn delete(
    auth: Authz<perm::CcpaDelete>,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ErasureFields>,
    ApiJson(body): ApiJson<ErasureFields>,
) -> ApiResult<Json<DeletionReport>> {
    let ask = erasure_ask(body, query, &headers, "consumer_id")?;
    let consumer_id = ask.subject_id.clone();
    let r = state.core.privacy().ccpa_delete(&auth, ask).await?;
    Ok(Json(DeletionReport {
        deletion_id: r.request_id,
        consumer_id,
        status: r.status,
        records_deleted: r.records_deleted,
        requested_at: r.requested_at,
        completed_at: r.completed_at,
        service_providers_notified: r.service_providers_notified,
    }))
}

/// `GET /api/v1/ccpa/delete/{deletion_id}`.
pub(crate) async fn deletion_status(
    auth: Authz<perm::CcpaDelete>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ErasureReceipt>> {
    Ok(Json(state.core.privacy().request_status(&auth, &id, "ccpa_delete").await?))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptOutRequest {
    #[schema(value_type = rampart_types::SubjectId)]
    consumer_id: String,
    #[schema(pattern = "^(do_not_sell|do_not_share|limit_sensitive_use)$")]
    opt_out_type: String,
    /// `YYYY-MM-DD`, from today to a year ahead; default today.
    #[schema(format = Date)]
    effective_date: Option<String>,
}

/// `POST /api/v1/ccpa/opt-out`.
pub(crate) async fn opt_out(
    auth: Authz<perm::CcpaOptOut>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<OptOutRequest>,
) -> ApiResult<(StatusCode, Json<OptOutView>)> {
    let ask =
        OptOutAsk { consumer_id: req.consumer_id, opt_out_type: req.opt_out_type, effective_date: req.effective_date };
    Ok((StatusCode::CREATED, Json(state.core.privacy().opt_out(&auth, ask).await?)))
}
