use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{CoreError, UserView};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Authenticated, Enrolling, Public};
use crate::json::ApiJson;
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: SecretString,
    #[serde(default)]
    method: Option<String>,
    /// The device token a previous login handed out (API clients; browsers send a cookie).
    #[serde(default)]
    device_token: Option<SecretString>,
}

/// The browser-mode device cookie: long-lived, script-proof, sent only to this origin.
pub(crate) const DEVICE_COOKIE: &str = "__Host-rampart_device";

/// The client's device token: the body field, else the device cookie.
pub(crate) fn device_token<'a>(body: Option<&'a SecretString>, headers: &'a axum::http::HeaderMap) -> Option<&'a str> {
    body.map(|s| s.expose_secret()).or_else(|| crate::extract::cookie_in(headers, DEVICE_COOKIE))
}

/// The login answer of SPEC section 4: a session with its refresh token, or, when the
/// account has MFA, `{"mfa_required": true, "mfa_token"}` and no session.
pub(crate) fn login_json(out: rampart_core::LoginOutcome) -> Value {
    if let Some(mfa) = out.mfa_token {
        return json!({ "mfa_required": true, "mfa_token": mfa.expose_secret() });
    }
    let UserView { username, role, mfa_enabled, .. } = out.user;
    let mut body = json!({
        "token": out.token.expose_secret(),
        "refresh_token": out.refresh_token.expose_secret(),
        "expires_at": out.expires_at,
        "user": { "username": username, "role": role, "mfa_enabled": mfa_enabled },
    });
    if let Some(d) = &out.device_token {
        body["device_token"] = json!(d.expose_secret());
    }
    if out.mfa_enrollment_required {
        body["mfa_enrollment_required"] = json!(true);
    }
    body
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginMode {
    mode: Option<String>,
}

/// Browser mode: the session travels in a `__Host-` cookie (HttpOnly, Secure, SameSite=
/// Strict, Path=/) that scripts cannot read; the body carries only the CSRF token that
/// unsafe requests must echo in `X-CSRF-Token`.
/// `extra` fields join the body (the recovery codes of an enrolment).
pub(crate) fn cookie_response(
    state: &AppState,
    out: rampart_core::LoginOutcome,
    extra: Value,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if out.mfa_token.is_some() {
        return Json(login_json(out)).into_response();
    }
    let token = out.token.expose_secret().to_owned();
    let device = out.device_token.as_ref().map(|d| {
        format!(
            "{DEVICE_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            d.expose_secret(),
            rampart_core::device::DEVICE_TRUST_SECS
        )
    });
    let csrf = state.core.sessions().csrf_token_for(&token);
    let max_age = (out.expires_at.as_millis() - state.core.clock().now().as_millis()).max(0) / 1000;
    let cookie = format!(
        "{}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        crate::extract::SESSION_COOKIE
    );
    let enrollment = out.mfa_enrollment_required;
    let UserView { username, role, mfa_enabled, .. } = out.user;
    let mut body = json!({
        "csrf_token": csrf,
        "expires_at": out.expires_at,
        "user": { "username": username, "role": role, "mfa_enabled": mfa_enabled },
    });
    if enrollment {
        body["mfa_enrollment_required"] = json!(true);
    }
    if let (Some(o), Value::Object(e)) = (body.as_object_mut(), extra) {
        o.extend(e);
    }
    let mut res = Json(body).into_response();
    for c in std::iter::once(cookie).chain(device) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&c) {
            res.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    res
}

pub(crate) async fn login(
    Public(ctx): Public,
    State(state): State<AppState>,
    axum::extract::Query(mode): axum::extract::Query<LoginMode>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    match req.method.as_deref() {
        None | Some("local") => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                Some("method".to_owned()),
                "method: only \"local\" login is enabled on this server",
            ))
        }
    }
    let device = device_token(req.device_token.as_ref(), &headers);
    let out = state.core.login(&req.username, req.password, device, &ctx.meta()).await?;
    match mode.mode.as_deref() {
        None | Some("token") => Ok(Json(login_json(out)).into_response()),
        Some("cookie") => Ok(cookie_response(&state, out, json!({}))),
        Some(_) => Err(ApiError::bad_request(Some("mode".into()), "mode: expected token or cookie")),
    }
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
    let out = state.core.sessions().refresh(req.refresh_token.expose_secret(), &ctx.meta()).await?;
    Ok(Json(login_json(out)))
}

pub(crate) async fn logout(auth: Enrolling, State(state): State<AppState>) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    state.core.sessions().logout(&auth).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    // Clears a browser-mode cookie (harmless for bearer clients).
    let clear = format!("{}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0", crate::extract::SESSION_COOKIE);
    if let Ok(v) = axum::http::HeaderValue::from_str(&clear) {
        res.headers_mut().insert(axum::http::header::SET_COOKIE, v);
    }
    Ok(res)
}

pub(crate) async fn logout_all(auth: Authenticated, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let n = state.core.sessions().logout_all(&auth).await?;
    Ok(Json(json!({ "sessions_ended": n })))
}

pub(crate) async fn me(auth: Authenticated, State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let user = state.core.users().me(&auth).await?;
    let permissions: Vec<&str> = auth.who.role.permissions.iter().map(|p| p.as_str()).collect();
    Ok(Json(json!({
        "username": user.username,
        "role": user.role,
        "mfa_enabled": user.mfa_enabled,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "permissions": permissions,
        "assurance": auth.who.assurance.as_str(),
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
    state.core.users().change_password(&auth, req.current_password, req.new_password).await.map_err(|e| match e {
        CoreError::Forbidden(m) => ApiError::Core(CoreError::Forbidden(m)),
        e => e.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
