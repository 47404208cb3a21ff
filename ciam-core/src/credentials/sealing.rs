//! The configured secret key, and sealing with it: XChaCha20-Poly1305 (AEAD) under keys derived
//! per purpose with HKDF-SHA256, so that a token sealed for one purpose never opens as another.
//!
//! Used for TOTP secrets and OIDC client secrets at rest, login-attempt tokens and
//! password-reset links.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

use crate::clock::RandomSource;

/// A 256-bit secret key from configuration. Redacted `Debug`, no `Display`.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A key from 32 bytes (from a secret store or a key file).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from 64 hexadecimal characters (for configuration files and environment variables).
    pub fn from_hex(text: &str) -> Result<Self, SealError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self(bytes))
    }

    /// A fresh random key.
    pub fn generate(random: &dyn RandomSource) -> Self {
        let mut bytes = [0u8; 32];
        random.fill(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Errors of sealing and opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key is not 64 hexadecimal characters.
    #[error("the secret key must be 64 hexadecimal characters")]
    BadKey,
    /// The sealed text was altered, sealed with another key or for another purpose.
    #[error("the sealed value is invalid")]
    Invalid,
}

/// What a sealed value is for; each purpose has its own derived key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// TOTP secrets at rest.
    TotpSecret,
    /// Login-attempt tokens.
    Attempt,
    /// Password-reset links.
    Reset,
    /// MACs of SMS codes inside attempt tokens.
    CodeMac,
    /// OIDC client secrets at rest.
    ClientSecret,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::TotpSecret => b"ciam-rs v1 totp secret",
            Self::Attempt => b"ciam-rs v1 login attempt",
            Self::Reset => b"ciam-rs v1 password reset",
            Self::CodeMac => b"ciam-rs v1 code mac",
            Self::ClientSecret => b"ciam-rs v1 oidc client secret",
        }
    }
}

/// Keys derived from the [`SecretKey`], one per purpose.
#[derive(Clone)]
pub(crate) struct Sealer {
    master: SecretKey,
    /// Whether the key came from configuration (false: generated at start, lost on restart).
    pub(crate) configured: bool,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("configured", &self.configured)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(master: SecretKey, configured: bool) -> Self {
        Self { master, configured }
    }

    fn derive(&self, purpose: Purpose) -> [u8; 32] {
        let hkdf = Hkdf::<Sha256>::new(Some(b"ciam-rs"), &self.master.0);
        let mut out = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        if hkdf.expand(purpose.label(), &mut out).is_err() {
            out = [0u8; 32];
        }
        out
    }

    /// Encrypts `plain` for `purpose`: base64url(nonce || ciphertext).
    pub(crate) fn seal_bytes(
        &self,
        purpose: Purpose,
        plain: &[u8],
        random: &dyn RandomSource,
    ) -> Result<String, SealError> {
        let cipher = XChaCha20Poly1305::new(&self.derive(purpose).into());
        let mut nonce = [0u8; 24];
        random.fill(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: purpose.label(),
                },
            )
            .map_err(|_| SealError::Invalid)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts what [`Sealer::seal_bytes`] made for the same purpose.
    pub(crate) fn open_bytes(&self, purpose: Purpose, sealed: &str) -> Result<Vec<u8>, SealError> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.trim())
            .map_err(|_| SealError::Invalid)?;
        if raw.len() < 24 + 16 {
            return Err(SealError::Invalid);
        }
        let (nonce, body) = raw.split_at(24);
        let cipher = XChaCha20Poly1305::new(&self.derive(purpose).into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: purpose.label(),
                },
            )
            .map_err(|_| SealError::Invalid)
    }

    /// Seals a serializable value.
    pub(crate) fn seal<T: Serialize>(
        &self,
        purpose: Purpose,
        value: &T,
        random: &dyn RandomSource,
    ) -> Result<String, SealError> {
        let plain = serde_json::to_vec(value).map_err(|_| SealError::Invalid)?;
        self.seal_bytes(purpose, &plain, random)
    }

    /// Opens a sealed value.
    pub(crate) fn open<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        sealed: &str,
    ) -> Result<T, SealError> {
        let plain = self.open_bytes(purpose, sealed)?;
        serde_json::from_slice(&plain).map_err(|_| SealError::Invalid)
    }

    /// HMAC-SHA256 of `parts` under the purpose's key (hex).
    pub(crate) fn mac(&self, purpose: Purpose, parts: &[&[u8]]) -> String {
        let key = self.derive(purpose);
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;

    #[test]
    fn seals_per_purpose_and_detects_tampering() {
        let random = SeededRandom::new(9);
        let sealer = Sealer::new(SecretKey::generate(&random), true);
        let sealed = sealer
            .seal_bytes(Purpose::Attempt, b"hello", &random)
            .unwrap();
        assert_eq!(
            sealer.open_bytes(Purpose::Attempt, &sealed).unwrap(),
            b"hello"
        );
        // Another purpose's key does not open it.
        assert_eq!(
            sealer.open_bytes(Purpose::Reset, &sealed),
            Err(SealError::Invalid)
        );
        // Another master key does not open it.
        let other = Sealer::new(SecretKey::generate(&random), true);
        assert_eq!(
            other.open_bytes(Purpose::Attempt, &sealed),
            Err(SealError::Invalid)
        );
        // A flipped character is refused.
        let mut chars: Vec<char> = sealed.chars().collect();
        let last = chars.len() - 5;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let tampered: String = chars.into_iter().collect();
        assert_eq!(
            sealer.open_bytes(Purpose::Attempt, &tampered),
            Err(SealError::Invalid)
        );
        assert_eq!(
            format!("{:?}", SecretKey::generate(&random)),
            "SecretKey(<redacted>)"
        );
        assert!(SecretKey::from_hex("zz").is_err());
        assert!(SecretKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}
