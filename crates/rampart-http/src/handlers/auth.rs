use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{CoreError, UserView};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
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

/// The login answer of SPEC section 4: a session with its refresh token, or, when the
/// account has MFA, `{"mfa_required": true, "mfa_token"}` and no session.
pub(crate) fn login_json(out: rampart_core::LoginOutcome) -> Value {
    if let Some(mfa) = out.mfa_token {
        return json!({ "mfa_required": true, "mfa_token": mfa.expose_secret() });
    }
    let UserView { username, role, mfa_enabled, .. } = out.user;
    json!({
        "token": out.token.expose_secret(),
        "refresh_token": out.refresh_token.expose_secret(),
        "expires_at": out.expires_at,
        "user": { "username": username, "role": role, "mfa_enabled": mfa_enabled },
    })
}

pub(crate) async fn login(
    Public(ctx): Public,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(login_json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    refresh_token: SecretString,
}

pub(crate) async fn refresh(
    Public(ctx): Public,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<Value>> {
    let out = state.core.refresh(req.refresh_token.expose_secret(), &ctx.meta()).await?;
    Ok(Json(login_json(out)))
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
