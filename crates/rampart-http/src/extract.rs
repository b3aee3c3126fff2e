use std::marker::PhantomData;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::header;
use rampart_core::{CoreError, Principal};
use rampart_types::CollectionName;

use crate::context::RequestContext;
use crate::error::ApiError;
use crate::perm::PermissionMarker;
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

async fn principal(parts: &mut Parts, state: &AppState) -> Result<(Principal, RequestContext), ApiError> {
    let Ctx(ctx) = Ctx::from_request_parts(parts, state).await?;
    // Whatever happens next is a decision: allow, or deny with 401/403.
    ctx.decided();
    let token = bearer(parts).ok_or(CoreError::Unauthenticated)?;
    let who = state.core.authenticate(token).await?;
    Ok((who, ctx))
}

/// Any authenticated user acting on their own account (me, logout, password change).
pub struct Authenticated {
    pub who: Principal,
    #[allow(dead_code)] // read by the audit trail
    pub ctx: RequestContext,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (who, ctx) = principal(parts, state).await?;
        Ok(Self { who, ctx })
    }
}

/// An authenticated user holding permission `P`; for collection-scoped permissions, on
/// the collection named by the `{collection}` path segment.
pub struct Authz<P: PermissionMarker> {
    pub who: Principal,
    #[allow(dead_code)] // read by the audit trail
    pub ctx: RequestContext,
    _perm: PhantomData<P>,
}

impl<P: PermissionMarker> FromRequestParts<AppState> for Authz<P> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (who, ctx) = principal(parts, state).await?;
        let collection = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|params| {
                params.iter().find(|(k, _)| *k == "collection").map(|(_, v)| v.to_owned())
            });
        let collection = match collection {
            Some(c) => Some(CollectionName::parse(&c).map_err(|_| CoreError::NotFound("collection"))?),
            None => None,
        };
        if !who.can(P::PERMISSION, collection.as_ref()) {
            return Err(CoreError::Forbidden("permission denied").into());
        }
        Ok(Self { who, ctx, _perm: PhantomData })
    }
}
