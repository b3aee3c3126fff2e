use rampart_crypto::{SessionToken, StoredPasswordHash, TokenHash};
use rampart_store::{Assurance, SessionRecord, StoreError, UserChange};
use rampart_types::{Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::audit::EventType;
use crate::session_cache::ResolvedSession;
use crate::users::UserView;
use crate::{Core, CoreError, CoreResult, Principal};

/// Where a request came from; recorded with sessions and audit events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl RequestMeta {
    /// The client address, when the request came over the network.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.ip.as_deref().and_then(|i| i.parse().ok())
    }

    /// Work started on this machine (CLI, bootstrap) rather than by a network request.
    pub fn local(origin: &str) -> Self {
        let id = rampart_crypto::random_id::<8>();
        Self { ip: None, user_agent: None, request_id: format!("{origin}-{id}") }
    }
}

pub struct LoginOutcome {
    pub token: SecretString,
    pub refresh_token: SecretString,
    pub session_id: String,
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
const MAX_USER_AGENT: usize = 256;

impl Core {
    /// Checks the password and opens a session. Unknown users, wrong passwords and disabled
    /// accounts all cost one Argon2 verification and end in the same `InvalidCredentials`.
    /// The attempt is reserved on the client's throttle bucket before any hashing, so
    /// simultaneous guesses count against the delay like consecutive ones. `device` is the
    /// client's device token, if it holds one.
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<LoginOutcome> {
        let attempt = self.reserve_attempt(username, device, meta).await?;
        let fail = |reason: &'static str, attempt: crate::throttle::Attempt| async move {
            attempt.failed(self.now());
            self.on_failed_login(meta, username);
            self.record_event(EventType::Login, Some(username), meta, false, json!({ "reason": reason })).await?;
            Err::<LoginOutcome, CoreError>(CoreError::InvalidCredentials)
        };
        if password.expose_secret().len() > rampart_crypto::MAX_PASSWORD_BYTES {
            // Still spend the same work, so length probing reveals nothing.
            let _ = self.inner.passwords.verify(SecretString::from(String::new()), None).await?;
            return fail("invalid_credentials", attempt).await;
        }
        let user = match Username::parse(username) {
            Ok(name) => self.inner.store.get_user(&name).await?,
            Err(_) => None,
        };
        let stored = user.as_ref().map(|u| StoredPasswordHash::from_stored(u.password_hash.clone()));
        let check = self.inner.passwords.verify(password.clone(), stored).await?;
        let user = match user {
            Some(u) if check.matches && !u.disabled => u,
            Some(u) if check.matches && u.disabled => return fail("account_disabled", attempt).await,
            Some(_) => return fail("wrong_password", attempt).await,
            None => return fail("unknown_user", attempt).await,
        };
        if check.needs_rehash {
            let fresh = self.inner.passwords.hash(password).await?;
            let change = UserChange {
                password_hash: Some(fresh.as_str().to_owned()),
                at: Some(self.now()),
                ..UserChange::default()
            };
            self.inner.store.update_user(&user.username, change, vec![]).await?;
        }
        if user.mfa_enabled {
            // The delay is cleared only once the second factor passes too: otherwise each
            // correct password would reset the count of wrong TOTP codes.
            attempt.release();
            return self.mfa_challenge(&user, meta).await;
        }
        attempt.succeeded();
        self.on_login_success(meta, user.username.as_str());
        let mut out = self.open_session(&user, meta, Assurance::Password, json!({ "method": "password" })).await?;
        out.device_token = Some(self.trust_client(user.username.as_str(), meta, device).await?);
        Ok(out)
    }

    /// Reserves a login (or second-factor) attempt on the client's bucket; a refusal is
    /// audited as `rate_limited` and is not a failed login.
    pub(crate) async fn reserve_attempt(
        &self,
        username: &str,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<crate::throttle::Attempt> {
        let bucket = self.login_bucket(username, meta, device).await?;
        match self.inner.throttle.reserve(&bucket, self.now()) {
            Ok(a) => Ok(a),
            Err(wait) => {
                let details = json!({ "reason": "login_delay", "retry_after_secs": wait });
                self.record_event(EventType::RateLimited, Some(username), meta, false, details).await?;
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
        let event = self.event(EventType::Login, Some(user.username.as_str()), meta, true, details);
        let max = self.inner.settings.max_sessions_per_user;
        self.inner.store.create_session_with_refresh(session, refresh, max, vec![event]).await?;
        Ok(LoginOutcome {
            token,
            refresh_token,
            session_id,
            expires_at,
            mfa_enrollment_required: self.enrollment_only(assurance, &user.role),
            user: UserView::from(user),
            mfa_token: None,
            device_token: None,
        })
    }

    /// A session below multi-factor assurance whose role requires MFA may only enrol.
    pub(crate) fn enrollment_only(&self, assurance: Assurance, role: &rampart_types::RoleName) -> bool {
        assurance < Assurance::MultiFactor
            && self.inner.settings.require_mfa_for_roles.iter().any(|r| r == role.as_str())
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
            id: rampart_crypto::random_id::<16>(),
            token_hash: *token.hash.as_bytes(),
            username: username.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus_seconds(self.inner.settings.session_lifetime_secs),
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
        let store = &self.inner.store;
        let cache = &self.inner.sessions;
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
        let idle_limit = session.last_seen_at.plus_seconds(self.inner.settings.session_idle_secs);
        if now >= session.expires_at || now >= idle_limit {
            cache.forget(&hash);
            store.delete_session(&session.session_id, vec![]).await?;
            return Err(CoreError::Unauthenticated);
        }
        let role = self.role(&session.role)?;
        if now >= session.last_seen_at.plus_seconds(self.inner.settings.touch_interval_secs) {
            store.touch_session(&session.session_id, now).await?;
            cache.touched(&hash, now);
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
        let store = &self.inner.store;
        let session = store.get_session_by_token(token_hash).await?.ok_or(CoreError::Unauthenticated)?;
        let user = store.get_user(&session.username).await?.ok_or(CoreError::Unauthenticated)?;
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
            let event = self.event(
                EventType::Logout,
                Some(who.username.as_str()),
                &who.origin,
                true,
                json!({ "session_id": id }),
            );
            self.inner.store.delete_session(id, vec![event]).await?;
        }
        Ok(())
    }

    /// Ends every session of the caller, this one included; returns how many ended.
    pub async fn logout_all(&self, who: &Principal) -> CoreResult<u64> {
        let event = self.event(
            EventType::Logout,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "all_sessions": true }),
        );
        Ok(self.inner.store.delete_user_sessions(&who.username, None, vec![event]).await?)
    }

    /// Needs the current password; ends every other session of the user.
    pub async fn change_password(&self, who: &Principal, current: SecretString, new: SecretString) -> CoreResult<()> {
        let user = self.inner.store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        let name = Some(who.username.as_str());
        let stored = StoredPasswordHash::from_stored(user.password_hash.clone());
        if !self.inner.passwords.verify(current, Some(stored)).await?.matches {
            let details = json!({ "reason": "wrong_current_password" });
            self.record_event(EventType::PasswordChange, name, &who.origin, false, details).await?;
            return Err(CoreError::Forbidden("current password is incorrect"));
        }
        if let Err(v) = rampart_crypto::check_password_policy(new.expose_secret(), user.username.as_str()) {
            let details = json!({ "reason": "password_policy", "rule": v.rule });
            self.record_event(EventType::PasswordChange, name, &who.origin, false, details).await?;
            return Err(CoreError::PasswordPolicy(v));
        }
        let hash = self.inner.passwords.hash(new).await?;
        let change = UserChange {
            password_hash: Some(hash.as_str().to_owned()),
            end_sessions: true,
            keep_session: who.session_id.clone(),
            at: Some(self.now()),
            ..UserChange::default()
        };
        let audit = vec![
            self.event(EventType::PasswordChange, name, &who.origin, true, json!({})),
            self.event(
                EventType::SessionRevoke,
                name,
                &who.origin,
                true,
                json!({ "target": who.username.as_str(), "reason": "password_change", "kept_session": who.session_id }),
            ),
        ];
        self.inner.store.update_user(&user.username, change, audit).await.map_err(|e| match e {
            StoreError::NotFound => CoreError::Unauthenticated,
            e => e.into(),
        })?;
        Ok(())
    }

    /// Deletes sessions that are idle or past their lifetime; run periodically.
    pub async fn purge_expired_sessions(&self) -> CoreResult<u64> {
        let now = self.now();
        let cutoff = now.minus_seconds(self.inner.settings.session_idle_secs);
        Ok(self.inner.store.delete_expired_sessions(cutoff, now).await?)
    }
}
