//! Domain events: every state change emits one, in the same atomic commit as the change.
//!
//! The store's outbox feeds them to the CRM and webhooks (at least once, stable
//! [`EventId`] for de-duplication); the same events make the audit log.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::Actor;
use crate::identities::{Mandate, StaffRole};
use crate::ids::{
    BusinessRoleId, ContractId, EventId, IdentityId, InvitationId, JoinRequestId,
    OrgRegistrationId, OrganizationId, ServiceId,
};
use crate::invitations::InvitationStatus;
use crate::organizations::ContractStatus;
use crate::sessions::RevocationReason;

/// A contact detail that changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactField {
    /// Email address.
    Email,
    /// Phone number.
    Phone,
    /// Given and family name.
    Name,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum EventKind {
    /// An organization was created.
    OrganizationCreated {
        /// Its name.
        name: String,
        /// Its CRM account id.
        crm_account_id: Option<String>,
    },
    /// An organization's data changed.
    OrganizationUpdated {
        /// Its name after the change.
        name: String,
    },
    /// A contract was created or changed.
    ContractChanged {
        /// The contract.
        contract: ContractId,
        /// Its CRM id.
        crm_contract_id: String,
        /// Status before (none when new).
        before: Option<ContractStatus>,
        /// Status after.
        after: ContractStatus,
        /// Services covered after the change.
        services: BTreeSet<ServiceId>,
    },
    /// A person lost access to services because a contract stopped giving it.
    AccessRevoked {
        /// The services no longer reachable through that organization.
        services: BTreeSet<ServiceId>,
        /// The contract whose end caused it.
        contract: ContractId,
    },
    /// A service was defined or changed.
    ServiceDefined {
        /// The service.
        service: ServiceId,
        /// Its key.
        key: String,
    },
    /// A business role was defined or changed.
    BusinessRoleDefined {
        /// The role.
        role: BusinessRoleId,
        /// Its key.
        key: String,
    },
    /// An invitation was created (sent, or held for review).
    InvitationCreated {
        /// The invitation.
        invitation: InvitationId,
        /// The invitee's email.
        email: String,
        /// Sent or held.
        status: InvitationStatus,
        /// CRM lead id, for a lead.
        crm_lead_id: Option<String>,
    },
    /// A held invitation was released and sent.
    InvitationReleased {
        /// The invitation.
        invitation: InvitationId,
    },
    /// An invitation was sent again with a new token.
    InvitationResent {
        /// The invitation.
        invitation: InvitationId,
    },
    /// An invitation was revoked.
    InvitationRevoked {
        /// The invitation.
        invitation: InvitationId,
    },
    /// An invitation expired unused.
    InvitationExpired {
        /// The invitation.
        invitation: InvitationId,
    },
    /// An invitation was accepted.
    InvitationAccepted {
        /// The invitation.
        invitation: InvitationId,
    },
    /// A customer's user registered (accepted an invitation or was approved to join).
    CustomerUserRegistered {
        /// The user's email.
        email: String,
        /// Given name.
        given_name: String,
        /// Family name.
        family_name: String,
    },
    /// A lead registered: the CRM raises the lead score.
    LeadRegistered {
        /// The CRM lead id from the invitation.
        crm_lead_id: String,
        /// The lead's email.
        email: String,
    },
    /// A person's business roles in an organization changed.
    BusinessRolesChanged {
        /// Before.
        before: BTreeSet<BusinessRoleId>,
        /// After.
        after: BTreeSet<BusinessRoleId>,
    },
    /// A person's mandates in an organization changed.
    MandatesChanged {
        /// Before.
        before: BTreeSet<Mandate>,
        /// After.
        after: BTreeSet<Mandate>,
    },
    /// A person's staff roles changed.
    StaffRolesChanged {
        /// Before.
        before: BTreeSet<StaffRole>,
        /// After.
        after: BTreeSet<StaffRole>,
    },
    /// A membership became active.
    MembershipActivated,
    /// A person was removed from an organization.
    MembershipRemoved,
    /// A person was disabled.
    IdentityDisabled {
        /// Why.
        reason: String,
    },
    /// A person was enabled again.
    IdentityEnabled,
    /// A contact detail changed (after verification, for email and phone).
    ContactDetailsChanged {
        /// Which detail.
        field: ContactField,
        /// Value before.
        before: Option<String>,
        /// Value after.
        after: Option<String>,
    },
    /// Sessions were revoked.
    SessionsRevoked {
        /// How many.
        count: usize,
        /// Why.
        reason: RevocationReason,
    },
    /// An organization registration was submitted (codes verified).
    OrgRegistrationSubmitted {
        /// The registration.
        registration: OrgRegistrationId,
        /// The organization's name.
        organization_name: String,
        /// The applicant's email.
        email: String,
    },
    /// An organization registration was approved.
    OrgRegistrationApproved {
        /// The registration.
        registration: OrgRegistrationId,
        /// Whether the CRM's active contract approved it automatically.
        automatic: bool,
    },
    /// An organization registration was rejected.
    OrgRegistrationRejected {
        /// The registration.
        registration: OrgRegistrationId,
        /// The reason.
        reason: String,
    },
    /// A join request was submitted (email verified).
    JoinRequestSubmitted {
        /// The request.
        request: JoinRequestId,
        /// The applicant's email.
        email: String,
    },
    /// A join request was approved.
    JoinRequestApproved {
        /// The request.
        request: JoinRequestId,
    },
    /// A join request was rejected.
    JoinRequestRejected {
        /// The request.
        request: JoinRequestId,
        /// The reason.
        reason: String,
    },
    /// A password was set or changed.
    PasswordChanged,
    /// The CRM linked its contact id to a person.
    CrmContactLinked {
        /// The CRM contact id now linked.
        crm_contact_id: String,
        /// The CRM contact id linked before, if any.
        before: Option<String>,
    },
    /// A sign-in step failed (wrong password, unknown account, wrong code).
    SignInFailed {
        /// Which step.
        step: crate::login::FailedStep,
        /// The client's source key, as the host gave it.
        source: Option<String>,
    },
    /// Repeated failures locked an account or a source for a while.
    SignInLocked {
        /// Account or source.
        scope: crate::login::ThrottleScope,
        /// Failures counted so far.
        failures: u32,
        /// Until when.
        until: DateTime<Utc>,
        /// The client's source key.
        source: Option<String>,
    },
    /// Too many wrong codes ended a login attempt.
    SignInAttemptEnded {
        /// Wrong codes entered.
        wrong_codes: u32,
    },
    /// A person signed in (a new session).
    SignedIn {
        /// The methods used.
        methods: Vec<crate::sessions::AuthMethod>,
        /// The client's source key.
        source: Option<String>,
    },
    /// A password-reset link was sent.
    PasswordResetRequested {
        /// Whether an administrator asked for it.
        by_admin: bool,
    },
    /// A second factor was set up.
    SecondFactorEnrolled {
        /// Which (`otp` for an authenticator app).
        method: crate::sessions::AuthMethod,
        /// Recovery codes issued with it.
        recovery_codes: usize,
    },
    /// A recovery code was used.
    RecoveryCodeUsed {
        /// Codes left.
        remaining: usize,
    },
    /// The person replaced their recovery codes with new ones (the old ones stop working).
    RecoveryCodesRenewed {
        /// Codes issued.
        count: usize,
    },
    /// A chunk of the initial user import was written (one event per chunk, not per row).
    UsersImported {
        /// The chunk's number within its import run.
        chunk: u64,
        /// Identities created.
        created: u32,
        /// Existing identities added to an organization.
        added_to_organization: u32,
        /// The first line of the chunk written in one commit, if any.
        first_line: Option<u64>,
        /// Its last line.
        last_line: Option<u64>,
    },
    /// Stored configuration changed (an SP registered, an identity provider connected, an API
    /// key created or revoked, a webhook endpoint added): the audit trail of configuration.
    SettingChanged {
        /// What the setting configures.
        setting: crate::settings::SettingKind,
        /// Its key.
        key: String,
        /// Created, updated or removed.
        change: crate::settings::SettingChange,
    },
    /// An external identity (provider, subject) was linked to a person.
    FederatedLinkAdded {
        /// The provider.
        provider: String,
        /// What proved that the external identity and the person are the same.
        proof: crate::login::LinkProof,
    },
    /// A person was created at their first sign-in through an identity provider.
    FederatedAccountCreated {
        /// The provider.
        provider: String,
        /// The email the provider asserted.
        email: String,
        /// Given name.
        given_name: String,
        /// Family name.
        family_name: String,
        /// Whether they joined as a lead (a social sign-up) rather than as a member created
        /// just in time by their organization's IdP.
        lead: bool,
    },
}

/// One domain event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainEvent {
    /// Stable id, for de-duplication by receivers.
    pub id: EventId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who caused it.
    pub actor: Actor,
    /// The organization concerned, if any.
    pub organization: Option<OrganizationId>,
    /// The person concerned, if any.
    pub identity: Option<IdentityId>,
    /// What happened.
    pub kind: EventKind,
}

impl DomainEvent {
    /// The key that orders delivery: events of one identity (or else one organization) are
    /// delivered in the order they happened.
    pub fn ordering_key(&self) -> String {
        match (self.identity, self.organization) {
            (Some(identity), _) => format!("identity:{identity}"),
            (None, Some(organization)) => format!("organization:{organization}"),
            (None, None) => "global".to_owned(),
        }
    }

    /// The event's type name as serialized (`lead_registered`, ...).
    pub fn type_name(&self) -> String {
        serde_json::to_value(&self.kind)
            .ok()
            .and_then(|value| {
                value
                    .get("type")
                    .and_then(|t| t.as_str().map(str::to_owned))
            })
            .unwrap_or_default()
    }
}
