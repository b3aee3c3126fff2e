//! Rampart's behaviour, as services over ports: sessions and login, MFA, users, roles,
//! documents, keys, audit, breach detection, privacy and backups, each holding only the
//! store traits and ports it needs; `Core` opens them and is the thin facade over them.
//! Reaches the outside world only through the store traits and the ports (`Clock`,
//! `Notifier`, `IdentityProvider`, `Limiter`, `Backups`); knows nothing of HTTP or SQL.

mod access;
pub mod audit;
pub mod audit_anchor;
mod auth;
pub mod backup;
mod bounded;
mod clock;
pub mod compliance;
mod core;
mod data;
mod error;
mod events;
mod identity;
pub mod jwt;
pub mod keyring;
pub mod limiter;
pub mod metrics;
pub mod mfa;
pub mod notify;
pub mod oidc;
mod passwords;
mod principal;
mod privacy;
mod rbac;
mod refusal;
pub mod retention;
mod roles;
pub mod rotation;
pub mod security;
mod stamped_cache;
mod telemetry;
mod throttle;
mod users;

pub use crate::core::{Core, CorePorts, CoreSettings};
pub use access::Access;
pub use access::Authorized;
pub use audit::{AuditVerification, EventType};
pub use audit_anchor::AuditLog;
pub use audit_anchor::{AuditCheckpoint, AuditMirror, FullVerification};
pub use auth::LoginOutcome;
pub use auth::{device, Sessions};
pub use backup::BackupService;
pub use clock::{Clock, FakeClock, SystemClock};
pub use compliance::Compliance;
pub use data::Documents;
pub use data::{CollectionSpec, CollectionUpdate, CollectionView, Document, DocumentChange, DocumentList, ListParams};
pub use error::{CoreError, CoreResult};
pub use events::Events;
pub use identity::{ExternalIdentity, IdentityProvider, LocalIdentity, Verdict, NO_LOCAL_PASSWORD};
pub use jwt::Tokens;
pub use limiter::{client_key, Budget, Decision, LimitKey, Limiter, LimiterStatus, LocalLimiter, RateLimiter};
pub use mfa::Mfa;
pub use notify::{NoNotifier, Notice, Notifier};
pub use oidc::{FlowMode, OidcLogins, OidcProvider, RoleMapping};
pub use passwords::PasswordPool;
pub use principal::{Principal, RequestMeta};
pub use privacy::{
    AccessSummary, CollectionHoldings, ConsentAsk, ConsentStatus, ConsentView, ErasureAsk, ErasureReceipt, Export,
    ExportHeader, ExportRecord, IssuedVerification, OptOutAsk, OptOutView, Privacy, Proof,
};
pub use rampart_types::perm;
pub use rbac::{builtin_roles, grants, ADMIN_ROLE};
pub use refusal::{Area, Escalation, Refusal};
pub use retention::{HoldRequest, HoldView, PlanRow, Retention, RetentionPlan};
pub use roles::RoleSpec;
pub use roles::Roles;
pub use rotation::Keys;
pub use security::BreachDetection;
pub use telemetry::Telemetry;
pub use throttle::ThrottleBackend;
pub use users::Users;
pub use users::{Bootstrap, ExportedUser, ImportedUser, NewUser, UserView};

pub use rampart_crypto::{ct_eq, MasterKey};
pub use rampart_store::{
    AlertFilter, AlertRecord, AuditEvent, AuditFilter, AuditRecord, LeaderLease, RoleRecord, SessionRecord, SingleNode,
    Store,
};
