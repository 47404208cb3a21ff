//! Building principals: a person's grants, resolved from their memberships, organizations and
//! contracts at one instant. [`crate::authz::authorize`] then decides without I/O.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::authz::{IntegrationPrincipal, IntegrationScope, OrgGrant, Principal, UserPrincipal};
use crate::ciam::Context;
use crate::ids::IdentityId;
use crate::organizations::OrgKind;
use crate::store::{IdentityAccess, StoreError};

/// Builds principals. Get one from [`crate::Ciam::principals`].
pub struct Principals<'a> {
    pub(crate) ctx: &'a Context,
}

impl Principals<'_> {
    /// The principal of a signed-in person, with grants as of now. Only active memberships in
    /// active organizations grant anything; staff roles count only in the active provider
    /// organization; a disabled identity is returned inactive (denied everything).
    pub async fn for_identity(&self, identity: IdentityId) -> Result<Principal, StoreError> {
        resolve_user(self.ctx, identity).await.map(Principal::User)
    }

    /// The principal of an integration client (the CRM) with its scopes.
    pub fn integration(
        &self,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = IntegrationScope>,
    ) -> Principal {
        Principal::Integration(IntegrationPrincipal {
            name: name.into(),
            scopes: scopes.into_iter().collect(),
        })
    }
}

pub(crate) async fn resolve_user(
    ctx: &Context,
    identity_id: IdentityId,
) -> Result<UserPrincipal, StoreError> {
    let access = ctx
        .store
        .identity_access(identity_id)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("identity {identity_id}")))?;
    Ok(user_principal(&access, ctx.now()))
}

/// The principal that the records of `access` give at `now`: only active memberships in active
/// organizations grant anything, staff roles count only in the provider organization, services
/// only through contracts effective at `now`.
pub(crate) fn user_principal(access: &IdentityAccess, now: DateTime<Utc>) -> UserPrincipal {
    let identity = &access.identity;
    let mut principal = UserPrincipal {
        identity: identity.id,
        active: identity.is_active(),
        staff_roles: BTreeSet::new(),
        grants: Vec::new(),
    };
    if !principal.active {
        return principal;
    }
    for entry in &access.memberships {
        let membership = &entry.membership;
        if !membership.is_active() {
            continue;
        }
        let Some(organization) = &entry.organization else {
            continue;
        };
        if !organization.is_active() {
            continue;
        }
        if organization.kind == OrgKind::Provider {
            principal
                .staff_roles
                .extend(membership.staff_roles.iter().copied());
        }
        let covered_services = entry
            .contracts
            .iter()
            .filter(|contract| contract.is_effective(now))
            .flat_map(|contract| contract.services.iter().copied())
            .collect();
        principal.grants.push(OrgGrant {
            organization: organization.id,
            mandates: membership.mandates.clone(),
            covered_services,
        });
    }
    principal
}
