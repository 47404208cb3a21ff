//! `GET/POST /signin/enrol`: a sign-in that needs a second factor the person does not have yet
//! (the deployment's `[security] require_mfa`, or the organization's policy) stops here after
//! the first factor. The page shows a new authenticator app's QR code; its first code
//! completes the sign-in, with the recovery codes shown once. No session exists before that.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ciam_core::login::{LoginError, LoginStep};
use serde::Deserialize;

use crate::account::{EnrolmentForms, enrollment_response, recovery_codes_response};
use crate::signin::{Failure, Settled, destination, forget_attempt, in_progress};
use crate::state::AppState;
use crate::web::flash::Flash;
use crate::web::session::session_cookie;
use crate::web::{FieldErrors, Form, PageContext, WebError, login_attempt};

const FORMS: EnrolmentForms = EnrolmentForms {
    action: "/signin/enrol",
    restart: "/signin/enrol",
};

const WHY: &str = "Your account needs a second step at sign-in, and none is set up yet. Set up an authenticator app now to finish signing in.";

/// `code=` (no `Debug`).
#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    code: String,
}

/// `GET /signin/enrol`: a new secret for the app.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (attempt, progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    match state.ciam.login().enrolment_totp(&attempt).await {
        Ok(enrollment) => enrollment_response(
            ctx.page("Set up a second step")
                .with_flash(Flash::info(WHY)),
            Some(&enrollment),
            FieldErrors::new(),
            FORMS,
        ),
        Err(error) => settle(&state, &ctx, &progress, error).await,
    }
}

async fn settle(
    state: &AppState,
    ctx: &PageContext,
    progress: &crate::signin::progress::Progress,
    error: LoginError,
) -> Result<Response, WebError> {
    match Failure::from_login(error)
        .settle(state, ctx, Some(progress))
        .await?
    {
        Settled::Done(response) => Ok(response),
        Settled::Inline(problem) => {
            let mut errors = FieldErrors::new();
            errors.add("code", problem.message);
            enrollment_response(ctx.page("Set up a second step"), None, errors, FORMS)
        }
    }
}

/// `POST /signin/enrol`: the app's first code; signs in and shows the recovery codes once.
pub(super) async fn submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let (attempt, mut progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    let code = form.code.trim();
    if code.is_empty() {
        let mut errors = FieldErrors::new();
        errors.add("code", "enter the 6-digit code your app shows");
        return enrollment_response(ctx.page("Set up a second step"), None, errors, FORMS);
    }
    match state.ciam.login().enrolment_confirm(&attempt, code).await {
        Ok((codes, LoginStep::SignedIn(started))) => {
            let mut response = recovery_codes_response(
                ctx.page("Your recovery codes").with_flash(Flash::success(
                    "Your authenticator app is set up and you are signed in. From now on you enter its code when you sign in.",
                )),
                &codes,
                true,
                destination(progress.next.as_deref()),
                "Continue",
            )?;
            forget_attempt(&state, response.headers_mut());
            session_cookie(&state, &started).append_to(response.headers_mut());
            state.metrics.login("signin", "success");
            Ok(response)
        }
        Ok((codes, LoginStep::NewPassword { attempt })) => {
            progress.reset = true;
            let mut response = recovery_codes_response(
                ctx.page("Your recovery codes").with_flash(Flash::success(
                    "Your authenticator app is set up. Now choose your new password.",
                )),
                &codes,
                true,
                "/password/reset".to_owned(),
                "Continue",
            )?;
            login_attempt::cookie(&state, &attempt).append_to(response.headers_mut());
            progress.cookie(&state).append_to(response.headers_mut());
            Ok(response)
        }
        Ok(_) => Err(WebError::internal("an unknown sign-in step")),
        Err(LoginError::WrongCode) => {
            let mut errors = FieldErrors::new();
            errors.add(
                "code",
                "the code is not correct; enter the code your app shows now (it changes every 30 seconds)",
            );
            enrollment_response(ctx.page("Set up a second step"), None, errors, FORMS)
        }
        Err(error) => settle(&state, &ctx, &progress, error).await,
    }
}
