//! Legal holds: `POST/GET /api/v1/admin/legal-holds`, `DELETE .../legal-holds/{hold_id}`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{HoldRequest, HoldView};
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

/// `{"subject_id": ..., "reason": ...}` or `{"collection": ..., "reason": ...}`.
#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlaceHold {
    subject_id: Option<String>,
    collection: Option<String>,
    #[serde(default)]
    reason: String,
}

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HoldQuery {
    #[serde(default)]
    include_released: bool,
}

#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct HoldList {
    legal_holds: Vec<HoldView>,
}

/// Places a hold: from its commit on, nothing it covers can be deleted.
pub(crate) async fn place(
    auth: Authz<perm::ComplianceLegalHold>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PlaceHold>,
) -> ApiResult<(StatusCode, Json<HoldView>)> {
    let req = HoldRequest { subject_id: req.subject_id, collection: req.collection, reason: req.reason };
    let hold = state.core.retention().place_hold(&auth, req).await?;
    Ok((StatusCode::CREATED, Json(hold)))
}

/// Active holds; with `?include_released=true`, released ones too.
pub(crate) async fn list(
    auth: Authz<perm::ComplianceLegalHold>,
    State(state): State<AppState>,
    Query(q): Query<HoldQuery>,
) -> ApiResult<Json<HoldList>> {
    Ok(Json(HoldList { legal_holds: state.core.retention().list_holds(&auth, q.include_released).await? }))
}

/// Releases a hold and answers with its record.
pub(crate) async fn release(
    auth: Authz<perm::ComplianceLegalHold>,
    State(state): State<AppState>,
    Path(hold_id): Path<String>,
) -> ApiResult<Json<HoldView>> {
    Ok(Json(state.core.retention().release_hold(&auth, &hold_id).await?))
}
