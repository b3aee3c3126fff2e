pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod backups;
pub(crate) mod ccpa;
pub(crate) mod collections;
pub(crate) mod compliance;
pub(crate) mod documents;
pub(crate) mod gdpr;
pub(crate) mod keys;
pub(crate) mod mfa;
pub(crate) mod oidc;
pub(crate) mod retention;
pub(crate) mod roles;
pub(crate) mod security;
pub(crate) mod users;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::extract::{Authz, Public};
use crate::perm;
use crate::AppState;
use rampart_core::LimiterStatus;

/// `GET /health`: status and version only, nothing an attacker could use.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Health {
    /// Always `"ok"`: an answer at all means the server is up.
    status: &'static str,
    version: &'static str,
}

/// Liveness.
pub(crate) async fn health(_: Public, State(state): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok", version: state.settings.version })
}

/// `GET /metrics`: Prometheus text format (`metrics.read`; admin area, so the admin
/// address allow-list applies). Labels hold route templates and fixed names only.
pub(crate) async fn metrics(
    auth: Authz<perm::MetricsRead>,
    State(state): State<AppState>,
) -> crate::error::ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let mut body = state.core.telemetry().render(&auth).await?;
    state.http_metrics.render(&mut body);
    if let Some(at) = state.backups.newest_backup_at(&auth).await? {
        let age = (state.core.clock().now().as_millis() - at.as_millis()).max(0) / 1000;
        rampart_core::metrics::gauge(&mut body, "rampart_last_backup_age_seconds", "Age of the newest backup.", age);
    }
    let content_type = [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    Ok((content_type, body).into_response())
}

/// `GET /api/v1/admin/health`: what operators need and the public endpoint must not say:
/// this node's name and whether its dependencies answer.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct HealthDetail {
    status: &'static str,
    version: &'static str,
    node_id: String,
    /// Whether this node holds the lease and so runs the one-node-at-a-time jobs (sweeps,
    /// scheduled rotation, re-encryption, webhook delivery).
    runs_background_jobs: bool,
    /// Where rate-limit budgets are kept and whether that store answers.
    rate_limit: LimiterStatus,
}

/// Operators' health detail (`metrics.read`). `status` is `degraded` while the rate-limit
/// store is unreachable: the node serves, but budgets follow their fail modes.
pub(crate) async fn health_detail(_: Authz<perm::MetricsRead>, State(state): State<AppState>) -> Json<HealthDetail> {
    let rate_limit = state.limits.status();
    Json(HealthDetail {
        status: if rate_limit.reachable { "ok" } else { "degraded" },
        version: state.settings.version,
        node_id: state.settings.node_id.clone(),
        runs_background_jobs: state.lease.holds(),
        rate_limit,
    })
}
