//! Role resolution: from business roles, through active contracts, to the application roles
//! of one service.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::ids::{IdentityId, OrganizationId, ServiceId};
use crate::services::Service;
use crate::store::{IdentityAccess, StoreError};

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
        let service = self.service(service_key).await?;
        let access = self
            .ctx
            .store
            .identity_access(identity)
            .await?
            .ok_or(RoleResolutionError::UnknownIdentity)?;
        self.resolve_with(&access, &service).await
    }

    /// Like [`RoleResolution::resolve`] for the records of a person already read (for example
    /// by the session check of the same request), so that they are not read twice. The same
    /// principals may ask.
    pub async fn resolve_in(
        &self,
        principal: &Principal,
        access: &IdentityAccess,
        service_key: &str,
    ) -> Result<ResolvedRoles, RoleResolutionError> {
        // Asked before the service is looked up: a refused principal learns nothing of it.
        authorize(
            principal,
            &Action::ManageOwnProfile,
            &Target::Identity(access.identity.id),
        )
        .into_result()?;
        let service = self.service(service_key).await?;
        self.resolve_with(access, &service).await
    }

    /// The service with `key` (through the catalog cache, see [`crate::Policy::catalog_max_age`]).
    async fn service(&self, key: &str) -> Result<Arc<Service>, RoleResolutionError> {
        self.ctx
            .catalog_cache
            .service_by_key(self.ctx.store.as_ref(), key, self.ctx.now())
            .await?
            .ok_or_else(|| RoleResolutionError::UnknownService(key.to_owned()))
    }

    /// The resolution itself; the callers above have authorized the principal.
    async fn resolve_with(
        &self,
        access: &IdentityAccess,
        service: &Service,
    ) -> Result<ResolvedRoles, RoleResolutionError> {
        let mut resolved = ResolvedRoles {
            service: Some(service.id),
            ..ResolvedRoles::default()
        };
        if !access.identity.is_active() {
            return Ok(resolved);
        }
        let now = self.ctx.now();
        for entry in access
            .memberships
            .iter()
            .filter(|m| m.membership.is_active())
        {
            let Some(org) = &entry.organization else {
                continue;
            };
            if !org.is_active() {
                continue;
            }
            if !entry
                .contracts
                .iter()
                .any(|contract| contract.covers(service.id, now))
            {
                continue;
            }
            for role_id in &entry.membership.business_roles {
                let Some(role) = self
                    .ctx
                    .catalog_cache
                    .business_role(self.ctx.store.as_ref(), *role_id, now)
                    .await?
                else {
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
