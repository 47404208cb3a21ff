//! Keys and certificates: the SAML IdP signing key (RSA 2048 with a self-signed certificate,
//! created on first run in demo mode, read from files configured for `serve`) and the server
//! secret file of the demo.

use std::path::Path;

use ciam_core::clock::RandomSource;
use ciam_saml::SigningKey;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

/// Why a key could not be created or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Generating a key failed.
    #[error("cannot generate a key: {0}")]
    Generate(String),
    /// The key or certificate is not usable.
    #[error("key file {path} is not usable: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// A PEM private key and its PEM self-signed certificate.
#[derive(Clone)]
pub struct GeneratedKey {
    /// PKCS#8 PEM private key.
    pub private_key_pem: String,
    /// PEM certificate.
    pub certificate_pem: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey").finish_non_exhaustive()
    }
}

/// Creates an RSA 2048 key with a self-signed certificate for `common_name`, valid for ten
/// years (SAML metadata pins the certificate; its dates are not checked by SPs that pin).
pub fn generate_signing_key(
    common_name: &str,
    random: &dyn RandomSource,
) -> Result<GeneratedKey, KeyFileError> {
    let fail = |error: openssl::error::ErrorStack| KeyFileError::Generate(error.to_string());
    let rsa = Rsa::generate(2048).map_err(fail)?;
    let key = PKey::from_rsa(rsa).map_err(fail)?;
    let mut name = X509NameBuilder::new().map_err(fail)?;
    name.append_entry_by_text("CN", common_name).map_err(fail)?;
    name.append_entry_by_text("O", "SmartPlan").map_err(fail)?;
    let name = name.build();
    let mut builder = X509::builder().map_err(fail)?;
    builder.set_version(2).map_err(fail)?;
    let mut serial = [0u8; 16];
    random.fill(&mut serial);
    serial[0] &= 0x7f;
    let serial = BigNum::from_slice(&serial).map_err(fail)?;
    let serial = Asn1Integer::from_bn(&serial).map_err(fail)?;
    builder.set_serial_number(&serial).map_err(fail)?;
    builder.set_subject_name(&name).map_err(fail)?;
    builder.set_issuer_name(&name).map_err(fail)?;
    builder.set_pubkey(&key).map_err(fail)?;
    let not_before = Asn1Time::days_from_now(0).map_err(fail)?;
    let not_after = Asn1Time::days_from_now(3650).map_err(fail)?;
    builder.set_not_before(&not_before).map_err(fail)?;
    builder.set_not_after(&not_after).map_err(fail)?;
    builder.sign(&key, MessageDigest::sha256()).map_err(fail)?;
    let certificate = builder.build();
    let private_key_pem = String::from_utf8(key.private_key_to_pem_pkcs8().map_err(fail)?)
        .map_err(|e| KeyFileError::Generate(e.to_string()))?;
    let certificate_pem = String::from_utf8(certificate.to_pem().map_err(fail)?)
        .map_err(|e| KeyFileError::Generate(e.to_string()))?;
    Ok(GeneratedKey {
        private_key_pem,
        certificate_pem,
    })
}

impl GeneratedKey {
    /// The ciam-saml signing key.
    pub fn signing_key(&self) -> Result<SigningKey, KeyFileError> {
        SigningKey::from_pem(&self.private_key_pem, &self.certificate_pem).map_err(|error| {
            KeyFileError::Invalid {
                path: "(generated)".to_owned(),
                reason: error.to_string(),
            }
        })
    }
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text).map_err(io)
    }
}

/// Reads the signing key from `key_path` and `certificate_path`.
pub fn read_signing_key(
    key_path: &Path,
    certificate_path: &Path,
) -> Result<SigningKey, KeyFileError> {
    let key = read(key_path)?;
    let certificate = read(certificate_path)?;
    SigningKey::from_pem(&key, &certificate).map_err(|error| KeyFileError::Invalid {
        path: key_path.display().to_string(),
        reason: error.to_string(),
    })
}

/// Reads the signing key from the two files, creating both first when neither exists.
pub fn ensure_signing_key(
    key_path: &Path,
    certificate_path: &Path,
    common_name: &str,
    random: &dyn RandomSource,
) -> Result<SigningKey, KeyFileError> {
    if !key_path.exists() && !certificate_path.exists() {
        let generated = generate_signing_key(common_name, random)?;
        write_private(key_path, &generated.private_key_pem)?;
        std::fs::write(certificate_path, &generated.certificate_pem).map_err(|source| {
            KeyFileError::Io {
                path: certificate_path.display().to_string(),
                source,
            }
        })?;
    }
    read_signing_key(key_path, certificate_path)
}

/// Reads a 64-hex-character secret from `path`, creating it first when missing.
pub fn ensure_secret_file(path: &Path, random: &dyn RandomSource) -> Result<String, KeyFileError> {
    if !path.exists() {
        let mut bytes = [0u8; 32];
        random.fill(&mut bytes);
        write_private(path, &format!("{}\n", hex::encode(bytes)))?;
    }
    let text = read(path)?;
    let text = text.trim().to_owned();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyFileError::Invalid {
            path: path.display().to_string(),
            reason: "expected 64 hexadecimal characters".to_owned(),
        });
    }
    Ok(text)
}
