//! OpenID Connect login: `GET /api/v1/auth/oidc/start` and the provider's redirect back,
//! `GET /api/v1/auth/oidc/callback`. Each flow is bound to the client that started it: a
//! browser holds an HttpOnly `__Host-` cookie, an API client a `flow_token` it sends back
//! in `X-Rampart-Flow`; only their hashes are stored, with the state's.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::FlowMode;
use rampart_types::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::Public;
use crate::handlers::auth::{cookie_response, expose, login_response};
use crate::AppState;

/// The browser's binding cookie. SameSite=Lax, not Strict: the callback is a cross-site
/// top-level navigation from the provider, on which a Strict cookie would not be sent.
pub(crate) const FLOW_COOKIE: &str = "__Host-rampart_oidc";
/// The API client's binding header.
pub(crate) const FLOW_HEADER: &str = "x-rampart-flow";
/// Readable by the page's scripts (unlike the session cookie): the CSRF token to echo in
/// `X-CSRF-Token`, since a redirect has no body a page could read it from.
pub(crate) const CSRF_COOKIE: &str = "__Host-rampart_csrf";

#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartQuery {
    /// `cookie` (default, a redirect) or `token`.
    #[param(pattern = "^(cookie|token)$")]
    mode: Option<String>,
}

#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct TokenStart {
    authorization_url: String,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    flow_token: SecretString,
    expires_at: Timestamp,
}

fn set_cookie(res: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn oidc_configured(state: &AppState) -> ApiResult<&rampart_core::OidcLogins> {
    state.core.oidc().ok_or(ApiError::NoRoute)
}

pub(crate) async fn start(
    _: Public,
    State(state): State<AppState>,
    Query(q): Query<StartQuery>,
) -> ApiResult<Response> {
    let oidc = oidc_configured(&state)?;
    let mode = match q.mode.as_deref() {
        None | Some("cookie") => FlowMode::Cookie,
        Some("token") => FlowMode::Token,
        Some(_) => return Err(ApiError::bad_request(Some("mode".into()), "mode: expected cookie or token")),
    };
    let started = oidc.start(mode).await?;
    match mode {
        FlowMode::Token => Ok(Json(TokenStart {
            authorization_url: started.authorization_url,
            flow_token: started.binding,
            expires_at: started.expires_at,
        })
        .into_response()),
        FlowMode::Cookie => {
            let location = HeaderValue::from_str(&started.authorization_url)
                .map_err(|e| ApiError::Core(rampart_core::CoreError::IdentityProviderUnavailable(Box::new(e))))?;
            let mut res = StatusCode::FOUND.into_response();
            res.headers_mut().insert(header::LOCATION, location);
            let secs = rampart_core::oidc::PENDING_LOGIN_SECS;
            let binding = started.binding.expose_secret();
            set_cookie(
                &mut res,
                &format!("{FLOW_COOKIE}={binding}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={secs}"),
            );
            Ok(res)
        }
    }
}

/// What the provider sends back (providers add parameters of their own, such as `iss`).
#[derive(utoipa::IntoParams, Deserialize)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

pub(crate) async fn callback(
    Public(ctx): Public,
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<Response> {
    oidc_configured(&state)?;
    if let Some(error) = q.error {
        // The provider's error code only, and only when it looks like one (it is client text).
        let shown =
            if !error.is_empty() && error.len() <= 64 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                error
            } else {
                "unknown".to_owned()
            };
        return Err(ApiError::bad_request(
            Some("error".into()),
            format!("the identity provider did not complete the login ({shown}); start it again"),
        ));
    }
    let (Some(code), Some(flow_state)) = (q.code, q.state) else {
        return Err(ApiError::bad_request(None, "code and state are required"));
    };
    let binding = headers
        .get(FLOW_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| crate::extract::cookie_in(&headers, FLOW_COOKIE));
    let (mode, out) = state.core.oidc_callback(&code, &flow_state, binding, &ctx.meta()).await?;
    match mode {
        FlowMode::Token => Ok(Json(login_response(out)).into_response()),
        FlowMode::Cookie => {
            let mfa = out.mfa_token.is_some();
            let csrf = (!mfa).then(|| state.core.sessions().csrf_token_for(out.token.expose_secret()));
            let mut res = cookie_response(&state, out, None);
            if let Some(csrf) = csrf {
                *res.status_mut() = StatusCode::SEE_OTHER;
                if let Ok(to) = HeaderValue::from_str(&state.settings.oidc_browser_redirect) {
                    res.headers_mut().insert(header::LOCATION, to);
                }
                set_cookie(&mut res, &format!("{CSRF_COOKIE}={csrf}; Path=/; Secure; SameSite=Strict"));
            }
            set_cookie(&mut res, &format!("{FLOW_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"));
            Ok(res)
        }
    }
}
