//! Invitations: single, batch and lead invitations into an organization.
//!
//! An invitation carries a single-use token (256 random bits, only its hash stored) sent by
//! email. Its lifecycle is an exhaustive state machine ([`InvitationStatus::transition`]).

mod workflow;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::Actor;
use crate::contact::{EmailAddress, PersonName};
use crate::identities::{Mandate, StaffRole};
use crate::ids::{BatchId, BusinessRoleId, IdentityId, InvitationId, OrganizationId};
use crate::secrets::TokenHash;

pub(crate) use workflow::FederatedAcceptance;
pub use workflow::{
    Acceptance, AcceptedInvitation, BatchRowOutcome, InvitationError, InvitationRequest,
    Invitations, IssuedInvitation,
};

/// What the invitation is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum InvitationKind {
    /// A user of the organization.
    Member,
    /// The organization's contact person (main user), with the OrgAdmin mandate.
    ContactPerson,
    /// A lead from the CRM; registers with the role `lead`.
    Lead {
        /// The CRM's lead id, sent back when the lead registers.
        crm_lead_id: String,
    },
}

/// Lifecycle of an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    /// Held for review before sending (a lead at a public webmail address).
    HeldForReview,
    /// Sent, waiting for the invitee.
    Pending,
    /// Accepted: final.
    Accepted,
    /// Revoked by an administrator or replaced by a resend: final.
    Revoked,
    /// Its time ran out: final.
    Expired,
}

/// Events that move an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationTransition {
    /// A reviewer released a held invitation (sent now).
    Release,
    /// The invitee accepted.
    Accept,
    /// An administrator revoked it, or a resend replaced it.
    Revoke,
    /// Its time ran out.
    Expire,
}

impl InvitationStatus {
    /// The status after `transition`, or `None` when the transition is not allowed.
    pub fn transition(self, transition: InvitationTransition) -> Option<Self> {
        use InvitationStatus as S;
        use InvitationTransition as T;
        match (self, transition) {
            (S::HeldForReview, T::Release) => Some(S::Pending),
            (S::HeldForReview | S::Pending, T::Revoke) => Some(S::Revoked),
            (S::Pending, T::Accept) => Some(S::Accepted),
            (S::HeldForReview | S::Pending, T::Expire) => Some(S::Expired),
            (S::HeldForReview, T::Accept)
            | (S::Pending, T::Release)
            | (S::Accepted | S::Revoked | S::Expired, _) => None,
        }
    }

    /// Whether no further transition is possible.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Accepted | Self::Revoked | Self::Expired)
    }
}

/// An invitation of a person into an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Identifier.
    pub id: InvitationId,
    /// Version as stored.
    pub version: u64,
    /// The organization to join.
    pub organization: OrganizationId,
    /// The invitee's email.
    pub email: EmailAddress,
    /// The invitee's name, when the inviter knows it.
    pub name: Option<PersonName>,
    /// Member, contact person or lead.
    pub kind: InvitationKind,
    /// Business roles the member gets on acceptance.
    pub business_roles: BTreeSet<BusinessRoleId>,
    /// Mandates the member gets on acceptance.
    pub mandates: BTreeSet<Mandate>,
    /// Staff roles the member gets on acceptance (provider organization only).
    pub staff_roles: BTreeSet<StaffRole>,
    /// Lifecycle status.
    pub status: InvitationStatus,
    /// Hash of the current token (none while held for review).
    pub token_hash: Option<TokenHash>,
    /// When the token stops working.
    pub expires_at: DateTime<Utc>,
    /// Who invited.
    pub invited_by: Actor,
    /// The batch this invitation came from.
    pub batch: Option<BatchId>,
    /// Who accepted (once accepted).
    pub accepted_by: Option<IdentityId>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}
