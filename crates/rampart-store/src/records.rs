use rampart_types::{
    AuthSource, CollectionName, DocumentId, FieldPath, Permission, RoleName, SessionId, SubjectId, Timestamp, Username,
};

#[derive(Clone)]
pub struct UserRecord {
    pub username: Username,
    /// PHC string; never logged (see the `Debug` impl).
    pub password_hash: String,
    pub role: RoleName,
    pub disabled: bool,
    pub mfa_enabled: bool,
    /// Which provider checks this account's logins (`local` for every account made here).
    pub auth_source: AuthSource,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("auth_source", &self.auth_source)
            .finish_non_exhaustive()
    }
}

/// A change to a user; `None` fields stay as they are.
#[derive(Clone, Default)]
pub struct UserChange {
    pub role: Option<RoleName>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
    /// With a password change: the session to keep (the one that asked for the change).
    pub keep_session: Option<SessionId>,
    /// End every session of the user (besides `keep_session`) in the same transaction.
    pub end_sessions: bool,
    pub at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub name: RoleName,
    pub description: String,
    pub permissions: Vec<Permission>,
    /// Collection-scoped permissions apply only to these collections when set.
    pub collections: Option<Vec<CollectionName>>,
    pub builtin: bool,
    pub created_at: Timestamp,
}

/// How a role's lists are stored by every backend: JSON arrays of names.
impl RoleRecord {
    /// `(permissions, collections)` as stored; `collections` is `None` for "all".
    pub fn encode_lists(&self) -> Result<(String, Option<String>), serde_json::Error> {
        let perms = serde_json::to_string(&self.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>())?;
        let cols = self
            .collections
            .as_ref()
            .map(|c| serde_json::to_string(&c.iter().map(|n| n.as_str()).collect::<Vec<_>>()))
            .transpose()?;
        Ok((perms, cols))
    }

    /// The lists back from their stored text; an error names what did not parse.
    pub fn decode_lists(
        permissions: &str,
        collections: Option<&str>,
    ) -> Result<(Vec<Permission>, Option<Vec<CollectionName>>), String> {
        let names = |text: &str| serde_json::from_str::<Vec<String>>(text).map_err(|e| e.to_string());
        let permissions = names(permissions)?
            .iter()
            .map(|p| Permission::parse(p).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let collections = collections
            .map(|text| {
                names(text)?
                    .iter()
                    .map(|n| CollectionName::parse(n).map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()
            })
            .transpose()?;
        Ok((permissions, collections))
    }
}

/// How strongly a session's holder proved who they are when it was opened (Kratos' AAL).
/// It stays with the session for life and passes unchanged to the sessions its refresh
/// tokens open: it is never re-derived from the user's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assurance {
    /// Password only (AAL1).
    Password,
    /// Password and a second factor (AAL2).
    MultiFactor,
}

impl Assurance {
    pub const fn as_i64(self) -> i64 {
        match self {
            Self::Password => 1,
            Self::MultiFactor => 2,
        }
    }

    /// Unknown stored values read as the weaker level (fail closed).
    pub const fn from_i64(v: i64) -> Self {
        if v == 2 {
            Self::MultiFactor
        } else {
            Self::Password
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::MultiFactor => "password+mfa",
        }
    }
}

#[derive(Clone)]
pub struct SessionRecord {
    /// Public identifier (for listing and revoking); not the bearer token.
    pub id: SessionId,
    /// SHA-256 of the bearer token.
    pub token_hash: [u8; 32],
    pub username: Username,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub assurance: Assurance,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord").field("id", &self.id).field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionRecord {
    pub name: CollectionName,
    pub indexes: Vec<FieldPath>,
    pub pii_fields: Vec<FieldPath>,
    pub retention_days: Option<u32>,
    pub encrypted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// How a collection's field lists (`indexes`, `pii_fields`) are stored by every backend: a
/// JSON array of paths. One definition, so the backends' stored formats cannot drift.
impl CollectionRecord {
    pub fn encode_fields(fields: &[FieldPath]) -> Result<String, serde_json::Error> {
        serde_json::to_string(&fields.iter().map(FieldPath::as_str).collect::<Vec<_>>())
    }

    /// A list back from its stored text; an error names what did not parse.
    pub fn decode_fields(text: &str) -> Result<Vec<FieldPath>, String> {
        serde_json::from_str::<Vec<String>>(text)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|f| FieldPath::parse(f).map_err(|e| e.to_string()))
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct DocumentRecord {
    pub collection: CollectionName,
    pub id: DocumentId,
    pub version: u64,
    pub subject_id: Option<SubjectId>,
    /// Encoded body, opaque to the store.
    pub body: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Insertion order, assigned by the store; the pagination cursor.
    pub seq: i64,
}

/// One keyed blind-index token for a field of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub field: FieldPath,
    pub token: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct DocumentQuery {
    pub collection: CollectionName,
    /// All must match (AND).
    pub filters: Vec<IndexEntry>,
    pub subject_id: Option<SubjectId>,
    pub after_seq: Option<i64>,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_fields_are_stored_as_a_json_array_of_paths() {
        let fields = vec![FieldPath::parse("a").unwrap(), FieldPath::parse("address.city").unwrap()];
        let text = CollectionRecord::encode_fields(&fields).unwrap();
        assert_eq!(text, r#"["a","address.city"]"#, "the stored format both backends share");
        assert_eq!(CollectionRecord::decode_fields(&text).unwrap(), fields);
        assert_eq!(CollectionRecord::encode_fields(&[]).unwrap(), "[]");
        assert!(CollectionRecord::decode_fields(r#"["bad path!"]"#).is_err());
        assert!(CollectionRecord::decode_fields("not json").is_err());
    }
}
