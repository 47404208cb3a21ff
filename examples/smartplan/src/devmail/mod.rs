//! The dev mailbox and SMS outbox (demo mode only).

use axum::Router;

use crate::state::AppState;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
}
