//! The one authorization step. `Core::authorize` is the only constructor of
//! `Authorized<P>`, and every service method that needs a permission takes one, so a
//! decision is made once (by the caller's transport, for the route's scope), recorded
//! once when it refuses, and cannot be skipped or made differently further in.

use std::marker::PhantomData;

use rampart_types::{CollectionName, Permission, PermissionMarker, RoleName, Username};
use serde_json::{json, Value};

use crate::audit::EventType;
use crate::{Core, CoreError, CoreResult, Principal};

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

/// Proof that `who` holds permission `P` (on `collection`, for collection-scoped
/// permissions asked about one collection). Only `Core::authorize` makes one.
pub struct Authorized<P: PermissionMarker> {
    who: Principal,
    collection: Option<CollectionName>,
    area: Area,
    _perm: PhantomData<fn() -> P>,
}

impl<P: PermissionMarker> Authorized<P> {
    pub fn who(&self) -> &Principal {
        &self.who
    }

    /// The collection the permission was granted on: for routes scoped to one.
    pub fn collection(&self) -> CoreResult<&CollectionName> {
        self.collection.as_ref().ok_or(CoreError::NotFound("collection"))
    }

    pub fn area(&self) -> Area {
        self.area
    }
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

impl Core {
    /// The authorization decision: `who` must hold `P` (on `collection`, if named) through
    /// a session with the assurance its role requires. A refusal is recorded (audit and
    /// breach detection) before it is returned; if it cannot be recorded, the answer is
    /// "unavailable" instead (fail closed).
    pub async fn authorize<P: PermissionMarker>(
        &self,
        who: Principal,
        collection: Option<CollectionName>,
        area: Area,
    ) -> CoreResult<Authorized<P>> {
        if who.mfa_enrollment_only {
            return Err(CoreError::MfaEnrollmentRequired);
        }
        if who.can(P::PERMISSION, collection.as_ref()) {
            return Ok(Authorized { who, collection, area, _perm: PhantomData });
        }
        Err(self.refuse(&who, area, Refusal::Permission { permission: P::PERMISSION, collection }).await)
    }

    /// A further permission for the same caller and area (a collection-scoped grant for
    /// a named collection, or an extra permission an option needs).
    pub async fn authorize_also<P: PermissionMarker, Q: PermissionMarker>(
        &self,
        held: &Authorized<P>,
        collection: Option<CollectionName>,
    ) -> CoreResult<Authorized<Q>> {
        self.authorize::<Q>(held.who.clone(), collection, held.area).await
    }

    /// The local CLI acting as admin (see `local_admin`), through the same decision.
    pub async fn authorize_local<P: PermissionMarker>(&self) -> CoreResult<Authorized<P>> {
        self.authorize::<P>(self.local_admin()?, None, Area::Admin).await
    }

    /// Records a refused action and returns the error to answer with (fail closed, as
    /// `authorize`).
    pub(crate) async fn refuse(&self, who: &Principal, area: Area, refusal: Refusal) -> CoreError {
        let details = refusal.details(area);
        self.on_refusal(who, area, &refusal, &details);
        match self
            .record_event(EventType::PermissionDenied, Some(who.username.as_str()), &who.origin, false, details)
            .await
        {
            Ok(()) => CoreError::Forbidden(refusal.reason()),
            Err(e) => e,
        }
    }
}
