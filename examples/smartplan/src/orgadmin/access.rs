//! [`OrgAccess`]: the organization named in the path, seen through the acting person's
//! mandates. An organization the person may not view answers 404, exactly like one that does
//! not exist, so that ids of other organizations reveal nothing.

use ciam_core::Principal;
use ciam_core::authz::{Action, Target, authorize};
use ciam_core::identities::Mandate;
use ciam_core::ids::{OrganizationId, ServiceId};
use ciam_core::organizations::Organization;
use ciam_core::services::{BusinessRole, Service};

use crate::state::AppState;
use crate::web::{Branding, SignedIn, WebError};

/// The 404 for an organization the person may not see (or that does not exist).
pub fn unknown_organization() -> WebError {
    WebError::not_found("there is no organization at this address that you can administer")
}

/// An organization and what the signed-in person may do there.
#[derive(Clone, Debug)]
pub struct OrgAccess {
    /// The organization.
    pub organization: Organization,
    /// The acting principal.
    pub principal: Principal,
    target: Target,
}

impl OrgAccess {
    /// The organization `id` (text from the path) for `me`; 404 when it does not exist, the id
    /// is malformed, or `me` may not view it.
    pub async fn load(state: &AppState, me: &SignedIn, id: &str) -> Result<Self, WebError> {
        let id: OrganizationId = id.parse().map_err(|_| unknown_organization())?;
        let organization = state
            .store
            .organization(id)
            .await?
            .ok_or_else(unknown_organization)?;
        let target = Target::Organization(state.ciam.org_target(&organization).await?);
        let access = Self {
            organization,
            principal: me.principal.clone(),
            target,
        };
        if !access.allows(&Action::ViewOrganization) {
            return Err(unknown_organization());
        }
        Ok(access)
    }

    /// Whether the person may do `action` here.
    pub fn allows(&self, action: &Action) -> bool {
        authorize(&self.principal, action, &self.target).is_allowed()
    }

    /// Invite, approve, remove users (OrgAdmin or UserManager here, or staff).
    pub fn manages_users(&self) -> bool {
        self.allows(&Action::ManageInvitation)
    }

    /// Whether the person may assign (add or take away) a business role.
    pub fn may_assign(&self, role: &BusinessRole) -> bool {
        self.allows(&Action::AssignBusinessRoles {
            role_services: role.services(),
        })
    }

    /// Whether the person may give (or take away) a mandate.
    pub fn may_delegate(&self, mandate: Mandate) -> bool {
        self.allows(&Action::ChangeMandates {
            mandates: [mandate].into_iter().collect(),
        })
    }

    /// Whether the person manages anything here beyond viewing.
    pub fn administers(&self, services: &[Service], roles: &[BusinessRole]) -> bool {
        self.manages_users()
            || roles.iter().any(|role| self.may_assign(role))
            || services
                .iter()
                .any(|service| self.may_delegate(Mandate::ServiceManager(service.id)))
    }

    /// The organization's id.
    pub fn id(&self) -> OrganizationId {
        self.organization.id
    }

    /// The organization's branding.
    pub fn branding(&self) -> Branding {
        Branding::for_organization(&self.organization)
    }

    /// `/admin/orgs/{id}` plus `rest`.
    pub fn href(&self, rest: &str) -> String {
        format!("/admin/orgs/{}{rest}", self.organization.id)
    }
}

/// The name of a service by id, for display.
pub fn service_name(services: &[Service], id: ServiceId) -> String {
    services
        .iter()
        .find(|service| service.id == id)
        .map_or_else(|| id.to_string(), |service| service.name.clone())
}

/// A mandate in words.
pub fn mandate_label(services: &[Service], mandate: &Mandate) -> String {
    match mandate {
        Mandate::OrgAdmin => "Contact person (administers everything)".to_owned(),
        Mandate::UserManager => "User manager (invites, approves and removes users)".to_owned(),
        Mandate::ServiceManager(service) => format!(
            "Service manager of {} (assigns its roles)",
            service_name(services, *service)
        ),
    }
}
