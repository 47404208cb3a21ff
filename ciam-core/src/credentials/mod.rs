//! Credentials: password hashes (PHC strings), federated links, and the password hasher.

mod passwords;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CredentialId, IdentityId};

pub use passwords::{
    Password, PasswordError, PasswordHashString, PasswordHasher, PasswordParams, PasswordPolicy,
    Verification,
};

/// What a credential is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
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
