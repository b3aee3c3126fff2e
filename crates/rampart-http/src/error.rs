use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_core::CoreError;
use serde::Serialize;

/// Every error a handler can return. `into_response` is the single place where errors
/// become status codes, stable `code`s and safe messages; internal causes are logged here
/// once and never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{message}")]
    BadRequest { field: Option<String>, message: String },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("no such endpoint")]
    NoRoute,
    #[error("request timed out")]
    Timeout,
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// `until`: when the block ends (`None`: the address is outside `admin_allowed_ips`).
    #[error("{}", match until { Some(t) => format!("access from this address is blocked until {t}"), None => "access from this address is not allowed".to_owned() })]
    IpBlocked { until: Option<rampart_types::Timestamp> },
    #[error("cross-site request refused: send X-CSRF-Token from an allowed origin")]
    CsrfFailed,
    /// The shared rate-limit store cannot be reached and this budget fails closed.
    #[error("rate limiting is unavailable, so this request cannot be admitted; try again shortly")]
    RateLimitUnavailable,
}

impl ApiError {
    pub fn bad_request(field: Option<String>, message: impl Into<String>) -> Self {
        Self::BadRequest { field, message: message.into() }
    }
}

/// The rendered error, left in the response extensions so the context middleware can
/// add the request id (which handlers do not carry) and write the body.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

fn parts(e: &ApiError) -> (StatusCode, &'static str, String, Option<String>) {
    use CoreError as C;
    let msg = e.to_string();
    match e {
        ApiError::BadRequest { field, .. } => (StatusCode::BAD_REQUEST, "bad_request", msg, field.clone()),
        ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg, None),
        ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", msg, None),
        ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", msg, None),
        ApiError::NoRoute => (StatusCode::NOT_FOUND, "not_found", msg, None),
        ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout", msg, None),
        ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed", msg, None),
        ApiError::IpBlocked { .. } => (StatusCode::FORBIDDEN, "ip_blocked", msg, None),
        ApiError::CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed", msg, None),
        ApiError::RateLimitUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable", msg, None),
        ApiError::Core(core) => match core {
            C::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", msg, None),
            C::MfaEnrollmentRequired => (StatusCode::FORBIDDEN, "mfa_enrollment_required", msg, None),
            C::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists", msg, None),
            C::Validation { field, message } => {
                let text = match field {
                    Some(f) => format!("{f}: {message}"),
                    None => message.clone(),
                };
                (StatusCode::BAD_REQUEST, "validation_error", text, field.clone())
            }
            C::PasswordPolicy(v) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "password_policy",
                format!("{} (rule: {})", v.message, v.rule),
                Some("password".to_owned()),
            ),
            C::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", msg, None),
            C::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", msg, None),
            C::CodeAlreadyUsed => (StatusCode::UNAUTHORIZED, "code_already_used", msg, None),
            C::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", msg, None),
            C::VerificationInvalid => (StatusCode::FORBIDDEN, "verification_invalid", msg, None),
            C::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed", msg, None),
            C::Conflict(_) => (StatusCode::CONFLICT, "conflict", msg, None),
            C::LegalHold { .. } => (StatusCode::CONFLICT, "legal_hold", msg, None),
            C::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", msg, None),
            C::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", msg, None),
            C::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg, None),
            C::IdentityProviderUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "identity_provider_unavailable", msg, None)
            }
            C::ExternalLoginFailed => (StatusCode::UNAUTHORIZED, "external_login_failed", msg, None),
            C::ExternalAccountConflict => (StatusCode::CONFLICT, "external_account_conflict", msg, None),
            C::Integrity(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "integrity_error",
                "stored data failed an integrity check".to_owned(),
                None,
            ),
            C::WrongMasterKey | C::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error".to_owned(), None)
            }
        },
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, error, field) = parts(&self);
        // An unreachable rate-limit store is audited once by the limiter, not logged per request.
        if status.is_server_error() && !matches!(self, ApiError::RateLimitUnavailable) {
            // The only place a cause chain is logged; it never reaches the client.
            tracing::error!(error = ?self, "request failed");
        }
        let mut res = status.into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let ApiError::Core(CoreError::RateLimited { retry_after_secs }) = &self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res.extensions_mut().insert(ErrorBody { error, code, field });
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The body of every error response, as the context layer writes it (with the request id,
/// which handlers do not carry). The OpenAPI document's `Error` schema.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorResponse {
    /// What went wrong, for a person.
    pub error: String,
    /// Stable machine-readable code, such as `validation_error` or `rate_limited`.
    pub code: &'static str,
    /// The `X-Request-Id` of this request, to quote when reporting a problem.
    pub request_id: String,
    /// The input field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
