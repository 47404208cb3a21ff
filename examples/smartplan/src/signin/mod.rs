//! Sign-in: identifier first (`/signin`), then the password, a second factor (SMS code,
//! authenticator app, recovery code) when the person has or needs one; linking a company or
//! Google login to an existing account by its password; sign-out; the forgotten password.
//! Google and company logins (OIDC and SAML) are in [`federation`].
//!
//! Between steps the browser holds the sealed attempt in `smartplan_login`
//! ([`crate::web::login_attempt`]) and what the pages show in `smartplan_signin`
//! ([`progress::Progress`]). After sign-in the person goes to `next` when it is a local path,
//! else to `/account`.

mod enrolment;
pub mod federation;
pub mod progress;
mod reset;

use crate::web::forms::Query;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ciam_core::contact::{EmailAddress, EmailDomain};
use ciam_core::credentials::Password;
use ciam_core::login::{AttemptToken, LoginError, LoginStep, RecoveryCode};
use ciam_core::organizations::OrgKind;
use ciam_core::secrets::OneTimeCode;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::flash::{Flash, redirect_with};
use crate::web::login_attempt;
use crate::web::session::{clear_session_cookie, session_cookie};
use crate::web::throttle::Rule;
use crate::web::{
    self, Branding, ClientAddr, FieldErrors, Form, MaybeSignedIn, Page, PageContext, WebError,
};

use progress::{Factor, Progress};

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(identifier_page).post(identifier_submit))
        .route("/signin/password", get(password_page).post(password_submit))
        .route("/signin/sms", get(sms_page).post(sms_submit))
        .route("/signin/totp", get(totp_page).post(totp_submit))
        .route("/signin/recovery", get(recovery_page).post(recovery_submit))
        .route("/signin/link", get(link_page).post(link_submit))
        .route(
            "/signin/enrol",
            get(enrolment::page).post(enrolment::submit),
        )
        .route(
            "/signin/enrol/phone",
            get(enrolment::phone_page).post(enrolment::phone_submit),
        )
        .route("/signout", post(sign_out))
        .route("/login", get(login_redirect))
        .merge(reset::routes())
        .merge(federation::routes())
}

/// Where to go after signing in.
pub(crate) fn destination(next: Option<&str>) -> String {
    next.and_then(web::safe_next)
        .unwrap_or("/account")
        .to_owned()
}

/// `/signin`, keeping a safe `next`.
pub(crate) fn signin_url(next: Option<&str>) -> String {
    match next.and_then(web::safe_next) {
        Some(next) if next != "/account" => format!(
            "/signin?next={}",
            url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        ),
        _ => "/signin".to_owned(),
    }
}

/// The branding of the organization owning `email`'s domain (SmartPlan's otherwise).
pub(crate) async fn branding_for_email(state: &AppState, email: &str) -> Branding {
    let Some((_, domain)) = email.trim().rsplit_once('@') else {
        return Branding::default();
    };
    let Ok(domain) = EmailDomain::parse(domain) else {
        return Branding::default();
    };
    match state.store.organization_by_email_domain(&domain).await {
        Ok(Some(organization))
            if organization.is_active() && organization.kind != OrgKind::Provider =>
        {
            Branding::for_organization(&organization)
        }
        _ => Branding::default(),
    }
}

/// An HTML response with a status and extra headers.
fn page_response(status: StatusCode, html: Html<String>, retry_after: Option<u64>) -> Response {
    let mut response = (status, html).into_response();
    if let Some(seconds) = retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A problem to show on the step's own page.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    pub(crate) message: String,
    retry_after: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn from_web(error: &WebError) -> Self {
        let retry_after = (error.status() == StatusCode::TOO_MANY_REQUESTS)
            .then(|| {
                error
                    .message()
                    .split_whitespace()
                    .find_map(|word| word.parse::<u64>().ok())
            })
            .flatten();
        Self {
            status: error.status(),
            message: error.message().to_owned(),
            retry_after,
        }
    }
}

/// What a failed step leads to.
pub(crate) enum Failure {
    /// Show the message on the same page.
    Inline(Problem),
    /// The attempt is over: back to `/signin` with the message.
    Restart(String),
    /// The person needs a second factor and has none.
    NoSecondFactor,
    /// Anything else: the error page.
    Error(WebError),
}

impl Failure {
    pub(crate) fn from_login(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::Inline(Problem::new(
                StatusCode::UNAUTHORIZED,
                "the email or password is wrong",
            )),
            LoginError::Throttled { retry_after, .. } => {
                let seconds = u64::try_from(retry_after.num_seconds().max(1)).unwrap_or(1);
                Self::Inline(Problem {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    message: format!(
                        "too many failed attempts; wait {} and try again",
                        wait_words(seconds)
                    ),
                    retry_after: Some(seconds),
                })
            }
            LoginError::WrongCode => Self::Inline(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the code is wrong; check it and try again",
            )),
            LoginError::CodeExpired => Self::Inline(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the code has expired or a newer one was sent; ask for a new code",
            )),
            LoginError::ResendTooSoon => Self::Inline(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "a code was sent moments ago; wait half a minute before asking for another",
            )),
            LoginError::ResendLimit => {
                Self::Restart("no more codes can be sent for this sign-in; start again".to_owned())
            }
            LoginError::FactorUnavailable => Self::Inline(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this way of confirming is not set up for your account; choose another one",
            )),
            LoginError::AccountUnavailable => Self::Inline(Problem::new(
                StatusCode::FORBIDDEN,
                "this account cannot sign in; contact your organization's administrator",
            )),
            LoginError::Password(error) => Self::Inline(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                error.to_string(),
            )),
            LoginError::Invalid(error) => Self::Inline(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                error.to_string(),
            )),
            LoginError::SecondFactorRequired => Self::NoSecondFactor,
            LoginError::AttemptExpired | LoginError::WrongStep | LoginError::Seal(_) => {
                Self::Restart(
                    "your sign-in took too long or was already used; start again".to_owned(),
                )
            }
            LoginError::AttemptEnded => {
                Self::Restart("too many wrong codes; start the sign-in again".to_owned())
            }
            other => Self::Error(other.into()),
        }
    }

    /// What the failure leads to: a problem for the step's own page, or a finished response.
    pub(crate) async fn settle(
        self,
        state: &AppState,
        ctx: &PageContext,
        progress: Option<&Progress>,
    ) -> Result<Settled, WebError> {
        match self {
            Self::Inline(problem) => Ok(Settled::Inline(problem)),
            Self::Restart(message) => {
                let next = progress.and_then(|p| p.next.clone());
                let mut response =
                    redirect_with(state, &signin_url(next.as_deref()), Flash::warning(message));
                forget_attempt(state, response.headers_mut());
                Ok(Settled::Done(response))
            }
            Self::NoSecondFactor => {
                let email = progress.map(|p| p.email.clone()).unwrap_or_default();
                let branding = branding_for_email(state, &email).await;
                let html = web::render(&NoSecondFactorPage {
                    page: ctx.page("A second step is needed").branded(branding),
                })?;
                let mut response = page_response(StatusCode::FORBIDDEN, html, None);
                forget_attempt(state, response.headers_mut());
                Ok(Settled::Done(response))
            }
            Self::Error(error) => Err(error),
        }
    }
}

/// A settled failure.
pub(crate) enum Settled {
    /// Show this problem on the step's page.
    Inline(Problem),
    /// Answer this.
    Done(Response),
}

/// The page explaining that a second factor is required and none is set up.
#[derive(Template)]
#[template(path = "signin/no_second_factor.html")]
struct NoSecondFactorPage {
    page: Page,
}

/// "2 minutes", "45 seconds".
pub(crate) fn wait_words(seconds: u64) -> String {
    if seconds >= 120 {
        format!("{} minutes", seconds.div_ceil(60))
    } else if seconds == 1 {
        "1 second".to_owned()
    } else {
        format!("{seconds} seconds")
    }
}

/// Removes the attempt and the progress from the browser.
pub(crate) fn forget_attempt(state: &AppState, headers: &mut HeaderMap) {
    login_attempt::clear(state).append_to(headers);
    Progress::clear(state).append_to(headers);
}

/// Follows the next step of a sign-in: sets the cookies and redirects to its page.
pub(crate) async fn follow(
    state: &AppState,
    mut progress: Progress,
    step: LoginStep,
) -> Result<Response, WebError> {
    let (to, attempt) = match step {
        LoginStep::Password { attempt } => ("/signin/password".to_owned(), attempt),
        LoginStep::Federated { attempt, .. } => {
            let mut response = federation::go_to_idp(state, &attempt).await?;
            progress.cookie(state).append_to(response.headers_mut());
            return Ok(response);
        }
        LoginStep::SecondFactor {
            attempt,
            options,
            phone_hint,
        } => {
            progress.factors = options.into_iter().map(Factor::from_core).collect();
            progress.phone_hint = phone_hint;
            progress.code_sent = false;
            let first = [Factor::Totp, Factor::Sms, Factor::Recovery]
                .into_iter()
                .find(|factor| progress.factors.contains(factor))
                .unwrap_or(Factor::Sms);
            (first.path().to_owned(), attempt)
        }
        LoginStep::CodeSent { attempt, .. } => {
            progress.code_sent = true;
            ("/signin/sms".to_owned(), attempt)
        }
        LoginStep::LinkAccount {
            attempt,
            email,
            provider,
        } => {
            progress.email = email;
            progress.provider = Some(provider);
            ("/signin/link".to_owned(), attempt)
        }
        LoginStep::EnrolSecondFactor { attempt } => ("/signin/enrol".to_owned(), attempt),
        LoginStep::NewPassword { attempt } => {
            progress.reset = true;
            ("/password/reset".to_owned(), attempt)
        }
        LoginStep::SignedIn(started) => {
            let mut response = Redirect::to(&destination(progress.next.as_deref())).into_response();
            forget_attempt(state, response.headers_mut());
            session_cookie(state, &started).append_to(response.headers_mut());
            state.metrics.login("signin", "success");
            return Ok(response);
        }
        _ => return Err(WebError::internal("an unknown sign-in step")),
    };
    let mut response = Redirect::to(&to).into_response();
    login_attempt::cookie(state, &attempt).append_to(response.headers_mut());
    progress.cookie(state).append_to(response.headers_mut());
    Ok(response)
}

/// The attempt and progress of a step page, or a redirect to `/signin` when there is none.
pub(crate) fn in_progress(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(AttemptToken, Progress), Box<Response>> {
    let progress = Progress::read(state, headers);
    match (login_attempt::read(headers), progress) {
        (Some(attempt), Some(progress)) => Ok((attempt, progress)),
        (_, progress) => {
            let next = progress.and_then(|p| p.next);
            Err(Box::new(redirect_with(
                state,
                &signin_url(next.as_deref()),
                Flash::info("start by entering your email address"),
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identifier
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "signin/identifier.html")]
struct IdentifierPage {
    page: Page,
    email: String,
    next: String,
    errors: FieldErrors,
    google: bool,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn identifier_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    if ctx.signed_in.is_some() {
        return Ok(Redirect::to(&destination(query.next.as_deref())).into_response());
    }
    let next = query
        .next
        .as_deref()
        .and_then(web::safe_next)
        .unwrap_or_default()
        .to_owned();
    let html = web::render(&IdentifierPage {
        page: ctx.page("Sign in"),
        email: String::new(),
        next,
        errors: FieldErrors::new(),
        google: federation::google_configured(&state).await?,
    })?;
    Ok(page_response(StatusCode::OK, html, None))
}

#[derive(Debug, Deserialize)]
struct IdentifierForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    next: String,
}

async fn identifier_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientAddr,
    Form(form): Form<IdentifierForm>,
) -> Result<Response, WebError> {
    let next = web::safe_next(form.next.trim()).map(str::to_owned);
    let email = form.email.trim().to_owned();
    let mut errors = FieldErrors::new();
    if email.is_empty() {
        errors.add("email", "enter your email address");
    } else if EmailAddress::parse(&email).is_err() {
        errors.add(
            "email",
            "this is not an email address; it looks like name@company.com",
        );
    }
    if !errors.is_empty() {
        let html = web::render(&IdentifierPage {
            page: ctx.page("Sign in"),
            email,
            next: next.unwrap_or_default(),
            errors,
            google: federation::google_configured(&state).await?,
        })?;
        return Ok(page_response(StatusCode::UNPROCESSABLE_ENTITY, html, None));
    }
    let step = state
        .ciam
        .login()
        .start(&email, Some(&client.to_string()))
        .await
        .map_err(WebError::from)?;
    follow(&state, Progress::new(email, next), step).await
}

// ---------------------------------------------------------------------------------------------
// Password
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "signin/password.html")]
struct PasswordPage {
    page: Page,
    email: String,
    next: String,
    error: Option<String>,
}

async fn show_password(
    state: &AppState,
    ctx: &PageContext,
    progress: &Progress,
    problem: Option<Problem>,
) -> Result<Response, WebError> {
    let branding = branding_for_email(state, &progress.email).await;
    let (status, message, retry) = match problem {
        Some(problem) => (problem.status, Some(problem.message), problem.retry_after),
        None => (StatusCode::OK, None, None),
    };
    let html = web::render(&PasswordPage {
        page: ctx.page("Enter your password").branded(branding),
        email: progress.email.clone(),
        next: progress.next.clone().unwrap_or_default(),
        error: message,
    })?;
    Ok(page_response(status, html, retry))
}

async fn password_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let (_, progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    show_password(&state, &ctx, &progress, None).await
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

impl std::fmt::Debug for PasswordForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordForm(<redacted>)")
    }
}

async fn password_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let (attempt, progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    if form.password.is_empty() {
        let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "enter your password");
        return show_password(&state, &ctx, &progress, Some(problem)).await;
    }
    match state
        .ciam
        .login()
        .password(&attempt, &Password::new(form.password))
        .await
    {
        Ok(step) => follow(&state, progress, step).await,
        Err(error) => {
            state.metrics.login("password", "failure");
            match Failure::from_login(error)
                .settle(&state, &ctx, Some(&progress))
                .await?
            {
                Settled::Done(response) => Ok(response),
                Settled::Inline(problem) => {
                    show_password(&state, &ctx, &progress, Some(problem)).await
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Second factors: SMS code, authenticator app, recovery code
// ---------------------------------------------------------------------------------------------

/// A link to another factor.
struct OtherFactor {
    href: &'static str,
    text: &'static str,
}

#[derive(Template)]
#[template(path = "signin/code.html")]
struct CodePage {
    page: Page,
    heading: &'static str,
    intro: String,
    action: &'static str,
    label: &'static str,
    hint: &'static str,
    numeric: bool,
    /// Whether the code field is shown (not before the first SMS is sent).
    ask_code: bool,
    /// SMS only: the "Send code" / "Send a new code" button.
    send_button: Option<&'static str>,
    error: Option<String>,
    others: Vec<OtherFactor>,
}

async fn show_code(
    state: &AppState,
    ctx: &PageContext,
    progress: &Progress,
    factor: Factor,
    problem: Option<Problem>,
) -> Result<Response, WebError> {
    let branding = branding_for_email(state, &progress.email).await;
    let phone = progress.phone_hint.as_deref().map_or_else(
        || "your verified phone".to_owned(),
        |hint| format!("your phone number ending {hint}"),
    );
    let (heading, intro, label, hint, numeric, ask_code, send_button) = match factor {
        Factor::Sms if progress.code_sent => (
            "Enter the code we sent by SMS",
            if state.outgoing.as_ref().is_some_and(|o| o.sms.delayed()) {
                // The gateway is down: the code waits in the retry queue.
                format!(
                    "Text messages are delayed right now: your 6-digit code to {phone} goes \
                     out as soon as the SMS service answers again. It works for 5 minutes."
                )
            } else {
                format!("We sent a 6-digit code to {phone}. It works for 5 minutes.")
            },
            "Code from the SMS",
            "6 digits",
            true,
            true,
            Some("Send a new code"),
        ),
        Factor::Sms => (
            "Confirm it is you",
            format!("We will send a 6-digit code to {phone}."),
            "Code from the SMS",
            "6 digits",
            true,
            false,
            Some("Send code"),
        ),
        Factor::Totp => (
            "Enter the code from your authenticator app",
            "Open the authenticator app you set up for SmartPlan and type the code it shows now."
                .to_owned(),
            "Code from the app",
            "6 digits; a new one appears every 30 seconds",
            true,
            true,
            None,
        ),
        Factor::Recovery => (
            "Use a recovery code",
            "Type one of the recovery codes you saved when you set up your authenticator app. Each code works once."
                .to_owned(),
            "Recovery code",
            "spaces and dashes do not matter",
            false,
            true,
            None,
        ),
    };
    let (status, error, retry) = match problem {
        Some(problem) => (problem.status, Some(problem.message), problem.retry_after),
        None => (StatusCode::OK, None, None),
    };
    let html = web::render(&CodePage {
        page: ctx.page(heading).branded(branding),
        heading,
        intro,
        action: factor.path(),
        label,
        hint,
        numeric,
        ask_code,
        send_button,
        error,
        others: progress
            .other_factors(factor)
            .into_iter()
            .map(|other| OtherFactor {
                href: other.path(),
                text: other.offer(),
            })
            .collect(),
    })?;
    Ok(page_response(status, html, retry))
}

async fn code_page(
    state: &AppState,
    ctx: &PageContext,
    headers: &HeaderMap,
    factor: Factor,
) -> Result<Response, WebError> {
    match in_progress(state, headers) {
        Ok((_, progress)) => show_code(state, ctx, &progress, factor, None).await,
        Err(redirect) => Ok(*redirect),
    }
}

async fn sms_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    code_page(&state, &ctx, &headers, Factor::Sms).await
}

async fn totp_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    code_page(&state, &ctx, &headers, Factor::Totp).await
}

async fn recovery_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    code_page(&state, &ctx, &headers, Factor::Recovery).await
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    /// `send` asks for a (new) SMS code; anything else checks the code.
    #[serde(default)]
    action: String,
}

impl std::fmt::Debug for CodeForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeForm")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// Checks a code (or sends an SMS code) and follows the next step.
async fn code_submit(
    state: &AppState,
    ctx: &PageContext,
    headers: &HeaderMap,
    client: ClientAddr,
    factor: Factor,
    form: CodeForm,
) -> Result<Response, WebError> {
    let (attempt, progress) = match in_progress(state, headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    let login = state.ciam.login();
    let sending = factor == Factor::Sms && form.action == "send";
    let code = form.code.trim();
    let outcome = if sending {
        if let Err(error) = state
            .throttle
            .check(state, Rule::Sms, &format!("signin:{client}"))
            .await
        {
            if error.status() != StatusCode::TOO_MANY_REQUESTS {
                return Err(error);
            }
            let mut problem = Problem::from_web(&error);
            problem.message = format!(
                "too many codes were asked for from this network; wait {} and try again",
                wait_words(problem.retry_after.unwrap_or(60))
            );
            return show_code(state, ctx, &progress, factor, Some(problem)).await;
        }
        login.send_sms_code(&attempt).await
    } else if code.is_empty() {
        let message = match factor {
            Factor::Recovery => "enter one of your recovery codes",
            _ => "enter the 6-digit code",
        };
        let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, message);
        return show_code(state, ctx, &progress, factor, Some(problem)).await;
    } else {
        match factor {
            Factor::Sms => {
                login
                    .verify_sms_code(&attempt, &OneTimeCode::from_presented(code))
                    .await
            }
            Factor::Totp => login.verify_totp(&attempt, code).await,
            Factor::Recovery => {
                login
                    .verify_recovery_code(&attempt, &RecoveryCode::from_presented(code))
                    .await
            }
        }
    };
    match outcome {
        Ok(step) => {
            let sent = matches!(step, LoginStep::CodeSent { .. });
            let mut response = follow(state, progress.clone(), step).await?;
            if sent {
                let to = progress.phone_hint.as_deref().map_or_else(
                    || "your phone".to_owned(),
                    |hint| format!("your phone number ending {hint}"),
                );
                let flash = if state.outgoing.as_ref().is_some_and(|o| o.sms.delayed()) {
                    Flash::warning(format!(
                        "Text messages are delayed: the code to {to} goes out as soon as the \
                         SMS service answers"
                    ))
                } else {
                    Flash::success(format!("We sent a code to {to}"))
                };
                flash.cookie(state).append_to(response.headers_mut());
            }
            Ok(response)
        }
        Err(error) => {
            state.metrics.login(
                match factor {
                    Factor::Sms => "sms",
                    Factor::Totp => "totp",
                    Factor::Recovery => "recovery_code",
                },
                "failure",
            );
            match Failure::from_login(error)
                .settle(state, ctx, Some(&progress))
                .await?
            {
                Settled::Done(response) => Ok(response),
                Settled::Inline(problem) => {
                    show_code(state, ctx, &progress, factor, Some(problem)).await
                }
            }
        }
    }
}

async fn sms_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    client: ClientAddr,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    code_submit(&state, &ctx, &headers, client, Factor::Sms, form).await
}

async fn totp_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    client: ClientAddr,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    code_submit(&state, &ctx, &headers, client, Factor::Totp, form).await
}

async fn recovery_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    client: ClientAddr,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    code_submit(&state, &ctx, &headers, client, Factor::Recovery, form).await
}

// ---------------------------------------------------------------------------------------------
// Linking a company or Google login to an existing account
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "signin/link.html")]
struct LinkPage {
    page: Page,
    email: String,
    provider: String,
    error: Option<String>,
}

async fn show_link(
    state: &AppState,
    ctx: &PageContext,
    progress: &Progress,
    problem: Option<Problem>,
) -> Result<Response, WebError> {
    let branding = branding_for_email(state, &progress.email).await;
    let (status, error, retry) = match problem {
        Some(problem) => (problem.status, Some(problem.message), problem.retry_after),
        None => (StatusCode::OK, None, None),
    };
    let html = web::render(&LinkPage {
        page: ctx.page("Link your login").branded(branding),
        email: progress.email.clone(),
        provider: progress
            .provider
            .clone()
            .unwrap_or_else(|| "your identity provider".to_owned()),
        error,
    })?;
    Ok(page_response(status, html, retry))
}

async fn link_page(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    match in_progress(&state, &headers) {
        Ok((_, progress)) => show_link(&state, &ctx, &progress, None).await,
        Err(redirect) => Ok(*redirect),
    }
}

async fn link_submit(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let (attempt, progress) = match in_progress(&state, &headers) {
        Ok(found) => found,
        Err(redirect) => return Ok(*redirect),
    };
    if form.password.is_empty() {
        let problem = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "enter the password of your account",
        );
        return show_link(&state, &ctx, &progress, Some(problem)).await;
    }
    match state
        .ciam
        .login()
        .password(&attempt, &Password::new(form.password))
        .await
    {
        Ok(step) => follow(&state, progress, step).await,
        Err(error) => match Failure::from_login(error)
            .settle(&state, &ctx, Some(&progress))
            .await?
        {
            Settled::Done(response) => Ok(response),
            Settled::Inline(problem) => show_link(&state, &ctx, &progress, Some(problem)).await,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Sign-out and /login
// ---------------------------------------------------------------------------------------------

async fn sign_out(
    State(state): State<AppState>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
) -> Result<Response, WebError> {
    if let Some(signed_in) = signed_in {
        state.ciam.sessions().sign_out(&signed_in.token).await?;
    }
    let mut response = redirect_with(&state, "/signin", Flash::success("You are signed out"));
    clear_session_cookie(&state).append_to(response.headers_mut());
    forget_attempt(&state, response.headers_mut());
    Ok(response)
}

async fn login_redirect(Query(query): Query<NextQuery>) -> Redirect {
    Redirect::to(&signin_url(query.next.as_deref()))
}
