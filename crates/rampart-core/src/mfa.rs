//! Second factor (TOTP with recovery codes) and refresh-token rotation.

use rampart_crypto::{recovery_code_hash, recovery_codes, SessionToken, StoredPasswordHash, TokenHash, TotpSecret};
use rampart_store::{Assurance, MfaStore, Store, UserRecord, UserStore};
use rampart_types::Username;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;

use std::sync::Arc;

use crate::access::Access;
use crate::audit::EventType;
use crate::auth::Sessions;
use crate::events::Events;
use crate::keyring::KeyRing;
use crate::roles::Roles;
use crate::security::BreachDetection;
use crate::{Authorized, Refusal};
use crate::{CoreError, CoreResult, LoginOutcome, PasswordPool, Principal, RequestMeta};
use rampart_types::perm;

const MFA_TOKEN_PREFIX: &str = "rpm_";
const CHALLENGE_SECS: i64 = 300;
const CHALLENGE_ATTEMPTS: u32 = 5;
const ISSUER: &str = "Rampart";

#[derive(utoipa::ToSchema, Debug, Serialize)]
pub struct MfaEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
    /// SVG QR code of the URI, as a data URI.
    pub qr_code: String,
}

fn secret_aad(user: &Username, kind: &str) -> Vec<u8> {
    format!("rampart-mfa\0{kind}\0{}", user.as_str()).into_bytes()
}

/// The second factor: TOTP enrolment, confirmation, verification at login (codes single
/// use), recovery codes, and an administrator's reset. Sessions it opens go through
/// `Sessions`, so they carry multi-factor assurance from the start.
#[derive(Clone)]
pub struct Mfa {
    mfa_store: Arc<dyn MfaStore>,
    user_store: Arc<dyn UserStore>,
    keys: Arc<KeyRing>,
    passwords: PasswordPool,
    sessions: Sessions,
    roles: Roles,
    events: Events,
    detection: BreachDetection,
    access: Access,
}

/// What `Mfa` is built from, beside the other services.
pub(crate) struct MfaParts {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub passwords: PasswordPool,
}

impl Mfa {
    pub(crate) fn new(
        parts: MfaParts,
        sessions: Sessions,
        roles: Roles,
        events: Events,
        detection: BreachDetection,
        access: Access,
    ) -> Self {
        let MfaParts { store, keys, passwords } = parts;
        Self {
            mfa_store: store.clone(),
            user_store: store,
            keys,
            passwords,
            sessions,
            roles,
            events,
            detection,
            access,
        }
    }

    fn now(&self) -> rampart_types::Timestamp {
        self.events.now()
    }

    async fn seal_secret(&self, user: &Username, kind: &str, bytes: &[u8]) -> CoreResult<Vec<u8>> {
        self.keys.seal_secret(&secret_aad(user, kind), bytes, self.now()).await
    }

    async fn open_secret(&self, user: &Username, kind: &str, sealed: &[u8]) -> CoreResult<TotpSecret> {
        let plain = self.keys.open_secret(&secret_aad(user, kind), sealed, self.now()).await?;
        TotpSecret::from_bytes(&plain).ok_or(CoreError::Integrity("stored TOTP secret is malformed"))
    }

    /// Starts enrolment: a new secret, pending until confirmed with a code.
    pub async fn mfa_enable(&self, who: &Principal) -> CoreResult<MfaEnrollment> {
        let user = self.user_store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        if user.mfa_enabled {
            return Err(CoreError::Conflict("MFA is already enabled; disable it first"));
        }
        let secret = TotpSecret::generate();
        let sealed = self.seal_secret(&who.username, "totp", secret.bytes()).await?;
        self.mfa_store.set_mfa_pending(&who.username, Some(sealed)).await?;
        let uri = secret.otpauth_uri(ISSUER, who.username.as_str());
        Ok(MfaEnrollment {
            secret: secret.base32(),
            qr_code: rampart_crypto::qr_svg_data_uri(&uri)
                .ok_or_else(|| CoreError::internal_msg("QR code generation failed"))?,
            otpauth_uri: uri,
        })
    }

    /// Activates MFA once a code from the pending secret checks out; returns the ten
    /// recovery codes (shown this once, stored only hashed) and a fresh multi-factor
    /// session. Every earlier session of the user, this one included, ends: none of them
    /// was opened with the new factor.
    pub async fn mfa_confirm(&self, who: &Principal, code: &str) -> CoreResult<(Vec<String>, LoginOutcome)> {
        let state = self.mfa_store.mfa_state(&who.username).await?;
        let pending =
            state.pending.ok_or(CoreError::Conflict("no MFA enrolment in progress: call mfa/enable first"))?;
        let secret = self.open_secret(&who.username, "totp", &pending).await?;
        let name = Some(who.username.as_str());
        let Some(step) = secret.matching_step(code, self.now().as_unix_seconds()) else {
            self.events
                .record_event(EventType::MfaEnable, name, &who.origin, false, json!({ "reason": "wrong_code" }))
                .await?;
            return Err(CoreError::validation("code", "the code does not match the new secret"));
        };
        let codes = recovery_codes();
        let hashes = codes.iter().map(|(_, h)| *h).collect();
        let audit = vec![
            self.events.event(EventType::MfaEnable, name, &who.origin, true, json!({})),
            self.events.event(
                EventType::SessionRevoke,
                name,
                &who.origin,
                true,
                json!({ "target": who.username.as_str(), "reason": "mfa_enrolled" }),
            ),
        ];
        self.mfa_store.activate_mfa(&who.username, hashes, audit).await?;
        self.mfa_store.claim_totp_step(&who.username, step).await?;
        let user = self.user_store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        let details = json!({ "method": "mfa_enrolment", "second_factor": "totp" });
        let session = self.sessions.open_session(&user, &who.origin, Assurance::MultiFactor, details).await?;
        Ok((codes.into_iter().map(|(c, _)| c).collect(), session))
    }

    /// Login of an MFA user: a single-use, five-minute token bound to the user.
    /// `method`: how the first step was passed (`password`, `oidc`), for the audit record.
    pub(crate) async fn challenge(
        &self,
        user: &UserRecord,
        method: &'static str,
        meta: &RequestMeta,
    ) -> CoreResult<LoginOutcome> {
        let token = SessionToken::generate(MFA_TOKEN_PREFIX);
        let expires = self.now().plus_seconds(CHALLENGE_SECS);
        self.mfa_store.create_challenge(*token.hash.as_bytes(), &user.username, expires).await?;
        let details = json!({ "method": method, "second_factor": "pending" });
        self.events.record_event(EventType::Login, Some(user.username.as_str()), meta, true, details).await?;
        Ok(LoginOutcome {
            token: SecretString::from(String::new()),
            refresh_token: SecretString::from(String::new()),
            expires_at: expires,
            user: crate::UserView::from(user),
            mfa_token: Some(token.token),
            mfa_enrollment_required: false,
            device_token: None,
        })
    }

    /// Completes an MFA login with a TOTP code (each accepted once) or a recovery code.
    pub async fn mfa_verify(
        &self,
        mfa_token: &str,
        code: &str,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<LoginOutcome> {
        let hash = TokenHash::of(mfa_token);
        let now = self.now();
        let Some(username) = self.mfa_store.attempt_challenge(*hash.as_bytes(), now, CHALLENGE_ATTEMPTS).await? else {
            self.events
                .record_event(EventType::MfaVerify, None, meta, false, json!({ "reason": "invalid_mfa_token" }))
                .await?;
            return Err(CoreError::Unauthenticated);
        };
        let account = username.to_string();
        let attempt = self.sessions.reserve_attempt(&account, device, meta).await?;
        let user = self.user_store.get_user(&username).await?.ok_or(CoreError::Unauthenticated)?;
        let state = self.mfa_store.mfa_state(&username).await?;
        let secret = match state.secret.as_deref() {
            Some(s) if user.mfa_enabled && !user.disabled => self.open_secret(&username, "totp", s).await?,
            _ => return Err(CoreError::Unauthenticated),
        };
        let method = match secret.matching_step(code, now.as_unix_seconds()) {
            Some(step) if self.mfa_store.claim_totp_step(&username, step).await? => Some("totp"),
            Some(_) => {
                // The password was right and so is the code, but it was used before: say
                // so, rather than blaming the password.
                let counted = attempt.failed(now).await;
                let details = json!({ "reason": "code_already_used" });
                self.events.record_event(EventType::MfaVerify, Some(&account), meta, false, details).await?;
                counted?;
                return Err(CoreError::CodeAlreadyUsed);
            }
            None => {
                let details = json!({ "via": "mfa_verify" });
                let event = self.events.event(EventType::RecoveryCodeUsed, Some(&account), meta, true, details);
                let used =
                    self.mfa_store.use_recovery_code(&username, recovery_code_hash(code), now, vec![event]).await?;
                used.then_some("recovery_code")
            }
        };
        let Some(method) = method else {
            let counted = attempt.failed(now).await;
            self.detection.on_failed_login(meta, &account);
            self.events
                .record_event(
                    EventType::MfaVerify,
                    Some(&account),
                    meta,
                    false,
                    json!({ "reason": "wrong_or_replayed_code" }),
                )
                .await?;
            counted?;
            return Err(CoreError::InvalidCredentials);
        };
        // Of concurrent right answers on one challenge, exactly one opens a session.
        if !self.mfa_store.consume_challenge(*hash.as_bytes()).await? {
            return Err(CoreError::Unauthenticated);
        }
        attempt.succeeded().await?;
        self.events.record_event(EventType::MfaVerify, Some(&account), meta, true, json!({ "method": method })).await?;
        self.detection.on_login_success(meta, &account);
        let details = json!({ "method": "password+mfa", "second_factor": method });
        let mut out = self.sessions.open_session(&user, meta, Assurance::MultiFactor, details).await?;
        out.device_token = Some(self.sessions.trust_client(&account, meta, device).await?);
        Ok(out)
    }

    /// Turns MFA off: needs the password and a current code.
    pub async fn mfa_disable(&self, who: &Principal, password: SecretString, code: &str) -> CoreResult<()> {
        let user = self.user_store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        let name = Some(who.username.as_str());
        let state = self.mfa_store.mfa_state(&who.username).await?;
        let secret = match state.secret.as_deref() {
            Some(s) if user.mfa_enabled => self.open_secret(&who.username, "totp", s).await?,
            _ => return Err(CoreError::Conflict("MFA is not enabled")),
        };
        let password_ok =
            self.passwords.verify(password, Some(StoredPasswordHash::from_stored(user.password_hash))).await?.matches;
        let code_ok = match secret.matching_step(code, self.now().as_unix_seconds()) {
            Some(step) => self.mfa_store.claim_totp_step(&who.username, step).await?,
            None => false,
        };
        if !(password_ok && code_ok) {
            self.events
                .record_event(
                    EventType::MfaDisable,
                    name,
                    &who.origin,
                    false,
                    json!({ "reason": "wrong_password_or_code" }),
                )
                .await?;
            return Err(CoreError::Forbidden("password and a current code are both required"));
        }
        let event = self.events.event(EventType::MfaDisable, name, &who.origin, true, json!({}));
        self.mfa_store.disable_mfa(&who.username, false, vec![event]).await?;
        Ok(())
    }

    /// New recovery codes (the old ones stop working); needs a current code.
    pub async fn mfa_regenerate_codes(&self, who: &Principal, code: &str) -> CoreResult<Vec<String>> {
        let state = self.mfa_store.mfa_state(&who.username).await?;
        let sealed = state.secret.ok_or(CoreError::Conflict("MFA is not enabled"))?;
        let secret = self.open_secret(&who.username, "totp", &sealed).await?;
        let ok = match secret.matching_step(code, self.now().as_unix_seconds()) {
            Some(step) => self.mfa_store.claim_totp_step(&who.username, step).await?,
            None => false,
        };
        if !ok {
            return Err(CoreError::Forbidden("a current code is required"));
        }
        let codes = recovery_codes();
        let event = self.events.event(
            EventType::MfaEnable,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "recovery_codes": "regenerated" }),
        );
        self.mfa_store
            .replace_recovery_codes(&who.username, codes.iter().map(|(_, h)| *h).collect(), vec![event])
            .await?;
        Ok(codes.into_iter().map(|(c, _)| c).collect())
    }

    /// An admin clears another user's MFA; that user's sessions end.
    pub async fn mfa_reset(&self, access: &Authorized<perm::UsersMfaReset>, name: &str) -> CoreResult<()> {
        let actor = access.who();
        let target = Username::parse(name).map_err(|e| CoreError::validation("username", e.to_string()))?;
        let user = self.user_store.get_user(&target).await?.ok_or(CoreError::NotFound("user"))?;
        let role = self.roles.role(&user.role)?;
        if !crate::rbac::covers(&actor.role, &role) {
            let refusal = Refusal::Outranked { action: "mfa_reset", target: target.clone() };
            return Err(self.access.refuse(actor, access.area(), refusal).await);
        }
        let event = self.events.event(
            EventType::MfaReset,
            Some(actor.username.as_str()),
            &actor.origin,
            true,
            json!({ "target": name }),
        );
        self.mfa_store.disable_mfa(&target, true, vec![event]).await?;
        Ok(())
    }
}
