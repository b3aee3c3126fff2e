//! The `IdentityProvider` port: who a username and password prove to be. The local
//! provider checks Argon2id hashes in the user store; LDAP and OIDC providers plug in here.
//! Whatever the provider, login keeps its throttle, device trust, MFA requirement, breach
//! detection and audit, which live in `Sessions`.

use std::sync::Arc;

use rampart_crypto::StoredPasswordHash;
use rampart_store::{UserChange, UserRecord, UserStore};
use rampart_types::{AuthSource, RoleName, Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};

use crate::{CoreResult, PasswordPool};

/// The answer of a provider. A refusal carries the reason for the audit record only:
/// the client always gets the same `InvalidCredentials`.
pub enum Verdict {
    /// An account of the user store, checked by the provider.
    Verified(UserRecord),
    /// Someone an external provider (a directory) vouches for, with the role it maps them
    /// to: `Sessions` provisions or updates the local account (see `auth/provision.rs`).
    External(ExternalIdentity),
    Refused(&'static str),
}

/// Who an external provider says logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    pub username: Username,
    pub role: RoleName,
    /// The provider that vouched; the local account must have the same source.
    pub source: AuthSource,
}

/// The password hash of an account an external provider vouches for: not a PHC string,
/// so no password ever matches it (a check against it still spends the dummy hash's work).
pub const NO_LOCAL_PASSWORD: &str = "!external-account-no-local-password";

#[async_trait::async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Checks `password` for `username`, spending the same work whether or not the user
    /// exists, is disabled or the password is wrong. A provider that cannot be reached
    /// answers `CoreError::IdentityProviderUnavailable`, never a verdict.
    async fn verify(&self, username: &str, password: SecretString, now: Timestamp) -> CoreResult<Verdict>;
}

/// Local accounts: Argon2id hashes in the user store, upgraded to the current parameters
/// on a successful login.
pub struct LocalIdentity {
    user_store: Arc<dyn UserStore>,
    passwords: PasswordPool,
}

impl LocalIdentity {
    pub fn new(user_store: Arc<dyn UserStore>, passwords: PasswordPool) -> Self {
        Self { user_store, passwords }
    }
}

#[async_trait::async_trait]
impl IdentityProvider for LocalIdentity {
    async fn verify(&self, username: &str, password: SecretString, now: Timestamp) -> CoreResult<Verdict> {
        if password.expose_secret().len() > rampart_crypto::MAX_PASSWORD_BYTES {
            // Still spend the same work, so length probing reveals nothing.
            let _ = self.passwords.verify(SecretString::from(String::new()), None).await?;
            return Ok(Verdict::Refused("invalid_credentials"));
        }
        let user = match Username::parse(username) {
            Ok(name) => self.user_store.get_user(&name).await?,
            Err(_) => None,
        };
        let stored = user.as_ref().map(|u| StoredPasswordHash::from_stored(u.password_hash.clone()));
        let check = self.passwords.verify(password.clone(), stored).await?;
        let user = match user {
            // An account another provider vouches for never logs in with a local password,
            // whatever its stored hash (defence in depth: routing sends it elsewhere).
            Some(u) if u.auth_source != AuthSource::Local => return Ok(Verdict::Refused("not_a_local_account")),
            Some(u) if check.matches && !u.disabled => u,
            Some(u) if check.matches && u.disabled => return Ok(Verdict::Refused("account_disabled")),
            Some(_) => return Ok(Verdict::Refused("wrong_password")),
            None => return Ok(Verdict::Refused("unknown_user")),
        };
        if check.needs_rehash {
            let fresh = self.passwords.hash(password).await?;
            let change =
                UserChange { password_hash: Some(fresh.as_str().to_owned()), at: Some(now), ..UserChange::default() };
            self.user_store.update_user(&user.username, change, vec![]).await?;
        }
        Ok(Verdict::Verified(user))
    }
}
