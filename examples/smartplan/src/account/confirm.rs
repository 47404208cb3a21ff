//! Re-authentication before sensitive changes (ASVS 7.5.1): changing the email address, the
//! phone or the second factors needs a sign-in within the last
//! `[security] reauthentication_minutes` (10 by default). A change from an older session is
//! not made: the person is sent to `GET /account/confirm?next=PAGE`, confirms their password
//! (a new session replaces the old one: ciam-core's `Login::reauthenticate`, throttled like a
//! sign-in) and is sent back to the page. The password change itself asks for the current
//! password, which is the same proof.
//!
//! A person without a password (signed in through their organization's IdP or Google) signs
//! in again there: `POST /account/confirm/again` ends the session and sends them through
//! `/signin?next=PAGE`; the fresh session counts as recent. When they have a second factor
//! here (an authenticator app, a verified phone) they may confirm with it instead: `POST
//! /account/confirm/second-factor` (ciam-core's `Login::reauthenticate_by_second_factor`) leads
//! to the sign-in's code pages (`/signin/totp`, `/signin/sms`, `/signin/recovery`), whose
//! success replaces the session with a new one and comes back to the page; wrong codes are
//! throttled and audited as at sign-in.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use ciam_core::credentials::{CredentialKind, Password};
use ciam_core::login::{LoginError, authenticated_recently};
use serde::Deserialize;

use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::forms::Query;
use crate::web::session::{clear_session_cookie, session_cookie};
use crate::web::{self, ClientAddr, FieldErrors, Form, Page, PageContext, SignedIn, WebError};

#[derive(Template)]
#[template(path = "account/confirm.html")]
struct ConfirmPage {
    page: Page,
    has_password: bool,
    /// Whether the person (without a password) has a second factor to confirm with.
    has_second_factor: bool,
    minutes: i64,
    next: String,
    errors: FieldErrors,
}

/// `?next=` of the confirmation page.
#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// The confirmation form (no `Debug`: it holds a password).
#[derive(Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

/// A page of MySmartPlan to come back to (anything else: the overview).
fn back_to(next: Option<&str>) -> String {
    next.and_then(web::safe_next)
        .filter(|next| next.starts_with("/account"))
        .unwrap_or("/account")
        .to_owned()
}

/// `None` when `me` authenticated recently enough for a sensitive change; otherwise the
/// answer that sends them to confirm it is them, to come back to `page`. Nothing is changed.
pub(super) fn unless_recent(state: &AppState, me: &SignedIn, page: &str) -> Option<Response> {
    let now = state.clock.now();
    if authenticated_recently(&me.session, now, state.config.security.reauthentication) {
        return None;
    }
    let target = format!(
        "/account/confirm?{}",
        serde_urlencoded::to_string([("next", page)]).unwrap_or_default()
    );
    Some(flash::redirect_with(
        state,
        &target,
        Flash::info("Confirm it is you before changing this. Nothing was changed yet."),
    ))
}

async fn has_password(state: &AppState, me: &SignedIn) -> Result<bool, WebError> {
    Ok(state
        .store
        .credentials_of_identity(me.user.identity)
        .await?
        .iter()
        .any(|credential| matches!(credential.kind, CredentialKind::Password { .. })))
}

async fn has_second_factor(state: &AppState, me: &SignedIn) -> Result<bool, WebError> {
    Ok(
        !crate::account::rules::second_factors(state, &me.access.identity)
            .await?
            .is_empty(),
    )
}

async fn page_with(
    state: &AppState,
    ctx: &PageContext,
    me: &SignedIn,
    next: String,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, WebError> {
    let has_password = has_password(state, me).await?;
    let page = ConfirmPage {
        page: ctx.page("Confirm it is you"),
        has_password,
        has_second_factor: !has_password && has_second_factor(state, me).await?,
        minutes: state.config.security.reauthentication.num_minutes(),
        next,
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

/// `GET /account/confirm?next=PAGE`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = back_to(query.next.as_deref());
    page_with(&state, &ctx, &me, next, FieldErrors::new(), StatusCode::OK).await
}

/// `POST /account/confirm`: the password; a new session, then back to the page.
pub(super) async fn confirm(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    client: ClientAddr,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, WebError> {
    let next = back_to(Some(&form.next));
    let mut errors = FieldErrors::new();
    if form.password.is_empty() {
        errors.add("password", "enter your password");
        return page_with(
            &state,
            &ctx,
            &me,
            next,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let source = client.to_string();
    match state
        .ciam
        .login()
        .reauthenticate(&me.token, &Password::new(form.password), Some(&source))
        .await
    {
        Ok(started) => {
            let mut response = flash::redirect_with(
                &state,
                &next,
                Flash::success("Thank you. You can make the change now."),
            );
            session_cookie(&state, &started).append_to(response.headers_mut());
            Ok(response)
        }
        Err(LoginError::InvalidCredentials) => {
            errors.add("password", "the password is not correct");
            page_with(&state, &ctx, &me, next, errors, StatusCode::UNAUTHORIZED).await
        }
        Err(LoginError::Throttled { retry_after, .. }) => {
            throttled(&state, &ctx, &me, next, "password", retry_after).await
        }
        Err(LoginError::FactorUnavailable) => {
            page_with(&state, &ctx, &me, next, errors, StatusCode::OK).await
        }
        Err(error) => Err(error.into()),
    }
}

/// `POST /account/confirm/again`: ends this session and sends the person to sign in again,
/// coming back to the page.
pub(super) async fn sign_in_again(
    State(state): State<AppState>,
    me: SignedIn,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, WebError> {
    let next = back_to(Some(&form.next));
    state.ciam.sessions().sign_out(&me.token).await?;
    let target = format!(
        "/signin?{}",
        serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default()
    );
    let mut response = Redirect::to(&target).into_response();
    clear_session_cookie(&state).append_to(response.headers_mut());
    Ok(response)
}

/// `POST /account/confirm/second-factor`: a person without a password confirms with their
/// second factor, on the sign-in's code pages; success replaces the session and comes back.
pub(super) async fn second_factor(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    client: ClientAddr,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, WebError> {
    let next = back_to(Some(&form.next));
    let source = client.to_string();
    match state
        .ciam
        .login()
        .reauthenticate_by_second_factor(&me.token, Some(&source))
        .await
    {
        Ok(step) => {
            let progress = crate::signin::progress::Progress::new(
                me.access.identity.email.as_str(),
                Some(next),
            );
            crate::signin::follow(&state, progress, step).await
        }
        Err(LoginError::Throttled { retry_after, .. }) => {
            throttled(&state, &ctx, &me, next, "second_factor", retry_after).await
        }
        Err(LoginError::WrongStep | LoginError::FactorUnavailable) => {
            page_with(&state, &ctx, &me, next, FieldErrors::new(), StatusCode::OK).await
        }
        Err(error) => Err(error.into()),
    }
}

/// The page again, refusing with 429 and `Retry-After` while the account is throttled; the
/// message stands at `field`.
async fn throttled(
    state: &AppState,
    ctx: &PageContext,
    me: &SignedIn,
    next: String,
    field: &'static str,
    retry_after: chrono::Duration,
) -> Result<Response, WebError> {
    let seconds = u64::try_from(retry_after.num_seconds().max(1)).unwrap_or(1);
    let mut errors = FieldErrors::new();
    errors.add(
        field,
        format!(
            "too many failed attempts; wait {} and try again",
            crate::signin::wait_words(seconds)
        ),
    );
    let mut response =
        page_with(state, ctx, me, next, errors, StatusCode::TOO_MANY_REQUESTS).await?;
    if let Ok(value) = seconds.to_string().parse() {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    Ok(response)
}
