//! Credentials: password hashes (PHC strings), federated links, and the password hasher.

pub mod breached;
pub mod common_passwords;
pub mod context_words;
mod passwords;
mod sealing;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ciam::Context;
use crate::identities::{Identity, MembershipStatus};
use crate::ids::{CredentialId, IdentityId};
use crate::store::StoreError;

pub(crate) use sealing::{Purpose, Sealer};
pub use sealing::{SealError, SecretKey};

pub use breached::{BreachError, BreachedPasswords, PwnedPasswordsFile};
pub use context_words::{MIN_CONTEXT_WORD_LEN, PasswordContext};
pub use passwords::{
    BreachCheckFailure, HashingWork, Password, PasswordError, PasswordHashString, PasswordHasher,
    PasswordParams, PasswordPolicy, Verification,
};

/// Every check of a new password, at every place one is set (registration, invitation
/// acceptance, change, reset): length, the common list, the policy's and the person's context
/// words, then the breached-password list when one is configured. When that list cannot be
/// consulted, [`PasswordPolicy::breach_check_failure`] decides (refuse by default).
pub(crate) async fn screen_new_password(
    ctx: &Context,
    password: &Password,
    about: &PasswordContext,
) -> Result<(), PasswordError> {
    ctx.policy.password.check_for(password, about)?;
    let Some(list) = &ctx.breached else {
        return Ok(());
    };
    match list.times_seen(password).await {
        Ok(0) => Ok(()),
        Ok(_) => Err(PasswordError::Breached),
        Err(error) => match ctx.policy.password.breach_check_failure {
            BreachCheckFailure::Refuse => {
                tracing::error!(%error, "breached-password check failed; new password refused");
                Err(PasswordError::BreachCheckUnavailable)
            }
            BreachCheckFailure::Allow => {
                tracing::warn!(%error, "breached-password check failed; new password accepted unchecked");
                Ok(())
            }
        },
    }
}

/// The context words of `identity`: their email address, their name and the names of the
/// organizations they belong to.
pub(crate) async fn context_of(
    ctx: &Context,
    identity: &Identity,
) -> Result<PasswordContext, StoreError> {
    let mut about = PasswordContext::new()
        .email(&identity.email)
        .name(&identity.name);
    for membership in ctx.store.memberships_of_identity(identity.id).await? {
        if membership.status == MembershipStatus::Removed {
            continue;
        }
        if let Some(org) = ctx.store.organization(membership.organization).await? {
            about = about.organization(&org.name);
        }
    }
    Ok(about)
}

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
