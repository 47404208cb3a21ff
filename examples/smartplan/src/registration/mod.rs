//! Organization registration (SME) and joining an organization.
//!
//! - `GET/POST /register`: the organization's name (and business id, when known), the
//!   contact person's name, email, mobile phone and password. A code goes to the email (and
//!   one by SMS to the phone, when given).
//! - `GET/POST /register/verify?registration=ID`: the codes; then the page says the
//!   registration waits for SmartPlan's approval (or that it was decided).
//! - `GET/POST /join`: ask to join an existing organization, found by its join code or by the
//!   verified domain of the work email; `GET/POST /join/verify?request=ID`: the email code; then
//!   the page says the request waits for the organization's contact person.
//!
//! Submissions are throttled per client address; forms keep what was typed (not passwords).

use crate::web::forms::Query;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use ciam_core::Principal;
use ciam_core::contact::ValidationError;
use ciam_core::ids::{JoinRequestId, OrgRegistrationId};
use ciam_core::registrations::{
    JoinRequestForm, JoinTarget, OrgRegistrationForm, RegistrationError, RequestStatus,
};
use ciam_core::secrets::OneTimeCode;
use serde::Deserialize;

use crate::account::rules;
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::throttle::Rule;
use crate::web::{self, ClientAddr, FieldErrors, Form, Page, PageContext, WebError};

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/register", get(register_page).post(register))
        .route(
            "/register/verify",
            get(registration_status).post(verify_registration),
        )
        .route("/join", get(join_page).post(join))
        .route("/join/verify", get(join_status).post(verify_join))
}

/// The registration form (no `Debug`: it holds the password).
#[derive(Default, Deserialize)]
struct RegisterForm {
    #[serde(default)]
    organization_name: String,
    #[serde(default)]
    business_id: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

/// The join form (no `Debug`: it holds the password).
#[derive(Default, Deserialize)]
struct JoinForm {
    #[serde(default)]
    join_code: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

/// The codes (no `Debug`), or `decision=resend`.
#[derive(Deserialize)]
struct CodesForm {
    #[serde(default)]
    email_code: String,
    #[serde(default)]
    phone_code: String,
    #[serde(default)]
    decision: String,
}

#[derive(Deserialize)]
struct RegistrationQuery {
    #[serde(default)]
    registration: String,
}

#[derive(Deserialize)]
struct RequestQuery {
    #[serde(default)]
    request: String,
}

#[derive(Template)]
#[template(path = "registration/register.html")]
struct RegisterPage {
    page: Page,
    form: RegisterForm,
    password_rules: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "registration/join.html")]
struct JoinPage {
    page: Page,
    form: JoinForm,
    password_rules: String,
    errors: FieldErrors,
}

/// What a verify page shows.
#[derive(Template)]
#[template(path = "registration/verify.html")]
struct VerifyPage {
    page: Page,
    /// Where the form posts (`/register/verify?registration=ID`).
    action: String,
    email: String,
    phone: Option<String>,
    errors: FieldErrors,
}

/// The page after verification: waiting, approved or declined.
#[derive(Template)]
#[template(path = "registration/status.html")]
struct StatusPage {
    page: Page,
    waiting_for: &'static str,
    state: &'static str,
    reason: String,
}

fn status_for(errors: &FieldErrors) -> StatusCode {
    if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// The form field a validation error of ciam-core is about.
fn field_of(error: &ValidationError) -> &'static str {
    match error {
        ValidationError::Email { .. } | ValidationError::Domain => "email",
        ValidationError::Phone => "phone",
        ValidationError::Empty { field }
        | ValidationError::TooLong { field, .. }
        | ValidationError::ControlCharacters { field }
        | ValidationError::KeyCharacters { field } => match *field {
            "organization name" => "organization_name",
            "business id" => "business_id",
            "join code" => "join_code",
            "family name" => "family_name",
            _ => "given_name",
        },
        _ => "email",
    }
}

/// Adds the message of a refused registration or join request to its field; other errors are
/// given back.
fn add_error(errors: &mut FieldErrors, error: RegistrationError) -> Result<(), WebError> {
    match error {
        RegistrationError::Invalid(error) => errors.add(
            field_of(&error),
            match error {
                ValidationError::Phone => "enter the number in international format: + and the country code, then the number, such as +358401234567".to_owned(),
                other => other.to_string(),
            },
        ),
        RegistrationError::Password(error) => errors.add("password", error.to_string()),
        RegistrationError::AccountExists => errors.add(
            "email",
            "an account with this email address already exists; sign in instead",
        ),
        RegistrationError::DomainTaken => errors.add(
            "email",
            "an organization with your email's domain is already registered; ask to join it instead",
        ),
        RegistrationError::NoMatchingOrganization => errors.add(
            "join_code",
            "no organization matches; check the join code, or ask your organization for an invitation",
        ),
        RegistrationError::JoinRequestsClosed => errors.add(
            "join_code",
            "this organization does not take requests to join; ask its contact person for an invitation",
        ),
        other => return Err(other.into()),
    }
    Ok(())
}

fn check_person(
    state: &AppState,
    errors: &mut FieldErrors,
    (given, family): (&str, &str),
    email: &str,
    (password, confirmation): (&str, &str),
) -> Option<ciam_core::credentials::Password> {
    rules::check_name(errors, given, family);
    if email.is_empty() {
        errors.add("email", "enter your work email address");
    }
    rules::check_new_password(
        &state.ciam.policy().password,
        errors,
        ("password", password),
        ("password_confirmation", confirmation),
    )
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Organization registration
// ---------------------------------------------------------------------------------------------

fn register_page_with(
    state: &AppState,
    ctx: &PageContext,
    mut form: RegisterForm,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    form.password.clear();
    form.password_confirmation.clear();
    let status = status_for(&errors);
    let page = RegisterPage {
        page: ctx.page("Register your organization"),
        form,
        password_rules: rules::password_rules(&state.ciam.policy().password),
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

async fn register_page(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Response, WebError> {
    register_page_with(&state, &ctx, RegisterForm::default(), FieldErrors::new())
}

async fn register(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientAddr,
    Form(mut form): Form<RegisterForm>,
) -> Result<Response, WebError> {
    form.organization_name = form.organization_name.trim().to_owned();
    form.business_id = form.business_id.trim().to_owned();
    form.given_name = form.given_name.trim().to_owned();
    form.family_name = form.family_name.trim().to_owned();
    form.email = form.email.trim().to_owned();
    form.phone = form.phone.trim().to_owned();
    let mut errors = FieldErrors::new();
    if form.organization_name.is_empty() {
        errors.add("organization_name", "enter your organization's name");
    }
    let password = check_person(
        &state,
        &mut errors,
        (&form.given_name, &form.family_name),
        &form.email,
        (&form.password, &form.password_confirmation),
    );
    let Some(password) = password.filter(|_| errors.is_empty()) else {
        return register_page_with(&state, &ctx, form, errors);
    };
    state
        .throttle
        .check(&state, Rule::Registration, &client.to_string())
        .await?;
    let submitted = OrgRegistrationForm {
        organization_name: form.organization_name.clone(),
        business_id: non_empty(&form.business_id),
        email: form.email.clone(),
        given_name: form.given_name.clone(),
        family_name: form.family_name.clone(),
        phone: non_empty(&form.phone).map(|phone| phone.split_whitespace().collect()),
        password,
    };
    match state
        .ciam
        .registrations()
        .register_organization(&Principal::Anonymous, submitted)
        .await
    {
        Ok(registration) => {
            let codes = if registration.applicant.phone.is_some() {
                "We sent a code to your email address and another by SMS to your phone."
            } else {
                "We sent a code to your email address."
            };
            Ok(flash::redirect_with(
                &state,
                &format!("/register/verify?registration={}", registration.id),
                Flash::info(format!(
                    "{codes} Enter it below to confirm your registration."
                )),
            ))
        }
        Err(error) => {
            add_error(&mut errors, error)?;
            register_page_with(&state, &ctx, form, errors)
        }
    }
}

fn registration_id(query: &RegistrationQuery) -> Result<OrgRegistrationId, WebError> {
    query
        .registration
        .parse()
        .map_err(|_| WebError::not_found("registration not found"))
}

async fn registration_status(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<RegistrationQuery>,
) -> Result<Response, WebError> {
    let id = registration_id(&query)?;
    let registration = state.ciam.registrations().registration(id).await?;
    registration_page(&ctx, &registration, FieldErrors::new())
}

fn registration_page(
    ctx: &PageContext,
    registration: &ciam_core::registrations::OrgRegistration,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    let applicant = &registration.applicant;
    decided_or_verify(
        ctx,
        &registration.status,
        "SmartPlan's customer service",
        VerifyPage {
            page: ctx.page("Confirm your registration"),
            action: format!("/register/verify?registration={}", registration.id),
            email: applicant.email.to_string(),
            phone: applicant.phone.as_ref().map(ToString::to_string),
            errors,
        },
    )
}

fn decided_or_verify(
    ctx: &PageContext,
    status: &RequestStatus,
    waiting_for: &'static str,
    verify: VerifyPage,
) -> Result<Response, WebError> {
    let (title, state, reason) = match status {
        RequestStatus::AwaitingVerification => {
            let code = status_for(&verify.errors);
            return Ok((code, web::render(&verify)?).into_response());
        }
        RequestStatus::PendingApproval => ("Waiting for approval", "waiting", String::new()),
        RequestStatus::Approved { .. } => ("Approved", "approved", String::new()),
        RequestStatus::Rejected { reason, .. } => ("Not approved", "rejected", reason.clone()),
    };
    let page = StatusPage {
        page: ctx.page(title),
        waiting_for,
        state,
        reason,
    };
    Ok(web::render(&page)?.into_response())
}

async fn verify_registration(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientAddr,
    Query(query): Query<RegistrationQuery>,
    Form(form): Form<CodesForm>,
) -> Result<Response, WebError> {
    let id = registration_id(&query)?;
    let registrations = state.ciam.registrations();
    let registration = registrations.registration(id).await?;
    let here = format!("/register/verify?registration={id}");
    if registration.status != RequestStatus::AwaitingVerification {
        return Ok(Redirect::to(&here).into_response());
    }
    let mut errors = FieldErrors::new();
    if form.decision == "resend" {
        state
            .throttle
            .check(&state, Rule::Registration, &client.to_string())
            .await?;
        return match registrations.resend_registration_codes(id).await {
            Ok(()) => Ok(flash::redirect_with(
                &state,
                &here,
                Flash::info("We sent new codes. The earlier ones no longer work."),
            )),
            Err(RegistrationError::TooManyCodes) => {
                errors.add(
                    "email_code",
                    "too many codes were sent; register again later",
                );
                registration_page(&ctx, &registration, errors)
            }
            Err(error) => Err(error.into()),
        };
    }
    let needs_phone = registration.applicant.phone.is_some();
    if form.email_code.trim().is_empty() {
        errors.add("email_code", "enter the code from the email");
    }
    if needs_phone && form.phone_code.trim().is_empty() {
        errors.add("phone_code", "enter the code from the SMS");
    }
    if !errors.is_empty() {
        return registration_page(&ctx, &registration, errors);
    }
    let email_code = OneTimeCode::from_presented(form.email_code.trim());
    let phone_code = needs_phone.then(|| OneTimeCode::from_presented(form.phone_code.trim()));
    match registrations
        .verify_registration(id, &email_code, phone_code.as_ref())
        .await
    {
        Ok(_) => Ok(flash::redirect_with(
            &state,
            &here,
            Flash::success("Thank you: your email address is confirmed."),
        )),
        Err(error @ (RegistrationError::WrongCode | RegistrationError::CodeExhausted)) => {
            let message = if needs_phone {
                format!("{error}; check both codes")
            } else {
                error.to_string()
            };
            errors.add("email_code", message);
            let registration = registrations.registration(id).await?;
            registration_page(&ctx, &registration, errors)
        }
        Err(error) => Err(error.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Joining an organization
// ---------------------------------------------------------------------------------------------

fn join_page_with(
    state: &AppState,
    ctx: &PageContext,
    mut form: JoinForm,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    form.password.clear();
    form.password_confirmation.clear();
    let status = status_for(&errors);
    let page = JoinPage {
        page: ctx.page("Join your organization"),
        form,
        password_rules: rules::password_rules(&state.ciam.policy().password),
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

async fn join_page(State(state): State<AppState>, ctx: PageContext) -> Result<Response, WebError> {
    join_page_with(&state, &ctx, JoinForm::default(), FieldErrors::new())
}

async fn join(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientAddr,
    Form(mut form): Form<JoinForm>,
) -> Result<Response, WebError> {
    form.join_code = form.join_code.trim().to_owned();
    form.given_name = form.given_name.trim().to_owned();
    form.family_name = form.family_name.trim().to_owned();
    form.email = form.email.trim().to_owned();
    form.phone = form.phone.trim().to_owned();
    let mut errors = FieldErrors::new();
    let password = check_person(
        &state,
        &mut errors,
        (&form.given_name, &form.family_name),
        &form.email,
        (&form.password, &form.password_confirmation),
    );
    let Some(password) = password.filter(|_| errors.is_empty()) else {
        return join_page_with(&state, &ctx, form, errors);
    };
    state
        .throttle
        .check(&state, Rule::Registration, &client.to_string())
        .await?;
    let target = match non_empty(&form.join_code) {
        Some(code) => JoinTarget::JoinCode(code),
        None => JoinTarget::EmailDomain,
    };
    let submitted = JoinRequestForm {
        target,
        email: form.email.clone(),
        given_name: form.given_name.clone(),
        family_name: form.family_name.clone(),
        phone: non_empty(&form.phone).map(|phone| phone.split_whitespace().collect()),
        password,
    };
    match state
        .ciam
        .registrations()
        .request_to_join(&Principal::Anonymous, submitted)
        .await
    {
        Ok(request) => Ok(flash::redirect_with(
            &state,
            &format!("/join/verify?request={}", request.id),
            Flash::info(
                "We sent a code to your email address. Enter it below to confirm your request.",
            ),
        )),
        Err(error) => {
            add_error(&mut errors, error)?;
            join_page_with(&state, &ctx, form, errors)
        }
    }
}

fn request_id(query: &RequestQuery) -> Result<JoinRequestId, WebError> {
    query
        .request
        .parse()
        .map_err(|_| WebError::not_found("request not found"))
}

fn join_request_page(
    ctx: &PageContext,
    request: &ciam_core::registrations::JoinRequest,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    decided_or_verify(
        ctx,
        &request.status,
        "your organization's contact person",
        VerifyPage {
            page: ctx.page("Confirm your request"),
            action: format!("/join/verify?request={}", request.id),
            email: request.applicant.email.to_string(),
            phone: None,
            errors,
        },
    )
}

async fn join_status(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<RequestQuery>,
) -> Result<Response, WebError> {
    let id = request_id(&query)?;
    let request = state.ciam.registrations().join_request(id).await?;
    join_request_page(&ctx, &request, FieldErrors::new())
}

async fn verify_join(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<RequestQuery>,
    Form(form): Form<CodesForm>,
) -> Result<Response, WebError> {
    let id = request_id(&query)?;
    let registrations = state.ciam.registrations();
    let request = registrations.join_request(id).await?;
    let here = format!("/join/verify?request={id}");
    if request.status != RequestStatus::AwaitingVerification {
        return Ok(Redirect::to(&here).into_response());
    }
    let mut errors = FieldErrors::new();
    if form.email_code.trim().is_empty() {
        errors.add("email_code", "enter the code from the email");
        return join_request_page(&ctx, &request, errors);
    }
    let code = OneTimeCode::from_presented(form.email_code.trim());
    match registrations.verify_join_request(id, &code).await {
        Ok(_) => Ok(flash::redirect_with(
            &state,
            &here,
            Flash::success("Thank you: your email address is confirmed."),
        )),
        Err(error @ (RegistrationError::WrongCode | RegistrationError::CodeExhausted)) => {
            errors.add("email_code", error.to_string());
            let request = registrations.join_request(id).await?;
            join_request_page(&ctx, &request, errors)
        }
        Err(error) => Err(error.into()),
    }
}
