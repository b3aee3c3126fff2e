//! Second factor (TOTP with recovery codes) and refresh-token rotation.

use rampart_crypto::{recovery_code_hash, recovery_codes, SessionToken, StoredPasswordHash, TokenHash, TotpSecret};
use rampart_store::{Assurance, RefreshOutcome, RefreshRecord, UserRecord};
use rampart_types::Username;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;

use crate::audit::EventType;
use crate::security::{Detection, Severity};
use crate::{Area, Authorized, Refusal};
use crate::{Core, CoreError, CoreResult, LoginOutcome, Principal, RequestMeta};
use rampart_types::perm;

const MFA_TOKEN_PREFIX: &str = "rpm_";
const REFRESH_PREFIX: &str = "rpr_";
const CHALLENGE_SECS: i64 = 300;
const CHALLENGE_ATTEMPTS: u32 = 5;
const ISSUER: &str = "Rampart";

#[derive(Debug, Serialize)]
pub struct MfaEnrollment {
    pub secret: String,
    pub otpauth_uri: String,
    /// SVG QR code of the URI, as a data URI.
    pub qr_code: String,
}

fn secret_aad(user: &Username, kind: &str) -> Vec<u8> {
    format!("rampart-mfa\0{kind}\0{}", user.as_str()).into_bytes()
}

impl Core {
    async fn seal_secret(&self, user: &Username, kind: &str, bytes: &[u8]) -> CoreResult<Vec<u8>> {
        self.inner.keys.seal_secret(&secret_aad(user, kind), bytes, self.now()).await
    }

    async fn open_secret(&self, user: &Username, kind: &str, sealed: &[u8]) -> CoreResult<TotpSecret> {
        let plain = self.inner.keys.open_secret(&secret_aad(user, kind), sealed, self.now()).await?;
        TotpSecret::from_bytes(&plain).ok_or(CoreError::Integrity("stored TOTP secret is malformed"))
    }

    /// Starts enrolment: a new secret, pending until confirmed with a code.
    pub async fn mfa_enable(&self, who: &Principal) -> CoreResult<MfaEnrollment> {
        let user = self.inner.store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        if user.mfa_enabled {
            return Err(CoreError::Conflict("MFA is already enabled; disable it first"));
        }
        let secret = TotpSecret::generate();
        let sealed = self.seal_secret(&who.username, "totp", secret.bytes()).await?;
        self.inner.store.set_mfa_pending(&who.username, Some(sealed)).await?;
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
        let state = self.inner.store.mfa_state(&who.username).await?;
        let pending =
            state.pending.ok_or(CoreError::Conflict("no MFA enrolment in progress: call mfa/enable first"))?;
        let secret = self.open_secret(&who.username, "totp", &pending).await?;
        let name = Some(who.username.as_str());
        let Some(step) = secret.matching_step(code, self.now().as_unix_seconds()) else {
            self.record_event(EventType::MfaEnable, name, &who.origin, false, json!({ "reason": "wrong_code" }))
                .await?;
            return Err(CoreError::validation("code", "the code does not match the new secret"));
        };
        let codes = recovery_codes();
        let hashes = codes.iter().map(|(_, h)| *h).collect();
        let audit = vec![
            self.event(EventType::MfaEnable, name, &who.origin, true, json!({})),
            self.event(
                EventType::SessionRevoke,
                name,
                &who.origin,
                true,
                json!({ "target": who.username.as_str(), "reason": "mfa_enrolled" }),
            ),
        ];
        self.inner.store.activate_mfa(&who.username, hashes, audit).await?;
        self.inner.store.claim_totp_step(&who.username, step).await?;
        let user = self.inner.store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        let details = json!({ "method": "mfa_enrolment", "second_factor": "totp" });
        let session = self.open_session(&user, &who.origin, Assurance::MultiFactor, details).await?;
        Ok((codes.into_iter().map(|(c, _)| c).collect(), session))
    }

    /// Login of an MFA user: a single-use, five-minute token bound to the user.
    pub(crate) async fn mfa_challenge(&self, user: &UserRecord, meta: &RequestMeta) -> CoreResult<LoginOutcome> {
        let token = SessionToken::generate(MFA_TOKEN_PREFIX);
        let expires = self.now().plus_seconds(CHALLENGE_SECS);
        self.inner.store.create_challenge(*token.hash.as_bytes(), &user.username, expires).await?;
        let details = json!({ "method": "password", "second_factor": "pending" });
        self.record_event(EventType::Login, Some(user.username.as_str()), meta, true, details).await?;
        Ok(LoginOutcome {
            token: SecretString::from(String::new()),
            refresh_token: SecretString::from(String::new()),
            session_id: String::new(),
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
        let Some(username) = self.inner.store.attempt_challenge(*hash.as_bytes(), now, CHALLENGE_ATTEMPTS).await?
        else {
            self.record_event(EventType::MfaVerify, None, meta, false, json!({ "reason": "invalid_mfa_token" }))
                .await?;
            return Err(CoreError::Unauthenticated);
        };
        let account = username.to_string();
        let attempt = self.reserve_attempt(&account, device, meta).await?;
        let user = self.inner.store.get_user(&username).await?.ok_or(CoreError::Unauthenticated)?;
        let state = self.inner.store.mfa_state(&username).await?;
        let secret = match state.secret.as_deref() {
            Some(s) if user.mfa_enabled && !user.disabled => self.open_secret(&username, "totp", s).await?,
            _ => return Err(CoreError::Unauthenticated),
        };
        let method = match secret.matching_step(code, now.as_unix_seconds()) {
            Some(step) if self.inner.store.claim_totp_step(&username, step).await? => Some("totp"),
            Some(_) => {
                // The password was right and so is the code, but it was used before: say
                // so, rather than blaming the password.
                attempt.failed(now);
                let details = json!({ "reason": "code_already_used" });
                self.record_event(EventType::MfaVerify, Some(&account), meta, false, details).await?;
                return Err(CoreError::CodeAlreadyUsed);
            }
            None => {
                let details = json!({ "via": "mfa_verify" });
                let event = self.event(EventType::RecoveryCodeUsed, Some(&account), meta, true, details);
                let used =
                    self.inner.store.use_recovery_code(&username, recovery_code_hash(code), now, vec![event]).await?;
                used.then_some("recovery_code")
            }
        };
        let Some(method) = method else {
            attempt.failed(now);
            self.on_failed_login(meta, &account);
            self.record_event(
                EventType::MfaVerify,
                Some(&account),
                meta,
                false,
                json!({ "reason": "wrong_or_replayed_code" }),
            )
            .await?;
            return Err(CoreError::InvalidCredentials);
        };
        // Of concurrent right answers on one challenge, exactly one opens a session.
        if !self.inner.store.consume_challenge(*hash.as_bytes()).await? {
            return Err(CoreError::Unauthenticated);
        }
        attempt.succeeded();
        self.record_event(EventType::MfaVerify, Some(&account), meta, true, json!({ "method": method })).await?;
        self.on_login_success(meta, &account);
        let details = json!({ "method": "password+mfa", "second_factor": method });
        let mut out = self.open_session(&user, meta, Assurance::MultiFactor, details).await?;
        out.device_token = Some(self.trust_client(&account, meta, device).await?);
        Ok(out)
    }

    /// Turns MFA off: needs the password and a current code.
    pub async fn mfa_disable(&self, who: &Principal, password: SecretString, code: &str) -> CoreResult<()> {
        let user = self.inner.store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        let name = Some(who.username.as_str());
        let state = self.inner.store.mfa_state(&who.username).await?;
        let secret = match state.secret.as_deref() {
            Some(s) if user.mfa_enabled => self.open_secret(&who.username, "totp", s).await?,
            _ => return Err(CoreError::Conflict("MFA is not enabled")),
        };
        let password_ok = self
            .inner
            .passwords
            .verify(password, Some(StoredPasswordHash::from_stored(user.password_hash)))
            .await?
            .matches;
        let code_ok = match secret.matching_step(code, self.now().as_unix_seconds()) {
            Some(step) => self.inner.store.claim_totp_step(&who.username, step).await?,
            None => false,
        };
        if !(password_ok && code_ok) {
            self.record_event(
                EventType::MfaDisable,
                name,
                &who.origin,
                false,
                json!({ "reason": "wrong_password_or_code" }),
            )
            .await?;
            return Err(CoreError::Forbidden("password and a current code are both required"));
        }
        let event = self.event(EventType::MfaDisable, name, &who.origin, true, json!({}));
        self.inner.store.disable_mfa(&who.username, false, vec![event]).await?;
        Ok(())
    }

    /// New recovery codes (the old ones stop working); needs a current code.
    pub async fn mfa_regenerate_codes(&self, who: &Principal, code: &str) -> CoreResult<Vec<String>> {
        let state = self.inner.store.mfa_state(&who.username).await?;
        let sealed = state.secret.ok_or(CoreError::Conflict("MFA is not enabled"))?;
        let secret = self.open_secret(&who.username, "totp", &sealed).await?;
        let ok = match secret.matching_step(code, self.now().as_unix_seconds()) {
            Some(step) => self.inner.store.claim_totp_step(&who.username, step).await?,
            None => false,
        };
        if !ok {
            return Err(CoreError::Forbidden("a current code is required"));
        }
        let codes = recovery_codes();
        let event = self.event(
            EventType::MfaEnable,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "recovery_codes": "regenerated" }),
        );
        self.inner
            .store
            .replace_recovery_codes(&who.username, codes.iter().map(|(_, h)| *h).collect(), vec![event])
            .await?;
        Ok(codes.into_iter().map(|(c, _)| c).collect())
    }

    /// An admin clears another user's MFA; that user's sessions end.
    pub async fn mfa_reset(&self, access: &Authorized<perm::UsersMfaReset>, name: &str) -> CoreResult<()> {
        let actor = access.who();
        let target = Username::parse(name).map_err(|e| CoreError::validation("username", e.to_string()))?;
        let user = self.inner.store.get_user(&target).await?.ok_or(CoreError::NotFound("user"))?;
        let role = self.role(&user.role)?;
        if !crate::rbac::covers(&actor.role, &role) {
            let refusal = Refusal::Outranked { action: "mfa_reset", target: target.clone() };
            return Err(self.refuse(actor, access.area(), refusal).await);
        }
        let event = self.event(
            EventType::MfaReset,
            Some(actor.username.as_str()),
            &actor.origin,
            true,
            json!({ "target": name }),
        );
        self.inner.store.disable_mfa(&target, true, vec![event]).await?;
        Ok(())
    }

    pub(crate) fn new_refresh(
        &self,
        user: &Username,
        session_id: &str,
        family: Option<&str>,
        assurance: Assurance,
    ) -> (RefreshRecord, SecretString) {
        let token = SessionToken::generate(REFRESH_PREFIX);
        let now = self.now();
        let family = family.map(str::to_owned).unwrap_or_else(rampart_crypto::random_id::<12>);
        let rec = RefreshRecord {
            token_hash: *token.hash.as_bytes(),
            family_id: family,
            session_id: session_id.to_owned(),
            username: user.clone(),
            created_at: now,
            expires_at: now.plus_seconds(self.inner.settings.refresh_lifetime_secs),
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
        let max = self.inner.settings.max_sessions_per_user;
        match self.inner.store.rotate_refresh(*old.as_bytes(), rec, session, self.now(), max, vec![]).await? {
            RefreshOutcome::Rotated { username, family_id, assurance } => {
                let user = self.inner.store.get_user(&username).await?.ok_or(CoreError::Unauthenticated)?;
                let details = json!({ "family": family_id, "session_id": session_id, "method": "refresh" });
                self.record_event(EventType::Login, Some(username.as_str()), meta, true, details).await?;
                Ok(LoginOutcome {
                    token,
                    refresh_token: new_refresh,
                    session_id,
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
                self.record_event(EventType::SessionRevoke, Some(username.as_str()), meta, false, details.clone())
                    .await?;
                let ip = meta.client_ip();
                let user = username.to_string();
                self.raise(Detection {
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
                self.authorize::<perm::SessionsManage>(who.clone(), None, Area::Admin).await?;
                Username::parse(name).map_err(|e| CoreError::validation("username", e.to_string()))?
            }
            _ => who.username.clone(),
        };
        Ok(self.inner.store.list_sessions(&target).await?)
    }

    /// Ends one session: one's own, or anyone's with `sessions.manage`.
    pub async fn end_session(&self, who: &Principal, id: &str) -> CoreResult<()> {
        let own = self.inner.store.list_sessions(&who.username).await?.iter().any(|s| s.id == id);
        if !own {
            self.authorize::<perm::SessionsManage>(who.clone(), None, Area::Admin).await?;
        }
        let event = self.event(
            EventType::SessionRevoke,
            Some(who.username.as_str()),
            &who.origin,
            true,
            json!({ "session_id": id }),
        );
        if !self.inner.store.delete_session(id, vec![event]).await? {
            return Err(CoreError::NotFound("session"));
        }
        Ok(())
    }
}
