use rampart_crypto::{random_password, HashScheme, StoredPasswordHash};
use rampart_store::{StoreError, UserChange, UserRecord, UserStore};
use rampart_types::{RoleName, Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

use crate::audit::EventType;
use std::sync::Arc;

use crate::access::Access;
use crate::events::Events;
use crate::roles::Roles;
use crate::{rbac, Area, Authorized, CoreError, CoreResult, Escalation, PasswordPool, Principal, Refusal, RequestMeta};
use rampart_types::perm;

/// A user as clients see it (SPEC section 3); never carries the hash.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct UserView {
    pub username: Username,
    pub role: RoleName,
    pub mfa_enabled: bool,
    pub disabled: bool,
    /// `local`, `ldap` or `oidc`: who checks this account's logins.
    pub auth_source: rampart_types::AuthSource,
    pub created_at: Timestamp,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            username: u.username.clone(),
            role: u.role.clone(),
            mfa_enabled: u.mfa_enabled,
            disabled: u.disabled,
            auth_source: u.auth_source,
            created_at: u.created_at,
        }
    }
}

/// What the first start did: the admin it created and, if it made one up, the password
/// (for the caller to print once; it is never logged).
pub struct Bootstrap {
    pub admin_username: Username,
    pub generated_password: Option<SecretString>,
}

pub struct NewUser {
    pub username: String,
    pub password: SecretString,
    pub role: String,
}

/// A user carried over from another system with the password hash it kept there
/// (`rampart user import`): Argon2, bcrypt or PBKDF2-SHA256, checked at the next login and
/// replaced there by an Argon2id hash with the current parameters.
pub struct ImportedUser {
    pub username: String,
    pub role: String,
    pub password_hash: String,
    pub disabled: bool,
}

/// A user as `rampart user export` writes it: the hash only when asked for.
pub struct ExportedUser {
    pub view: UserView,
    pub password_hash: Option<StoredPasswordHash>,
}

fn parse_username(s: &str) -> CoreResult<Username> {
    Username::parse(s).map_err(|e| CoreError::validation("username", e.to_string()))
}

fn parse_role(s: &str) -> CoreResult<RoleName> {
    RoleName::parse(s).map_err(|e| CoreError::validation("role", e.to_string()))
}

/// User accounts: creation, listing, changes by administrators, and each user's own
/// password. Holds the user store only.
#[derive(Clone)]
pub struct Users {
    user_store: Arc<dyn UserStore>,
    passwords: PasswordPool,
    roles: Roles,
    events: Events,
    access: Access,
    max_page_size: usize,
}

impl Users {
    pub(crate) fn new(
        user_store: Arc<dyn UserStore>,
        passwords: PasswordPool,
        roles: Roles,
        events: Events,
        access: Access,
        max_page_size: usize,
    ) -> Self {
        Self { user_store, passwords, roles, events, access, max_page_size }
    }

    fn now(&self) -> Timestamp {
        self.events.now()
    }

    /// Refuses (and records) handing out a role that grants more than the actor holds.
    async fn check_assignable(&self, actor: &Principal, area: Area, role: &RoleName) -> CoreResult<()> {
        let target = self.roles.role(role).map_err(|_| CoreError::validation("role", "no such role"))?;
        if !rbac::covers(&actor.role, &target) {
            let refusal = Refusal::Escalation { attempt: Escalation::AssignRole, role: role.clone() };
            return Err(self.access.refuse(actor, area, refusal).await);
        }
        Ok(())
    }

    /// The actor may act on `target` only if it holds everything the target holds.
    async fn check_manageable(&self, actor: &Principal, area: Area, target: &UserRecord) -> CoreResult<()> {
        let role = self.roles.role(&target.role)?;
        if !rbac::covers(&actor.role, &role) {
            let refusal = Refusal::Outranked { action: "manage_user", target: target.username.clone() };
            return Err(self.access.refuse(actor, area, refusal).await);
        }
        Ok(())
    }

    pub async fn create_user(&self, access: &Authorized<perm::UsersCreate>, new: NewUser) -> CoreResult<UserView> {
        let actor = access.who();
        let username = parse_username(&new.username)?;
        let role = parse_role(&new.role)?;
        self.check_assignable(actor, access.area(), &role).await?;
        rampart_crypto::check_password_policy(new.password.expose_secret(), username.as_str())
            .map_err(CoreError::PasswordPolicy)?;
        if self.user_store.get_user(&username).await?.is_some() {
            return Err(CoreError::AlreadyExists("user"));
        }
        let hash = self.passwords.hash(new.password).await?;
        let now = self.now();
        let record = UserRecord {
            username,
            password_hash: hash.as_str().to_owned(),
            role,
            disabled: false,
            mfa_enabled: false,
            auth_source: rampart_types::AuthSource::Local,
            created_at: now,
            updated_at: now,
        };
        let view = UserView::from(&record);
        let details = json!({ "target": record.username.as_str(), "role": record.role.as_str() });
        let event =
            self.events.event(EventType::UserCreate, Some(actor.username.as_str()), &actor.origin, true, details);
        self.user_store.create_user(record, vec![event]).await.map_err(CoreError::about("user"))?;
        Ok(view)
    }

    /// Creates a user with a hash written elsewhere. The hash's format and cost are checked
    /// here (a runaway cost would let one login attempt hold a hashing thread for hours);
    /// the password policy cannot be, as the password is unknown until the user logs in.
    pub async fn import_user(
        &self,
        access: &Authorized<perm::UsersCreate>,
        imported: ImportedUser,
    ) -> CoreResult<(UserView, HashScheme)> {
        let actor = access.who();
        let username = parse_username(&imported.username)?;
        let role = parse_role(&imported.role)?;
        self.check_assignable(actor, access.area(), &role).await?;
        let scheme = rampart_crypto::classify_imported_hash(&imported.password_hash)
            .map_err(|e| CoreError::validation("password_hash", e.to_string()))?;
        if self.user_store.get_user(&username).await?.is_some() {
            return Err(CoreError::AlreadyExists("user"));
        }
        let now = self.now();
        let record = UserRecord {
            username,
            password_hash: imported.password_hash,
            role,
            disabled: imported.disabled,
            mfa_enabled: false,
            created_at: now,
            updated_at: now,
            auth_source: rampart_types::AuthSource::Local,
        };
        let view = UserView::from(&record);
        let details = json!({
            "target": record.username.as_str(), "role": record.role.as_str(),
            "source": "import", "hash_scheme": scheme.as_str(), "disabled": record.disabled,
        });
        let event =
            self.events.event(EventType::UserCreate, Some(actor.username.as_str()), &actor.origin, true, details);
        self.user_store.create_user(record, vec![event]).await.map_err(CoreError::about("user"))?;
        Ok((view, scheme))
    }

    /// One page of users for `rampart user export`, by name after `after`.
    pub async fn export_page(
        &self,
        _: &Authorized<perm::UsersRead>,
        after: Option<&str>,
        limit: usize,
        include_hashes: bool,
    ) -> CoreResult<Vec<ExportedUser>> {
        Ok(self
            .page(after, limit)
            .await?
            .into_iter()
            .map(|u| ExportedUser {
                view: UserView::from(&u),
                password_hash: include_hashes.then(|| StoredPasswordHash::from_stored(u.password_hash)),
            })
            .collect())
    }

    /// Users by name after `after`, at most a page.
    async fn page(&self, after: Option<&str>, limit: usize) -> CoreResult<Vec<UserRecord>> {
        let after = after.map(parse_username).transpose()?;
        Ok(self.user_store.list_users(after.as_ref(), limit.clamp(1, self.max_page_size)).await?)
    }

    /// Records a finished export: how many users, and whether their hashes left the server.
    pub async fn record_export(
        &self,
        access: &Authorized<perm::UsersRead>,
        count: u64,
        include_hashes: bool,
    ) -> CoreResult<()> {
        let actor = access.who();
        let details = json!({ "count": count, "include_hashes": include_hashes });
        self.events
            .record_event(EventType::UserExport, Some(actor.username.as_str()), &actor.origin, true, details)
            .await
    }

    pub async fn get_user(&self, _: &Authorized<perm::UsersRead>, name: &str) -> CoreResult<UserView> {
        let name = parse_username(name)?;
        let user = self.user_store.get_user(&name).await?.ok_or(CoreError::NotFound("user"))?;
        Ok(UserView::from(&user))
    }

    pub async fn me(&self, who: &Principal) -> CoreResult<UserView> {
        let user = self.user_store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        Ok(UserView::from(&user))
    }

    /// Users by name; `after` is the last name of the previous page.
    pub async fn list_users(
        &self,
        _: &Authorized<perm::UsersRead>,
        after: Option<&str>,
        limit: usize,
    ) -> CoreResult<Vec<UserView>> {
        Ok(self.page(after, limit).await?.iter().map(UserView::from).collect())
    }

    /// Changes role and/or disabled state. Either change ends all the user's sessions.
    pub async fn update_user(
        &self,
        access: &Authorized<perm::UsersUpdate>,
        name: &str,
        role: Option<String>,
        disabled: Option<bool>,
    ) -> CoreResult<UserView> {
        let actor = access.who();
        let name = parse_username(name)?;
        let target = self.user_store.get_user(&name).await?.ok_or(CoreError::NotFound("user"))?;
        self.check_manageable(actor, access.area(), &target).await?;
        let role = role.as_deref().map(parse_role).transpose()?;
        if let Some(r) = &role {
            if name == actor.username && *r != target.role {
                let refusal = Refusal::Escalation { attempt: Escalation::ChangeOwnRole, role: r.clone() };
                return Err(self.access.refuse(actor, access.area(), refusal).await);
            }
            self.check_assignable(actor, access.area(), r).await?;
        }
        let by = Some(actor.username.as_str());
        let mut audit = Vec::new();
        let mut ends_sessions = false;
        if let Some(r) = role.as_ref().filter(|r| **r != target.role) {
            let details = json!({ "target": name.as_str(), "from": target.role.as_str(), "to": r.as_str() });
            audit.push(self.events.event(EventType::RoleChange, by, &actor.origin, true, details));
            ends_sessions = true;
        }
        match disabled {
            Some(true) if !target.disabled => {
                audit.push(self.events.event(
                    EventType::UserDisable,
                    by,
                    &actor.origin,
                    true,
                    json!({ "target": name.as_str() }),
                ));
                ends_sessions = true;
            }
            Some(false) if target.disabled => {
                audit.push(self.events.event(
                    EventType::UserEnable,
                    by,
                    &actor.origin,
                    true,
                    json!({ "target": name.as_str() }),
                ));
            }
            _ => {}
        }
        if ends_sessions {
            let details = json!({ "target": name.as_str(), "reason": "privileges_changed" });
            audit.push(self.events.event(EventType::SessionRevoke, by, &actor.origin, true, details));
        }
        let change = UserChange { role, disabled, at: Some(self.now()), ..UserChange::default() };
        let updated = self.user_store.update_user(&name, change, audit).await.map_err(CoreError::about("user"))?;
        Ok(UserView::from(&updated))
    }

    pub async fn delete_user(&self, access: &Authorized<perm::UsersDelete>, name: &str) -> CoreResult<()> {
        let actor = access.who();
        let name = parse_username(name)?;
        let target = self.user_store.get_user(&name).await?.ok_or(CoreError::NotFound("user"))?;
        self.check_manageable(actor, access.area(), &target).await?;
        let by = Some(actor.username.as_str());
        let audit = vec![
            self.events.event(EventType::UserDelete, by, &actor.origin, true, json!({ "target": name.as_str() })),
            self.events.event(
                EventType::SessionRevoke,
                by,
                &actor.origin,
                true,
                json!({ "target": name.as_str(), "reason": "user_deleted" }),
            ),
        ];
        self.user_store.delete_user(&name, audit).await.map_err(CoreError::about("user"))
    }

    pub(crate) async fn bootstrap_admin(
        &self,
        (name, password): (Option<String>, Option<SecretString>),
    ) -> CoreResult<Option<Bootstrap>> {
        if self.user_store.count_users().await? > 0 {
            return Ok(None);
        }
        let username = Username::parse(name.as_deref().unwrap_or("admin"))
            .map_err(|e| CoreError::validation("RAMPART_ADMIN_USERNAME", e.to_string()))?;
        let (password, generated) = match password {
            Some(p) => (p, false),
            None => (SecretString::from(random_password(24)), true),
        };
        rampart_crypto::check_password_policy(password.expose_secret(), username.as_str())
            .map_err(CoreError::PasswordPolicy)?;
        let hash = self.passwords.hash(password.clone()).await?;
        let now = self.now();
        let event = self.events.event(
            crate::audit::EventType::UserCreate,
            Some(username.as_str()),
            &RequestMeta::local("bootstrap"),
            true,
            serde_json::json!({ "username": username.as_str(), "role": rbac::ADMIN_ROLE, "first_admin": true }),
        );
        self.user_store
            .create_user(
                UserRecord {
                    username: username.clone(),
                    password_hash: hash.as_str().to_owned(),
                    role: RoleName::parse(rbac::ADMIN_ROLE).map_err(CoreError::internal)?,
                    disabled: false,
                    mfa_enabled: false,
                    auth_source: rampart_types::AuthSource::Local,
                    created_at: now,
                    updated_at: now,
                },
                vec![event],
            )
            .await?;
        Ok(Some(Bootstrap { admin_username: username, generated_password: generated.then_some(password) }))
    }

    /// Needs the current password; ends every other session of the user.
    /// `rotate-secrets`: moves `username` from the bootstrap password `old` to `new`, only
    /// while `old` still opens the account (an admin who chose a password keeps it), and
    /// ends the account's sessions. Returns whether the password changed.
    pub async fn rotate_bootstrap_password(
        &self,
        access: &Authorized<perm::UsersUpdate>,
        username: &str,
        old: SecretString,
        new: SecretString,
    ) -> CoreResult<bool> {
        let Ok(name) = Username::parse(username) else { return Ok(false) };
        let Some(user) = self.user_store.get_user(&name).await? else { return Ok(false) };
        let stored = StoredPasswordHash::from_stored(user.password_hash.clone());
        if !self.passwords.verify(old, Some(stored)).await?.matches {
            return Ok(false);
        }
        let hash = self.passwords.hash(new).await?;
        let change = UserChange {
            password_hash: Some(hash.as_str().to_owned()),
            end_sessions: true,
            at: Some(self.now()),
            ..UserChange::default()
        };
        let who = access.who();
        let actor = who.username.to_string();
        let details = json!({ "target": username, "reason": "rotate_secrets" });
        let audit = vec![self.events.event(EventType::PasswordChange, Some(&actor), &who.origin, true, details)];
        self.user_store.update_user(&name, change, audit).await?;
        Ok(true)
    }

    pub async fn change_password(&self, who: &Principal, current: SecretString, new: SecretString) -> CoreResult<()> {
        let user = self.user_store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        let name = Some(who.username.as_str());
        let stored = StoredPasswordHash::from_stored(user.password_hash.clone());
        if !self.passwords.verify(current, Some(stored)).await?.matches {
            let details = json!({ "reason": "wrong_current_password" });
            self.events.record_event(EventType::PasswordChange, name, &who.origin, false, details).await?;
            return Err(CoreError::Forbidden("current password is incorrect"));
        }
        if let Err(v) = rampart_crypto::check_password_policy(new.expose_secret(), user.username.as_str()) {
            let details = json!({ "reason": "password_policy", "rule": v.rule });
            self.events.record_event(EventType::PasswordChange, name, &who.origin, false, details).await?;
            return Err(CoreError::PasswordPolicy(v));
        }
        let hash = self.passwords.hash(new).await?;
        let change = UserChange {
            password_hash: Some(hash.as_str().to_owned()),
            end_sessions: true,
            keep_session: who.session_id.clone(),
            at: Some(self.now()),
            ..UserChange::default()
        };
        let audit = vec![
            self.events.event(EventType::PasswordChange, name, &who.origin, true, json!({})),
            self.events.event(
                EventType::SessionRevoke,
                name,
                &who.origin,
                true,
                json!({ "target": who.username.as_str(), "reason": "password_change", "kept_session": who.session_id }),
            ),
        ];
        self.user_store.update_user(&user.username, change, audit).await.map_err(|e| match e {
            StoreError::NotFound => CoreError::Unauthenticated,
            e => e.into(),
        })?;
        Ok(())
    }
}
