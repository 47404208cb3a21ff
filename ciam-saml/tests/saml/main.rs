//! Integration tests for ciam-saml: the IdP, the SP, every rejection, and pysaml2 interop.
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

mod common;
mod idp;
mod interop;
mod registrations;
mod sign_in;
mod sign_on;
mod sp;
mod world;
