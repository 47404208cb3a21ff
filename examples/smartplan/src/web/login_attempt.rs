//! The login-attempt cookie `smartplan_login`: carries the sealed `AttemptToken` of a sign-in
//! in progress between its steps (password, SMS code, TOTP), for at most the attempt's life.

use axum::http::HeaderMap;
use ciam_core::login::AttemptToken;

use crate::state::AppState;
use crate::web::cookies::{self, LOGIN_COOKIE, SetCookie};

/// How long the browser keeps the cookie (the attempt itself expires earlier in ciam-core).
const MAX_AGE_SECONDS: i64 = 15 * 60;

/// The attempt token in the request, if any.
pub fn read(headers: &HeaderMap) -> Option<AttemptToken> {
    cookies::get(headers, LOGIN_COOKIE).map(AttemptToken::from_presented)
}

/// The cookie that carries `token` to the next step.
pub fn cookie(state: &AppState, token: &AttemptToken) -> SetCookie {
    SetCookie::new(
        LOGIN_COOKIE,
        token.expose().to_owned(),
        state.config.is_https(),
    )
    .max_age(MAX_AGE_SECONDS)
}

/// The cookie that ends the attempt in the browser (after sign-in or when starting over).
pub fn clear(state: &AppState) -> SetCookie {
    SetCookie::removal(LOGIN_COOKIE, state.config.is_https())
}
