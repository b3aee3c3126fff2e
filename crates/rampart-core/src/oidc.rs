//! OpenID Connect login: the `OidcProvider` port (discovery, the authorization request,
//! the code exchange and ID token validation: `rampart-oidc`) and `OidcLogins`, which keeps
//! pending logins in the store (so any node may take the callback), binds each to the
//! client that started it, links users by (issuer, subject), maps claims to roles and hands
//! the verified user to `Sessions` like a checked password.

use std::sync::Arc;

use rampart_crypto::TokenHash;
use rampart_store::{
    ExternalIdentity, ExternalIdentityStore, PendingLogin, StoreError, UserChange, UserRecord, UserStore,
};
use rampart_types::{RoleName, Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::audit::EventType;
use crate::auth::{PasswordLogin, Sessions};
use crate::events::Events;
use crate::{CoreError, CoreResult, RequestMeta};

/// How long a login may stay at the provider.
pub const PENDING_LOGIN_SECS: i64 = 600;
/// Pending logins kept at most; at the bound the oldest is dropped for a new one.
pub const MAX_PENDING_LOGINS: usize = 10_000;
/// No password hashes to this: a user made by an external login can never log in locally.
pub const UNUSABLE_PASSWORD_HASH: &str = "!external-login";

/// An authorization request built by the provider adapter. `state`, `nonce` and the PKCE
/// verifier are fresh random values.
pub struct AuthorizationRequest {
    pub url: String,
    pub state: SecretString,
    pub nonce: SecretString,
    pub pkce_verifier: SecretString,
}

/// What a validated ID token says about the user.
#[derive(Debug, Clone)]
pub struct ExternalClaims {
    pub issuer: String,
    pub subject: String,
    /// The value of the configured username claim, when present.
    pub username: Option<String>,
    /// The values of the configured role claim (a string or a list of strings).
    pub role_values: Vec<String>,
}

/// Why a provider step failed, for the audit record and the answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider cannot be reached or its discovery failed: retried on the next login.
    #[error("identity provider unavailable")]
    Unavailable,
    /// The provider refused the code (spent, expired, not ours).
    #[error("the identity provider refused the authorization code")]
    CodeRefused,
    /// The ID token failed validation; the reason names the check (audit only).
    #[error("the ID token failed validation")]
    InvalidIdToken(&'static str),
}

#[async_trait::async_trait]
pub trait OidcProvider: Send + Sync {
    fn issuer(&self) -> &str;
    async fn authorization_request(&self) -> Result<AuthorizationRequest, ProviderError>;
    /// Exchanges `code` (with the PKCE verifier) and validates the ID token (issuer,
    /// audience, authorized party, expiry at `now`, signature, nonce).
    async fn complete(
        &self,
        code: &str,
        pkce_verifier: SecretString,
        nonce: &str,
        now: Timestamp,
    ) -> Result<ExternalClaims, ProviderError>;
    /// Contacts the provider ahead of the first login (discovery), so that a server says at
    /// start when its provider is unreachable. Other verbs never call it.
    async fn warm_up(&self) {}
}

/// How the client started the login and how the callback answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMode {
    /// A browser: the binding is an HttpOnly cookie; the callback sets the session cookie.
    Cookie,
    /// An API client: the binding is a flow token it sends back; the callback answers JSON.
    Token,
}

impl FlowMode {
    fn as_str(self) -> &'static str {
        match self {
            FlowMode::Cookie => "cookie",
            FlowMode::Token => "token",
        }
    }
}

/// A started login: where to send the user, and the secret binding it to this client.
pub struct StartedLogin {
    pub authorization_url: String,
    pub binding: SecretString,
    pub expires_at: Timestamp,
}

/// Claim values to roles, first match wins.
#[derive(Debug, Clone)]
pub struct RoleMapping {
    pub map: Vec<(String, RoleName)>,
    pub default_role: Option<RoleName>,
}

impl RoleMapping {
    fn role_for(&self, values: &[String]) -> Option<RoleName> {
        self.map
            .iter()
            .find(|(v, _)| values.iter().any(|x| x == v))
            .map(|(_, r)| r.clone())
            .or_else(|| self.default_role.clone())
    }
}

/// OpenID Connect logins (see the module doc).
#[derive(Clone)]
pub struct OidcLogins {
    provider: Arc<dyn OidcProvider>,
    pending: Arc<dyn ExternalIdentityStore>,
    users: Arc<dyn UserStore>,
    roles: RoleMapping,
    sessions: Sessions,
    events: Events,
}

/// The binding value as stored: a hash, never the value itself.
fn binding_hash(binding: &str) -> [u8; 32] {
    *TokenHash::of(&format!("rampart-oidc-binding\0{binding}")).as_bytes()
}

fn state_hash(state: &str) -> [u8; 32] {
    *TokenHash::of(&format!("rampart-oidc-state\0{state}")).as_bytes()
}

impl OidcLogins {
    /// See [`OidcProvider::warm_up`].
    pub async fn warm_up(&self) {
        self.provider.warm_up().await;
    }

    pub(crate) fn new(
        provider: Arc<dyn OidcProvider>,
        store: Arc<dyn rampart_store::Store>,
        roles: RoleMapping,
        sessions: Sessions,
        events: Events,
    ) -> Self {
        Self { provider, pending: store.clone(), users: store, roles, sessions, events }
    }

    /// Starts a login: a pending login in the store and the provider's authorization URL.
    pub async fn start(&self, mode: FlowMode) -> CoreResult<StartedLogin> {
        let req = self.provider.authorization_request().await.map_err(provider_error)?;
        let binding = rampart_crypto::random_id::<32>();
        let now = self.events.now();
        let expires_at = now.plus_seconds(PENDING_LOGIN_SECS);
        let login = PendingLogin {
            state_hash: state_hash(req.state.expose_secret()),
            binding_hash: binding_hash(&binding),
            nonce: req.nonce.expose_secret().to_owned(),
            pkce_verifier: req.pkce_verifier.expose_secret().to_owned(),
            mode: mode.as_str().to_owned(),
            created_at: now,
            expires_at,
        };
        self.pending.create_pending_login(login, now, MAX_PENDING_LOGINS).await?;
        Ok(StartedLogin { authorization_url: req.url, binding: SecretString::from(binding), expires_at })
    }

    /// Completes a login on the provider's callback. The pending login is spent first (a
    /// replayed state finds nothing), only with the binding of the client that started it.
    pub(crate) async fn callback(
        &self,
        code: &str,
        state: &str,
        binding: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<(FlowMode, PasswordLogin)> {
        let now = self.events.now();
        let Some(binding) = binding.filter(|b| !b.is_empty() && b.len() <= 128) else {
            return Err(self.refuse(meta, None, "flow_binding_missing").await);
        };
        if state.is_empty() || state.len() > 512 || code.is_empty() || code.len() > 2048 {
            return Err(self.refuse(meta, None, "malformed_callback").await);
        }
        let taken = self.pending.take_pending_login(state_hash(state), binding_hash(binding)).await?;
        let Some(pending) = taken else {
            return Err(self.refuse(meta, None, "unknown_state_or_binding").await);
        };
        if now >= pending.expires_at {
            return Err(self.refuse(meta, None, "login_expired").await);
        }
        let mode = if pending.mode == "cookie" { FlowMode::Cookie } else { FlowMode::Token };
        let verifier = SecretString::from(pending.pkce_verifier);
        let claims = match self.provider.complete(code, verifier, &pending.nonce, now).await {
            Ok(c) => c,
            Err(e @ ProviderError::Unavailable) => return Err(CoreError::IdentityProviderUnavailable(Box::new(e))),
            Err(ProviderError::CodeRefused) => return Err(self.refuse(meta, None, "code_refused").await),
            Err(ProviderError::InvalidIdToken(why)) => return Err(self.refuse(meta, None, why).await),
        };
        let user = self.user_for(&claims, meta).await?;
        let login = self.sessions.login_verified(&user, meta, "oidc").await?;
        Ok((mode, login))
    }

    /// The local user of (issuer, subject): linked earlier, or provisioned now. A name taken
    /// by an account not linked to this subject is never linked to it (that would hand the
    /// account over): refused. The role follows the claims at every login.
    async fn user_for(&self, claims: &ExternalClaims, meta: &RequestMeta) -> CoreResult<UserRecord> {
        let role = self.roles.role_for(&claims.role_values);
        let linked = self.pending.get_external_identity(&claims.issuer, &claims.subject).await?;
        let Some(role) = role else {
            let who = linked.as_ref().map(|l| l.username.to_string());
            return Err(self.refuse(meta, who.as_deref(), "no_role_for_claims").await);
        };
        if let Some(link) = linked {
            let user = self.users.get_user(&link.username).await?.ok_or(CoreError::InvalidCredentials)?;
            if user.disabled {
                return Err(self.refuse(meta, Some(user.username.as_str()), "account_disabled").await);
            }
            if user.role == role {
                return Ok(user);
            }
            // The store ends the user's sessions with a role change, as for any role change.
            let details =
                json!({ "role": role.as_str(), "previous_role": user.role.as_str(), "source": "oidc_claims" });
            let event = self.events.event(EventType::RoleChange, Some(user.username.as_str()), meta, true, details);
            let change = UserChange { role: Some(role), at: Some(self.events.now()), ..UserChange::default() };
            return Ok(self.users.update_user(&user.username, change, vec![event]).await?);
        }
        let name = claims.username.as_deref().and_then(|n| Username::parse(n).ok());
        let Some(username) = name else {
            return Err(self.refuse(meta, None, "username_claim_missing_or_invalid").await);
        };
        let now = self.events.now();
        let user = UserRecord {
            username: username.clone(),
            password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
            role,
            disabled: false,
            mfa_enabled: false,
            created_at: now,
            updated_at: now,
            auth_source: rampart_types::AuthSource::Oidc,
        };
        let identity = ExternalIdentity {
            issuer: claims.issuer.clone(),
            subject: claims.subject.clone(),
            username: username.clone(),
            created_at: now,
        };
        let details = json!({ "role": user.role.as_str(), "source": "oidc", "issuer": claims.issuer });
        let event = self.events.event(EventType::UserCreate, Some(username.as_str()), meta, true, details);
        match self.pending.create_external_user(user.clone(), identity, vec![event]).await {
            Ok(()) => Ok(user),
            Err(StoreError::AlreadyExists) => {
                // A first login of the same subject that finished meanwhile made the link:
                // that is this user, not a conflict.
                if let Some(link) = self.pending.get_external_identity(&claims.issuer, &claims.subject).await? {
                    if link.username == username {
                        return self.users.get_user(&username).await?.ok_or(CoreError::InvalidCredentials);
                    }
                }
                let _ = self.refuse(meta, Some(username.as_str()), "username_taken_by_unlinked_account").await;
                Err(CoreError::ExternalAccountConflict)
            }
            Err(StoreError::NotFound) => Err(CoreError::validation("role", "the mapped role does not exist")),
            Err(e) => Err(e.into()),
        }
    }

    /// Audits a refused login (and tells breach detection) and returns the answer for it.
    async fn refuse(&self, meta: &RequestMeta, who: Option<&str>, reason: &'static str) -> CoreError {
        self.sessions.external_login_failed(meta, who, reason).await;
        CoreError::ExternalLoginFailed
    }
}

fn provider_error(e: ProviderError) -> CoreError {
    match e {
        e @ ProviderError::Unavailable => CoreError::IdentityProviderUnavailable(Box::new(e)),
        ProviderError::CodeRefused | ProviderError::InvalidIdToken(_) => CoreError::ExternalLoginFailed,
    }
}
