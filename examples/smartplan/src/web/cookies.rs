//! Reading request cookies and writing `Set-Cookie` headers with the server's rules:
//! always `HttpOnly`, `SameSite=Lax` and `Path=/`, `Secure` when the base URL is https.

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie (holds the ciam session token).
pub const SESSION_COOKIE: &str = "smartplan_session";
/// The login-attempt cookie (holds the sealed attempt token between sign-in steps).
pub const LOGIN_COOKIE: &str = "smartplan_login";
/// The CSRF cookie (a random value the form tokens are bound to).
pub const CSRF_COOKIE: &str = "smartplan_csrf";
/// The flash-message cookie (one message for the next page, MAC-protected).
pub const FLASH_COOKIE: &str = "smartplan_flash";

/// The value of cookie `name` in the request, if present (the first one wins).
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|value| !value.is_empty())
}

/// A cookie to set.
#[derive(Clone, Debug)]
pub struct SetCookie {
    name: &'static str,
    value: String,
    max_age_seconds: Option<i64>,
    secure: bool,
}

impl SetCookie {
    /// A session cookie (no `Max-Age`: ends with the browser unless the server ends it first).
    pub fn new(name: &'static str, value: impl Into<String>, secure: bool) -> Self {
        Self {
            name,
            value: value.into(),
            max_age_seconds: None,
            secure,
        }
    }

    /// With a `Max-Age`.
    pub fn max_age(mut self, seconds: i64) -> Self {
        self.max_age_seconds = Some(seconds);
        self
    }

    /// A cookie that removes `name`.
    pub fn removal(name: &'static str, secure: bool) -> Self {
        Self::new(name, "", secure).max_age(0)
    }

    /// The header value.
    pub fn header_value(&self) -> Option<HeaderValue> {
        let mut text = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax",
            self.name, self.value
        );
        if let Some(seconds) = self.max_age_seconds {
            text.push_str(&format!("; Max-Age={seconds}"));
        }
        if self.secure {
            text.push_str("; Secure");
        }
        HeaderValue::from_str(&text).ok()
    }

    /// Appends the header to `headers`.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        if let Some(value) = self.header_value() {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// Whether the response already sets cookie `name`.
pub fn response_sets(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split('=').next() == Some(name))
}
