//! Delegated administration of members: business roles, mandates, staff roles, removal and
//! disabling.

use std::collections::BTreeSet;

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::{ValidationError, bounded_text};
use crate::events::EventKind;
use crate::identities::{
    Identity, IdentityStatus, Mandate, Membership, MembershipStatus, StaffRole,
};
use crate::ids::{IdentityId, MembershipId, OrganizationId, ServiceId};
use crate::organizations::{OrgKind, Organization};
use crate::sessions::{RevocationReason, revoke_sessions_of};
use crate::store::{ChangeSet, Member, Page, PageRequest, StoreError, StoreErrorKind};

/// Errors of administration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdministrationError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No such membership.
    #[error("member not found")]
    UnknownMember,
    /// No such identity.
    #[error("person not found")]
    UnknownIdentity,
    /// No such organization.
    #[error("organization not found")]
    UnknownOrganization,
    /// No such business role.
    #[error("business role {0} not found")]
    UnknownBusinessRole(String),
    /// A ServiceManager mandate names an unknown service.
    #[error("service {0} not found")]
    UnknownService(ServiceId),
    /// The membership was removed.
    #[error("this person is no longer a member")]
    MembershipRemoved,
    /// Staff roles only exist in the provider organization.
    #[error("staff roles can only be given in the provider organization")]
    StaffRoleOutsideProvider,
    /// Changed concurrently; reload and retry.
    #[error("the member was changed at the same time by someone else; reload and retry")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdministrationError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict => Self::Conflict,
            _ => Self::Store(error),
        }
    }
}

/// What a member holds, for [`Administration::set_grants`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberGrants {
    /// Business role keys.
    pub business_roles: Vec<String>,
    /// Mandates.
    pub mandates: BTreeSet<Mandate>,
}

/// Delegated administration. Get one from [`crate::Ciam::administration`].
pub struct Administration<'a> {
    pub(crate) ctx: &'a Context,
}

impl Administration<'_> {
    async fn load(
        &self,
        membership: MembershipId,
    ) -> Result<(Membership, Organization), AdministrationError> {
        let membership = self
            .ctx
            .store
            .membership(membership)
            .await?
            .ok_or(AdministrationError::UnknownMember)?;
        let org = self
            .ctx
            .store
            .organization(membership.organization)
            .await?
            .ok_or(AdministrationError::UnknownOrganization)?;
        Ok((membership, org))
    }

    /// Members of an organization, ordered by email, a page at a time.
    pub async fn members(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        page: PageRequest,
    ) -> Result<Page<Member>, AdministrationError> {
        let org = self
            .ctx
            .store
            .organization(organization)
            .await?
            .ok_or(AdministrationError::UnknownOrganization)?;
        self.ctx
            .authorize_on(principal, Action::ViewOrganization, &org)
            .await??;
        Ok(self.ctx.store.members_of_organization(org.id, page).await?)
    }

    /// One member (membership and person), for someone who may view the organization.
    pub async fn member(
        &self,
        principal: &Principal,
        membership: MembershipId,
    ) -> Result<Member, AdministrationError> {
        let (membership, org) = self.load(membership).await?;
        self.ctx
            .authorize_on(principal, Action::ViewOrganization, &org)
            .await??;
        let identity = self
            .ctx
            .store
            .identity(membership.identity)
            .await?
            .ok_or(AdministrationError::UnknownIdentity)?;
        Ok(Member {
            membership,
            identity,
        })
    }

    /// Replaces a member's business roles. The roles added and removed must be within what the
    /// actor manages (OrgAdmin, or ServiceManager of every service they touch).
    pub async fn set_business_roles(
        &self,
        principal: &Principal,
        membership: MembershipId,
        role_keys: &[String],
    ) -> Result<Membership, AdministrationError> {
        let (mut membership, org) = self.load(membership).await?;
        if membership.status == MembershipStatus::Removed {
            return Err(AdministrationError::MembershipRemoved);
        }
        let mut wanted = BTreeSet::new();
        for key in role_keys {
            let role = self
                .ctx
                .store
                .business_role_by_key(key)
                .await?
                .ok_or_else(|| AdministrationError::UnknownBusinessRole(key.clone()))?;
            wanted.insert(role.id);
        }
        let changed: BTreeSet<_> = wanted
            .symmetric_difference(&membership.business_roles)
            .copied()
            .collect();
        let mut role_services = BTreeSet::new();
        for id in &changed {
            if let Some(role) = self.ctx.store.business_role(*id).await? {
                role_services.extend(role.services());
            }
        }
        self.ctx
            .authorize_on(
                principal,
                Action::AssignBusinessRoles { role_services },
                &org,
            )
            .await??;
        if changed.is_empty() {
            return Ok(membership);
        }
        let now = self.ctx.now();
        let before = std::mem::replace(&mut membership.business_roles, wanted);
        membership.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            Some(membership.identity),
            EventKind::BusinessRolesChanged {
                before,
                after: membership.business_roles.clone(),
            },
            now,
        ));
        changes.put(membership.clone());
        self.ctx.store.commit(changes).await?;
        membership.version += 1;
        Ok(membership)
    }

    /// Replaces a member's mandates (delegation). Every mandate added or removed must be one the
    /// actor could exercise themselves.
    pub async fn set_mandates(
        &self,
        principal: &Principal,
        membership: MembershipId,
        mandates: BTreeSet<Mandate>,
    ) -> Result<Membership, AdministrationError> {
        let (mut membership, org) = self.load(membership).await?;
        if membership.status == MembershipStatus::Removed {
            return Err(AdministrationError::MembershipRemoved);
        }
        for mandate in &mandates {
            if let Mandate::ServiceManager(service) = mandate {
                if self.ctx.store.service(*service).await?.is_none() {
                    return Err(AdministrationError::UnknownService(*service));
                }
            }
        }
        let changed: BTreeSet<Mandate> = mandates
            .symmetric_difference(&membership.mandates)
            .copied()
            .collect();
        self.ctx
            .authorize_on(
                principal,
                Action::ChangeMandates {
                    mandates: changed.clone(),
                },
                &org,
            )
            .await??;
        if changed.is_empty() {
            return Ok(membership);
        }
        let now = self.ctx.now();
        let before = std::mem::replace(&mut membership.mandates, mandates);
        membership.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            Some(membership.identity),
            EventKind::MandatesChanged {
                before,
                after: membership.mandates.clone(),
            },
            now,
        ));
        changes.put(membership.clone());
        self.ctx.store.commit(changes).await?;
        membership.version += 1;
        Ok(membership)
    }

    /// Replaces a member's staff roles (provider organization; Administrator or system).
    pub async fn set_staff_roles(
        &self,
        principal: &Principal,
        membership: MembershipId,
        roles: BTreeSet<StaffRole>,
    ) -> Result<Membership, AdministrationError> {
        let (mut membership, org) = self.load(membership).await?;
        if org.kind != OrgKind::Provider {
            return Err(AdministrationError::StaffRoleOutsideProvider);
        }
        self.ctx
            .authorize_on(principal, Action::ManageStaff, &org)
            .await??;
        if membership.staff_roles == roles {
            return Ok(membership);
        }
        let now = self.ctx.now();
        let before = std::mem::replace(&mut membership.staff_roles, roles);
        membership.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            Some(membership.identity),
            EventKind::StaffRolesChanged {
                before,
                after: membership.staff_roles.clone(),
            },
            now,
        ));
        changes.put(membership.clone());
        self.ctx.store.commit(changes).await?;
        membership.version += 1;
        Ok(membership)
    }

    /// Removes a member from the organization: roles and mandates there stop counting and the
    /// person's sessions end. The actor needs user management there, the right to take away
    /// every mandate the member holds, and, for a staff member of the provider, staff
    /// management.
    pub async fn remove_member(
        &self,
        principal: &Principal,
        membership: MembershipId,
    ) -> Result<Membership, AdministrationError> {
        let (mut membership, org) = self.load(membership).await?;
        self.ctx
            .authorize_on(principal, Action::RemoveMember, &org)
            .await??;
        // Removing someone who holds mandates is also taking those mandates away.
        if !membership.mandates.is_empty() {
            self.ctx
                .authorize_on(
                    principal,
                    Action::ChangeMandates {
                        mandates: membership.mandates.clone(),
                    },
                    &org,
                )
                .await??;
        }
        // Removing a staff member from the provider takes their staff roles away too: that is
        // staff management (an Administrator), not user management.
        if org.kind == OrgKind::Provider && !membership.staff_roles.is_empty() {
            self.ctx
                .authorize_on(principal, Action::ManageStaff, &org)
                .await??;
        }
        if membership.status == MembershipStatus::Removed {
            return Ok(membership);
        }
        let now = self.ctx.now();
        membership.status = MembershipStatus::Removed;
        membership.updated_at = now;
        let actor = principal.actor();
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &actor,
            Some(org.id),
            Some(membership.identity),
            EventKind::MembershipRemoved,
            now,
        ));
        revoke_sessions_of(
            self.ctx,
            &actor,
            membership.identity,
            RevocationReason::MembershipRemoved,
            now,
            &mut changes,
        )
        .await?;
        changes.put(membership.clone());
        self.ctx.store.commit(changes).await?;
        membership.version += 1;
        Ok(membership)
    }

    async fn identity_target(&self, identity: &Identity) -> Result<Target, AdministrationError> {
        // Disabling staff needs an Administrator: target the provider organization then.
        for membership in self.ctx.store.memberships_of_identity(identity.id).await? {
            if let Some(org) = self.ctx.store.organization(membership.organization).await? {
                if org.kind == OrgKind::Provider && membership.is_active() {
                    return Ok(Target::Organization(self.ctx.org_target(&org).await?));
                }
            }
        }
        Ok(Target::Global)
    }

    /// Disables a person everywhere (staff): sessions end, nothing is granted any more.
    pub async fn disable(
        &self,
        principal: &Principal,
        identity: IdentityId,
        reason: &str,
    ) -> Result<Identity, AdministrationError> {
        let reason = bounded_text("reason", reason, 500)?;
        let mut person = self
            .ctx
            .store
            .identity(identity)
            .await?
            .ok_or(AdministrationError::UnknownIdentity)?;
        let target = self.identity_target(&person).await?;
        authorize(principal, &Action::DisableIdentity, &target).into_result()?;
        if person.status == IdentityStatus::Disabled {
            return Ok(person);
        }
        let now = self.ctx.now();
        person.status = IdentityStatus::Disabled;
        person.disabled_reason = Some(reason.clone());
        person.updated_at = now;
        let actor = principal.actor();
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &actor,
            None,
            Some(person.id),
            EventKind::IdentityDisabled { reason },
            now,
        ));
        revoke_sessions_of(
            self.ctx,
            &actor,
            person.id,
            RevocationReason::IdentityDisabled,
            now,
            &mut changes,
        )
        .await?;
        changes.put(person.clone());
        self.ctx.store.commit(changes).await?;
        person.version += 1;
        Ok(person)
    }

    /// Enables a disabled person again (staff).
    pub async fn enable(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Identity, AdministrationError> {
        let mut person = self
            .ctx
            .store
            .identity(identity)
            .await?
            .ok_or(AdministrationError::UnknownIdentity)?;
        let target = self.identity_target(&person).await?;
        authorize(principal, &Action::DisableIdentity, &target).into_result()?;
        if person.status != IdentityStatus::Disabled {
            return Ok(person);
        }
        let now = self.ctx.now();
        person.status = IdentityStatus::Active;
        person.disabled_reason = None;
        person.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            None,
            Some(person.id),
            EventKind::IdentityEnabled,
            now,
        ));
        changes.put(person.clone());
        self.ctx.store.commit(changes).await?;
        person.version += 1;
        Ok(person)
    }

    /// Search people across organizations by email prefix or name (staff).
    pub async fn search(
        &self,
        principal: &Principal,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Identity>, AdministrationError> {
        authorize(principal, &Action::DisableIdentity, &Target::Global).into_result()?;
        let query = bounded_text("search", query, 200)?;
        Ok(self.ctx.store.search_identities(&query, limit).await?)
    }
}
