use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rampart_core::{Document, DocumentChange, DocumentList, ListParams};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

fn etag(version: u64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn with_etag(status: StatusCode, doc: Document) -> Response {
    let tag = etag(doc.version);
    let mut res = (status, Json(doc)).into_response();
    res.headers_mut().insert(header::ETAG, tag);
    res
}

/// No document has this version (they start at 1): what a tag that is not one of ours
/// stands for, so it fails the precondition once the rest of the request is checked.
const NO_VERSION: u64 = 0;

/// `If-Match`: `None` when absent or `*`; a version otherwise (`NO_VERSION` for a tag that
/// is not one of ours, which can never match).
fn if_match(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::IF_MATCH)?;
    let Ok(text) = v.to_str().map(str::trim) else { return Some(NO_VERSION) };
    if text == "*" {
        return None;
    }
    let text = text.strip_prefix("W/").unwrap_or(text);
    let version = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse::<u64>().ok());
    Some(version.unwrap_or(NO_VERSION))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentBody {
    /// Typed as an object, so any other JSON is refused before the store is read.
    #[schema(value_type = Object)]
    data: Map<String, Value>,
    #[schema(value_type = Option<rampart_types::SubjectId>)]
    subject_id: Option<String>,
}

pub(crate) async fn create(
    auth: Authz<perm::DocumentsWrite>,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<DocumentBody>,
) -> ApiResult<Response> {
    let doc = state.core.documents().insert_document(&auth, Value::Object(b.data), b.subject_id).await?;
    Ok(with_etag(StatusCode::CREATED, doc))
}

pub(crate) async fn get(
    auth: Authz<perm::DocumentsRead>,
    State(state): State<AppState>,
    Path((_collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let doc = state.core.documents().get_document(&auth, &id).await?;
    let tag = etag(doc.version);
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == tag) {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut().insert(header::ETAG, tag);
        return Ok(res);
    }
    Ok(with_etag(StatusCode::OK, doc))
}

pub(crate) async fn replace(
    auth: Authz<perm::DocumentsWrite>,
    State(state): State<AppState>,
    Path((_collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<DocumentBody>,
) -> ApiResult<Response> {
    let change = DocumentChange::Replace { data: Value::Object(b.data), subject_id: b.subject_id };
    let doc = state.core.documents().modify_document(&auth, &id, if_match(&headers), change).await?;
    Ok(with_etag(StatusCode::OK, doc))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    /// A JSON merge patch (RFC 7396) of the document's data.
    #[schema(value_type = Object)]
    data: Map<String, Value>,
}

pub(crate) async fn patch(
    auth: Authz<perm::DocumentsWrite>,
    State(state): State<AppState>,
    Path((_collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(b): ApiJson<PatchBody>,
) -> ApiResult<Response> {
    let change = DocumentChange::MergePatch(Value::Object(b.data));
    let doc = state.core.documents().modify_document(&auth, &id, if_match(&headers), change).await?;
    Ok(with_etag(StatusCode::OK, doc))
}

pub(crate) async fn delete(
    auth: Authz<perm::DocumentsDelete>,
    State(state): State<AppState>,
    Path((_collection, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    state.core.documents().delete_document(&auth, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

const MAX_FILTERS: usize = 16;

/// The list query's named parameters, for the OpenAPI document; `list_params` reads them
/// (any other parameter is an equality filter on an indexed field).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ListQuery {
    /// Page size.
    #[param(minimum = 1)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only the documents of this data subject.
    subject_id: Option<String>,
}

pub(crate) async fn list(
    auth: Authz<perm::DocumentsRead>,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> ApiResult<Json<DocumentList>> {
    let p = list_params(pairs)?;
    Ok(Json(state.core.documents().list_documents(&auth, p).await?))
}

/// The list endpoint's query: `limit`, `cursor`, `subject_id`, and field filters.
fn list_params(pairs: Vec<(String, String)>) -> ApiResult<ListParams> {
    let mut p = ListParams::default();
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                let n = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(Some("limit".into()), "limit: must be a positive integer"))?;
                p.limit = Some(n);
            }
            "cursor" => p.cursor = Some(v),
            "subject_id" => p.subject_id = Some(v),
            _ => p.filters.push((k, v)),
        }
    }
    if p.filters.len() > MAX_FILTERS {
        return Err(ApiError::bad_request(None, "at most 16 field filters"));
    }
    Ok(p)
}

/// Exists for the `query_cursor` fuzz target (fuzz/): the list query as the handler reads it.
#[doc(hidden)]
pub fn fuzz_list_query(query: &str) -> Option<ListParams> {
    // `None` where the request is refused. The cursor's own check (a non-negative
    // integer) runs later, inside `Core::list_documents`, behind the store.
    let uri: axum::http::Uri = format!("/api/v1/collections/c/documents?{query}").parse().ok()?;
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    list_params(pairs).ok()
}
