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
}

struct Route {
    info: RouteInfo,
    handler: MethodRouter<AppState>,
}

fn r(method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>) -> Route {
    Route { info: RouteInfo { method, path, access }, handler }
}

/// Every route of the API. The router is built from this list and nothing else, so the
/// inventory the tests walk is exactly what is served.
fn routes() -> Vec<Route> {
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
        r(M::POST, "/api/v1/users/{username}/mfa/reset", Permission, post(mfa::reset)),
        r(M::POST, "/api/v1/auth/token", SelfService, post(mfa::mint)),
        r(M::GET, "/.well-known/jwks.json", Public, get(mfa::jwks)),
        r(M::GET, "/api/v1/users", Permission, get(users::list)),
        r(M::POST, "/api/v1/users", Permission, post(users::create)),
        r(M::GET, "/api/v1/users/{username}", Permission, get(users::get)),
        r(M::PATCH, "/api/v1/users/{username}", Permission, patch(users::update)),
        r(M::DELETE, "/api/v1/users/{username}", Permission, delete(users::delete)),
        r(M::GET, "/api/v1/roles", Permission, get(roles::list)),
        r(M::POST, "/api/v1/roles", Permission, post(roles::create)),
        r(M::GET, "/api/v1/roles/{name}", Permission, get(roles::get)),
        r(M::PUT, "/api/v1/roles/{name}", Permission, put(roles::replace)),
        r(M::DELETE, "/api/v1/roles/{name}", Permission, delete(roles::delete)),
        r(M::GET, "/api/v1/collections", Permission, get(collections::list)),
        r(M::POST, "/api/v1/collections", Permission, post(collections::create)),
        r(M::GET, "/api/v1/collections/{collection}", Permission, get(collections::get)),
        r(M::PATCH, "/api/v1/collections/{collection}", Permission, patch(collections::update)),
        r(M::DELETE, "/api/v1/collections/{collection}", Permission, delete(collections::delete)),
        r(M::GET, "/api/v1/collections/{collection}/documents", Permission, get(documents::list)),
        r(M::POST, "/api/v1/collections/{collection}/documents", Permission, post(documents::create)),
        r(M::GET, "/api/v1/collections/{collection}/documents/{id}", Permission, get(documents::get)),
        r(M::PUT, "/api/v1/collections/{collection}/documents/{id}", Permission, put(documents::replace)),
        r(M::PATCH, "/api/v1/collections/{collection}/documents/{id}", Permission, patch(documents::patch)),
        r(M::DELETE, "/api/v1/collections/{collection}/documents/{id}", Permission, delete(documents::delete)),
        r(M::GET, "/api/v1/admin/audit", Permission, get(admin::audit)),
        r(M::GET, "/api/v1/admin/audit/verify", Permission, get(admin::verify)),
        r(M::GET, "/api/v1/admin/keys", Permission, get(keys::show)),
        r(M::POST, "/api/v1/admin/keys/rotate", Permission, post(keys::rotate)),
        r(M::POST, "/api/v1/admin/backup", Permission, post(backups::create)),
        r(M::GET, "/api/v1/admin/backups", Permission, get(backups::list)),
        r(M::POST, "/api/v1/admin/backups/{id}/verify", Permission, post(backups::verify)),
        r(M::DELETE, "/api/v1/gdpr/erasure", Permission, delete(gdpr::erase)),
        r(M::GET, "/api/v1/admin/security/alerts", Permission, get(security::alerts)),
        r(M::POST, "/api/v1/admin/security/alerts/{id}/acknowledge", Permission, post(security::acknowledge)),
        r(M::POST, "/api/v1/admin/security/alerts/{id}/resolve", Permission, post(security::resolve)),
        r(M::POST, "/api/v1/admin/security/block-ip", Permission, post(security::block)),
        r(M::GET, "/api/v1/admin/security/blocked-ips", Permission, get(security::blocked)),
        r(M::DELETE, "/api/v1/admin/security/blocked-ips/{ip}", Permission, delete(security::unblock)),
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
