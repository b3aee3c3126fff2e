//! Ids the server makes: random, opaque to clients, lowercase hex (some with a prefix that
//! says what they name). One generator makes them all (`rampart_crypto::new_id`); a client
//! sending one back gets it parsed, and anything not shaped like one of ours is refused
//! before it reaches a store.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An id made from `BYTES` random bytes.
pub trait RandomId: Sized {
    const BYTES: usize;
    fn from_random(bytes: &[u8]) -> Self;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0}")]
pub struct InvalidId(pub &'static str);

macro_rules! random_ids {
    ($($(#[$doc:meta])* $name:ident, $what:literal, $prefix:literal, $bytes:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an id a client sent: the prefix, then exactly the hex of our bytes.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let hex = s.strip_prefix($prefix).ok_or(InvalidId($what))?;
                let ok = hex.len() == 2 * $bytes && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                ok.then(|| Self(s.to_owned())).ok_or(InvalidId($what))
            }

            /// An id read back from a store, which only ever holds ids this type made.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let pattern = format!("^{}[0-9a-f]{{{}}}$", $prefix, 2 * $bytes);
                crate::schema::string_schema($what, Some(pattern), None)
            }
        }
        impl utoipa::ToSchema for $name {}

        impl RandomId for $name {
            const BYTES: usize = $bytes;
            fn from_random(bytes: &[u8]) -> Self {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                Self(format!("{}{hex}", $prefix))
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

random_ids! {
    /// A session's public id (for listing and ending it); never the bearer token.
    SessionId, "session id", "", 16;
    /// A refresh-token family: every token rotated from one login.
    FamilyId, "refresh family id", "", 12;
    /// A security alert.
    AlertId, "alert id", "alert-", 12;
    /// A JWT signing key (`kid`).
    SigningKeyId, "signing key id", "", 8;
    /// A minted JWT (`jti`).
    TokenId, "token id", "", 16;
    /// A legal hold (`/api/v1/admin/legal-holds/{hold_id}`).
    HoldId, "legal hold id", "hold-", 12;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_in_their_own_shape() {
        let s = SessionId::from_random(&[0xab; 16]);
        assert_eq!(SessionId::parse(s.as_str()), Ok(s.clone()));
        let a = AlertId::from_random(&[1; 12]);
        assert!(a.as_str().starts_with("alert-"));
        assert_eq!(AlertId::parse(a.as_str()), Ok(a.clone()));
        for bad in ["", "abc", &"A".repeat(32), &"g".repeat(32), &format!("{s}0"), a.as_str()] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
        assert!(AlertId::parse(&a.as_str()["alert-".len()..]).is_err(), "the prefix is part of the shape");
        assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{s}\"")), "serialized as the bare string");
    }
}
