//! The OpenAPI 3.1 document served at `GET /api/v1/openapi.json`, built once at start from
//! the route table (`routes::routes`): each entry names its request and response types,
//! whose schemas utoipa derives from the types the handlers use; what the table already
//! says adds the rest: path parameters from the path, who may call (security, 401/403),
//! the per-address and per-user budgets (429).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, ToSchema};

use crate::routes::{Access, RouteInfo};

/// Schemas found while documenting, by component name.
pub(crate) type Found = Vec<(String, RefOr<Schema>)>;
/// Writes a body's schema (a `$ref` into the components it adds to `found`).
pub(crate) type SchemaFn = fn(&mut Found) -> Value;

/// `$ref` to `T`'s schema, adding it and every schema it refers to.
pub(crate) fn schema_ref<T: ToSchema>(found: &mut Found) -> Value {
    let name = T::name().into_owned();
    found.push((name.clone(), T::schema()));
    T::schemas(found);
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Any JSON object (the document itself, signed reports).
pub(crate) fn any_object(_: &mut Found) -> Value {
    json!({ "type": "object" })
}

/// A download that is not JSON.
pub(crate) fn text(_: &mut Found) -> Value {
    json!({ "type": "string" })
}

/// One documented answer of an operation.
pub(crate) struct Reply {
    pub status: u16,
    pub description: &'static str,
    /// Content types and their schemas; empty for no body.
    pub bodies: Vec<(&'static str, SchemaFn)>,
    /// Response headers always sent with this answer.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Reply {
    pub(crate) fn json(status: u16, description: &'static str, schema: SchemaFn) -> Self {
        Self { status, description, bodies: vec![("application/json", schema)], headers: Vec::new() }
    }
    pub(crate) fn empty(status: u16, description: &'static str) -> Self {
        Self { status, description, bodies: Vec::new(), headers: Vec::new() }
    }
    pub(crate) fn with_header(mut self, name: &'static str, description: &'static str) -> Self {
        self.headers.push((name, description));
        self
    }
}

/// What a route's entry says about its operation beyond access and budget.
#[derive(Default)]
pub(crate) struct Doc {
    pub body: Option<(SchemaFn, bool)>,
    pub query: Option<fn() -> Vec<Parameter>>,
    /// Request headers the handler reads: name, description.
    pub headers: Vec<(&'static str, &'static str)>,
    pub replies: Vec<Reply>,
    /// Refusals beyond the ones the table implies (e.g. 409, 412).
    pub errors: Vec<u16>,
}

pub(crate) fn query_params<Q: IntoParams>() -> Vec<Parameter> {
    Q::into_params(|| Some(ParameterIn::Query))
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "invalid input; `field` names it when one field is at fault",
        401 => "no credentials, or expired or invalid ones",
        403 => "refused: missing permission, enrol-only session, CSRF check failed, or blocked client address",
        404 => "no such resource (or not visible to the caller)",
        408 => "the request took too long (slow body or slow handler)",
        409 => "conflicts with the current state (exists already, legal hold, ...)",
        412 => "`If-Match` does not name the current version",
        413 => "request body larger than the limit",
        415 => "the body is not `application/json`",
        422 => "the password does not meet the password policy",
        429 => "rate limited: retry after `Retry-After` seconds",
        503 => "a dependency (rate-limit store, identity provider) is unavailable; retry shortly",
        _ => "refused",
    }
}

fn error_reply(status: u16) -> Value {
    let mut r = json!({
        "description": error_description(status),
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    });
    let header = match status {
        401 => Some(("WWW-Authenticate", "`Bearer`")),
        429 => Some(("Retry-After", "seconds until the budget allows another request")),
        _ => None,
    };
    if let Some((name, description)) = header {
        r["headers"] = json!({ name: { "description": description, "schema": { "type": "string" } } });
    }
    r
}

/// `patch_api_v1_users_username` for `PATCH /api/v1/users/{username}`: unique, as method
/// and path are.
pub(crate) fn operation_id(info: &RouteInfo) -> String {
    let path: String = info.path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let words = path.split('_').filter(|w| !w.is_empty());
    std::iter::once(info.method.as_str().to_ascii_lowercase())
        .chain(words.map(str::to_owned))
        .collect::<Vec<_>>()
        .join("_")
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

fn operation(info: &RouteInfo, doc: &Doc, found: &mut Found) -> Value {
    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id(info)));
    op.insert("tags".into(), json!([format!("{:?}", info.policy.area)]));
    let permission = info.permission.map(|p| format!(" Needs permission `{}`.", p.as_str())).unwrap_or_default();
    let who = match info.access {
        Access::Public => "Open to everyone.",
        Access::SelfService => "The caller's own account.",
        Access::Enrolment => "The caller's own account; enrol-only sessions too.",
        Access::Permission => "",
    };
    op.insert("description".into(), json!(format!("{who}{permission}").trim()));
    let mut params = path_parameters(info.path);
    if let Some(query) = doc.query {
        params.extend(query().into_iter().filter_map(|p| serde_json::to_value(p).ok()));
    }
    for (name, description) in &doc.headers {
        params
            .push(json!({ "name": name, "in": "header", "description": description, "schema": { "type": "string" } }));
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some((schema, required)) = doc.body {
        op.insert(
            "requestBody".into(),
            json!({ "required": required, "content": { "application/json": { "schema": schema(found) } } }),
        );
    }
    let mut responses = Map::new();
    for reply in &doc.replies {
        let mut r = json!({ "description": reply.description });
        if !reply.bodies.is_empty() {
            let content: Map<String, Value> = reply
                .bodies
                .iter()
                .map(|(mime, schema)| ((*mime).to_owned(), json!({ "schema": schema(found) })))
                .collect();
            r["content"] = Value::Object(content);
        }
        if !reply.headers.is_empty() {
            let headers: Map<String, Value> = reply
                .headers
                .iter()
                .map(|(name, d)| {
                    ((*name).to_owned(), json!({ "description": d, "required": true, "schema": { "type": "string" } }))
                })
                .collect();
            r["headers"] = Value::Object(headers);
        }
        responses.insert(reply.status.to_string(), r);
    }
    for status in implied_errors(info, doc) {
        responses.entry(status.to_string()).or_insert_with(|| error_reply(status));
    }
    op.insert("responses".into(), Value::Object(responses));
    let security = match info.access {
        Access::Public => json!([]),
        _ => json!([{ "bearer": [] }, { "session_cookie": [], "csrf_token": [] }]),
    };
    op.insert("security".into(), security);
    Value::Object(op)
}

/// The refusals the table implies for a route, and those its entry adds.
fn implied_errors(info: &RouteInfo, doc: &Doc) -> Vec<u16> {
    // Every route: a blocked address (403), the per-address budget (429), a handler past
    // the request timeout (408), an unreachable fail-closed rate-limit store (503).
    let mut statuses = vec![403, 408, 429, 503];
    if info.access != Access::Public {
        statuses.push(401);
    }
    if doc.body.is_some() {
        statuses.extend([400, 413, 415]);
    }
    if doc.query.is_some() {
        statuses.push(400);
    }
    if info.path.contains('{') {
        statuses.push(404);
    }
    statuses.extend(&doc.errors);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// The document, and the names of schemas two different types claimed (must be none).
pub(crate) fn build(routes: &[(RouteInfo, &Doc)], version: &str) -> (Value, Vec<String>) {
    let mut found = Found::new();
    let error = schema_ref::<crate::error::ErrorResponse>(&mut found);
    debug_assert!(error["$ref"] == "#/components/schemas/Error");
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (info, doc) in routes {
        let op = operation(info, doc, &mut found);
        paths.entry(info.path).or_default().insert(info.method.as_str().to_ascii_lowercase(), op);
    }
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut clashes = Vec::new();
    for (name, schema) in found {
        let schema = serde_json::to_value(schema).unwrap_or(Value::Null);
        match schemas.get(&name) {
            Some(seen) if *seen != schema => clashes.push(name),
            Some(_) => {}
            None => {
                schemas.insert(name, schema);
            }
        }
    }
    let doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Rampart",
            "version": version,
            "description": "Rampart's HTTP API. Errors are `{error, code, request_id}` (schema `Error`). \
                Authenticate with `Authorization: Bearer <token>` from `POST /api/v1/auth/login`, or in \
                browser mode (`?mode=cookie`) with the session cookie plus `X-CSRF-Token` on unsafe methods. \
                Every response carries `X-Request-Id` and, with rate limiting on, `X-RateLimit-*`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A session token from login, refresh or MFA verification.",
                },
                "session_cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": crate::extract::SESSION_COOKIE,
                    "description": "Browser mode (`POST /api/v1/auth/login?mode=cookie`): HttpOnly, Secure, SameSite=Strict.",
                },
                "csrf_token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-CSRF-Token",
                    "description": "With the session cookie, on unsafe methods: the login answer's `csrf_token`, sent from an allowed origin.",
                },
            },
        },
    });
    (doc, clashes)
}
