//! Standard Webhooks signatures: `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! (`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`), for senders and
//! receivers.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use ciam_core::RandomSource;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// The header carrying the message id.
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the send time (Unix seconds).
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signatures (space separated).
pub const HEADER_SIGNATURE: &str = "webhook-signature";
/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a timestamp may be from now (5 minutes).
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// Errors of secrets and signature checks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The secret is not `whsec_` and base64 of 24 to 64 bytes.
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(&'static str),
    /// A header is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The timestamp is not a number of seconds.
    #[error("invalid webhook-timestamp")]
    InvalidTimestamp,
    /// The timestamp is too far from now (replay or clock skew).
    #[error("webhook-timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
    /// No `v1` signature matches any secret.
    #[error("no matching signature")]
    NoMatchingSignature,
    /// No secret to verify with.
    #[error("no webhook secret configured")]
    NoSecret,
}

/// A webhook signing secret: 24 to 64 random bytes, written `whsec_` + base64.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_...` (the prefix may be left out).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let text = text.trim();
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SignatureError::InvalidSecret("not base64"))?;
        Self::from_bytes(key)
    }

    /// A secret from raw key bytes (24 to 64).
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, SignatureError> {
        if !(24..=64).contains(&key.len()) {
            return Err(SignatureError::InvalidSecret("must be 24 to 64 bytes"));
        }
        Ok(Self { key })
    }

    /// A new random secret of 32 bytes.
    pub fn generate(random: &dyn RandomSource) -> Self {
        let mut key = vec![0u8; 32];
        random.fill(&mut key);
        Self { key }
    }

    /// The text form, `whsec_` + base64 (a secret: do not log it).
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .map_err(|_| SignatureError::InvalidSecret("unusable key"))?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// The `v1,<base64>` signature of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
        Ok(format!(
            "v1,{}",
            STANDARD.encode(self.mac(id, timestamp, body)?)
        ))
    }
}

/// The `webhook-signature` value for several secrets (during a rotation): their signatures,
/// space separated.
pub fn signature_header(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let signatures = secrets
        .iter()
        .map(|secret| secret.sign(id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Checks signed webhooks on the receiving side: any `v1` signature matching any of the
/// secrets (constant-time comparison), and a timestamp within the tolerance of now.
#[derive(Clone, Debug)]
pub struct Verifier {
    secrets: Vec<WebhookSecret>,
    tolerance: Duration,
}

impl Verifier {
    /// A verifier accepting signatures by any of `secrets` (5 minutes tolerance).
    pub fn new(secrets: Vec<WebhookSecret>) -> Self {
        Self {
            secrets,
            tolerance: Duration::seconds(DEFAULT_TOLERANCE_SECONDS),
        }
    }

    /// A verifier from `whsec_` texts.
    pub fn from_texts<S: AsRef<str>>(secrets: &[S]) -> Result<Self, SignatureError> {
        let secrets = secrets
            .iter()
            .map(|text| WebhookSecret::parse(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(secrets))
    }

    /// Changes the timestamp tolerance.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Verifies one message from its three header values and raw body, at `now`.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        if self.secrets.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::InvalidTimestamp)?;
        let sent =
            DateTime::<Utc>::from_timestamp(seconds, 0).ok_or(SignatureError::InvalidTimestamp)?;
        if (now - sent).abs() > self.tolerance {
            return Err(SignatureError::TimestampOutOfTolerance);
        }
        let expected = self
            .secrets
            .iter()
            .map(|secret| secret.mac(id, seconds, body))
            .collect::<Result<Vec<_>, _>>()?;
        let mut matched = false;
        for candidate in signatures.split_whitespace() {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(given) = STANDARD.decode(encoded) else {
                continue;
            };
            for mac in &expected {
                // Constant time; keep looping so timing does not tell which one matched.
                matched |= bool::from(mac.as_slice().ct_eq(given.as_slice()));
            }
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::NoMatchingSignature)
        }
    }

    /// Verifies a message from its HTTP headers and raw body, at `now`.
    pub fn verify_headers(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .ok_or(SignatureError::MissingHeader(name))
        };
        self.verify(
            header(HEADER_ID)?,
            header(HEADER_TIMESTAMP)?,
            header(HEADER_SIGNATURE)?,
            body,
            now,
        )
    }
}
