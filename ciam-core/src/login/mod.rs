//! Sign-in: an explicit state machine for each login attempt.
//!
//! ```text
//! start(email) ──► Federated (the email's organization has its own IdP) ─┐
//! start_at_provider (Google, a company login) ──► Federated ─────────────┤
//!   complete_federated(claims) ◄── the OIDC or SAML layer verified them ◄┘
//!       ├─► SignedIn / SecondFactor                       (linked, or created just in time)
//!       └─► LinkAccount ──► password ──► SignedIn / SecondFactor   (same email, not linked)
//! start(email) ──► Password ──► SignedIn                       (no second factor needed)
//!                          └─► SecondFactor ──► CodeSent (SMS) ──► SignedIn
//!                                           └─► TOTP / recovery code ──► SignedIn
//! reset link ──► (SecondFactor ──►) NewPassword ──► password set, every session revoked
//! ```
//!
//! Each attempt is a sealed token (see [`AttemptToken`]) that expires; what must not be
//! replayed is kept in the store's atomic counters and single-use keys. Unknown emails take the
//! same path as wrong passwords (a dummy hash is verified) and give the same answer. Failures
//! are throttled per account and per source with exponential back-off, and audited.

mod attempt;
mod connections;
mod enrolment;
mod federated;
mod federation;
mod flow;
#[cfg(feature = "oidc")]
mod oidc;
mod reauth;
mod reset;
#[cfg(feature = "http-sms")]
mod sms_gateway;
mod throttle;
mod totp;

use chrono::{DateTime, Duration, Utc};

use crate::authz::DenyReason;
use crate::ciam::Context;
use crate::credentials::{PasswordError, SealError};
use crate::ids::OrganizationId;
use crate::sessions::{SessionError, StartedSession};
use crate::store::StoreError;

pub use attempt::AttemptToken;
pub use connections::{
    ClaimRoleMapping, ClientSecret, EmailLinking, Federation, FederationError, GOOGLE_ISSUER,
    IdentityProviderConnection, OidcClientSettings, SamlIdpSettings, SealedClientSecret,
    SigningAlgorithm, StoredConnection,
};
pub use federated::{FederatedAttempt, FederatedClaims, LinkProof};
pub use federation::{
    FederatedIdp, FederationDirectory, FederationProtocol, NoFederation, StaticFederation,
    StoreFederation,
};
#[cfg(feature = "oidc")]
pub use oidc::{OidcError, OidcLogin, OidcOptions, OidcRedirect};
pub use reauth::authenticated_recently;
#[cfg(feature = "http-sms")]
pub use sms_gateway::{HttpSmsGateway, HttpSmsGatewayConfig, SmsGatewayError};
pub use throttle::{FailedStep, ThrottlePolicy, ThrottleScope};
pub use totp::{RecoveryCode, TotpEnrollment};

/// Sign-in rules. `LoginPolicy::default()` is safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    /// A login attempt ends this long after it started (default 10 minutes).
    pub attempt_lifetime: Duration,
    /// An SMS code works this long (default 5 minutes).
    pub sms_code_lifetime: Duration,
    /// SMS codes that may be sent again in one attempt after the first (default 3).
    pub sms_resends: u32,
    /// Time between two SMS codes of one attempt (default 30 seconds).
    pub sms_resend_interval: Duration,
    /// Wrong second-factor codes that end an attempt (default 5).
    pub second_factor_tries: u32,
    /// A password-reset link works this long (default 1 hour).
    pub reset_link_lifetime: Duration,
    /// Reset links sent to one address per hour at most (default 3).
    pub reset_links_per_hour: u32,
    /// Throttling of failures.
    pub throttle: ThrottlePolicy,
    /// The issuer shown in authenticator apps (default: the policy's product name).
    pub totp_issuer: Option<String>,
    /// Who must use a second factor, deployment-wide (default: where an organization's policy
    /// says so). People who need one and have none set one up while signing in.
    pub require_mfa: MfaRequirement,
}

/// Who must use a second factor at sign-in, deployment-wide: besides the members of
/// organizations whose policy requires it, and people who set one up themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MfaRequirement {
    /// Only where an organization's policy says so.
    #[default]
    OrganizationPolicy,
    /// Also every active member of the provider organization (the staff).
    Staff,
    /// Everyone.
    All,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            attempt_lifetime: Duration::minutes(10),
            sms_code_lifetime: Duration::minutes(5),
            sms_resends: 3,
            sms_resend_interval: Duration::seconds(30),
            second_factor_tries: 5,
            reset_link_lifetime: Duration::hours(1),
            reset_links_per_hour: 3,
            throttle: ThrottlePolicy::default(),
            totp_issuer: None,
            require_mfa: MfaRequirement::OrganizationPolicy,
        }
    }
}

/// A second factor the person can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecondFactor {
    /// A code by SMS to the verified phone.
    Sms,
    /// A code from an authenticator app.
    Totp,
    /// One of the recovery codes given at TOTP enrollment.
    RecoveryCode,
}

/// What the person does next.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginStep {
    /// Enter the password.
    Password {
        /// The attempt.
        attempt: AttemptToken,
    },
    /// Go to the organization's own identity provider (home realm discovery).
    Federated {
        /// The attempt (binds the federated round trip).
        attempt: AttemptToken,
        /// The organization the email's domain belongs to.
        organization: OrganizationId,
        /// Its identity provider.
        idp: FederatedIdp,
    },
    /// Choose and prove a second factor.
    SecondFactor {
        /// The attempt.
        attempt: AttemptToken,
        /// The factors the person has, for them to choose from.
        options: Vec<SecondFactor>,
        /// The last digits of the verified phone, when SMS is an option.
        phone_hint: Option<String>,
    },
    /// An SMS code was sent; enter it.
    CodeSent {
        /// The attempt (a new token: the previous one no longer accepts a code).
        attempt: AttemptToken,
        /// The code stops working then.
        expires_at: DateTime<Utc>,
        /// Another code may be asked for from then on.
        resend_after: DateTime<Utc>,
    },
    /// The identity provider's email belongs to an existing account that is not linked to it
    /// yet: the account's password links them (then the second factor, when needed).
    LinkAccount {
        /// The attempt (give it to [`Login::password`]).
        attempt: AttemptToken,
        /// The account's email.
        email: String,
        /// The provider's display name.
        provider: String,
    },
    /// A second factor is required and the person has none: set up an authenticator app
    /// ([`Login::enrolment_totp`], then [`Login::enrolment_confirm`]) or verify a mobile phone
    /// ([`Login::enrolment_phone`], then [`Login::enrolment_confirm_phone`]) to go on. No
    /// session exists until then.
    EnrolSecondFactor {
        /// The attempt.
        attempt: AttemptToken,
    },
    /// Choose a new password (password reset).
    NewPassword {
        /// The attempt.
        attempt: AttemptToken,
    },
    /// Signed in: a new session (set its token in a cookie, replacing any earlier one).
    SignedIn(Box<StartedSession>),
}

/// Errors of sign-in, password change and reset, and second-factor enrollment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The email or password is wrong (also for unknown and inactive accounts).
    #[error("the email or password is wrong")]
    InvalidCredentials,
    /// Too many failures: wait and try again.
    #[error("too many failed attempts; try again in {} seconds", retry_after.num_seconds().max(1))]
    Throttled {
        /// What is throttled.
        scope: ThrottleScope,
        /// How long to wait at most.
        retry_after: Duration,
    },
    /// The attempt token is unknown, altered, expired, or already used.
    #[error("the sign-in attempt has expired; start again")]
    AttemptExpired,
    /// Too many wrong codes ended the attempt.
    #[error("too many wrong codes; start again")]
    AttemptEnded,
    /// The attempt is not at this step.
    #[error("this step does not apply now")]
    WrongStep,
    /// The code is wrong.
    #[error("the code is wrong")]
    WrongCode,
    /// The code expired or a newer one was sent.
    #[error("the code has expired; ask for a new one")]
    CodeExpired,
    /// No more codes can be sent in this attempt.
    #[error("no more codes can be sent; start again")]
    ResendLimit,
    /// A code was sent moments ago.
    #[error("a code was just sent; wait before asking for another")]
    ResendTooSoon,
    /// That second factor is not available to this person.
    #[error("this second factor is not set up")]
    FactorUnavailable,
    /// The organization requires a second factor and the person has none.
    #[error("a second factor is required; set up a verified phone or an authenticator app")]
    SecondFactorRequired,
    /// Bad input, such as a phone number that is not in E.164 form.
    #[error(transparent)]
    Invalid(#[from] crate::contact::ValidationError),
    /// The reset link is invalid, expired or already used.
    #[error("the password reset link is invalid or has expired")]
    InvalidResetLink,
    /// No secret key was configured (needed to keep TOTP secrets).
    #[error("no secret key is configured")]
    NoSecretKey,
    /// The TOTP enrollment is not in the right state.
    #[error("the authenticator app is not being set up")]
    NoPendingEnrollment,
    /// No identity provider connection with this key (or it changed meanwhile).
    #[error("this sign-in provider is not configured")]
    UnknownProvider,
    /// The provider signed the person in, but nobody gave them access here.
    #[error("there is no account here for this login; ask your organization for an invitation")]
    NotProvisioned,
    /// The account is disabled, or its membership in the organization was removed.
    #[error("this account cannot sign in; contact your administrator")]
    AccountUnavailable,
    /// The provider's email is outside the organization's verified domains.
    #[error("the identity provider's email is not in the organization's domains")]
    EmailOutsideOrganization,
    /// The provider did not assert what is needed.
    #[error("the identity provider did not provide {missing}")]
    IncompleteClaims {
        /// What is missing.
        missing: &'static str,
    },
    /// Accepting the invitation failed.
    #[error(transparent)]
    Invitation(#[from] crate::invitations::InvitationError),
    /// The OIDC round trip failed.
    #[cfg(feature = "oidc")]
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The new password breaks the policy, or hashing failed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// The session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sign-in, password change and reset, second factors. Get one from [`crate::Ciam::login`].
pub struct Login<'a> {
    pub(crate) ctx: &'a Context,
}

/// What sign-in keeps for the life of a [`crate::Ciam`].
pub(crate) struct AuthRuntime {
    pub(crate) sealer: crate::credentials::Sealer,
    pub(crate) federation: std::sync::Arc<dyn FederationDirectory>,
    /// A hash of a random password with the current parameters, computed once: unknown
    /// accounts are verified against it so that they cost the same time as known ones.
    pub(crate) dummy_hash: tokio::sync::OnceCell<crate::credentials::PasswordHashString>,
}

impl AuthRuntime {
    pub(crate) fn new(
        sealer: crate::credentials::Sealer,
        federation: std::sync::Arc<dyn FederationDirectory>,
    ) -> Self {
        Self {
            sealer,
            federation,
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }
}
