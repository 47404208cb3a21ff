//! The authenticator app (TOTP): `GET /account/mfa` (status), `POST /account/mfa/totp` (start:
//! the QR code as inline SVG and the secret in text), `POST /account/mfa/totp/confirm` (a first
//! code confirms it; the recovery codes are shown once), `POST /account/mfa/recovery-codes`
//! (new recovery codes, shown once; the old ones stop working). Pages that show a secret are
//! never cached.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ciam_core::credentials::CredentialKind;
use ciam_core::login::{LoginError, RecoveryCode};
use serde::Deserialize;

use crate::account::rules;
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::{self, FieldErrors, Form, Page, PageContext, SignedIn, WebError};

#[derive(Template)]
#[template(path = "account/mfa.html")]
struct MfaPage {
    page: Page,
    totp: bool,
    recovery_codes_left: usize,
    required: bool,
}

#[derive(Template)]
#[template(path = "account/mfa_enroll.html")]
struct EnrollPage {
    page: Page,
    /// The QR code, an `<svg>` element made by ciam-core (the otpauth URI, nothing typed by a
    /// person), shown inline.
    qr_svg: String,
    secret_groups: Vec<String>,
    restarted: bool,
    errors: FieldErrors,
    /// Where the code form posts.
    action: &'static str,
    /// Where the setup starts again.
    restart: &'static str,
    /// Another way to set up a second factor (the sign-in's phone step), if any.
    alternative: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "account/recovery_codes.html")]
struct RecoveryCodesPage {
    page: Page,
    codes: Vec<String>,
    first_time: bool,
    /// The "done" link.
    done_href: String,
    done_label: &'static str,
}

/// Where an enrolment page's forms go: MySmartPlan's or the sign-in's.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnrolmentForms {
    /// The code form's action.
    pub(crate) action: &'static str,
    /// The page that starts the setup again.
    pub(crate) restart: &'static str,
    /// Another way to set up a second factor (the sign-in's phone step), if any.
    pub(crate) alternative: Option<&'static str>,
}

const ACCOUNT_FORMS: EnrolmentForms = EnrolmentForms {
    action: "/account/mfa/totp/confirm",
    restart: "/account/mfa",
    alternative: None,
};

/// The page that shows a new authenticator app's QR code and secret (`enrollment`), or, after
/// a wrong code (`None`), only the code form again. Never cached.
pub(crate) fn enrollment_response(
    page: Page,
    enrollment: Option<&ciam_core::login::TotpEnrollment>,
    errors: FieldErrors,
    forms: EnrolmentForms,
) -> Result<Response, WebError> {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = EnrollPage {
        page,
        qr_svg: enrollment.map_or_else(String::new, |e| inline_svg(&e.qr_svg)),
        secret_groups: enrollment.map_or_else(Vec::new, |e| groups_of_four(&e.secret_base32)),
        restarted: enrollment.is_none(),
        errors,
        action: forms.action,
        restart: forms.restart,
        alternative: forms.alternative,
    };
    Ok(no_store((status, web::render(&page)?).into_response()))
}

/// The page that shows recovery codes once, with a link on (`done_href`). Never cached.
pub(crate) fn recovery_codes_response(
    page: Page,
    codes: &[RecoveryCode],
    first_time: bool,
    done_href: String,
    done_label: &'static str,
) -> Result<Response, WebError> {
    let page = RecoveryCodesPage {
        page,
        codes: codes_text(codes),
        first_time,
        done_href,
        done_label,
    };
    Ok(no_store(web::render(&page)?.into_response()))
}

/// `code=` (no `Debug`).
#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    code: String,
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The `<svg>` element of an SVG document (without the XML declaration), for inline use.
fn inline_svg(document: &str) -> String {
    match document.find("<svg") {
        Some(start) => document[start..].to_owned(),
        None => String::new(),
    }
}

/// The base32 secret in groups of four, easier to type.
fn groups_of_four(secret: &str) -> Vec<String> {
    secret
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

fn codes_text(codes: &[RecoveryCode]) -> Vec<String> {
    codes
        .iter()
        .map(|code| {
            let text = code.expose();
            let (left, right) = text.split_at(text.len() / 2);
            format!("{left}-{right}")
        })
        .collect()
}

/// `GET /account/mfa`.
pub(super) async fn page(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    let identity = me.identity(&state).await?;
    let credentials = state.store.credentials_of_identity(identity.id).await?;
    let totp = credentials.iter().any(|credential| {
        matches!(
            credential.kind,
            CredentialKind::Totp {
                confirmed_at: Some(_),
                ..
            }
        )
    });
    let recovery_codes_left = credentials
        .iter()
        .find_map(|credential| match &credential.kind {
            CredentialKind::RecoveryCodes { hashes } => Some(hashes.len()),
            _ => None,
        })
        .unwrap_or(0);
    let page = MfaPage {
        page: ctx.page("Authenticator app"),
        totp,
        recovery_codes_left,
        required: rules::second_factor_required(&state, &identity).await?,
    };
    Ok(web::render(&page)?.into_response())
}

/// `POST /account/mfa/totp`: a new secret; shows the QR code.
pub(super) async fn start_totp(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    if let Some(confirm) = super::confirm::unless_recent(&state, &me, "/account/mfa") {
        return Ok(confirm);
    }
    let enrollment = state
        .ciam
        .login()
        .enroll_totp(&me.principal, me.user.identity)
        .await?;
    enrollment_response(
        ctx.page("Set up your authenticator app"),
        Some(&enrollment),
        FieldErrors::new(),
        ACCOUNT_FORMS,
    )
}

/// `POST /account/mfa/totp/confirm`: the first code; shows the recovery codes once.
pub(super) async fn confirm_totp(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    if let Some(confirm) = super::confirm::unless_recent(&state, &me, "/account/mfa") {
        return Ok(confirm);
    }
    let code = form.code.trim();
    let mut errors = FieldErrors::new();
    if code.is_empty() {
        errors.add("code", "enter the 6-digit code your app shows");
    } else {
        match state
            .ciam
            .login()
            .confirm_totp(&me.principal, me.user.identity, code)
            .await
        {
            Ok(codes) => {
                return recovery_codes_response(
                    ctx.page("Your recovery codes").with_flash(Flash::success(
                        "Your authenticator app is set up. From now on you enter its code when you sign in.",
                    )),
                    &codes,
                    true,
                    "/account".to_owned(),
                    "Done: back to MySmartPlan",
                );
            }
            Err(LoginError::WrongCode) => errors.add(
                "code",
                "the code is not correct; enter the code your app shows now (it changes every 30 seconds)",
            ),
            Err(LoginError::NoPendingEnrollment) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account/mfa",
                    Flash::warning("The setup was not started or has been replaced. Start it again."),
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    enrollment_response(
        ctx.page("Set up your authenticator app"),
        None,
        errors,
        ACCOUNT_FORMS,
    )
}

/// `POST /account/mfa/recovery-codes`: new recovery codes, shown once.
pub(super) async fn new_recovery_codes(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    if let Some(confirm) = super::confirm::unless_recent(&state, &me, "/account/mfa") {
        return Ok(confirm);
    }
    match state
        .ciam
        .login()
        .renew_recovery_codes(&me.principal, me.user.identity)
        .await
    {
        Ok(codes) => recovery_codes_response(
            ctx.page("Your new recovery codes"),
            &codes,
            false,
            "/account".to_owned(),
            "Done: back to MySmartPlan",
        ),
        Err(LoginError::NoPendingEnrollment) => Ok(flash::redirect_with(
            &state,
            "/account/mfa",
            Flash::warning("Recovery codes come with an authenticator app. Set up the app first."),
        )),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_element_is_kept_without_the_xml_declaration() {
        let document = "<?xml version=\"1.0\" standalone=\"yes\"?><svg width=\"1\"></svg>";
        assert_eq!(inline_svg(document), "<svg width=\"1\"></svg>");
        assert_eq!(inline_svg("no svg here"), "");
    }

    #[test]
    fn the_secret_is_grouped_by_four() {
        assert_eq!(groups_of_four("ABCDEFGHIJ"), vec!["ABCD", "EFGH", "IJ"]);
    }
}
