pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod backups;
pub(crate) mod collections;
pub(crate) mod documents;
pub(crate) mod gdpr;
pub(crate) mod keys;
pub(crate) mod mfa;
pub(crate) mod roles;
pub(crate) mod security;
pub(crate) mod users;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::extract::Public;
use crate::AppState;

/// `GET /health`: status and version only, nothing an attacker could use.
#[derive(Serialize)]
pub(crate) struct Health {
    /// Always `"ok"`: an answer at all means the server is up.
    status: &'static str,
    version: &'static str,
}

/// Liveness.
pub(crate) async fn health(_: Public, State(state): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok", version: state.settings.version })
}
