use axum::extract::State;
use axum::Json;
use rampart_core::rotation::KeysView;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

pub(crate) async fn show(auth: Authz<perm::KeysRead>, State(state): State<AppState>) -> ApiResult<Json<KeysView>> {
    Ok(Json(state.core.keys().keys_view(&auth).await?))
}

#[derive(utoipa::ToSchema, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    #[serde(default)]
    reencrypt: bool,
}

pub(crate) async fn rotate(
    auth: Authz<perm::KeysRotate>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RotateRequest>,
) -> ApiResult<Json<KeysView>> {
    Ok(Json(state.core.keys().rotate_keys(&auth, req.reencrypt).await?))
}
