use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rampart_config::Config;
use rampart_crypto::{random_password, AuditMacKey, BlindIndexKey, MasterKey, PurposeKey};
use rampart_store::{RoleRecord, Store, UserRecord};
use rampart_types::{RoleName, Username};
use secrecy::{ExposeSecret, SecretString};

use crate::audit::Chainer;
use crate::{rbac, Clock, CoreError, CoreResult, PasswordPool, Principal, RequestMeta};

const KEY_CHECK_META: &str = "master_key_check_value";
/// Custom roles are admin-made, but a bound keeps the in-memory role cache bounded too.
pub(crate) const MAX_ROLES: usize = 1000;
/// Live sessions resolved in memory (a few hundred bytes each); beyond it, one is dropped.
const SESSION_CACHE_CAPACITY: usize = 50_000;

/// Settings the core needs, taken from the validated config once at start.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub session_idle_secs: i64,
    pub session_lifetime_secs: i64,
    pub max_sessions_per_user: u32,
    pub max_page_size: usize,
    /// How stale `last_seen_at` may get before a request refreshes it (saves a write per request).
    pub touch_interval_secs: i64,
    pub login_delay_after_failures: u32,
    pub max_login_delay_secs: u32,
    pub max_tracked_accounts: usize,
    pub audit_reads: bool,
    pub key_rotation_days: u32,
    /// Pause between background re-encryption batches.
    pub reencrypt_pause: std::time::Duration,
    pub breach: rampart_config::BreachConfig,
    pub require_mfa_for_roles: Vec<String>,
    pub refresh_lifetime_secs: i64,
}

impl CoreSettings {
    pub fn from_config(c: &Config) -> Self {
        Self {
            session_idle_secs: i64::from(c.auth.session_timeout_minutes) * 60,
            session_lifetime_secs: i64::from(c.auth.session_lifetime_hours) * 3600,
            max_sessions_per_user: c.auth.max_sessions_per_user,
            max_page_size: c.limits.max_page_size,
            touch_interval_secs: 60,
            login_delay_after_failures: c.auth.login_delay_after_failures,
            max_login_delay_secs: c.auth.max_login_delay_secs,
            max_tracked_accounts: c.rate_limit.max_tracked_clients,
            audit_reads: c.audit.record_reads,
            key_rotation_days: c.keys.rotation_days,
            reencrypt_pause: std::time::Duration::from_millis(c.keys.reencrypt_pause_ms),
            breach: c.breach.clone(),
            require_mfa_for_roles: c.auth.require_mfa_for_roles.clone(),
            refresh_lifetime_secs: i64::from(c.auth.refresh_lifetime_hours) * 3600,
        }
    }
}

/// What the first start did: the admin it created and, if it made one up, the password
/// (for the caller to print once; it is never logged).
pub struct Bootstrap {
    pub admin_username: Username,
    pub generated_password: Option<SecretString>,
}

/// The application core; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Core {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub passwords: PasswordPool,
    pub blind_index: Arc<BlindIndexKey>,
    pub keys: crate::keyring::KeyRing,
    pub backup_key: Arc<PurposeKey>,
    pub settings: CoreSettings,
    pub roles: RwLock<HashMap<RoleName, Arc<RoleRecord>>>,
    pub audit_key: Arc<AuditMacKey>,
    pub throttle: Arc<crate::throttle::LoginThrottle>,
    pub device_key: Arc<rampart_crypto::DeviceKey>,
    pub erasure_hook: std::sync::OnceLock<crate::backup::ErasureHook>,
    pub detector: crate::security::Detector,
    pub jwt: crate::jwt::JwtKeys,
    pub audit_mirror: std::sync::OnceLock<Arc<dyn crate::audit_anchor::AuditMirror>>,
    pub sessions: crate::session_cache::SessionCache,
}

impl Core {
    /// Checks the master key against the data, seeds the built-in roles and, on an empty
    /// store, creates the first admin.
    pub async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master: Arc<MasterKey>,
        passwords: PasswordPool,
        settings: CoreSettings,
        admin: (Option<String>, Option<SecretString>),
    ) -> CoreResult<(Self, Option<Bootstrap>)> {
        // Read before writing anything, so a wrong key leaves the data untouched.
        let stored = match store.get_meta(KEY_CHECK_META).await? {
            Some(v) => v,
            None => store.init_meta(KEY_CHECK_META, master.check_value().to_vec()).await?,
        };
        master.verify_check_value(&stored).map_err(|_| CoreError::WrongMasterKey)?;
        let (keys, root) = crate::keyring::KeyRing::open(master, Arc::clone(&store), clock.now()).await?;
        let audit_key = root.audit;
        store.set_audit_chainer(Arc::new(Chainer(Arc::clone(&audit_key))));
        let detector = crate::security::Detector::new(settings.breach.clone());
        let sessions = crate::session_cache::SessionCache::new(store.invalidation(), SESSION_CACHE_CAPACITY);
        let core = Self {
            inner: Arc::new(Inner {
                store,
                clock,
                passwords,
                blind_index: root.blind,
                keys,
                backup_key: root.backup,
                roles: RwLock::new(HashMap::new()),
                audit_key,
                throttle: crate::throttle::LoginThrottle::new(
                    settings.login_delay_after_failures,
                    settings.max_login_delay_secs,
                    settings.max_tracked_accounts,
                ),
                device_key: root.device,
                settings,
                erasure_hook: std::sync::OnceLock::new(),
                detector,
                jwt: crate::jwt::JwtKeys::default(),
                audit_mirror: std::sync::OnceLock::new(),
                sessions,
            }),
        };
        let now = core.now();
        for role in rbac::builtin_roles(now) {
            core.inner.store.upsert_builtin_role(role).await?;
        }
        core.reload_roles().await?;
        core.refresh_blocks().await?;
        core.load_jwt_key().await?;
        core.check_audit_anchor().await?;
        let bootstrap = core.bootstrap_admin(admin).await?;
        if core.inner.store.reencrypt_cursor().await?.is_some() {
            // A re-encryption was interrupted (crash or restart): resume it.
            let resumed = core.clone();
            tokio::spawn(async move { resumed.run_reencrypt(std::time::Duration::ZERO).await });
        }
        Ok((core, bootstrap))
    }

    async fn bootstrap_admin(
        &self,
        (name, password): (Option<String>, Option<SecretString>),
    ) -> CoreResult<Option<Bootstrap>> {
        if self.inner.store.count_users().await? > 0 {
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
        let hash = self.inner.passwords.hash(password.clone()).await?;
        let now = self.now();
        let event = self.event(
            crate::audit::EventType::UserCreate,
            Some(username.as_str()),
            &RequestMeta::local("bootstrap"),
            true,
            serde_json::json!({ "username": username.as_str(), "role": rbac::ADMIN_ROLE, "first_admin": true }),
        );
        self.inner
            .store
            .create_user(
                UserRecord {
                    username: username.clone(),
                    password_hash: hash.as_str().to_owned(),
                    role: RoleName::parse(rbac::ADMIN_ROLE).map_err(CoreError::internal)?,
                    disabled: false,
                    mfa_enabled: false,
                    created_at: now,
                    updated_at: now,
                },
                vec![event],
            )
            .await?;
        Ok(Some(Bootstrap { admin_username: username, generated_password: generated.then_some(password) }))
    }

    pub(crate) fn now(&self) -> rampart_types::Timestamp {
        self.inner.clock.now()
    }

    pub(crate) async fn reload_roles(&self) -> CoreResult<()> {
        let roles = self.inner.store.list_roles().await?;
        let map = roles.into_iter().map(|r| (r.name.clone(), Arc::new(r))).collect();
        if let Ok(mut guard) = self.inner.roles.write() {
            *guard = map;
        }
        Ok(())
    }

    pub(crate) fn role(&self, name: &RoleName) -> CoreResult<Arc<RoleRecord>> {
        self.inner.roles.read().ok().and_then(|m| m.get(name).cloned()).ok_or(CoreError::NotFound("role"))
    }

    /// The principal the local CLI acts as: the admin role, no session.
    pub(crate) fn local_admin(&self) -> CoreResult<Principal> {
        let role = self.role(&RoleName::parse(rbac::ADMIN_ROLE).map_err(CoreError::internal)?)?;
        Ok(Principal {
            username: Username::parse("local-cli").map_err(CoreError::internal)?,
            role,
            session_id: None,
            origin: RequestMeta::local("cli"),
            mfa_enrollment_only: false,
            assurance: rampart_store::Assurance::MultiFactor,
        })
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.inner.settings
    }

    /// The key backups are encrypted with (derived from the root key).
    pub fn backup_key(&self) -> Arc<PurposeKey> {
        Arc::clone(&self.inner.backup_key)
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.inner.clock)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }
}
