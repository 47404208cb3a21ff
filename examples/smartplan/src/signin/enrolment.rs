//! `GET/POST /signin/enrol`: a sign-in that needs a second factor the person does not have yet
//! (the deployment's `[security] require_mfa`, or the organization's policy) stops here after
//! the first factor (also right after accepting an invitation with a new password). The page
//! shows a new authenticator app's QR code (its secret kept in the attempt's cookie, sealed,
//! and stored only once confirmed); its first code completes the sign-in, with the recovery
//! codes shown once. Or, at `GET/POST /signin/enrol/phone`, the person gives a mobile
//! number (E.164): a code goes to it by SMS (`action=send`; sends are spaced and limited per
//! attempt, and limited per client address), and that code (`action=verify`) makes it their
//! verified phone and completes the sign-in with SMS as the second factor. A number that is
//! not E.164 is explained on the page and nothing is sent or stored. No session exists before
//! the second factor is set up.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use ciam_core::contact::PhoneNumber;
use ciam_core::login::{LoginError, LoginStep};
use ciam_core::secrets::OneTimeCode;
use serde::Deserialize;

use crate::account::{EnrolmentForms, enrollment_response, recovery_codes_response};
use crate::signin::progress::Progress;
use crate::signin::{
    Failure, Settled, branding_for_email, destination, follow, forget_attempt, in_progress,
    wait_words,
};
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::session::session_cookie;
use crate::web::throttle::Rule;
use crate::web::{self, ClientAddr, FieldErrors, Form, Page, PageContext, WebError, login_attempt};

/// The phone page.
const PHONE_PATH: &str = "/signin/enrol/phone";

const FORMS: EnrolmentForms = EnrolmentForms {
    action: "/signin/enrol",
    restart: "/signin/enrol",
    alternative: Some(PHONE_PATH),
};

const WHY: &str = "Your account needs a second step at sign-in, and none is set up yet. Set up an authenticator app, or your mobile phone, now to finish signing in.";

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
        Ok((enrollment, attempt)) => {
            // The new secret travels in the attempt's cookie until its first code comes back.
            let mut response = enrollment_response(
                with_why(ctx.page("Set up a second step")),
                Some(&enrollment),
                FieldErrors::new(),
                FORMS,
            )?;
            login_attempt::cookie(&state, &attempt).append_to(response.headers_mut());
            Ok(response)
        }
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
        Err(LoginError::NoPendingEnrollment) => Ok(flash::redirect_with(
            &state,
            FORMS.restart,
            Flash::warning(
                "Your account needs a second step at sign-in, and the app's setup had not started: scan the code below with your authenticator app, then enter the code it shows.",
            ),
        )),
        Err(error) => settle(&state, &ctx, &progress, error).await,
    }
}

/// The page with the reason for this step, unless a message was carried over (the welcome
/// after accepting an invitation says it already).
fn with_why(page: Page) -> Page {
    if page.flash.is_some() {
        page
    } else {
        page.with_flash(Flash::info(WHY))
    }
}

#[derive(Template)]
#[template(path = "signin/enrol_phone.html")]
struct PhonePage {
    page: Page,
    /// The number typed (kept after an error).
    phone: String,
    /// The number the newest code went to, when one was sent.
    sent_to: Option<String>,
    errors: FieldErrors,
}

/// `phone=`, `code=`, `action=send|verify` (no `Debug`: it holds a code).
#[derive(Deserialize)]
pub(super) struct PhoneForm {
    #[serde(default)]
    phone: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    action: String,
}

async fn phone_response(
    state: &AppState,
    ctx: &PageContext,
    progress: &Progress,
    phone: String,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<Response, WebError> {
    let branding = branding_for_email(state, &progress.email).await;
    let page = PhonePage {
        page: with_why(ctx.page("Set up your mobile phone").branded(branding)),
        phone,
        sent_to: progress.enrol_phone.clone().filter(|_| progress.code_sent),
        errors,
    };
    let mut response = (status, web::render(&page)?).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /signin/enrol/phone`.
pub(super) async fn phone_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (_, progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    let phone = progress.enrol_phone.clone().unwrap_or_default();
    phone_response(
        &state,
        &ctx,
        &progress,
        phone,
        FieldErrors::new(),
        StatusCode::OK,
    )
    .await
}

/// A failure of the phone step: on the page under `field`, or the restart.
async fn phone_failure(
    state: &AppState,
    ctx: &PageContext,
    progress: &Progress,
    phone: String,
    field: &str,
    error: LoginError,
) -> Result<Response, WebError> {
    state.metrics.login("sms_enrolment", "failure");
    match Failure::from_login(error)
        .settle(state, ctx, Some(progress))
        .await?
    {
        Settled::Done(response) => Ok(response),
        Settled::Inline(problem) => {
            let mut errors = FieldErrors::new();
            errors.add(field, problem.message);
            phone_response(state, ctx, progress, phone, errors, problem.status).await
        }
    }
}

/// `POST /signin/enrol/phone`: `action=send` sends a code to `phone`; otherwise `code` is
/// checked, and the sign-in completes.
pub(super) async fn phone_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    client: ClientAddr,
    Form(form): Form<PhoneForm>,
) -> Result<Response, WebError> {
    let (attempt, mut progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    let login = state.ciam.login();
    let typed = form.phone.trim().to_owned();
    if form.action == "send" {
        let mut errors = FieldErrors::new();
        if typed.is_empty() {
            errors.add("phone", "enter your mobile number, such as +358401234567");
        } else if PhoneNumber::parse(&typed).is_err() {
            errors.add(
                "phone",
                "enter the number in international format: + and the country code, then the number, such as +358401234567",
            );
        }
        if !errors.is_empty() {
            return phone_response(
                &state,
                &ctx,
                &progress,
                typed,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
        if let Err(error) = state
            .throttle
            .check(&state, Rule::Sms, &format!("signin:{client}"))
            .await
        {
            if error.status() != StatusCode::TOO_MANY_REQUESTS {
                return Err(error);
            }
            let problem = super::Problem::from_web(&error);
            errors.add(
                "phone",
                format!(
                    "too many codes were asked for from this network; wait {} and try again",
                    wait_words(problem.retry_after.unwrap_or(60))
                ),
            );
            return phone_response(
                &state,
                &ctx,
                &progress,
                typed,
                errors,
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
        }
        return match login.enrolment_phone(&attempt, &typed).await {
            Ok(LoginStep::CodeSent { attempt, .. }) => {
                let number = PhoneNumber::parse(&typed)
                    .map(|phone| phone.to_string())
                    .unwrap_or(typed);
                let flash = if state.outgoing.as_ref().is_some_and(|o| o.sms.delayed()) {
                    Flash::warning(format!(
                        "Text messages are delayed: the code to {number} goes out as soon as the SMS service answers"
                    ))
                } else {
                    Flash::success(format!("We sent a code to {number}"))
                };
                progress.enrol_phone = Some(number);
                progress.code_sent = true;
                let mut response = Redirect::to(PHONE_PATH).into_response();
                login_attempt::cookie(&state, &attempt).append_to(response.headers_mut());
                progress.cookie(&state).append_to(response.headers_mut());
                flash.cookie(&state).append_to(response.headers_mut());
                Ok(response)
            }
            Ok(_) => Err(WebError::internal("an unknown sign-in step")),
            Err(error) => phone_failure(&state, &ctx, &progress, typed, "phone", error).await,
        };
    }
    let phone = progress.enrol_phone.clone().unwrap_or_default();
    let code = form.code.trim();
    if code.is_empty() {
        let mut errors = FieldErrors::new();
        errors.add("code", "enter the 6-digit code from the SMS");
        return phone_response(
            &state,
            &ctx,
            &progress,
            phone,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    match login
        .enrolment_confirm_phone(&attempt, &OneTimeCode::from_presented(code))
        .await
    {
        Ok(step) => {
            let flash = match &step {
                LoginStep::NewPassword { .. } => {
                    Flash::success("Your mobile phone is verified. Now choose your new password.")
                }
                _ => Flash::success(
                    "Your mobile phone is verified and you are signed in. From now on we send a code to it when you sign in.",
                ),
            };
            let mut response = follow(&state, progress, step).await?;
            flash.cookie(&state).append_to(response.headers_mut());
            Ok(response)
        }
        Err(error) => phone_failure(&state, &ctx, &progress, phone, "code", error).await,
    }
}
