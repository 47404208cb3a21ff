//! MySmartPlan: profile, email and phone change, MFA, sessions.

use axum::Router;

use crate::state::AppState;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
}
