//! The handlers and their pages.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::{DateTime, Duration, Utc};
use ciam_saml::attributes;
use serde::Deserialize;

use crate::AppState;
use crate::sessions::{PendingRequest, SignedInPerson};

/// The session cookie (a random id; the session itself stays on the server).
pub(crate) const SESSION_COOKIE: &str = "smartplan_app_session";
/// The cookie binding a pending single sign-on request to the browser that started it.
pub(crate) const SSO_COOKIE: &str = "smartplan_app_sso";
/// How long the IdP may take to answer a request.
const PENDING_LIFETIME_MINUTES: i64 = 10;

const STYLESHEET: &str = include_str!("../static/app.css");

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    person: Option<PersonView>,
    signed_out: bool,
    idp: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
}

struct PersonView {
    display_name: String,
    email: String,
    organization: String,
    organization_id: String,
    roles: Vec<RoleView>,
    method: &'static str,
    signed_in_at: String,
    expires_at: String,
}

struct RoleView {
    key: String,
    meaning: &'static str,
}

fn meaning_of(role: &str) -> &'static str {
    match role {
        "consumption.read" => "See energy consumption",
        "consumption.export" => "Export consumption data",
        "billing.read" => "See invoices and billing",
        _ => "",
    }
}

fn method_of(context: Option<&str>) -> &'static str {
    match context {
        Some("https://refeds.org/profile/mfa") => "password and a second factor",
        Some("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport") => "password",
        _ => "single sign-on",
    }
}

fn instant(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl PersonView {
    fn from(person: &SignedInPerson) -> Self {
        let name = [person.given_name.as_deref(), person.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let email = person.email.clone().unwrap_or_default();
        Self {
            display_name: if name.is_empty() { email.clone() } else { name },
            email,
            organization: person.organization_name.clone().unwrap_or_default(),
            organization_id: person.organization_id.clone().unwrap_or_default(),
            roles: person
                .roles
                .iter()
                .map(|role| RoleView {
                    key: role.clone(),
                    meaning: meaning_of(role),
                })
                .collect(),
            method: method_of(person.authn_context.as_deref()),
            signed_in_at: instant(person.signed_in_at),
            expires_at: instant(person.expires_at),
        }
    }
}

fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown",
            )
                .into_response()
        }
    }
}

fn error_page(status: StatusCode, title: &str, message: impl Into<String>) -> Response {
    render(
        &ErrorPage {
            title,
            message: message.into(),
        },
        status,
    )
}

/// A random hex id of 32 bytes.
fn random_id(state: &AppState) -> String {
    let mut bytes = [0u8; 32];
    state.inner.random.fill(&mut bytes);
    hex::encode(bytes)
}

/// A local path to return to: only `/...`, never `//host` or a backslash trick.
fn local_path(candidate: Option<&str>) -> String {
    match candidate {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path.len() <= 512 =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn session_cookie(state: &AppState, value: String, max_age: Duration) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.inner.secure_cookies)
        .max_age(time_duration(max_age))
        .build()
}

fn sso_cookie(state: &AppState, value: String, max_age: Duration) -> Cookie<'static> {
    // The IdP posts the response from its own site: with https the cookie must be
    // SameSite=None to come along; over plain http (local demo on one host) Lax does.
    let same_site = if state.inner.secure_cookies {
        SameSite::None
    } else {
        SameSite::Lax
    };
    Cookie::build((SSO_COOKIE, value))
        .path("/saml/acs")
        .http_only(true)
        .same_site(same_site)
        .secure(state.inner.secure_cookies)
        .max_age(time_duration(max_age))
        .build()
}

fn time_duration(duration: Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(duration.num_seconds().max(0))
}

/// `GET /`: who is signed in, or an invitation to sign in.
pub(crate) async fn home(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(query): Query<HomeQuery>,
) -> Response {
    let now = state.inner.clock.now();
    let person = jar
        .get(SESSION_COOKIE)
        .and_then(|cookie| state.inner.sessions.session(cookie.value(), now));
    render(
        &HomePage {
            person: person.as_ref().map(PersonView::from),
            signed_out: query.signed_out.is_some() && person.is_none(),
            idp: &state.inner.idp.entity_id,
        },
        StatusCode::OK,
    )
}

/// Query of `GET /`.
#[derive(Debug, Deserialize)]
pub(crate) struct HomeQuery {
    signed_out: Option<String>,
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /login`: sends the browser to the IdP with an `AuthnRequest`.
pub(crate) async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(query): Query<LoginQuery>,
) -> Response {
    let now = state.inner.clock.now();
    let relay = random_id(&state);
    let outgoing = match state.inner.sp.authn_request(
        &state.inner.idp,
        Some(&relay),
        now,
        state.inner.random.as_ref(),
    ) {
        Ok(outgoing) => outgoing,
        Err(error) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Single sign-on is not available",
                format!("The sign-in request could not be made: {error}."),
            );
        }
    };
    state.inner.sessions.start_pending(
        outgoing.request_id.clone(),
        PendingRequest {
            return_to: local_path(query.return_to.as_deref()),
            expires_at: now + Duration::minutes(PENDING_LIFETIME_MINUTES),
        },
        now,
    );
    let jar = jar.add(sso_cookie(
        &state,
        outgoing.request_id,
        Duration::minutes(PENDING_LIFETIME_MINUTES),
    ));
    (jar, Redirect::to(&outgoing.url)).into_response()
}

/// The form the IdP posts to the ACS.
#[derive(Debug, Deserialize)]
pub(crate) struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `POST /saml/acs`: verifies the response and starts a session.
pub(crate) async fn acs(
    State(state): State<AppState>,
    jar: CookieJar,
    form: Result<Form<AcsForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The identity provider sent no SAML response. Start again from the sign-in button.",
        );
    };
    let now = state.inner.clock.now();
    let pending_id = jar.get(SSO_COOKIE).map(|c| c.value().to_owned());
    // Whatever happens next, the request cookie has done its job.
    let jar = jar.remove(sso_cookie(&state, String::new(), Duration::zero()));
    let pending = pending_id
        .as_deref()
        .and_then(|id| state.inner.sessions.take_pending(id, now).map(|p| (id, p)));
    let (expected, return_to) = match &pending {
        Some((id, pending)) => (Some(*id), pending.return_to.clone()),
        None if state.inner.idp.allow_unsolicited => {
            (None, local_path(form.relay_state.as_deref()))
        }
        None => {
            return (
                jar,
                error_page(
                    StatusCode::BAD_REQUEST,
                    "Sign-in failed",
                    "This sign-in was not started here, or it took longer than 10 minutes. \
                     Start again from the sign-in button.",
                ),
            )
                .into_response();
        }
    };
    let verified = match state
        .inner
        .sp
        .consume(
            &state.inner.idp,
            &form.saml_response,
            expected,
            now,
            &state.inner.replay,
        )
        .await
    {
        Ok(verified) => verified,
        Err(error) => {
            tracing::warn!(%error, "saml response refused");
            return (
                jar,
                error_page(
                    StatusCode::BAD_REQUEST,
                    "Sign-in failed",
                    format!(
                        "The response from the identity provider was refused: {error}. \
                         Start again from the sign-in button."
                    ),
                ),
            )
                .into_response();
        }
    };
    let mut expires_at = now + state.inner.session_lifetime;
    if let Some(end) = verified.session_not_on_or_after() {
        expires_at = expires_at.min(end);
    }
    let person = SignedInPerson {
        name_id: verified.name_id().to_owned(),
        email: verified.email().map(str::to_owned),
        given_name: verified
            .attribute(attributes::GIVEN_NAME)
            .map(str::to_owned),
        family_name: verified
            .attribute(attributes::FAMILY_NAME)
            .map(str::to_owned),
        organization_id: verified
            .attribute(attributes::ORGANIZATION_ID)
            .map(str::to_owned),
        organization_name: verified
            .attribute(attributes::ORGANIZATION_NAME)
            .map(str::to_owned),
        roles: verified
            .attributes()
            .get(attributes::ROLES)
            .cloned()
            .unwrap_or_default(),
        authn_context: verified.authn_context().map(str::to_owned),
        signed_in_at: now,
        expires_at,
    };
    tracing::info!(name_id = %person.name_id, "signed in through single sign-on");
    // A fresh session id at every sign-in; an older session of this browser ends.
    if let Some(old) = jar.get(SESSION_COOKIE) {
        state.inner.sessions.end_session(old.value());
    }
    let session_id = random_id(&state);
    state
        .inner
        .sessions
        .start_session(session_id.clone(), person, now);
    let jar = jar.add(session_cookie(&state, session_id, expires_at - now));
    (jar, Redirect::to(&return_to)).into_response()
}

/// `POST /logout`: ends the local session.
pub(crate) async fn logout(State(state): State<AppState>, jar: CookieJar) -> Response {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        state.inner.sessions.end_session(cookie.value());
    }
    let jar = jar.remove(session_cookie(&state, String::new(), Duration::zero()));
    (jar, Redirect::to("/?signed_out=1")).into_response()
}

/// `GET /saml/metadata`: the SP metadata.
pub(crate) async fn metadata(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        state.sp_metadata(),
    )
        .into_response()
}

/// `GET /app.css`.
pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Anything else.
pub(crate) async fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no such page in SmartPlan Application.",
    )
}

/// Security headers on every response.
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
