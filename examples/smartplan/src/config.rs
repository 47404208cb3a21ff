//! The server's configuration: what `smartplan serve` reads from a TOML file and `SMARTPLAN_*`
//! environment variables, and what `smartplan demo` and the tests build directly.
//!
//! Everything is parsed and checked once, at start: a [`Config`] only exists when every
//! setting is valid, and a wrong setting is reported by name ([`ConfigError`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use chrono::Duration;
use url::Url;

mod loading;

pub use loading::{ConfigError, ConfigSource, ENV_PREFIX, env_name};

/// The 256-bit server secret (hex in configuration). It seals login attempts, TOTP secrets,
/// reset links and webhook secrets at rest, and keys the CSRF and flash-cookie MACs.
/// Redacted `Debug`, no `Display`.
#[derive(Clone)]
pub struct ServerSecret([u8; 32]);

impl ServerSecret {
    /// A secret from 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A secret from 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The ciam-core sealing key.
    pub fn sealing_key(&self) -> ciam_core::credentials::SecretKey {
        ciam_core::credentials::SecretKey::from_bytes(self.derive("ciam-core sealing"))
    }

    /// A sub-key for one purpose (HMAC-SHA256 of the purpose under the secret).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm cannot be taken.
            Err(_) => return [0u8; 32],
        };
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret(<redacted>)")
    }
}

/// A network of trusted reverse proxies (an address with a prefix length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Parses `10.0.0.0/8`, `::1/128` or a single address.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address.parse::<IpAddr>().ok()?, prefix.parse().ok()?),
            None => {
                let address = text.parse::<IpAddr>().ok()?;
                (address, if address.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { address, prefix })
    }

    /// Whether `address` is inside this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(candidate)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(candidate) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(candidate)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(candidate) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// SMTP delivery.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Server port (587 with STARTTLS, 465 with implicit TLS, 25 plain).
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// User name and password, when the server wants authentication.
    pub credentials: Option<(String, Redacted)>,
    /// The `From` address.
    pub from: String,
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS required (the default).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (only for a relay on the same host or tests).
    None,
}

/// A secret configuration value: redacted `Debug`, no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(String);

impl Redacted {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret, to hand to the component that needs it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The HTTP SMS gateway (ciam-core's `HttpSmsGateway`: a JSON POST).
#[derive(Clone, Debug)]
pub struct SmsConfig {
    /// Where messages are posted.
    pub url: Url,
    /// The name of the header carrying the credential (default `Authorization`).
    pub auth_header: String,
    /// Its value (such as `Bearer ...`).
    pub auth_value: Redacted,
    /// The sender name or number.
    pub sender: Option<String>,
}

/// "Sign in with Google" (OpenID Connect).
#[derive(Clone, Debug)]
pub struct GoogleConfig {
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: Redacted,
}

/// A CRM webhook endpoint given in configuration (more can be stored with
/// `smartplan webhook add`).
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// Where events are posted.
    pub url: Url,
    /// The Standard Webhooks secret (`whsec_...`).
    pub secret: Redacted,
}

/// Where the SAML IdP signing key and certificate are.
#[derive(Clone, Debug)]
pub struct SamlKeyFiles {
    /// PEM private key.
    pub key: PathBuf,
    /// PEM certificate.
    pub certificate: PathBuf,
}

/// Lifetimes of sessions and tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    /// A session ends after this long without use.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute: Duration,
    /// How long an invitation link works.
    pub invitation: Duration,
    /// How long an emailed or texted code works.
    pub code: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        let policy = ciam_core::Policy::default();
        Self {
            session_idle: policy.sessions.idle_timeout,
            session_absolute: policy.sessions.absolute_timeout,
            invitation: policy.invitation_lifetime,
            code: policy.code_lifetime,
        }
    }
}

/// Request size limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body for forms and the API (bytes).
    pub body_bytes: usize,
    /// Largest file upload (batch invitations), bytes.
    pub upload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 1024 * 1024,
            upload_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Account security settings (`[security]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecuritySettings {
    /// Changing the email, the phone, the password or the second factors needs a sign-in
    /// within this long (default 10 minutes); otherwise the person confirms it is them first.
    pub reauthentication: Duration,
    /// Who must use a second factor besides the organizations whose policy requires one.
    /// `smartplan serve` defaults to [`MfaRequirement::Staff`]; [`Config::new`] (tests,
    /// embedding, the demo) to [`MfaRequirement::OrganizationPolicy`].
    pub require_mfa: MfaRequirement,
}

pub use ciam_core::login::MfaRequirement;

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            reauthentication: Duration::minutes(10),
            require_mfa: MfaRequirement::OrganizationPolicy,
        }
    }
}

/// Rules for new passwords beyond ciam-core's defaults (`[passwords]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordSettings {
    /// Words no new password may contain, case and separators ignored (default
    /// `["smartplan"]`); the person's own name, email and organization are refused as well.
    pub context_words: Vec<String>,
    /// The Have I Been Pwned "Pwned Passwords" SHA-1 list (ordered by hash) to look every new
    /// password up in; none: only the shipped common list.
    pub breached_list: Option<PathBuf>,
    /// What a new password gets while that list cannot be read (default: refused).
    pub breached_list_unavailable: ciam_core::credentials::BreachCheckFailure,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            context_words: vec!["smartplan".to_owned()],
            breached_list: None,
            breached_list_unavailable: ciam_core::credentials::BreachCheckFailure::Refuse,
        }
    }
}

/// The whole, checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the server listens.
    pub listen: SocketAddr,
    /// The public base URL (scheme, host, port; no trailing slash), for links and cookies.
    pub public_base_url: Url,
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// The server secret.
    pub secret: ServerSecret,
    /// Demo mode: the dev mailbox and SMS outbox are served.
    pub demo: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNetwork>,
    /// Lifetimes of sessions and tokens.
    pub lifetimes: Lifetimes,
    /// Request size limits.
    pub limits: Limits,
    /// SMTP (none: mail goes to the dev mailbox, demo only).
    pub smtp: Option<SmtpConfig>,
    /// SMS gateway (none: SMS go to the dev outbox, demo only).
    pub sms: Option<SmsConfig>,
    /// Google sign-in (none: the button is not shown).
    pub google: Option<GoogleConfig>,
    /// Webhook endpoints from configuration.
    pub webhooks: Vec<WebhookConfig>,
    /// SAML IdP key files (none: generated under the data directory in demo mode).
    pub saml_keys: Option<SamlKeyFiles>,
    /// Rules for new passwords.
    pub passwords: PasswordSettings,
    /// Account security settings.
    pub security: SecuritySettings,
    /// How long services, business roles and SAML SP registrations read from the database
    /// are reused (`[cache] catalog_seconds`, default [`DEFAULT_CATALOG_CACHE_SECONDS`]): see
    /// [`ciam_core::Policy::catalog_max_age`].
    pub catalog_cache: Duration,
}

/// The default of `[cache] catalog_seconds`: a change made on one node reaches the single
/// sign-ons of the others within this time; on its own node at once.
pub const DEFAULT_CATALOG_CACHE_SECONDS: i64 = 5;

impl Config {
    /// A configuration for tests and embedding: the given base URL and database, demo mode
    /// off, no delivery configured, defaults elsewhere.
    pub fn new(
        public_base_url: Url,
        database_url: impl Into<String>,
        secret: ServerSecret,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url,
            database_url: database_url.into(),
            secret,
            demo: false,
            trusted_proxies: Vec::new(),
            lifetimes: Lifetimes::default(),
            limits: Limits::default(),
            smtp: None,
            sms: None,
            google: None,
            webhooks: Vec::new(),
            saml_keys: None,
            passwords: PasswordSettings::default(),
            security: SecuritySettings::default(),
            catalog_cache: Duration::seconds(DEFAULT_CATALOG_CACHE_SECONDS),
        }
    }

    /// Whether the pages are served over https (cookies get `Secure`, responses HSTS).
    pub fn is_https(&self) -> bool {
        self.public_base_url.scheme() == "https"
    }

    /// The base URL as text, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.public_base_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// The ciam-core policy these settings imply.
    pub fn policy(&self) -> ciam_core::Policy {
        let mut policy = ciam_core::Policy {
            public_base_url: self.base_url(),
            product_name: "MySmartPlan".to_owned(),
            invitation_lifetime: self.lifetimes.invitation,
            code_lifetime: self.lifetimes.code,
            ..ciam_core::Policy::default()
        };
        policy.password.context_words = self.passwords.context_words.clone();
        policy.login.require_mfa = self.security.require_mfa;
        policy.password.breach_check_failure = self.passwords.breached_list_unavailable;
        policy.sessions.idle_timeout = self.lifetimes.session_idle;
        policy.sessions.absolute_timeout = self.lifetimes.session_absolute;
        policy.catalog_max_age = self.catalog_cache;
        policy
    }
}
