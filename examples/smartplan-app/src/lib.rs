//! **SmartPlan Application**: a small SAML 2.0 service provider standing in for SmartPlan's own
//! application. It sends people to the SmartPlan identity provider (SP-initiated single sign-on),
//! verifies the signed response with `ciam_saml::sp`, and shows who signed in, their
//! organization and the application roles the IdP resolved for them.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use smartplan_app::{AppConfig, AppState, app, fetch_metadata};
//!
//! let idp_metadata = fetch_metadata("http://127.0.0.1:8080/saml/metadata").await?;
//! let config = AppConfig::new("http://127.0.0.1:8081", idp_metadata);
//! let state = AppState::new(
//!     config,
//!     Arc::new(ciam_core::SystemClock),
//!     Arc::new(ciam_core::OsRandom),
//! )?;
//! // Register `state.sp_metadata()` with the IdP, then serve:
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, app(state)).await?;
//! # Ok(()) }
//! ```
//!
//! Sessions and pending requests live in memory: this is one process, by design a demo.

mod pages;
mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use chrono::Duration;
use ciam_core::{Clock, RandomSource};
use ciam_saml::SigningKey;
use ciam_saml::sp::{IdpConnection, InMemoryReplayCache, SpConfig};

use crate::sessions::SessionTable;

/// Largest metadata document [`fetch_metadata`] reads.
const MAX_METADATA_BYTES: usize = 512 * 1024;

/// How the application is set up.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The public base URL of the application, such as `http://127.0.0.1:8081` (no trailing
    /// slash needed). The ACS URL is `{base_url}/saml/acs`.
    pub base_url: String,
    /// The SP entity id; default `{base_url}/saml/metadata`.
    pub entity_id: Option<String>,
    /// The identity provider's metadata XML (must carry a signing certificate).
    pub idp_metadata_xml: String,
    /// Accept IdP-initiated (unsolicited) responses; off by default.
    pub allow_idp_initiated: bool,
    /// A key to sign `AuthnRequest`s with (needed when the IdP wants signed requests).
    pub signing_key: Option<SigningKey>,
    /// How long a local session lasts at most (the IdP's `SessionNotOnOrAfter` may end it
    /// sooner); default 8 hours.
    pub session_lifetime: Duration,
}

impl AppConfig {
    /// A configuration with the defaults: entity id from the base URL, SP-initiated only,
    /// unsigned requests, 8-hour sessions.
    pub fn new(base_url: impl Into<String>, idp_metadata_xml: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            entity_id: None,
            idp_metadata_xml: idp_metadata_xml.into(),
            allow_idp_initiated: false,
            signing_key: None,
            session_lifetime: Duration::hours(8),
        }
    }
}

/// Why the application could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The base URL is not an absolute http(s) URL.
    #[error("the base url {0:?} is not an absolute http or https url")]
    BaseUrl(String),
    /// The IdP metadata was refused.
    #[error("the identity provider metadata was refused: {0}")]
    Metadata(#[from] ciam_saml::MetadataError),
    /// The IdP metadata could not be fetched.
    #[error("the identity provider metadata could not be fetched: {0}")]
    Fetch(String),
}

/// Fetches IdP metadata from a URL (http or https; 10-second timeout; at most 512 KiB; no
/// redirects followed).
pub async fn fetch_metadata(url: &str) -> Result<String, SetupError> {
    let parsed = url::Url::parse(url).map_err(|e| SetupError::Fetch(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SetupError::Fetch(format!(
            "{url} is not an http or https url"
        )));
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SetupError::Fetch(e.to_string()))?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .map_err(|e| SetupError::Fetch(e.to_string()))?;
    if !response.status().is_success() {
        return Err(SetupError::Fetch(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SetupError::Fetch(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(SetupError::Fetch(format!(
                "{url} sent more than {MAX_METADATA_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| SetupError::Fetch(format!("{url} sent no utf-8 text")))
}

/// The application's shared state: cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) sp: SpConfig,
    pub(crate) idp: IdpConnection,
    pub(crate) base_url: String,
    pub(crate) secure_cookies: bool,
    pub(crate) session_lifetime: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) replay: InMemoryReplayCache,
    pub(crate) sessions: SessionTable,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("entity_id", &self.inner.sp.entity_id)
            .field("idp", &self.inner.idp.entity_id)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Reads the IdP metadata and sets the application up.
    pub fn new(
        config: AppConfig,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
    ) -> Result<Self, SetupError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed =
            url::Url::parse(&base_url).map_err(|_| SetupError::BaseUrl(config.base_url.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(SetupError::BaseUrl(config.base_url));
        }
        let mut idp = IdpConnection::from_metadata(&config.idp_metadata_xml)?;
        idp.allow_unsolicited = config.allow_idp_initiated;
        let entity_id = config
            .entity_id
            .unwrap_or_else(|| format!("{base_url}/saml/metadata"));
        let mut sp = SpConfig::new(entity_id, format!("{base_url}/saml/acs"));
        sp.signing_key = config.signing_key;
        Ok(Self {
            inner: Arc::new(Inner {
                sp,
                idp,
                secure_cookies: parsed.scheme() == "https",
                base_url,
                session_lifetime: config.session_lifetime,
                clock,
                random,
                replay: InMemoryReplayCache::new(),
                sessions: SessionTable::default(),
            }),
        })
    }

    /// The SP metadata to register with the identity provider.
    pub fn sp_metadata(&self) -> String {
        self.inner.sp.metadata()
    }

    /// The SP entity id.
    pub fn entity_id(&self) -> &str {
        &self.inner.sp.entity_id
    }

    /// The assertion consumer service URL.
    pub fn acs_url(&self) -> &str {
        &self.inner.sp.acs_url
    }

    /// The public base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The identity provider's entity id.
    pub fn idp_entity_id(&self) -> &str {
        &self.inner.idp.entity_id
    }
}

/// The application's routes: `/` (who is signed in), `/login` (starts single sign-on),
/// `/saml/acs` (consumes the response), `/saml/metadata`, `/logout`, `/app.css`, `/healthz`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login))
        .route("/saml/acs", post(pages::acs))
        .route("/saml/metadata", get(pages::metadata))
        .route("/logout", post(pages::logout))
        .route("/app.css", get(pages::stylesheet))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(pages::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(512 * 1024))
        .with_state(state)
}
