//! The HTTP face of Rampart: axum router, authentication and permission extractors,
//! JSON input hardening, security headers, and the one mapping from errors to responses.

mod client_ip;
mod context;
mod cors;
mod error;
mod export_format;
mod extract;
mod handlers;
mod json;
mod limits;
mod metrics;
mod openapi;
pub use rampart_types::perm;
mod routes;
pub mod slow_body;
mod sqli;

use rampart_core::Core;

pub use context::{ActivityEntry, ActivitySink, ClientAddr, NoActivityLog};
pub use error::ApiError;
#[doc(hidden)]
pub use handlers::documents::fuzz_list_query;
#[doc(hidden)]
pub use json::fuzz_parse_body;
pub use routes::{route_inventory, router, Access, RouteInfo, RoutePolicy};

/// Settings the HTTP layer needs, fixed at start.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Served over TLS: adds HSTS.
    pub tls: bool,
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    /// A handler running longer than this is abandoned with 408.
    pub request_timeout: std::time::Duration,
    /// Minimum request-body data rate (slow bodies get 408).
    pub body_rate: slow_body::BodyRate,
    pub version: &'static str,
    /// This node's name (`server.node_id`), for operators' health detail.
    pub node_id: String,
    /// Peers whose forwarding headers name the client.
    pub trusted_proxies: Vec<rampart_types::Cidr>,
    /// Exact origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Where a browser lands after an OpenID Connect login (`auth.oidc.browser_redirect`).
    pub oidc_browser_redirect: String,
}

impl HttpSettings {
    pub fn from_config(c: &rampart_config::Config, version: &'static str) -> Self {
        Self {
            tls: !c.server.insecure_http,
            max_body_bytes: c.limits.max_body_bytes,
            max_json_depth: c.limits.max_json_depth,
            request_timeout: std::time::Duration::from_secs(c.server.request_timeout_secs),
            body_rate: slow_body::BodyRate {
                idle: std::time::Duration::from_secs(c.server.body_idle_timeout_secs),
                grace: std::time::Duration::from_secs(c.server.body_idle_timeout_secs),
                min_bytes_per_sec: c.server.min_body_bytes_per_sec,
            },
            version,
            node_id: c.server.node_id.clone(),
            trusted_proxies: c.server.trusted_proxies.clone(),
            cors_origins: c.cors.allowed_origins.clone(),
            oidc_browser_redirect: c.auth.oidc.as_ref().map_or_else(|| "/".to_owned(), |o| o.browser_redirect.clone()),
        }
    }
}

/// What every handler and middleware shares. One `Arc`, so the per-request clones axum
/// makes (one per layer and extractor) cost one reference count, not one per part.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<AppParts>);

pub struct AppParts {
    pub core: Core,
    pub settings: HttpSettings,
    pub limits: std::sync::Arc<dyn rampart_core::Limiter>,
    pub lease: std::sync::Arc<dyn rampart_core::LeaderLease>,
    pub activity: std::sync::Arc<dyn ActivitySink>,
    pub backups: rampart_core::BackupService,
    pub(crate) policies: routes::RoutePolicies,
    pub(crate) http_metrics: metrics::HttpMetrics,
    /// `GET /api/v1/openapi.json`, serialized once.
    pub(crate) openapi: axum::body::Bytes,
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The adapters the HTTP layer needs beyond the core.
pub struct AppPorts {
    pub activity: std::sync::Arc<dyn ActivitySink>,
    pub backups: std::sync::Arc<dyn rampart_core::backup::Backups>,
    pub limits: std::sync::Arc<dyn rampart_core::Limiter>,
    /// The lease this node's one-at-a-time jobs run under (reported to operators).
    pub lease: std::sync::Arc<dyn rampart_core::LeaderLease>,
}

/// For servers (and tests) without a backup directory.
pub struct NoBackups;

#[async_trait::async_trait]
impl rampart_core::backup::Backups for NoBackups {
    async fn create(&self, _: bool, _: Option<String>) -> rampart_core::CoreResult<rampart_core::backup::BackupMeta> {
        Err(rampart_core::CoreError::NotFound("backup service"))
    }
    async fn list(&self) -> rampart_core::CoreResult<Vec<rampart_core::backup::BackupMeta>> {
        Ok(Vec::new())
    }
    async fn verify(&self, _: &str) -> rampart_core::CoreResult<rampart_core::backup::BackupVerification> {
        Err(rampart_core::CoreError::NotFound("backup"))
    }
}

impl AppState {
    pub fn new(
        core: Core,
        config: &rampart_config::Config,
        version: &'static str,
        activity: std::sync::Arc<dyn ActivitySink>,
    ) -> Self {
        let limits = std::sync::Arc::new(rampart_core::LocalLimiter::new(&config.rate_limit, core.clock()));
        let ports = AppPorts {
            activity,
            backups: std::sync::Arc::new(NoBackups),
            limits,
            lease: std::sync::Arc::new(rampart_core::SingleNode),
        };
        Self::assemble(core, config, version, ports)
    }

    /// The state over the ports a deployment chose (see the binary's `app` module).
    pub fn assemble(core: Core, config: &rampart_config::Config, version: &'static str, ports: AppPorts) -> Self {
        let AppPorts { activity, backups, limits, lease } = ports;
        let settings = HttpSettings::from_config(config, version);
        let inventory = routes::route_inventory();
        let policies = routes::RoutePolicies::new(&inventory);
        let http_metrics = metrics::HttpMetrics::new(&inventory);
        let openapi = routes::openapi_json(version);
        let backups = rampart_core::BackupService::new(backups, core.events().clone());
        Self(std::sync::Arc::new(AppParts {
            core,
            settings,
            limits,
            lease,
            activity,
            backups,
            policies,
            http_metrics,
            openapi,
        }))
    }
}
