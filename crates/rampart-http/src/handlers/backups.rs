use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rampart_core::backup::{BackupMeta, BackupVerification};
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::Authz;
use crate::json::ApiJson;
use crate::perm;
use crate::AppState;

#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBackup {
    #[serde(default = "yes")]
    encrypted: bool,
    compliance_mode: Option<String>,
}

fn yes() -> bool {
    true
}

pub(crate) async fn create(
    auth: Authz<perm::BackupCreate>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateBackup>,
) -> ApiResult<(StatusCode, Json<BackupMeta>)> {
    let meta = state.backups.create_backup(&auth, req.encrypted, req.compliance_mode).await?;
    Ok((StatusCode::CREATED, Json(meta)))
}

/// `GET /api/v1/admin/backups`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct BackupsPage {
    backups: Vec<BackupMeta>,
}

pub(crate) async fn list(auth: Authz<perm::BackupRead>, State(state): State<AppState>) -> ApiResult<Json<BackupsPage>> {
    let backups = state.backups.list_backups(&auth).await?;
    Ok(Json(BackupsPage { backups }))
}

pub(crate) async fn verify(
    auth: Authz<perm::BackupRead>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<BackupVerification>> {
    Ok(Json(state.backups.verify_backup(&auth, &id).await?))
}
