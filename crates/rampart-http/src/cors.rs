use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::AppState;

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOW_HEADERS: &str = "authorization, content-type, if-match, if-none-match, x-csrf-token";
const EXPOSE_HEADERS: &str =
    "etag, x-request-id, x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset, retry-after";

fn same_origin(origin: &str, headers: &HeaderMap, tls: bool) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let scheme = if tls { "https" } else { "http" };
    host.is_some_and(|h| origin == format!("{scheme}://{h}"))
}

/// Deny-by-default CORS: only listed origins (or our own) get CORS headers; preflights and
/// state-changing requests from any other origin are refused with 403. Never `*`.
pub(crate) async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let listed = state.settings.cors_origins.contains(&origin);
    let allowed = listed || same_origin(&origin, req.headers(), state.settings.tls);
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !allowed && (preflight || !req.method().is_safe()) {
        if let Some(ctx) = req.extensions().get::<crate::context::RequestContext>() {
            state.core.detection().record_refusal(&ctx.meta(), "origin_not_allowed").await;
        }
        return ApiError::OriginNotAllowed.into_response();
    }
    let mut res = if preflight {
        let mut r = axum::http::StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        r
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed {
        if let Ok(v) = HeaderValue::from_str(&origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
    res
}
