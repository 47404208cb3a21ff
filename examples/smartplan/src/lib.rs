//! SmartPlan: the reference server of ciam-rs.
//!
//! The library holds everything; `main.rs` only parses the command line and calls
//! [`cli::run`]. [`app::app`] builds the whole HTTP application from an [`state::AppState`],
//! which is also how the tests drive it (`tower::ServiceExt::oneshot`).
#![doc = include_str!("../README.md")]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod keys;
pub mod mail;
pub mod ops;
pub mod outgoing;
pub mod state;
pub mod story;
pub mod web;
pub mod webhooks;

// Page modules (one per area of the site).
pub mod account;
pub mod backoffice;
pub mod devmail;
pub mod invitations;
pub mod orgadmin;
pub mod registration;
pub mod saml;
pub mod signin;

pub use app::app;
pub use config::Config;
pub use state::AppState;
