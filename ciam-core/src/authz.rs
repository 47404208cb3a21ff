//! Authorization: who may do what, where. One pure function, [`authorize`], decides; every
//! façade operation calls it before it changes anything.
//!
//! Rules, in one place:
//! - A signed-in person acts through **grants**: one per active membership in an active
//!   organization, carrying that membership's mandates. A grant in organization A covers A and
//!   every sub-organization of A.
//! - [`Mandate::OrgAdmin`] covers every administrative action in its organizations.
//!   [`Mandate::UserManager`] covers inviting, approving and removing users.
//!   [`Mandate::ServiceManager`] covers assigning the roles of its service, and counts only
//!   while an effective contract of its organization covers that service.
//! - Nobody grants what they could not exercise themselves: business roles need OrgAdmin or a
//!   ServiceManager mandate for every service the roles touch; a mandate needs OrgAdmin or the
//!   same mandate.
//! - Staff act through staff roles held in the active provider organization: Administrator
//!   does everything; CustomerService manages users of customer and partner organizations;
//!   BackOffice decides registrations and held invitations; AccountManager provisions
//!   organizations and contracts and invites contact persons.
//! - A disabled identity, a removed membership, a suspended organization or an ended contract
//!   grants nothing (the grants are built that way by [`crate::Ciam::principals`]).
//! - Integrations (the CRM) act through scopes; the system acts for scheduled work.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::identities::{Mandate, StaffRole};
use crate::ids::{IdentityId, OrganizationId, ServiceId};
use crate::organizations::OrgKind;

/// Who did something, as recorded in events and records.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum Actor {
    /// A signed-in person.
    Identity(IdentityId),
    /// An integration, by name (the CRM's API key).
    Integration(String),
    /// ciam-rs itself (scheduled work, automatic decisions).
    System,
    /// Someone not signed in (self-registration, invitation acceptance).
    Anonymous,
}

/// What an integration (API client) may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationScope {
    /// Upsert organizations and contracts, end contracts, upsert contacts.
    Provisioning,
    /// Invite people (single and batch).
    Invitations,
    /// Invite leads.
    Leads,
    /// Read organizations, users and events.
    Read,
}

/// The mandates a person holds in one organization (through an active membership in an
/// active organization).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgGrant {
    /// The organization.
    pub organization: OrganizationId,
    /// The mandates held there.
    pub mandates: BTreeSet<Mandate>,
    /// Services covered by an effective contract of that organization.
    pub covered_services: BTreeSet<ServiceId>,
}

/// A signed-in person with their resolved grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserPrincipal {
    /// The person.
    pub identity: IdentityId,
    /// Whether the identity is active; an inactive one is denied everything.
    pub active: bool,
    /// Staff roles (from an active membership in the active provider organization).
    pub staff_roles: BTreeSet<StaffRole>,
    /// Grants, one per active membership in an active organization.
    pub grants: Vec<OrgGrant>,
}

/// An integration client (the CRM) with its scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationPrincipal {
    /// The client's name (as on its API key).
    pub name: String,
    /// What it may do.
    pub scopes: BTreeSet<IntegrationScope>,
}

/// Whoever is acting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Nobody signed in.
    Anonymous,
    /// A signed-in person.
    User(UserPrincipal),
    /// An integration.
    Integration(IntegrationPrincipal),
    /// ciam-rs itself.
    System,
}

impl Principal {
    /// The actor to record in events.
    pub fn actor(&self) -> Actor {
        match self {
            Self::Anonymous => Actor::Anonymous,
            Self::User(user) => Actor::Identity(user.identity),
            Self::Integration(integration) => Actor::Integration(integration.name.clone()),
            Self::System => Actor::System,
        }
    }

    /// The signed-in identity, if any.
    pub fn identity(&self) -> Option<IdentityId> {
        match self {
            Self::User(user) => Some(user.identity),
            Self::Anonymous | Self::Integration(_) | Self::System => None,
        }
    }
}

/// The organization an action targets, with its lineage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgTarget {
    /// The organization.
    pub id: OrganizationId,
    /// Its kind.
    pub kind: OrgKind,
    /// Its ancestors, parent first.
    pub ancestors: Vec<OrganizationId>,
}

impl OrgTarget {
    /// Whether a grant in `organization` covers this target (itself or an ancestor).
    pub fn is_within(&self, organization: OrganizationId) -> bool {
        self.id == organization || self.ancestors.contains(&organization)
    }
}

/// What is being done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create or update an organization (CRM provisioning).
    ProvisionOrganization,
    /// Create, update, suspend or end a contract.
    ManageContracts,
    /// Define services and business roles.
    ManageCatalog,
    /// See an organization, its members and its pending work.
    ViewOrganization,
    /// Change an organization's branding and rules.
    ConfigureOrganization,
    /// Invite a person with these business-role services and mandates.
    InviteMember {
        /// Services touched by the business roles given.
        role_services: BTreeSet<ServiceId>,
        /// Mandates given.
        mandates: BTreeSet<Mandate>,
    },
    /// Invite a lead.
    InviteLead,
    /// Release or revoke an invitation held for review.
    ReviewHeldInvitation,
    /// Resend or revoke an invitation.
    ManageInvitation,
    /// Approve or reject a request to join.
    DecideJoinRequest,
    /// Approve or reject an organization registration.
    DecideOrgRegistration,
    /// Change a member's business roles (added or removed ones touch these services).
    AssignBusinessRoles {
        /// Services touched by the roles added or removed.
        role_services: BTreeSet<ServiceId>,
    },
    /// Give or take away mandates.
    ChangeMandates {
        /// Mandates added or removed.
        mandates: BTreeSet<Mandate>,
    },
    /// Remove a member from the organization.
    RemoveMember,
    /// Disable or enable an identity everywhere.
    DisableIdentity,
    /// Change staff roles.
    ManageStaff,
    /// Change one's own profile or sessions.
    ManageOwnProfile,
    /// Read the audit log.
    ViewAudit,
    /// Accept an invitation or submit a registration (the token or codes are the proof).
    SelfService,
    /// Add, change or remove an identity provider connection (an organization's own IdP; a
    /// social provider on the global target).
    ManageIdentityProviders,
}

/// What [`authorize`] is asked about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Nothing in particular (catalog, global queues, provisioning).
    Global,
    /// An organization (or something in it).
    Organization(OrgTarget),
    /// A person (own profile; disabling).
    Identity(IdentityId),
}

/// Why something was denied. Exhaustive on purpose: a new reason must be handled everywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    /// Nobody is signed in.
    #[error("sign in first")]
    NotSignedIn,
    /// The acting identity is not active.
    #[error("your account is not active")]
    InactiveIdentity,
    /// No mandate covers the target organization.
    #[error("you have no mandate for this organization")]
    OutsideMandate,
    /// The mandates held there do not include what the action needs.
    #[error("your mandate does not allow this: {needed}")]
    MandateTooNarrow {
        /// What would be needed.
        needed: &'static str,
    },
    /// Granting this would give more than the granter holds.
    #[error("you cannot grant what you do not hold: {what}")]
    Escalation {
        /// What could not be granted.
        what: String,
    },
    /// A staff role is needed.
    #[error("this needs a staff role")]
    StaffOnly,
    /// The integration lacks a scope.
    #[error("the API key lacks the scope {0:?}")]
    MissingScope(IntegrationScope),
    /// One's own profile only.
    #[error("you can only change your own profile")]
    NotSelf,
    /// The action does not apply to that target.
    #[error("this action does not apply here")]
    WrongTarget,
}

/// The outcome of [`authorize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Denied, with the reason.
    Deny(DenyReason),
}

impl Decision {
    /// Whether the decision allows.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow)
    }

    /// `Ok(())` or the reason.
    pub fn into_result(self) -> Result<(), DenyReason> {
        match self {
            Self::Allow => Ok(()),
            Self::Deny(reason) => Err(reason),
        }
    }
}

fn deny(reason: DenyReason) -> Decision {
    Decision::Deny(reason)
}

/// Decides whether `principal` may do `action` on `target`. Pure: no I/O, no clock.
pub fn authorize(principal: &Principal, action: &Action, target: &Target) -> Decision {
    match principal {
        Principal::System => Decision::Allow,
        Principal::Anonymous => match action {
            Action::SelfService => Decision::Allow,
            _ => deny(DenyReason::NotSignedIn),
        },
        Principal::Integration(integration) => authorize_integration(integration, action, target),
        Principal::User(user) => {
            if !user.active {
                return deny(DenyReason::InactiveIdentity);
            }
            authorize_user(user, action, target)
        }
    }
}

fn authorize_integration(
    integration: &IntegrationPrincipal,
    action: &Action,
    target: &Target,
) -> Decision {
    let needed = match action {
        Action::ProvisionOrganization | Action::ManageContracts => IntegrationScope::Provisioning,
        Action::InviteMember { .. } | Action::ManageInvitation => IntegrationScope::Invitations,
        Action::InviteLead => IntegrationScope::Leads,
        Action::ViewOrganization | Action::ViewAudit => IntegrationScope::Read,
        Action::SelfService => return Decision::Allow,
        Action::ManageCatalog
        | Action::ConfigureOrganization
        | Action::ReviewHeldInvitation
        | Action::DecideJoinRequest
        | Action::DecideOrgRegistration
        | Action::AssignBusinessRoles { .. }
        | Action::ChangeMandates { .. }
        | Action::RemoveMember
        | Action::DisableIdentity
        | Action::ManageStaff
        | Action::ManageIdentityProviders
        | Action::ManageOwnProfile => return deny(DenyReason::StaffOnly),
    };
    // Integrations act on customer and partner organizations, never on the provider itself.
    if let Target::Organization(org) = target {
        if org.kind == OrgKind::Provider {
            return deny(DenyReason::OutsideMandate);
        }
    }
    if integration.scopes.contains(&needed) {
        Decision::Allow
    } else {
        deny(DenyReason::MissingScope(needed))
    }
}

fn staff_allows(staff: &BTreeSet<StaffRole>, action: &Action, target: &Target) -> bool {
    if staff.contains(&StaffRole::Administrator) {
        return true;
    }
    let customer_side = match target {
        Target::Organization(org) => org.kind != OrgKind::Provider,
        Target::Global | Target::Identity(_) => true,
    };
    let has = |role| staff.contains(&role);
    match action {
        Action::ProvisionOrganization | Action::ManageContracts => {
            has(StaffRole::AccountManager) && customer_side
        }
        Action::ViewOrganization | Action::ViewAudit => customer_side && !staff.is_empty(),
        Action::InviteMember { .. } | Action::ManageInvitation => {
            customer_side && (has(StaffRole::CustomerService) || has(StaffRole::AccountManager))
        }
        Action::InviteLead => {
            customer_side && (has(StaffRole::AccountManager) || has(StaffRole::CustomerService))
        }
        Action::ReviewHeldInvitation | Action::DecideOrgRegistration => {
            has(StaffRole::BackOffice) && customer_side
        }
        Action::DecideJoinRequest
        | Action::AssignBusinessRoles { .. }
        | Action::ChangeMandates { .. }
        | Action::RemoveMember
        | Action::ConfigureOrganization => customer_side && has(StaffRole::CustomerService),
        Action::DisableIdentity => customer_side && has(StaffRole::CustomerService),
        Action::ManageCatalog | Action::ManageStaff | Action::ManageIdentityProviders => false,
        Action::ManageOwnProfile | Action::SelfService => false,
    }
}

fn authorize_user(user: &UserPrincipal, action: &Action, target: &Target) -> Decision {
    // Self-service first: own profile only.
    match action {
        Action::ManageOwnProfile => {
            return match target {
                Target::Identity(identity) if *identity == user.identity => Decision::Allow,
                Target::Identity(_) => deny(DenyReason::NotSelf),
                Target::Global | Target::Organization(_) => deny(DenyReason::WrongTarget),
            };
        }
        Action::SelfService => return Decision::Allow,
        _ => {}
    }

    if staff_allows(&user.staff_roles, action, target) {
        return Decision::Allow;
    }

    let org = match target {
        Target::Organization(org) => org,
        Target::Global | Target::Identity(_) => {
            return deny(DenyReason::StaffOnly);
        }
    };

    // Union of mandates held in organizations covering the target, and of the services their
    // contracts cover (for ServiceManager).
    let covering: Vec<&OrgGrant> = user
        .grants
        .iter()
        .filter(|grant| org.is_within(grant.organization))
        .collect();
    if covering.iter().all(|grant| grant.mandates.is_empty()) {
        return deny(DenyReason::OutsideMandate);
    }
    let org_admin = covering
        .iter()
        .any(|grant| grant.mandates.contains(&Mandate::OrgAdmin));
    let user_manager = org_admin
        || covering
            .iter()
            .any(|grant| grant.mandates.contains(&Mandate::UserManager));
    let manages_service = |service: ServiceId| {
        org_admin
            || covering.iter().any(|grant| {
                grant.mandates.contains(&Mandate::ServiceManager(service))
                    && grant.covered_services.contains(&service)
            })
    };
    let can_grant_mandate = |mandate: &Mandate| match mandate {
        Mandate::OrgAdmin => org_admin,
        Mandate::UserManager => user_manager,
        Mandate::ServiceManager(service) => manages_service(*service),
    };
    let roles_ok = |services: &BTreeSet<ServiceId>| -> Result<(), DenyReason> {
        match services.iter().find(|service| !manages_service(**service)) {
            None => Ok(()),
            Some(service) => Err(DenyReason::Escalation {
                what: format!("roles of service {service}"),
            }),
        }
    };

    match action {
        Action::ViewOrganization | Action::ViewAudit => Decision::Allow,
        Action::ConfigureOrganization | Action::ManageIdentityProviders => {
            if org_admin {
                Decision::Allow
            } else {
                deny(DenyReason::MandateTooNarrow {
                    needed: "organization administrator",
                })
            }
        }
        Action::InviteMember {
            role_services,
            mandates,
        } => {
            if !user_manager {
                return deny(DenyReason::MandateTooNarrow {
                    needed: "user manager",
                });
            }
            if let Err(reason) = roles_ok(role_services) {
                return deny(reason);
            }
            match mandates.iter().find(|mandate| !can_grant_mandate(mandate)) {
                None => Decision::Allow,
                Some(mandate) => deny(DenyReason::Escalation {
                    what: mandate.to_string(),
                }),
            }
        }
        Action::ManageInvitation | Action::DecideJoinRequest | Action::RemoveMember => {
            if user_manager {
                Decision::Allow
            } else {
                deny(DenyReason::MandateTooNarrow {
                    needed: "user manager",
                })
            }
        }
        Action::AssignBusinessRoles { role_services } => {
            if role_services.is_empty() && !user_manager {
                // Roles without services (such as `lead`) are user management.
                return deny(DenyReason::MandateTooNarrow {
                    needed: "user manager",
                });
            }
            match roles_ok(role_services) {
                Ok(()) => Decision::Allow,
                Err(reason) => deny(reason),
            }
        }
        Action::ChangeMandates { mandates } => {
            match mandates.iter().find(|mandate| !can_grant_mandate(mandate)) {
                None => Decision::Allow,
                Some(mandate) => deny(DenyReason::Escalation {
                    what: mandate.to_string(),
                }),
            }
        }
        Action::ProvisionOrganization
        | Action::ManageContracts
        | Action::ManageCatalog
        | Action::InviteLead
        | Action::ReviewHeldInvitation
        | Action::DecideOrgRegistration
        | Action::DisableIdentity
        | Action::ManageStaff => deny(DenyReason::StaffOnly),
        Action::ManageOwnProfile | Action::SelfService => Decision::Allow,
    }
}
