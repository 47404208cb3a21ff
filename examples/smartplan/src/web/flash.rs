//! Flash messages: one message carried to the next page in a MAC-protected cookie (set on a
//! redirect after a successful form, shown once by the layout, then removed).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::state::AppState;
use crate::web::cookies::{self, FLASH_COOKIE, SetCookie};
use crate::web::{mac_hex, same};

/// How a flash message looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashLevel {
    /// Something worked.
    Success,
    /// For information.
    Info,
    /// Something to look at.
    Warning,
}

impl FlashLevel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Info => "info",
            Self::Warning => "warning",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Self::Success),
            "info" => Some(Self::Info),
            "warning" => Some(Self::Warning),
            _ => None,
        }
    }
}

/// A message for the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flash {
    /// How it looks.
    pub level: FlashLevel,
    /// The text (escaped when shown).
    pub message: String,
}

impl Flash {
    /// A success message.
    pub fn success(message: impl Into<String>) -> Self {
        Self {
            level: FlashLevel::Success,
            message: message.into(),
        }
    }

    /// An informational message.
    pub fn info(message: impl Into<String>) -> Self {
        Self {
            level: FlashLevel::Info,
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(message: impl Into<String>) -> Self {
        Self {
            level: FlashLevel::Warning,
            message: message.into(),
        }
    }

    /// The CSS class suffix (`success`, `info`, `warning`).
    pub fn level_name(&self) -> &'static str {
        self.level.as_str()
    }

    fn encode(&self, state: &AppState) -> String {
        let payload = format!(
            "{}.{}",
            self.level.as_str(),
            URL_SAFE_NO_PAD.encode(self.message.as_bytes())
        );
        let mac = mac_hex(&state.web_keys.flash, &[payload.as_bytes()]);
        format!("{payload}.{mac}")
    }

    fn decode(state: &AppState, value: &str) -> Option<Self> {
        let (payload, mac) = value.rsplit_once('.')?;
        if !same(mac, &mac_hex(&state.web_keys.flash, &[payload.as_bytes()])) {
            return None;
        }
        let (level, message) = payload.split_once('.')?;
        let message = String::from_utf8(URL_SAFE_NO_PAD.decode(message).ok()?).ok()?;
        Some(Self {
            level: FlashLevel::parse(level)?,
            message,
        })
    }

    /// The cookie carrying this message.
    pub fn cookie(&self, state: &AppState) -> SetCookie {
        SetCookie::new(FLASH_COOKIE, self.encode(state), state.config.is_https()).max_age(300)
    }
}

/// A `303 See Other` to `to` that shows `flash` on the next page.
pub fn redirect_with(state: &AppState, to: &str, flash: Flash) -> Response {
    let mut response = Redirect::to(to).into_response();
    flash.cookie(state).append_to(response.headers_mut());
    response
}

/// The flash message that arrived with this request (a request extension set by [`carry`]).
#[derive(Clone, Debug, Default)]
pub struct IncomingFlash(pub Option<Flash>);

/// The middleware: reads the flash cookie into [`IncomingFlash`] and removes it once shown.
pub async fn carry(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let incoming = cookies::get(request.headers(), FLASH_COOKIE).map(str::to_owned);
    let flash = incoming
        .as_deref()
        .and_then(|value| Flash::decode(&state, value));
    let is_page_view = request.method() == axum::http::Method::GET;
    request.extensions_mut().insert(IncomingFlash(flash));
    let mut response = next.run(request).await;
    // Only an HTML page view consumes the message (not a redirect or a stylesheet).
    let consumed = is_page_view
        && response.status().is_success()
        && response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
    if incoming.is_some() && consumed && !cookies::response_sets(response.headers(), FLASH_COOKIE) {
        SetCookie::removal(FLASH_COOKIE, state.config.is_https()).append_to(response.headers_mut());
    }
    response
}
