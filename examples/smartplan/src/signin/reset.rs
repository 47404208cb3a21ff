//! The forgotten password: `/password/forgot` sends a reset link (the same answer whether or
//! not the email has an account), `/password/reset?token=` opens it (the second factor first
//! when the person has one), then the new password is set and every session ends.

use crate::web::forms::Query;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use ciam_core::contact::EmailAddress;
use ciam_core::credentials::Password;
use ciam_core::login::LoginError;
use serde::Deserialize;

use crate::signin::progress::Progress;
use crate::signin::{Failure, Problem, Settled, follow, forget_attempt, page_response};
use crate::state::AppState;
use crate::web::flash::{Flash, redirect_with};
use crate::web::throttle::Rule;
use crate::web::{self, ClientAddr, FieldErrors, Form, Page, PageContext, WebError, login_attempt};

/// The routes of the forgotten password.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/password/forgot", get(forgot_page).post(forgot_submit))
        .route("/password/reset", get(reset_page).post(reset_submit))
}

#[derive(Template)]
#[template(path = "signin/forgot.html")]
struct ForgotPage {
    page: Page,
    email: String,
    errors: FieldErrors,
    /// The address a link was sent to (if it has an account).
    sent_to: Option<String>,
}

async fn forgot_page(ctx: PageContext) -> Result<Response, WebError> {
    let html = web::render(&ForgotPage {
        page: ctx.page("Forgot your password?"),
        email: String::new(),
        errors: FieldErrors::new(),
        sent_to: None,
    })?;
    Ok(page_response(StatusCode::OK, html, None))
}

#[derive(Debug, Deserialize)]
struct ForgotForm {
    #[serde(default)]
    email: String,
}

async fn forgot_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientAddr,
    Form(form): Form<ForgotForm>,
) -> Result<Response, WebError> {
    let email = form.email.trim().to_owned();
    let mut errors = FieldErrors::new();
    if email.is_empty() {
        errors.add("email", "enter the email address of your account");
    } else if EmailAddress::parse(&email).is_err() {
        errors.add(
            "email",
            "this is not an email address; it looks like name@company.com",
        );
    }
    if errors.is_empty()
        && let Err(error) = state
            .throttle
            .check(&state, Rule::Registration, &format!("reset:{client}"))
            .await
    {
        if error.status() != StatusCode::TOO_MANY_REQUESTS {
            return Err(error);
        }
        let problem = Problem::from_web(&error);
        errors.add(
            "email",
            format!(
                "too many reset links were asked for from this network; wait {} and try again",
                super::wait_words(problem.retry_after.unwrap_or(60))
            ),
        );
        let html = web::render(&ForgotPage {
            page: ctx.page("Forgot your password?"),
            email,
            errors,
            sent_to: None,
        })?;
        return Ok(page_response(problem.status, html, problem.retry_after));
    }
    if !errors.is_empty() {
        let html = web::render(&ForgotPage {
            page: ctx.page("Forgot your password?"),
            email,
            errors,
            sent_to: None,
        })?;
        return Ok(page_response(StatusCode::UNPROCESSABLE_ENTITY, html, None));
    }
    state.ciam.login().request_password_reset(&email).await?;
    let html = web::render(&ForgotPage {
        page: ctx.page("Check your mail"),
        email: String::new(),
        errors: FieldErrors::new(),
        sent_to: Some(email),
    })?;
    Ok(page_response(StatusCode::OK, html, None))
}

#[derive(Template)]
#[template(path = "signin/reset.html")]
struct ResetPage {
    page: Page,
    errors: FieldErrors,
}

#[derive(Deserialize)]
struct ResetQuery {
    token: Option<String>,
}

impl std::fmt::Debug for ResetQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetQuery(<redacted>)")
    }
}

fn invalid_link(state: &AppState) -> Response {
    let mut response = redirect_with(
        state,
        "/password/forgot",
        Flash::warning(
            "this password reset link is invalid, already used or expired; ask for a new one below",
        ),
    );
    forget_attempt(state, response.headers_mut());
    response
}

/// With `?token=`: opens the link (then the second factor or the new-password form, without
/// the token in the address). Without: the new-password form of the reset in progress.
async fn reset_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    Query(query): Query<ResetQuery>,
) -> Result<Response, WebError> {
    if let Some(token) = query
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return match state.ciam.login().begin_reset(token).await {
            Ok(step) => {
                let mut progress = Progress::new(String::new(), None);
                progress.reset = true;
                follow(&state, progress, step).await
            }
            Err(
                LoginError::InvalidResetLink | LoginError::AttemptExpired | LoginError::Seal(_),
            ) => Ok(invalid_link(&state)),
            Err(error) => Err(error.into()),
        };
    }
    let progress = Progress::read(&state, &headers);
    if login_attempt::read(&headers).is_none() || !progress.is_some_and(|p| p.reset) {
        return Ok(Redirect::to("/password/forgot").into_response());
    }
    let html = web::render(&ResetPage {
        page: ctx.page("Choose a new password"),
        errors: FieldErrors::new(),
    })?;
    Ok(page_response(StatusCode::OK, html, None))
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

impl std::fmt::Debug for ResetForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetForm(<redacted>)")
    }
}

async fn reset_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    Form(form): Form<ResetForm>,
) -> Result<Response, WebError> {
    let progress = Progress::read(&state, &headers).filter(|p| p.reset);
    let (Some(attempt), Some(progress)) = (login_attempt::read(&headers), progress) else {
        return Ok(invalid_link(&state));
    };
    let mut errors = FieldErrors::new();
    if form.password.is_empty() {
        errors.add("password", "choose a new password");
    } else if form.password != form.confirm {
        errors.add(
            "confirm",
            "the two passwords are not the same; type them again",
        );
    }
    if errors.is_empty() {
        match state
            .ciam
            .login()
            .complete_reset(&attempt, &Password::new(form.password))
            .await
        {
            Ok(()) => {
                let mut response = redirect_with(
                    &state,
                    "/signin",
                    Flash::success(
                        "Your password is changed and you were signed out everywhere; sign in with the new password",
                    ),
                );
                forget_attempt(&state, response.headers_mut());
                return Ok(response);
            }
            Err(LoginError::InvalidResetLink) => return Ok(invalid_link(&state)),
            Err(error) => match Failure::from_login(error)
                .settle(&state, &ctx, Some(&progress))
                .await?
            {
                Settled::Done(response) => return Ok(response),
                Settled::Inline(problem) => errors.add("password", problem.message),
            },
        }
    }
    let html = web::render(&ResetPage {
        page: ctx.page("Choose a new password"),
        errors,
    })?;
    Ok(page_response(StatusCode::UNPROCESSABLE_ENTITY, html, None))
}
