use rampart_store::RoleRecord;
use rampart_types::{CollectionName, Permission as P, PermissionScope, RoleName, Timestamp};

pub const ADMIN_ROLE: &str = "admin";

fn role(name: &str, description: &str, permissions: Vec<P>, at: Timestamp) -> Option<RoleRecord> {
    Some(RoleRecord {
        name: RoleName::parse(name).ok()?,
        description: description.to_owned(),
        permissions,
        collections: None,
        builtin: true,
        created_at: at,
    })
}

/// The seven built-in roles of SPEC section 5. They are rewritten at every start, so an
/// upgrade that changes them takes effect and a tampered definition does not persist.
pub fn builtin_roles(at: Timestamp) -> Vec<RoleRecord> {
    use P::*;
    [
        role("admin", "Full control of the server", P::ALL.to_vec(), at),
        role(
            "security_officer",
            "Security monitoring and incident response",
            vec![
                AuditRead,
                AuditVerify,
                SecurityRead,
                SecurityManage,
                UsersRead,
                UsersMfaReset,
                SessionsManage,
                RolesRead,
                KeysRead,
                ConfigRead,
                ComplianceRead,
                MetricsRead,
                BackupRead,
            ],
            at,
        ),
        role(
            "privacy_officer",
            "Data-subject requests (GDPR/CCPA) and retention",
            vec![
                GdprAccess,
                GdprExport,
                GdprErase,
                GdprConsent,
                GdprVerify,
                CcpaAccess,
                CcpaDelete,
                CcpaOptOut,
                CollectionsRead,
                DocumentsRead,
                AuditRead,
                ComplianceRead,
                ComplianceLegalHold,
            ],
            at,
        ),
        role(
            "auditor",
            "Read-only access to audit trails and compliance evidence",
            vec![
                AuditRead,
                AuditVerify,
                ComplianceRead,
                UsersRead,
                RolesRead,
                CollectionsRead,
                SecurityRead,
                BackupRead,
                ConfigRead,
                KeysRead,
            ],
            at,
        ),
        role(
            "operator",
            "Backups, keys and monitoring; no document data",
            vec![
                BackupCreate,
                BackupRead,
                BackupRestore,
                KeysRead,
                KeysRotate,
                ConfigRead,
                MetricsRead,
                CollectionsRead,
            ],
            at,
        ),
        role(
            "editor",
            "Reads and writes documents and manages collections",
            vec![CollectionsRead, CollectionsCreate, CollectionsUpdate, DocumentsRead, DocumentsWrite, DocumentsDelete],
            at,
        ),
        role("viewer", "Reads documents", vec![CollectionsRead, DocumentsRead], at),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Whether `role` grants `perm`, on `collection` when the permission is collection-scoped.
/// A collection-scoped permission asked without a collection (listing) is granted if the
/// role holds it at all; the caller then filters by `collection_visible`.
pub fn grants(role: &RoleRecord, perm: P, collection: Option<&CollectionName>) -> bool {
    if !role.permissions.contains(&perm) {
        return false;
    }
    match (perm.scope(), &role.collections, collection) {
        (PermissionScope::Collection, Some(allowed), Some(c)) => allowed.contains(c),
        _ => true,
    }
}

pub fn collection_visible(role: &RoleRecord, c: &CollectionName) -> bool {
    role.collections.as_ref().is_none_or(|allowed| allowed.contains(c))
}

/// Whether a holder of `actor` may hand out (or act upon holders of) `target`: no one can
/// grant more than they hold, so privileges can never be raised through the API.
pub fn covers(actor: &RoleRecord, target: &RoleRecord) -> bool {
    target.permissions.iter().all(|p| {
        if !actor.permissions.contains(p) {
            return false;
        }
        match (p.scope(), &actor.collections, &target.collections) {
            (PermissionScope::Collection, Some(_), None) => false,
            (PermissionScope::Collection, Some(a), Some(t)) => t.iter().all(|c| a.contains(c)),
            _ => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(roles: &[RoleRecord], name: &str) -> RoleRecord {
        roles.iter().find(|r| r.name.as_str() == name).cloned().expect("role")
    }

    #[test]
    fn seven_builtin_roles_and_admin_has_everything() {
        let roles = builtin_roles(Timestamp::from_millis(0));
        assert_eq!(roles.len(), 7);
        let admin = find(&roles, "admin");
        for r in &roles {
            assert!(covers(&admin, r), "admin must cover {}", r.name);
        }
        let viewer = find(&roles, "viewer");
        assert!(!grants(&viewer, P::DocumentsWrite, None));
        assert!(!grants(&viewer, P::UsersRead, None));
        assert!(!covers(&viewer, &admin));
        assert!(!covers(&find(&roles, "editor"), &find(&roles, "operator")));
    }

    #[test]
    fn collection_scoped_grants() {
        let c1 = CollectionName::parse("a").expect("c");
        let c2 = CollectionName::parse("b").expect("c");
        let mut scoped = find(&builtin_roles(Timestamp::from_millis(0)), "editor");
        scoped.builtin = false;
        scoped.collections = Some(vec![c1.clone()]);
        assert!(grants(&scoped, P::DocumentsRead, Some(&c1)));
        assert!(!grants(&scoped, P::DocumentsRead, Some(&c2)));
        let unscoped = find(&builtin_roles(Timestamp::from_millis(0)), "editor");
        assert!(!covers(&scoped, &unscoped), "a scoped role cannot grant an unscoped one");
        assert!(covers(&unscoped, &scoped));
    }
}
