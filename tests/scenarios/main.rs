//! The SmartPlan story and every workflow's failure paths, on `MemoryStore` with a fixed clock.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support code: a failed step is a failed test"
)]

mod support;

mod catalog_cache;
mod city_group;
mod concurrency;
mod contracts;
mod federation;
mod federation_oidc;
mod imports;
mod invitations;
mod join_requests;
mod koko_media;
mod leads;
mod login;
mod login_mfa;
mod login_passwords;
mod members;
mod profile;
mod world_properties;
