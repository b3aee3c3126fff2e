//! Which identity provider vouches for an account.

use std::fmt;

/// Where an account's password (or login) is checked. Stored with each user
/// (`users.auth_source`); a login is checked by the account's own source, never another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthSource {
    /// Argon2id hash in the user store.
    #[default]
    Local,
    /// A directory (`[auth.ldap]`): provisioned on first login, no usable local password.
    Ldap,
    /// An OpenID Connect provider (`[auth.oidc]`).
    Oidc,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown auth source {0:?}: expected local, ldap or oidc")]
pub struct UnknownAuthSource(pub String);

impl AuthSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Ldap => "ldap",
            Self::Oidc => "oidc",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownAuthSource> {
        match text {
            "local" => Ok(Self::Local),
            "ldap" => Ok(Self::Ldap),
            "oidc" => Ok(Self::Oidc),
            other => Err(UnknownAuthSource(other.chars().take(32).collect())),
        }
    }
}

impl serde::Serialize for AuthSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for AuthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_sources_round_trip_and_unknown_ones_are_refused() {
        for s in [AuthSource::Local, AuthSource::Ldap, AuthSource::Oidc] {
            assert_eq!(AuthSource::parse(s.as_str()), Ok(s));
        }
        assert!(AuthSource::parse("LDAP").is_err());
        assert!(AuthSource::parse("").is_err());
    }
}
