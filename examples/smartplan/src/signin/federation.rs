//! Sign-in at another identity provider: "Sign in with Google" (`/signin/google`), a company's
//! own OIDC or SAML identity provider found from the email's domain (`/signin/company?email=`,
//! also reached from `/signin` by home realm discovery) or from an invitation
//! (`/signin/company?invitation=`), the OIDC callback (`/signin/oidc/callback`), the SAML
//! assertion consumer service (`POST /signin/saml/acs`) and our SP metadata
//! (`/signin/saml/metadata`).
//!
//! The attempt travels in the login-attempt cookie: it carries the OIDC state, nonce and PKCE
//! verifier (sealed by ciam-core) and the SAML request id is derived from it, so a response
//! that was not asked for by this browser is refused. The SAML ACS receives a cross-site POST,
//! which does not carry `SameSite=Lax` cookies: without the cookie it answers with a page
//! that posts the response once more from our own origin (a button, pressed by
//! `/static/signin-continue.js`), and that same-site POST carries the cookie.

use crate::web::forms::Query;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ciam_core::login::{
    AttemptToken, FederationDirectory, FederationProtocol, GOOGLE_ISSUER, LoginError, OidcError,
    StoreFederation,
};
use ciam_core::secrets::SecretToken;
use ciam_saml::sp::SamlSignInError;
use serde::Deserialize;

use crate::signin::progress::Progress;
use crate::signin::{Failure, Settled, follow, forget_attempt, page_response, signin_url};
use crate::state::AppState;
use crate::web::flash::{Flash, redirect_with};
use crate::web::{self, ClientAddr, Form, Page, PageContext, WebError, login_attempt};

/// The routes of federated sign-in.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin/google", get(google))
        .route("/signin/company", get(company))
        .route("/signin/oidc/callback", get(oidc_callback))
        .route("/signin/saml/acs", post(saml_acs))
        .route("/signin/saml/metadata", get(saml_metadata))
        .route("/static/signin-continue.js", get(continue_script))
}

/// The script of the SAML continue page (the page works without it: it has a button).
pub const CONTINUE_SCRIPT: &str = include_str!("../../static/signin-continue.js");

async fn continue_script() -> Response {
    let mut response = CONTINUE_SCRIPT.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}

/// What [`store_google_connection`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoogleConnectionChange {
    /// No Google connection was stored: added.
    Added,
    /// The stored one had another client id or secret: replaced (its other settings kept).
    Updated,
    /// The stored one is the configured one: nothing written.
    Unchanged,
}

/// Makes the stored Google connection match the `[google]` configuration, so that "Sign in
/// with Google" works from configuration alone (`smartplan serve` calls it at start-up).
/// Acts as the system; writes only when something changed, so restarts leave no audit noise.
pub async fn store_google_connection(
    ciam: &ciam_core::Ciam,
    google: &crate::config::GoogleConfig,
) -> Result<GoogleConnectionChange, ciam_core::login::FederationError> {
    use ciam_core::login::{ClientSecret, IdentityProviderConnection, OidcClientSettings};
    let providers = ciam.identity_providers();
    let secret = ClientSecret::new(google.client_secret.expose());
    let system = ciam_core::Principal::System;
    let stored = providers.connection(GOOGLE_ISSUER).await?;
    match stored {
        None => {
            let settings = OidcClientSettings::google(
                &google.client_id,
                providers.seal_client_secret(&secret)?,
            );
            providers
                .add_connection(
                    &system,
                    GOOGLE_ISSUER,
                    None,
                    IdentityProviderConnection::oidc("Google", settings),
                )
                .await?;
            Ok(GoogleConnectionChange::Added)
        }
        Some(stored) => {
            let current = stored.connection.oidc.as_ref().is_some_and(|oidc| {
                oidc.client_id == google.client_id
                    && providers.sealed_client_secret_is(&oidc.client_secret, &secret)
            });
            if current {
                return Ok(GoogleConnectionChange::Unchanged);
            }
            let mut connection = stored.connection.clone();
            let sealed = providers.seal_client_secret(&secret)?;
            match connection.oidc.as_mut() {
                Some(oidc) => {
                    oidc.client_id = google.client_id.clone();
                    oidc.client_secret = sealed;
                }
                None => {
                    connection.oidc = Some(OidcClientSettings::google(&google.client_id, sealed));
                }
            }
            providers
                .update_connection(&system, GOOGLE_ISSUER, stored.version, connection)
                .await?;
            Ok(GoogleConnectionChange::Updated)
        }
    }
}

/// Whether a Google connection is stored (the "Sign in with Google" button is shown then).
pub async fn google_configured(state: &AppState) -> Result<bool, WebError> {
    Ok(state
        .ciam
        .identity_providers()
        .connection(GOOGLE_ISSUER)
        .await?
        .is_some_and(|stored| stored.connection.protocol == FederationProtocol::Oidc))
}

/// The error page for a failed round trip, in words a person can act on.
fn federation_error(error: LoginError) -> WebError {
    match error {
        LoginError::Oidc(OidcError::Discovery(detail)) => {
            tracing::warn!(%detail, "identity provider unreachable");
            WebError::new(
                StatusCode::BAD_GATEWAY,
                "idp_unavailable",
                "the sign-in service of your organization cannot be reached right now; try again in a moment or sign in another way",
            )
        }
        LoginError::Oidc(OidcError::StateMismatch | OidcError::Replayed) => WebError::invalid(
            "this sign-in response does not belong to this browser or was already used; start again",
        )
        .with_code("expired"),
        LoginError::Oidc(other) => {
            tracing::warn!(error = %other, "oidc sign-in refused");
            WebError::new(
                StatusCode::BAD_GATEWAY,
                "idp_refused",
                "the sign-in at your identity provider could not be verified; start again, and tell your administrator if it keeps happening",
            )
        }
        LoginError::UnknownProvider => WebError::not_found("this sign-in provider is not configured"),
        other => other.into(),
    }
}

fn saml_error(error: SamlSignInError) -> Result<LoginError, WebError> {
    match error {
        SamlSignInError::Login(error) => Ok(error),
        SamlSignInError::Store(error) => Err(error.into()),
        SamlSignInError::NotSamlProvider => Err(WebError::not_found(
            "this sign-in provider is not configured",
        )),
        SamlSignInError::RequestAlreadyAnswered => Err(WebError::invalid(
            "this sign-in response was already used; start again",
        )
        .with_code("expired")),
        SamlSignInError::TransientNameId => Err(WebError::invalid(
            "your company's identity provider does not name you the same way each time; its administrator must send a persistent nameid",
        )),
        other => {
            tracing::warn!(error = %other, "saml sign-in refused");
            Err(WebError::new(
                StatusCode::BAD_GATEWAY,
                "idp_refused",
                "the answer of your company's identity provider could not be verified; start again, and tell your administrator if it keeps happening",
            ))
        }
    }
}

/// Sends the browser to the identity provider of a federated attempt, keeping the attempt
/// (with the OIDC request, for OIDC) in the login-attempt cookie.
pub async fn go_to_idp(state: &AppState, attempt: &AttemptToken) -> Result<Response, WebError> {
    let login = state.ciam.login();
    let federated = login.federated_attempt(attempt).map_err(federation_error)?;
    let stored = state
        .ciam
        .identity_providers()
        .connection(&federated.provider)
        .await?
        .ok_or_else(|| WebError::not_found("this sign-in provider is not configured"))?;
    let (url, attempt) = match stored.connection.protocol {
        FederationProtocol::Oidc => {
            let redirect = login
                .oidc_begin(&state.oidc, attempt)
                .await
                .map_err(federation_error)?;
            (redirect.authorization_url, redirect.attempt)
        }
        FederationProtocol::Saml => {
            let outgoing = match state.saml_sign_in.begin(attempt, None).await {
                Ok(outgoing) => outgoing,
                Err(error) => {
                    return Err(saml_error(error)
                        .map(federation_error)
                        .unwrap_or_else(|e| e));
                }
            };
            (outgoing.url, attempt.clone())
        }
    };
    let mut response = Redirect::to(&url).into_response();
    login_attempt::cookie(state, &attempt).append_to(response.headers_mut());
    Ok(response)
}

#[derive(Debug, Deserialize)]
struct GoogleQuery {
    next: Option<String>,
}

async fn google(
    State(state): State<AppState>,
    client: ClientAddr,
    Query(query): Query<GoogleQuery>,
) -> Result<Response, WebError> {
    if !google_configured(&state).await? {
        return Err(WebError::not_found(
            "sign-in with Google is not set up on this server",
        ));
    }
    let attempt = state
        .ciam
        .login()
        .start_at_provider(GOOGLE_ISSUER, Some(&client.to_string()))
        .await
        .map_err(federation_error)?;
    let next = query
        .next
        .as_deref()
        .and_then(web::safe_next)
        .map(str::to_owned);
    let mut response = go_to_idp(&state, &attempt).await?;
    Progress::new(String::new(), next)
        .cookie(&state)
        .append_to(response.headers_mut());
    Ok(response)
}

#[derive(Deserialize)]
struct CompanyQuery {
    email: Option<String>,
    invitation: Option<String>,
    next: Option<String>,
}

impl std::fmt::Debug for CompanyQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyQuery")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

async fn company(
    State(state): State<AppState>,
    client: ClientAddr,
    Query(query): Query<CompanyQuery>,
) -> Result<Response, WebError> {
    let source = client.to_string();
    let next = query
        .next
        .as_deref()
        .and_then(web::safe_next)
        .map(str::to_owned);
    if let Some(token) = query
        .invitation
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let token = SecretToken::from_presented(token);
        let invitation = state.ciam.invitations().preview(&token).await?;
        let organization = state
            .store
            .organization(invitation.organization)
            .await?
            .ok_or_else(|| WebError::not_found("the organization of this invitation is gone"))?;
        let directory = StoreFederation::new(state.store.clone());
        let Some(idp) = directory.idp_for(&organization).await? else {
            return Ok(redirect_with(
                &state,
                &format!(
                    "/invitations/accept?token={}",
                    url::form_urlencoded::byte_serialize(token.expose().as_bytes())
                        .collect::<String>()
                ),
                Flash::info(format!(
                    "{} has no company login here; choose a password instead",
                    organization.name
                )),
            ));
        };
        let attempt = state
            .ciam
            .login()
            .start_invitation_at_provider(&token, &idp.provider, Some(&source))
            .await
            .map_err(federation_error)?;
        let mut response = go_to_idp(&state, &attempt).await?;
        Progress::new(invitation.email.to_string(), next)
            .cookie(&state)
            .append_to(response.headers_mut());
        return Ok(response);
    }
    let Some(email) = query
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
    else {
        return Ok(redirect_with(
            &state,
            &signin_url(next.as_deref()),
            Flash::info("enter your work email address; we find your company's login from it"),
        ));
    };
    if ciam_core::contact::EmailAddress::parse(email).is_err() {
        return Ok(redirect_with(
            &state,
            &signin_url(next.as_deref()),
            Flash::warning("this is not an email address; it looks like name@company.com"),
        ));
    }
    let step = state
        .ciam
        .login()
        .start(email, Some(&source))
        .await
        .map_err(WebError::from)?;
    let mut response = follow(&state, Progress::new(email, next), step).await?;
    if response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        == Some("/signin/password")
    {
        Flash::info("your organization has no company login here; sign in with your password")
            .cookie(&state)
            .append_to(response.headers_mut());
    }
    Ok(response)
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

async fn oidc_callback(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    client: ClientAddr,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let progress = Progress::read(&state, &headers).unwrap_or_default();
    let restart = |message: &str| {
        let mut response = redirect_with(
            &state,
            &signin_url(progress.next.as_deref()),
            Flash::warning(message.to_owned()),
        );
        forget_attempt(&state, response.headers_mut());
        response
    };
    let Some(attempt) = login_attempt::read(&headers) else {
        return Ok(restart(
            "this sign-in response does not belong to a sign-in started in this browser; start again",
        ));
    };
    if let Some(error) = &query.error {
        let message = if error == "access_denied" {
            "the sign-in was cancelled at the identity provider; start again or sign in another way"
        } else {
            "the identity provider did not sign you in; start again or sign in another way"
        };
        return Ok(restart(message));
    }
    let (Some(code), Some(returned_state)) = (query.code.as_deref(), query.state.as_deref()) else {
        return Err(WebError::bad_request(
            "bad_callback",
            "this sign-in response is incomplete; start again",
        ));
    };
    let result = state
        .ciam
        .login()
        .oidc_finish(
            &state.oidc,
            &attempt,
            code,
            returned_state,
            Some(&client.to_string()),
        )
        .await;
    finish_federated(&state, &ctx, progress, result).await
}

/// Follows the step after a federated round trip, or explains why it failed.
async fn finish_federated(
    state: &AppState,
    ctx: &PageContext,
    progress: Progress,
    result: Result<ciam_core::login::LoginStep, LoginError>,
) -> Result<Response, WebError> {
    match result {
        Ok(step) => follow(state, progress, step).await,
        Err(error @ (LoginError::Oidc(_) | LoginError::UnknownProvider)) => {
            state.metrics.login("federated", "failure");
            Err(federation_error(error))
        }
        Err(error) => {
            state.metrics.login("federated", "failure");
            match Failure::from_login(error)
                .settle(state, ctx, Some(&progress))
                .await?
            {
                Settled::Done(response) => Ok(response),
                Settled::Inline(problem) => {
                    let mut response = redirect_with(
                        state,
                        &signin_url(progress.next.as_deref()),
                        Flash::warning(problem.message),
                    );
                    forget_attempt(state, response.headers_mut());
                    Ok(response)
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse", default)]
    saml_response: String,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
    /// Set by our own continue page: the POST came from our origin.
    #[serde(default)]
    resubmitted: Option<String>,
}

impl std::fmt::Debug for AcsForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcsForm(<redacted>)")
    }
}

#[derive(Template)]
#[template(path = "signin/saml_continue.html")]
struct ContinuePage {
    page: Page,
    saml_response: String,
    relay_state: Option<String>,
}

/// The largest `SAMLResponse` accepted (base64), before any parsing.
const MAX_SAML_RESPONSE: usize = 256 * 1024;

async fn saml_acs(
    State(state): State<AppState>,
    ctx: PageContext,
    headers: HeaderMap,
    client: ClientAddr,
    Form(form): Form<AcsForm>,
) -> Result<Response, WebError> {
    let saml_response = form.saml_response.trim();
    if saml_response.is_empty() {
        return Err(WebError::bad_request(
            "bad_saml_response",
            "this request carries no saml response; start the sign-in again",
        ));
    }
    if saml_response.len() > MAX_SAML_RESPONSE {
        return Err(WebError::payload_too_large(MAX_SAML_RESPONSE));
    }
    let progress = Progress::read(&state, &headers).unwrap_or_default();
    let Some(attempt) = login_attempt::read(&headers) else {
        if form.resubmitted.is_some() {
            let mut response = redirect_with(
                &state,
                &signin_url(progress.next.as_deref()),
                Flash::warning(
                    "this sign-in response does not belong to a sign-in started in this browser; start again",
                ),
            );
            forget_attempt(&state, response.headers_mut());
            return Ok(response);
        }
        // The cross-site POST came without our SameSite=Lax cookies: post it again from here.
        let html = web::render(&ContinuePage {
            page: ctx.page("Continue signing in"),
            saml_response: saml_response.to_owned(),
            relay_state: form.relay_state,
        })?;
        return Ok(page_response(StatusCode::OK, html, None));
    };
    let result = match state
        .saml_sign_in
        .finish(&attempt, saml_response, Some(&client.to_string()))
        .await
    {
        Ok(step) => Ok(step),
        Err(error) => match saml_error(error) {
            Ok(login_error) => Err(login_error),
            Err(web_error) => {
                state.metrics.login("federated", "failure");
                let mut response = web_error.into_response();
                forget_attempt(&state, response.headers_mut());
                return Ok(response);
            }
        },
    };
    finish_federated(&state, &ctx, progress, result).await
}

async fn saml_metadata(State(state): State<AppState>) -> Response {
    let mut response = state.saml_sign_in.config().metadata().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    response
}
