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
use serde_json::{json, Value};

use crate::extract::Public;
use crate::AppState;

/// Liveness: status and version only, nothing an attacker could use.
pub(crate) async fn health(_: Public, State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "version": state.settings.version }))
}
