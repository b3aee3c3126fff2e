use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{RoleRecord, RoleSpec};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

fn view(r: &RoleRecord) -> Value {
    json!({
        "name": r.name,
        "description": r.description,
        "permissions": r.permissions,
        "collections": r.collections,
        "builtin": r.builtin,
        "created_at": r.created_at,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    name: Option<String>,
    description: Option<String>,
    permissions: Vec<String>,
    collections: Option<Vec<String>>,
}

impl RoleBody {
    fn into_spec(self, name: String) -> RoleSpec {
        RoleSpec { name, description: self.description, permissions: self.permissions, collections: self.collections }
    }
}

pub(crate) async fn list(auth: Authz<perm::RolesRead>, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let roles = state.core.roles().list_roles(&auth).await?;
    Ok(Json(json!({ "roles": roles.iter().map(view).collect::<Vec<_>>() })))
}

pub(crate) async fn get(
    auth: Authz<perm::RolesRead>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(view(&state.core.roles().get_role(&auth, &name).await?)))
}

pub(crate) async fn create(
    auth: Authz<perm::RolesManage>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.name.clone().unwrap_or_default();
    let role = state.core.roles().create_role(&auth, body.into_spec(name)).await?;
    Ok((StatusCode::CREATED, Json(view(&role))))
}

pub(crate) async fn replace(
    auth: Authz<perm::RolesManage>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<Value>> {
    let role = state.core.roles().update_role(&auth, &name, body.into_spec(name.clone())).await?;
    Ok(Json(view(&role)))
}

pub(crate) async fn delete(
    auth: Authz<perm::RolesManage>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.core.roles().delete_role(&auth, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
