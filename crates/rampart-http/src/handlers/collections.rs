use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rampart_core::{CollectionSpec, CollectionUpdate, CollectionView};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateCollection {
    #[schema(value_type = rampart_types::CollectionName)]
    name: String,
    #[serde(default)]
    #[schema(value_type = Vec<rampart_types::FieldPath>)]
    indexes: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<rampart_types::FieldPath>)]
    pii_fields: Vec<String>,
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 4294967295.0)]
    retention_days: Option<u32>,
    encrypted: Option<bool>,
}

pub(crate) async fn create(
    auth: Authz<perm::CollectionsCreate>,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<CreateCollection>,
) -> ApiResult<(StatusCode, Json<CollectionView>)> {
    let spec = CollectionSpec {
        name: b.name,
        indexes: b.indexes,
        pii_fields: b.pii_fields,
        retention_days: b.retention_days,
        encrypted: b.encrypted,
    };
    Ok((StatusCode::CREATED, Json(state.core.documents().create_collection(&auth, spec).await?)))
}

/// `GET /api/v1/collections`: the collections the caller may read.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct CollectionsPage {
    collections: Vec<CollectionView>,
}

pub(crate) async fn list(
    auth: Authz<perm::CollectionsRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<CollectionsPage>> {
    Ok(Json(CollectionsPage { collections: state.core.documents().list_collections(&auth).await? }))
}

pub(crate) async fn get(
    auth: Authz<perm::CollectionsRead>,
    State(state): State<AppState>,
) -> ApiResult<Json<CollectionView>> {
    Ok(Json(state.core.documents().get_collection(&auth).await?))
}

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub(crate) struct UpdateCollection {
    #[schema(value_type = Option<Vec<rampart_types::FieldPath>>)]
    indexes: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<rampart_types::FieldPath>>)]
    pii_fields: Option<Vec<String>>,
    /// A number sets retention; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 4294967295.0)]
    retention_days: Option<Option<u32>>,
}

/// Distinguishes an absent field (outer `None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(d).map(Some)
}

pub(crate) async fn update(
    auth: Authz<perm::CollectionsUpdate>,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<UpdateCollection>,
) -> ApiResult<Json<CollectionView>> {
    if b.indexes.is_none() && b.pii_fields.is_none() && b.retention_days.is_none() {
        return Err(ApiError::bad_request(None, "nothing to change: give indexes, pii_fields or retention_days"));
    }
    let up = CollectionUpdate { indexes: b.indexes, pii_fields: b.pii_fields, retention_days: b.retention_days };
    Ok(Json(state.core.documents().update_collection(&auth, up).await?))
}

pub(crate) async fn delete(
    auth: Authz<perm::CollectionsDelete>,
    State(state): State<AppState>,
) -> ApiResult<StatusCode> {
    state.core.documents().delete_collection(&auth).await?;
    Ok(StatusCode::NO_CONTENT)
}
