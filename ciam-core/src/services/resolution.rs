//! Role resolution: from business roles, through active contracts, to the application roles
//! of one service.

use std::collections::BTreeSet;

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::ids::{IdentityId, OrganizationId, ServiceId};
use crate::store::StoreError;

/// Errors of role resolution.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoleResolutionError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// No such service.
    #[error("service {0} not found")]
    UnknownService(String),
    /// No such identity.
    #[error("identity not found")]
    UnknownIdentity,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The application roles a person holds in one service, ready for an assertion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedRoles {
    /// The service.
    pub service: Option<ServiceId>,
    /// Application roles (empty: no access).
    pub app_roles: BTreeSet<String>,
    /// Keys of the business roles that gave them.
    pub business_roles: BTreeSet<String>,
    /// Organizations through which the access comes.
    pub organizations: BTreeSet<OrganizationId>,
}

impl ResolvedRoles {
    /// Whether the person has any access to the service.
    pub fn has_access(&self) -> bool {
        !self.app_roles.is_empty()
    }
}

/// Role resolution. Get one from [`crate::Ciam::roles`].
pub struct RoleResolution<'a> {
    pub(crate) ctx: &'a Context,
}

impl RoleResolution<'_> {
    /// The application roles of `identity` in the service with key `service_key`: through each
    /// active membership in an active organization that has an effective contract covering the
    /// service. A disabled identity holds nothing. The person themselves or the system (the
    /// SAML IdP) may ask.
    pub async fn resolve(
        &self,
        principal: &Principal,
        identity: IdentityId,
        service_key: &str,
    ) -> Result<ResolvedRoles, RoleResolutionError> {
        authorize(
            principal,
            &Action::ManageOwnProfile,
            &Target::Identity(identity),
        )
        .into_result()?;
        let service = self
            .ctx
            .store
            .service_by_key(service_key)
            .await?
            .ok_or_else(|| RoleResolutionError::UnknownService(service_key.to_owned()))?;
        let person = self
            .ctx
            .store
            .identity(identity)
            .await?
            .ok_or(RoleResolutionError::UnknownIdentity)?;
        let mut resolved = ResolvedRoles {
            service: Some(service.id),
            ..ResolvedRoles::default()
        };
        if !person.is_active() {
            return Ok(resolved);
        }
        let now = self.ctx.now();
        let memberships = self.ctx.store.memberships_of_identity(identity).await?;
        for membership in memberships.iter().filter(|m| m.is_active()) {
            let Some(org) = self.ctx.store.organization(membership.organization).await? else {
                continue;
            };
            if !org.is_active() {
                continue;
            }
            let covered = self
                .ctx
                .store
                .contracts_of_organization(org.id)
                .await?
                .iter()
                .any(|contract| contract.covers(service.id, now));
            if !covered {
                continue;
            }
            for role_id in &membership.business_roles {
                let Some(role) = self.ctx.store.business_role(*role_id).await? else {
                    continue;
                };
                let mut gave = false;
                for grant in role.grants.iter().filter(|g| g.service == service.id) {
                    resolved.app_roles.insert(grant.app_role.clone());
                    gave = true;
                }
                if gave {
                    resolved.business_roles.insert(role.key.clone());
                    resolved.organizations.insert(org.id);
                }
            }
        }
        Ok(resolved)
    }
}
