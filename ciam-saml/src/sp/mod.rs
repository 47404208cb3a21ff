//! The service provider: federated login from a customer's IdP.
//!
//! [`SpConfig::authn_request`] sends the browser to the customer's IdP and returns the request
//! id for the caller to store with the login attempt; [`SpConfig::consume`] verifies the
//! `SAMLResponse` that comes back and yields a [`VerifiedAssertion`], the only way to obtain
//! one.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ciam_core::RandomSource;
use ciam_core::ids::OrganizationId;

use crate::crypto::{self, Certificate, SigningKey};
use crate::metadata::{self, MetadataError};
use crate::xml::{self, DecodeFailure, NS_ASSERTION, NS_PROTOCOL};
use crate::{Binding, NameIdFormat};

mod sign_in;

pub use sign_in::{ConnectError, SamlSignIn, SamlSignInError, idp_connection};

/// A customer's IdP, read from its metadata; per organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdpConnection {
    /// The IdP's entity id (the `Issuer` it must use).
    pub entity_id: String,
    /// Its single sign-on URL on the Redirect binding.
    pub sso_url: String,
    /// The certificates its signatures must verify with (never one carried in a message).
    pub signing_certificates: Vec<Certificate>,
    /// `WantAuthnRequestsSigned` from its metadata.
    pub want_authn_requests_signed: bool,
    /// Whether unsolicited (IdP-initiated) responses are accepted; off by default.
    pub allow_unsolicited: bool,
    /// The organization whose users sign in through this IdP.
    pub organization_id: Option<OrganizationId>,
}

impl IdpConnection {
    /// Reads an IdP from its metadata; refuses one without a signing certificate or without a
    /// Redirect-binding single sign-on service.
    pub fn from_metadata(metadata_xml: &str) -> Result<Self, MetadataError> {
        let role = metadata::read_role(metadata_xml, "IDPSSODescriptor")?;
        if role.signing.is_empty() {
            return Err(MetadataError::NoSigningCertificate);
        }
        let sso_url = role
            .endpoints
            .iter()
            .find(|(name, e)| name == "SingleSignOnService" && e.binding == Binding::HttpRedirect)
            .map(|(_, e)| e.location.clone())
            .ok_or(MetadataError::NoSingleSignOnService)?;
        Ok(Self {
            entity_id: role.entity_id,
            sso_url,
            signing_certificates: role.signing,
            want_authn_requests_signed: role.flag_a,
            allow_unsolicited: false,
            organization_id: None,
        })
    }
}

/// Our side of the federation.
#[derive(Clone, Debug)]
pub struct SpConfig {
    /// Our entity id (the audience we require).
    pub entity_id: String,
    /// Our assertion consumer service URL (the `Destination` and `Recipient` we require).
    pub acs_url: String,
    /// Allowed clock skew; default 180 seconds.
    pub skew: Duration,
    /// A key to sign our `AuthnRequest`s with (required by IdPs that want signed requests).
    pub signing_key: Option<SigningKey>,
}

impl SpConfig {
    /// A configuration with the default skew and no signing key.
    pub fn new(entity_id: impl Into<String>, acs_url: impl Into<String>) -> Self {
        Self {
            entity_id: entity_id.into(),
            acs_url: acs_url.into(),
            skew: Duration::seconds(180),
            signing_key: None,
        }
    }
}

/// An `AuthnRequest` ready to send on the Redirect binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingAuthnRequest {
    /// The URL to redirect the browser to.
    pub url: String,
    /// The request id: store it with the login attempt and pass it to [`SpConfig::consume`].
    pub request_id: String,
}

/// Why an `AuthnRequest` could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthnRequestError {
    /// The IdP wants signed requests and no signing key is configured.
    #[error("identity provider wants signed requests and no signing key is configured")]
    SigningKeyRequired,
    /// Signing failed.
    #[error("signing failed")]
    Signing,
}

/// Why a response was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// Over the size bound.
    #[error("response too large")]
    TooLarge,
    /// Not base64, not UTF-8, not well-formed, or not a SAML response.
    #[error("malformed response")]
    Malformed,
    /// A document type declaration (refused before parsing).
    #[error("response contains a document type declaration")]
    Doctype,
    /// Encrypted assertions are not supported.
    #[error("encrypted assertions are not supported")]
    EncryptedAssertion,
    /// No signature on the response or the assertion.
    #[error("response is not signed")]
    MissingSignature,
    /// A signature or digest algorithm outside the allowlist (SHA-1 among them).
    #[error("signature algorithm not allowed")]
    AlgorithmNotAllowed,
    /// A signature does not verify with the configured certificates.
    #[error("signature is invalid")]
    InvalidSignature,
    /// The signed content holds no single assertion.
    #[error("no signed assertion")]
    NoSignedAssertion,
    /// The issuer is not the configured IdP.
    #[error("issuer is not the configured identity provider")]
    WrongIssuer,
    /// `Destination` is not our ACS URL.
    #[error("destination is not our assertion consumer service")]
    WrongDestination,
    /// No bearer confirmation whose `Recipient` is our ACS URL.
    #[error("recipient is not our assertion consumer service")]
    WrongRecipient,
    /// `InResponseTo` does not match the stored request id.
    #[error("response is not for the expected request")]
    WrongInResponseTo,
    /// An unsolicited response from an IdP for which they are not enabled.
    #[error("unsolicited response not allowed")]
    UnsolicitedNotAllowed,
    /// No audience restriction, or one without our entity id.
    #[error("audience is not this service provider")]
    WrongAudience,
    /// Past `NotOnOrAfter` (with skew).
    #[error("assertion expired")]
    Expired,
    /// Before `NotBefore` (with skew).
    #[error("assertion not yet valid")]
    NotYetValid,
    /// The status is not success.
    #[error("identity provider returned status {0}")]
    Status(String),
    /// The assertion id was already used.
    #[error("assertion replayed")]
    Replayed,
    /// The replay cache failed.
    #[error("replay cache unavailable: {0}")]
    ReplayCache(String),
}

impl From<DecodeFailure> for ResponseError {
    fn from(value: DecodeFailure) -> Self {
        match value {
            DecodeFailure::TooLarge => Self::TooLarge,
            DecodeFailure::Malformed => Self::Malformed,
            DecodeFailure::Doctype => Self::Doctype,
        }
    }
}

/// Records single uses of assertion ids until they expire.
#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// `true` for the first use of `key` before `expires_at`, `false` for a repeat.
    async fn first_use(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, String>;
}

#[async_trait]
impl<S: ciam_core::Store + ?Sized> ReplayCache for S {
    async fn first_use(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, String> {
        self.consume_once(key, now, expires_at)
            .await
            .map_err(|e| e.to_string())
    }
}

/// An in-process [`ReplayCache`] (one process only; use the `Store` across instances).
#[derive(Debug, Default)]
pub struct InMemoryReplayCache {
    used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl InMemoryReplayCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ReplayCache for InMemoryReplayCache {
    async fn first_use(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, String> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.retain(|_, until| *until > now);
        if used.contains_key(key) {
            return Ok(false);
        }
        used.insert(key.to_owned(), expires_at);
        Ok(true)
    }
}

/// An assertion that passed every check; only [`SpConfig::consume`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedAssertion {
    issuer: String,
    assertion_id: String,
    name_id: String,
    name_id_format: Option<String>,
    session_index: Option<String>,
    session_not_on_or_after: Option<DateTime<Utc>>,
    authn_context: Option<String>,
    not_on_or_after: DateTime<Utc>,
    attributes: BTreeMap<String, Vec<String>>,
    organization_id: Option<OrganizationId>,
}

impl VerifiedAssertion {
    /// The IdP's entity id.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The assertion's `ID`.
    pub fn assertion_id(&self) -> &str {
        &self.assertion_id
    }
    /// The subject's NameID (all its text, comments ignored).
    pub fn name_id(&self) -> &str {
        &self.name_id
    }
    /// The NameID format URN, if given.
    pub fn name_id_format(&self) -> Option<&str> {
        self.name_id_format.as_deref()
    }
    /// The IdP's session index.
    pub fn session_index(&self) -> Option<&str> {
        self.session_index.as_deref()
    }
    /// When the IdP session ends.
    pub fn session_not_on_or_after(&self) -> Option<DateTime<Utc>> {
        self.session_not_on_or_after
    }
    /// The authentication context class.
    pub fn authn_context(&self) -> Option<&str> {
        self.authn_context.as_deref()
    }
    /// The end of the assertion's validity.
    pub fn not_on_or_after(&self) -> DateTime<Utc> {
        self.not_on_or_after
    }
    /// Attributes by name (and by `FriendlyName` too, when given), values in document
    /// order.
    pub fn attributes(&self) -> &BTreeMap<String, Vec<String>> {
        &self.attributes
    }
    /// The first value of an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
    /// The email address: the `email` or `mail` attribute (by name or OID), or an email NameID.
    pub fn email(&self) -> Option<&str> {
        [
            "email",
            "mail",
            "urn:oid:0.9.2342.19200300.100.1.3",
            "emailAddress",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        ]
        .iter()
        .find_map(|n| self.attribute(n))
        .or_else(|| {
            (self.name_id_format.as_deref() == Some(NameIdFormat::EmailAddress.urn()))
                .then_some(self.name_id.as_str())
        })
    }
    /// The organization configured on the IdP connection.
    pub fn organization_id(&self) -> Option<OrganizationId> {
        self.organization_id
    }
}

fn new_id(random: &dyn RandomSource) -> String {
    let mut bytes = [0u8; 20];
    random.fill(&mut bytes);
    format!("_{}", hex::encode(bytes))
}

fn check_algorithms(doc: &roxmltree::Document<'_>) -> Result<(), ResponseError> {
    match crypto::signature_algorithms(doc) {
        crypto::SignatureScan::None => Err(ResponseError::MissingSignature),
        crypto::SignatureScan::Disallowed => Err(ResponseError::AlgorithmNotAllowed),
        crypto::SignatureScan::Allowed => Ok(()),
    }
}

impl SpConfig {
    /// A Redirect-binding `AuthnRequest` to `idp` (signed when a key is configured); the
    /// returned request id must be stored with the login attempt.
    pub fn authn_request(
        &self,
        idp: &IdpConnection,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<OutgoingAuthnRequest, AuthnRequestError> {
        self.authn_request_with_id(idp, new_id(random), relay_state, now)
    }

    /// [`SpConfig::authn_request`] with a given request id.
    pub(crate) fn authn_request_with_id(
        &self,
        idp: &IdpConnection,
        id: String,
        relay_state: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<OutgoingAuthnRequest, AuthnRequestError> {
        if idp.want_authn_requests_signed && self.signing_key.is_none() {
            return Err(AuthnRequestError::SigningKeyRequired);
        }
        let message = format!(
            "<samlp:AuthnRequest xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
             ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{now}\" Destination=\"{dest}\" \
             AssertionConsumerServiceURL=\"{acs}\" ProtocolBinding=\"{post}\">\
             <saml:Issuer>{issuer}</saml:Issuer>\
             <samlp:NameIDPolicy Format=\"{unspecified}\" AllowCreate=\"true\"/>\
             </samlp:AuthnRequest>",
            now = xml::instant(now),
            dest = xml::escape(&idp.sso_url),
            acs = xml::escape(&self.acs_url),
            post = Binding::HttpPost.urn(),
            issuer = xml::escape(&self.entity_id),
            unspecified = NameIdFormat::Unspecified.urn(),
        );
        let url = crate::idp::redirect_url(
            &idp.sso_url,
            "SAMLRequest",
            &message,
            relay_state,
            self.signing_key.as_ref(),
        )
        .ok_or(AuthnRequestError::Signing)?;
        Ok(OutgoingAuthnRequest {
            url,
            request_id: id,
        })
    }

    /// Our SP metadata, to register with a customer's IdP.
    pub fn metadata(&self) -> String {
        let keys = self
            .signing_key
            .as_ref()
            .map(|k| metadata::key_descriptor(k.certificate()))
            .unwrap_or_default();
        format!(
            "<md:EntityDescriptor xmlns:md=\"{md}\" entityID=\"{entity}\">\
             <md:SPSSODescriptor protocolSupportEnumeration=\"{NS_PROTOCOL}\" \
             AuthnRequestsSigned=\"{signed}\" WantAssertionsSigned=\"true\">{keys}\
             <md:NameIDFormat>{persistent}</md:NameIDFormat>\
             <md:NameIDFormat>{email}</md:NameIDFormat>\
             <md:AssertionConsumerService Binding=\"{post}\" Location=\"{acs}\" index=\"0\" \
             isDefault=\"true\"/></md:SPSSODescriptor></md:EntityDescriptor>",
            md = xml::NS_METADATA,
            entity = xml::escape(&self.entity_id),
            signed = self.signing_key.is_some(),
            persistent = NameIdFormat::Persistent.urn(),
            email = NameIdFormat::EmailAddress.urn(),
            post = Binding::HttpPost.urn(),
            acs = xml::escape(&self.acs_url),
        )
    }

    /// Verifies a `SAMLResponse` form value from `idp`.
    ///
    /// `expected_request_id` is the id stored with the login attempt; `None` accepts only an
    /// unsolicited response, and only when the connection allows them. The assertion id is
    /// recorded in `replay` until it expires.
    pub async fn consume<R: ReplayCache + ?Sized>(
        &self,
        idp: &IdpConnection,
        saml_response: &str,
        expected_request_id: Option<&str>,
        now: DateTime<Utc>,
        replay: &R,
    ) -> Result<VerifiedAssertion, ResponseError> {
        let text = xml::decode_post(saml_response)?;
        let original = xml::parse(&text).ok_or(ResponseError::Malformed)?;
        let envelope = original.root_element();
        if !xml::is(&envelope, NS_PROTOCOL, "Response")
            || envelope.attribute("Version") != Some("2.0")
        {
            return Err(ResponseError::Malformed);
        }
        if original
            .descendants()
            .any(|n| xml::is(&n, NS_ASSERTION, "EncryptedAssertion"))
        {
            return Err(ResponseError::EncryptedAssertion);
        }
        check_algorithms(&original)?;
        let reduced = crypto::verify_and_reduce(&text, &idp.signing_certificates)
            .ok_or(ResponseError::InvalidSignature)?;
        xml::refuse_doctype(&reduced)?;
        let signed = xml::parse(&reduced).ok_or(ResponseError::InvalidSignature)?;
        let signed_root = signed.root_element();
        // Read only what the signatures cover: the signed Response (and the one assertion in
        // it), or else the signed Assertion alone.
        let response = if xml::is(&signed_root, NS_PROTOCOL, "Response") {
            signed_root
        } else if xml::is(&signed_root, NS_ASSERTION, "Assertion") {
            envelope
        } else {
            return Err(ResponseError::NoSignedAssertion);
        };
        self.check_response(idp, &response, expected_request_id)?;
        let assertion = if xml::is(&signed_root, NS_PROTOCOL, "Response") {
            xml::only_child(signed_root, NS_ASSERTION, "Assertion")
                .ok_or(ResponseError::NoSignedAssertion)?
        } else {
            signed_root
        };
        let verified = self.check_assertion(idp, &assertion, expected_request_id, now)?;
        let key = format!("saml:assertion:{}:{}", idp.entity_id, verified.assertion_id);
        let keep_until = verified.not_on_or_after + self.skew;
        if !replay
            .first_use(&key, now, keep_until)
            .await
            .map_err(ResponseError::ReplayCache)?
        {
            return Err(ResponseError::Replayed);
        }
        Ok(verified)
    }

    fn check_response(
        &self,
        idp: &IdpConnection,
        response: &roxmltree::Node<'_, '_>,
        expected: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(issuer) = xml::child_text(*response, NS_ASSERTION, "Issuer") {
            if issuer != idp.entity_id {
                return Err(ResponseError::WrongIssuer);
            }
        }
        if response.attribute("Destination") != Some(self.acs_url.as_str()) {
            return Err(ResponseError::WrongDestination);
        }
        let status = xml::only_child(*response, NS_PROTOCOL, "Status")
            .and_then(|s| xml::only_child(s, NS_PROTOCOL, "StatusCode"))
            .and_then(|c| c.attribute("Value"))
            .ok_or(ResponseError::Malformed)?;
        if status != xml::STATUS_SUCCESS {
            return Err(ResponseError::Status(status.to_owned()));
        }
        match (expected, response.attribute("InResponseTo")) {
            (Some(expected), Some(got)) if expected == got => Ok(()),
            (Some(_), None) => Ok(()), // the signed SubjectConfirmationData is checked below
            (Some(_), Some(_)) => Err(ResponseError::WrongInResponseTo),
            (None, None) if idp.allow_unsolicited => Ok(()),
            (None, None) => Err(ResponseError::UnsolicitedNotAllowed),
            (None, Some(_)) => Err(ResponseError::WrongInResponseTo),
        }
    }

    fn check_assertion(
        &self,
        idp: &IdpConnection,
        assertion: &roxmltree::Node<'_, '_>,
        expected: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedAssertion, ResponseError> {
        let a = *assertion;
        if xml::child_text(a, NS_ASSERTION, "Issuer").as_deref() != Some(idp.entity_id.as_str()) {
            return Err(ResponseError::WrongIssuer);
        }
        let assertion_id = a
            .attribute("ID")
            .filter(|id| !id.is_empty())
            .ok_or(ResponseError::Malformed)?
            .to_owned();
        let subject =
            xml::only_child(a, NS_ASSERTION, "Subject").ok_or(ResponseError::Malformed)?;
        let name_id_node =
            xml::only_child(subject, NS_ASSERTION, "NameID").ok_or(ResponseError::Malformed)?;
        let name_id = xml::text_content(name_id_node).trim().to_owned();
        if name_id.is_empty() {
            return Err(ResponseError::Malformed);
        }

        // Bearer confirmation: our ACS, the expected request, not expired.
        let mut recipient_ok = false;
        let mut confirmation_until = None;
        for confirmation in xml::children(subject, NS_ASSERTION, "SubjectConfirmation") {
            if confirmation.attribute("Method") != Some(xml::CM_BEARER) {
                continue;
            }
            let Some(data) = xml::only_child(confirmation, NS_ASSERTION, "SubjectConfirmationData")
            else {
                continue;
            };
            if data.attribute("Recipient") != Some(self.acs_url.as_str()) {
                continue;
            }
            recipient_ok = true;
            if data.attribute("InResponseTo") != expected {
                return Err(if expected.is_none() {
                    ResponseError::UnsolicitedNotAllowed
                } else {
                    ResponseError::WrongInResponseTo
                });
            }
            if expected.is_none() && !idp.allow_unsolicited {
                return Err(ResponseError::UnsolicitedNotAllowed);
            }
            let until = data
                .attribute("NotOnOrAfter")
                .and_then(xml::parse_instant)
                .ok_or(ResponseError::Malformed)?;
            if now >= until + self.skew {
                return Err(ResponseError::Expired);
            }
            if let Some(nb) = data.attribute("NotBefore").and_then(xml::parse_instant) {
                if now + self.skew < nb {
                    return Err(ResponseError::NotYetValid);
                }
            }
            confirmation_until = Some(until);
            break;
        }
        if !recipient_ok {
            return Err(ResponseError::WrongRecipient);
        }

        let conditions =
            xml::only_child(a, NS_ASSERTION, "Conditions").ok_or(ResponseError::WrongAudience)?;
        if let Some(nb) = conditions.attribute("NotBefore") {
            let nb = xml::parse_instant(nb).ok_or(ResponseError::Malformed)?;
            if now + self.skew < nb {
                return Err(ResponseError::NotYetValid);
            }
        }
        let mut until = confirmation_until.unwrap_or(now);
        if let Some(noa) = conditions.attribute("NotOnOrAfter") {
            let noa = xml::parse_instant(noa).ok_or(ResponseError::Malformed)?;
            if now >= noa + self.skew {
                return Err(ResponseError::Expired);
            }
            until = until.max(noa);
        }
        let restrictions: Vec<_> =
            xml::children(conditions, NS_ASSERTION, "AudienceRestriction").collect();
        if restrictions.is_empty()
            || !restrictions.iter().all(|r| {
                xml::children(*r, NS_ASSERTION, "Audience")
                    .any(|aud| xml::text_content(aud).trim() == self.entity_id)
            })
        {
            return Err(ResponseError::WrongAudience);
        }

        let authn = xml::children(a, NS_ASSERTION, "AuthnStatement").next();
        let session_index = authn
            .and_then(|s| s.attribute("SessionIndex"))
            .map(str::to_owned);
        let session_not_on_or_after = authn
            .and_then(|s| s.attribute("SessionNotOnOrAfter"))
            .and_then(xml::parse_instant);
        if session_not_on_or_after.is_some_and(|end| now >= end + self.skew) {
            return Err(ResponseError::Expired);
        }
        let authn_context = authn
            .and_then(|s| xml::only_child(s, NS_ASSERTION, "AuthnContext"))
            .and_then(|c| xml::child_text(c, NS_ASSERTION, "AuthnContextClassRef"));

        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for statement in xml::children(a, NS_ASSERTION, "AttributeStatement") {
            for attribute in xml::children(statement, NS_ASSERTION, "Attribute") {
                let Some(name) = attribute.attribute("Name") else {
                    continue;
                };
                let read: Vec<String> = xml::children(attribute, NS_ASSERTION, "AttributeValue")
                    .map(|value| xml::text_content(value).trim().to_owned())
                    .collect();
                // Also under its FriendlyName (`mail` for `urn:oid:0.9.2342.19200300.100.1.3`),
                // so that role mappings can use the readable name.
                if let Some(friendly) = attribute
                    .attribute("FriendlyName")
                    .filter(|f| !f.is_empty() && *f != name)
                {
                    attributes
                        .entry(friendly.to_owned())
                        .or_default()
                        .extend(read.iter().cloned());
                }
                attributes.entry(name.to_owned()).or_default().extend(read);
            }
        }
        Ok(VerifiedAssertion {
            issuer: idp.entity_id.clone(),
            assertion_id,
            name_id,
            name_id_format: name_id_node.attribute("Format").map(str::to_owned),
            session_index,
            session_not_on_or_after,
            authn_context,
            not_on_or_after: until,
            attributes,
            organization_id: idp.organization_id,
        })
    }
}
