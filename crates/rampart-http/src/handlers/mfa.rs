use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::mfa::MfaEnrollment;
use rampart_core::SessionRecord;
use rampart_types::{SessionId, Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::{Authenticated, Authz, Enrolling, Public};
use crate::handlers::auth::{login_response, LoginResponse, WithEnrolment};
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

pub(crate) async fn enable(auth: Enrolling, State(state): State<AppState>) -> ApiResult<Json<MfaEnrollment>> {
    Ok(Json(state.core.mfa().mfa_enable(&auth).await?))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

/// What confirming an enrolment adds to the login answer.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Enrolled {
    /// Always `true`.
    mfa_enabled: bool,
    /// Ten single-use codes, shown this once.
    recovery_codes: Vec<String>,
}

/// Confirms enrolment. Every earlier session of the user ends; the answer carries the
/// recovery codes and a fresh multi-factor session, in the form the caller logged in with
/// (a bearer pair, or the browser cookie when the request came with one).
pub(crate) async fn confirm(
    auth: Enrolling,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(b): ApiJson<CodeBody>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let (codes, session) = state.core.mfa().mfa_confirm(&auth, &b.code).await?;
    let cookie_mode = headers.get(axum::http::header::AUTHORIZATION).is_none();
    let enrolled = Enrolled { mfa_enabled: true, recovery_codes: codes };
    if cookie_mode {
        Ok(crate::handlers::auth::cookie_response(&state, session, Some(enrolled)))
    } else {
        let body = WithEnrolment { session: login_response(session), enrolled: Some(enrolled) };
        Ok(Json(body).into_response())
    }
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    #[schema(value_type = String)]
    token: SecretString,
    code: String,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    device_token: Option<SecretString>,
}

pub(crate) async fn verify(
    Public(ctx): Public,
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(b): ApiJson<VerifyBody>,
) -> ApiResult<Json<LoginResponse>> {
    let device = crate::handlers::auth::device_token(b.device_token.as_ref(), &headers);
    let out = state.core.mfa().mfa_verify(b.token.expose_secret(), &b.code, device, &ctx.meta()).await?;
    Ok(Json(login_response(out)))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisableBody {
    #[schema(value_type = String)]
    password: SecretString,
    code: String,
}

pub(crate) async fn disable(
    auth: Authenticated,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<DisableBody>,
) -> ApiResult<StatusCode> {
    state.core.mfa().mfa_disable(&auth, b.password, &b.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/auth/mfa/recovery-codes`: a new set; the old codes stop working.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

pub(crate) async fn recovery_codes(
    auth: Authenticated,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<CodeBody>,
) -> ApiResult<Json<RecoveryCodes>> {
    Ok(Json(RecoveryCodes { recovery_codes: state.core.mfa().mfa_regenerate_codes(&auth, &b.code).await? }))
}

pub(crate) async fn reset(
    auth: Authz<perm::UsersMfaReset>,
    State(state): State<AppState>,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    state.core.mfa().mfa_reset(&auth, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionsQuery {
    /// Another user's sessions (needs `sessions.manage`).
    #[param(pattern = "^[a-z0-9._@-]{1,64}$")]
    username: Option<String>,
}

/// A session as its owner (or a `sessions.manage` holder) sees it; never the token.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct SessionView {
    id: SessionId,
    username: Username,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    expires_at: Timestamp,
    ip_address: Option<String>,
    user_agent: Option<String>,
    /// Whether this is the session that asked.
    current: bool,
}

impl SessionView {
    fn of(s: SessionRecord, current: Option<&SessionId>) -> Self {
        Self {
            current: current == Some(&s.id),
            id: s.id,
            username: s.username,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            ip_address: s.ip_address,
            user_agent: s.user_agent,
        }
    }
}

/// `GET /api/v1/auth/sessions`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct SessionsPage {
    sessions: Vec<SessionView>,
}

pub(crate) async fn sessions(
    auth: Authenticated,
    State(state): State<AppState>,
    Query(q): Query<SessionsQuery>,
) -> ApiResult<Json<SessionsPage>> {
    let list = state.core.sessions().list_sessions(&auth, q.username.as_deref()).await?;
    let current = auth.who.session_id.as_ref();
    Ok(Json(SessionsPage { sessions: list.into_iter().map(|s| SessionView::of(s, current)).collect() }))
}

pub(crate) async fn end_session(
    auth: Authenticated,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.core.sessions().end_session(&auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    #[schema(min_length = 1, max_length = 256)]
    audience: String,
    #[schema(minimum = 1, maximum = 300)]
    ttl_secs: Option<i64>,
}

/// A short-lived EdDSA JWT for a downstream service.
pub(crate) async fn mint(
    auth: Authenticated,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<TokenRequest>,
) -> ApiResult<Json<rampart_core::jwt::MintedToken>> {
    Ok(Json(state.core.tokens().mint_jwt(&auth, &b.audience, b.ttl_secs).await?))
}

/// `GET /.well-known/jwks.json`: the public keys that verify the tokens of
/// `POST /api/v1/auth/token`, retired ones included for the overlap window, and the key
/// that signs compliance reports (kid `report-…`; it signs only domain-separated report
/// documents, never a JWT signing input).
pub(crate) async fn jwks(_: Public, State(state): State<AppState>) -> ApiResult<Json<rampart_core::jwt::JwkSet>> {
    let mut set = state.core.tokens().jwks().await?;
    set.keys.push(state.core.compliance().report_jwk());
    Ok(Json(set))
}
