use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_core::{Area, Budget, CoreError, Decision, EventType, LimitKey};
use serde_json::json;

use crate::context::RequestContext;
use crate::error::ApiError;
use crate::AppState;

pub(crate) fn set_headers(h: &mut HeaderMap, d: &Decision) {
    let mut put = |name: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-ratelimit-limit", d.limit.to_string());
    put("x-ratelimit-remaining", d.remaining.to_string());
    put("x-ratelimit-reset", d.reset_unix.to_string());
}

/// 429 with the headers; audits the refusal when the limiter samples it. A refusal by a
/// fail-closed budget whose store is unreachable is a 503 instead: the client did nothing
/// wrong (the outage itself is audited by the limiter).
pub(crate) async fn refuse(
    state: &AppState,
    ctx: &RequestContext,
    d: &Decision,
    budget: Budget,
    user: Option<&str>,
) -> Response {
    if d.unavailable {
        return ApiError::RateLimitUnavailable.into_response();
    }
    state.core.events().metrics().rate_limited(budget);
    if d.audit {
        let details = json!({ "scope": budget.as_str(), "limit_per_minute": d.limit });
        if let Err(e) =
            state.core.events().record_event(EventType::RateLimited, user, &ctx.meta(), false, details).await
        {
            tracing::warn!(error = %e, "could not audit a rate-limit refusal");
        }
    }
    let mut res = ApiError::Core(CoreError::RateLimited { retry_after_secs: d.retry_after_secs }).into_response();
    set_headers(res.headers_mut(), d);
    res
}

/// Query values and path segments are checked for SQL injection (JSON bodies are checked
/// when parsed).
/// A routed path's literal segments are the route table's own text: only what the client
/// chose (the route's `parameters`; every segment of an unrouted path) is checked.
fn inspect_request(state: &AppState, ctx: &RequestContext, uri: &axum::http::Uri, parameters: Option<Vec<&str>>) {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let segments = parameters.unwrap_or_else(|| path.split('/').collect());
    let hit = segments
        .into_iter()
        .map(|seg| ("path", percent_decode(seg)))
        .chain(query.split('&').filter_map(|kv| kv.split_once('=').map(|(_, v)| ("query", percent_decode(v)))))
        .find_map(|(place, v)| crate::sqli::check(&v).map(|fp| (place, fp)));
    if let Some((place, fp)) = hit {
        state.core.detection().on_sqli(
            &ctx.meta(),
            ctx.user.get().map(String::as_str),
            ctx.self_produced(),
            place,
            &fp,
        );
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Per-IP token buckets, before any other work (and, for login, before any hashing).
/// The route's policy (see `routes::RoutePolicy`) is looked up here and left in the
/// request for the authorization step.
pub(crate) async fn rate_limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Inspected once the handler has run, when it is known whether the caller was
    // authenticated: only then may a finding count against the sender's address.
    let uri = req.uri().clone();
    let crate::routes::Found { policy, parameters, route } = state.policies.find(req.method(), uri.path());
    req.extensions_mut().insert(policy);
    let Some(ctx) = req.extensions().get::<RequestContext>().cloned() else {
        return next.run(req).await;
    };
    if let Some(route) = route {
        ctx.route.store(route, std::sync::atomic::Ordering::Relaxed);
    }
    let Some(ip) = ctx.client_ip else {
        return next.run(req).await;
    };
    // Blocked clients get nothing else: no authentication, no rate accounting, no work.
    if let Some(until) = state.core.detection().blocked_until(ip) {
        state.core.detection().record_refusal(&ctx.meta(), "ip_blocked").await;
        return ApiError::IpBlocked { until: Some(until) }.into_response();
    }
    if policy.area == Area::Admin && !state.core.detection().admin_ip_allowed(ip) {
        state.core.detection().record_refusal(&ctx.meta(), "admin_ip_not_allowed").await;
        return ApiError::IpBlocked { until: None }.into_response();
    }
    if !state.limits.enabled() {
        let res = next.run(req).await;
        inspect_request(&state, &ctx, &uri, parameters);
        return res;
    }
    let budget = policy.budget;
    let d = state.limits.check(budget, LimitKey::Address(ip)).await;
    if !d.allowed {
        return refuse(&state, &ctx, &d, budget, None).await;
    }
    let mut res = next.run(req).await;
    inspect_request(&state, &ctx, &uri, parameters);
    // A per-user refusal further in has already set its own (stricter) figures.
    if !res.headers().contains_key("x-ratelimit-limit") {
        set_headers(res.headers_mut(), &d);
    }
    res
}
