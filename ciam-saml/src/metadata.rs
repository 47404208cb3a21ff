//! SAML metadata: reading SP and IdP `EntityDescriptor`s and writing the IdP's own.

use crate::crypto::{Certificate, KeyError};
use crate::xml::{self, NS_DSIG, NS_METADATA, NS_PROTOCOL};
use crate::{Binding, NameIdFormat};

/// Why a metadata document was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Not well-formed XML, or larger than the size bound.
    #[error("metadata is not well-formed xml")]
    Malformed,
    /// A document type declaration (refused before parsing).
    #[error("metadata contains a document type declaration")]
    Doctype,
    /// The root is not a single `md:EntityDescriptor` with an `entityID`.
    #[error("metadata has no entity descriptor with an entity id")]
    NoEntity,
    /// No descriptor for the expected role supporting SAML 2.0.
    #[error("metadata has no {0} descriptor for saml 2.0")]
    NoRole(&'static str),
    /// A certificate in `KeyDescriptor` could not be read.
    #[error("metadata certificate is invalid: {0}")]
    Certificate(#[from] KeyError),
    /// An IdP without a signing certificate cannot be trusted for anything.
    #[error("identity provider metadata has no signing certificate")]
    NoSigningCertificate,
    /// An SP without any assertion consumer service on a supported binding.
    #[error("service provider metadata has no assertion consumer service on a supported binding")]
    NoAssertionConsumerService,
    /// An IdP without a single sign-on service on the Redirect binding.
    #[error("identity provider metadata has no http-redirect single sign-on service")]
    NoSingleSignOnService,
    /// An endpoint location that is not an absolute `https` URL (plain `http` is accepted
    /// only for loopback hosts, for development).
    #[error("metadata endpoint {0:?} is not an https url")]
    InvalidEndpoint(String),
    /// The SP says it signs its requests (`AuthnRequestsSigned`) but lists no signing
    /// certificate to verify them with.
    #[error("service provider signs its requests but its metadata has no signing certificate")]
    SignedRequestsWithoutCertificate,
}

/// A protocol endpoint from metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The binding.
    pub binding: Binding,
    /// The URL.
    pub location: String,
    /// The `index` attribute (indexed endpoints only).
    pub index: Option<u16>,
    /// The `isDefault` attribute.
    pub is_default: bool,
}

/// What was read from one role descriptor.
pub(crate) struct RoleDescriptor {
    pub(crate) entity_id: String,
    pub(crate) signing: Vec<Certificate>,
    pub(crate) encryption: Vec<Certificate>,
    pub(crate) name_id_formats: Vec<NameIdFormat>,
    pub(crate) flag_a: bool,
    pub(crate) flag_b: bool,
    pub(crate) endpoints: Vec<(String, Endpoint)>,
}

/// Reads the `role` descriptor (`SPSSODescriptor` or `IDPSSODescriptor`) of an entity.
/// `flag_a`/`flag_b` are `AuthnRequestsSigned`/`WantAssertionsSigned` for an SP and
/// `WantAuthnRequestsSigned`/false for an IdP.
pub(crate) fn read_role(text: &str, role: &'static str) -> Result<RoleDescriptor, MetadataError> {
    if text.len() > xml::MAX_XML_LEN {
        return Err(MetadataError::Malformed);
    }
    xml::refuse_doctype(text).map_err(|_| MetadataError::Doctype)?;
    let doc = xml::parse(text).ok_or(MetadataError::Malformed)?;
    let root = doc.root_element();
    if !xml::is(&root, NS_METADATA, "EntityDescriptor") {
        return Err(MetadataError::NoEntity);
    }
    let entity_id = root
        .attribute("entityID")
        .filter(|e| !e.trim().is_empty())
        .ok_or(MetadataError::NoEntity)?
        .trim()
        .to_owned();
    let descriptor = xml::children(root, NS_METADATA, role)
        .find(|d| {
            d.attribute("protocolSupportEnumeration")
                .is_some_and(|p| p.split_whitespace().any(|p| p == NS_PROTOCOL))
        })
        .ok_or(MetadataError::NoRole(if role == "SPSSODescriptor" {
            "sp sso"
        } else {
            "idp sso"
        }))?;
    let mut signing = Vec::new();
    let mut encryption = Vec::new();
    for key in xml::children(descriptor, NS_METADATA, "KeyDescriptor") {
        let usage = key.attribute("use");
        let certs = key
            .descendants()
            .filter(|n| xml::is(n, NS_DSIG, "X509Certificate"))
            .map(|n| Certificate::from_base64(&xml::text_content(n)))
            .collect::<Result<Vec<_>, _>>()?;
        match usage {
            Some("signing") => signing.extend(certs),
            Some("encryption") => encryption.extend(certs),
            None => {
                signing.extend(certs.iter().cloned());
                encryption.extend(certs);
            }
            Some(_) => {}
        }
    }
    let name_id_formats = xml::children(descriptor, NS_METADATA, "NameIDFormat")
        .filter_map(|n| NameIdFormat::from_urn(xml::text_content(n).trim()))
        .collect();
    let flag = |name: &str| {
        descriptor
            .attribute(name)
            .is_some_and(|v| v == "true" || v == "1")
    };
    let (flag_a, flag_b) = if role == "SPSSODescriptor" {
        (flag("AuthnRequestsSigned"), flag("WantAssertionsSigned"))
    } else {
        (flag("WantAuthnRequestsSigned"), false)
    };
    let endpoints = descriptor
        .children()
        .filter(|n| n.is_element() && n.tag_name().namespace() == Some(NS_METADATA))
        .filter_map(|n| {
            let binding = Binding::from_urn(n.attribute("Binding")?)?;
            let location = n.attribute("Location")?.trim().to_owned();
            Some(check_location(&location).map(|()| {
                (
                    n.tag_name().name().to_owned(),
                    Endpoint {
                        binding,
                        location,
                        index: n.attribute("index").and_then(|i| i.parse().ok()),
                        is_default: n
                            .attribute("isDefault")
                            .is_some_and(|v| v == "true" || v == "1"),
                    },
                )
            }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RoleDescriptor {
        entity_id,
        signing,
        encryption,
        name_id_formats,
        flag_a,
        flag_b,
        endpoints,
    })
}

/// Accepts an absolute `https` URL, or `http` to a loopback host (development).
fn check_location(location: &str) -> Result<(), MetadataError> {
    let invalid = || MetadataError::InvalidEndpoint(location.chars().take(200).collect());
    let url = url::Url::parse(location).map_err(|_| invalid())?;
    let loopback = match url.host() {
        Some(url::Host::Domain(host)) => host == "localhost" || host.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(invalid()),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid()),
    }
}

/// A `KeyDescriptor use="signing"` element.
pub(crate) fn key_descriptor(cert: &Certificate) -> String {
    format!(
        "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo xmlns:ds=\"{NS_DSIG}\"><ds:X509Data>\
         <ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>",
        cert.to_base64()
    )
}
