pub mod device;
mod provision;

use std::sync::Arc;

use rampart_crypto::{DeviceKey, SessionToken, TokenHash};
use rampart_store::{
    Assurance, RefreshOutcome, RefreshRecord, SecurityStore, SessionRecord, SessionStore, Store, TokenStore, Topic,
    UserStore,
};
use rampart_types::{perm, AuthSource, FamilyId, SessionId, Timestamp, Username};
use secrecy::SecretString;
use serde_json::json;

use crate::access::Access;
use crate::audit::EventType;
use crate::events::Events;
use crate::identity::{IdentityProvider, Verdict};
use crate::roles::Roles;
use crate::security::{BreachDetection, Detection, Severity};
use crate::stamped_cache::{ResolvedSession, StampedCache};
use crate::throttle::{Attempt, LoginDelay};
use crate::users::UserView;
use crate::{Area, CoreError, CoreResult, Principal, RequestMeta};

pub struct LoginOutcome {
    pub token: SecretString,
    pub refresh_token: SecretString,
    pub expires_at: Timestamp,
    pub user: UserView,
    /// Set when the account must still pass a second factor: no session was opened.
    pub mfa_token: Option<SecretString>,
    /// The session can only enrol a second factor and log out (see `Principal`).
    pub mfa_enrollment_required: bool,
    /// Signed proof that this client completed a login (see `device`); set on logins.
    pub device_token: Option<SecretString>,
}

const SESSION_PREFIX: &str = "rps_";
const REFRESH_PREFIX: &str = "rpr_";
const MAX_USER_AGENT: usize = 256;

/// The first step of a login: a session, or a second factor still to pass.
pub(crate) enum PasswordLogin {
    Opened(LoginOutcome),
    SecondFactor(rampart_store::UserRecord),
}

/// Settings sessions run by.
#[derive(Debug, Clone)]
pub(crate) struct SessionPolicy {
    pub idle_secs: i64,
    pub lifetime_secs: i64,
    pub refresh_lifetime_secs: i64,
    pub max_per_user: u32,
    pub touch_interval_secs: i64,
    pub require_mfa_for_roles: Vec<String>,
}

/// Login, sessions and refresh tokens: the password step (through the `IdentityProvider`),
/// the login delay and device trust, opening, resolving (through the session cache) and
/// ending sessions, and single-use refresh rotation.
#[derive(Clone)]
pub struct Sessions {
    user_store: Arc<dyn UserStore>,
    session_store: Arc<dyn SessionStore>,
    token_store: Arc<dyn TokenStore>,
    security_store: Arc<dyn SecurityStore>,
    identity: Identities,
    cache: Arc<StampedCache<[u8; 32], ResolvedSession>>,
    throttle: Arc<dyn LoginDelay>,
    device_key: Arc<DeviceKey>,
    policy: Arc<SessionPolicy>,
    roles: Roles,
    events: Events,
    detection: BreachDetection,
    access: Access,
}

/// The identity providers a login can be checked by, one per `AuthSource`.
#[derive(Clone)]
pub(crate) struct Identities {
    /// Local accounts (Argon2id hashes in the user store).
    pub local: Arc<dyn IdentityProvider>,
    /// The directory, when `[auth.ldap]` is configured.
    pub ldap: Option<Arc<dyn IdentityProvider>>,
    /// The provider for names no account has yet (`[auth] method`).
    pub default_source: AuthSource,
}

/// What `Sessions` is built from.
pub(crate) struct SessionParts {
    pub store: Arc<dyn Store>,
    pub identity: Identities,
    pub throttle: Arc<dyn LoginDelay>,
    pub device_key: Arc<DeviceKey>,
    pub policy: SessionPolicy,
    pub cache_capacity: usize,
}

impl Sessions {
    pub(crate) fn new(
        parts: SessionParts,
        roles: Roles,
        events: Events,
        detection: BreachDetection,
        access: Access,
    ) -> Self {
        let store = parts.store;
        Self {
            cache: Arc::new(StampedCache::new(store.invalidation(), Topic::Auth, parts.cache_capacity)),
            user_store: store.clone(),
            session_store: store.clone(),
            token_store: store.clone(),
            security_store: store,
            identity: parts.identity,
            throttle: parts.throttle,
            device_key: parts.device_key,
            policy: Arc::new(parts.policy),
            roles,
            events,
            detection,
            access,
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.events.now()
    }

    /// Checks the password and opens a session. Unknown users, wrong passwords and disabled
    /// accounts all cost one Argon2 verification (or one directory check) and end in the
    /// same `InvalidCredentials`. The attempt is reserved on the client's throttle bucket
    /// before any hashing or directory request, so simultaneous guesses count against the
    /// delay like consecutive ones. `device` is the client's device token, if it holds one.
    ///
    /// An existing account is checked by its own `auth_source`, an unknown name by the
    /// configured default; `method`, when the client names one, must be that source, else
    /// the login is refused like a wrong password (after the same local work, the
    /// directory never asked). Only the verify step differs between providers: the delay,
    /// device trust, MFA requirement, breach detection and audit are the same for all.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: SecretString,
        method: Option<AuthSource>,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<PasswordLogin> {
        // The name goes into audit records, which PostgreSQL's text cannot hold a NUL in;
        // no valid name has one, so U+FFFD in its place changes no answer.
        let username = &username.replace('\0', "\u{FFFD}");
        let attempt = self.reserve_attempt(username, device, meta).await?;
        let existing = match Username::parse(username) {
            Ok(name) => self.user_store.get_user(&name).await?,
            Err(_) => None,
        };
        // An account logs in through its own source; an unknown name through the method it
        // asks for, else the configured default (so directory users can be provisioned
        // while local stays the default).
        let source = existing.as_ref().map_or(method.unwrap_or(self.identity.default_source), |u| u.auth_source);
        let verdict = match self.verify_with(source, method, username, password).await {
            Ok(v) => v,
            Err(e @ CoreError::IdentityProviderUnavailable(_)) => {
                // Not the client's failure: the attempt is given back, and nobody gets in.
                attempt.release().await?;
                let details = json!({ "reason": "identity_provider_unavailable", "source": source.as_str() });
                self.events.record_event(EventType::Login, Some(username), meta, false, details).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let verdict = match verdict {
            Verdict::External(ext) => match self.provision(&ext, meta).await? {
                Ok(user) => Verdict::Verified(user),
                Err(reason) => Verdict::Refused(reason),
            },
            v => v,
        };
        let user = match verdict {
            Verdict::Verified(user) => user,
            Verdict::External(_) => return Err(CoreError::internal_msg("external identity left unprovisioned")),
            Verdict::Refused(reason) => {
                let counted = attempt.failed(self.now()).await;
                self.detection.on_failed_login(meta, username);
                let details = json!({ "reason": reason });
                self.events.record_event(EventType::Login, Some(username), meta, false, details).await?;
                // A failure the delay could not count is reported as the store failure it is,
                // not answered as if it had been counted.
                counted?;
                return Err(CoreError::InvalidCredentials);
            }
        };
        if user.mfa_enabled {
            // The delay is cleared only once the second factor passes too: otherwise each
            // correct password would reset the count of wrong TOTP codes.
            attempt.release().await?;
            return Ok(PasswordLogin::SecondFactor(user));
        }
        attempt.succeeded().await?;
        self.detection.on_login_success(meta, user.username.as_str());
        let details = match user.auth_source {
            AuthSource::Local => json!({ "method": "password" }),
            other => json!({ "method": "password", "source": other.as_str() }),
        };
        let mut out = self.open_session(&user, meta, Assurance::Password, details).await?;
        out.device_token = Some(self.trust_client(user.username.as_str(), meta, device).await?);
        Ok(PasswordLogin::Opened(out))
    }

    /// The steps after the password for a user an external provider has verified (OIDC):
    /// the same breach detection, MFA requirement, session limit, assurance (password-
    /// equivalent: the provider's own factors are not known to us) and audit as a local
    /// login. `method` names the provider kind in the audit record.
    pub(crate) async fn login_verified(
        &self,
        user: &rampart_store::UserRecord,
        meta: &RequestMeta,
        method: &'static str,
    ) -> CoreResult<PasswordLogin> {
        if user.disabled {
            self.external_login_failed(meta, Some(user.username.as_str()), "account_disabled").await;
            return Err(CoreError::ExternalLoginFailed);
        }
        if user.mfa_enabled {
            return Ok(PasswordLogin::SecondFactor(user.clone()));
        }
        self.detection.on_login_success(meta, user.username.as_str());
        let mut out = self.open_session(user, meta, Assurance::Password, json!({ "method": method })).await?;
        out.device_token = Some(self.trust_client(user.username.as_str(), meta, None).await?);
        Ok(PasswordLogin::Opened(out))
    }

    /// A refused external login: audited as a failed `login` with its reason, and counted
    /// by breach detection like a failed password.
    pub(crate) async fn external_login_failed(&self, meta: &RequestMeta, who: Option<&str>, reason: &'static str) {
        self.detection.on_failed_login(meta, who.unwrap_or("oidc"));
        let details = json!({ "method": "oidc", "reason": reason });
        if let Err(e) = self.events.record_event(EventType::Login, who, meta, false, details).await {
            tracing::warn!(error = %e, "could not record a refused external login");
        }
    }

    /// The verify step through the provider of `source`. A `method` other than `source`, or
    /// a source without a password provider here, is refused after the local provider's
    /// work for an unknown name (one dummy Argon2 check): no directory is asked.
    async fn verify_with(
        &self,
        source: AuthSource,
        method: Option<AuthSource>,
        username: &str,
        password: SecretString,
    ) -> CoreResult<Verdict> {
        let now = self.now();
        let provider = match (source, &self.identity.ldap) {
            _ if method.is_some_and(|m| m != source) => Err("method_mismatch"),
            (AuthSource::Local, _) => Ok(&self.identity.local),
            (AuthSource::Ldap, Some(ldap)) => Ok(ldap),
            (AuthSource::Ldap, None) => Err("ldap_not_configured"),
            (AuthSource::Oidc, _) => Err("no_password_login_for_this_source"),
        };
        match provider {
            Ok(p) => p.verify(username, password, now).await,
            Err(reason) => {
                self.identity.local.verify("", password, now).await?;
                Ok(Verdict::Refused(reason))
            }
        }
    }

    /// Reserves a login (or second-factor) attempt on the client's bucket; a refusal is
    /// audited as `rate_limited` and is not a failed login.
    pub(crate) async fn reserve_attempt(
        &self,
        username: &str,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<Attempt> {
        let bucket = self.login_bucket(username, meta, device).await?;
        match self.throttle.reserve_attempt(&bucket, self.now()).await? {
            Ok(a) => Ok(a),
            Err(wait) => {
                let details = json!({ "reason": "login_delay", "retry_after_secs": wait });
                self.events.record_event(EventType::RateLimited, Some(username), meta, false, details).await?;
                Err(CoreError::RateLimited { retry_after_secs: wait })
            }
        }
    }

    /// A new session with the first refresh token of a new family; audited as `login`.
    pub(crate) async fn open_session(
        &self,
        user: &rampart_store::UserRecord,
        meta: &RequestMeta,
        assurance: Assurance,
        details: serde_json::Value,
    ) -> CoreResult<LoginOutcome> {
        let (session, token) = self.new_session(&user.username, meta, assurance);
        let (refresh, refresh_token) = self.new_refresh(&user.username, &session.id, None, assurance);
        let session_id = session.id.clone();
        let expires_at = session.expires_at;
        let mut details = details;
        if let Some(o) = details.as_object_mut() {
            o.insert("session_id".into(), json!(session_id));
        }
        let event = self.events.event(EventType::Login, Some(user.username.as_str()), meta, true, details);
        let max = self.policy.max_per_user;
        self.token_store.create_session_with_refresh(session, refresh, max, vec![event]).await?;
        Ok(LoginOutcome {
            token,
            refresh_token,
            expires_at,
            mfa_enrollment_required: self.enrollment_only(assurance, &user.role),
            user: UserView::from(user),
            mfa_token: None,
            device_token: None,
        })
    }

    /// A session below multi-factor assurance whose role requires MFA may only enrol.
    pub(crate) fn enrollment_only(&self, assurance: Assurance, role: &rampart_types::RoleName) -> bool {
        assurance < Assurance::MultiFactor && self.policy.require_mfa_for_roles.iter().any(|r| r == role.as_str())
    }

    pub(crate) fn new_session(
        &self,
        username: &Username,
        meta: &RequestMeta,
        assurance: Assurance,
    ) -> (SessionRecord, SecretString) {
        let now = self.now();
        let token = SessionToken::generate(SESSION_PREFIX);
        let session = SessionRecord {
            id: rampart_crypto::new_id(),
            token_hash: *token.hash.as_bytes(),
            username: username.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus_seconds(self.policy.lifetime_secs),
            ip_address: meta.ip.clone(),
            user_agent: meta.user_agent.as_ref().map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
            assurance,
        };
        (session, token.token)
    }

    /// Resolves a bearer token to its principal, ending it if idle or past its lifetime.
    /// A hit in the session cache costs no store round trip; the cache never outlives a
    /// change to the session, its user or the roles (see `session_cache`).
    pub async fn authenticate(&self, token: &str, meta: &RequestMeta) -> CoreResult<Principal> {
        if !token.starts_with(SESSION_PREFIX) || token.len() > 128 {
            return Err(CoreError::Unauthenticated);
        }
        let hash = *TokenHash::of(token).as_bytes();
        let store = &self.session_store;
        let cache = &self.cache;
        let session = match cache.get(&hash) {
            Some(s) => s,
            None => {
                let stamp = cache.stamp();
                let resolved = self.resolve_session(&hash).await?;
                cache.put(hash, stamp, resolved.clone());
                resolved
            }
        };
        let now = self.now();
        let idle_limit = session.last_seen_at.plus_seconds(self.policy.idle_secs);
        if now >= session.expires_at || now >= idle_limit {
            cache.forget(&hash);
            store.delete_session(&session.session_id, vec![]).await?;
            return Err(CoreError::Unauthenticated);
        }
        let role = self.roles.role(&session.role)?;
        if now >= session.last_seen_at.plus_seconds(self.policy.touch_interval_secs) {
            store.touch_session(&session.session_id, now).await?;
            cache.update(&hash, |s| s.last_seen_at = s.last_seen_at.max(now));
        }
        // The session's own assurance decides, never the user's current MFA state: a
        // password-only session stays enrol-only after the user enrols elsewhere.
        Ok(Principal {
            mfa_enrollment_only: self.enrollment_only(session.assurance, &session.role),
            assurance: session.assurance,
            username: session.username,
            role,
            session_id: Some(session.session_id),
            origin: meta.clone(),
        })
    }

    /// A live session of an enabled user, read from the store.
    async fn resolve_session(&self, token_hash: &[u8; 32]) -> CoreResult<ResolvedSession> {
        let session = self.session_store.get_session_by_token(token_hash).await?.ok_or(CoreError::Unauthenticated)?;
        let user = self.user_store.get_user(&session.username).await?.ok_or(CoreError::Unauthenticated)?;
        if user.disabled {
            return Err(CoreError::Unauthenticated);
        }
        Ok(ResolvedSession {
            session_id: session.id,
            username: user.username,
            role: user.role,
            assurance: session.assurance,
            expires_at: session.expires_at,
            last_seen_at: session.last_seen_at,
        })
    }

    pub async fn logout(&self, who: &Principal) -> CoreResult<()> {
        if let Some(id) = &who.session_id {
            let event = self.events.event(
                EventType::Logout,
                Some(who.username.as_str()),
                &who.origin,
                true,
                json!({ "session_id": id }),
            );
            self.session_store.delete_session(id, vec![event]).await?;
        }
        Ok(())
    }

    /// Ends every session of the caller, this one included; returns how many ended.
    pub async fn logout_all(&self, who: &Principal) -> CoreResult<u64> {
        let event = self.events.event(
            EventType::Logout,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "all_sessions": true }),
        );
        Ok(self.session_store.delete_user_sessions(&who.username, None, vec![event]).await?)
    }

    /// Deletes sessions that are idle or past their lifetime; run periodically.
    pub async fn purge_expired_sessions(&self) -> CoreResult<u64> {
        let now = self.now();
        let cutoff = now.minus_seconds(self.policy.idle_secs);
        let ended = self.session_store.delete_expired_sessions(cutoff, now).await?;
        // The login delay's buckets quiet for a day go with them (shared ones only: the
        // in-memory map is bounded by itself).
        self.throttle.forget_quiet(now).await?;
        Ok(ended)
    }

    pub(crate) fn new_refresh(
        &self,
        user: &Username,
        session_id: &SessionId,
        family: Option<&FamilyId>,
        assurance: Assurance,
    ) -> (RefreshRecord, SecretString) {
        let token = SessionToken::generate(REFRESH_PREFIX);
        let now = self.now();
        let family = family.cloned().unwrap_or_else(rampart_crypto::new_id);
        let rec = RefreshRecord {
            token_hash: *token.hash.as_bytes(),
            family_id: family,
            session_id: session_id.clone(),
            username: user.clone(),
            created_at: now,
            expires_at: now.plus_seconds(self.policy.refresh_lifetime_secs),
            assurance,
        };
        (rec, token.token)
    }

    /// Single-use rotation: the spent token gets a new pair; a spent token presented again
    /// revokes its whole family and raises a Critical alert.
    pub async fn refresh(&self, refresh_token: &str, meta: &RequestMeta) -> CoreResult<LoginOutcome> {
        if !refresh_token.starts_with(REFRESH_PREFIX) || refresh_token.len() > 128 {
            return Err(CoreError::Unauthenticated);
        }
        let old = TokenHash::of(refresh_token);
        // Whose token it is becomes known only inside the store's transaction: the new
        // records are built for a nominal user that the store sets to the family's user.
        let probe = Username::parse("refresh").map_err(CoreError::internal)?;
        // Likewise the assurance: the store copies the family's onto the new pair.
        let (session, token) = self.new_session(&probe, meta, Assurance::Password);
        let (rec, new_refresh) = self.new_refresh(&probe, &session.id, None, Assurance::Password);
        let session_id = session.id.clone();
        let expires_at = session.expires_at;
        let max = self.policy.max_per_user;
        match self.token_store.rotate_refresh(*old.as_bytes(), rec, session, self.now(), max, vec![]).await? {
            RefreshOutcome::Rotated { username, family_id, assurance } => {
                let user = self.user_store.get_user(&username).await?.ok_or(CoreError::Unauthenticated)?;
                let details = json!({ "family": family_id, "session_id": session_id, "method": "refresh" });
                self.events.record_event(EventType::Login, Some(username.as_str()), meta, true, details).await?;
                Ok(LoginOutcome {
                    token,
                    refresh_token: new_refresh,
                    expires_at,
                    mfa_enrollment_required: self.enrollment_only(assurance, &user.role),
                    user: crate::UserView::from(&user),
                    mfa_token: None,
                    device_token: None,
                })
            }
            RefreshOutcome::Reused { username, family_id } => {
                // Either party may be the thief (the first user of a stolen token, or the
                // owner coming back later): revoke the family, alert, block no address.
                let details = json!({ "family": family_id, "reason": "refresh_token_reuse" });
                self.events
                    .record_event(EventType::SessionRevoke, Some(username.as_str()), meta, false, details.clone())
                    .await?;
                let ip = meta.client_ip();
                let user = username.to_string();
                self.detection
                    .raise(Detection {
                        breach_type: "privilege_escalation",
                        severity: Severity::Critical,
                        dedup: format!("refresh:{family_id}"),
                        details,
                        ip,
                        user: Some(&user),
                        revoke_sessions: false,
                        block_source: false,
                    })
                    .await?;
                Err(CoreError::Unauthenticated)
            }
            RefreshOutcome::Invalid => Err(CoreError::Unauthenticated),
        }
    }

    /// The caller's sessions (or, with `sessions.manage`, another user's).
    pub async fn list_sessions(
        &self,
        who: &Principal,
        of: Option<&str>,
    ) -> CoreResult<Vec<rampart_store::SessionRecord>> {
        let target = match of {
            Some(name) if name != who.username.as_str() => {
                // Someone else's account: administration.
                self.access.authorize::<perm::SessionsManage>(who.clone(), None, Area::Admin).await?;
                Username::parse(name).map_err(|e| CoreError::validation("username", e.to_string()))?
            }
            _ => who.username.clone(),
        };
        Ok(self.session_store.list_sessions(&target).await?)
    }

    /// Ends one session: one's own, or anyone's with `sessions.manage`.
    pub async fn end_session(&self, who: &Principal, id: &str) -> CoreResult<()> {
        // Not shaped like one of our ids: no such session (nothing reaches the store).
        let id = SessionId::parse(id).map_err(|_| CoreError::NotFound("session"))?;
        let own = self.session_store.list_sessions(&who.username).await?.iter().any(|s| s.id == id);
        if !own {
            self.access.authorize::<perm::SessionsManage>(who.clone(), None, Area::Admin).await?;
        }
        let event = self.events.event(
            EventType::SessionRevoke,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "session_id": id }),
        );
        if !self.session_store.delete_session(&id, vec![event]).await? {
            return Err(CoreError::NotFound("session"));
        }
        Ok(())
    }

    /// The CSRF token bound to a browser session token (double-submit, derived, not stored).
    pub fn csrf_token_for(&self, session_token: &str) -> String {
        let h = rampart_crypto::TokenHash::of(&format!("rampart-csrf\0{session_token}"));
        hex::encode(h.as_bytes())
    }
}
