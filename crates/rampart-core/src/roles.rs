use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rampart_store::{RoleRecord, RoleStore};
use rampart_types::{CollectionName, Permission, RoleName};

use serde_json::json;

use crate::access::Access;
use crate::audit::EventType;
use crate::events::Events;
use crate::{rbac, Authorized, CoreError, CoreResult, Escalation, Principal, Refusal};
use rampart_types::perm;

/// A custom role as a client describes it.
pub struct RoleSpec {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    /// Limits collection-scoped permissions to these collections.
    pub collections: Option<Vec<String>>,
}

const MAX_DESCRIPTION: usize = 512;

/// Custom roles are admin-made, but a bound keeps the in-memory role cache bounded too.
const MAX_ROLES: usize = 1000;

/// Roles: the built-in seven and custom ones, held in memory for every request's
/// authorization (reloaded after each change; role changes also end holders' sessions,
/// so no cached principal outlives one).
#[derive(Clone)]
pub struct Roles {
    role_store: Arc<dyn RoleStore>,
    cache: Arc<RwLock<HashMap<RoleName, Arc<RoleRecord>>>>,
    events: Events,
    access: Access,
}

impl Roles {
    /// Seeds the built-in roles and loads every role.
    pub(crate) async fn open(role_store: Arc<dyn RoleStore>, events: Events, access: Access) -> CoreResult<Self> {
        for role in rbac::builtin_roles(events.now()) {
            role_store.upsert_builtin_role(role).await?;
        }
        let roles = Self { role_store, cache: Arc::default(), events, access };
        roles.reload_roles().await?;
        Ok(roles)
    }

    fn now(&self) -> rampart_types::Timestamp {
        self.events.now()
    }

    pub(crate) async fn reload_roles(&self) -> CoreResult<()> {
        let roles = self.role_store.list_roles().await?;
        let map = roles.into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        if let Ok(mut guard) = self.cache.write() {
            *guard = map;
        }
        Ok(())
    }

    pub(crate) fn role(&self, name: &RoleName) -> CoreResult<Arc<RoleRecord>> {
        self.cache.read().ok().and_then(|m| m.get(name).cloned()).ok_or(CoreError::NotFound("role"))
    }

    fn parse_role_spec(&self, spec: RoleSpec, name: RoleName) -> CoreResult<RoleRecord> {
        let mut permissions = Vec::with_capacity(spec.permissions.len());
        for (i, p) in spec.permissions.iter().enumerate() {
            let p =
                Permission::parse(p).map_err(|e| CoreError::validation(format!("permissions[{i}]"), e.to_string()))?;
            if !permissions.contains(&p) {
                permissions.push(p);
            }
        }
        let collections = spec
            .collections
            .map(|cs| {
                cs.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        CollectionName::parse(c)
                            .map_err(|e| CoreError::validation(format!("collections[{i}]"), e.to_string()))
                    })
                    .collect::<CoreResult<Vec<_>>>()
            })
            .transpose()?;
        let description = spec.description.unwrap_or_default();
        if description.len() > MAX_DESCRIPTION {
            return Err(CoreError::validation("description", "must be at most 512 bytes"));
        }
        Ok(RoleRecord { name, description, permissions, collections, builtin: false, created_at: self.now() })
    }

    fn role_event(&self, actor: &Principal, action: &str, role: &RoleRecord) -> rampart_store::AuditEvent {
        let details = json!({
            "object": "role",
            "action": action,
            "name": role.name.as_str(),
            "permissions": role.permissions,
            "collections": role.collections,
        });
        self.events.event(EventType::ConfigChange, Some(actor.username.as_str()), &actor.origin, true, details)
    }

    pub async fn list_roles(&self, _: &Authorized<perm::RolesRead>) -> CoreResult<Vec<RoleRecord>> {
        Ok(self.role_store.list_roles().await?)
    }

    pub async fn get_role(&self, _: &Authorized<perm::RolesRead>, name: &str) -> CoreResult<RoleRecord> {
        let name = RoleName::parse(name).map_err(|e| CoreError::validation("name", e.to_string()))?;
        self.role_store.get_role(&name).await?.ok_or(CoreError::NotFound("role"))
    }

    pub async fn create_role(&self, access: &Authorized<perm::RolesManage>, spec: RoleSpec) -> CoreResult<RoleRecord> {
        let actor = access.who();
        let name = RoleName::parse(&spec.name).map_err(|e| CoreError::validation("name", e.to_string()))?;
        let role = self.parse_role_spec(spec, name)?;
        if !rbac::covers(&actor.role, &role) {
            let refusal = Refusal::Escalation { attempt: Escalation::CreateRole, role: role.name.clone() };
            return Err(self.access.refuse(actor, access.area(), refusal).await);
        }
        let event = self.role_event(actor, "create", &role);
        self.role_store.create_role(role.clone(), MAX_ROLES, vec![event]).await.map_err(CoreError::about("role"))?;
        self.reload_roles().await?;
        Ok(role)
    }

    /// Replaces a custom role's definition; its holders' sessions end.
    pub async fn update_role(
        &self,
        access: &Authorized<perm::RolesManage>,
        name: &str,
        spec: RoleSpec,
    ) -> CoreResult<RoleRecord> {
        let actor = access.who();
        let name = RoleName::parse(name).map_err(|e| CoreError::validation("name", e.to_string()))?;
        let existing = self.role_store.get_role(&name).await?.ok_or(CoreError::NotFound("role"))?;
        if existing.builtin {
            return Err(CoreError::Conflict("built-in roles cannot be changed"));
        }
        if actor.role.name == name {
            let refusal = Refusal::Escalation { attempt: Escalation::UpdateOwnRole, role: name.clone() };
            return Err(self.access.refuse(actor, access.area(), refusal).await);
        }
        let role = RoleRecord { created_at: existing.created_at, ..self.parse_role_spec(spec, name)? };
        if !rbac::covers(&actor.role, &role) || !rbac::covers(&actor.role, &existing) {
            let refusal = Refusal::Escalation { attempt: Escalation::UpdateRole, role: role.name.clone() };
            return Err(self.access.refuse(actor, access.area(), refusal).await);
        }
        let mut audit = vec![self.role_event(actor, "update", &role)];
        let details = json!({ "role": role.name.as_str(), "reason": "role_redefined" });
        audit.push(self.events.event(
            EventType::SessionRevoke,
            Some(actor.username.as_str()),
            &actor.origin,
            true,
            details,
        ));
        self.role_store.update_role(role.clone(), audit).await.map_err(CoreError::about("role"))?;
        self.reload_roles().await?;
        Ok(role)
    }

    pub async fn delete_role(&self, access: &Authorized<perm::RolesManage>, name: &str) -> CoreResult<()> {
        let actor = access.who();
        let name = RoleName::parse(name).map_err(|e| CoreError::validation("name", e.to_string()))?;
        let existing = self.role_store.get_role(&name).await?.ok_or(CoreError::NotFound("role"))?;
        // As for creating and changing roles: only roles whose permissions you hold.
        if !rbac::covers(&actor.role, &existing) {
            let refusal = Refusal::Escalation { attempt: Escalation::DeleteRole, role: name.clone() };
            return Err(self.access.refuse(actor, access.area(), refusal).await);
        }
        let details = json!({ "object": "role", "action": "delete", "name": name.as_str() });
        let event =
            self.events.event(EventType::ConfigChange, Some(actor.username.as_str()), &actor.origin, true, details);
        self.role_store.delete_role(&name, vec![event]).await.map_err(CoreError::about("role"))?;
        self.reload_roles().await
    }
}
