use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rampart_types::Timestamp;

use crate::error::{ApiError, ErrorBody, ErrorResponse};
use crate::AppState;

/// The TCP peer of the connection, inserted by the server's accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// One line of `activity.log`: who did what, with which outcome. No bodies, no query
/// strings (they may hold personal data), no credentials.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActivityEntry {
    pub timestamp: Timestamp,
    pub request_id: String,
    pub ip_address: Option<String>,
    pub user: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration_ms: u64,
}

/// Where activity lines go; must not block (the binary queues them for a writer thread).
pub trait ActivitySink: Send + Sync {
    fn record(&self, entry: ActivityEntry);
}

/// For tests and tools that keep no activity log.
pub struct NoActivityLog;

impl ActivitySink for NoActivityLog {
    fn record(&self, _: ActivityEntry) {}
}

/// Per-request facts every handler and error response can use.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Set once the caller is authenticated, for the activity log.
    pub user: Arc<OnceLock<String>>,
    pub(crate) decision: Arc<AtomicU8>,
    /// The route table entry the request reached (its metrics slot), set by the rate-limit
    /// layer's lookup; the unmatched slot until then.
    pub(crate) route: Arc<AtomicUsize>,
    /// The browser says another site caused this request (`Sec-Fetch-Site` other than
    /// `same-origin` or `none`): nothing in it is evidence against the sender's address.
    pub cross_site: bool,
}

pub(crate) const UNDECIDED: u8 = 0;
pub(crate) const DECIDED: u8 = 1;

impl RequestContext {
    /// Whether this request's content is the sender's own doing: authenticated, and not
    /// caused by another site. Only such evidence may trigger an automatic block.
    pub fn self_produced(&self) -> bool {
        self.user.get().is_some() && !self.cross_site
    }

    /// Records that an authorization decision (allow, deny or public) was taken.
    pub(crate) fn decided(&self) {
        self.decision.store(DECIDED, Ordering::Release);
    }

    pub fn meta(&self) -> rampart_core::RequestMeta {
        rampart_core::RequestMeta {
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

fn new_request_id() -> String {
    let b: [u8; 12] = rand::random();
    hex::encode(b)
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn security_headers(h: &mut HeaderMap, tls: bool) {
    let set = |h: &mut HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "strict-origin-when-cross-origin");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
    );
    set(h, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(h, HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    // API responses carry personal data and tokens: never cache any of them.
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::PRAGMA, "no-cache");
    if tls {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
    }
}

fn generic_error(status: StatusCode) -> ErrorBody {
    let (code, error) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large"),
        StatusCode::REQUEST_TIMEOUT => ("timeout", "request timed out"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ("headers_too_large", "request headers too large"),
        s if s.is_client_error() => ("bad_request", "bad request"),
        _ => ("internal_error", "internal error"),
    };
    ErrorBody { error: error.to_owned(), code, field: None }
}

fn render_error(status: StatusCode, mut headers: HeaderMap, body: ErrorBody, request_id: &str) -> Response {
    let ErrorBody { error, code, field } = body;
    let json = ErrorResponse { error, code, request_id: request_id.to_owned(), field };
    // Strings only: serializing cannot fail.
    let json = serde_json::to_string(&json).unwrap_or_default();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.remove(header::CONTENT_LENGTH);
    let mut res = (status, json).into_response();
    for k in headers.keys() {
        res.headers_mut().remove(k);
    }
    for (k, v) in headers.iter() {
        res.headers_mut().append(k.clone(), v.clone());
    }
    res
}

/// Methods the API knows; anything else (TRACE, CONNECT, inventions) is refused early.
fn known_method(m: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS].contains(m)
}

/// Outermost layer of the API: request id, client address, error bodies, the
/// authorization-decision guard, the activity log, and security headers on every response.
pub(crate) async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let client_ip = req
        .extensions()
        .get::<ClientAddr>()
        .map(|a| crate::client_ip::resolve(a.0.ip(), req.headers(), &state.settings.trusted_proxies));
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let decision = Arc::new(AtomicU8::new(UNDECIDED));
    let route = Arc::new(AtomicUsize::new(state.http_metrics.unmatched()));
    let user = Arc::new(OnceLock::new());
    let cross_site = req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.to_str().unwrap_or(""), "same-origin" | "none"));
    let ctx = RequestContext {
        request_id: request_id.clone(),
        client_ip,
        ip: client_ip.map(|ip| ip.to_string()),
        user_agent,
        user: Arc::clone(&user),
        decision: Arc::clone(&decision),
        route: Arc::clone(&route),
        cross_site,
    };
    let (method, path) = (req.method().to_string(), req.uri().path().chars().take(512).collect::<String>());
    req.extensions_mut().insert(ctx.clone());
    let rate = state.settings.body_rate;
    let leftover: crate::slow_body::Leftover = Arc::default();
    let req = req.map(|body| crate::slow_body::RateGuard::wrap(body, rate, Arc::clone(&leftover)));

    let res = if !known_method(req.method()) {
        ApiError::MethodNotAllowed.into_response()
    } else {
        match tokio::time::timeout(state.settings.request_timeout, next.run(req)).await {
            Ok(res) => res,
            Err(_) => {
                decision.store(DECIDED, Ordering::Release);
                ApiError::Timeout.into_response()
            }
        }
    };
    // A refusal sent before the body was read (413, 415, 403 ...) must still reach the
    // client as its status: over HTTP/2 an unread body would reset the stream first.
    if res.status().is_client_error() {
        let cap = state.settings.max_body_bytes.saturating_mul(4);
        crate::slow_body::drain(&leftover, cap, std::time::Duration::from_secs(3)).await;
    }
    let routed = res.extensions().get::<Routed>().is_some();
    let mut res = if routed && decision.load(Ordering::Acquire) == UNDECIDED {
        // A handler answered without any authorization decision: fail closed.
        tracing::error!(request_id, "route answered without an authorization decision");
        let body = generic_error(StatusCode::INTERNAL_SERVER_ERROR);
        render_error(StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), body, &request_id)
    } else if let Some(body) = res.extensions().get::<ErrorBody>().cloned() {
        let (parts, _) = res.into_parts();
        render_error(parts.status, parts.headers, body, &request_id)
    } else if res.status().is_client_error() || res.status().is_server_error() {
        let is_json =
            res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if is_json {
            res
        } else {
            let (parts, _) = res.into_parts();
            render_error(parts.status, parts.headers, generic_error(parts.status), &request_id)
        }
    } else {
        res
    };
    security_headers(res.headers_mut(), state.settings.tls);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let elapsed = started.elapsed();
    state.http_metrics.observe(route.load(Ordering::Relaxed), res.status().as_u16(), elapsed);
    state.activity.record(ActivityEntry {
        timestamp: state.core.clock().now(),
        request_id,
        ip_address: ctx.ip,
        user: user.get().cloned(),
        method,
        path,
        status: res.status().as_u16(),
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    });
    res
}

/// Marks a response as coming from a routed handler (set by a route layer, which only
/// runs when a route matched).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routed;

pub(crate) async fn mark_routed(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    res.extensions_mut().insert(Routed);
    res
}
