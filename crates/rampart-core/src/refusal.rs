//! Why an action was refused, as typed events: what the authorization step and the
//! services report, and what breach detection counts. Plain data, no behaviour beyond
//! describing itself for the audit record.

use rampart_types::{CollectionName, Permission, RoleName, Username};
use serde_json::{json, Value};

use crate::Principal;

/// What a request acts upon, as its route declares it. Breach detection counts refusals
/// in the admin area (deployment administration and other people's data) towards
/// privilege-escalation alerts; the admin address allow-list applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Open to everyone (health, login).
    Public,
    /// The caller's own account (profile, password, sessions, MFA).
    Account,
    /// Collections and documents.
    Data,
    /// Users, roles, keys, backups, audit, security, data-subject requests.
    Admin,
}

/// Privileges an actor tried to hand out or take without holding them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    ChangeOwnRole,
    UpdateOwnRole,
    AssignRole,
    CreateRole,
    UpdateRole,
    DeleteRole,
}

impl Escalation {
    fn as_str(self) -> &'static str {
        match self {
            Self::ChangeOwnRole => "change_own_role",
            Self::UpdateOwnRole => "update_own_role",
            Self::AssignRole => "assign_role",
            Self::CreateRole => "create_role",
            Self::UpdateRole => "update_role",
            Self::DeleteRole => "delete_role",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::ChangeOwnRole | Self::UpdateOwnRole => "you cannot change your own role",
            Self::AssignRole => "cannot grant a role with permissions you do not hold",
            Self::CreateRole => "cannot create a role with permissions you do not hold",
            Self::UpdateRole => "cannot grant permissions you do not hold",
            Self::DeleteRole => "cannot delete a role with permissions you do not hold",
        }
    }

    /// Raising one's own privileges, directly or by handing oneself a role: an attack on
    /// its first attempt, not a mistake to be counted.
    pub fn is_self_raise(self) -> bool {
        matches!(self, Self::ChangeOwnRole | Self::UpdateOwnRole | Self::AssignRole)
    }
}

/// Why an authenticated action was refused: the typed event breach detection consumes.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The role lacks the permission (on the collection).
    Permission { permission: Permission, collection: Option<CollectionName> },
    /// Granting, changing or removing privileges the actor does not hold.
    Escalation { attempt: Escalation, role: RoleName },
    /// Acting on a user (`action`) who holds more than the actor.
    Outranked { action: &'static str, target: Username },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Permission { .. } => "permission denied",
            Self::Escalation { attempt, .. } => attempt.reason(),
            Self::Outranked { .. } => "cannot manage a user with permissions you do not hold",
        }
    }

    pub fn is_self_raise(&self) -> bool {
        matches!(self, Self::Escalation { attempt, .. } if attempt.is_self_raise())
    }

    /// The audit record's details.
    pub fn details(&self, area: Area) -> Value {
        let mut details = match self {
            Self::Permission { permission, collection } => json!({
                "permission": permission.as_str(),
                "collection": collection.as_ref().map(CollectionName::as_str),
            }),
            Self::Escalation { attempt, role } => json!({ "action": attempt.as_str(), "role": role.as_str() }),
            Self::Outranked { action, target } => json!({ "action": action, "target": target.as_str() }),
        };
        if let Some(d) = details.as_object_mut() {
            d.insert("reason".into(), Value::String(self.reason().into()));
            d.insert("admin_area".into(), Value::Bool(area == Area::Admin));
        }
        details
    }
}

/// Who hears of refusals as they happen (breach detection), beside the audit record.
pub trait RefusalObserver: Send + Sync {
    fn refused(&self, who: &Principal, area: Area, refusal: &Refusal, details: &Value);
}
