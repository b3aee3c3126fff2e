use axum::extract::{Query, State};
use axum::Json;
use rampart_core::compliance::ComplianceStatus;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::perm;
use crate::AppState;

/// `GET /api/v1/admin/compliance/status`: every control, computed now.
pub(crate) async fn status(
    auth: Authz<perm::ComplianceRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<ComplianceStatus>> {
    Ok(Json(state.core.compliance().status(&auth).await?))
}

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    /// The period in days (default 90, at most 366).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 366)]
    days: Option<String>,
}

/// `GET /api/v1/admin/compliance/soc2-report?days=N`: the signed evidence document
/// `{"report": {...}, "signature": {"alg": "EdDSA", "kid", "value"}}`.
pub(crate) async fn soc2_report(
    auth: Authz<perm::ComplianceRead>,
    State(state): State<AppState>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Json<Value>> {
    let days = q
        .days
        .map(|d| {
            d.parse::<u32>()
                .map_err(|_| ApiError::bad_request(Some("days".into()), "days: expected a whole number of days"))
        })
        .transpose()?;
    Ok(Json(state.core.compliance().soc2_report(&auth, days).await?))
}
