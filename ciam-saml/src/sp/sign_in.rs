//! Federated sign-in through a customer's SAML IdP, into ciam-core's login.
//!
//! The connection is ciam-core's [`IdentityProviderConnection`] (a setting of kind
//! `IdentityProvider`, key = the IdP's entity id, owned by the customer organization) whose
//! `saml` part holds the IdP's metadata. [`SamlSignIn`] turns it into an [`IdpConnection`],
//! sends the browser there with an `AuthnRequest` bound to the login attempt, verifies the
//! response at the ACS, maps the assertion to [`FederatedClaims`] and completes the attempt
//! with [`Login::complete_federated`](ciam_core::login::Login::complete_federated): the person
//! is signed in, created just in time in the organization that owns the connection (with
//! business roles mapped from the attributes), or asked to link an existing account.
//!
//! The request id is derived from the attempt token and the IdP (a hash: it reveals nothing
//! of the token), so nothing is stored when the request is sent; at the ACS the id expected
//! in `InResponseTo` is derived again from the attempt the browser brings back, and is
//! recorded with `Store::consume_once` so that it answers one response only (the attempt
//! itself completes once too).

use std::collections::BTreeMap;

use chrono::Duration;
use ciam_core::contact::EmailAddress;
use ciam_core::ids::OrganizationId;
use ciam_core::login::{
    AttemptToken, FederatedClaims, FederationProtocol, IdentityProviderConnection, LoginError,
    LoginStep, SamlIdpSettings, StoredConnection,
};
use ciam_core::{Ciam, Principal, StoreError};

use super::{
    AuthnRequestError, IdpConnection, OutgoingAuthnRequest, ResponseError, SpConfig,
    VerifiedAssertion,
};
use crate::metadata::MetadataError;
use crate::{NameIdFormat, xml};

/// Attribute names read for the given name (SAML basic, LDAP, OID, Entra ID / ADFS claims).
const GIVEN_NAME: [&str; 4] = [
    "given_name",
    "givenName",
    "urn:oid:2.5.4.42",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
];
/// Attribute names read for the family name.
const FAMILY_NAME: [&str; 5] = [
    "family_name",
    "sn",
    "surname",
    "urn:oid:2.5.4.4",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
];
/// Authentication contexts that say a second factor was used.
const MFA_CONTEXTS: [&str; 3] = [
    "https://refeds.org/profile/mfa",
    "http://schemas.microsoft.com/claims/multipleauthn",
    "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
];

/// Why a SAML sign-in could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamlSignInError {
    /// The attempt is not a federated one, its provider is not a SAML connection, or the
    /// connection has no usable metadata.
    #[error("this sign-in provider is not a configured saml identity provider")]
    NotSamlProvider,
    /// The stored metadata of the connection is not usable any more.
    #[error("the identity provider's metadata is not usable: {0}")]
    Metadata(#[from] MetadataError),
    /// The request could not be made.
    #[error(transparent)]
    Request(#[from] AuthnRequestError),
    /// The response was refused (signature, audience, recipient, InResponseTo, expiry,
    /// replay, ...).
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// The response answers a request that was already answered.
    #[error("this sign-in response was already used")]
    RequestAlreadyAnswered,
    /// The NameID is transient: it names nobody from one login to the next, so it cannot be
    /// linked. Ask the IdP for a persistent NameID.
    #[error("the identity provider sent a transient nameid; a persistent one is needed")]
    TransientNameId,
    /// The login refused (attempt expired, not provisioned, outside the organization's
    /// domains, ...).
    #[error(transparent)]
    Login(#[from] LoginError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Federated sign-in at customers' SAML IdPs. Build one per process (`Arc`) from the `Ciam`
/// and our SP configuration ([`SpConfig`]: entity id, ACS URL, request-signing key).
pub struct SamlSignIn {
    ciam: Ciam,
    config: SpConfig,
}

impl std::fmt::Debug for SamlSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlSignIn")
            .field("entity_id", &self.config.entity_id)
            .finish_non_exhaustive()
    }
}

impl SamlSignIn {
    /// Sign-in for `ciam` as the SP `config`.
    pub fn new(ciam: Ciam, config: SpConfig) -> Self {
        Self { ciam, config }
    }

    /// Our SP configuration (its [`SpConfig::metadata`] goes to the customer's IdP admin).
    pub fn config(&self) -> &SpConfig {
        &self.config
    }

    /// Connects a customer's SAML IdP to `organization`: the metadata is checked first (a
    /// signing certificate and an HTTP-Redirect SSO service are required; DOCTYPE, non-https
    /// endpoints and unreadable certificates are refused), then stored through
    /// `ciam.identity_providers().add_connection` under the IdP's entity id. `connection` carries the
    /// rest (display name, just-in-time creation, role mapping, ...); its `saml` part is
    /// replaced by this metadata and `allow_unsolicited`.
    pub async fn connect(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        metadata_xml: &str,
        allow_unsolicited: bool,
        mut connection: IdentityProviderConnection,
    ) -> Result<StoredConnection, ConnectError> {
        let idp = IdpConnection::from_metadata(metadata_xml)?;
        connection.protocol = FederationProtocol::Saml;
        connection.oidc = None;
        connection.saml = Some(SamlIdpSettings {
            metadata_xml: metadata_xml.to_owned(),
            allow_unsolicited,
        });
        Ok(self
            .ciam
            .identity_providers()
            .add_connection(principal, &idp.entity_id, Some(organization), connection)
            .await?)
    }

    /// The [`IdpConnection`] for the stored connection with this key (entity id).
    pub async fn connection(&self, entity_id: &str) -> Result<IdpConnection, SamlSignInError> {
        let stored = self
            .ciam
            .identity_providers()
            .connection(entity_id)
            .await?
            .ok_or(SamlSignInError::NotSamlProvider)?;
        idp_connection(&stored)
    }

    /// Starts the round trip of a federated attempt (from `LoginStep::Federated` or
    /// `Login::start_at_provider`): the URL to redirect the browser to (Redirect binding,
    /// signed when a key is configured). Keep the attempt token until the ACS (see the
    /// guide: the ACS receives a cross-site POST).
    pub async fn begin(
        &self,
        attempt: &AttemptToken,
        relay_state: Option<&str>,
    ) -> Result<OutgoingAuthnRequest, SamlSignInError> {
        let federated = self.ciam.login().federated_attempt(attempt)?;
        let idp = self.connection(&federated.provider).await?;
        let id = request_id(attempt, &idp.entity_id);
        let now = self.ciam.clock().now();
        Ok(self
            .config
            .authn_request_with_id(&idp, id, relay_state, now)?)
    }

    /// Verifies the `SAMLResponse` posted to the ACS for `attempt` and completes the sign-in
    /// ([`LoginStep::SignedIn`], a second factor, or linking an existing account). `source`
    /// is the client's address.
    pub async fn finish(
        &self,
        attempt: &AttemptToken,
        saml_response: &str,
        source: Option<&str>,
    ) -> Result<LoginStep, SamlSignInError> {
        let federated = self.ciam.login().federated_attempt(attempt)?;
        let idp = self.connection(&federated.provider).await?;
        let expected = request_id(attempt, &idp.entity_id);
        let now = self.ciam.clock().now();
        let store = self.ciam.store();
        let verified = self
            .config
            .consume(&idp, saml_response, Some(&expected), now, store.as_ref())
            .await?;
        let key = format!("saml:request:{}:{expected}", idp.entity_id);
        if !store
            .consume_once(&key, now, verified.not_on_or_after() + Duration::hours(1))
            .await?
        {
            return Err(SamlSignInError::RequestAlreadyAnswered);
        }
        let claims = claims(&verified)?;
        Ok(self
            .ciam
            .login()
            .complete_federated(attempt, claims, source)
            .await?)
    }

    /// Verifies an unsolicited (IdP-initiated) `SAMLResponse` and signs the person in; only
    /// for connections with `allow_unsolicited`. The IdP is the response's issuer; its
    /// signature, audience, recipient, expiry and replay are checked as for any response.
    pub async fn finish_unsolicited(
        &self,
        saml_response: &str,
        source: Option<&str>,
    ) -> Result<LoginStep, SamlSignInError> {
        let issuer = unverified_issuer(saml_response)?;
        let idp = self.connection(&issuer).await?;
        if !idp.allow_unsolicited {
            return Err(ResponseError::UnsolicitedNotAllowed.into());
        }
        let now = self.ciam.clock().now();
        let verified = self
            .config
            .consume(&idp, saml_response, None, now, self.ciam.store().as_ref())
            .await?;
        let attempt = self
            .ciam
            .login()
            .start_at_provider(&idp.entity_id, source)
            .await?;
        let claims = claims(&verified)?;
        Ok(self
            .ciam
            .login()
            .complete_federated(&attempt, claims, source)
            .await?)
    }
}

/// Why a customer's SAML IdP could not be connected. Nothing is stored when it fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The metadata is not usable.
    #[error("identity provider metadata refused: {0}")]
    Metadata(#[from] MetadataError),
    /// The connection was refused by ciam-core (not allowed, unknown organization or business
    /// role, an entity id already connected, ...).
    #[error(transparent)]
    Federation(#[from] ciam_core::login::FederationError),
}

/// The [`IdpConnection`] of a stored connection: its metadata read again and checked.
pub fn idp_connection(stored: &StoredConnection) -> Result<IdpConnection, SamlSignInError> {
    let saml = match (&stored.connection.protocol, &stored.connection.saml) {
        (FederationProtocol::Saml, Some(saml)) => saml,
        _ => return Err(SamlSignInError::NotSamlProvider),
    };
    let mut idp = IdpConnection::from_metadata(&saml.metadata_xml)?;
    if idp.entity_id != stored.key {
        return Err(SamlSignInError::NotSamlProvider);
    }
    idp.allow_unsolicited = saml.allow_unsolicited;
    idp.organization_id = stored.organization;
    Ok(idp)
}

/// The request id bound to an attempt at an IdP: `_` and 40 hex digits of
/// SHA-256("ciam-saml authn request", IdP, attempt token).
fn request_id(attempt: &AttemptToken, idp_entity_id: &str) -> String {
    let mut input = Vec::new();
    input.extend_from_slice(b"ciam-saml authn request\0");
    input.extend_from_slice(idp_entity_id.as_bytes());
    input.push(0);
    input.extend_from_slice(attempt.expose().as_bytes());
    let digest = openssl::sha::sha256(&input);
    format!("_{}", &hex::encode(digest)[..40])
}

/// The issuer a response claims, only to find the connection that must then verify it.
fn unverified_issuer(saml_response: &str) -> Result<String, SamlSignInError> {
    let text = xml::decode_post(saml_response).map_err(ResponseError::from)?;
    let doc = xml::parse(&text).ok_or(ResponseError::Malformed)?;
    let root = doc.root_element();
    xml::child_text(root, xml::NS_ASSERTION, "Issuer")
        .or_else(|| {
            xml::only_child(root, xml::NS_ASSERTION, "Assertion")
                .and_then(|a| xml::child_text(a, xml::NS_ASSERTION, "Issuer"))
        })
        .filter(|issuer| !issuer.is_empty())
        .ok_or_else(|| ResponseError::Malformed.into())
}

/// What the verified assertion tells core: the IdP (connection key), the persistent subject,
/// email (an IdP of the organization is authoritative for its directory's addresses; core
/// accepts them only within the organization's verified domains), names, every attribute (for
/// role mapping) and whether a second factor was used.
fn claims(verified: &VerifiedAssertion) -> Result<FederatedClaims, SamlSignInError> {
    if verified.name_id_format() == Some(NameIdFormat::Transient.urn()) {
        return Err(SamlSignInError::TransientNameId);
    }
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| verified.attribute(n))
            .map(str::to_owned)
    };
    let email = verified.email().and_then(|e| EmailAddress::parse(e).ok());
    let attributes: BTreeMap<String, Vec<String>> = verified.attributes().clone();
    Ok(FederatedClaims {
        provider: verified.issuer().to_owned(),
        subject: verified.name_id().to_owned(),
        email_verified: email.is_some(),
        email,
        given_name: first(&GIVEN_NAME),
        family_name: first(&FAMILY_NAME),
        attributes,
        mfa: verified
            .authn_context()
            .is_some_and(|context| MFA_CONTEXTS.contains(&context)),
    })
}
