//! Integration tests for ciam-saml: the IdP, the SP, every rejection, and pysaml2 interop.

mod common;
mod idp;
mod interop;
mod sp;
