#![doc = include_str!("../README.md")]

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_round_trip() {
        for binding in [Binding::HttpRedirect, Binding::HttpPost] {
            assert_eq!(Binding::from_urn(binding.urn()), Some(binding));
        }
        assert_eq!(Binding::from_urn("urn:example"), None);
    }
}
