//! Secrets: single-use tokens and short codes.
//!
//! A secret is handed to its owner exactly once (in a link or a message) and only its SHA-256
//! hash is stored. Secrets have a redacted `Debug`, no `Display`, and are compared in constant
//! time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::RandomSource;

/// A random bearer token (256 bits), such as an invitation link or a session id.
///
/// Only [`SecretToken::hash`] is ever stored.
#[derive(Clone)]
pub struct SecretToken(String);

impl SecretToken {
    /// Draws a new token of 256 random bits, encoded as URL-safe base64 without padding.
    pub fn generate(random: &dyn RandomSource) -> Self {
        let mut bytes = [0u8; 32];
        random.fill(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a token received from a client (for lookup by its hash).
    pub fn from_presented(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token text, to put in a link or a cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash that is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl PartialEq for SecretToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretToken {}

/// The SHA-256 hash of a [`SecretToken`] or [`OneTimeCode`]: what stores keep.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct TokenHash(#[serde(with = "hex_bytes")] [u8; 32]);

impl TokenHash {
    /// Wraps hash bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as lower-case hex (for stores indexing text columns).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &hex::encode(&self.0[..4]))
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TokenHash {}

impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

/// A short numeric code sent by email or SMS (6 digits).
#[derive(Clone)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// Number of digits in a code.
    pub const DIGITS: usize = 6;

    /// Draws a new uniformly distributed 6-digit code.
    pub fn generate(random: &dyn RandomSource) -> Self {
        Self(format!("{:06}", random.below(1_000_000)))
    }

    /// Wraps a code typed by a user (spaces are ignored).
    pub fn from_presented(code: &str) -> Self {
        Self(code.chars().filter(|c| !c.is_whitespace()).collect())
    }

    /// The code text, to put in a message. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored hash of the code.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OneTimeCode(<redacted>)")
    }
}

/// A pending code challenge stored on the record it verifies (a registration, an email change):
/// the hash of the code, its expiry and the wrong tries so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChallenge {
    /// Hash of the code that was sent.
    pub code_hash: TokenHash,
    /// When the code stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// Wrong codes entered so far.
    pub failed_attempts: u32,
}

/// What checking a code against a [`CodeChallenge`] gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code matched before expiry and within the allowed tries.
    Valid,
    /// The code did not match; the challenge remains with one more failed try.
    Wrong,
    /// The challenge has expired or has used up its tries; a new code is needed.
    Exhausted,
}

impl CodeChallenge {
    /// Wrong codes allowed before the challenge is used up.
    pub const MAX_ATTEMPTS: u32 = 5;

    /// A challenge for `code` valid until `expires_at`.
    pub fn new(code: &OneTimeCode, expires_at: DateTime<Utc>) -> Self {
        Self {
            code_hash: code.hash(),
            expires_at,
            failed_attempts: 0,
        }
    }

    /// Checks `code` at `now`, counting a wrong try on the challenge.
    pub fn check(&mut self, code: &OneTimeCode, now: DateTime<Utc>) -> CodeCheck {
        if now >= self.expires_at || self.failed_attempts >= Self::MAX_ATTEMPTS {
            return CodeCheck::Exhausted;
        }
        if code.hash() == self.code_hash {
            CodeCheck::Valid
        } else {
            self.failed_attempts += 1;
            if self.failed_attempts >= Self::MAX_ATTEMPTS {
                CodeCheck::Exhausted
            } else {
                CodeCheck::Wrong
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;

    #[test]
    fn tokens_have_256_bits_and_redacted_debug() {
        let random = SeededRandom::new(1);
        let token = SecretToken::generate(&random);
        assert_eq!(token.expose().len(), 43);
        assert_eq!(format!("{token:?}"), "SecretToken(<redacted>)");
        assert_ne!(token, SecretToken::generate(&random));
        assert_eq!(
            token.hash(),
            SecretToken::from_presented(token.expose()).hash()
        );
    }

    #[test]
    fn codes_are_six_digits() {
        let random = SeededRandom::new(2);
        for _ in 0..100 {
            let code = OneTimeCode::generate(&random);
            assert_eq!(code.expose().len(), 6);
            assert!(code.expose().chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn challenge_allows_five_tries_then_exhausts() {
        let random = SeededRandom::new(3);
        let code = OneTimeCode::generate(&random);
        let now = chrono::DateTime::UNIX_EPOCH;
        let mut challenge = CodeChallenge::new(&code, now + chrono::Duration::minutes(5));
        let wrong = OneTimeCode::from_presented("not-it");
        for _ in 0..4 {
            assert_eq!(challenge.check(&wrong, now), CodeCheck::Wrong);
        }
        assert_eq!(challenge.check(&wrong, now), CodeCheck::Exhausted);
        assert_eq!(challenge.check(&code, now), CodeCheck::Exhausted);
    }

    #[test]
    fn challenge_expires() {
        let random = SeededRandom::new(4);
        let code = OneTimeCode::generate(&random);
        let now = chrono::DateTime::UNIX_EPOCH;
        let mut challenge = CodeChallenge::new(&code, now + chrono::Duration::minutes(5));
        assert_eq!(challenge.check(&code, now), CodeCheck::Valid);
        assert_eq!(
            challenge.check(&code, now + chrono::Duration::minutes(5)),
            CodeCheck::Exhausted
        );
    }
}
