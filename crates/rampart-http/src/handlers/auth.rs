use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{CoreError, LoginOutcome, UserView};
use rampart_types::{AuthSource, Permission, RoleName, Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Authenticated, Enrolling, Public};
use crate::handlers::mfa::Enrolled;
use crate::json::ApiJson;
use crate::AppState;

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    #[schema(value_type = String)]
    password: SecretString,
    #[serde(default)]
    #[schema(pattern = "^(local|ldap)$")]
    method: Option<String>,
    /// The device token a previous login handed out (API clients; browsers send a cookie).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    device_token: Option<SecretString>,
}

/// The browser-mode device cookie: long-lived, script-proof, sent only to this origin.
pub(crate) const DEVICE_COOKIE: &str = "__Host-rampart_device";

/// The client's device token: the body field, else the device cookie.
pub(crate) fn device_token<'a>(body: Option<&'a SecretString>, headers: &'a axum::http::HeaderMap) -> Option<&'a str> {
    body.map(|s| s.expose_secret()).or_else(|| crate::extract::cookie_in(headers, DEVICE_COOKIE))
}

/// Writes a secret into the response body; it stays a `SecretString` until then.
pub(crate) fn expose<S: Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose_secret())
}

fn expose_some<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => expose(secret, s),
        None => s.serialize_none(),
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The user a login answer names.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct SessionUser {
    username: Username,
    role: RoleName,
    mfa_enabled: bool,
}

impl From<UserView> for SessionUser {
    fn from(u: UserView) -> Self {
        let UserView { username, role, mfa_enabled, .. } = u;
        Self { username, role, mfa_enabled }
    }
}

/// The login answer of SPEC section 4 (token mode, and MFA verification): a session with
/// its refresh token, or, when the account has MFA, the challenge and no session.
#[derive(utoipa::ToSchema, Serialize)]
#[serde(untagged)]
pub(crate) enum LoginResponse {
    MfaRequired(MfaChallenge),
    Session(TokenSession),
}

/// `{"mfa_required": true, "mfa_token"}`: `mfa_token` (single use, 5 minutes) goes to
/// `POST /api/v1/auth/mfa/verify` with a code.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct MfaChallenge {
    /// Always `true`.
    mfa_required: bool,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    mfa_token: SecretString,
}

/// A bearer session.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct TokenSession {
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    token: SecretString,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    refresh_token: SecretString,
    expires_at: Timestamp,
    user: SessionUser,
    /// Proof that this client completed a login; absent when none was handed out.
    #[serde(serialize_with = "expose_some", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    device_token: Option<SecretString>,
    /// Present (and `true`) only when the session can do nothing but enrol MFA and log out.
    #[serde(skip_serializing_if = "is_false")]
    mfa_enrollment_required: bool,
}

/// A browser session: the token itself travels in the cookie, never in the body.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct CookieSession {
    /// To echo in `X-CSRF-Token` on unsafe requests.
    csrf_token: String,
    expires_at: Timestamp,
    user: SessionUser,
    /// Present (and `true`) only when the session can do nothing but enrol MFA and log out.
    #[serde(skip_serializing_if = "is_false")]
    mfa_enrollment_required: bool,
}

/// A login answer that closes an MFA enrolment carries the recovery codes beside the
/// session's fields; other login answers have nothing beside them.
#[derive(Serialize)]
pub(crate) struct WithEnrolment<B> {
    #[serde(flatten)]
    pub(crate) session: B,
    #[serde(flatten)]
    pub(crate) enrolled: Option<Enrolled>,
}

pub(crate) fn login_response(out: LoginOutcome) -> LoginResponse {
    if let Some(mfa_token) = out.mfa_token {
        return LoginResponse::MfaRequired(MfaChallenge { mfa_required: true, mfa_token });
    }
    LoginResponse::Session(TokenSession {
        token: out.token,
        refresh_token: out.refresh_token,
        expires_at: out.expires_at,
        user: out.user.into(),
        device_token: out.device_token,
        mfa_enrollment_required: out.mfa_enrollment_required,
    })
}

#[derive(utoipa::IntoParams, Deserialize, Default)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginMode {
    /// `token` (default) or `cookie` (browser mode).
    #[param(pattern = "^(token|cookie)$")]
    mode: Option<String>,
}

/// Browser mode: the session travels in a `__Host-` cookie (HttpOnly, Secure, SameSite=
/// Strict, Path=/) that scripts cannot read; the body carries only the CSRF token that
/// unsafe requests must echo in `X-CSRF-Token`.
/// `enrolled` joins the body (the recovery codes of an enrolment).
pub(crate) fn cookie_response(
    state: &AppState,
    out: LoginOutcome,
    enrolled: Option<Enrolled>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if out.mfa_token.is_some() {
        return Json(login_response(out)).into_response();
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
    let session = CookieSession {
        csrf_token: csrf,
        expires_at: out.expires_at,
        user: out.user.into(),
        mfa_enrollment_required: out.mfa_enrollment_required,
    };
    let mut res = Json(WithEnrolment { session, enrolled }).into_response();
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
    let method = match req.method.as_deref() {
        None => None,
        Some("local") => Some(AuthSource::Local),
        Some("ldap") => Some(AuthSource::Ldap),
        Some(_) => {
            return Err(ApiError::bad_request(Some("method".to_owned()), "method: expected \"local\" or \"ldap\""))
        }
    };
    let device = device_token(req.device_token.as_ref(), &headers);
    let out = state.core.login(&req.username, req.password, method, device, &ctx.meta()).await?;
    match mode.mode.as_deref() {
        None | Some("token") => Ok(Json(login_response(out)).into_response()),
        Some("cookie") => Ok(cookie_response(&state, out, None)),
        Some(_) => Err(ApiError::bad_request(Some("mode".into()), "mode: expected token or cookie")),
    }
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    #[schema(value_type = String)]
    refresh_token: SecretString,
}

pub(crate) async fn refresh(
    Public(ctx): Public,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let out = state.core.sessions().refresh(req.refresh_token.expose_secret(), &ctx.meta()).await?;
    Ok(Json(login_response(out)))
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

/// `POST /api/v1/auth/logout-all`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct SessionsEnded {
    sessions_ended: u64,
}

pub(crate) async fn logout_all(auth: Authenticated, State(state): State<AppState>) -> ApiResult<Json<SessionsEnded>> {
    let sessions_ended = state.core.sessions().logout_all(&auth).await?;
    Ok(Json(SessionsEnded { sessions_ended }))
}

/// `GET /api/v1/auth/me`: the caller's account, what the session may do and how it was
/// opened.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Me {
    #[serde(flatten)]
    user: UserView,
    permissions: Vec<Permission>,
    /// `password` or `password+mfa`.
    assurance: &'static str,
}

pub(crate) async fn me(auth: Authenticated, State(state): State<AppState>) -> ApiResult<Json<Me>> {
    let user = state.core.users().me(&auth).await?;
    let permissions = auth.who.role.permissions.clone();
    Ok(Json(Me { user, permissions, assurance: auth.who.assurance.as_str() }))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    #[schema(value_type = String)]
    current_password: SecretString,
    #[schema(value_type = String)]
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
