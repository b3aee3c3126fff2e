use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;

use crate::context::{mark_routed, request_context};
use crate::error::ApiError;
use crate::extract::Public;
use crate::handlers::{self, admin, auth, backups, collections, documents, gdpr, keys, mfa, roles, security, users};
use crate::AppState;
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
}

struct Route {
    info: RouteInfo,
    handler: MethodRouter<AppState>,
}

fn r(method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>) -> Route {
    Route { info: RouteInfo { method, path, access, permission: None }, handler }
}

/// A route that needs `permission`.
fn p(method: Method, path: &'static str, permission: Permission, handler: MethodRouter<AppState>) -> Route {
    Route { info: RouteInfo { method, path, access: Access::Permission, permission: Some(permission) }, handler }
}

/// Every route of the API. The router is built from this list and nothing else, so the
/// inventory the tests walk is exactly what is served.
fn routes() -> Vec<Route> {
    use rampart_types::Permission as P;
    use Access::*;
    use Method as M;
    vec![
        r(M::GET, "/health", Public, get(handlers::health)),
        r(M::POST, "/api/v1/auth/login", Public, post(auth::login)),
        r(M::POST, "/api/v1/auth/logout", Enrolment, post(auth::logout)),
        r(M::POST, "/api/v1/auth/logout-all", SelfService, post(auth::logout_all)),
        r(M::GET, "/api/v1/auth/me", SelfService, get(auth::me)),
        r(M::POST, "/api/v1/auth/password", SelfService, post(auth::change_password)),
        r(M::POST, "/api/v1/auth/refresh", Public, post(auth::refresh)),
        r(M::POST, "/api/v1/auth/mfa/verify", Public, post(mfa::verify)),
        r(M::POST, "/api/v1/auth/mfa/enable", Enrolment, post(mfa::enable)),
        r(M::POST, "/api/v1/auth/mfa/confirm", Enrolment, post(mfa::confirm)),
        r(M::POST, "/api/v1/auth/mfa/disable", SelfService, post(mfa::disable)),
        r(M::POST, "/api/v1/auth/mfa/recovery-codes", SelfService, post(mfa::recovery_codes)),
        r(M::GET, "/api/v1/auth/sessions", SelfService, get(mfa::sessions)),
        r(M::DELETE, "/api/v1/auth/sessions/{id}", SelfService, delete(mfa::end_session)),
        p(M::POST, "/api/v1/users/{username}/mfa/reset", P::UsersMfaReset, post(mfa::reset)),
        r(M::POST, "/api/v1/auth/token", SelfService, post(mfa::mint)),
        r(M::GET, "/.well-known/jwks.json", Public, get(mfa::jwks)),
        p(M::GET, "/api/v1/users", P::UsersRead, get(users::list)),
        p(M::POST, "/api/v1/users", P::UsersCreate, post(users::create)),
        p(M::GET, "/api/v1/users/{username}", P::UsersRead, get(users::get)),
        p(M::PATCH, "/api/v1/users/{username}", P::UsersUpdate, patch(users::update)),
        p(M::DELETE, "/api/v1/users/{username}", P::UsersDelete, delete(users::delete)),
        p(M::GET, "/api/v1/roles", P::RolesRead, get(roles::list)),
        p(M::POST, "/api/v1/roles", P::RolesManage, post(roles::create)),
        p(M::GET, "/api/v1/roles/{name}", P::RolesRead, get(roles::get)),
        p(M::PUT, "/api/v1/roles/{name}", P::RolesManage, put(roles::replace)),
        p(M::DELETE, "/api/v1/roles/{name}", P::RolesManage, delete(roles::delete)),
        p(M::GET, "/api/v1/collections", P::CollectionsRead, get(collections::list)),
        p(M::POST, "/api/v1/collections", P::CollectionsCreate, post(collections::create)),
        p(M::GET, "/api/v1/collections/{collection}", P::CollectionsRead, get(collections::get)),
        p(M::PATCH, "/api/v1/collections/{collection}", P::CollectionsUpdate, patch(collections::update)),
        p(M::DELETE, "/api/v1/collections/{collection}", P::CollectionsDelete, delete(collections::delete)),
        p(M::GET, "/api/v1/collections/{collection}/documents", P::DocumentsRead, get(documents::list)),
        p(M::POST, "/api/v1/collections/{collection}/documents", P::DocumentsWrite, post(documents::create)),
        p(M::GET, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsRead, get(documents::get)),
        p(M::PUT, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsWrite, put(documents::replace)),
        p(M::PATCH, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsWrite, patch(documents::patch)),
        p(M::DELETE, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsDelete, delete(documents::delete)),
        p(M::GET, "/api/v1/admin/audit", P::AuditRead, get(admin::audit)),
        p(M::GET, "/api/v1/admin/audit/verify", P::AuditVerify, get(admin::verify)),
        p(M::GET, "/api/v1/admin/keys", P::KeysRead, get(keys::show)),
        p(M::POST, "/api/v1/admin/keys/rotate", P::KeysRotate, post(keys::rotate)),
        p(M::POST, "/api/v1/admin/backup", P::BackupCreate, post(backups::create)),
        p(M::GET, "/api/v1/admin/backups", P::BackupRead, get(backups::list)),
        p(M::POST, "/api/v1/admin/backups/{id}/verify", P::BackupRead, post(backups::verify)),
        p(M::DELETE, "/api/v1/gdpr/erasure", P::GdprErase, delete(gdpr::erase)),
        p(M::GET, "/api/v1/admin/security/alerts", P::SecurityRead, get(security::alerts)),
        p(M::POST, "/api/v1/admin/security/alerts/{id}/acknowledge", P::SecurityManage, post(security::acknowledge)),
        p(M::POST, "/api/v1/admin/security/alerts/{id}/resolve", P::SecurityManage, post(security::resolve)),
        p(M::POST, "/api/v1/admin/security/block-ip", P::SecurityManage, post(security::block)),
        p(M::GET, "/api/v1/admin/security/blocked-ips", P::SecurityRead, get(security::blocked)),
        p(M::DELETE, "/api/v1/admin/security/blocked-ips/{ip}", P::SecurityManage, delete(security::unblock)),
    ]
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
