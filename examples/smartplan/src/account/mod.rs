//! MySmartPlan (`/account`): the signed-in person's own pages. The overview shows the profile
//! (with the name form), the organizations and business roles, and the services the person can
//! open; the other pages change the email (code to the new address), the phone (code by SMS;
//! remove), the password (the current one needed; other sessions end), set up an
//! authenticator app (QR code, recovery codes shown once), and list the sessions ("sign out
//! the others"). Changing the email, the phone or the second factors needs a recent sign-in
//! ([`confirm`]: otherwise the person confirms their password first).

mod confirm;
mod contact;
mod mfa;

pub(crate) use mfa::{EnrolmentForms, enrollment_response, recovery_codes_response};
mod overview;
pub mod rules;
mod security;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/account", get(overview::show))
        .route("/account/name", post(overview::change_name))
        .route(
            "/account/email",
            get(contact::email_page).post(contact::request_email),
        )
        .route("/account/email/verify", post(contact::verify_email))
        .route(
            "/account/phone",
            get(contact::phone_page).post(contact::request_phone),
        )
        .route("/account/phone/verify", post(contact::verify_phone))
        .route(
            "/account/password",
            get(security::password_page).post(security::change_password),
        )
        .route("/account/sessions", get(security::sessions_page))
        .route("/account/sessions/others", post(security::sign_out_others))
        .route("/account/mfa", get(mfa::page))
        .route("/account/mfa/totp", post(mfa::start_totp))
        .route("/account/mfa/totp/confirm", post(mfa::confirm_totp))
        .route("/account/mfa/recovery-codes", post(mfa::new_recovery_codes))
        .route(
            "/account/confirm",
            get(confirm::page).post(confirm::confirm),
        )
        .route("/account/confirm/again", post(confirm::sign_in_again))
        .route(
            "/account/confirm/second-factor",
            post(confirm::second_factor),
        )
}

/// A time as people read it in the pages.
fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}
