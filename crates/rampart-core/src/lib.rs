//! Rampart's behaviour: login and sessions, RBAC, users, roles, collections and documents.
//! Reaches the outside world only through the store traits and the `Clock`; knows nothing
//! of HTTP or SQL.

mod access;
pub mod audit;
pub mod audit_anchor;
mod auth;
pub mod backup;
mod bounded;
mod clock;
mod core;
mod data;
pub mod device;
mod error;
pub mod jwt;
pub mod keyring;
pub mod limiter;
pub mod mfa;
mod passwords;
mod principal;
mod rbac;
mod roles;
pub mod rotation;
pub mod security;
mod session_cache;
mod throttle;
mod users;

pub use crate::core::{Bootstrap, Core, CoreSettings};
pub use access::{Area, Authorized, Escalation, Refusal};
pub use audit::{AuditVerification, EventType};
pub use audit_anchor::{AuditCheckpoint, AuditMirror, FullVerification};
pub use auth::{LoginOutcome, RequestMeta};
pub use clock::{Clock, FakeClock, SystemClock};
pub use data::{CollectionSpec, CollectionUpdate, CollectionView, Document, DocumentChange, DocumentList, ListParams};
pub use error::{CoreError, CoreResult};
pub use limiter::{client_key, Budget, Decision, LimitKey, Limiter, LocalLimiter, RateLimiter};
pub use passwords::PasswordPool;
pub use principal::Principal;
pub use rampart_types::perm;
pub use rbac::{builtin_roles, grants, ADMIN_ROLE};
pub use roles::RoleSpec;
pub use users::{NewUser, UserView};

pub use rampart_crypto::{ct_eq, MasterKey};
pub use rampart_store::{
    AlertFilter, AlertRecord, AuditEvent, AuditFilter, AuditRecord, RoleRecord, SessionRecord, Store,
};
