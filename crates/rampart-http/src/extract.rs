use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use rampart_core::{Authorized, Budget, CoreError, LimitKey, Principal};
use rampart_types::CollectionName;
use rampart_types::PermissionMarker;

use crate::context::RequestContext;
use crate::error::ApiError;
use crate::routes::RoutePolicy;
use crate::AppState;

/// The request context (id, client address); always present behind the context layer.
pub struct Ctx(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .map(Ctx)
            .ok_or_else(|| ApiError::Core(CoreError::internal_msg("request context missing")))
    }
}

/// Declares a route open to everyone (login, health): an explicit authorization decision.
pub struct Public(pub RequestContext);

impl<S: Send + Sync> FromRequestParts<S> for Public {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ApiError> {
        let Ctx(ctx) = Ctx::from_request_parts(parts, s).await?;
        ctx.decided();
        Ok(Public(ctx))
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The browser-mode session cookie (see `handlers::auth::login`).
pub(crate) const SESSION_COOKIE: &str = "__Host-rampart_session";

fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_in(&parts.headers, name)
}

pub(crate) fn cookie_in<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Cookie-authenticated requests that change state must come from an allowed origin and
/// carry the session's CSRF token (browsers attach cookies to cross-site requests).
fn check_csrf(parts: &Parts, state: &AppState, token: &str) -> Result<(), ApiError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let scheme = if state.settings.tls { "https" } else { "http" };
    let same_origin = matches!((origin, host), (Some(o), Some(h)) if o == format!("{scheme}://{h}"));
    let listed = origin.is_some_and(|o| state.settings.cors_origins.iter().any(|c| c == o));
    let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    let expected = state.core.sessions().csrf_token_for(token);
    // Compared in constant time: the token is a secret bound to the session.
    let matches = sent.is_some_and(|s| rampart_core::ct_eq(s.as_bytes(), expected.as_bytes()));
    if (same_origin || listed) && matches {
        Ok(())
    } else {
        Err(ApiError::CsrfFailed)
    }
}

/// Authenticates the bearer token and applies the per-user rate limit.
async fn principal(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(Principal, RequestContext), axum::response::Response> {
    use axum::response::IntoResponse;
    let Ctx(ctx) = Ctx::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
    // Whatever happens next is a decision: allow, or deny with 401/403/429.
    ctx.decided();
    let token = match (bearer(parts), cookie(parts, SESSION_COOKIE)) {
        (Some(t), _) => t.to_owned(),
        (None, Some(c)) => {
            if let Err(e) = check_csrf(parts, state, c) {
                state.core.detection().record_refusal(&ctx.meta(), "csrf_failed").await;
                return Err(e.into_response());
            }
            c.to_owned()
        }
        (None, None) => return Err(ApiError::Core(CoreError::Unauthenticated).into_response()),
    };
    let token = token.as_str();
    let who = match state.core.sessions().authenticate(token, &ctx.meta()).await {
        Ok(who) => who,
        Err(e) => {
            if matches!(e, CoreError::Unauthenticated) {
                state.core.detection().on_token_failure(&ctx.meta());
            }
            return Err(ApiError::from(e).into_response());
        }
    };
    let _ = ctx.user.set(who.username.to_string());
    state.core.detection().on_authenticated_request(&who);
    if state.limits.enabled() {
        let d = state.limits.check(Budget::User, LimitKey::User(who.username.as_str())).await;
        if !d.allowed {
            return Err(crate::limits::refuse(
                state,
                &ctx,
                &d,
                rampart_core::Budget::User,
                Some(who.username.as_str()),
            )
            .await);
        }
    }
    Ok((who, ctx))
}

/// Any authenticated user acting on their own account (me, password change, sessions),
/// through a session with the assurance its role requires: an enrol-only session is
/// refused here, so self-service is closed to it unless a route opts in with `Enrolling`.
pub struct Authenticated {
    pub who: Principal,
    #[allow(dead_code)] // read by the audit trail
    pub ctx: RequestContext,
}

impl std::ops::Deref for Authenticated {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.who
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = axum::response::Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let (who, ctx) = principal(parts, state).await?;
        if who.mfa_enrollment_only {
            return Err(ApiError::Core(CoreError::MfaEnrollmentRequired).into_response());
        }
        Ok(Self { who, ctx })
    }
}

/// Any session, enrol-only ones included: the routes that enrol a second factor and the
/// logout. Nothing else may take it.
pub struct Enrolling {
    pub who: Principal,
    #[allow(dead_code)] // read by the audit trail
    pub ctx: RequestContext,
}

impl std::ops::Deref for Enrolling {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.who
    }
}

impl FromRequestParts<AppState> for Enrolling {
    type Rejection = axum::response::Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (who, ctx) = principal(parts, state).await?;
        Ok(Self { who, ctx })
    }
}

/// An authenticated user holding permission `P`; for collection-scoped permissions, on
/// the collection named by the `{collection}` path segment. The decision is core's one
/// `authorize` step, for the area the route table gives this route.
pub struct Authz<P: PermissionMarker>(pub Authorized<P>);

impl<P: PermissionMarker> std::ops::Deref for Authz<P> {
    type Target = Authorized<P>;
    fn deref(&self) -> &Authorized<P> {
        &self.0
    }
}

impl<P: PermissionMarker> FromRequestParts<AppState> for Authz<P> {
    type Rejection = axum::response::Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let (who, _ctx) = principal(parts, state).await?;
        let collection = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| params.iter().find(|(k, _)| *k == "collection").map(|(_, v)| v.to_owned()));
        let collection = match collection {
            Some(c) => Some(
                CollectionName::parse(&c)
                    .map_err(|_| ApiError::Core(CoreError::NotFound("collection")).into_response())?,
            ),
            None => None,
        };
        let area = parts.extensions.get::<RoutePolicy>().map_or(RoutePolicy::UNMATCHED.area, |p| p.area);
        match state.core.access().authorize::<P>(who, collection, area).await {
            Ok(access) => Ok(Self(access)),
            Err(e) => Err(ApiError::from(e).into_response()),
        }
    }
}
