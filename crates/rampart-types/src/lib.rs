//! Validated newtypes, typed ids, permissions and timestamps shared by every Rampart crate.
//!
//! Parse, don't validate: a value of one of these types is valid by construction, so code
//! further in never re-checks names or permission strings.

mod auth_source;
mod cidr;
mod ids;
mod names;
mod permission;
mod schema;
mod time;

pub use auth_source::{AuthSource, UnknownAuthSource};
pub use cidr::{Cidr, CidrError};
pub use ids::{AlertId, FamilyId, HoldId, InvalidId, RandomId, SessionId, SigningKeyId, TokenId};
pub use names::{CollectionName, DocumentId, FieldPath, NameError, RoleName, SubjectId, Username};
pub use permission::{perm, Permission, PermissionMarker, PermissionScope, UnknownPermission};
pub use time::Timestamp;
