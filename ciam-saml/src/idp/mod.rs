//! The identity provider: single sign-on to SmartPlan's services.
//!
//! The flow: [`IdentityProvider::receive_redirect`] or [`IdentityProvider::receive_post`] turns
//! an incoming `AuthnRequest` into a checked [`AuthnRequest`]; once the user is signed in,
//! [`IdentityProvider::respond`] issues a signed [`SamlResponse`] to the registered ACS URL,
//! delivered with [`SamlResponse::post_form`]. IdP-initiated SSO goes through
//! [`IdentityProvider::respond_unsolicited`], refused unless enabled for the SP.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ciam_core::RandomSource;
use ciam_core::ids::{IdentityId, OrganizationId, SessionId};
use ciam_core::sessions::AuthMethod;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::crypto::{self, Certificate, SigningKey};
use crate::metadata::{self, Endpoint, MetadataError};
use crate::xml::{self, DecodeFailure, NS_ASSERTION, NS_PROTOCOL};
use crate::{Binding, NameIdFormat, attributes};

mod registrations;
mod sign_on;

pub use registrations::{
    RegisteredServiceProvider, RegistrationError, ServiceProviderOptions,
    ServiceProviderRegistrations,
};
pub use sign_on::{LogoutError, LogoutOutcome, SignOnError};

// ---------------------------------------------------------------------------------------------
// Service provider registry
// ---------------------------------------------------------------------------------------------

/// A service provider registered with the IdP, read from its metadata plus local settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceProvider {
    /// The SP's entity id (the `Issuer` of its requests and the audience of our assertions).
    pub entity_id: String,
    /// Assertion consumer services from metadata (responses go only to these).
    pub assertion_consumer_services: Vec<Endpoint>,
    /// Single logout services from metadata.
    pub single_logout_services: Vec<Endpoint>,
    /// Certificates that verify the SP's signed requests (from metadata only).
    pub signing_certificates: Vec<Certificate>,
    /// Encryption certificates from metadata (kept; assertions are not encrypted yet).
    pub encryption_certificates: Vec<Certificate>,
    /// `AuthnRequestsSigned`: unsigned requests are refused when set.
    pub authn_requests_signed: bool,
    /// `WantAssertionsSigned` (assertions are always signed; kept for information).
    pub want_assertions_signed: bool,
    /// NameID formats the SP lists in metadata.
    pub name_id_formats: Vec<NameIdFormat>,
    /// The NameID format when the request does not name one: persistent (pairwise) by default,
    /// email address when the SP's metadata lists only that.
    pub default_name_id_format: NameIdFormat,
    /// Whether IdP-initiated (unsolicited) SSO is allowed for this SP; off by default.
    pub allow_idp_initiated: bool,
    /// Whether the `Response` is signed too (the assertion always is); off by default.
    pub sign_response: bool,
    /// The ciam service key whose application roles go into the `roles` attribute.
    pub service_key: Option<String>,
}

impl ServiceProvider {
    /// Reads an SP from its metadata (`md:EntityDescriptor` with an `md:SPSSODescriptor`).
    pub fn from_metadata(metadata_xml: &str) -> Result<Self, MetadataError> {
        let role = metadata::read_role(metadata_xml, "SPSSODescriptor")?;
        let acs: Vec<Endpoint> = role
            .endpoints
            .iter()
            .filter(|(name, e)| {
                name == "AssertionConsumerService" && e.binding == Binding::HttpPost
            })
            .map(|(_, e)| e.clone())
            .collect();
        if acs.is_empty() {
            return Err(MetadataError::NoAssertionConsumerService);
        }
        if role.flag_a && role.signing.is_empty() {
            return Err(MetadataError::SignedRequestsWithoutCertificate);
        }
        let slo = role
            .endpoints
            .iter()
            .filter(|(name, _)| name == "SingleLogoutService")
            .map(|(_, e)| e.clone())
            .collect();
        let default_name_id_format = if role.name_id_formats.contains(&NameIdFormat::EmailAddress)
            && !role.name_id_formats.contains(&NameIdFormat::Persistent)
        {
            NameIdFormat::EmailAddress
        } else {
            NameIdFormat::Persistent
        };
        Ok(Self {
            entity_id: role.entity_id,
            assertion_consumer_services: acs,
            single_logout_services: slo,
            signing_certificates: role.signing,
            encryption_certificates: role.encryption,
            authn_requests_signed: role.flag_a,
            want_assertions_signed: role.flag_b,
            name_id_formats: role.name_id_formats,
            default_name_id_format,
            allow_idp_initiated: false,
            sign_response: false,
            service_key: None,
        })
    }

    fn default_acs(&self) -> Option<&Endpoint> {
        self.assertion_consumer_services
            .iter()
            .find(|e| e.is_default)
            .or_else(|| self.assertion_consumer_services.first())
    }
}

/// The registry failed (storage unavailable).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The backing storage failed.
    #[error("service provider registry unavailable: {0}")]
    Unavailable(String),
}

/// Where the IdP finds registered service providers, per request.
///
/// [`ServiceProviderRegistrations`] keeps them in the core `Store` (the production choice);
/// [`InMemoryServiceProviderRegistry`] is for tests and single-process tools.
#[async_trait]
pub trait ServiceProviderRegistry: Send + Sync {
    /// The SP with this entity id, if registered.
    async fn get(&self, entity_id: &str) -> Result<Option<Arc<ServiceProvider>>, RegistryError>;
}

/// An in-memory [`ServiceProviderRegistry`] (tests, tools; not shared between processes).
#[derive(Debug, Default)]
pub struct InMemoryServiceProviderRegistry {
    sps: RwLock<HashMap<String, Arc<ServiceProvider>>>,
}

impl InMemoryServiceProviderRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers or replaces an SP.
    pub fn put(&self, sp: ServiceProvider) {
        let mut sps = self.sps.write().unwrap_or_else(|p| p.into_inner());
        sps.insert(sp.entity_id.clone(), Arc::new(sp));
    }

    /// Removes an SP; `true` if it was registered.
    pub fn remove(&self, entity_id: &str) -> bool {
        let mut sps = self.sps.write().unwrap_or_else(|p| p.into_inner());
        sps.remove(entity_id).is_some()
    }

    /// All registered SPs, by entity id.
    pub fn list(&self) -> Vec<ServiceProvider> {
        let sps = self.sps.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = sps.values().map(|sp| (**sp).clone()).collect();
        all.sort_by(|a, b| a.entity_id.cmp(&b.entity_id));
        all
    }
}

#[async_trait]
impl ServiceProviderRegistry for InMemoryServiceProviderRegistry {
    async fn get(&self, entity_id: &str) -> Result<Option<Arc<ServiceProvider>>, RegistryError> {
        let sps = self.sps.read().unwrap_or_else(|p| p.into_inner());
        Ok(sps.get(entity_id).map(Arc::clone))
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration and keys
// ---------------------------------------------------------------------------------------------

/// The IdP's signing keys: the active key signs; a standby key is published beside it during a
/// rollover (two certificates in metadata) until it is switched in or retired.
#[derive(Clone, Debug)]
pub struct KeyRing {
    active: SigningKey,
    standby: Option<SigningKey>,
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(active: SigningKey) -> Self {
        Self {
            active,
            standby: None,
        }
    }

    /// Publishes `next` beside the active key (first step of a rollover).
    pub fn with_standby(mut self, next: SigningKey) -> Self {
        self.standby = Some(next);
        self
    }

    /// Switches the standby key in: it signs from now on, and the old key stays published as
    /// standby until [`KeyRing::retire_standby`]. No-op without a standby key.
    pub fn switch(&mut self) {
        if let Some(next) = self.standby.take() {
            let old = std::mem::replace(&mut self.active, next);
            self.standby = Some(old);
        }
    }

    /// Stops publishing the standby key.
    pub fn retire_standby(&mut self) {
        self.standby = None;
    }

    /// The key that signs.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Every published certificate, the active one first.
    pub fn published(&self) -> Vec<&Certificate> {
        std::iter::once(self.active.certificate())
            .chain(self.standby.as_ref().map(SigningKey::certificate))
            .collect()
    }
}

/// The IdP's own settings.
#[derive(Clone, Debug)]
pub struct IdpConfig {
    /// Our entity id (the `Issuer`).
    pub entity_id: String,
    /// The single sign-on URL (both bindings).
    pub sso_url: String,
    /// The single logout URL (both bindings).
    pub slo_url: String,
    /// Signing keys.
    pub keys: KeyRing,
    /// The secret for pairwise NameIDs (at least 32 bytes, never rotated: rotating it changes
    /// every SP's view of every user).
    pub pairwise_secret: Vec<u8>,
    /// How long an assertion may be used (`NotOnOrAfter`); default 5 minutes.
    pub assertion_lifetime: Duration,
    /// How old an `AuthnRequest` may be (`IssueInstant`); default 10 minutes.
    pub request_max_age: Duration,
    /// Allowed clock skew; default 180 seconds.
    pub skew: Duration,
    /// Whether metadata says `WantAuthnRequestsSigned`.
    pub want_authn_requests_signed: bool,
}

impl IdpConfig {
    /// A configuration with the defaults above.
    pub fn new(
        entity_id: impl Into<String>,
        sso_url: impl Into<String>,
        slo_url: impl Into<String>,
        keys: KeyRing,
        pairwise_secret: Vec<u8>,
    ) -> Self {
        Self {
            entity_id: entity_id.into(),
            sso_url: sso_url.into(),
            slo_url: slo_url.into(),
            keys,
            pairwise_secret,
            assertion_lifetime: Duration::minutes(5),
            request_max_age: Duration::minutes(10),
            skew: Duration::seconds(180),
            want_authn_requests_signed: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Why an incoming `AuthnRequest` or `LogoutRequest` was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Over the size bound (encoded or inflated).
    #[error("request too large")]
    TooLarge,
    /// Not base64, not deflate, not UTF-8, not well-formed or not the expected message.
    #[error("malformed request")]
    Malformed,
    /// A document type declaration (refused before parsing).
    #[error("request contains a document type declaration")]
    Doctype,
    /// The issuer is not a registered SP.
    #[error("unknown service provider")]
    UnknownIssuer,
    /// The SP must sign its requests and this one is not signed.
    #[error("request is not signed")]
    MissingSignature,
    /// The signature does not verify with the registered certificate, or uses an algorithm
    /// outside the allowlist.
    #[error("request signature is invalid")]
    InvalidSignature,
    /// The ACS URL or index is not in the SP's metadata (no response is sent to it).
    #[error("assertion consumer service not registered for this service provider")]
    UnknownAssertionConsumerService,
    /// The requested protocol binding is not HTTP-POST.
    #[error("unsupported response binding")]
    UnsupportedBinding,
    /// The NameID format is not one this IdP issues; the SP may be told with
    /// [`IdentityProvider::error_response`] (status `InvalidNameIDPolicy`).
    #[error("unsupported nameid format")]
    UnsupportedNameIdFormat(Box<ErrorReply>),
    /// `Destination` is not our endpoint.
    #[error("request destination is not this identity provider")]
    WrongDestination,
    /// `IssueInstant` is too old or in the future.
    #[error("request is stale or from the future")]
    Stale,
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl RequestError {
    /// The error response the spec says to send back to the SP for this refusal, if any
    /// (only when the requester and its ACS are known and registered); otherwise show an
    /// error page and send nothing to the SP.
    pub fn error_reply(&self) -> Option<&ErrorReply> {
        match self {
            Self::UnsupportedNameIdFormat(reply) => Some(reply),
            _ => None,
        }
    }
}

impl From<DecodeFailure> for RequestError {
    fn from(value: DecodeFailure) -> Self {
        match value {
            DecodeFailure::TooLarge => Self::TooLarge,
            DecodeFailure::Malformed => Self::Malformed,
            DecodeFailure::Doctype => Self::Doctype,
        }
    }
}

/// The SAML status of an error response sent back to an SP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStatus {
    /// The requested NameID format is not issued (`Requester` / `InvalidNameIDPolicy`).
    InvalidNameIdPolicy,
    /// `IsPassive` was asked and the user is not signed in (`Responder` / `NoPassive`).
    NoPassive,
    /// The user may not use this SP, e.g. no contract covers its service
    /// (`Responder` / `RequestDenied`).
    RequestDenied,
    /// The user could not be authenticated (`Responder` / `AuthnFailed`).
    AuthnFailed,
}

impl ErrorStatus {
    /// The top-level and second-level status code URNs.
    pub fn codes(self) -> (&'static str, &'static str) {
        const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
        const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
        match self {
            Self::InvalidNameIdPolicy => (
                REQUESTER,
                "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy",
            ),
            Self::NoPassive => (RESPONDER, "urn:oasis:names:tc:SAML:2.0:status:NoPassive"),
            Self::RequestDenied => (
                RESPONDER,
                "urn:oasis:names:tc:SAML:2.0:status:RequestDenied",
            ),
            Self::AuthnFailed => (RESPONDER, "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"),
        }
    }
}

/// Where a SAML error status may be sent for a refused request (its ACS is registered), and
/// which status; [`IdentityProvider::error_response`] turns it into a signed response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorReply {
    status: ErrorStatus,
    sp_entity_id: String,
    acs_url: String,
    in_response_to: String,
    relay_state: Option<String>,
}

/// A checked `AuthnRequest` from a registered SP; only [`IdentityProvider`] creates one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthnRequest {
    id: String,
    service_provider: Arc<ServiceProvider>,
    sp_entity_id: String,
    acs_url: String,
    name_id_format: NameIdFormat,
    force_authn: bool,
    is_passive: bool,
    relay_state: Option<String>,
    signed: bool,
}

impl AuthnRequest {
    /// The request's `ID` (the response's `InResponseTo`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The registered SP the request was checked against (signature, ACS URL), as read from
    /// the registry for this request: answer it with this one, not with a second lookup.
    pub fn service_provider(&self) -> &ServiceProvider {
        &self.service_provider
    }
    /// The requesting SP's entity id.
    pub fn sp_entity_id(&self) -> &str {
        &self.sp_entity_id
    }
    /// The registered ACS URL the response goes to.
    pub fn acs_url(&self) -> &str {
        &self.acs_url
    }
    /// The NameID format that will be issued.
    pub fn name_id_format(&self) -> NameIdFormat {
        self.name_id_format
    }
    /// `ForceAuthn`: the user must authenticate again.
    pub fn force_authn(&self) -> bool {
        self.force_authn
    }
    /// `IsPassive`: the IdP must not interact with the user.
    pub fn is_passive(&self) -> bool {
        self.is_passive
    }
    /// The `RelayState` to send back.
    pub fn relay_state(&self) -> Option<&str> {
        self.relay_state.as_deref()
    }
    /// Whether the request carried a verified signature.
    pub fn was_signed(&self) -> bool {
        self.signed
    }
    /// Where and how to refuse this request with a SAML error status (for example
    /// [`ErrorStatus::NoPassive`] when `IsPassive` is set and nobody is signed in, or
    /// [`ErrorStatus::RequestDenied`] when the user has no access to the SP's service).
    pub fn refusal(&self, status: ErrorStatus) -> ErrorReply {
        ErrorReply {
            status,
            sp_entity_id: self.sp_entity_id.clone(),
            acs_url: self.acs_url.clone(),
            in_response_to: self.id.clone(),
            relay_state: self.relay_state.clone(),
        }
    }
}

/// A checked, signed `LogoutRequest` from a registered SP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutRequest {
    id: String,
    sp_entity_id: String,
    name_id: String,
    session_indexes: Vec<String>,
    relay_state: Option<String>,
}

impl LogoutRequest {
    /// The request's `ID`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The SP's entity id.
    pub fn sp_entity_id(&self) -> &str {
        &self.sp_entity_id
    }
    /// The NameID the SP knows the user by.
    pub fn name_id(&self) -> &str {
        &self.name_id
    }
    /// The `SessionIndex` values (our session ids) to end.
    pub fn session_indexes(&self) -> &[String] {
        &self.session_indexes
    }
    /// The `RelayState` to send back.
    pub fn relay_state(&self) -> Option<&str> {
        self.relay_state.as_deref()
    }
}

/// What a message carried and how it was signed, before the SP-specific checks.
struct Received {
    xml: String,
    relay_state: Option<String>,
    /// Redirect binding: `(signed octets, SigAlg, signature)`.
    detached: Option<(String, String, Vec<u8>)>,
}

fn receive_query(query: &str, field: &str) -> Result<Received, RequestError> {
    if query.len() > xml::MAX_ENCODED_LEN {
        return Err(RequestError::TooLarge);
    }
    let params = xml::split_query(query).ok_or(RequestError::Malformed)?;
    let find = |name: &str| params.iter().find(|(n, _, _)| n == name);
    let (_, raw_msg, message) = find(field).ok_or(RequestError::Malformed)?;
    let relay = find("RelayState");
    let xml = xml::decode_redirect(message)?;
    let detached = match (find("SigAlg"), find("Signature")) {
        (Some((_, raw_alg, alg)), Some((_, _, sig))) => {
            let mut octets = format!("{field}={raw_msg}");
            if let Some((_, raw_relay, _)) = relay {
                octets.push_str(&format!("&RelayState={raw_relay}"));
            }
            octets.push_str(&format!("&SigAlg={raw_alg}"));
            let sig = xml::decode_base64(sig).map_err(|_| RequestError::InvalidSignature)?;
            Some((octets, alg.clone(), sig))
        }
        (None, None) => None,
        _ => return Err(RequestError::InvalidSignature),
    };
    Ok(Received {
        xml,
        relay_state: relay.map(|(_, _, v)| v.clone()),
        detached,
    })
}

/// Verifies the message's signature against the SP's registered certificates and returns the
/// XML to read: only the signed element when signed. `None` signature state means unsigned.
fn verified_xml(received: &Received, sp: &ServiceProvider) -> Result<(String, bool), RequestError> {
    let enveloped = received.xml.contains(xml::NS_DSIG);
    if let Some((octets, alg, sig)) = &received.detached {
        if !crypto::verify_detached(octets.as_bytes(), alg, sig, &sp.signing_certificates) {
            return Err(RequestError::InvalidSignature);
        }
        return Ok((received.xml.clone(), true));
    }
    if enveloped {
        let reduced = crypto::verify_and_reduce(&received.xml, &sp.signing_certificates)
            .ok_or(RequestError::InvalidSignature)?;
        return Ok((reduced, true));
    }
    Ok((received.xml.clone(), false))
}

fn issuer_of(text: &str) -> Result<String, RequestError> {
    let doc = xml::parse(text).ok_or(RequestError::Malformed)?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NS_PROTOCOL) {
        return Err(RequestError::Malformed);
    }
    xml::child_text(root, NS_ASSERTION, "Issuer")
        .filter(|i| !i.is_empty())
        .ok_or(RequestError::Malformed)
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// The signed-in user an assertion is issued for; the server fills it from its session and from
/// ciam-core's role resolution for the SP's service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedInUser {
    /// The identity.
    pub identity_id: IdentityId,
    /// The verified email address.
    pub email: String,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// The organization the user acts for.
    pub organization_id: OrganizationId,
    /// Its name.
    pub organization_name: String,
    /// Application roles for the SP's service (from role resolution).
    pub roles: Vec<String>,
    /// How the session was authenticated.
    pub auth_methods: Vec<AuthMethod>,
    /// When the user authenticated.
    pub authenticated_at: DateTime<Utc>,
    /// The session (sent as `SessionIndex`).
    pub session_id: SessionId,
    /// When the session ends (`SessionNotOnOrAfter`).
    pub session_expires_at: DateTime<Utc>,
}

/// Authentication context classes issued.
pub mod authn_context {
    /// Password over a protected transport.
    pub const PASSWORD: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
    /// Multi-factor (REFEDS MFA profile).
    pub const MFA: &str = "https://refeds.org/profile/mfa";
    /// Anything else (federated login, emailed link).
    pub const UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified";
}

fn authn_context_for(methods: &[AuthMethod]) -> &'static str {
    let password = methods.contains(&AuthMethod::Pwd);
    let second = methods
        .iter()
        .any(|m| matches!(m, AuthMethod::Otp | AuthMethod::Sms));
    match (password, second) {
        (true, true) => authn_context::MFA,
        (true, false) => authn_context::PASSWORD,
        _ => authn_context::UNSPECIFIED,
    }
}

/// Why a response could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The request was made by another SP than the one given.
    #[error("request does not belong to this service provider")]
    WrongServiceProvider,
    /// IdP-initiated SSO is not enabled for this SP.
    #[error("idp-initiated sso is not enabled for this service provider")]
    UnsolicitedNotAllowed,
    /// The SP has no usable endpoint for this message.
    #[error("service provider has no endpoint for this message")]
    NoEndpoint,
    /// The user has no email address for an email NameID.
    #[error("user has no email address")]
    NoEmail,
    /// Signing failed.
    #[error("signing failed")]
    Signing,
}

/// A message ready to deliver with the POST binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamlResponse {
    destination: String,
    xml: String,
    relay_state: Option<String>,
    field: &'static str,
}

impl SamlResponse {
    /// The registered endpoint it goes to.
    pub fn destination(&self) -> &str {
        &self.destination
    }
    /// The signed XML.
    pub fn xml(&self) -> &str {
        &self.xml
    }
    /// The base64 value of the `SAMLResponse` form field.
    pub fn encoded(&self) -> String {
        xml::encode_base64(self.xml.as_bytes())
    }
    /// The `RelayState`.
    pub fn relay_state(&self) -> Option<&str> {
        self.relay_state.as_deref()
    }
    /// An HTML page whose form posts the message (and the `RelayState`) to the destination.
    ///
    /// It submits itself with one small inline script, allowed by a CSP hash rather than a
    /// nonce (the script never changes, so there is nothing to thread through templates):
    /// serve the page with [`SamlResponse::content_security_policy`] as its
    /// `Content-Security-Policy` header. Without JavaScript a "Continue" button appears
    /// (`<noscript>`).
    pub fn post_form(&self) -> String {
        xml::post_form(
            &self.destination,
            self.field,
            &self.encoded(),
            self.relay_state.as_deref(),
        )
    }

    /// The `Content-Security-Policy` for [`SamlResponse::post_form`]: nothing loads, only the
    /// submit script runs (by hash), and the form may post only to the destination's origin.
    pub fn content_security_policy(&self) -> String {
        let origin = url::Url::parse(&self.destination)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "'none'".to_owned());
        format!(
            "default-src 'none'; script-src '{}'; style-src 'unsafe-inline'; \
             form-action {origin}; base-uri 'none'; frame-ancestors 'none'",
            xml::post_form_script_hash()
        )
    }
}

/// A message for the Redirect binding: the full URL (signed) to send the browser to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectMessage {
    /// The URL with `SAMLRequest`/`SAMLResponse`, `RelayState`, `SigAlg` and `Signature`.
    pub url: String,
}

/// The identity provider.
#[derive(Clone, Debug)]
pub struct IdentityProvider {
    config: IdpConfig,
}

fn new_id(random: &dyn RandomSource) -> String {
    let mut bytes = [0u8; 20];
    random.fill(&mut bytes);
    format!("_{}", hex::encode(bytes))
}

impl IdentityProvider {
    /// An IdP with this configuration.
    pub fn new(config: IdpConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &IdpConfig {
        &self.config
    }

    /// The configuration, for key rollover.
    pub fn config_mut(&mut self) -> &mut IdpConfig {
        &mut self.config
    }

    /// Checks an `AuthnRequest` received on the HTTP-Redirect binding; `query` is the raw
    /// query string exactly as received (the detached signature covers its encoded form).
    pub async fn receive_redirect(
        &self,
        registry: &dyn ServiceProviderRegistry,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<AuthnRequest, RequestError> {
        let received = receive_query(query, "SAMLRequest")?;
        self.check_authn_request(registry, received, now).await
    }

    /// Checks an `AuthnRequest` received on the HTTP-POST binding (the `SAMLRequest` and
    /// `RelayState` form fields).
    pub async fn receive_post(
        &self,
        registry: &dyn ServiceProviderRegistry,
        saml_request: &str,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<AuthnRequest, RequestError> {
        let received = Received {
            xml: xml::decode_post(saml_request)?,
            relay_state: relay_state.map(str::to_owned),
            detached: None,
        };
        self.check_authn_request(registry, received, now).await
    }

    async fn check_authn_request(
        &self,
        registry: &dyn ServiceProviderRegistry,
        received: Received,
        now: DateTime<Utc>,
    ) -> Result<AuthnRequest, RequestError> {
        // The issuer is read from the unverified message only to find the registered SP; all
        // that is used afterwards is read again from the verified document.
        let claimed = issuer_of(&received.xml)?;
        let sp = registry
            .get(&claimed)
            .await?
            .ok_or(RequestError::UnknownIssuer)?;
        let (text, signed) = verified_xml(&received, &sp)?;
        if !signed && (sp.authn_requests_signed || self.config.want_authn_requests_signed) {
            return Err(RequestError::MissingSignature);
        }
        let doc = xml::parse(&text).ok_or(RequestError::Malformed)?;
        let root = doc.root_element();
        if !xml::is(&root, NS_PROTOCOL, "AuthnRequest") || root.attribute("Version") != Some("2.0")
        {
            return Err(RequestError::Malformed);
        }
        let issuer = xml::child_text(root, NS_ASSERTION, "Issuer");
        if issuer.as_deref() != Some(sp.entity_id.as_str()) {
            return Err(RequestError::UnknownIssuer);
        }
        let id = root
            .attribute("ID")
            .filter(|id| !id.is_empty())
            .ok_or(RequestError::Malformed)?
            .to_owned();
        self.check_envelope(&root, now)?;
        let acs_url = self.choose_acs(&sp, &root)?;
        let relay_state = received.relay_state;
        let policy = xml::only_child(root, NS_PROTOCOL, "NameIDPolicy");
        let requested = policy.and_then(|p| p.attribute("Format"));
        let name_id_format = match requested.map(NameIdFormat::from_urn) {
            None | Some(Some(NameIdFormat::Unspecified)) => sp.default_name_id_format,
            Some(Some(NameIdFormat::Persistent)) => NameIdFormat::Persistent,
            Some(Some(NameIdFormat::EmailAddress)) => NameIdFormat::EmailAddress,
            Some(_) => {
                return Err(RequestError::UnsupportedNameIdFormat(Box::new(
                    ErrorReply {
                        status: ErrorStatus::InvalidNameIdPolicy,
                        sp_entity_id: sp.entity_id.clone(),
                        acs_url,
                        in_response_to: id,
                        relay_state,
                    },
                )));
            }
        };
        let flag = |name: &str| {
            root.attribute(name)
                .is_some_and(|v| v == "true" || v == "1")
        };
        Ok(AuthnRequest {
            id,
            sp_entity_id: sp.entity_id.clone(),
            service_provider: sp,
            acs_url,
            name_id_format,
            force_authn: flag("ForceAuthn"),
            is_passive: flag("IsPassive"),
            relay_state,
            signed,
        })
    }

    fn check_envelope(
        &self,
        root: &roxmltree::Node<'_, '_>,
        now: DateTime<Utc>,
    ) -> Result<(), RequestError> {
        if let Some(destination) = root.attribute("Destination") {
            if destination != self.config.sso_url && destination != self.config.slo_url {
                return Err(RequestError::WrongDestination);
            }
        }
        let issued = root
            .attribute("IssueInstant")
            .and_then(xml::parse_instant)
            .ok_or(RequestError::Malformed)?;
        if issued > now + self.config.skew
            || issued < now - self.config.request_max_age - self.config.skew
        {
            return Err(RequestError::Stale);
        }
        Ok(())
    }

    fn choose_acs(
        &self,
        sp: &ServiceProvider,
        root: &roxmltree::Node<'_, '_>,
    ) -> Result<String, RequestError> {
        if let Some(binding) = root.attribute("ProtocolBinding") {
            if binding != Binding::HttpPost.urn() {
                return Err(RequestError::UnsupportedBinding);
            }
        }
        let by_url = root.attribute("AssertionConsumerServiceURL");
        let by_index = root.attribute("AssertionConsumerServiceIndex");
        let endpoint = match (by_url, by_index) {
            (Some(url), None) => sp
                .assertion_consumer_services
                .iter()
                .find(|e| e.location == url),
            (None, Some(index)) => {
                let index: u16 = index
                    .parse()
                    .map_err(|_| RequestError::UnknownAssertionConsumerService)?;
                sp.assertion_consumer_services
                    .iter()
                    .find(|e| e.index == Some(index))
            }
            (None, None) => sp.default_acs(),
            (Some(_), Some(_)) => None,
        };
        endpoint
            .map(|e| e.location.clone())
            .ok_or(RequestError::UnknownAssertionConsumerService)
    }

    /// The NameID value this IdP issues to `sp` for an identity in `format`: a pairwise
    /// pseudonym (HMAC-SHA256 of identity id and SP entity id under the pairwise secret) for
    /// persistent, the email address for email.
    pub fn name_id_for(
        &self,
        sp_entity_id: &str,
        user: &SignedInUser,
        format: NameIdFormat,
    ) -> String {
        match format {
            NameIdFormat::EmailAddress => user.email.clone(),
            _ => self.pairwise_id(sp_entity_id, &user.identity_id),
        }
    }

    /// The `SessionIndex` issued to an SP: identity and session ids sealed with AES-256-GCM
    /// under a key derived from the pairwise secret, bound to the SP's entity id. The SP learns
    /// nothing about the person (no identity id crosses SPs), and a `LogoutRequest` names the
    /// session without needing the browser's cookie.
    fn seal_session_index(
        &self,
        sp_entity_id: &str,
        identity: &IdentityId,
        session: &SessionId,
        random: &dyn RandomSource,
    ) -> Result<String, IssueError> {
        let mut plain = [0u8; 32];
        plain[..16].copy_from_slice(identity.as_uuid().as_bytes());
        plain[16..].copy_from_slice(session.as_uuid().as_bytes());
        let mut nonce = [0u8; 12];
        random.fill(&mut nonce);
        let mut tag = [0u8; 16];
        let sealed = openssl::symm::encrypt_aead(
            openssl::symm::Cipher::aes_256_gcm(),
            &self.session_index_key(),
            Some(&nonce),
            sp_entity_id.as_bytes(),
            &plain,
            &mut tag,
        )
        .map_err(|_| IssueError::Signing)?;
        let mut out = Vec::with_capacity(60);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out.extend_from_slice(&tag);
        Ok(format!("s{}", xml::encode_base64_url(&out)))
    }

    /// Opens a `SessionIndex` issued to `sp_entity_id`: `(identity, session)`, or `None` when
    /// it was not issued by this IdP to that SP.
    pub(crate) fn open_session_index(
        &self,
        sp_entity_id: &str,
        index: &str,
    ) -> Option<(IdentityId, SessionId)> {
        let raw = xml::decode_base64_url(index.strip_prefix('s')?)?;
        if raw.len() != 60 {
            return None;
        }
        let (nonce, rest) = raw.split_at(12);
        let (sealed, tag) = rest.split_at(32);
        let plain = openssl::symm::decrypt_aead(
            openssl::symm::Cipher::aes_256_gcm(),
            &self.session_index_key(),
            Some(nonce),
            sp_entity_id.as_bytes(),
            sealed,
            tag,
        )
        .ok()?;
        let identity = uuid::Uuid::from_slice(plain.get(..16)?).ok()?;
        let session = uuid::Uuid::from_slice(plain.get(16..32)?).ok()?;
        Some((
            IdentityId::from_uuid(identity),
            SessionId::from_uuid(session),
        ))
    }

    fn session_index_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.config.pairwise_secret) {
            mac.update(b"ciam-saml session index v1");
            key.copy_from_slice(&mac.finalize().into_bytes());
        }
        key
    }

    /// The pairwise pseudonym of an identity at an SP.
    pub fn pairwise_id(&self, sp_entity_id: &str, identity: &IdentityId) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.config.pairwise_secret) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm is unreachable.
            Err(_) => return String::new(),
        };
        mac.update(identity.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(sp_entity_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Issues the signed response to a checked request for the signed-in user.
    pub fn respond(
        &self,
        sp: &ServiceProvider,
        request: &AuthnRequest,
        user: &SignedInUser,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<SamlResponse, IssueError> {
        if request.sp_entity_id != sp.entity_id {
            return Err(IssueError::WrongServiceProvider);
        }
        self.issue(
            sp,
            &request.acs_url,
            Some(&request.id),
            request.name_id_format,
            user,
            request.relay_state.clone(),
            now,
            random,
        )
    }

    /// Issues an unsolicited (IdP-initiated) response to the SP's default ACS; refused unless
    /// [`ServiceProvider::allow_idp_initiated`] is set.
    pub fn respond_unsolicited(
        &self,
        sp: &ServiceProvider,
        user: &SignedInUser,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<SamlResponse, IssueError> {
        if !sp.allow_idp_initiated {
            return Err(IssueError::UnsolicitedNotAllowed);
        }
        let acs = sp.default_acs().ok_or(IssueError::NoEndpoint)?;
        self.issue(
            sp,
            &acs.location,
            None,
            sp.default_name_id_format,
            user,
            relay_state.map(str::to_owned),
            now,
            random,
        )
    }

    /// A signed error response (status from [`ErrorReply`], for example
    /// `InvalidNameIDPolicy`) to a refused request whose ACS is registered.
    pub fn error_response(
        &self,
        reply: &ErrorReply,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<SamlResponse, IssueError> {
        let id = new_id(random);
        let (top, second) = reply.status.codes();
        let status = format!(
            "<samlp:Status><samlp:StatusCode Value=\"{top}\">\
             <samlp:StatusCode Value=\"{second}\"/></samlp:StatusCode></samlp:Status>"
        );
        let key = self.config.keys.active();
        let xml = format!(
            "<samlp:Response xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" ID=\"{id}\" \
             Version=\"2.0\" IssueInstant=\"{now}\" Destination=\"{dest}\" InResponseTo=\"{irt}\">\
             <saml:Issuer>{issuer}</saml:Issuer>{sig}{status}</samlp:Response>",
            now = xml::instant(now),
            dest = xml::escape(&reply.acs_url),
            irt = xml::escape(&reply.in_response_to),
            issuer = xml::escape(&self.config.entity_id),
            sig = crypto::signature_template(&id, key.certificate()),
        );
        let xml = crypto::sign_enveloped(&xml, key).map_err(|_| IssueError::Signing)?;
        Ok(SamlResponse {
            destination: reply.acs_url.clone(),
            xml,
            relay_state: reply.relay_state.clone(),
            field: "SAMLResponse",
        })
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "private helper shared by both flows"
    )]
    fn issue(
        &self,
        sp: &ServiceProvider,
        acs_url: &str,
        in_response_to: Option<&str>,
        format: NameIdFormat,
        user: &SignedInUser,
        relay_state: Option<String>,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<SamlResponse, IssueError> {
        if format == NameIdFormat::EmailAddress && user.email.is_empty() {
            return Err(IssueError::NoEmail);
        }
        // Written directly in exclusive canonical form (see `crypto::sign_canonical`): sorted
        // attributes, no self-closing tags, C14N escaping, namespaces where exc-c14n renders
        // them. Attribute values carry no xsi:type, so no QName-in-content namespace is needed.
        use crate::crypto::{SIGNATURE_SLOT, c14n_attr as ea, c14n_text as et};
        let key = self.config.keys.active();
        let response_id = new_id(random);
        let assertion_id = new_id(random);
        let not_on_or_after = now + self.config.assertion_lifetime;
        let irt_attr = in_response_to
            .map(|irt| format!(" InResponseTo=\"{}\"", ea(irt)))
            .unwrap_or_default();
        let name_id = self.name_id_for(&sp.entity_id, user, format);
        let session_index =
            self.seal_session_index(&sp.entity_id, &user.identity_id, &user.session_id, random)?;
        let mut attrs = String::new();
        let mut attribute = |name: &str, values: &[&str]| {
            if values.is_empty() {
                return;
            }
            attrs.push_str(&format!(
                "<saml:Attribute Name=\"{name}\" \
                 NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">"
            ));
            for v in values {
                attrs.push_str(&format!(
                    "<saml:AttributeValue>{}</saml:AttributeValue>",
                    et(v)
                ));
            }
            attrs.push_str("</saml:Attribute>");
        };
        attribute(attributes::EMAIL, &[user.email.as_str()]);
        if let Some(g) = &user.given_name {
            attribute(attributes::GIVEN_NAME, &[g.as_str()]);
        }
        if let Some(f) = &user.family_name {
            attribute(attributes::FAMILY_NAME, &[f.as_str()]);
        }
        let org_id = user.organization_id.to_string();
        attribute(attributes::ORGANIZATION_ID, &[org_id.as_str()]);
        attribute(
            attributes::ORGANIZATION_NAME,
            &[user.organization_name.as_str()],
        );
        let roles: Vec<&str> = user.roles.iter().map(String::as_str).collect();
        attribute(attributes::ROLES, &roles);

        let assertion = format!(
            "<saml:Assertion xmlns:saml=\"{NS_ASSERTION}\" ID=\"{assertion_id}\" \
             IssueInstant=\"{now}\" Version=\"2.0\">\
             <saml:Issuer>{issuer}</saml:Issuer>{SIGNATURE_SLOT}\
             <saml:Subject><saml:NameID Format=\"{format}\" NameQualifier=\"{issuer_attr}\" \
             SPNameQualifier=\"{audience_attr}\">{name_id}</saml:NameID>\
             <saml:SubjectConfirmation Method=\"{bearer}\">\
             <saml:SubjectConfirmationData{irt_attr} NotOnOrAfter=\"{noa}\" Recipient=\"{acs}\">\
             </saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>\
             <saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\">\
             <saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience>\
             </saml:AudienceRestriction></saml:Conditions>\
             <saml:AuthnStatement AuthnInstant=\"{authn}\" SessionIndex=\"{session}\" \
             SessionNotOnOrAfter=\"{session_end}\"><saml:AuthnContext>\
             <saml:AuthnContextClassRef>{context}</saml:AuthnContextClassRef>\
             </saml:AuthnContext></saml:AuthnStatement>\
             <saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>",
            now = xml::instant(now),
            issuer = et(&self.config.entity_id),
            issuer_attr = ea(&self.config.entity_id),
            audience = et(&sp.entity_id),
            audience_attr = ea(&sp.entity_id),
            format = format.urn(),
            name_id = et(&name_id),
            bearer = xml::CM_BEARER,
            noa = xml::instant(not_on_or_after),
            nb = xml::instant(now - self.config.skew.min(Duration::seconds(60))),
            acs = ea(acs_url),
            authn = xml::instant(user.authenticated_at),
            session = ea(&session_index),
            session_end = xml::instant(user.session_expires_at),
            context = authn_context_for(&user.auth_methods),
        );
        let assertion = crypto::sign_canonical(&assertion, &assertion_id, key)
            .map_err(|_| IssueError::Signing)?;
        let response = format!(
            "<samlp:Response xmlns:samlp=\"{NS_PROTOCOL}\" Destination=\"{acs}\" \
             ID=\"{response_id}\"{irt_attr} IssueInstant=\"{now}\" Version=\"2.0\">\
             <saml:Issuer xmlns:saml=\"{NS_ASSERTION}\">{issuer}</saml:Issuer>{slot}\
             <samlp:Status><samlp:StatusCode Value=\"{success}\"></samlp:StatusCode>\
             </samlp:Status>{assertion}</samlp:Response>",
            now = xml::instant(now),
            acs = ea(acs_url),
            issuer = et(&self.config.entity_id),
            slot = if sp.sign_response { SIGNATURE_SLOT } else { "" },
            success = xml::STATUS_SUCCESS,
        );
        let xml = if sp.sign_response {
            crypto::sign_canonical(&response, &response_id, key).map_err(|_| IssueError::Signing)?
        } else {
            response
        };
        Ok(SamlResponse {
            destination: acs_url.to_owned(),
            xml,
            relay_state,
            field: "SAMLResponse",
        })
    }

    /// The IdP's metadata: entity id, SSO and SLO endpoints on both bindings, NameID formats,
    /// and every published signing certificate (two during a key rollover). Signed with the
    /// active key when `signed`; `valid_until` sets `validUntil`.
    pub fn metadata(
        &self,
        signed: bool,
        valid_until: Option<DateTime<Utc>>,
    ) -> Result<String, IssueError> {
        let id = format!(
            "_md{}",
            &hex::encode(openssl::sha::sha256(self.config.entity_id.as_bytes()))[..16]
        );
        let keys: String = self
            .config
            .keys
            .published()
            .into_iter()
            .map(metadata::key_descriptor)
            .collect();
        let endpoints = |kind: &str, url: &str| {
            [Binding::HttpRedirect, Binding::HttpPost]
                .iter()
                .map(|b| {
                    format!(
                        "<md:{kind} Binding=\"{}\" Location=\"{}\"/>",
                        b.urn(),
                        xml::escape(url)
                    )
                })
                .collect::<String>()
        };
        let valid = valid_until
            .map(|v| format!(" validUntil=\"{}\"", xml::instant(v)))
            .unwrap_or_default();
        let key = self.config.keys.active();
        let sig = if signed {
            crypto::signature_template(&id, key.certificate())
        } else {
            String::new()
        };
        let doc = format!(
            "<md:EntityDescriptor xmlns:md=\"{md}\" ID=\"{id}\" entityID=\"{entity}\"{valid}>{sig}\
             <md:IDPSSODescriptor protocolSupportEnumeration=\"{NS_PROTOCOL}\" \
             WantAuthnRequestsSigned=\"{wars}\">{keys}{slo}\
             <md:NameIDFormat>{persistent}</md:NameIDFormat>\
             <md:NameIDFormat>{email}</md:NameIDFormat>{sso}\
             </md:IDPSSODescriptor></md:EntityDescriptor>",
            md = xml::NS_METADATA,
            entity = xml::escape(&self.config.entity_id),
            wars = self.config.want_authn_requests_signed,
            slo = endpoints("SingleLogoutService", &self.config.slo_url),
            sso = endpoints("SingleSignOnService", &self.config.sso_url),
            persistent = NameIdFormat::Persistent.urn(),
            email = NameIdFormat::EmailAddress.urn(),
        );
        if signed {
            crypto::sign_enveloped(&doc, key).map_err(|_| IssueError::Signing)
        } else {
            Ok(doc)
        }
    }

    /// Checks a `LogoutRequest` on the HTTP-Redirect binding. Logout requests must be signed
    /// with the SP's registered certificate.
    pub async fn receive_logout_redirect(
        &self,
        registry: &dyn ServiceProviderRegistry,
        query: &str,
        now: DateTime<Utc>,
    ) -> Result<LogoutRequest, RequestError> {
        let received = receive_query(query, "SAMLRequest")?;
        self.check_logout_request(registry, received, now).await
    }

    /// Checks a `LogoutRequest` on the HTTP-POST binding (must carry an enveloped signature).
    pub async fn receive_logout_post(
        &self,
        registry: &dyn ServiceProviderRegistry,
        saml_request: &str,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<LogoutRequest, RequestError> {
        let received = Received {
            xml: xml::decode_post(saml_request)?,
            relay_state: relay_state.map(str::to_owned),
            detached: None,
        };
        self.check_logout_request(registry, received, now).await
    }

    async fn check_logout_request(
        &self,
        registry: &dyn ServiceProviderRegistry,
        received: Received,
        now: DateTime<Utc>,
    ) -> Result<LogoutRequest, RequestError> {
        let claimed = issuer_of(&received.xml)?;
        let sp = registry
            .get(&claimed)
            .await?
            .ok_or(RequestError::UnknownIssuer)?;
        let (text, signed) = verified_xml(&received, &sp)?;
        if !signed {
            return Err(RequestError::MissingSignature);
        }
        let doc = xml::parse(&text).ok_or(RequestError::Malformed)?;
        let root = doc.root_element();
        if !xml::is(&root, NS_PROTOCOL, "LogoutRequest") {
            return Err(RequestError::Malformed);
        }
        if xml::child_text(root, NS_ASSERTION, "Issuer").as_deref() != Some(sp.entity_id.as_str()) {
            return Err(RequestError::UnknownIssuer);
        }
        self.check_envelope(&root, now)?;
        if let Some(until) = root.attribute("NotOnOrAfter").and_then(xml::parse_instant) {
            if now >= until + self.config.skew {
                return Err(RequestError::Stale);
            }
        }
        let id = root
            .attribute("ID")
            .filter(|id| !id.is_empty())
            .ok_or(RequestError::Malformed)?
            .to_owned();
        let name_id =
            xml::child_text(root, NS_ASSERTION, "NameID").ok_or(RequestError::Malformed)?;
        let session_indexes = xml::children(root, NS_PROTOCOL, "SessionIndex")
            .map(|n| xml::text_content(n).trim().to_owned())
            .collect();
        Ok(LogoutRequest {
            id,
            sp_entity_id: sp.entity_id.clone(),
            name_id,
            session_indexes,
            relay_state: received.relay_state,
        })
    }

    /// The signed `LogoutResponse` to a checked logout request, on the SP's Redirect SLO
    /// endpoint (detached RSA-SHA256 signature) when it has one; POST otherwise. The status is
    /// `Success`, with the second-level `PartialLogout` when [`LogoutOutcome::partial`] (some
    /// session named could not be identified, see [`IdentityProvider::end_sessions`]).
    pub fn logout_response(
        &self,
        sp: &ServiceProvider,
        request: &LogoutRequest,
        outcome: &LogoutOutcome,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<LogoutReply, IssueError> {
        if request.sp_entity_id != sp.entity_id {
            return Err(IssueError::WrongServiceProvider);
        }
        let endpoint = sp
            .single_logout_services
            .iter()
            .find(|e| e.binding == Binding::HttpRedirect)
            .or_else(|| sp.single_logout_services.first())
            .ok_or(IssueError::NoEndpoint)?;
        let id = new_id(random);
        let key = self.config.keys.active();
        let build = |sig: &str| {
            format!(
                "<samlp:LogoutResponse xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
                 ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{now}\" Destination=\"{dest}\" \
                 InResponseTo=\"{irt}\"><saml:Issuer>{issuer}</saml:Issuer>{sig}\
                 <samlp:Status><samlp:StatusCode Value=\"{success}\">{partial}</samlp:StatusCode>\
                 </samlp:Status></samlp:LogoutResponse>",
                now = xml::instant(now),
                dest = xml::escape(&endpoint.location),
                irt = xml::escape(&request.id),
                issuer = xml::escape(&self.config.entity_id),
                success = xml::STATUS_SUCCESS,
                partial = if outcome.partial {
                    "<samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:PartialLogout\"/>"
                } else {
                    ""
                },
            )
        };
        match endpoint.binding {
            Binding::HttpRedirect => {
                let url = redirect_url(
                    &endpoint.location,
                    "SAMLResponse",
                    &build(""),
                    request.relay_state.as_deref(),
                    Some(key),
                )
                .ok_or(IssueError::Signing)?;
                Ok(LogoutReply::Redirect(RedirectMessage { url }))
            }
            Binding::HttpPost => {
                let signed = crypto::sign_enveloped(
                    &build(&crypto::signature_template(&id, key.certificate())),
                    key,
                )
                .map_err(|_| IssueError::Signing)?;
                Ok(LogoutReply::Post(SamlResponse {
                    destination: endpoint.location.clone(),
                    xml: signed,
                    relay_state: request.relay_state.clone(),
                    field: "SAMLResponse",
                }))
            }
        }
    }
}

/// How a logout response is delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogoutReply {
    /// Redirect the browser to this URL.
    Redirect(RedirectMessage),
    /// Serve this self-submitting form.
    Post(SamlResponse),
}

/// Builds a Redirect-binding URL: deflate, base64, and a detached RSA-SHA256 signature over
/// `field=…&RelayState=…&SigAlg=…` when a key is given.
pub(crate) fn redirect_url(
    endpoint: &str,
    field: &str,
    message: &str,
    relay_state: Option<&str>,
    key: Option<&SigningKey>,
) -> Option<String> {
    let encoded = xml::encode_base64(&xml::deflate(message.as_bytes()));
    let mut query = format!("{field}={}", xml::query_encode(&encoded));
    if let Some(relay) = relay_state {
        query.push_str(&format!("&RelayState={}", xml::query_encode(relay)));
    }
    if let Some(key) = key {
        query.push_str(&format!(
            "&SigAlg={}",
            xml::query_encode(crypto::RSA_SHA256)
        ));
        let signature = key.sign_raw(query.as_bytes()).ok()?;
        query.push_str(&format!(
            "&Signature={}",
            xml::query_encode(&xml::encode_base64(&signature))
        ));
    }
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    Some(format!("{endpoint}{separator}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authn_context_distinguishes_mfa() {
        assert_eq!(
            authn_context_for(&[AuthMethod::Pwd]),
            authn_context::PASSWORD
        );
        assert_eq!(
            authn_context_for(&[AuthMethod::Pwd, AuthMethod::Otp]),
            authn_context::MFA
        );
        assert_eq!(
            authn_context_for(&[AuthMethod::Fed]),
            authn_context::UNSPECIFIED
        );
    }
}
