use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::perm;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureQuery {
    subject_id: String,
}

/// The erasure report.
#[derive(Serialize)]
pub(crate) struct ErasureReport {
    subject_id: String,
    documents_erased: u64,
    /// Always `true`: the subject's data key is gone when the call succeeds.
    keys_destroyed: bool,
}

/// GDPR art. 17: deletes the subject's documents in every collection and destroys the
/// subject's data key, so copies in backups cannot be opened either.
pub(crate) async fn erase(
    auth: Authz<perm::GdprErase>,
    State(state): State<AppState>,
    Query(q): Query<ErasureQuery>,
) -> ApiResult<Json<ErasureReport>> {
    let documents_erased = state.core.privacy().erase_subject(&auth, &q.subject_id).await?;
    Ok(Json(ErasureReport { subject_id: q.subject_id, documents_erased, keys_destroyed: true }))
}
