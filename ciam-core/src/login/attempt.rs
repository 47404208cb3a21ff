//! The state of one login attempt, carried by the browser in a sealed (AEAD) token.
//!
//! The token is opaque to its holder: encrypted and authenticated with a key derived from the
//! configured secret key, so it cannot be read or forged. What must not be replayed is kept in
//! the store's atomic counters and single-use keys, named after the attempt id: wrong tries,
//! codes sent, and completion (an attempt yields at most one session).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::PhoneNumber;
use crate::credentials::Purpose;
use crate::ids::{IdentityId, OrganizationId, SessionId};
use crate::sessions::AuthMethod;

/// The sealed token of a login attempt, handed to the browser (a hidden form field) and back.
/// Redacted `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AttemptToken(String);

impl AttemptToken {
    /// Wraps a token received from the browser.
    pub fn from_presented(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token text, to put in a page. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AttemptToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttemptToken(<redacted>)")
    }
}

/// What the second factor is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "goal")]
pub(crate) enum Goal {
    /// Signing in.
    SignIn,
    /// Resetting the password from an emailed link.
    Reset {
        /// The reset link's id.
        reset_id: String,
    },
    /// Stepping up an existing session (it is replaced by a new one).
    StepUp {
        /// The session to replace.
        session: SessionId,
    },
}

/// An SMS code sent in this attempt: a MAC of the code (never the code), which send it was,
/// and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SmsChallenge {
    pub(crate) mac: String,
    pub(crate) send: u32,
    pub(crate) expires_at: DateTime<Utc>,
}

/// A phone being set up as the second factor inside an attempt: the number (verified only
/// when the code sent to it comes back) and the code's challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PhoneChallenge {
    pub(crate) phone: PhoneNumber,
    pub(crate) sms: SmsChallenge,
}

/// Where the attempt stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "stage")]
pub(crate) enum Stage {
    /// Identifier given; the password is next.
    Password { email: String },
    /// The identity provider is next: the email's organization has one (home realm
    /// discovery), the person chose it ("Sign in with Google"), or accepts an invitation with it.
    Federated {
        /// The email as typed, when the attempt started from one.
        email: Option<String>,
        /// The organization whose connection this is (none for a social provider).
        organization: Option<OrganizationId>,
        /// The connection's key (OIDC issuer or SAML entity id).
        provider: String,
        /// Why the person goes there.
        purpose: FederatedPurpose,
        /// The OIDC authorization request in flight (state, nonce, PKCE verifier).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oidc: Option<OidcRequest>,
    },
    /// The provider's verified email matches an existing account: its password links them.
    LinkAccount {
        /// The existing account.
        identity: IdentityId,
        /// Its email (the throttle key).
        email: String,
        /// The external identity to link.
        link: PendingLink,
    },
    /// First factor proven; a second factor is next.
    SecondFactor {
        identity: IdentityId,
        methods: Vec<AuthMethod>,
        goal: Goal,
        sms: Option<SmsChallenge>,
    },
    /// First factor proven; a second factor is required and the person has none: they set up
    /// an authenticator app, or verify a phone, before the attempt completes.
    EnrolSecondFactor {
        identity: IdentityId,
        methods: Vec<AuthMethod>,
        goal: Goal,
        /// The phone being verified and the code sent to it, once one was asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<PhoneChallenge>,
    },
    /// [`Stage::EnrolSecondFactor`] once the authenticator app's page was opened: the same,
    /// with the app's new secret (sealed), kept here and not in the store until its first code
    /// comes back.
    EnrolApp {
        identity: IdentityId,
        methods: Vec<AuthMethod>,
        goal: Goal,
        /// The phone being verified and the code sent to it, once one was asked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone: Option<PhoneChallenge>,
        /// The app's secret, sealed with the TOTP-secret key.
        totp: String,
    },
    /// Reset link (and second factor, when needed) proven; a new password is next.
    NewPassword {
        identity: IdentityId,
        reset_id: String,
    },
}

impl Stage {
    /// At the enrolment step (with or without the app's page opened): who, the methods so
    /// far, the goal, and the phone being set up.
    pub(crate) fn enrolment(
        &self,
    ) -> Option<(IdentityId, &[AuthMethod], &Goal, Option<&PhoneChallenge>)> {
        match self {
            Self::EnrolSecondFactor {
                identity,
                methods,
                goal,
                phone,
            }
            | Self::EnrolApp {
                identity,
                methods,
                goal,
                phone,
                ..
            } => Some((*identity, methods, goal, phone.as_ref())),
            _ => None,
        }
    }

    /// The phone being set up at the enrolment step, to replace.
    pub(crate) fn enrolment_phone_mut(&mut self) -> Option<&mut Option<PhoneChallenge>> {
        match self {
            Self::EnrolSecondFactor { phone, .. } | Self::EnrolApp { phone, .. } => Some(phone),
            _ => None,
        }
    }
}

/// Why a federated attempt goes to the identity provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "purpose")]
pub(crate) enum FederatedPurpose {
    /// Signing in.
    SignIn,
    /// Accepting an invitation with the provider's login instead of a new password.
    AcceptInvitation {
        /// The invitation token from the emailed link.
        token: String,
    },
}

/// An OIDC authorization request in flight: what the callback must match. Kept inside the
/// sealed attempt, so the browser can neither read nor change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OidcRequest {
    /// The `state` parameter (also the single-use key of the callback).
    pub(crate) state: String,
    /// The `nonce` the ID token must carry.
    pub(crate) nonce: String,
    /// The PKCE code verifier (S256).
    pub(crate) pkce_verifier: String,
    /// The redirect URI the code was issued for.
    pub(crate) redirect_uri: String,
}

/// An external identity waiting to be linked once the account's password is proven.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingLink {
    pub(crate) provider: String,
    pub(crate) subject: String,
    pub(crate) organization: Option<OrganizationId>,
    /// The business roles the provider's claims map to (organization connections).
    pub(crate) mapped_roles: Vec<crate::ids::BusinessRoleId>,
    /// Whether the provider asserted multi-factor authentication and the connection trusts it.
    pub(crate) idp_mfa: bool,
}

/// One login attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AttemptState {
    /// Random id (128 bits, hex): names the attempt's counters and single-use keys.
    pub(crate) id: String,
    /// When the attempt ends whatever happens.
    pub(crate) expires_at: DateTime<Utc>,
    /// The client's source key (address) as the host gave it.
    pub(crate) source: Option<String>,
    /// The email as typed (for per-account throttling).
    pub(crate) email: String,
    /// Where it stands.
    pub(crate) stage: Stage,
}

impl AttemptState {
    pub(crate) const PURPOSE: Purpose = Purpose::Attempt;

    pub(crate) fn key(&self, what: &str) -> String {
        format!("login:{what}:{}", self.id)
    }
}

pub(crate) fn wrap(sealed: String) -> AttemptToken {
    AttemptToken(sealed)
}
