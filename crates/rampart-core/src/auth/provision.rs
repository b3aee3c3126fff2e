//! Accounts an external provider (a directory) vouches for: made on the first login, their
//! role kept to what the provider maps them to at each login. A role change goes through
//! the store's `update_user`, which ends the user's other sessions in the same transaction,
//! as every role change does.

use rampart_store::{StoreError, UserChange, UserRecord};
use serde_json::json;

use super::Sessions;
use crate::audit::EventType;
use crate::identity::{ExternalIdentity, NO_LOCAL_PASSWORD};
use crate::{CoreResult, RequestMeta};

impl Sessions {
    /// The local account of `ext`, made or brought up to date; `Err(reason)` when it must
    /// not log in (an account of another source is never taken over).
    pub(super) async fn provision(
        &self,
        ext: &ExternalIdentity,
        meta: &RequestMeta,
    ) -> CoreResult<Result<UserRecord, &'static str>> {
        if self.roles.role(&ext.role).is_err() {
            return Ok(Err("mapped_role_missing"));
        }
        let by = Some(ext.username.as_str());
        let user = match self.user_store.get_user(&ext.username).await? {
            Some(u) => u,
            None => {
                let now = self.now();
                let record = UserRecord {
                    username: ext.username.clone(),
                    password_hash: NO_LOCAL_PASSWORD.to_owned(),
                    role: ext.role.clone(),
                    disabled: false,
                    mfa_enabled: false,
                    auth_source: ext.source,
                    created_at: now,
                    updated_at: now,
                };
                let details = json!({
                    "target": ext.username.as_str(), "role": ext.role.as_str(), "provisioned_by": ext.source.as_str(),
                });
                let event = self.events.event(EventType::UserCreate, by, meta, true, details);
                match self.user_store.create_user(record.clone(), vec![event]).await {
                    Ok(()) => return Ok(Ok(record)),
                    // Made meanwhile (a concurrent first login, or an admin): judge that one.
                    Err(StoreError::AlreadyExists) => match self.user_store.get_user(&ext.username).await? {
                        Some(u) => u,
                        None => return Ok(Err("account_changed_during_login")),
                    },
                    Err(StoreError::NotFound) => return Ok(Err("mapped_role_missing")),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if user.auth_source != ext.source {
            return Ok(Err("not_an_account_of_this_provider"));
        }
        if user.disabled {
            return Ok(Err("account_disabled"));
        }
        if user.role == ext.role {
            return Ok(Ok(user));
        }
        let details = json!({
            "target": ext.username.as_str(), "from": user.role.as_str(), "to": ext.role.as_str(),
            "changed_by": ext.source.as_str(),
        });
        let event = self.events.event(EventType::RoleChange, by, meta, true, details);
        let change = UserChange { role: Some(ext.role.clone()), at: Some(self.now()), ..UserChange::default() };
        match self.user_store.update_user(&ext.username, change, vec![event]).await {
            Ok(updated) => Ok(Ok(updated)),
            // The directory demoted the last enabled admin: refused rather than kept an admin.
            Err(StoreError::LastAdmin) => Ok(Err("last_admin_kept")),
            Err(StoreError::NotFound) => Ok(Err("account_changed_during_login")),
            Err(e) => Err(e.into()),
        }
    }
}
