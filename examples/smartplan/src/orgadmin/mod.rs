//! Organization administration for contact persons and delegates.

use axum::Router;

use crate::state::AppState;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
}
