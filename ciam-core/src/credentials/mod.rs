//! Credentials: password hashes (PHC strings), federated links, and the password hasher.

pub mod common_passwords;
mod passwords;
mod sealing;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CredentialId, IdentityId};

pub(crate) use sealing::{Purpose, Sealer};
pub use sealing::{SealError, SecretKey};

pub use passwords::{
    Password, PasswordError, PasswordHashString, PasswordHasher, PasswordParams, PasswordPolicy,
    Verification,
};

/// What a credential is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum CredentialKind {
    /// A password, stored as a PHC string (argon2id by default).
    Password {
        /// The PHC string.
        hash: PasswordHashString,
    },
    /// A link to an external identity provider account, keyed by (provider, subject); never by
    /// email alone.
    FederatedLink {
        /// The provider (issuer or entity id).
        provider: String,
        /// The subject at that provider.
        subject: String,
    },
    /// An authenticator app (TOTP): the secret sealed with the configured key.
    Totp {
        /// The secret, sealed (XChaCha20-Poly1305); never stored in clear.
        sealed_secret: String,
        /// When the person confirmed it with a first code (none while being set up).
        confirmed_at: Option<DateTime<Utc>>,
    },
    /// Recovery codes: SHA-256 hashes of the unused ones.
    RecoveryCodes {
        /// Hashes of the codes not used yet.
        hashes: Vec<crate::secrets::TokenHash>,
    },
}

/// A credential of an identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Identifier.
    pub id: CredentialId,
    /// Version as stored.
    pub version: u64,
    /// Whose credential.
    pub identity: IdentityId,
    /// What it is.
    pub kind: CredentialKind,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}
