//! The SmartPlan server's integration tests: router tests with `tower::ServiceExt::oneshot`
//! on `smartplan::app(state)`, one module per area. `support` builds the state and carries
//! cookies and CSRF tokens between requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed expectation is a failed test"
)]

mod support;

mod account;
mod api;
mod asvs;
mod backoffice;
mod browser;
mod cli;
mod devmail;
mod faults;
mod federation;
mod federation_saml;
mod import;
mod invitations;
mod isolation;
mod mail;
mod ops;
mod orgadmin;
mod postgres;
mod registration;
mod saml;
mod signin;
mod skeleton;
mod tenancy;
