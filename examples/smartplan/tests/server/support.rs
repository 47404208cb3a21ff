//! Test support: an app on MemoryStore or SQLite with a fixed clock and the cast seeded, and a
//! [`Client`] that keeps cookies and adds the CSRF token to form posts.
#![allow(
    dead_code,
    reason = "each test module uses a different part of the support"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use ciam_core::delivery::{DevMailbox, DevSmsOutbox};
use ciam_core::sessions::AuthMethod;
use ciam_core::store::SharedStore;
use ciam_core::{FixedClock, SeededRandom};
use ciam_store::{MemoryStore, SqlStore};
use smartplan::config::{Config, ServerSecret};
use smartplan::demo::{Cast, JeremyAs, SeedOptions};
use smartplan::state::{Assembly, Delivery, assemble};
use smartplan::{AppState, app};
use tower::ServiceExt;
use url::Url;

/// The instant the fixed clock starts at.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// The base URL of the test app.
pub const BASE_URL: &str = "http://127.0.0.1:8080";

/// The server secret of the tests.
pub fn secret() -> ServerSecret {
    ServerSecret::from_bytes([7u8; 32])
}

/// One SAML signing key per test process (RSA key generation takes a moment).
pub fn saml_key() -> ciam_saml::SigningKey {
    static KEY: OnceLock<smartplan::keys::GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        smartplan::keys::generate_signing_key("SmartPlan test IdP", &SeededRandom::new(1)).unwrap()
    })
    .signing_key()
    .unwrap()
}

/// Which store the app runs on.
#[derive(Clone)]
pub enum Backend {
    /// `MemoryStore`.
    Memory,
    /// SQLite in a temporary directory.
    Sqlite,
    /// An already opened store (PostgreSQL tests).
    Store(SharedStore),
}

/// How to build the app.
#[derive(Clone)]
pub struct Options {
    /// The store.
    pub backend: Backend,
    /// Seed the cast (default: yes, with Jeremy as contact person).
    pub seed: Option<SeedOptions>,
    /// Demo mode (dev mailbox pages served); default yes.
    pub demo: bool,
    /// The base URL (default `http://127.0.0.1:8080`).
    pub base_url: String,
    /// Changes to the configuration before the state is built.
    pub configure: Option<fn(&mut Config)>,
    /// The seed of the app's randomness (default 42; two nodes on one database need two).
    pub random_seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            seed: Some(SeedOptions {
                jeremy: JeremyAs::ContactPerson,
                ..SeedOptions::default()
            }),
            demo: true,
            base_url: BASE_URL.to_owned(),
            configure: None,
            random_seed: 42,
        }
    }
}

/// A running test app.
pub struct TestApp {
    /// The state (the façade, the store, the config).
    pub state: AppState,
    /// The router (`app(state)`).
    pub router: Router,
    /// The fixed clock the app reads.
    pub clock: Arc<FixedClock>,
    /// The seeded cast (when seeded).
    pub cast: Option<Cast>,
    /// The dev mailbox.
    pub mail: Arc<DevMailbox>,
    /// The dev SMS outbox.
    pub sms: Arc<DevSmsOutbox>,
    /// Keeps the SQLite directory alive.
    _dir: Option<tempfile::TempDir>,
}

/// Whether `client`'s session cookie holds a live session.
pub async fn signed_in(app: &TestApp, client: &Client) -> bool {
    let Some(token) = client.jar.get("smartplan_session") else {
        return false;
    };
    app.state
        .ciam
        .sessions()
        .validate(&ciam_core::secrets::SecretToken::from_presented(
            token.as_str(),
        ))
        .await
        .is_ok()
}

impl TestApp {
    /// The cast (panics when not seeded).
    pub fn cast(&self) -> &Cast {
        self.cast.as_ref().expect("the cast is seeded")
    }

    /// The fixed clock's time.
    pub fn clock_now(&self) -> DateTime<Utc> {
        ciam_core::Clock::now(self.clock.as_ref())
    }

    /// A client without cookies.
    pub fn client(&self) -> Client {
        Client::new(self)
    }
}

/// An app on MemoryStore with the cast seeded (Jeremy as contact person).
pub async fn app_default() -> TestApp {
    build(Options::default()).await
}

/// An app built with `options`.
pub async fn build(options: Options) -> TestApp {
    let (store, dir): (SharedStore, _) = match options.backend {
        Backend::Memory => (Arc::new(MemoryStore::new()), None),
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("smartplan.db").display());
            (Arc::new(SqlStore::open(&url).await.unwrap()), Some(dir))
        }
        Backend::Store(store) => (store, None),
    };
    let clock = Arc::new(FixedClock::new(start_time()));
    let mut config = Config::new(Url::parse(&options.base_url).unwrap(), "memory", secret());
    config.demo = options.demo;
    if let Some(configure) = options.configure {
        configure(&mut config);
    }
    let state = assemble(Assembly {
        config,
        store,
        clock: clock.clone(),
        random: Arc::new(SeededRandom::new(options.random_seed)),
        saml_key: saml_key(),
        saml_registry: None,
        delivery: Delivery::Dev,
    })
    .unwrap();
    let mail = state.dev_mailbox.clone().unwrap();
    let sms = state.dev_sms.clone().unwrap();
    let cast = match options.seed {
        Some(seed) => Some(
            smartplan::demo::seed(&state.ciam, &mail, seed)
                .await
                .unwrap(),
        ),
        None => None,
    };
    TestApp {
        router: app(state.clone()),
        state,
        clock,
        cast,
        mail,
        sms,
        _dir: dir,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl TestResponse {
    /// The `Location` header.
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

/// A browser-like client: keeps cookies, adds the CSRF token to form posts.
pub struct Client {
    router: Router,
    state: AppState,
    /// Cookies by name.
    pub jar: BTreeMap<String, String>,
    /// The peer address put into `ConnectInfo` (default 127.0.0.1:50000).
    pub peer: std::net::SocketAddr,
}

impl Client {
    /// A client of `app`.
    pub fn new(app: &TestApp) -> Self {
        Self {
            router: app.router.clone(),
            state: app.state.clone(),
            jar: BTreeMap::new(),
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 50000)),
        }
    }

    /// A client of another router (the SmartPlan Application SP, or the app built on a
    /// changed state); `state` gives the CSRF key.
    pub fn for_router(router: Router, state: &AppState) -> Self {
        Self {
            router,
            state: state.clone(),
            jar: BTreeMap::new(),
            peer: std::net::SocketAddr::from(([127, 0, 0, 1], 50000)),
        }
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let first = text.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let removed = text
                .split(';')
                .any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"));
            if removed || value.is_empty() {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    /// Sends `request` (adding the cookies and the peer address) and keeps the cookies set.
    pub async fn send(&mut self, mut request: Request<Body>) -> TestResponse {
        if let Some(cookies) = self.cookie_header() {
            request
                .headers_mut()
                .insert(header::COOKIE, cookies.parse().unwrap());
        }
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        self.keep_cookies(&headers);
        TestResponse {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> TestResponse {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// The CSRF token for the current CSRF cookie (fetching a page first when there is none).
    pub async fn csrf_token(&mut self) -> String {
        if !self.jar.contains_key("smartplan_csrf") {
            self.get("/healthz").await;
        }
        let seed = self
            .jar
            .get("smartplan_csrf")
            .cloned()
            .expect("a CSRF cookie");
        smartplan::web::csrf::token_for(&self.state, &seed)
    }

    /// `POST path` with an urlencoded form, the CSRF token added.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let token = self.csrf_token().await;
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_form_raw(path, &all).await
    }

    /// `POST path` with exactly these form fields (no CSRF token added).
    pub async fn post_form_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> TestResponse {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// A request to the API with a bearer key and an optional JSON body.
    pub async fn api(
        &mut self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(builder.body(body).unwrap()).await
    }

    /// Signs in as the person with `email` (a session started directly through the façade,
    /// as after a password sign-in) and keeps the session cookie.
    pub async fn sign_in_as(&mut self, email: &str) {
        let address = ciam_core::contact::EmailAddress::parse(email).unwrap();
        let identity = self
            .state
            .store
            .identity_by_email(&address)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no identity {email}"));
        let started = self
            .state
            .ciam
            .sessions()
            .start(identity.id, vec![AuthMethod::Pwd])
            .await
            .unwrap();
        self.jar.insert(
            "smartplan_session".to_owned(),
            started.token.expose().to_owned(),
        );
    }
}

/// The value of the hidden `csrf` field in a page, if any.
pub fn csrf_in(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf\" value=\"")?;
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The identity and principal of the person with `email` (through a session started by the
/// façade), for calling ciam-core as that person.
pub async fn principal_of(
    app: &TestApp,
    email: &str,
) -> (ciam_core::ids::IdentityId, ciam_core::Principal) {
    let address = ciam_core::contact::EmailAddress::parse(email).unwrap();
    let identity = app
        .state
        .store
        .identity_by_email(&address)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no identity {email}"));
    let started = app
        .state
        .ciam
        .sessions()
        .start(identity.id, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    let valid = app
        .state
        .ciam
        .sessions()
        .validate(&started.token)
        .await
        .unwrap();
    (identity.id, valid.principal)
}

/// Gives the person with `email` the verified phone `phone` (the profile's SMS code flow).
pub async fn verify_phone(app: &TestApp, email: &str, phone: &str) {
    let (identity, principal) = principal_of(app, email).await;
    let profile = app.state.ciam.profile();
    profile
        .request_phone_change(&principal, identity, phone)
        .await
        .unwrap();
    let text = app.sms.latest_to(phone).unwrap().text;
    let code = ciam_core::delivery::first_code(&text).unwrap().to_owned();
    profile
        .confirm_phone_change(
            &principal,
            identity,
            &ciam_core::secrets::OneTimeCode::from_presented(&code),
        )
        .await
        .unwrap();
}

/// Invites a person into `organization` as the system and accepts for them with the demo
/// password; returns the identity.
pub async fn add_person(
    app: &TestApp,
    organization: ciam_core::ids::OrganizationId,
    request: ciam_core::invitations::InvitationRequest,
) -> ciam_core::ids::IdentityId {
    let issued = app
        .state
        .ciam
        .invitations()
        .invite(&ciam_core::Principal::System, organization, request)
        .await
        .unwrap();
    let accepted = app
        .state
        .ciam
        .invitations()
        .accept(
            &ciam_core::Principal::Anonymous,
            &issued.token.unwrap(),
            ciam_core::invitations::Acceptance {
                password: Some(ciam_core::credentials::Password::new(
                    smartplan::demo::DEMO_PASSWORD,
                )),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    accepted.identity.id
}

/// A person with `email` and names, as an invitation request.
pub fn person(email: &str, given: &str, family: &str) -> ciam_core::invitations::InvitationRequest {
    ciam_core::invitations::InvitationRequest {
        email: email.to_owned(),
        given_name: Some(given.to_owned()),
        family_name: Some(family.to_owned()),
        ..Default::default()
    }
}

/// A verified join request of `email` into the organization of its email domain (waiting for
/// the contact person's approval).
pub async fn join_request(app: &TestApp, email: &str) -> ciam_core::registrations::JoinRequest {
    use ciam_core::registrations::{JoinRequestForm, JoinTarget};
    let request = app
        .state
        .ciam
        .registrations()
        .request_to_join(
            &ciam_core::Principal::Anonymous,
            JoinRequestForm {
                target: JoinTarget::EmailDomain,
                email: email.to_owned(),
                given_name: "Jo".to_owned(),
                family_name: "Joiner".to_owned(),
                phone: None,
                password: ciam_core::credentials::Password::new(smartplan::demo::DEMO_PASSWORD),
            },
        )
        .await
        .unwrap();
    let message = app.mail.latest_to(email).expect("a verification mail");
    let code = ciam_core::delivery::first_code(&message.text).expect("a code");
    app.state
        .ciam
        .registrations()
        .verify_join_request(
            request.id,
            &ciam_core::secrets::OneTimeCode::from_presented(code),
        )
        .await
        .unwrap()
}
