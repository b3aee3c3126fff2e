//! Type-level permissions: a handler names its permission in its signature with
//! `Authz<perm::X>`, so the requirement is visible where the handler is defined.

use rampart_types::Permission;

pub trait PermissionMarker: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! markers {
    ($($name:ident),* $(,)?) => {
        $(
            pub struct $name;
            impl PermissionMarker for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )*
    };
}

markers!(
    UsersRead,
    UsersCreate,
    UsersUpdate,
    UsersDelete,
    RolesRead,
    RolesManage,
    CollectionsRead,
    CollectionsCreate,
    CollectionsUpdate,
    CollectionsDelete,
    DocumentsRead,
    DocumentsWrite,
    DocumentsDelete,
    AuditRead,
    AuditVerify,
    KeysRead,
    KeysRotate,
    BackupCreate,
    BackupRead,
    GdprErase,
    SecurityRead,
    SecurityManage,
    UsersMfaReset,
);
