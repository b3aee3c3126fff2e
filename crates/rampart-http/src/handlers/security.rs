use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::security::BlockView;
use rampart_core::AlertFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AlertQuery {
    status: Option<String>,
    severity: Option<String>,
    #[serde(rename = "type")]
    breach_type: Option<String>,
    limit: Option<usize>,
}

fn alert_json(a: &rampart_core::AlertRecord) -> Value {
    json!({
        "id": a.id,
        "severity": a.severity,
        "breach_type": a.breach_type,
        "details": a.details,
        "first_seen": a.first_seen,
        "last_seen": a.last_seen,
        "count": a.count,
        "status": a.status,
        "acknowledged_by": a.acknowledged_by,
    })
}

pub(crate) async fn alerts(
    auth: Authz<perm::SecurityRead>,
    State(state): State<AppState>,
    Query(q): Query<AlertQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = AlertFilter { status: q.status, severity: q.severity, breach_type: q.breach_type, limit };
    let all = state.core.detection().list_alerts(&auth, filter).await?;
    Ok(Json(json!({ "alerts": all.iter().map(alert_json).collect::<Vec<_>>() })))
}

pub(crate) async fn acknowledge(
    auth: Authz<perm::SecurityManage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(alert_json(&state.core.detection().set_alert_status(&auth, &id, "acknowledged").await?)))
}

pub(crate) async fn resolve(
    auth: Authz<perm::SecurityManage>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(alert_json(&state.core.detection().set_alert_status(&auth, &id, "resolved").await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlockRequest {
    ip_address: String,
    reason: String,
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

pub(crate) async fn blocked(auth: Authz<perm::SecurityRead>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "blocked_ips": state.core.detection().list_blocks(&auth).await? })))
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
