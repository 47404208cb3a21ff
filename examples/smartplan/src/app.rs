//! [`app`]: the whole HTTP application, every module's routes merged, then the shared layers.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::IntoResponse;

use crate::state::AppState;
use crate::web::{self, WebError};

/// Builds the application for `state`.
///
/// Layers, outermost first: security headers, CSRF (checks state-changing form posts and
/// provides the token), flash messages, the body limit, then latency metrics per route.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.limits.body_bytes;
    Router::new()
        .merge(crate::ops::routes())
        .merge(crate::api::routes())
        .merge(crate::signin::routes())
        .merge(crate::invitations::routes())
        .merge(crate::registration::routes())
        .merge(crate::account::routes())
        .merge(crate::devmail::routes())
        .merge(crate::saml::routes())
        .merge(crate::orgadmin::routes())
        .merge(crate::backoffice::routes())
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::ops::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            web::flash::carry,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            web::csrf::protect,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            web::security::headers,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    let error = WebError::not_found("there is no page at this address");
    if uri.path().starts_with("/api/") {
        web::ApiError(error).into_response()
    } else {
        error.into_response()
    }
}
