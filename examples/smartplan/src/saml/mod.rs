//! The SAML identity provider: metadata, single sign-on and single logout.
//!
//! - `GET /saml/metadata`: our IdP metadata, signed, with every published signing certificate
//!   (two during a key rollover).
//! - `GET /saml/sso` (HTTP-Redirect) and `POST /saml/sso` (HTTP-POST): an `AuthnRequest` from a
//!   registered service provider. A POST is checked, then sent on as a same-site `GET
//!   /saml/sso?binding=post&SAMLRequest=…` (the session cookie is `SameSite=Lax`, so it does not
//!   come along on the SP's cross-site POST). A person who is not signed in goes to
//!   `/signin?next=…` with the raw request in `next`; coming back, the request is checked again
//!   in full (signature, ACS, age) before anything is issued. The signed response goes to the
//!   ACS in an auto-submitting form whose script the page's CSP allows by hash.
//! - `GET|POST /saml/slo`: a signed `LogoutRequest`; the sessions it names end.
//! - `GET /saml/launch?sp=ENTITY_ID`: IdP-initiated sign-on to a registered SP that allows it
//!   (the "Open SmartPlan Application" link).

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use ciam_saml::idp::{
    AuthnRequest, ErrorStatus, LogoutReply, LogoutRequest, RequestError, SamlResponse,
    ServiceProvider, SignOnError, SignedInUser,
};
use serde::Deserialize;

use crate::state::AppState;
use crate::web::session::clear_session_cookie;
use crate::web::{Form, MaybeSignedIn, SignedIn, WebError};

/// How recent a sign-in must be to answer a request with `ForceAuthn`; an older session ends
/// and the person signs in again.
pub const FORCE_AUTHN_WINDOW_SECONDS: i64 = 120;

/// How long the published metadata says it is valid.
const METADATA_VALIDITY_DAYS: i64 = 7;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/saml/metadata", get(metadata))
        .route("/saml/sso", get(sso_redirect).post(sso_post))
        .route("/saml/slo", get(slo_redirect).post(slo_post))
        .route("/saml/launch", get(launch))
}

/// The address that opens a registered SP by IdP-initiated sign-on (for links on pages).
pub fn launch_href(entity_id: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(entity_id.as_bytes()).collect();
    format!("/saml/launch?sp={encoded}")
}

/// `GET /saml/metadata`.
async fn metadata(State(state): State<AppState>) -> Result<Response, WebError> {
    let now = state.clock.now();
    let xml = state
        .saml
        .metadata(true, Some(now + Duration::days(METADATA_VALIDITY_DAYS)))?;
    let mut response = xml.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}

/// The form fields of the POST binding.
#[derive(Debug, Deserialize)]
struct SamlForm {
    #[serde(rename = "SAMLRequest")]
    saml_request: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

impl SamlForm {
    fn request(&self) -> Result<&str, WebError> {
        self.saml_request
            .as_deref()
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| {
                WebError::bad_request(
                    "saml_request_missing",
                    "the application sent no sign-in request (SAMLRequest is missing)",
                )
            })
    }
}

/// A POST-binding request carried over to the same-site `GET /saml/sso`.
#[derive(Debug, Deserialize)]
struct PostResume {
    binding: String,
    #[serde(flatten)]
    form: SamlForm,
}

impl PostResume {
    fn from_query(query: &str) -> Option<Self> {
        serde_urlencoded::from_str::<Self>(query)
            .ok()
            .filter(|resume| resume.binding == "post")
    }

    fn path(form: &SamlForm, request: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("binding", "post");
        query.append_pair("SAMLRequest", request);
        if let Some(relay) = &form.relay_state {
            query.append_pair("RelayState", relay);
        }
        format!("/saml/sso?{}", query.finish())
    }
}

/// `GET /saml/sso`: the HTTP-Redirect binding (the raw query, exactly as received, is what the
/// detached signature covers), or a POST-binding request carried over by [`sso_post`].
async fn sso_redirect(
    State(state): State<AppState>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let query = query.unwrap_or_default();
    let now = state.clock.now();
    let registry = state.saml_registry.as_ref();
    let received = match PostResume::from_query(&query) {
        Some(resume) => {
            let request = resume.form.request()?;
            state
                .saml
                .receive_post(registry, request, resume.form.relay_state.as_deref(), now)
                .await
        }
        None => state.saml.receive_redirect(registry, &query, now).await,
    };
    let request = accepted(&state, received, now)?;
    let request = match request {
        Accepted::Request(request) => request,
        Accepted::Answered(response) => return Ok(response),
    };
    sign_on(
        &state,
        &request,
        signed_in,
        format!("/saml/sso?{query}"),
        now,
    )
    .await
}

/// `POST /saml/sso`: the HTTP-POST binding. The request is checked here (garbage gets its
/// error page at once) and then carried to `GET /saml/sso`, where the session cookie is seen.
async fn sso_post(
    State(state): State<AppState>,
    Form(form): Form<SamlForm>,
) -> Result<Response, WebError> {
    let now = state.clock.now();
    let request = form.request()?;
    let received = state
        .saml
        .receive_post(
            state.saml_registry.as_ref(),
            request,
            form.relay_state.as_deref(),
            now,
        )
        .await;
    match accepted(&state, received, now)? {
        Accepted::Request(_) => Ok(Redirect::to(&PostResume::path(&form, request)).into_response()),
        Accepted::Answered(response) => Ok(response),
    }
}

enum Accepted {
    Request(AuthnRequest),
    Answered(Response),
}

/// A checked request, or the answer to a refused one: a signed error response to the SP where
/// the spec says so (its ACS is registered), an error page otherwise.
fn accepted(
    state: &AppState,
    received: Result<AuthnRequest, RequestError>,
    now: DateTime<Utc>,
) -> Result<Accepted, WebError> {
    match received {
        Ok(request) => Ok(Accepted::Request(request)),
        Err(error) => match error.error_reply() {
            Some(reply) => {
                tracing::info!(%error, "saml request refused with an error response");
                let message =
                    state
                        .saml
                        .error_response(reply, now, state.ciam.random().as_ref())?;
                Ok(Accepted::Answered(post_form(&message)?))
            }
            None => {
                tracing::info!(%error, "saml request refused");
                Err(error.into())
            }
        },
    }
}

async fn registered(state: &AppState, entity_id: &str) -> Result<Arc<ServiceProvider>, WebError> {
    state
        .saml_registry
        .get(entity_id)
        .await?
        .ok_or_else(|| RequestError::UnknownIssuer.into())
}

/// Answers a checked request for the browser's session: the signed response, a refusal to the
/// SP, or a detour through sign-in that comes back to `resume`.
async fn sign_on(
    state: &AppState,
    request: &AuthnRequest,
    signed_in: Option<SignedIn>,
    resume: String,
    now: DateTime<Utc>,
) -> Result<Response, WebError> {
    let random = state.ciam.random().clone();
    let sp = request.service_provider();
    let signed_in = match signed_in {
        Some(signed_in)
            if request.force_authn()
                && signed_in.session.created_at
                    < now - Duration::seconds(FORCE_AUTHN_WINDOW_SECONDS) =>
        {
            // The application wants a fresh sign-in: this session ends, the person signs in
            // again and comes back here with a new one.
            state.ciam.sessions().sign_out(&signed_in.token).await?;
            let mut response = WebError::sign_in_required(resume).into_response();
            clear_session_cookie(state).append_to(response.headers_mut());
            return Ok(response);
        }
        Some(signed_in) => signed_in,
        None if request.is_passive() => {
            let message = state.saml.error_response(
                &request.refusal(ErrorStatus::NoPassive),
                now,
                random.as_ref(),
            )?;
            return post_form(&message);
        }
        None => return Err(WebError::sign_in_required(resume)),
    };
    match SignedInUser::for_session_access(&state.ciam, &signed_in.session, &signed_in.access, sp)
        .await
    {
        Ok(user) => post_form(
            &state
                .saml
                .respond(sp, request, &user, now, random.as_ref())?,
        ),
        Err(SignOnError::NoAccess) => post_form(&state.saml.error_response(
            &request.refusal(ErrorStatus::RequestDenied),
            now,
            random.as_ref(),
        )?),
        Err(other) => Err(other.into()),
    }
}

/// `GET /saml/slo`: a `LogoutRequest` on the HTTP-Redirect binding.
async fn slo_redirect(
    State(state): State<AppState>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let now = state.clock.now();
    let request = state
        .saml
        .receive_logout_redirect(
            state.saml_registry.as_ref(),
            &query.unwrap_or_default(),
            now,
        )
        .await?;
    logout(&state, &request, signed_in, now).await
}

/// `POST /saml/slo`: a `LogoutRequest` on the HTTP-POST binding.
async fn slo_post(
    State(state): State<AppState>,
    MaybeSignedIn(signed_in): MaybeSignedIn,
    Form(form): Form<SamlForm>,
) -> Result<Response, WebError> {
    let now = state.clock.now();
    let request = state
        .saml
        .receive_logout_post(
            state.saml_registry.as_ref(),
            form.request()?,
            form.relay_state.as_deref(),
            now,
        )
        .await?;
    logout(&state, &request, signed_in, now).await
}

async fn logout(
    state: &AppState,
    request: &LogoutRequest,
    signed_in: Option<SignedIn>,
    now: DateTime<Utc>,
) -> Result<Response, WebError> {
    let sp = registered(state, request.sp_entity_id()).await?;
    let browser_session = signed_in.as_ref().map(|signed_in| &signed_in.session);
    let outcome = state
        .saml
        .end_sessions(&state.ciam, &sp, request, browser_session)
        .await?;
    let reply =
        state
            .saml
            .logout_response(&sp, request, &outcome, now, state.ciam.random().as_ref())?;
    let mut response = match reply {
        LogoutReply::Redirect(redirect) => Redirect::to(&redirect.url).into_response(),
        LogoutReply::Post(message) => post_form(&message)?,
    };
    if let Some(signed_in) = signed_in
        && outcome.ended.contains(&signed_in.session.id)
    {
        clear_session_cookie(state).append_to(response.headers_mut());
    }
    Ok(response)
}

/// The query of `GET /saml/launch`.
#[derive(Debug, Deserialize)]
struct LaunchQuery {
    sp: Option<String>,
}

/// `GET /saml/launch?sp=ENTITY_ID`: signs the signed-in person in to a registered SP that
/// allows IdP-initiated sign-on.
async fn launch(
    State(state): State<AppState>,
    signed_in: SignedIn,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let now = state.clock.now();
    let entity_id = serde_urlencoded::from_str::<LaunchQuery>(&query.unwrap_or_default())
        .ok()
        .and_then(|query| query.sp)
        .filter(|sp| !sp.trim().is_empty())
        .ok_or_else(|| {
            WebError::bad_request("missing_sp", "say which application to open (sp=…)")
        })?;
    let sp =
        state.saml_registry.get(&entity_id).await?.ok_or_else(|| {
            WebError::not_found("there is no application registered at this address")
        })?;
    let user =
        SignedInUser::for_session_access(&state.ciam, &signed_in.session, &signed_in.access, &sp)
            .await?;
    let message =
        state
            .saml
            .respond_unsolicited(&sp, &user, None, now, state.ciam.random().as_ref())?;
    post_form(&message)
}

/// The auto-submitting page that posts a SAML message to the SP, with its own CSP (the submit
/// script allowed by hash, `form-action` the SP's origin) instead of the site-wide one.
fn post_form(message: &SamlResponse) -> Result<Response, WebError> {
    let csp = HeaderValue::from_str(&message.content_security_policy())
        .map_err(|error| WebError::internal(format!("saml post form csp: {error}")))?;
    let mut response = (StatusCode::OK, Html(message.post_form())).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
