use axum::extract::{Query, State};
use axum::Json;
use rampart_core::audit::AuditRecordView;
use rampart_core::{AuditFilter, FullVerification};
use rampart_types::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::perm;
use crate::AppState;

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    event_type: Option<String>,
    user: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    to: Option<String>,
    success: Option<bool>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// `GET /api/v1/admin/audit`: a page of records, oldest first. `next_cursor` is `null` on
/// the last page.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct AuditPage {
    records: Vec<AuditRecordView>,
    next_cursor: Option<String>,
}

fn time(field: &str, v: Option<String>) -> ApiResult<Option<Timestamp>> {
    v.map(|s| {
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| ApiError::bad_request(Some(field.to_owned()), format!("{field}: expected an RFC 3339 time")))
    })
    .transpose()
}

pub(crate) async fn audit(
    auth: Authz<perm::AuditRead>,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::bad_request(Some("limit".into()), "limit: must be between 1 and 1000"));
    }
    let after_seq = q
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::bad_request(Some("cursor".into()), "cursor: not a cursor from this API"))
        })
        .transpose()?;
    let filter = AuditFilter {
        event_type: q.event_type,
        user: q.user,
        from: time("from", q.from)?,
        to: time("to", q.to)?,
        success: q.success,
        after_seq,
        limit,
    };
    let records = state.core.audit().query_audit(&auth, filter).await?;
    let next_cursor = if records.len() == limit { records.last().map(|r| r.seq.to_string()) } else { None };
    Ok(Json(AuditPage { records: records.into_iter().map(AuditRecordView::from).collect(), next_cursor }))
}

pub(crate) async fn verify(
    auth: Authz<perm::AuditVerify>,
    State(state): State<AppState>,
) -> ApiResult<Json<FullVerification>> {
    Ok(Json(state.core.audit().verify_audit_as(&auth).await?))
}
