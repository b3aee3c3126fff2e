use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{CoreError, UserView};
use rampart_types::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Authenticated, Public};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: SecretString,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct LoginResponse {
    token: String,
    expires_at: Timestamp,
    user: LoginUser,
}

#[derive(Serialize)]
struct LoginUser {
    username: String,
    role: String,
    mfa_enabled: bool,
}

pub(crate) async fn login(
    Public(ctx): Public,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    match req.method.as_deref() {
        None | Some("local") => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                Some("method".to_owned()),
                "method: only \"local\" login is enabled on this server",
            ))
        }
    }
    let out = state.core.login(&req.username, req.password, &ctx.meta()).await?;
    let UserView { username, role, mfa_enabled, .. } = out.user;
    Ok(Json(LoginResponse {
        token: out.token.expose_secret().to_owned(),
        expires_at: out.expires_at,
        user: LoginUser { username: username.to_string(), role: role.to_string(), mfa_enabled },
    }))
}

pub(crate) async fn logout(auth: Authenticated, State(state): State<AppState>) -> ApiResult<StatusCode> {
    state.core.logout(&auth.who).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn logout_all(auth: Authenticated, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let n = state.core.logout_all(&auth.who).await?;
    Ok(Json(json!({ "sessions_ended": n })))
}

pub(crate) async fn me(auth: Authenticated, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let user = state.core.me(&auth.who).await?;
    let permissions: Vec<&str> = auth.who.role.permissions.iter().map(|p| p.as_str()).collect();
    Ok(Json(json!({
        "username": user.username,
        "role": user.role,
        "mfa_enabled": user.mfa_enabled,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "permissions": permissions,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: SecretString,
    new_password: SecretString,
}

pub(crate) async fn change_password(
    auth: Authenticated,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    state.core.change_password(&auth.who, req.current_password, req.new_password).await.map_err(|e| match e {
        CoreError::Forbidden(m) => ApiError::Core(CoreError::Forbidden(m)),
        e => e.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
