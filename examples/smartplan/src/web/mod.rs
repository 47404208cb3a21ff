//! The page toolkit every page module uses: rendering, the one error-to-response place,
//! sessions, the login-attempt cookie, CSRF, flash messages, forms, the client address,
//! security headers and throttling.

pub mod client_addr;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod flash;
pub mod forms;
pub mod login_attempt;
pub mod page;
pub mod security;
pub mod session;
pub mod throttle;

use askama::Template;
use axum::response::Html;

pub use client_addr::ClientAddr;
pub use csrf::Csrf;
pub use error::{ApiError, WebError};
pub use flash::{Flash, FlashLevel};
pub use forms::{FieldErrors, Form, Query};
pub use page::{Branding, Nav, Page, PageContext};
pub use session::{MaybeSignedIn, SignedIn};

use crate::config::ServerSecret;

/// Renders an askama template into an HTML response body.
pub fn render<T: Template>(template: &T) -> Result<Html<String>, WebError> {
    template
        .render()
        .map(Html)
        .map_err(|error| WebError::internal(format!("template failed: {error}")))
}

/// Keys derived from the server secret for the MACs of the web layer.
pub struct WebKeys {
    pub(crate) csrf: [u8; 32],
    pub(crate) flash: [u8; 32],
}

impl WebKeys {
    /// Derives the keys.
    pub fn from_secret(secret: &ServerSecret) -> Self {
        Self {
            csrf: secret.derive("smartplan csrf"),
            flash: secret.derive("smartplan flash"),
        }
    }
}

impl std::fmt::Debug for WebKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebKeys(<redacted>)")
    }
}

/// HMAC-SHA256 of `data` under `key`, hex.
pub(crate) fn mac_hex(key: &[u8; 32], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two strings.
pub(crate) fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `next` is a safe place to send someone after sign-in: a local path only.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(next)
}
