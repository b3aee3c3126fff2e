use std::sync::Arc;

use rampart_config::Config;
use rampart_crypto::{MasterKey, PurposeKey};
use rampart_store::Store;
use rampart_types::{AuthSource, PermissionMarker, RoleName, Username};
use secrecy::SecretString;
use serde_json::json;

use crate::access::Access;
use crate::audit::{Chainer, EventType};
use crate::audit_anchor::AuditLog;
use crate::auth::{Identities, PasswordLogin, SessionParts, SessionPolicy, Sessions};
use crate::compliance::{Compliance, ComplianceParts, Enforced};
use crate::data::{DocumentParts, Documents};
use crate::events::Events;
use crate::identity::{IdentityProvider, LocalIdentity};
use crate::jwt::Tokens;
use crate::keyring::KeyRing;
use crate::mfa::{Mfa, MfaParts};
use crate::notify::Notifier;
use crate::oidc::{FlowMode, OidcLogins, OidcProvider, RoleMapping};
use crate::privacy::{Privacy, PrivacyParts};
use crate::retention::Retention;
use crate::roles::Roles;
use crate::rotation::Keys;
use crate::security::BreachDetection;
use crate::telemetry::Telemetry;
use crate::throttle::ThrottleBackend;
use crate::users::{Bootstrap, Users};
use crate::{rbac, Area, Authorized, Clock, CoreError, CoreResult, LoginOutcome, PasswordPool, Principal, RequestMeta};

const KEY_CHECK_META: &str = "master_key_check_value";
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
    /// How long a data-subject verification token stays usable.
    pub verification_token_minutes: u32,
    /// Configuration facts the compliance status reports (TLS, rate limits, backup policy).
    pub compliance: crate::compliance::ComplianceSettings,
    pub retention: rampart_config::RetentionConfig,
    /// Who checks a login by a name no account has yet (`[auth] method`; `oauth2` has no
    /// password login, so such a name is refused).
    pub default_auth_source: AuthSource,
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
            verification_token_minutes: c.privacy.verification_token_minutes,
            compliance: crate::compliance::ComplianceSettings::from_config(c),
            retention: c.retention.clone(),
            default_auth_source: match c.auth.method {
                rampart_config::AuthMethod::Local => AuthSource::Local,
                rampart_config::AuthMethod::Ldap => AuthSource::Ldap,
                rampart_config::AuthMethod::OAuth2 => AuthSource::Oidc,
            },
        }
    }
}

/// The adapters a deployment chooses for the core (see the binary's `App::open`).
pub struct CorePorts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub master: Arc<MasterKey>,
    pub passwords: PasswordPool,
    pub notifier: Arc<dyn Notifier>,
    /// `None`: local accounts (Argon2id hashes in the user store).
    pub identity: Option<Arc<dyn IdentityProvider>>,
    /// The directory (`rampart-ldap`), when `[auth.ldap]` is configured: checks accounts
    /// whose `auth_source` is `ldap`, and unknown names when `[auth] method = "ldap"`.
    pub ldap: Option<Arc<dyn IdentityProvider>>,
    /// Where the login delay is kept: memory for one node, the store for several.
    pub login_delay: ThrottleBackend,
    /// OpenID Connect login, when `[auth.oidc]` is configured: the provider adapter and
    /// how its claims map to roles.
    pub oidc: Option<(Arc<dyn OidcProvider>, RoleMapping)>,
}

/// The application core: one service per concern, each holding only the store traits and
/// ports it needs, and this thin facade that opens them and runs the flows that cross
/// services (login with a second factor, the CLI acting as admin). Cheap to clone.
#[derive(Clone)]
pub struct Core {
    inner: Arc<Services>,
}

struct Services {
    events: Events,
    detection: BreachDetection,
    access: Access,
    roles: Roles,
    users: Users,
    sessions: Sessions,
    mfa: Mfa,
    oidc: Option<OidcLogins>,
    tokens: Tokens,
    documents: Documents,
    keys: Keys,
    privacy: Privacy,
    retention: Retention,
    audit: AuditLog,
    compliance: Compliance,
    telemetry: Telemetry,
    backup_key: Arc<PurposeKey>,
    rate_limit_key: Arc<PurposeKey>,
    settings: CoreSettings,
}

impl Core {
    /// Checks the master key against the data, seeds the built-in roles and, on an empty
    /// store, creates the first admin.
    pub async fn open(
        ports: CorePorts,
        settings: CoreSettings,
        admin: (Option<String>, Option<SecretString>),
    ) -> CoreResult<(Self, Option<Bootstrap>)> {
        let CorePorts { store, clock, master, passwords, notifier, identity, ldap, login_delay, oidc } = ports;
        // Read before writing anything, so a wrong key leaves the data untouched.
        let stored = match store.get_meta(KEY_CHECK_META).await? {
            Some(v) => v,
            None => store.init_meta(KEY_CHECK_META, master.check_value().to_vec()).await?,
        };
        master.verify_check_value(&stored).map_err(|_| CoreError::WrongMasterKey)?;
        let (keys, root) = KeyRing::open(master, store.clone(), store.invalidation(), clock.now()).await?;
        let keys = Arc::new(keys);
        store.set_audit_chainer(Arc::new(Chainer(Arc::clone(&root.audit))));
        let events = Events::new(store.clone(), clock);
        let detection = BreachDetection::new(
            settings.breach.clone(),
            store.clone(),
            store.clone(),
            Arc::clone(&notifier),
            events.clone(),
        );
        detection.refresh_blocks().await?;
        let access = Access::new(events.clone(), Arc::new(detection.clone()));
        let roles = Roles::open(store.clone(), events.clone(), access.clone()).await?;
        let identity = Identities {
            local: identity.unwrap_or_else(|| Arc::new(LocalIdentity::new(store.clone(), passwords.clone()))),
            ldap,
            default_source: settings.default_auth_source,
        };
        let session_parts = SessionParts {
            store: store.clone(),
            identity,
            throttle: crate::throttle::open(
                login_delay,
                rampart_store::DelayPolicy::new(settings.login_delay_after_failures, settings.max_login_delay_secs),
                settings.max_tracked_accounts,
                store.clone(),
                root.login_delay,
            ),
            device_key: root.device,
            policy: SessionPolicy {
                idle_secs: settings.session_idle_secs,
                lifetime_secs: settings.session_lifetime_secs,
                refresh_lifetime_secs: settings.refresh_lifetime_secs,
                max_per_user: settings.max_sessions_per_user,
                touch_interval_secs: settings.touch_interval_secs,
                require_mfa_for_roles: settings.require_mfa_for_roles.clone(),
            },
            cache_capacity: SESSION_CACHE_CAPACITY,
        };
        let sessions = Sessions::new(session_parts, roles.clone(), events.clone(), detection.clone(), access.clone());
        let oidc = oidc.map(|(provider, mapping)| {
            OidcLogins::new(provider, store.clone(), mapping, sessions.clone(), events.clone())
        });
        let users = Users::new(
            store.clone(),
            passwords.clone(),
            roles.clone(),
            events.clone(),
            access.clone(),
            settings.max_page_size,
        );
        let mfa_parts = MfaParts { store: store.clone(), keys: Arc::clone(&keys), passwords };
        let mfa =
            Mfa::new(mfa_parts, sessions.clone(), roles.clone(), events.clone(), detection.clone(), access.clone());
        let tokens =
            Tokens::open(store.clone(), Arc::clone(&keys), events.clone(), settings.breach.instance_id.clone()).await?;
        let documents = Documents::new(
            DocumentParts {
                store: store.clone(),
                keys: Arc::clone(&keys),
                blind_index: Arc::clone(&root.blind),
                max_page_size: settings.max_page_size,
                audit_reads: settings.audit_reads,
            },
            events.clone(),
            detection.clone(),
            access.clone(),
        );
        let key_service = Keys::new(
            store.clone(),
            Arc::clone(&keys),
            tokens.clone(),
            events.clone(),
            detection.clone(),
            (settings.key_rotation_days, settings.reencrypt_pause),
        );
        let retention =
            Retention::new(store.clone(), Arc::clone(&root.blind), events.clone(), settings.retention.clone());
        let privacy = Privacy::new(
            PrivacyParts {
                store: store.clone(),
                keys: Arc::clone(&keys),
                blind_index: root.blind,
                notifier: Arc::clone(&notifier),
                verification_minutes: settings.verification_token_minutes,
            },
            documents.clone(),
            events.clone(),
            access.clone(),
        );
        let audit = AuditLog::new(store.clone(), root.audit, notifier, events.clone(), detection.clone());
        audit.check_audit_anchor().await?;
        let compliance = Compliance::new(
            ComplianceParts {
                store: store.clone(),
                signer: root.report,
                settings: Enforced {
                    config: settings.compliance.clone(),
                    session_idle_secs: settings.session_idle_secs,
                    session_lifetime_secs: settings.session_lifetime_secs,
                    require_mfa_for_roles: settings.require_mfa_for_roles.clone(),
                    audit_reads: settings.audit_reads,
                    breach_detection: settings.breach.enabled,
                    webhook_endpoints: settings.breach.webhooks.len(),
                    admin_allowed_networks: settings.breach.admin_allowed_ips.len(),
                    instance_id: settings.breach.instance_id.clone(),
                },
            },
            key_service.clone(),
            audit.clone(),
            events.clone(),
        );
        let telemetry = Telemetry::new(store.clone(), store.clone(), key_service.clone(), events.clone());
        let bootstrap = users.bootstrap_admin(admin).await?;
        let core = Self {
            inner: Arc::new(Services {
                events,
                detection,
                access,
                roles,
                users,
                sessions,
                mfa,
                oidc,
                tokens,
                documents,
                keys: key_service,
                privacy,
                retention,
                audit,
                compliance,
                telemetry,
                backup_key: root.backup,
                rate_limit_key: root.rate_limit,
                settings,
            }),
        };
        Ok((core, bootstrap))
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }
    pub fn detection(&self) -> &BreachDetection {
        &self.inner.detection
    }
    pub fn access(&self) -> &Access {
        &self.inner.access
    }
    pub fn roles(&self) -> &Roles {
        &self.inner.roles
    }
    pub fn users(&self) -> &Users {
        &self.inner.users
    }
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }
    pub fn mfa(&self) -> &Mfa {
        &self.inner.mfa
    }
    /// OpenID Connect logins, when configured.
    pub fn oidc(&self) -> Option<&OidcLogins> {
        self.inner.oidc.as_ref()
    }
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }
    pub fn documents(&self) -> &Documents {
        &self.inner.documents
    }
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }
    pub fn privacy(&self) -> &Privacy {
        &self.inner.privacy
    }
    pub fn retention(&self) -> &Retention {
        &self.inner.retention
    }
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    pub fn compliance(&self) -> &Compliance {
        &self.inner.compliance
    }

    /// Checks the password (through the identity provider) and opens a session, or, for
    /// an account with a second factor, issues the MFA challenge instead.
    /// `method`: the provider the client names, if any (it must be the account's own).
    pub async fn login(
        &self,
        username: &str,
        password: SecretString,
        method: Option<AuthSource>,
        device: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<LoginOutcome> {
        match self.inner.sessions.login(username, password, method, device, meta).await? {
            PasswordLogin::Opened(outcome) => Ok(outcome),
            PasswordLogin::SecondFactor(user) => self.inner.mfa.challenge(&user, "password", meta).await,
        }
    }

    /// Completes an OpenID Connect login on the provider's callback: a session, or, for an
    /// account with a local second factor, the MFA challenge instead (as after a password).
    pub async fn oidc_callback(
        &self,
        code: &str,
        state: &str,
        binding: Option<&str>,
        meta: &RequestMeta,
    ) -> CoreResult<(FlowMode, LoginOutcome)> {
        let oidc = self.inner.oidc.as_ref().ok_or(CoreError::NotFound("OpenID Connect login"))?;
        match oidc.callback(code, state, binding, meta).await? {
            (mode, PasswordLogin::Opened(outcome)) => Ok((mode, outcome)),
            (mode, PasswordLogin::SecondFactor(user)) => {
                Ok((mode, self.inner.mfa.challenge(&user, "oidc", meta).await?))
            }
        }
    }

    /// The principal the local CLI acts as: the admin role, no session.
    fn local_admin(&self) -> CoreResult<Principal> {
        let role = self.inner.roles.role(&RoleName::parse(rbac::ADMIN_ROLE).map_err(CoreError::internal)?)?;
        Ok(Principal {
            username: Username::parse("local-cli").map_err(CoreError::internal)?,
            role,
            session_id: None,
            origin: RequestMeta::local("cli"),
            mfa_enrollment_only: false,
            assurance: rampart_store::Assurance::MultiFactor,
        })
    }

    /// The local CLI acting as admin, through the same decision as every request.
    pub async fn authorize_local<P: PermissionMarker>(&self) -> CoreResult<Authorized<P>> {
        self.inner.access.authorize::<P>(self.local_admin()?, None, Area::Admin).await
    }

    /// Records a restore in the restored data directory's own audit chain.
    /// `ledger_source`: where the current erasure ledger came from; `None` when the
    /// operator restored without one (recorded, since erased subjects may be back).
    pub async fn record_restore(
        &self,
        backup_id: &str,
        erased: u64,
        key_source: &str,
        ledger_source: Option<&str>,
    ) -> CoreResult<()> {
        let ledger = ledger_source.map_or_else(
            || json!({ "current": false, "risk": "restored with --without-erasure-ledger: subjects erased after the backup may be back" }),
            |s| json!({ "current": true, "source": s }),
        );
        let details = json!({
            "backup_id": backup_id,
            "erased_documents": erased,
            "key_store": key_source,
            "erasure_ledger": ledger,
        });
        self.inner
            .events
            .record_event(EventType::BackupRestore, Some("local-cli"), &RequestMeta::local("restore"), true, details)
            .await
    }

    pub fn settings(&self) -> &CoreSettings {
        &self.inner.settings
    }

    /// The key backups are encrypted with (derived from the root key).
    pub fn backup_key(&self) -> Arc<PurposeKey> {
        Arc::clone(&self.inner.backup_key)
    }

    /// The key a shared rate limiter names its budgets with (derived from the root key, so
    /// the same on every node and unchanged by master-key rotation).
    pub fn rate_limit_key(&self) -> Arc<PurposeKey> {
        Arc::clone(&self.inner.rate_limit_key)
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.events.clock()
    }
}
