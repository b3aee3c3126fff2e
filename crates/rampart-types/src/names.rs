use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused; the message names the rule so clients can fix their input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {rule}")]
pub struct NameError {
    pub kind: &'static str,
    pub rule: &'static str,
}

fn check_chars(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(allowed)
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $rule:literal, $pattern:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                if check_chars(s, $max, $allowed) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(NameError { kind: $kind, rule: $rule })
                }
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::schema::string_schema($rule, Some($pattern.to_owned()), None)
            }
        }
        impl utoipa::ToSchema for $name {}
        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
    };
}

fn lower_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

validated_name!(
    /// A collection name: `[a-z0-9_-]{1,64}`.
    CollectionName, "collection name", "must match [a-z0-9_-]{1,64}", "^[a-z0-9_-]{1,64}$", 64, lower_name_char
);
validated_name!(
    /// A role name: `[a-z0-9_-]{1,64}`.
    RoleName, "role name", "must match [a-z0-9_-]{1,64}", "^[a-z0-9_-]{1,64}$", 64, lower_name_char
);
validated_name!(
    /// A username: `[a-z0-9._@-]{1,64}`. Lower case only, so `Admin` cannot impersonate `admin`.
    Username, "username", "must match [a-z0-9._@-]{1,64}", "^[a-z0-9._@-]{1,64}$", 64,
    |c: char| lower_name_char(c) || c == '.' || c == '@'
);
validated_name!(
    /// The data subject a document belongs to: printable ASCII without spaces, 1..=128 bytes.
    SubjectId, "subject_id", "must be 1-128 printable ASCII characters without spaces", "^[!-~]{1,128}$", 128,
    |c: char| c.is_ascii_graphic()
);
validated_name!(
    /// A document id: `[A-Za-z0-9_-]{1,64}` (server-generated ids are UUID-shaped).
    DocumentId, "document id", "must match [A-Za-z0-9_-]{1,64}", "^[A-Za-z0-9_-]{1,64}$", 64,
    |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'
);
validated_name!(
    /// A field path in a document, dot-separated: `address.city`.
    FieldPath, "field", "must match [A-Za-z0-9_.-]{1,128} without empty segments", "^[A-Za-z0-9_.-]{1,128}$", 128,
    |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
);

impl FieldPath {
    /// The segments of a dotted path; `parse` guarantees none is empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
    pub fn is_well_formed(&self) -> bool {
        self.segments().all(|s| !s.is_empty())
    }
}

impl DocumentId {
    /// A fresh random id formatted as a UUID v4.
    pub fn from_random(bytes: [u8; 16]) -> Self {
        let mut b = bytes;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Self(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        assert!(CollectionName::parse("patients_2024-a").is_ok());
        assert!(CollectionName::parse("").is_err());
        assert!(CollectionName::parse("Patients").is_err());
        assert!(CollectionName::parse("a/b").is_err());
        assert!(CollectionName::parse(&"a".repeat(65)).is_err());
        assert!(CollectionName::parse(&"a".repeat(64)).is_ok());
        assert!(Username::parse("alice@example.com").is_ok());
        assert!(Username::parse("Alice").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("al\nice").is_err());
        assert!(SubjectId::parse("user 1").is_err());
        assert!(SubjectId::parse("user-1").is_ok());
    }

    #[test]
    fn random_document_ids_are_uuid_shaped() {
        let id = DocumentId::from_random([0xff; 16]);
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(&id.as_str()[14..15], "4");
        assert!(DocumentId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn field_paths_reject_empty_segments() {
        assert!(FieldPath::parse("a.b").map(|f| f.is_well_formed()).unwrap_or(false));
        assert!(!FieldPath::parse("a..b").map(|f| f.is_well_formed()).unwrap_or(true));
    }
}
