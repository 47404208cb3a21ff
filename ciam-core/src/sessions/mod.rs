//! Sessions: a random bearer id (256 bits) stored hashed, with idle and absolute expiry, revoked
//! when the identity is disabled, removed, or loses access.

mod workflow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{IdentityId, SessionId};
use crate::secrets::TokenHash;

pub(crate) use workflow::revoke_sessions_of;
pub use workflow::{SessionError, SessionPolicy, Sessions, StartedSession, ValidSession};

/// How the person proved who they are (RFC 8176 `amr` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// Password.
    Pwd,
    /// One-time code by SMS.
    Sms,
    /// Time-based one-time password.
    Otp,
    /// Federated login at an external identity provider.
    Fed,
    /// A single-use emailed link (invitation acceptance).
    Email,
    /// Multiple factors at an external identity provider whose MFA the connection trusts.
    Mfa,
}

/// Why a session ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// The person signed out.
    SignedOut,
    /// The person signed out their other sessions.
    SignedOutElsewhere,
    /// The identity was disabled.
    IdentityDisabled,
    /// The person was removed from an organization.
    MembershipRemoved,
    /// A contract ended or was suspended, taking access away.
    AccessEnded,
    /// The password or email changed.
    CredentialsChanged,
}

/// A session of a signed-in person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Identifier.
    pub id: SessionId,
    /// Version as stored.
    pub version: u64,
    /// Hash of the bearer token held by the browser.
    pub token_hash: TokenHash,
    /// Whose session.
    pub identity: IdentityId,
    /// Methods used to sign in.
    pub methods: Vec<AuthMethod>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_seen_at: DateTime<Utc>,
    /// Ends when idle until then.
    pub idle_expires_at: DateTime<Utc>,
    /// Ends at the latest then.
    pub absolute_expires_at: DateTime<Utc>,
    /// Set when ended early.
    pub revoked: Option<(DateTime<Utc>, RevocationReason)>,
}

impl Session {
    /// Whether the session is usable at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }

    /// Assurance level: 2 with a second factor (ours, or a trusted identity provider's
    /// multi-factor authentication), 1 otherwise (a federated login alone is one factor).
    pub fn level(&self) -> u8 {
        let second = self
            .methods
            .iter()
            .any(|m| matches!(m, AuthMethod::Sms | AuthMethod::Otp | AuthMethod::Mfa));
        if second { 2 } else { 1 }
    }
}
