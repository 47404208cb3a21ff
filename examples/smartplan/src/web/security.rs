//! Security headers on every response: a strict Content-Security-Policy (no inline script or
//! style, `frame-ancestors 'none'`), `X-Content-Type-Options`, `Referrer-Policy`,
//! `X-Frame-Options`, and HSTS when the base URL is https.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The Content-Security-Policy of every page. `form-action` allows https targets because the
/// SAML IdP posts its response to the service provider's ACS with an auto-submitting form
/// (which still works without JavaScript: the form has a button).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data: https:; font-src 'self'; connect-src 'self'; \
form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'; \
base-uri 'none'";

/// The middleware.
pub async fn headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if state.config.is_https() {
        set(
            headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    response
}
