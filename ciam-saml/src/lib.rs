#![doc = include_str!("../README.md")]

mod crypto;
pub mod idp;
mod metadata;
pub mod sp;
#[cfg(feature = "test-support")]
pub mod testing;
mod xml;

pub use crate::crypto::{Certificate, KeyError, SigningKey};
pub use crate::metadata::{Endpoint, MetadataError};

/// SAML 2.0 protocol bindings supported for messages between the IdP and SPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect`.
    HttpRedirect,
    /// `urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST`.
    HttpPost,
}

impl Binding {
    /// The binding's URN.
    pub fn urn(self) -> &'static str {
        match self {
            Self::HttpRedirect => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect",
            Self::HttpPost => "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        }
    }

    /// The binding for a URN, if supported.
    pub fn from_urn(urn: &str) -> Option<Self> {
        [Self::HttpRedirect, Self::HttpPost]
            .into_iter()
            .find(|binding| binding.urn() == urn)
    }
}

/// NameID formats this crate issues or accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameIdFormat {
    /// `persistent`: issued by the IdP as a pairwise pseudonym per SP.
    Persistent,
    /// `emailAddress`.
    EmailAddress,
    /// `transient` (accepted from customers' IdPs; never issued).
    Transient,
    /// `unspecified` (a request with it gets the SP's default format).
    Unspecified,
}

impl NameIdFormat {
    /// The format's URN.
    pub fn urn(self) -> &'static str {
        match self {
            Self::Persistent => "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            Self::EmailAddress => "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            Self::Transient => "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
            Self::Unspecified => "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        }
    }

    /// The format for a URN, if known.
    pub fn from_urn(urn: &str) -> Option<Self> {
        [
            Self::Persistent,
            Self::EmailAddress,
            Self::Transient,
            Self::Unspecified,
        ]
        .into_iter()
        .find(|format| format.urn() == urn)
    }
}

/// The attribute names the IdP issues (NameFormat `basic`), and that the SP reads by default.
pub mod attributes {
    /// The email address.
    pub const EMAIL: &str = "email";
    /// The given name.
    pub const GIVEN_NAME: &str = "given_name";
    /// The family name.
    pub const FAMILY_NAME: &str = "family_name";
    /// The organization's id.
    pub const ORGANIZATION_ID: &str = "organization_id";
    /// The organization's name.
    pub const ORGANIZATION_NAME: &str = "organization_name";
    /// The application roles (one value per role).
    pub const ROLES: &str = "roles";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_round_trip() {
        for binding in [Binding::HttpRedirect, Binding::HttpPost] {
            assert_eq!(Binding::from_urn(binding.urn()), Some(binding));
        }
        assert_eq!(Binding::from_urn("urn:example"), None);
        for format in [
            NameIdFormat::Persistent,
            NameIdFormat::EmailAddress,
            NameIdFormat::Transient,
            NameIdFormat::Unspecified,
        ] {
            assert_eq!(NameIdFormat::from_urn(format.urn()), Some(format));
        }
    }
}
