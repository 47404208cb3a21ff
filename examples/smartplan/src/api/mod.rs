//! The CRM REST API under `/api/v1` and its OpenAPI document at `/api/openapi.json`.

use axum::Router;

use crate::state::AppState;

/// The routes of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
}
