//! Self-registration: an SME registers its organization and contact person (back office
//! approves, or the CRM's active contract approves it automatically), and people ask to join an
//! existing organization (its contact person or a user manager approves).

mod workflow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::Actor;
use crate::contact::{EmailAddress, EmailDomain, PersonName, PhoneNumber};
use crate::credentials::PasswordHashString;
use crate::ids::{IdentityId, JoinRequestId, OrgRegistrationId, OrganizationId};
use crate::secrets::CodeChallenge;

pub use workflow::{
    ContractConfirmation, ContractLookup, Decision as RegistrationDecision, JoinRequestForm,
    JoinTarget, NoContractLookup, OrgRegistrationForm, RegistrationError, Registrations,
};

/// Lifecycle of a registration or join request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum RequestStatus {
    /// Waiting for the applicant to enter the codes sent to their email (and phone).
    AwaitingVerification,
    /// Verified; waiting for a decision.
    PendingApproval,
    /// Approved.
    Approved {
        /// Who decided.
        by: Actor,
        /// When.
        at: DateTime<Utc>,
    },
    /// Rejected, with the reason given to the applicant.
    Rejected {
        /// Who decided.
        by: Actor,
        /// When.
        at: DateTime<Utc>,
        /// The reason.
        reason: String,
    },
}

impl RequestStatus {
    /// Whether a decision has been made.
    pub fn is_decided(&self) -> bool {
        matches!(self, Self::Approved { .. } | Self::Rejected { .. })
    }
}

/// The person applying (registration or join request).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// Email (verified by code before the request can be decided).
    pub email: EmailAddress,
    /// Name.
    pub name: PersonName,
    /// Phone, when given (verified by code too).
    pub phone: Option<PhoneNumber>,
    /// The chosen password, hashed.
    pub password_hash: PasswordHashString,
    /// The email code challenge, while unverified.
    pub email_challenge: Option<CodeChallenge>,
    /// The phone code challenge, while unverified.
    pub phone_challenge: Option<CodeChallenge>,
    /// How many times codes were sent (resends are limited).
    pub codes_sent: u32,
}

/// An SME's registration of its organization and contact person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRegistration {
    /// Identifier.
    pub id: OrgRegistrationId,
    /// Version as stored.
    pub version: u64,
    /// Name of the organization to create.
    pub organization_name: String,
    /// The organization's business id or CRM account id, when the applicant knows it (used to
    /// look up an active contract).
    pub business_id: Option<String>,
    /// An email domain to verify for the organization (the applicant's, when not webmail).
    pub email_domain: Option<EmailDomain>,
    /// The contact person.
    pub applicant: Applicant,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// The organization created on approval.
    pub organization: Option<OrganizationId>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

/// A person's request to join an existing organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Identifier.
    pub id: JoinRequestId,
    /// Version as stored.
    pub version: u64,
    /// The organization to join.
    pub organization: OrganizationId,
    /// The person.
    pub applicant: Applicant,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// The identity created or linked on approval.
    pub identity: Option<IdentityId>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}
