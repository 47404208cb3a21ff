//! Identities (people), their memberships in organizations, the admin mandates those
//! memberships carry, and staff roles.

mod administration;
mod profile;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::{EmailAddress, PersonName, PhoneNumber};
use crate::ids::{BusinessRoleId, IdentityId, MembershipId, OrganizationId, ServiceId};
use crate::secrets::CodeChallenge;

pub use administration::{Administration, AdministrationError, MemberGrants};
pub use profile::{Profile, ProfileError};

/// Lifecycle of an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityStatus {
    /// Invited, has not accepted yet.
    Invited,
    /// Registered, waiting for approval.
    Pending,
    /// Can sign in.
    Active,
    /// Switched off by an administrator or by the end of all access; holds nothing.
    Disabled,
}

/// A change of email or phone waiting for its verification code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingContactChange<T> {
    /// The new value, effective once verified.
    pub new_value: T,
    /// The code challenge sent to the new address or number.
    pub challenge: CodeChallenge,
}

/// One person, possibly a member of several organizations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Identifier.
    pub id: IdentityId,
    /// Version as stored.
    pub version: u64,
    /// Email address (unique, case-insensitive).
    pub email: EmailAddress,
    /// Whether the person proved they read that mailbox.
    pub email_verified: bool,
    /// Phone number (E.164), if given.
    pub phone: Option<PhoneNumber>,
    /// Whether the person proved they hold that phone.
    pub phone_verified: bool,
    /// Name.
    pub name: PersonName,
    /// Lifecycle status.
    pub status: IdentityStatus,
    /// The CRM's contact id (unique), when known.
    pub crm_contact_id: Option<String>,
    /// An email change waiting for verification.
    pub pending_email: Option<PendingContactChange<EmailAddress>>,
    /// A phone change waiting for verification.
    pub pending_phone: Option<PendingContactChange<PhoneNumber>>,
    /// Why the identity was disabled, when it is.
    pub disabled_reason: Option<String>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl Identity {
    /// Whether the identity may act and hold access.
    pub fn is_active(&self) -> bool {
        self.status == IdentityStatus::Active
    }
}

/// Lifecycle of a membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipStatus {
    /// Asked to join (or invited), not yet approved.
    PendingApproval,
    /// A member: roles and mandates count.
    Active,
    /// Removed from the organization: holds nothing.
    Removed,
}

/// An administrative mandate held in one organization (and its sub-organizations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mandate", content = "service")]
pub enum Mandate {
    /// The contact person (main user): everything in the organization and its
    /// sub-organizations.
    OrgAdmin,
    /// Invite, approve and remove users.
    UserManager,
    /// Assign the roles of one service.
    ServiceManager(ServiceId),
}

impl fmt::Display for Mandate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OrgAdmin => f.write_str("organization administrator"),
            Self::UserManager => f.write_str("user manager"),
            Self::ServiceManager(service) => write!(f, "service manager of {service}"),
        }
    }
}

/// A staff role, held through an active membership in the provider organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// Everything, everywhere.
    Administrator,
    /// Manage the users of all customer and partner organizations.
    CustomerService,
    /// Decide organization registrations and held invitations.
    BackOffice,
    /// Create organizations and contracts, and invite their contact persons.
    AccountManager,
}

/// An identity's membership in one organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Identifier.
    pub id: MembershipId,
    /// Version as stored.
    pub version: u64,
    /// The person.
    pub identity: IdentityId,
    /// The organization.
    pub organization: OrganizationId,
    /// Lifecycle status.
    pub status: MembershipStatus,
    /// Business roles held in this organization.
    pub business_roles: BTreeSet<BusinessRoleId>,
    /// Administrative mandates held in this organization.
    pub mandates: BTreeSet<Mandate>,
    /// Staff roles (only meaningful in the provider organization).
    pub staff_roles: BTreeSet<StaffRole>,
    /// The CRM lead id, when the member came in as a lead.
    pub crm_lead_id: Option<String>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl Membership {
    /// Whether roles and mandates of this membership count.
    pub fn is_active(&self) -> bool {
        self.status == MembershipStatus::Active
    }
}
