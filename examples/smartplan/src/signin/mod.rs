//! Sign-in: identifier first, then password, SMS code or TOTP; Google; company login.

use axum::Router;

use crate::state::AppState;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
}
