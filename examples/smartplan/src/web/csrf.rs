//! CSRF protection: every form carries a hidden `csrf` field; [`protect`] (a middleware
//! installed by `app()`) rejects a state-changing request without a valid one.
//!
//! The token is a signed double-submit token: the browser holds a random value in the
//! HttpOnly cookie `smartplan_csrf`, and a form's token is the MAC of that value under a key
//! derived from the server secret. A page gets the token through the [`Csrf`] extractor (or
//! [`crate::web::PageContext`]); the middleware sets the cookie when the browser has none
//! (on the exempt paths below only when the answer handed out a token).
//!
//! Exempt: `/api/` (bearer API keys, no cookies), `/saml/`, `/signin/federated/` and
//! `/signin/saml/acs` (they
//! receive cross-site POSTs from identity and service providers by design, and check their
//! own signed messages). A token may also come in the `X-CSRF-Token` header.

use std::sync::{Arc, OnceLock};

use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use crate::web::cookies::{self, CSRF_COOKIE, SetCookie};
use crate::web::{WebError, mac_hex, same};

/// The name of the hidden form field.
pub const FIELD: &str = "csrf";
/// The header a script may use instead.
pub const HEADER: &str = "x-csrf-token";

/// The CSRF token of the current request, for the hidden `csrf` field of forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csrf(pub String);

impl Csrf {
    /// The token text.
    pub fn token(&self) -> &str {
        &self.0
    }
}

impl FromRequestParts<AppState> for Csrf {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let seed = parts
            .extensions
            .get::<CsrfSeed>()
            .ok_or_else(|| WebError::internal("the CSRF layer is not installed").into_response())?;
        Ok(Self(token_for(state, seed.value(state))))
    }
}

/// The browser's CSRF cookie value, left by [`protect`] for the [`Csrf`] extractor, which
/// computes the token (a MAC) only when a page asks for it. A browser without a cookie gets a
/// new value with any page; on the exempt paths (single sign-on, the API) only when the answer
/// hands out a token, so that those answers cost no random value, no MAC and no cookie.
#[derive(Clone)]
struct CsrfSeed {
    existing: Option<String>,
    new: Arc<OnceLock<String>>,
}

impl CsrfSeed {
    /// The browser's value, or the new one (made on first use).
    fn value(&self, state: &AppState) -> &str {
        match &self.existing {
            Some(seed) => seed,
            None => self.new.get_or_init(|| {
                let mut bytes = [0u8; 32];
                state.ciam.random().fill(&mut bytes);
                hex::encode(bytes)
            }),
        }
    }
}

/// Paths that do not need a token.
pub fn is_exempt(path: &str) -> bool {
    path.starts_with("/api/")
        || path.starts_with("/saml/")
        || path.starts_with("/signin/federated/")
        || path == "/signin/saml/acs"
}

/// The form token for the CSRF cookie value `seed` (what the hidden `csrf` field must hold).
pub fn token_for(state: &AppState, seed: &str) -> String {
    mac_hex(&state.web_keys.csrf, &[b"csrf", seed.as_bytes()])
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The middleware: provides the token to handlers, checks it on state-changing requests, and
/// sets the CSRF cookie when missing.
pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let existing = cookies::get(request.headers(), CSRF_COOKIE)
        .filter(|seed| seed.len() == 64 && seed.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let seed = CsrfSeed {
        existing,
        new: Arc::new(OnceLock::new()),
    };
    let (mut parts, body) = request.into_parts();
    let exempt = is_exempt(parts.uri.path());
    if !exempt {
        // Pages: the browser gets its cookie with the first answer, form or not.
        seed.value(&state);
    }
    parts.extensions.insert(seed.clone());

    let body = if is_state_changing(&parts.method) && !exempt {
        let limit = state
            .config
            .limits
            .upload_bytes
            .max(state.config.limits.body_bytes);
        let bytes = match to_bytes(body, limit).await {
            Ok(bytes) => bytes,
            Err(_) => return WebError::payload_too_large(limit).into_response(),
        };
        let presented = presented_token(&parts, &bytes);
        // Only a browser that holds the cookie can present the matching token.
        let valid = seed.existing.as_ref().is_some_and(|existing| {
            let expected = token_for(&state, existing);
            presented.is_some_and(|token| same(token.trim(), &expected))
        });
        if !valid {
            return WebError::csrf().into_response();
        }
        Body::from(bytes)
    } else {
        body
    };

    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some(new_seed) = seed.new.get() {
        if !cookies::response_sets(response.headers(), CSRF_COOKIE) {
            SetCookie::new(CSRF_COOKIE, new_seed.clone(), state.config.is_https())
                .append_to(response.headers_mut());
        }
    }
    response
}

/// The token sent with a request: the header, the urlencoded field or the multipart field.
fn presented_token<'a>(parts: &'a Parts, body: &'a [u8]) -> Option<&'a str> {
    if let Some(value) = parts.headers.get(HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value);
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let text = std::str::from_utf8(body).ok();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = text?;
        return text
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == FIELD)
            .map(|(_, value)| value);
    }
    if content_type.starts_with("multipart/form-data") {
        let boundary = content_type
            .split(';')
            .filter_map(|part| part.trim().strip_prefix("boundary="))
            .next()?
            .trim_matches('"');
        return multipart_field(body, boundary, FIELD);
    }
    None
}

/// The value of the small text field `name` in a multipart body.
fn multipart_field<'a>(body: &'a [u8], boundary: &str, name: &str) -> Option<&'a str> {
    let delimiter = format!("--{boundary}");
    let wanted = format!("name=\"{name}\"");
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        let end = find(rest, delimiter.as_bytes()).unwrap_or(rest.len());
        let part = &rest[..end];
        let headers_end = find(part, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&part[..headers_end]).ok()?;
        let is_field = headers.lines().any(|line| {
            line.to_ascii_lowercase().starts_with("content-disposition")
                && line.split(';').any(|p| p.trim() == wanted)
        });
        if is_field {
            let value = &part[headers_end + 4..];
            let value = value.strip_suffix(b"\r\n").unwrap_or(value);
            return std::str::from_utf8(value).ok();
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_multipart_field() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc123\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\r\nemail\r\n--XyZ--\r\n";
        assert_eq!(multipart_field(body, "XyZ", "csrf"), Some("abc123"));
        assert_eq!(multipart_field(body, "XyZ", "other"), None);
    }

    #[test]
    fn exempt_paths() {
        assert!(is_exempt("/api/v1/invitations"));
        assert!(is_exempt("/saml/sso"));
        assert!(!is_exempt("/signin/password"));
        assert!(!is_exempt("/apix"));
    }
}
