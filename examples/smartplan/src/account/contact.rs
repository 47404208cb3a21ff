//! Email and phone changes: `GET/POST /account/email` (a code goes to the new address; codes
//! are spaced and limited per person and per address by ciam-core, and a refused request is
//! the page again with 429 and `Retry-After`),
//! `POST /account/email/verify`, `GET/POST /account/phone` (a code goes to the new number by
//! SMS; `decision=remove` removes the phone), `POST /account/phone/verify`. The old value
//! stays until the code is confirmed.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ciam_core::identities::{Identity, ProfileError};
use ciam_core::login::SecondFactor;
use ciam_core::secrets::OneTimeCode;
use serde::Deserialize;

use crate::account::rules;
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::throttle::Rule;
use crate::web::{self, FieldErrors, Form, Page, PageContext, SignedIn, WebError};

#[derive(Template)]
#[template(path = "account/email.html")]
struct EmailPage {
    page: Page,
    current: String,
    pending: Option<String>,
    email: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "account/phone.html")]
struct PhonePage {
    page: Page,
    current: Option<String>,
    verified: bool,
    pending: Option<String>,
    required: bool,
    phone: String,
    errors: FieldErrors,
}

/// `email=`.
#[derive(Deserialize)]
pub(super) struct EmailForm {
    #[serde(default)]
    email: String,
}

/// `phone=`, or `decision=remove`.
#[derive(Deserialize)]
pub(super) struct PhoneForm {
    #[serde(default)]
    phone: String,
    #[serde(default)]
    decision: String,
}

/// `code=` (never logged: no `Debug`).
#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    code: String,
}

fn status_for(errors: &FieldErrors) -> StatusCode {
    if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

async fn me_identity(state: &AppState, me: &SignedIn) -> Result<Identity, WebError> {
    Ok(state
        .ciam
        .profile()
        .get(&me.principal, me.user.identity)
        .await?)
}

fn email_page_with(
    ctx: &PageContext,
    identity: &Identity,
    email: String,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    let status = status_for(&errors);
    let page = EmailPage {
        page: ctx.page("Your email address"),
        current: identity.email.to_string(),
        pending: identity
            .pending_email
            .as_ref()
            .map(|pending| pending.new_value.to_string()),
        email,
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

async fn phone_page_with(
    state: &AppState,
    ctx: &PageContext,
    identity: &Identity,
    phone: String,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    let status = status_for(&errors);
    let page = PhonePage {
        page: ctx.page("Your mobile phone"),
        current: identity.phone.as_ref().map(ToString::to_string),
        verified: identity.phone_verified,
        pending: identity
            .pending_phone
            .as_ref()
            .map(|pending| pending.new_value.to_string()),
        required: rules::second_factor_required(state, identity).await?,
        phone,
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

/// `GET /account/email`.
pub(super) async fn email_page(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    let identity = me_identity(&state, &me).await?;
    email_page_with(&ctx, &identity, String::new(), FieldErrors::new())
}

/// `POST /account/email`: sends a code to the new address.
pub(super) async fn request_email(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<EmailForm>,
) -> Result<Response, WebError> {
    if let Some(confirm) = super::confirm::unless_recent(&state, &me, "/account/email") {
        return Ok(confirm);
    }
    let email = form.email.trim().to_owned();
    let mut errors = FieldErrors::new();
    if email.is_empty() {
        errors.add("email", "enter the new email address");
    } else {
        state
            .throttle
            .check(&state, Rule::Sms, &format!("email:{}", me.user.identity))
            .await?;
        match state
            .ciam
            .profile()
            .request_email_change(&me.principal, me.user.identity, &email)
            .await
        {
            Ok(_) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account/email",
                    Flash::info(format!(
                        "We sent a code to {email}. Enter it below to confirm the change."
                    )),
                ));
            }
            Err(ProfileError::Invalid(error)) => errors.add("email", error.to_string()),
            Err(ProfileError::EmailTaken) => errors.add(
                "email",
                "another account uses this email address; choose another",
            ),
            Err(ProfileError::Unchanged) => {
                errors.add("email", "this is already your email address");
            }
            Err(ProfileError::CodesThrottled { retry_after }) => {
                let seconds = u64::try_from(retry_after.num_seconds().max(1)).unwrap_or(1);
                errors.add(
                    "email",
                    format!(
                        "a code was sent moments ago, or too many this hour; wait {} and try again",
                        crate::signin::wait_words(seconds)
                    ),
                );
                let identity = me_identity(&state, &me).await?;
                let mut response = email_page_with(&ctx, &identity, email, errors)?;
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                return Ok(response);
            }
            Err(error) => return Err(error.into()),
        }
    }
    let identity = me_identity(&state, &me).await?;
    email_page_with(&ctx, &identity, email, errors)
}

/// `POST /account/email/verify`.
pub(super) async fn verify_email(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let mut errors = FieldErrors::new();
    if form.code.trim().is_empty() {
        errors.add("code", "enter the code from the email");
    } else {
        let code = OneTimeCode::from_presented(form.code.trim());
        match state
            .ciam
            .profile()
            .confirm_email_change(&me.principal, me.user.identity, &code)
            .await
        {
            Ok(identity) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account",
                    Flash::success(format!("Your email address is now {}.", identity.email)),
                ));
            }
            Err(ProfileError::NothingPending) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account/email",
                    Flash::warning(
                        "No email change is waiting for a code. Enter the new address first.",
                    ),
                ));
            }
            Err(error @ (ProfileError::WrongCode | ProfileError::CodeExhausted)) => {
                errors.add("code", error.to_string());
            }
            Err(error) => return Err(error.into()),
        }
    }
    let identity = me_identity(&state, &me).await?;
    email_page_with(&ctx, &identity, String::new(), errors)
}

/// `GET /account/phone`.
pub(super) async fn phone_page(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    let identity = me_identity(&state, &me).await?;
    phone_page_with(&state, &ctx, &identity, String::new(), FieldErrors::new()).await
}

/// `POST /account/phone`: sends a code by SMS to the new number, or removes the phone.
pub(super) async fn request_phone(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<PhoneForm>,
) -> Result<Response, WebError> {
    if let Some(confirm) = super::confirm::unless_recent(&state, &me, "/account/phone") {
        return Ok(confirm);
    }
    let identity = me_identity(&state, &me).await?;
    if form.decision == "remove" {
        return remove_phone(&state, &ctx, &me, &identity).await;
    }
    let phone: String = form.phone.split_whitespace().collect();
    let mut errors = FieldErrors::new();
    if phone.is_empty() {
        errors.add(
            "phone",
            "enter your mobile number, starting with + and the country code",
        );
    } else {
        state
            .throttle
            .check(&state, Rule::Sms, &format!("phone:{}", me.user.identity))
            .await?;
        match state
            .ciam
            .profile()
            .request_phone_change(&me.principal, me.user.identity, &phone)
            .await
        {
            Ok(_) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account/phone",
                    Flash::info(format!(
                        "We sent a code by SMS to {phone}. Enter it below to confirm the number."
                    )),
                ));
            }
            Err(ProfileError::Invalid(_)) => errors.add(
                "phone",
                "enter the number in international format: + and the country code, then the number, such as +358401234567",
            ),
            Err(ProfileError::Unchanged) => {
                errors.add("phone", "this number is already yours and verified");
            }
            Err(error) => return Err(error.into()),
        }
    }
    phone_page_with(
        &state,
        &ctx,
        &identity,
        form.phone.trim().to_owned(),
        errors,
    )
    .await
}

async fn remove_phone(
    state: &AppState,
    ctx: &PageContext,
    me: &SignedIn,
    identity: &Identity,
) -> Result<Response, WebError> {
    let mut errors = FieldErrors::new();
    let factors = rules::second_factors(state, identity).await?;
    let only_factor = factors == [SecondFactor::Sms];
    if identity.phone.is_none() {
        errors.add("remove", "there is no phone number to remove");
    } else if only_factor && rules::second_factor_required(state, identity).await? {
        errors.add(
            "remove",
            "your organization requires a second factor and your phone is your only one; set up an authenticator app first",
        );
    } else {
        state
            .ciam
            .profile()
            .remove_phone(&me.principal, me.user.identity)
            .await?;
        return Ok(flash::redirect_with(
            state,
            "/account/phone",
            Flash::success("Your phone number is removed."),
        ));
    }
    phone_page_with(state, ctx, identity, String::new(), errors).await
}

/// `POST /account/phone/verify`.
pub(super) async fn verify_phone(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let mut errors = FieldErrors::new();
    if form.code.trim().is_empty() {
        errors.add("code", "enter the code from the SMS");
    } else {
        let code = OneTimeCode::from_presented(form.code.trim());
        match state
            .ciam
            .profile()
            .confirm_phone_change(&me.principal, me.user.identity, &code)
            .await
        {
            Ok(identity) => {
                let phone = identity
                    .phone
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                return Ok(flash::redirect_with(
                    &state,
                    "/account",
                    Flash::success(format!(
                        "Your mobile phone {phone} is verified. From now on you can receive sign-in codes by SMS."
                    )),
                ));
            }
            Err(ProfileError::NothingPending) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account/phone",
                    Flash::warning(
                        "No phone change is waiting for a code. Enter the number first.",
                    ),
                ));
            }
            Err(error @ (ProfileError::WrongCode | ProfileError::CodeExhausted)) => {
                errors.add("code", error.to_string());
            }
            Err(error) => return Err(error.into()),
        }
    }
    let identity = me_identity(&state, &me).await?;
    phone_page_with(&state, &ctx, &identity, String::new(), errors).await
}
