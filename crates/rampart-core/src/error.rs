use rampart_crypto::PolicyViolation;
use rampart_store::StoreError;

/// What went wrong, in terms a caller can act on. `rampart-http` maps each variant to a
/// status and a stable code exactly once.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// Bad input; `field` names where, when known.
    #[error("{message}")]
    Validation { field: Option<String>, message: String },
    #[error("{0}")]
    PasswordPolicy(PolicyViolation),
    /// No or expired credentials.
    #[error("authentication required")]
    Unauthenticated,
    /// Wrong username or password; deliberately says no more.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The session was opened without the second factor its role requires: it may only
    /// enrol one (and log out).
    #[error("your role requires MFA: enrol with /api/v1/auth/mfa/enable and /confirm, then log in again")]
    MfaEnrollmentRequired,
    /// A valid TOTP code that was already accepted once (the password was right).
    #[error("this code was already used; wait for the next one")]
    CodeAlreadyUsed,
    /// A data-subject request's verification token is unknown, spent, expired or issued for
    /// another subject.
    #[error("the verification token is invalid, expired, already used or for another subject")]
    VerificationInvalid,
    #[error("the resource changed since it was read")]
    PreconditionFailed,
    #[error("{0}")]
    Conflict(&'static str),
    /// An active legal hold keeps what the request would delete.
    #[error("refused: legal hold {hold_id} is in place")]
    LegalHold { hold_id: rampart_types::HoldId },
    /// Over a rate limit or inside a login delay; retry after the given seconds.
    #[error("Rate limit exceeded. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    /// Too much concurrent work (password hashing queue full): retry shortly.
    #[error("server busy, retry shortly")]
    Busy,
    /// Stored data failed authentication or its key is gone: never served, always audited.
    #[error("stored data failed an integrity check: {0}")]
    Integrity(&'static str),
    #[error("the master key does not match this data directory")]
    WrongMasterKey,
    #[error("service unavailable")]
    Unavailable(#[source] StoreError),
    /// The identity provider (the directory) cannot be reached, timed out or refused the
    /// service account: nobody it vouches for can log in until it answers again. The
    /// source is for the server log only.
    #[error("the identity provider is unavailable; retry later")]
    IdentityProviderUnavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An external login (OIDC) was refused: state, binding, code or ID token did not
    /// check out. The audit record says which; the answer does not.
    #[error("the login through the identity provider failed; start it again")]
    ExternalLoginFailed,
    /// The provider's username is taken by a local account not linked to this identity.
    #[error("the username from the identity provider belongs to another account; ask an administrator")]
    ExternalAccountConflict,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation { field: Some(field.into()), message: message.into() }
    }
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }
    pub fn internal_msg(msg: &str) -> Self {
        Self::Internal(Box::new(std::io::Error::other(msg.to_owned())))
    }
}

impl CoreError {
    /// The one mapping of store errors for an operation on one kind of resource, which the
    /// answer names ("user not found"); anything else maps as `From` does.
    pub(crate) fn about(what: &'static str) -> impl Fn(StoreError) -> CoreError {
        move |e| match e {
            StoreError::NotFound => CoreError::NotFound(what),
            StoreError::AlreadyExists => CoreError::AlreadyExists(what),
            e => e.into(),
        }
    }
}

/// Default mapping for store errors where the operation gives them no specific meaning.
impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => CoreError::NotFound("resource"),
            StoreError::AlreadyExists => CoreError::AlreadyExists("resource"),
            StoreError::VersionMismatch => CoreError::PreconditionFailed,
            StoreError::LastAdmin => CoreError::Conflict("the last admin cannot be removed, disabled or demoted"),
            StoreError::InUse(what) | StoreError::LimitReached(what) => CoreError::Conflict(what),
            StoreError::VerificationInvalid => CoreError::VerificationInvalid,
            StoreError::LegalHold(hold_id) => CoreError::LegalHold { hold_id },
            e @ (StoreError::Unavailable(_) | StoreError::AuditUnavailable(_) | StoreError::AuditChainBroken(_)) => {
                CoreError::Unavailable(e)
            }
            StoreError::Internal(e) => CoreError::Internal(e),
        }
    }
}
