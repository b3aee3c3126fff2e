use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::perm;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ErasureQuery {
    subject_id: String,
}

/// GDPR art. 17: deletes the subject's documents in every collection and destroys the
/// subject's data key, so copies in backups cannot be opened either.
pub(crate) async fn erase(
    auth: Authz<perm::GdprErase>,
    State(state): State<AppState>,
    Query(q): Query<ErasureQuery>,
) -> ApiResult<Json<Value>> {
    let n = state.core.privacy().erase_subject(&auth, &q.subject_id).await?;
    Ok(Json(json!({ "subject_id": q.subject_id, "documents_erased": n, "keys_destroyed": true })))
}
