//! The SAML identity provider: metadata, single sign-on and single logout.

use axum::Router;

use crate::state::AppState;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
}
