//! The JSON shapes of the provisioning API: requests (unknown fields refused) and responses,
//! with their OpenAPI schemas.
//!
//! These are what the server exposes under `/api/v1` (see [`crate::openapi`]); the CRM sends
//! them, [`crate::Provisioner`] executes them.

use chrono::{DateTime, Utc};
use ciam_core::identities::{IdentityStatus, Mandate, MembershipStatus};
use ciam_core::invitations::InvitationStatus;
use ciam_core::organizations::{ContractChange, ContractStatus, OrgKind, OrgStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::validation::FieldError;

// ----- enums mirrored from the core with their schemas -----

/// What an organization is to the provider (the CRM provisions customers and partners).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationKind {
    /// A business customer (the default).
    #[default]
    Customer,
    /// A partner (reseller, installer).
    Partner,
    /// The provider itself (read only: never provisioned through the CRM).
    Provider,
}

impl From<OrgKind> for OrganizationKind {
    fn from(kind: OrgKind) -> Self {
        match kind {
            OrgKind::Customer => Self::Customer,
            OrgKind::Partner => Self::Partner,
            OrgKind::Provider => Self::Provider,
        }
    }
}

impl From<OrganizationKind> for OrgKind {
    fn from(kind: OrganizationKind) -> Self {
        match kind {
            OrganizationKind::Customer => Self::Customer,
            OrganizationKind::Partner => Self::Partner,
            OrganizationKind::Provider => Self::Provider,
        }
    }
}

/// Lifecycle of an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationStatus {
    /// Registered, waiting for approval.
    PendingApproval,
    /// In business.
    Active,
    /// Temporarily stopped.
    Suspended,
    /// Closed for good.
    Closed,
}

impl From<OrgStatus> for OrganizationStatus {
    fn from(status: OrgStatus) -> Self {
        match status {
            OrgStatus::PendingApproval => Self::PendingApproval,
            OrgStatus::Active => Self::Active,
            OrgStatus::Suspended => Self::Suspended,
            OrgStatus::Closed => Self::Closed,
        }
    }
}

/// Lifecycle of a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    /// In force (within its validity dates).
    Active,
    /// Temporarily not in force.
    Suspended,
    /// Ended for good.
    Ended,
}

impl From<ContractStatus> for ContractState {
    fn from(status: ContractStatus) -> Self {
        match status {
            ContractStatus::Active => Self::Active,
            ContractStatus::Suspended => Self::Suspended,
            ContractStatus::Ended => Self::Ended,
        }
    }
}

impl From<ContractState> for ContractStatus {
    fn from(state: ContractState) -> Self {
        match state {
            ContractState::Active => Self::Active,
            ContractState::Suspended => Self::Suspended,
            ContractState::Ended => Self::Ended,
        }
    }
}

/// A lifecycle change of a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractChangeKind {
    /// Suspend: access stops, may resume.
    Suspend,
    /// Resume a suspended contract.
    Resume,
    /// End for good.
    End,
}

impl From<ContractChangeKind> for ContractChange {
    fn from(change: ContractChangeKind) -> Self {
        match change {
            ContractChangeKind::Suspend => Self::Suspend,
            ContractChangeKind::Resume => Self::Resume,
            ContractChangeKind::End => Self::End,
        }
    }
}

/// Lifecycle of a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Invited, has not accepted yet.
    Invited,
    /// Registered, waiting for approval.
    Pending,
    /// Can sign in.
    Active,
    /// Switched off.
    Disabled,
}

impl From<IdentityStatus> for PersonStatus {
    fn from(status: IdentityStatus) -> Self {
        match status {
            IdentityStatus::Invited => Self::Invited,
            IdentityStatus::Pending => Self::Pending,
            IdentityStatus::Active => Self::Active,
            IdentityStatus::Disabled => Self::Disabled,
        }
    }
}

/// Lifecycle of a membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Waiting for approval.
    PendingApproval,
    /// A member.
    Active,
    /// Removed.
    Removed,
}

impl From<MembershipStatus> for MemberStatus {
    fn from(status: MembershipStatus) -> Self {
        match status {
            MembershipStatus::PendingApproval => Self::PendingApproval,
            MembershipStatus::Active => Self::Active,
            MembershipStatus::Removed => Self::Removed,
        }
    }
}

/// Lifecycle of an invitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    /// Held for review before sending (a lead at a public webmail address).
    HeldForReview,
    /// Sent, waiting for the invitee.
    Pending,
    /// Accepted.
    Accepted,
    /// Revoked.
    Revoked,
    /// Expired unused.
    Expired,
}

impl From<InvitationStatus> for InvitationState {
    fn from(status: InvitationStatus) -> Self {
        match status {
            InvitationStatus::HeldForReview => Self::HeldForReview,
            InvitationStatus::Pending => Self::Pending,
            InvitationStatus::Accepted => Self::Accepted,
            InvitationStatus::Revoked => Self::Revoked,
            InvitationStatus::Expired => Self::Expired,
        }
    }
}

/// An administrative mandate, with services named by key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "mandate", deny_unknown_fields)]
pub enum MandateSpec {
    /// The contact person (main user) of the organization.
    OrgAdmin,
    /// Invite, approve and remove users.
    UserManager,
    /// Assign the roles of one service.
    ServiceManager {
        /// The service key, such as `smartplan-app`.
        service: String,
    },
}

impl MandateSpec {
    /// The spec of a core mandate, with the service key looked up by `service_key`.
    pub(crate) fn from_core(mandate: &Mandate, service_key: impl Fn(&Uuid) -> String) -> Self {
        match mandate {
            Mandate::OrgAdmin => Self::OrgAdmin,
            Mandate::UserManager => Self::UserManager,
            Mandate::ServiceManager(service) => Self::ServiceManager {
                service: service_key(&service.as_uuid()),
            },
        }
    }
}

// ----- requests -----

/// Create or update an organization by CRM account id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertOrganizationRequest {
    /// The CRM account id (the key), 1 to 128 of `[A-Za-z0-9._:-]`.
    pub crm_account_id: String,
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Customer (default) or partner.
    #[serde(default)]
    pub kind: OrganizationKind,
    /// The parent's CRM account id, for a sub-organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_crm_account_id: Option<String>,
    /// Verified email domains (each owned by one organization only).
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Suspend the organization (its members' access counts for nothing).
    #[serde(default)]
    pub suspended: bool,
}

/// Create or update a contract by CRM contract id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertContractRequest {
    /// The CRM contract id (the key).
    pub crm_contract_id: String,
    /// The CRM account id of the organization.
    pub crm_account_id: String,
    /// Keys of the services the contract covers.
    pub services: Vec<String>,
    /// Status.
    pub status: ContractState,
    /// Start of validity (RFC 3339), if bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// End of validity (exclusive), if bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

/// Suspend, resume or end a contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeContractRequest {
    /// The CRM contract id.
    pub crm_contract_id: String,
    /// What to do.
    pub change: ContractChangeKind,
}

/// Tell ciam-rs which CRM contact a person is. The person is found by CRM contact id, else
/// by email; ciam-rs stays the master of the contact details people maintain themselves, so
/// nothing but the CRM contact id is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertContactRequest {
    /// The CRM contact id.
    pub crm_contact_id: String,
    /// The contact's email address, used to find the person when the id is not linked yet.
    pub email: String,
}

/// Invite one person into an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The CRM account id of the organization to join.
    pub crm_account_id: String,
    /// Email address.
    pub email: String,
    /// Given name, if known (with `family_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name, if known (with `given_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Business role keys, such as `energy-manager`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub business_roles: Vec<String>,
    /// Administrative mandates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mandates: Vec<MandateSpec>,
    /// Invite as the organization's contact person (main user).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contact_person: bool,
}

impl InviteRequest {
    /// The invitee part of the request.
    pub fn invitee(&self) -> Invitee {
        Invitee {
            email: self.email.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            business_roles: self.business_roles.clone(),
            mandates: self.mandates.clone(),
            contact_person: self.contact_person,
        }
    }
}

/// A person to invite and what they get on acceptance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invitee {
    /// Email address.
    pub email: String,
    /// Given name, if known (with `family_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name, if known (with `given_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    /// Business role keys, such as `energy-manager`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub business_roles: Vec<String>,
    /// Administrative mandates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mandates: Vec<MandateSpec>,
    /// Invite as the organization's contact person (main user).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contact_person: bool,
}

/// Invite many people into one organization; every row gets its own result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBatchRequest {
    /// The CRM account id of the organization to join.
    pub crm_account_id: String,
    /// The people to invite.
    pub items: Vec<Invitee>,
}

/// A lead to invite: the CRM hears back (with its lead id) when the lead registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadInvitee {
    /// Email address.
    pub email: String,
    /// The CRM lead id.
    pub crm_lead_id: String,
    /// Given name, if known (with `family_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Family name, if known (with `given_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

/// Invite leads into an organization (usually the provider's leads organization or the
/// lead's prospective customer account).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteLeadsRequest {
    /// The CRM account id of the organization the leads join.
    pub crm_account_id: String,
    /// The leads.
    pub items: Vec<LeadInvitee>,
}

/// Read an organization with its contracts and users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationQuery {
    /// The CRM account id.
    pub crm_account_id: String,
    /// At most this many users (1 to 500, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Continue after this cursor (from the previous page's `next`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Find a person by email or by CRM contact id (exactly one of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityQuery {
    /// Email address (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// CRM contact id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_contact_id: Option<String>,
}

/// Any provisioning command, tagged by name: what [`crate::Provisioner::execute`] runs and
/// what an idempotency key is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "command", content = "request")]
pub enum Command {
    /// Create or update an organization.
    UpsertOrganization(UpsertOrganizationRequest),
    /// Create or update a contract.
    UpsertContract(UpsertContractRequest),
    /// Suspend, resume or end a contract.
    ChangeContract(ChangeContractRequest),
    /// Link a CRM contact to a person.
    UpsertContact(UpsertContactRequest),
    /// Invite one person.
    Invite(InviteRequest),
    /// Invite many people.
    InviteBatch(InviteBatchRequest),
    /// Invite leads.
    InviteLeads(InviteLeadsRequest),
    /// Read an organization with its users.
    GetOrganization(OrganizationQuery),
    /// Find a person.
    FindIdentity(IdentityQuery),
}

impl Command {
    /// The command's name as serialized (`upsert_organization`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Self::UpsertOrganization(_) => "upsert_organization",
            Self::UpsertContract(_) => "upsert_contract",
            Self::ChangeContract(_) => "change_contract",
            Self::UpsertContact(_) => "upsert_contact",
            Self::Invite(_) => "invite",
            Self::InviteBatch(_) => "invite_batch",
            Self::InviteLeads(_) => "invite_leads",
            Self::GetOrganization(_) => "get_organization",
            Self::FindIdentity(_) => "find_identity",
        }
    }

    /// Whether the command only reads (idempotency keys are pointless for those).
    pub fn is_query(&self) -> bool {
        matches!(self, Self::GetOrganization(_) | Self::FindIdentity(_))
    }
}

// ----- responses -----

/// An organization as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrganizationResponse {
    /// ciam-rs id.
    pub id: Uuid,
    /// The CRM account id.
    pub crm_account_id: Option<String>,
    /// Display name.
    pub name: String,
    /// Kind.
    pub kind: OrganizationKind,
    /// Status.
    pub status: OrganizationStatus,
    /// The parent organization's id, for a sub-organization.
    pub parent_id: Option<Uuid>,
    /// Verified email domains.
    pub email_domains: Vec<String>,
    /// Record version (increases with every change).
    pub version: u64,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
}

/// A contract as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContractResponse {
    /// ciam-rs id.
    pub id: Uuid,
    /// The CRM contract id.
    pub crm_contract_id: String,
    /// The organization's id.
    pub organization_id: Uuid,
    /// Keys of the services covered.
    pub services: Vec<String>,
    /// Status.
    pub status: ContractState,
    /// Start of validity.
    pub valid_from: Option<DateTime<Utc>>,
    /// End of validity (exclusive).
    pub valid_until: Option<DateTime<Utc>>,
    /// When the contract stopped giving access, if it did.
    pub access_ended_at: Option<DateTime<Utc>>,
    /// Record version.
    pub version: u64,
}

/// What an upsert of a contact did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactOutcome {
    /// The CRM contact id was linked to the person now.
    Linked,
    /// The person already had this CRM contact id.
    Unchanged,
    /// Nobody with that CRM contact id or email exists yet; invite them (and upsert the
    /// contact again once they have registered).
    Unmatched,
}

/// The result of an upsert of a contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContactResponse {
    /// What happened.
    pub outcome: ContactOutcome,
    /// The person, unless unmatched.
    pub identity: Option<IdentityResponse>,
}

/// A created invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvitationResponse {
    /// The invitation id.
    pub invitation_id: Uuid,
    /// The organization's id.
    pub organization_id: Uuid,
    /// The invitee's email.
    pub email: String,
    /// Pending (mail sent) or held for review.
    pub status: InvitationState,
    /// The CRM lead id, for a lead.
    pub crm_lead_id: Option<String>,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
    /// Whether the mail was handed to the mailer.
    pub mail_sent: bool,
}

/// The outcome of one row of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RowOutcome {
    /// Invited; the mail is on its way.
    Invited {
        /// The invitation id.
        invitation_id: Uuid,
    },
    /// Created and held for review.
    HeldForReview {
        /// The invitation id.
        invitation_id: Uuid,
    },
    /// Already an active member: nothing to do.
    AlreadyMember,
    /// Already has an open invitation (a retried batch lands here).
    AlreadyInvited {
        /// The open invitation.
        invitation_id: Uuid,
    },
    /// The same email appears earlier in the batch.
    DuplicateInBatch {
        /// The earlier row (0-based).
        first_row: usize,
    },
    /// A field of the row is not valid.
    Invalid {
        /// The refused fields, with paths from the request root (`items[3].email`).
        errors: Vec<FieldError>,
    },
    /// The caller may not give what the row asks for.
    NotAllowed {
        /// Why.
        reason: String,
    },
}

impl RowOutcome {
    /// Whether the row created an invitation.
    pub fn is_created(&self) -> bool {
        matches!(self, Self::Invited { .. } | Self::HeldForReview { .. })
    }

    /// Whether the row was refused (invalid or not allowed).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Invalid { .. } | Self::NotAllowed { .. })
    }
}

/// One row's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RowResult {
    /// The row's index in `items` (0-based).
    pub index: usize,
    /// The row's email as given.
    pub email: String,
    /// What happened.
    pub outcome: RowOutcome,
}

/// Counts over a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchSummary {
    /// Rows in the request.
    pub total: usize,
    /// Invitations created (sent or held).
    pub created: usize,
    /// Rows with nothing to do (already member, already invited, duplicate).
    pub skipped: usize,
    /// Rows refused (invalid or not allowed).
    pub failed: usize,
}

/// The result of a batch: one entry per row, in request order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// The batch id, when any invitation was created.
    pub batch_id: Option<Uuid>,
    /// Counts.
    pub summary: BatchSummary,
    /// One result per row.
    pub items: Vec<RowResult>,
}

impl BatchResponse {
    pub(crate) fn new(batch_id: Option<Uuid>, items: Vec<RowResult>) -> Self {
        let mut summary = BatchSummary {
            total: items.len(),
            ..BatchSummary::default()
        };
        for item in &items {
            if item.outcome.is_created() {
                summary.created += 1;
            } else if item.outcome.is_failure() {
                summary.failed += 1;
            } else {
                summary.skipped += 1;
            }
        }
        Self {
            batch_id,
            summary,
            items,
        }
    }
}

/// A membership of a person, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MembershipResponse {
    /// The organization's id.
    pub organization_id: Uuid,
    /// The organization's CRM account id.
    pub crm_account_id: Option<String>,
    /// Status.
    pub status: MemberStatus,
    /// Business role keys.
    pub business_roles: Vec<String>,
    /// Mandates.
    pub mandates: Vec<MandateSpec>,
    /// The CRM lead id, when the person came in as a lead.
    pub crm_lead_id: Option<String>,
}

/// A person as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityResponse {
    /// ciam-rs id.
    pub id: Uuid,
    /// Email address.
    pub email: String,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Phone (E.164).
    pub phone: Option<String>,
    /// Whether the phone is verified.
    pub phone_verified: bool,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Status.
    pub status: PersonStatus,
    /// The CRM contact id.
    pub crm_contact_id: Option<String>,
    /// Memberships the caller may see.
    pub memberships: Vec<MembershipResponse>,
}

/// A user of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserResponse {
    /// The person's id.
    pub identity_id: Uuid,
    /// Email address.
    pub email: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// The person's status.
    pub status: PersonStatus,
    /// The CRM contact id.
    pub crm_contact_id: Option<String>,
    /// The membership's status.
    pub membership_status: MemberStatus,
    /// Business role keys.
    pub business_roles: Vec<String>,
    /// Mandates.
    pub mandates: Vec<MandateSpec>,
    /// The CRM lead id, when the person came in as a lead.
    pub crm_lead_id: Option<String>,
}

/// An organization with its contracts and (a page of) its users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrganizationDetails {
    /// The organization.
    pub organization: OrganizationResponse,
    /// Its contracts.
    pub contracts: Vec<ContractResponse>,
    /// Its users, ordered by email.
    pub users: Vec<UserResponse>,
    /// Cursor of the next page of users.
    pub next: Option<String>,
}

/// The response to any [`Command`], tagged like it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "command", content = "response")]
pub enum CommandResponse {
    /// An organization.
    UpsertOrganization(OrganizationResponse),
    /// A contract.
    UpsertContract(ContractResponse),
    /// A contract.
    ChangeContract(ContractResponse),
    /// A contact link.
    UpsertContact(ContactResponse),
    /// An invitation.
    Invite(InvitationResponse),
    /// Per-row results.
    InviteBatch(BatchResponse),
    /// Per-row results.
    InviteLeads(BatchResponse),
    /// An organization with users.
    GetOrganization(OrganizationDetails),
    /// A person.
    FindIdentity(IdentityResponse),
}

/// The body of an error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`invalid`, `not_found`, `forbidden`, `conflict`,
    /// `rejected`, `idempotency_key_reused`, `unavailable`).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The refused fields, for `invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}
