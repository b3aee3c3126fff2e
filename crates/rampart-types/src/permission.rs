use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether a permission can be limited to named collections by a role grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionScope {
    Global,
    Collection,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?}")]
pub struct UnknownPermission(pub String);

/// A permission named at the type level (see `perm`).
pub trait PermissionMarker: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! permissions {
    ($($variant:ident = $text:literal, $scope:ident;)*) => {
        /// A named permission. Every endpoint declares exactly one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission { $($variant,)* }

        impl Permission {
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $text,)* }
            }

            pub const fn scope(self) -> PermissionScope {
                match self { $(Permission::$variant => PermissionScope::$scope,)* }
            }

            pub fn parse(s: &str) -> Result<Self, UnknownPermission> {
                match s {
                    $($text => Ok(Permission::$variant),)*
                    other => Err(UnknownPermission(other.chars().take(64).collect())),
                }
            }
        }

        /// One zero-sized type per permission, so that code can require a permission in a
        /// signature (`Authorized<perm::DocumentsRead>`).
        pub mod perm {
            $(
                pub struct $variant;
                impl super::PermissionMarker for $variant {
                    const PERMISSION: super::Permission = super::Permission::$variant;
                }
            )*
        }
    };
}

permissions! {
    UsersRead = "users.read", Global;
    UsersCreate = "users.create", Global;
    UsersUpdate = "users.update", Global;
    UsersDelete = "users.delete", Global;
    UsersMfaReset = "users.mfa.reset", Global;
    SessionsManage = "sessions.manage", Global;
    RolesRead = "roles.read", Global;
    RolesManage = "roles.manage", Global;
    CollectionsRead = "collections.read", Collection;
    CollectionsCreate = "collections.create", Collection;
    CollectionsUpdate = "collections.update", Collection;
    CollectionsDelete = "collections.delete", Collection;
    DocumentsRead = "documents.read", Collection;
    DocumentsWrite = "documents.write", Collection;
    DocumentsDelete = "documents.delete", Collection;
    AuditRead = "audit.read", Global;
    AuditVerify = "audit.verify", Global;
    SecurityRead = "security.read", Global;
    SecurityManage = "security.manage", Global;
    BackupCreate = "backup.create", Global;
    BackupRead = "backup.read", Global;
    BackupRestore = "backup.restore", Global;
    ConfigRead = "config.read", Global;
    ConfigWrite = "config.write", Global;
    KeysRead = "keys.read", Global;
    KeysRotate = "keys.rotate", Global;
    GdprAccess = "gdpr.access", Global;
    GdprExport = "gdpr.export", Global;
    GdprErase = "gdpr.erase", Global;
    GdprConsent = "gdpr.consent", Global;
    GdprVerify = "gdpr.verify", Global;
    GdprOverride = "gdpr.override", Global;
    CcpaAccess = "ccpa.access", Global;
    CcpaDelete = "ccpa.delete", Global;
    CcpaOptOut = "ccpa.opt_out", Global;
    ComplianceRead = "compliance.read", Global;
    ComplianceLegalHold = "compliance.legal_hold", Global;
    MetricsRead = "metrics.read", Global;
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Permission::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_25_distinct_permissions_round_trip() {
        assert!(Permission::ALL.len() >= 25);
        let mut seen = std::collections::HashSet::new();
        for p in Permission::ALL {
            assert!(seen.insert(p.as_str()), "duplicate {p}");
            assert_eq!(Permission::parse(p.as_str()), Ok(*p));
        }
        assert!(Permission::parse("users.*").is_err());
    }
}
