//! `GET/POST /account/password` (the current password needed; every other session ends) and
//! `GET /account/sessions` with `POST /account/sessions/others` ("sign out the others").

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ciam_core::credentials::Password;
use ciam_core::login::LoginError;
use ciam_core::sessions::AuthMethod;
use serde::Deserialize;

use crate::account::{rules, when};
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::{self, FieldErrors, Form, Page, PageContext, SignedIn, WebError};

#[derive(Template)]
#[template(path = "account/password.html")]
struct PasswordPage {
    page: Page,
    password_rules: String,
    errors: FieldErrors,
}

/// One session in the list.
struct SessionRow {
    current: bool,
    started: String,
    last_seen: String,
    methods: String,
}

#[derive(Template)]
#[template(path = "account/sessions.html")]
struct SessionsPage {
    page: Page,
    sessions: Vec<SessionRow>,
    others: usize,
}

/// The password form (no `Debug`: it holds passwords).
#[derive(Deserialize)]
pub(super) struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    new_password_confirmation: String,
}

fn password_page_with(
    state: &AppState,
    ctx: &PageContext,
    errors: FieldErrors,
) -> Result<Response, WebError> {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = PasswordPage {
        page: ctx.page("Change your password"),
        password_rules: rules::password_rules(&state.ciam.policy().password),
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

/// `GET /account/password`.
pub(super) async fn password_page(
    State(state): State<AppState>,
    ctx: PageContext,
    _me: SignedIn,
) -> Result<Response, WebError> {
    password_page_with(&state, &ctx, FieldErrors::new())
}

/// `POST /account/password`.
pub(super) async fn change_password(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    let mut errors = FieldErrors::new();
    if form.current_password.is_empty() {
        errors.add("current_password", "enter your current password");
    }
    let new_password = rules::check_new_password(
        &state.ciam.policy().password,
        &mut errors,
        ("new_password", &form.new_password),
        ("new_password_confirmation", &form.new_password_confirmation),
    );
    let Some(new_password) = new_password.filter(|_| errors.is_empty()) else {
        return password_page_with(&state, &ctx, errors);
    };
    let current = Password::new(form.current_password);
    match state
        .ciam
        .login()
        .change_password(&me.token, &current, &new_password)
        .await
    {
        Ok(revoked) => {
            let others = match revoked {
                0 => String::new(),
                1 => " Your other session was signed out.".to_owned(),
                n => format!(" Your {n} other sessions were signed out."),
            };
            Ok(flash::redirect_with(
                &state,
                "/account",
                Flash::success(format!("Your password is changed.{others}")),
            ))
        }
        Err(LoginError::InvalidCredentials) => {
            errors.add("current_password", "the current password is not correct");
            password_page_with(&state, &ctx, errors)
        }
        Err(LoginError::Password(error)) => {
            errors.add("new_password", error.to_string());
            password_page_with(&state, &ctx, errors)
        }
        Err(error) => Err(error.into()),
    }
}

fn methods_in_words(methods: &[AuthMethod]) -> String {
    let words: Vec<&str> = methods
        .iter()
        .map(|method| match method {
            AuthMethod::Pwd => "password",
            AuthMethod::Sms => "SMS code",
            AuthMethod::Otp => "authenticator app",
            AuthMethod::Fed => "company login",
            AuthMethod::Email => "email link",
            AuthMethod::Mfa => "company login with a second factor",
        })
        .collect();
    words.join(" + ")
}

/// `GET /account/sessions`.
pub(super) async fn sessions_page(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    let now = state.clock.now();
    let mut sessions = state
        .ciam
        .sessions()
        .list(&me.principal, me.user.identity)
        .await?;
    sessions.retain(|session| session.is_live(now));
    sessions.sort_by_key(|session| std::cmp::Reverse(session.last_seen_at));
    let rows: Vec<SessionRow> = sessions
        .iter()
        .map(|session| SessionRow {
            current: session.id == me.session.id,
            started: when(session.created_at),
            last_seen: when(session.last_seen_at),
            methods: methods_in_words(&session.methods),
        })
        .collect();
    let others = rows.iter().filter(|row| !row.current).count();
    let page = SessionsPage {
        page: ctx.page("Your sessions"),
        sessions: rows,
        others,
    };
    Ok(web::render(&page)?.into_response())
}

/// `POST /account/sessions/others`.
pub(super) async fn sign_out_others(
    State(state): State<AppState>,
    me: SignedIn,
) -> Result<Response, WebError> {
    let count = state.ciam.sessions().sign_out_others(&me.token).await?;
    let message = match count {
        0 => "There were no other sessions to sign out.".to_owned(),
        1 => "Your other session is signed out.".to_owned(),
        n => format!("Your {n} other sessions are signed out."),
    };
    Ok(flash::redirect_with(
        &state,
        "/account/sessions",
        Flash::success(message),
    ))
}
