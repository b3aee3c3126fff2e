use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{RoleRecord, RoleSpec};
use rampart_types::{CollectionName, Permission, RoleName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

/// A role as clients see it.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct RoleView {
    name: RoleName,
    description: String,
    permissions: Vec<Permission>,
    /// `null` when the role's grants reach every collection.
    collections: Option<Vec<CollectionName>>,
    builtin: bool,
    created_at: Timestamp,
}

impl From<RoleRecord> for RoleView {
    fn from(r: RoleRecord) -> Self {
        let RoleRecord { name, description, permissions, collections, builtin, created_at } = r;
        Self { name, description, permissions, collections, builtin, created_at }
    }
}

/// `GET /api/v1/roles`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct RolesPage {
    roles: Vec<RoleView>,
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleBody {
    /// Required on create; on replace, the path names the role.
    #[schema(value_type = Option<rampart_types::RoleName>)]
    name: Option<String>,
    description: Option<String>,
    #[schema(value_type = Vec<rampart_types::Permission>)]
    permissions: Vec<String>,
    #[schema(value_type = Option<Vec<rampart_types::CollectionName>>)]
    collections: Option<Vec<String>>,
}

impl RoleBody {
    fn into_spec(self, name: String) -> RoleSpec {
        RoleSpec { name, description: self.description, permissions: self.permissions, collections: self.collections }
    }
}

pub(crate) async fn list(auth: Authz<perm::RolesRead>, State(state): State<AppState>) -> ApiResult<Json<RolesPage>> {
    let roles = state.core.roles().list_roles(&auth).await?;
    Ok(Json(RolesPage { roles: roles.into_iter().map(RoleView::from).collect() }))
}

pub(crate) async fn get(
    auth: Authz<perm::RolesRead>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<RoleView>> {
    Ok(Json(state.core.roles().get_role(&auth, &name).await?.into()))
}

pub(crate) async fn create(
    auth: Authz<perm::RolesManage>,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<(StatusCode, Json<RoleView>)> {
    let name = body.name.clone().unwrap_or_default();
    let role = state.core.roles().create_role(&auth, body.into_spec(name)).await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

pub(crate) async fn replace(
    auth: Authz<perm::RolesManage>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RoleBody>,
) -> ApiResult<Json<RoleView>> {
    // The path names the role; a different name in the body would be silently ignored.
    if body.name.as_ref().is_some_and(|n| *n != name) {
        return Err(ApiError::bad_request(
            Some("name".into()),
            "name: roles cannot be renamed; give the path's name or none",
        ));
    }
    let role = state.core.roles().update_role(&auth, &name, body.into_spec(name.clone())).await?;
    Ok(Json(role.into()))
}

pub(crate) async fn delete(
    auth: Authz<perm::RolesManage>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.core.roles().delete_role(&auth, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
