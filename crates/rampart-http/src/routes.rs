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
use crate::openapi::{self, Doc, Reply};
use crate::AppState;
use rampart_core::{Area, Budget};
use rampart_types::Permission;
use utoipa::{IntoParams, ToSchema};

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
    doc: Doc,
}

/// The operation's documentation, named beside the handler (see `openapi`).
impl Route {
    fn body<T: ToSchema>(mut self) -> Self {
        self.doc.body = Some((openapi::schema_ref::<T>, true));
        self
    }
    /// A body whose fields are all optional: no body at all reads as `{}`.
    fn optional_body<T: ToSchema>(mut self) -> Self {
        self.doc.body = Some((openapi::schema_ref::<T>, false));
        self
    }
    fn query<Q: IntoParams>(mut self) -> Self {
        self.doc.query = Some(openapi::query_params::<Q>);
        self
    }
    fn header(mut self, name: &'static str, description: &'static str) -> Self {
        self.doc.headers.push((name, description));
        self
    }
    fn ok<T: ToSchema>(self) -> Self {
        self.reply(Reply::json(200, "OK", openapi::schema_ref::<T>))
    }
    fn created<T: ToSchema>(self) -> Self {
        self.reply(Reply::json(201, "created", openapi::schema_ref::<T>))
    }
    fn no_content(self) -> Self {
        self.reply(Reply::empty(204, "done"))
    }
    fn reply(mut self, reply: Reply) -> Self {
        self.doc.replies.push(reply);
        self
    }
    /// An erasure's fields, each in the body or the query string, and the verification
    /// token's header (`handlers::gdpr::erasure_ask`).
    fn erasure_fields(self) -> Self {
        use crate::handlers::gdpr::ErasureFields;
        self.query::<ErasureFields>().header("X-Verification-Token", VERIFICATION).optional_body::<ErasureFields>()
    }
    /// Refusals of this route beyond those the table implies.
    fn fails(mut self, statuses: &[u16]) -> Self {
        self.doc.errors.extend_from_slice(statuses);
        self
    }
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    permission: Option<Permission>,
    (area, budget): (Area, Budget),
    handler: MethodRouter<AppState>,
) -> Route {
    let info = RouteInfo { method, path, access, permission, policy: RoutePolicy { area, budget } };
    Route { info, handler, doc: Doc::default() }
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

/// Every route of the API, with its operation's documentation (`openapi`). The router and
/// the OpenAPI document are built from this list and nothing else, so the inventory the
/// tests walk is exactly what is served and documented.
fn routes() -> Vec<Route> {
    use crate::handlers::{auth as au, documents as docs, gdpr as gd, mfa as mf, security as sec};
    use rampart_core as core;
    use rampart_types::Permission as P;
    use Access::*;
    use Budget::{Api, Login};
    use Method as M;
    vec![
        public(M::GET, "/health", Api, get(handlers::health)).ok::<handlers::Health>(),
        admin(M::GET, "/api/v1/admin/health", P::MetricsRead, get(handlers::health_detail))
            .ok::<handlers::HealthDetail>(),
        admin(M::GET, "/metrics", P::MetricsRead, get(handlers::metrics)).reply(prometheus_text()),
        public(M::GET, "/api/v1/openapi.json", Api, get(openapi_document)).reply(Reply::json(
            200,
            "this document",
            openapi::any_object,
        )),
        public(M::POST, "/api/v1/auth/login", Login, post(auth::login))
            .query::<au::LoginMode>()
            .body::<au::LoginRequest>()
            .reply(login_answer())
            .fails(&[401]),
        account(M::POST, "/api/v1/auth/logout", Enrolment, post(auth::logout)).no_content(),
        account(M::POST, "/api/v1/auth/logout-all", SelfService, post(auth::logout_all)).ok::<au::SessionsEnded>(),
        account(M::GET, "/api/v1/auth/me", SelfService, get(auth::me)).ok::<au::Me>(),
        account(M::POST, "/api/v1/auth/password", SelfService, post(auth::change_password))
            .body::<au::PasswordChange>()
            .no_content()
            .fails(&[422]),
        public(M::POST, "/api/v1/auth/refresh", Login, post(auth::refresh))
            .body::<au::RefreshRequest>()
            .ok::<au::LoginResponse>()
            .fails(&[401]),
        public(M::GET, "/api/v1/auth/oidc/start", Login, get(oidc::start))
            .query::<oidc::StartQuery>()
            .ok::<oidc::TokenStart>()
            .reply(
                Reply::empty(302, "browser mode: to the provider")
                    .with_header("Location", "the provider's authorization URL"),
            )
            .fails(&[404]),
        public(M::GET, "/api/v1/auth/oidc/callback", Login, get(oidc::callback))
            .query::<oidc::CallbackQuery>()
            .header(oidc::FLOW_HEADER, "API clients: the `flow_token` from the start")
            .reply(login_answer())
            .reply(
                Reply::empty(303, "browser mode: logged in, to the configured page")
                    .with_header("Location", "where the browser lands"),
            )
            .fails(&[401, 404, 409]),
        public(M::POST, "/api/v1/auth/mfa/verify", Login, post(mfa::verify))
            .body::<mf::VerifyBody>()
            .ok::<au::LoginResponse>()
            .fails(&[401]),
        account(M::POST, "/api/v1/auth/mfa/enable", Enrolment, post(mfa::enable))
            .ok::<core::mfa::MfaEnrollment>()
            .fails(&[409]),
        account(M::POST, "/api/v1/auth/mfa/confirm", Enrolment, post(mfa::confirm))
            .body::<mf::CodeBody>()
            .reply(Reply::json(200, "enrolled: recovery codes and a fresh session", confirm_answer))
            .fails(&[409]),
        account(M::POST, "/api/v1/auth/mfa/disable", SelfService, post(mfa::disable))
            .body::<mf::DisableBody>()
            .no_content()
            .fails(&[409]),
        account(M::POST, "/api/v1/auth/mfa/recovery-codes", SelfService, post(mfa::recovery_codes))
            .body::<mf::CodeBody>()
            .ok::<mf::RecoveryCodes>()
            .fails(&[409]),
        account(M::GET, "/api/v1/auth/sessions", SelfService, get(mfa::sessions))
            .query::<mf::SessionsQuery>()
            .ok::<mf::SessionsPage>(),
        account(M::DELETE, "/api/v1/auth/sessions/{id}", SelfService, delete(mfa::end_session)).no_content(),
        admin(M::POST, "/api/v1/users/{username}/mfa/reset", P::UsersMfaReset, post(mfa::reset))
            .no_content()
            .fails(&[400]),
        account(M::POST, "/api/v1/auth/token", SelfService, post(mfa::mint))
            .body::<mf::TokenRequest>()
            .ok::<core::jwt::MintedToken>(),
        public(M::GET, "/.well-known/jwks.json", Api, get(mfa::jwks)).ok::<core::jwt::JwkSet>(),
        admin(M::GET, "/api/v1/users", P::UsersRead, get(users::list))
            .query::<users::ListQuery>()
            .ok::<users::UsersPage>(),
        admin(M::POST, "/api/v1/users", P::UsersCreate, post(users::create))
            .body::<users::CreateUser>()
            .created::<core::UserView>()
            .fails(&[409, 422]),
        admin(M::GET, "/api/v1/users/{username}", P::UsersRead, get(users::get)).ok::<core::UserView>().fails(&[400]),
        admin(M::PATCH, "/api/v1/users/{username}", P::UsersUpdate, patch(users::update))
            .optional_body::<users::UpdateUser>()
            .ok::<core::UserView>()
            .fails(&[400, 409]),
        admin(M::DELETE, "/api/v1/users/{username}", P::UsersDelete, delete(users::delete))
            .no_content()
            .fails(&[400, 409]),
        admin(M::GET, "/api/v1/roles", P::RolesRead, get(roles::list)).ok::<roles::RolesPage>(),
        admin(M::POST, "/api/v1/roles", P::RolesManage, post(roles::create))
            .body::<roles::RoleBody>()
            .created::<roles::RoleView>()
            .fails(&[409]),
        admin(M::GET, "/api/v1/roles/{name}", P::RolesRead, get(roles::get)).ok::<roles::RoleView>().fails(&[400]),
        admin(M::PUT, "/api/v1/roles/{name}", P::RolesManage, put(roles::replace))
            .body::<roles::RoleBody>()
            .ok::<roles::RoleView>()
            .fails(&[400, 409]),
        admin(M::DELETE, "/api/v1/roles/{name}", P::RolesManage, delete(roles::delete)).no_content().fails(&[400, 409]),
        data(M::GET, "/api/v1/collections", P::CollectionsRead, get(collections::list))
            .ok::<collections::CollectionsPage>(),
        data(M::POST, "/api/v1/collections", P::CollectionsCreate, post(collections::create))
            .body::<collections::CreateCollection>()
            .created::<core::CollectionView>()
            .fails(&[409]),
        data(M::GET, "/api/v1/collections/{collection}", P::CollectionsRead, get(collections::get))
            .ok::<core::CollectionView>(),
        data(M::PATCH, "/api/v1/collections/{collection}", P::CollectionsUpdate, patch(collections::update))
            .body::<collections::UpdateCollection>()
            .ok::<core::CollectionView>(),
        data(M::DELETE, "/api/v1/collections/{collection}", P::CollectionsDelete, delete(collections::delete))
            .no_content()
            .fails(&[409]),
        data(M::GET, "/api/v1/collections/{collection}/documents", P::DocumentsRead, get(documents::list))
            .query::<docs::ListQuery>()
            .ok::<core::DocumentList>(),
        data(M::POST, "/api/v1/collections/{collection}/documents", P::DocumentsWrite, post(documents::create))
            .body::<docs::DocumentBody>()
            .reply(document(201, "created")),
        data(M::GET, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsRead, get(documents::get))
            .header("If-None-Match", "an `ETag` of this document: 304 while it is still the current version")
            .reply(document(200, "the document"))
            .reply(
                Reply::empty(304, "not modified since the `If-None-Match` version")
                    .with_header("ETag", "the current version"),
            ),
        data(M::PUT, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsWrite, put(documents::replace))
            .header("If-Match", IF_MATCH)
            .body::<docs::DocumentBody>()
            .reply(document(200, "replaced"))
            .fails(&[409, 412]),
        data(M::PATCH, "/api/v1/collections/{collection}/documents/{id}", P::DocumentsWrite, patch(documents::patch))
            .header("If-Match", IF_MATCH)
            .body::<docs::PatchBody>()
            .reply(document(200, "merged (RFC 7396)"))
            .fails(&[409, 412]),
        data(
            M::DELETE,
            "/api/v1/collections/{collection}/documents/{id}",
            P::DocumentsDelete,
            delete(documents::delete),
        )
        .header("If-Match", IF_MATCH)
        .no_content()
        .fails(&[409, 412]),
        admin(M::GET, "/api/v1/admin/audit", P::AuditRead, get(admin::audit))
            .query::<admin::AuditQuery>()
            .ok::<admin::AuditPage>(),
        admin(M::GET, "/api/v1/admin/audit/verify", P::AuditVerify, get(admin::verify)).ok::<core::FullVerification>(),
        admin(M::GET, "/api/v1/admin/keys", P::KeysRead, get(keys::show)).ok::<core::rotation::KeysView>(),
        admin(M::POST, "/api/v1/admin/keys/rotate", P::KeysRotate, post(keys::rotate))
            .optional_body::<keys::RotateRequest>()
            .ok::<core::rotation::KeysView>()
            .fails(&[409]),
        admin(M::POST, "/api/v1/admin/backup", P::BackupCreate, post(backups::create))
            .optional_body::<backups::CreateBackup>()
            .created::<core::backup::BackupMeta>()
            .fails(&[404]),
        admin(M::GET, "/api/v1/admin/backups", P::BackupRead, get(backups::list)).ok::<backups::BackupsPage>(),
        admin(M::POST, "/api/v1/admin/backups/{id}/verify", P::BackupRead, post(backups::verify))
            .ok::<core::backup::BackupVerification>(),
        admin(M::POST, "/api/v1/gdpr/verification", P::GdprVerify, post(gdpr::issue_verification))
            .body::<gd::VerificationRequest>()
            .created::<core::IssuedVerification>(),
        admin(M::DELETE, "/api/v1/gdpr/erasure", P::GdprErase, delete(gdpr::erase))
            .erasure_fields()
            .ok::<gd::ErasureReport>()
            .fails(&[409]),
        admin(M::GET, "/api/v1/gdpr/erasure/{id}", P::GdprErase, get(gdpr::erasure_status))
            .ok::<core::ErasureReceipt>(),
        admin(M::GET, "/api/v1/gdpr/export", P::GdprExport, get(gdpr::export))
            .query::<gd::ExportQuery>()
            .header("X-Verification-Token", VERIFICATION)
            .reply(export_download()),
        admin(M::GET, "/api/v1/gdpr/access", P::GdprAccess, get(gdpr::access))
            .query::<gd::SubjectQuery>()
            .ok::<core::AccessSummary>(),
        admin(M::POST, "/api/v1/gdpr/consent", P::GdprConsent, post(gdpr::record_consent))
            .body::<gd::ConsentRequest>()
            .created::<core::ConsentView>(),
        admin(M::GET, "/api/v1/gdpr/consent", P::GdprConsent, get(gdpr::consent))
            .query::<gd::SubjectQuery>()
            .ok::<core::ConsentStatus>(),
        admin(M::GET, "/api/v1/ccpa/access", P::CcpaAccess, get(ccpa::access))
            .query::<ccpa::ConsumerQuery>()
            .ok::<core::AccessSummary>(),
        admin(M::DELETE, "/api/v1/ccpa/delete", P::CcpaDelete, delete(ccpa::delete))
            .erasure_fields()
            .ok::<ccpa::DeletionReport>()
            .fails(&[409]),
        admin(M::GET, "/api/v1/ccpa/delete/{id}", P::CcpaDelete, get(ccpa::deletion_status))
            .ok::<core::ErasureReceipt>(),
        admin(M::POST, "/api/v1/ccpa/opt-out", P::CcpaOptOut, post(ccpa::opt_out))
            .body::<ccpa::OptOutRequest>()
            .created::<core::OptOutView>(),
        admin(M::GET, "/api/v1/admin/compliance/status", P::ComplianceRead, get(compliance::status))
            .ok::<core::compliance::ComplianceStatus>(),
        admin(M::GET, "/api/v1/admin/compliance/soc2-report", P::ComplianceRead, get(compliance::soc2_report))
            .query::<compliance::ReportQuery>()
            .reply(Reply::json(200, "`{report, signature: {alg, kid, value}}`", openapi::any_object)),
        admin(M::POST, "/api/v1/admin/legal-holds", P::ComplianceLegalHold, post(retention::place))
            .body::<retention::PlaceHold>()
            .created::<core::HoldView>(),
        admin(M::GET, "/api/v1/admin/legal-holds", P::ComplianceLegalHold, get(retention::list))
            .query::<retention::HoldQuery>()
            .ok::<retention::HoldList>(),
        admin(M::DELETE, "/api/v1/admin/legal-holds/{hold_id}", P::ComplianceLegalHold, delete(retention::release))
            .ok::<core::HoldView>()
            .fails(&[409]),
        admin(M::GET, "/api/v1/admin/security/alerts", P::SecurityRead, get(security::alerts))
            .query::<sec::AlertQuery>()
            .ok::<sec::AlertsPage>(),
        admin(
            M::POST,
            "/api/v1/admin/security/alerts/{id}/acknowledge",
            P::SecurityManage,
            post(security::acknowledge),
        )
        .ok::<sec::AlertView>(),
        admin(M::POST, "/api/v1/admin/security/alerts/{id}/resolve", P::SecurityManage, post(security::resolve))
            .ok::<sec::AlertView>(),
        admin(M::POST, "/api/v1/admin/security/block-ip", P::SecurityManage, post(security::block))
            .body::<sec::BlockRequest>()
            .created::<core::security::BlockView>(),
        admin(M::GET, "/api/v1/admin/security/blocked-ips", P::SecurityRead, get(security::blocked))
            .ok::<sec::BlocksPage>(),
        admin(M::DELETE, "/api/v1/admin/security/blocked-ips/{ip}", P::SecurityManage, delete(security::unblock))
            .no_content()
            .fails(&[400]),
    ]
}

const IF_MATCH: &str = "an `ETag` of this document (or `*`): refused with 412 unless it is the current version";
const VERIFICATION: &str = "the subject's verification token (instead of the query string, which proxies log)";

/// A login answer: a bearer session, an MFA challenge, or (browser mode) a cookie session.
fn login_answer() -> Reply {
    fn schema(found: &mut openapi::Found) -> serde_json::Value {
        use crate::handlers::auth::{CookieSession, LoginResponse};
        let one_of = [openapi::schema_ref::<LoginResponse>(found), openapi::schema_ref::<CookieSession>(found)];
        serde_json::json!({ "oneOf": one_of })
    }
    Reply::json(200, "a session (or, with MFA on, the challenge for `mfa/verify`)", schema)
}

/// The answer of an MFA enrolment: the login answer's fields beside the recovery codes.
fn confirm_answer(found: &mut openapi::Found) -> serde_json::Value {
    use crate::handlers::auth::{CookieSession, LoginResponse};
    let session = [openapi::schema_ref::<LoginResponse>(found), openapi::schema_ref::<CookieSession>(found)];
    let enrolled = openapi::schema_ref::<crate::handlers::mfa::Enrolled>(found);
    serde_json::json!({ "allOf": [{ "oneOf": session }, enrolled] })
}

fn document(status: u16, description: &'static str) -> Reply {
    Reply::json(status, description, openapi::schema_ref::<rampart_core::Document>)
        .with_header("ETag", "the document's version, for `If-Match`")
}

/// `GET /metrics`: the Prometheus text exposition format.
fn prometheus_text() -> Reply {
    Reply {
        status: 200,
        description: "this node's metrics in the Prometheus text format (version 0.0.4)",
        bodies: vec![("text/plain", openapi::text)],
        headers: Vec::new(),
    }
}

/// The export download, in the format `format` asked for.
fn export_download() -> Reply {
    Reply {
        status: 200,
        description: "the subject's data as a download (`Content-Disposition: attachment`)",
        bodies: vec![
            ("application/json", openapi::any_object),
            ("text/csv", openapi::text),
            ("application/xml", openapi::text),
        ],
        headers: vec![("Content-Disposition", "`attachment` with the export's file name")],
    }
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

/// The OpenAPI document of every route, as JSON (built once, at start).
pub(crate) fn openapi_json(version: &str) -> axum::body::Bytes {
    let routes = routes();
    let documented: Vec<(RouteInfo, &Doc)> = routes.iter().map(|r| (r.info.clone(), &r.doc)).collect();
    let (doc, _) = openapi::build(&documented, version);
    // A tree of strings, numbers and maps with string keys: serializing cannot fail.
    axum::body::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
}

async fn openapi_document(
    _: Public,
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let content_type = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (content_type, state.openapi.clone()).into_response()
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

    fn document() -> serde_json::Value {
        serde_json::from_slice(&openapi_json("test")).unwrap()
    }

    /// Every `$ref` in `v`.
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc = document();
        let inventory = route_inventory();
        for r in &inventory {
            let method = r.method.as_str().to_ascii_lowercase();
            let op = &doc["paths"][r.path][&method];
            assert!(op.is_object(), "{} {} is missing from the OpenAPI document", r.method, r.path);
            let responses = op["responses"].as_object().unwrap();
            let what = format!("{} {}", r.method, r.path);
            assert!(responses.keys().any(|s| s.starts_with('2') || s.starts_with('3')), "{what}: no success answer");
            for s in ["403", "429"] {
                assert!(responses.contains_key(s), "{what}: no {s}");
            }
            if r.access == Access::Public {
                assert_eq!(op["security"], serde_json::json!([]), "{what}");
            } else {
                assert!(responses.contains_key("401"), "{what}: no 401");
                assert!(op["security"].as_array().is_some_and(|s| !s.is_empty()), "{what}: no security");
            }
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            let in_path: Vec<&str> =
                r.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            assert_eq!(declared, in_path, "{what}: path parameters");
        }
        let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, inventory.len(), "the document has operations the router does not serve");
    }

    #[test]
    fn the_openapi_document_refers_only_to_schemas_it_declares_and_no_name_twice() {
        let routes = routes();
        let documented: Vec<(RouteInfo, &Doc)> = routes.iter().map(|r| (r.info.clone(), &r.doc)).collect();
        let (doc, clashes) = openapi::build(&documented, "test");
        assert!(clashes.is_empty(), "two types claim the schema names {clashes:?}");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "{}", found.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r} is not declared");
        }
        assert!(doc["components"]["schemas"]["Error"]["required"].as_array().is_some_and(|r| r.len() == 3));
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes.keys().map(String::as_str).collect::<Vec<_>>(), ["bearer", "csrf_token", "session_cookie"]);
    }
}
