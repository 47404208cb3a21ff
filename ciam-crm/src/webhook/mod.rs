//! Webhooks per the Standard Webhooks specification: signing and verifying (always
//! available) and the reqwest-based [`WebhookConnector`] (feature `webhooks`).

#[cfg(feature = "webhooks")]
mod connector;
mod signing;

#[cfg(feature = "webhooks")]
pub use connector::{
    WebhookConfig, WebhookConnector, WebhookError, is_public_address, parse_retry_after,
};
pub use signing::{
    DEFAULT_TOLERANCE_SECONDS, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SECRET_PREFIX,
    SignatureError, Verifier, WebhookSecret, signature_header,
};
