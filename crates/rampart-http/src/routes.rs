use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;

use crate::context::{mark_routed, request_context};
use crate::error::ApiError;
use crate::extract::Public;
use crate::handlers::{
    self, admin, auth, backups, ccpa, collections, compliance, documents, gdpr, keys, mfa, oidc, retention, roles,
    security, users,
};
use crate::AppState;
use rampart_core::{Area, Budget};
use rampart_types::Permission;

/// Who may call a route, as declared by its handler's extractor. The route-walk test
/// checks each declaration against the running router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed (`Public` extractor).
    Public,
    /// Any authenticated user, acting on their own account (`Authenticated`).
    SelfService,
    /// Any session, enrol-only ones too: second-factor enrolment and logout (`Enrolling`).
    Enrolment,
    /// Needs a named permission (`Authz<P>`).
    Permission,
}

#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    /// For `Access::Permission`: the permission the handler's `Authz<P>` names. The
    /// authorization matrix test checks every role against it.
    pub permission: Option<Permission>,
    pub policy: RoutePolicy,
}

/// What the route table says about a route beyond its handler, applied before any other
/// work: which per-address budget it spends, and which area it belongs to (the admin
/// address allow-list and breach detection's refusal counting follow the area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    pub area: Area,
    pub budget: Budget,
}

impl RoutePolicy {
    /// For requests that match no route (404, and 405 on unknown methods of no path).
    pub const UNMATCHED: Self = Self { area: Area::Public, budget: Budget::Api };
}

struct Route {
    info: RouteInfo,
    handler: MethodRouter<AppState>,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    permission: Option<Permission>,
    (area, budget): (Area, Budget),
    handler: MethodRouter<AppState>,
) -> Route {
    Route { info: RouteInfo { method, path, access, permission, policy: RoutePolicy { area, budget } }, handler }
}

/// Open to everyone; `budget` is `Login` where a password or second factor is checked.
fn public(method: Method, path: &'static str, budget: Budget, handler: MethodRouter<AppState>) -> Route {
    route(method, path, Access::Public, None, (Area::Public, budget), handler)
}

/// The caller's own account.
fn account(method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>) -> Route {
    route(method, path, access, None, (Area::Account, Budget::Api), handler)
}

/// Collections and documents: needs `permission`.
fn data(method: Method, path: &'static str, permission: Permission, handler: MethodRouter<AppState>) -> Route {
    route(method, path, Access::Permission, Some(permission), (Area::Data, Budget::Api), handler)
}

/// Administration: needs `permission`.
fn admin(method: Method, path: &'static str, permission: Permission, handler: MethodRouter<AppState>) -> Route {
    route(method, path, Access::Permission, Some(permission), (Area::Admin, Budget::Api), handler)
}

/// Every route of the API. The router is built from this list and nothing else, so the
/// inventory the tests walk is exactly what is served.
fn routes() -> Vec<Route> {
    use rampart_types::Permission as P;
    use Access::*;
    use Budget::{Api, Login};
    use Method as M;
    vec![
        public(M::GET, "/health", Api, get(handlers::health)),
        admin(M::GET, "/api/v1/admin/health", P::MetricsRead, get(handlers::health_detail)),
        admin(M::GET, "/metrics", P::MetricsRead, get(handlers::metrics)),
        public(M::POST, "/api/v1/auth/login", Login, post(auth::login)),
        account(M::POST, "/api/v1/auth/logout", Enrolment, post(auth::logout)),
        account(M::POST, "/api/v1/auth/logout-all", SelfService, post(auth::logout_all)),
        account(M::GET, "/api/v1/auth/me", SelfService, get(auth::me)),
        account(M::POST, "/api/v1/auth/password", SelfService, post(auth::change_password)),
        public(M::POST, "/api/v1/auth/refresh", Login, post(auth::refresh)),
        public(M::GET, "/api/v1/auth/oidc/start", Login, get(oidc::start)),
        public(M::GET, "/api/v1/auth/oidc/callback", Login, get(oidc::callback)),
        public(M::POST, "/api/v1/auth/mfa/verify", Login, post(mfa::verify)),
        account(M::POST, "/api/v1/auth/mfa/enable", Enrolment, post(mfa::enable)),
        account(M::POST, "/api/v1/auth/mfa/confirm", Enrolment, post(mfa::confirm)),
        account(M::POST, "/api/v1/auth/mfa/disable", SelfService, post(mfa::disable)),
        account(M::POST, "/api/v1/auth/mfa/recovery-codes", SelfService, post(mfa::recovery_codes)),
        account(M::GET, "/api/v1/auth/sessions", SelfService, get(mfa::sessions)),
        account(M::DELETE, "/api/v1/auth/sessions/{id}", SelfService, delete(mfa::end_session)),
        admin(M::POST, "/api/v1/users/{username}/mfa/reset", P::UsersMfaReset, post(mfa::reset)),
        account(M::POST, "/api/v1/auth/token", SelfService, post(mfa::mint)),
        public(M::GET, "/.well-known/jwks.json", Api, get(mfa::jwks)),
        admin(M::GET, "/api/v1/users", P::UsersRead, get(users::list)),
        admin(M::POST, "/api/v1/users", P::UsersCreate, post(users::create)),
        admin(M::GET, "/api/v1/users/{username}", P::UsersRead, get(users::get)),
        admin(M::PATCH, "/api/v1/users/{username}", P::UsersUpdate, patch(users::update)),
        admin(M::DELETE, "/api/v1/users/{username}", P::UsersDelete, delete(users::delete)),
        admin(M::GET, "/api/v1/roles", P::RolesRead, get(roles::list)),
        admin(M::POST, "/api/v1/roles", P::RolesManage, post(roles::create)),
        admin(M::GET, "/api/v1/roles/{name}", P::RolesRead, get(roles::get)),
        admin(M::PUT, "/api/v1/roles/{name}", P::RolesManage, put(roles::replace)),
        admin(M::DELETE, "/api/v1/roles/{name}", P::RolesManage, delete(roles::delete)),
        data(M::GET, "/api/v1/collections", P::CollectionsRead, get(collections::list)),
        data(M::POST, "/api/v1/collections", P::CollectionsCreate, post(collections::create)),
        data(M::GET, "/api/v1/collections/{collection}", P::CollectionsRead, get(collections::get)),
        data(M::PATCH, "/api/v1/collections/{collection}", P::CollectionsUpdate, patch(collections::update)),
        data(M::DELETE, "/api/v1/collections/{collection}", P::CollectionsDelete, delete(collections::delete)),
        data(M::GET, "/api/v1/collections/{collection}/documents", P::DocumentsRead, get(documents::list)),
        data(M::POST, "/api/v1/collections/{collection}/documents", P::DocumentsWrite, post(documents::create)),
        data(M::GET, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsRead, get(documents::get)),
        data(M::PUT, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsWrite, put(documents::replace)),
        data(M::PATCH, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsWrite, patch(documents::patch)),
        data(
            M::DELETE,
            "/api/v1/collections/{collection}/documents/{id}",
            P::DocumentsDelete,
            delete(documents::delete),
        ),
        admin(M::GET, "/api/v1/admin/audit", P::AuditRead, get(admin::audit)),
        admin(M::GET, "/api/v1/admin/audit/verify", P::AuditVerify, get(admin::verify)),
        admin(M::GET, "/api/v1/admin/keys", P::KeysRead, get(keys::show)),
        admin(M::POST, "/api/v1/admin/keys/rotate", P::KeysRotate, post(keys::rotate)),
        admin(M::POST, "/api/v1/admin/backup", P::BackupCreate, post(backups::create)),
        admin(M::GET, "/api/v1/admin/backups", P::BackupRead, get(backups::list)),
        admin(M::POST, "/api/v1/admin/backups/{id}/verify", P::BackupRead, post(backups::verify)),
        admin(M::POST, "/api/v1/gdpr/verification", P::GdprVerify, post(gdpr::issue_verification)),
        admin(M::DELETE, "/api/v1/gdpr/erasure", P::GdprErase, delete(gdpr::erase)),
        admin(M::GET, "/api/v1/gdpr/erasure/{id}", P::GdprErase, get(gdpr::erasure_status)),
        admin(M::GET, "/api/v1/gdpr/export", P::GdprExport, get(gdpr::export)),
        admin(M::GET, "/api/v1/gdpr/access", P::GdprAccess, get(gdpr::access)),
        admin(M::POST, "/api/v1/gdpr/consent", P::GdprConsent, post(gdpr::record_consent)),
        admin(M::GET, "/api/v1/gdpr/consent", P::GdprConsent, get(gdpr::consent)),
        admin(M::GET, "/api/v1/ccpa/access", P::CcpaAccess, get(ccpa::access)),
        admin(M::DELETE, "/api/v1/ccpa/delete", P::CcpaDelete, delete(ccpa::delete)),
        admin(M::GET, "/api/v1/ccpa/delete/{id}", P::CcpaDelete, get(ccpa::deletion_status)),
        admin(M::POST, "/api/v1/ccpa/opt-out", P::CcpaOptOut, post(ccpa::opt_out)),
        admin(M::GET, "/api/v1/admin/compliance/status", P::ComplianceRead, get(compliance::status)),
        admin(M::GET, "/api/v1/admin/compliance/soc2-report", P::ComplianceRead, get(compliance::soc2_report)),
        admin(M::POST, "/api/v1/admin/legal-holds", P::ComplianceLegalHold, post(retention::place)),
        admin(M::GET, "/api/v1/admin/legal-holds", P::ComplianceLegalHold, get(retention::list)),
        admin(M::DELETE, "/api/v1/admin/legal-holds/{hold_id}", P::ComplianceLegalHold, delete(retention::release)),
        admin(M::GET, "/api/v1/admin/security/alerts", P::SecurityRead, get(security::alerts)),
        admin(
            M::POST,
            "/api/v1/admin/security/alerts/{id}/acknowledge",
            P::SecurityManage,
            post(security::acknowledge),
        ),
        admin(M::POST, "/api/v1/admin/security/alerts/{id}/resolve", P::SecurityManage, post(security::resolve)),
        admin(M::POST, "/api/v1/admin/security/block-ip", P::SecurityManage, post(security::block)),
        admin(M::GET, "/api/v1/admin/security/blocked-ips", P::SecurityRead, get(security::blocked)),
        admin(M::DELETE, "/api/v1/admin/security/blocked-ips/{ip}", P::SecurityManage, delete(security::unblock)),
    ]
}

/// The route table's policies, looked up by path and method once per request (before
/// routing, so that refusals cost nothing further).
pub(crate) struct RoutePolicies {
    paths: matchit::Router<usize>,
    /// Per path: each method's policy and its index in the route table.
    by_path: Vec<Vec<(Method, RoutePolicy, usize)>>,
}

impl RoutePolicies {
    pub(crate) fn new(routes: &[RouteInfo]) -> Self {
        let mut paths = matchit::Router::new();
        let mut by_path: Vec<Vec<(Method, RoutePolicy, usize)>> = Vec::new();
        let mut index: Vec<&'static str> = Vec::new();
        for (n, r) in routes.iter().enumerate() {
            let i = index.iter().position(|p| *p == r.path).unwrap_or_else(|| {
                index.push(r.path);
                by_path.push(Vec::new());
                // The same syntax axum routes with; the route table is fixed, so an
                // insertion that fails would fail the router's own build first.
                let _ = paths.insert(r.path, index.len() - 1);
                index.len() - 1
            });
            by_path[i].push((r.method.clone(), r.policy, n));
        }
        Self { paths, by_path }
    }

    /// The policy of the route `method path` reaches, that route's parameter values
    /// (`None` when the path matches no route) and its index in the route table (`None`
    /// unless method and path both match). Another method on a known path (answered 405)
    /// takes the path's area with the API budget.
    pub(crate) fn find<'p>(&self, method: &Method, path: &'p str) -> Found<'p> {
        let Ok(found) = self.paths.at(path) else {
            return Found { policy: RoutePolicy::UNMATCHED, parameters: None, route: None };
        };
        let entries = &self.by_path[*found.value];
        let (policy, route) = match entries.iter().find(|(m, _, _)| m == method) {
            Some((_, policy, n)) => (*policy, Some(*n)),
            None => (
                entries.first().map_or(RoutePolicy::UNMATCHED, |(_, p, _)| RoutePolicy { budget: Budget::Api, ..*p }),
                None,
            ),
        };
        Found { policy, parameters: Some(found.params.iter().map(|(_, v)| v).collect()), route }
    }
}

/// What the route table says of one request.
pub(crate) struct Found<'p> {
    pub policy: RoutePolicy,
    pub parameters: Option<Vec<&'p str>>,
    pub route: Option<usize>,
}

#[cfg(test)]
pub(crate) fn route_policies() -> RoutePolicies {
    RoutePolicies::new(&route_inventory())
}

pub fn route_inventory() -> Vec<RouteInfo> {
    routes().into_iter().map(|r| r.info).collect()
}

/// Refusals serve nothing, so they are public decisions.
async fn no_route(_: Public) -> ApiError {
    ApiError::NoRoute
}

async fn method_not_allowed(_: Public) -> ApiError {
    ApiError::MethodNotAllowed
}

pub fn router(state: AppState) -> Router {
    // One MethodRouter per path, so the 405 fallback is attached exactly once each.
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for route in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == route.info.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(route.handler),
            None => by_path.push((route.info.path, route.handler)),
        }
    }
    let mut router: Router<AppState> = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr.fallback(method_not_allowed));
    }
    router
        .route_layer(from_fn(mark_routed))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), crate::cors::cors))
        .layer(from_fn_with_state(state.clone(), crate::limits::rate_limit))
        .layer(from_fn_with_state(state.clone(), request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::Core(rampart_core::CoreError::internal_msg("handler panicked")).into_response_compat()
        }))
        .with_state(state)
}

impl ApiError {
    fn into_response_compat(self) -> axum::response::Response {
        axum::response::IntoResponse::into_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_come_from_the_route_table() {
        let routes = route_policies();
        let lookup = |method: &Method, path| routes.find(method, path).policy;
        let login = lookup(&Method::POST, "/api/v1/auth/login");
        assert_eq!((login.area, login.budget), (Area::Public, Budget::Login));
        assert_eq!(lookup(&Method::POST, "/api/v1/auth/refresh").budget, Budget::Login);
        for oidc in ["/api/v1/auth/oidc/start", "/api/v1/auth/oidc/callback"] {
            assert_eq!(
                (lookup(&Method::GET, oidc).area, lookup(&Method::GET, oidc).budget),
                (Area::Public, Budget::Login)
            );
        }
        assert_eq!(lookup(&Method::GET, "/api/v1/users/bob").area, Area::Admin);
        assert_eq!(lookup(&Method::DELETE, "/api/v1/gdpr/erasure").area, Area::Admin);
        assert_eq!(lookup(&Method::GET, "/api/v1/collections/c/documents/d").area, Area::Data);
        assert_eq!(lookup(&Method::GET, "/api/v1/auth/me").area, Area::Account);
        // Another method on a known path keeps the path's area, with the API budget.
        let other = lookup(&Method::GET, "/api/v1/auth/login");
        assert_eq!((other.area, other.budget), (Area::Public, Budget::Api));
        assert_eq!(lookup(&Method::PUT, "/api/v1/admin/keys").area, Area::Admin);
        assert_eq!(lookup(&Method::GET, "/api/v1/nowhere"), RoutePolicy::UNMATCHED);
        let params = |path| routes.find(&Method::GET, path).parameters;
        assert_eq!(params("/api/v1/collections/c%27/documents/d"), Some(vec!["c%27", "d"]));
        assert_eq!(params("/api/v1/auth/me"), Some(vec![]));
        assert_eq!(params("/api/v1/x'--"), None);
    }
}
