use std::sync::Arc;

use rampart_store::RoleRecord;
use rampart_types::{CollectionName, Permission, Username};

use crate::rbac;

/// An authenticated caller: who, with which role, through which session.
#[derive(Debug, Clone)]
pub struct Principal {
    pub username: Username,
    pub role: Arc<RoleRecord>,
    /// `None` for the local CLI, which acts with the admin role on the data dir it owns.
    pub session_id: Option<String>,
    /// Where the request came from, for audit records.
    pub origin: crate::RequestMeta,
    /// The role requires MFA and this session was opened without a second factor: only
    /// enrolment and logout work, for the session's whole life.
    pub mfa_enrollment_only: bool,
    /// How the session was authenticated (the CLI acts with full assurance).
    pub assurance: rampart_store::Assurance,
}

impl Principal {
    pub fn can(&self, perm: Permission, collection: Option<&CollectionName>) -> bool {
        rbac::grants(&self.role, perm, collection)
    }

    pub fn sees_collection(&self, c: &CollectionName) -> bool {
        rbac::collection_visible(&self.role, c)
    }
}
