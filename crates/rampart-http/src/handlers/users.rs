use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{NewUser, UserView};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    #[schema(value_type = rampart_types::Username)]
    username: String,
    #[schema(value_type = String)]
    password: SecretString,
    #[schema(value_type = rampart_types::RoleName)]
    role: String,
}

pub(crate) async fn create(
    auth: Authz<perm::UsersCreate>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let new = NewUser { username: req.username, password: req.password, role: req.role };
    let user = state.core.users().create_user(&auth, new).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// `next_cursor` of the previous page: the last username it held.
    #[param(pattern = "^[a-z0-9._@-]{1,64}$")]
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/users`: a page of users by name; `next_cursor` (the `after` of the next
/// page) is `null` on the last one.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct UsersPage {
    users: Vec<UserView>,
    next_cursor: Option<String>,
}

pub(crate) async fn list(
    auth: Authz<perm::UsersRead>,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<UsersPage>> {
    let limit = q.limit.unwrap_or(100);
    let users = state.core.users().list_users(&auth, q.after.as_deref(), limit).await?;
    let next_cursor = if users.len() == limit { users.last().map(|u| u.username.to_string()) } else { None };
    Ok(Json(UsersPage { users, next_cursor }))
}

pub(crate) async fn get(
    auth: Authz<perm::UsersRead>,
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(state.core.users().get_user(&auth, &username).await?))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    #[schema(value_type = Option<rampart_types::RoleName>)]
    role: Option<String>,
    disabled: Option<bool>,
}

pub(crate) async fn update(
    auth: Authz<perm::UsersUpdate>,
    State(state): State<AppState>,
    Path(username): Path<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(state.core.users().update_user(&auth, &username, req.role, req.disabled).await?))
}

pub(crate) async fn delete(
    auth: Authz<perm::UsersDelete>,
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    state.core.users().delete_user(&auth, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}
