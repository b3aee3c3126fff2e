use rampart_store::{StoreError, UserChange, UserRecord};
use rampart_types::{Permission, RoleName, Timestamp, Username};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::{rbac, Core, CoreError, CoreResult, Principal};

/// A user as clients see it (SPEC section 3); never carries the hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub username: Username,
    pub role: RoleName,
    pub mfa_enabled: bool,
    pub disabled: bool,
    pub created_at: Timestamp,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            username: u.username.clone(),
            role: u.role.clone(),
            mfa_enabled: u.mfa_enabled,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

pub struct NewUser {
    pub username: String,
    pub password: SecretString,
    pub role: String,
}

fn parse_username(s: &str) -> CoreResult<Username> {
    Username::parse(s).map_err(|e| CoreError::validation("username", e.to_string()))
}

fn parse_role(s: &str) -> CoreResult<RoleName> {
    RoleName::parse(s).map_err(|e| CoreError::validation("role", e.to_string()))
}

fn user_error(e: StoreError) -> CoreError {
    match e {
        StoreError::NotFound => CoreError::NotFound("user"),
        StoreError::AlreadyExists => CoreError::AlreadyExists("user"),
        e => e.into(),
    }
}

impl Core {
    /// Resolves a role name for assignment by `actor`, refusing roles that grant more than
    /// the actor holds.
    fn assignable_role(&self, actor: &Principal, role: &RoleName) -> CoreResult<()> {
        let target = self.role(role).map_err(|_| CoreError::validation("role", "no such role"))?;
        if !rbac::covers(&actor.role, &target) {
            return Err(CoreError::Forbidden("cannot grant a role with permissions you do not hold"));
        }
        Ok(())
    }

    /// The actor may act on `target` only if it holds everything the target holds.
    fn may_manage(&self, actor: &Principal, target: &UserRecord) -> CoreResult<()> {
        let role = self.role(&target.role)?;
        if !rbac::covers(&actor.role, &role) {
            return Err(CoreError::Forbidden("cannot manage a user with permissions you do not hold"));
        }
        Ok(())
    }

    pub async fn create_user(&self, actor: &Principal, new: NewUser) -> CoreResult<UserView> {
        actor.require(Permission::UsersCreate, None)?;
        let username = parse_username(&new.username)?;
        let role = parse_role(&new.role)?;
        self.assignable_role(actor, &role)?;
        rampart_crypto::check_password_policy(new.password.expose_secret(), username.as_str())
            .map_err(CoreError::PasswordPolicy)?;
        if self.inner.store.get_user(&username).await?.is_some() {
            return Err(CoreError::AlreadyExists("user"));
        }
        let hash = self.inner.passwords.hash(new.password).await?;
        let now = self.now();
        let record = UserRecord {
            username,
            password_hash: hash.as_str().to_owned(),
            role,
            disabled: false,
            mfa_enabled: false,
            created_at: now,
            updated_at: now,
        };
        let view = UserView::from(&record);
        self.inner.store.create_user(record).await.map_err(user_error)?;
        Ok(view)
    }

    pub async fn get_user(&self, actor: &Principal, name: &str) -> CoreResult<UserView> {
        actor.require(Permission::UsersRead, None)?;
        let name = parse_username(name)?;
        let user = self.inner.store.get_user(&name).await?.ok_or(CoreError::NotFound("user"))?;
        Ok(UserView::from(&user))
    }

    pub async fn me(&self, who: &Principal) -> CoreResult<UserView> {
        let user = self.inner.store.get_user(&who.username).await?.ok_or(CoreError::Unauthenticated)?;
        Ok(UserView::from(&user))
    }

    /// Users by name; `after` is the last name of the previous page.
    pub async fn list_users(&self, actor: &Principal, after: Option<&str>, limit: usize) -> CoreResult<Vec<UserView>> {
        actor.require(Permission::UsersRead, None)?;
        let after = after.map(parse_username).transpose()?;
        let limit = limit.clamp(1, self.inner.settings.max_page_size);
        let users = self.inner.store.list_users(after.as_ref(), limit).await?;
        Ok(users.iter().map(UserView::from).collect())
    }

    /// Changes role and/or disabled state. Either change ends all the user's sessions.
    pub async fn update_user(
        &self,
        actor: &Principal,
        name: &str,
        role: Option<String>,
        disabled: Option<bool>,
    ) -> CoreResult<UserView> {
        actor.require(Permission::UsersUpdate, None)?;
        let name = parse_username(name)?;
        let target = self.inner.store.get_user(&name).await?.ok_or(CoreError::NotFound("user"))?;
        self.may_manage(actor, &target)?;
        let role = role.as_deref().map(parse_role).transpose()?;
        if let Some(r) = &role {
            if name == actor.username && *r != target.role {
                return Err(CoreError::Forbidden("you cannot change your own role"));
            }
            self.assignable_role(actor, r)?;
        }
        let change = UserChange { role, disabled, at: Some(self.now()), ..UserChange::default() };
        let updated = self.inner.store.update_user(&name, change).await.map_err(user_error)?;
        Ok(UserView::from(&updated))
    }

    pub async fn delete_user(&self, actor: &Principal, name: &str) -> CoreResult<()> {
        actor.require(Permission::UsersDelete, None)?;
        let name = parse_username(name)?;
        let target = self.inner.store.get_user(&name).await?.ok_or(CoreError::NotFound("user"))?;
        self.may_manage(actor, &target)?;
        self.inner.store.delete_user(&name).await.map_err(user_error)
    }
}
