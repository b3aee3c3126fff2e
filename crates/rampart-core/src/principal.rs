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
    pub session_id: Option<rampart_types::SessionId>,
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

/// Where a request came from; recorded with sessions and audit events.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl RequestMeta {
    /// The client address, when the request came over the network.
    pub fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.ip.as_deref().and_then(|i| i.parse().ok())
    }

    /// Work started on this machine (CLI, bootstrap) rather than by a network request.
    pub fn local(origin: &str) -> Self {
        let id = rampart_crypto::random_id::<8>();
        Self { ip: None, user_agent: None, request_id: format!("{origin}-{id}") }
    }
}
