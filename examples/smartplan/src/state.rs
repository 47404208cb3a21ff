//! [`AppState`]: what every handler gets, cheap to clone.

use std::sync::Arc;

use ciam_core::Ciam;
use ciam_core::clock::{Clock, RandomSource};
use ciam_core::delivery::{DevMailbox, DevSmsOutbox, Mailer, SmsSender};
use ciam_core::login::{OidcLogin, OidcOptions};
use ciam_core::store::SharedStore;
use ciam_saml::SigningKey;
use ciam_saml::idp::{IdentityProvider, IdpConfig, KeyRing, ServiceProviderRegistry};
use ciam_saml::sp::{SamlSignIn, SpConfig};

use crate::config::Config;
use crate::ops::Metrics;
use crate::outgoing::Outgoing;
use crate::web::WebKeys;
use crate::web::throttle::Throttle;

/// The state shared by every request handler: one allocation, so that the clone each extractor
/// and middleware takes is one reference count, not one per part. Read the parts through
/// `Deref` (`state.ciam`); changing a part (`state.metrics = ...`, before serving) changes this
/// state only, as with a plain value (`Arc::make_mut`).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppParts {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppParts {
    /// The ciam-rs façade.
    pub ciam: Ciam,
    /// The store behind it (for reads the façade does not wrap, and readiness).
    pub store: SharedStore,
    /// The configuration.
    pub config: Arc<Config>,
    /// The clock (the same one the façade uses).
    pub clock: Arc<dyn Clock>,
    /// The SAML identity provider (keys, entity id, endpoints).
    pub saml: Arc<IdentityProvider>,
    /// The registered SAML service providers.
    pub saml_registry: Arc<dyn ServiceProviderRegistry>,
    /// The dev mailbox (demo mode only).
    pub dev_mailbox: Option<Arc<DevMailbox>>,
    /// The dev SMS outbox (demo mode only).
    pub dev_sms: Option<Arc<DevSmsOutbox>>,
    /// Counters and histograms served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Keys of the CSRF and flash MACs (derived from the server secret).
    pub web_keys: Arc<WebKeys>,
    /// Per-client throttling of costly endpoints.
    pub throttle: Arc<Throttle>,
    /// The OIDC client of "Sign in with Google" and customers' OIDC providers (callback
    /// `/signin/oidc/callback`; caches the providers' metadata).
    pub oidc: Arc<OidcLogin>,
    /// Sign-in at customers' SAML identity providers (our SP: entity id
    /// `/signin/saml/metadata`, ACS `/signin/saml/acs`).
    pub saml_sign_in: Arc<SamlSignIn>,
    /// The retry queues of outgoing mail and SMS (with real transports; none in demo mode).
    pub outgoing: Option<Outgoing>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("demo", &self.dev_mailbox.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`AppState::new`] needs besides the configuration.
pub struct StateParts {
    /// The façade, built on `store` with `clock`.
    pub ciam: Ciam,
    /// The store.
    pub store: SharedStore,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The SAML identity provider.
    pub saml: Arc<IdentityProvider>,
    /// The SAML SP registry.
    pub saml_registry: Arc<dyn ServiceProviderRegistry>,
    /// Dev mailbox and SMS outbox (demo mode).
    pub dev: Option<(Arc<DevMailbox>, Arc<DevSmsOutbox>)>,
}

impl AppState {
    /// Assembles the state; fails only when the base URL cannot carry the OIDC callback.
    pub fn new(config: Config, parts: StateParts) -> Result<Self, AssembleError> {
        let web_keys = Arc::new(WebKeys::from_secret(&config.secret));
        let base = config.base_url();
        let oidc = OidcLogin::new(OidcOptions::new(format!("{base}/signin/oidc/callback")))
            .map_err(|error| AssembleError::Oidc(error.to_string()))?;
        let saml_sign_in = SamlSignIn::new(
            parts.ciam.clone(),
            SpConfig::new(
                format!("{base}/signin/saml/metadata"),
                format!("{base}/signin/saml/acs"),
            ),
        );
        let (dev_mailbox, dev_sms) = match parts.dev {
            Some((mail, sms)) => (Some(mail), Some(sms)),
            None => (None, None),
        };
        Ok(Self(Arc::new(AppParts {
            ciam: parts.ciam,
            store: parts.store,
            config: Arc::new(config),
            clock: parts.clock,
            saml: parts.saml,
            saml_registry: parts.saml_registry,
            dev_mailbox,
            dev_sms,
            metrics: Arc::new(Metrics::default()),
            web_keys,
            throttle: Arc::new(Throttle::default()),
            oidc: Arc::new(oidc),
            saml_sign_in: Arc::new(saml_sign_in),
            outgoing: None,
        })))
    }
}

/// How mail and SMS leave the server.
pub enum Delivery {
    /// Into the in-memory dev mailbox and SMS outbox (demo mode and tests).
    Dev,
    /// Through real transports (SMTP, the SMS gateway).
    Real {
        /// The mailer.
        mailer: Arc<dyn Mailer>,
        /// The SMS sender.
        sms: Arc<dyn SmsSender>,
    },
    /// Through real transports behind retry queues (`smartplan serve`): a message that meets
    /// a transport outage goes out when the transport is back.
    Queued(Outgoing),
}

/// Everything [`assemble`] needs.
pub struct Assembly {
    /// The configuration.
    pub config: Config,
    /// The store.
    pub store: SharedStore,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The randomness.
    pub random: Arc<dyn RandomSource>,
    /// The SAML IdP signing key.
    pub saml_key: SigningKey,
    /// The SAML SP registry (default: the registrations stored through the store, shared by
    /// every node).
    pub saml_registry: Option<Arc<dyn ServiceProviderRegistry>>,
    /// Mail and SMS.
    pub delivery: Delivery,
}

/// Why the state could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// The façade refused its settings.
    #[error("cannot build ciam: {0}")]
    Ciam(#[from] ciam_core::BuildError),
    /// The OIDC client could not be set up (the callback URL is not valid).
    #[error("cannot set up sign-in with OIDC providers: {0}")]
    Oidc(String),
    /// The breached-password list cannot be opened.
    #[error("cannot use the breached-password list: {0}")]
    BreachedList(String),
}

/// The SAML IdP's endpoints under `base_url`: entity id (the metadata URL), SSO and SLO.
pub fn saml_endpoints(base_url: &str) -> (String, String, String) {
    (
        format!("{base_url}/saml/metadata"),
        format!("{base_url}/saml/sso"),
        format!("{base_url}/saml/slo"),
    )
}

/// Builds the façade and the state from their parts.
pub fn assemble(assembly: Assembly) -> Result<AppState, AssembleError> {
    let Assembly {
        config,
        store,
        clock,
        random,
        saml_key,
        saml_registry,
        delivery,
    } = assembly;
    let builder = Ciam::builder()
        .store(store.clone())
        .clock(clock.clone())
        .random(random)
        .secret_key(config.secret.sealing_key())
        .policy(config.policy());
    let builder = match &config.passwords.breached_list {
        Some(path) => builder.breached_passwords(Arc::new(
            ciam_core::credentials::PwnedPasswordsFile::open(path)
                .map_err(|error| AssembleError::BreachedList(error.to_string()))?,
        )),
        None => builder,
    };
    let mut outgoing = None;
    let (builder, dev) = match delivery {
        Delivery::Dev => {
            let mailbox = Arc::new(DevMailbox::default());
            let outbox = Arc::new(DevSmsOutbox::default());
            (
                builder.mailer(mailbox.clone()).sms(outbox.clone()),
                Some((mailbox, outbox)),
            )
        }
        Delivery::Real { mailer, sms } => (builder.mailer(mailer).sms(sms), None),
        Delivery::Queued(queues) => {
            outgoing = Some(queues.clone());
            (
                builder.mailer(queues.mail.clone()).sms(queues.sms.clone()),
                None,
            )
        }
    };
    let ciam = builder.build()?;
    let saml_registry = saml_registry.unwrap_or_else(|| {
        Arc::new(ciam_saml::idp::ServiceProviderRegistrations::new(
            ciam.clone(),
        ))
    });
    let base = config.base_url();
    let (entity_id, sso, slo) = saml_endpoints(&base);
    let idp = IdentityProvider::new(IdpConfig::new(
        entity_id,
        sso,
        slo,
        KeyRing::new(saml_key),
        config.secret.derive("saml pairwise ids").to_vec(),
    ));
    let mut state = AppState::new(
        config,
        StateParts {
            ciam,
            store,
            clock,
            saml: Arc::new(idp),
            saml_registry,
            dev,
        },
    )?;
    state.outgoing = outgoing;
    Ok(state)
}
