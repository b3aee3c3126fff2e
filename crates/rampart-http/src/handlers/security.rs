use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::security::BlockView;
use rampart_core::{AlertFilter, AlertRecord};
use rampart_types::{AlertId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    status: Option<String>,
    severity: Option<String>,
    #[serde(rename = "type")]
    breach_type: Option<String>,
    limit: Option<usize>,
}

/// An alert as clients see it (the store's deduplication key stays inside). `From`
/// names every store field, so a new one is a decision here, not a silent leak.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct AlertView {
    id: AlertId,
    severity: String,
    breach_type: String,
    details: Value,
    first_seen: Timestamp,
    last_seen: Timestamp,
    count: u64,
    /// `open`, `acknowledged` or `resolved`.
    status: String,
    /// `null` until someone acknowledges or resolves the alert.
    acknowledged_by: Option<String>,
}

impl From<AlertRecord> for AlertView {
    fn from(a: AlertRecord) -> Self {
        let AlertRecord {
            id,
            severity,
            breach_type,
            dedup_key: _,
            details,
            first_seen,
            last_seen,
            count,
            status,
            acknowledged_by,
        } = a;
        Self { id, severity, breach_type, details, first_seen, last_seen, count, status, acknowledged_by }
    }
}

/// `GET /api/v1/admin/security/alerts`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct AlertsPage {
    alerts: Vec<AlertView>,
}

/// `GET /api/v1/admin/security/blocked-ips`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct BlocksPage {
    blocked_ips: Vec<BlockView>,
}

pub(crate) async fn alerts(
    auth: Authz<perm::SecurityRead>,
    State(state): State<AppState>,
    Query(q): Query<AlertQuery>,
) -> ApiResult<Json<AlertsPage>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AlertFilter { status: q.status, severity: q.severity, breach_type: q.breach_type, limit };
    let all = state.core.detection().list_alerts(&auth, filter).await?;
    Ok(Json(AlertsPage { alerts: all.into_iter().map(AlertView::from).collect() }))
}

pub(crate) async fn acknowledge(
    auth: Authz<perm::SecurityManage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    Ok(Json(state.core.detection().set_alert_status(&auth, &id, "acknowledged").await?.into()))
}

pub(crate) async fn resolve(
    auth: Authz<perm::SecurityManage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertView>> {
    Ok(Json(state.core.detection().set_alert_status(&auth, &id, "resolved").await?.into()))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockRequest {
    /// An address or a CIDR block (at most /16 for IPv4, /32 for IPv6), never the caller's own.
    ip_address: String,
    #[schema(pattern = "\\S")]
    reason: String,
    #[schema(minimum = 1, maximum = 8760)]
    duration_hours: u32,
}

pub(crate) async fn block(
    auth: Authz<perm::SecurityManage>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<BlockRequest>,
) -> ApiResult<(StatusCode, Json<BlockView>)> {
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_request(Some("reason".into()), "reason: must not be empty"));
    }
    let b = state.core.detection().block_ip(&auth, &req.ip_address, &req.reason, req.duration_hours).await?;
    Ok((StatusCode::CREATED, Json(b)))
}

pub(crate) async fn blocked(
    auth: Authz<perm::SecurityRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<BlocksPage>> {
    Ok(Json(BlocksPage { blocked_ips: state.core.detection().list_blocks(&auth).await? }))
}

/// `{ip}` is an address or a CIDR block with its `/` percent-encoded (`10.0.0.0%2F8`).
pub(crate) async fn unblock(
    auth: Authz<perm::SecurityManage>,
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> ApiResult<StatusCode> {
    state.core.detection().unblock_ip(&auth, &ip).await?;
    Ok(StatusCode::NO_CONTENT)
}
