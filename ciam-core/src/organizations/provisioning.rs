//! CRM provisioning of organizations and contracts, and the contract lifecycle that drives
//! access.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::{EmailDomain, ValidationError, bounded_text, key_text};
use crate::events::EventKind;
use crate::identities::{IdentityStatus, MembershipStatus};
use crate::ids::{ContractId, IdentityId, OrganizationId, ServiceId};
use crate::organizations::{
    Branding, Contract, ContractStatus, OrgKind, OrgPolicy, OrgStatus, Organization,
};
use crate::sessions::{RevocationReason, revoke_sessions_of};
use crate::store::{ChangeSet, PageRequest, StoreError, StoreErrorKind};

/// Errors of provisioning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// No organization with that CRM account id (or id).
    #[error("organization {0} not found")]
    UnknownOrganization(String),
    /// No contract with that CRM contract id.
    #[error("contract {0} not found")]
    UnknownContract(String),
    /// No service with that key.
    #[error("service {0} not found")]
    UnknownService(String),
    /// The contract belongs to another organization.
    #[error("contract {0} belongs to another organization")]
    ContractOfOtherOrganization(String),
    /// An ended contract cannot change any more.
    #[error("contract {0} has ended and cannot be changed; create a new contract")]
    ContractEnded(String),
    /// The parent would make a cycle.
    #[error("an organization cannot be its own ancestor")]
    ParentCycle,
    /// The provider organization is not provisioned from the CRM.
    #[error("the provider organization cannot be provisioned through the CRM")]
    ProviderNotProvisionable,
    /// The validity dates are reversed.
    #[error("valid_until must be after valid_from")]
    InvalidValidity,
    /// An email domain already belongs to another organization.
    #[error("email domain is already verified by another organization")]
    DomainTaken,
    /// The record changed concurrently; retry.
    #[error("the record was changed concurrently; retry")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ProvisioningError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict => Self::Conflict,
            StoreErrorKind::Unique if error.field() == Some("email_domain") => Self::DomainTaken,
            _ => Self::Store(error),
        }
    }
}

/// Create or update an organization by CRM account id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationUpsert {
    /// The CRM account id (the key).
    pub crm_account_id: String,
    /// Display name.
    pub name: String,
    /// Customer (default) or partner.
    #[serde(default = "default_kind")]
    pub kind: OrgKind,
    /// The parent's CRM account id, for a sub-organization.
    #[serde(default)]
    pub parent_crm_account_id: Option<String>,
    /// Verified email domains.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Active (default) or suspended.
    #[serde(default)]
    pub suspended: bool,
}

fn default_kind() -> OrgKind {
    OrgKind::Customer
}

/// Create or update a contract by CRM contract id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractUpsert {
    /// The CRM contract id (the key).
    pub crm_contract_id: String,
    /// The organization's CRM account id.
    pub crm_account_id: String,
    /// Keys of the services covered.
    pub services: Vec<String>,
    /// Status.
    pub status: ContractStatus,
    /// Start of validity.
    #[serde(default)]
    pub valid_from: Option<DateTime<Utc>>,
    /// End of validity (exclusive).
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
}

/// A lifecycle change of a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractChange {
    /// Suspend (access stops; may resume).
    Suspend,
    /// Resume a suspended contract.
    Resume,
    /// End for good.
    End,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Identities disabled because they had no access left after the grace period.
    pub disabled: Vec<IdentityId>,
}

/// Organizations and contracts. Get one from [`crate::Ciam::organizations`].
pub struct Provisioning<'a> {
    pub(crate) ctx: &'a Context,
}

impl Provisioning<'_> {
    /// An organization by id; needs a view right on it.
    pub async fn get(
        &self,
        principal: &Principal,
        id: OrganizationId,
    ) -> Result<Organization, ProvisioningError> {
        let org = self
            .ctx
            .store
            .organization(id)
            .await?
            .ok_or_else(|| ProvisioningError::UnknownOrganization(id.to_string()))?;
        self.ctx
            .authorize_on(principal, Action::ViewOrganization, &org)
            .await??;
        Ok(org)
    }

    /// An organization by CRM account id; needs a view right on it.
    pub async fn by_crm_account(
        &self,
        principal: &Principal,
        crm_account_id: &str,
    ) -> Result<Organization, ProvisioningError> {
        let org = self
            .ctx
            .store
            .organization_by_crm_account(crm_account_id)
            .await?
            .ok_or_else(|| ProvisioningError::UnknownOrganization(crm_account_id.to_owned()))?;
        self.ctx
            .authorize_on(principal, Action::ViewOrganization, &org)
            .await??;
        Ok(org)
    }

    /// Contracts of an organization; needs a view right on it.
    pub async fn contracts(
        &self,
        principal: &Principal,
        organization: OrganizationId,
    ) -> Result<Vec<Contract>, ProvisioningError> {
        let org = self.get(principal, organization).await?;
        Ok(self.ctx.store.contracts_of_organization(org.id).await?)
    }

    /// Creates the provider organization (the company running ciam-rs). System or
    /// Administrator only; idempotent by name.
    pub async fn create_provider(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Organization, ProvisioningError> {
        authorize(principal, &Action::ManageStaff, &Target::Global).into_result()?;
        let name = bounded_text("organization name", name, 200)?;
        let now = self.ctx.now();
        let org = Organization {
            id: OrganizationId::generate(self.ctx.random.as_ref()),
            version: 0,
            kind: OrgKind::Provider,
            status: OrgStatus::Active,
            name: name.clone(),
            parent: None,
            crm_account_id: None,
            email_domains: BTreeSet::new(),
            join_code: None,
            branding: Branding::default(),
            policy: OrgPolicy {
                require_mfa: false,
                allow_join_requests: false,
            },
            created_at: now,
            updated_at: now,
        };
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            None,
            EventKind::OrganizationCreated {
                name,
                crm_account_id: None,
            },
            now,
        ));
        changes.put(org.clone());
        self.ctx.store.commit(changes).await?;
        Ok(Organization { version: 1, ..org })
    }

    /// Creates or updates an organization by CRM account id. The same command twice changes
    /// nothing the second time (and emits no event).
    pub async fn upsert(
        &self,
        principal: &Principal,
        upsert: OrganizationUpsert,
    ) -> Result<Organization, ProvisioningError> {
        let crm_account_id = key_text("crm_account_id", &upsert.crm_account_id, 128)?;
        let name = bounded_text("organization name", &upsert.name, 200)?;
        if upsert.kind == OrgKind::Provider {
            return Err(ProvisioningError::ProviderNotProvisionable);
        }
        let domains = upsert
            .email_domains
            .iter()
            .map(|domain| EmailDomain::parse(domain))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let parent = match &upsert.parent_crm_account_id {
            None => None,
            Some(parent_id) => Some(
                self.ctx
                    .store
                    .organization_by_crm_account(parent_id)
                    .await?
                    .ok_or_else(|| ProvisioningError::UnknownOrganization(parent_id.clone()))?,
            ),
        };
        let existing = self
            .ctx
            .store
            .organization_by_crm_account(&crm_account_id)
            .await?;
        let target = match (&existing, &parent) {
            (Some(org), _) => Target::Organization(self.ctx.org_target(org).await?),
            (None, Some(parent)) => Target::Organization(self.ctx.org_target(parent).await?),
            (None, None) => Target::Global,
        };
        authorize(principal, &Action::ProvisionOrganization, &target).into_result()?;
        if let (Some(org), Some(parent)) = (&existing, &parent) {
            let parent_target = self.ctx.org_target(parent).await?;
            if parent.id == org.id || parent_target.is_within(org.id) {
                return Err(ProvisioningError::ParentCycle);
            }
        }
        let status = if upsert.suspended {
            OrgStatus::Suspended
        } else {
            OrgStatus::Active
        };
        let now = self.ctx.now();
        let actor = principal.actor();
        let mut changes = ChangeSet::new();
        let org = match existing {
            Some(mut org) => {
                let unchanged = org.name == name
                    && org.kind == upsert.kind
                    && org.parent == parent.as_ref().map(|p| p.id)
                    && org.email_domains == domains
                    && (org.status == status
                        || (org.status == OrgStatus::PendingApproval && !upsert.suspended));
                if unchanged {
                    return Ok(org);
                }
                org.name = name.clone();
                org.kind = upsert.kind;
                org.parent = parent.as_ref().map(|p| p.id);
                org.email_domains = domains;
                if org.status != OrgStatus::Closed {
                    org.status = status;
                }
                org.updated_at = now;
                changes.event(self.ctx.event(
                    &actor,
                    Some(org.id),
                    None,
                    EventKind::OrganizationUpdated { name },
                    now,
                ));
                org
            }
            None => {
                let org = Organization {
                    id: OrganizationId::generate(self.ctx.random.as_ref()),
                    version: 0,
                    kind: upsert.kind,
                    status,
                    name: name.clone(),
                    parent: parent.as_ref().map(|p| p.id),
                    crm_account_id: Some(crm_account_id.clone()),
                    email_domains: domains,
                    join_code: None,
                    branding: Branding::default(),
                    policy: OrgPolicy::default(),
                    created_at: now,
                    updated_at: now,
                };
                changes.event(self.ctx.event(
                    &actor,
                    Some(org.id),
                    None,
                    EventKind::OrganizationCreated {
                        name,
                        crm_account_id: Some(crm_account_id),
                    },
                    now,
                ));
                org
            }
        };
        let stored_version = org.version + 1;
        changes.put(org.clone());
        self.ctx.store.commit(changes).await?;
        Ok(Organization {
            version: stored_version,
            ..org
        })
    }

    /// Sets the organization's join code (people use it to ask to join) and branding and rules;
    /// needs the OrgAdmin mandate there (or staff).
    pub async fn configure(
        &self,
        principal: &Principal,
        organization: OrganizationId,
        join_code: Option<String>,
        branding: Branding,
        policy: OrgPolicy,
    ) -> Result<Organization, ProvisioningError> {
        let mut org = self
            .ctx
            .store
            .organization(organization)
            .await?
            .ok_or_else(|| ProvisioningError::UnknownOrganization(organization.to_string()))?;
        self.ctx
            .authorize_on(principal, Action::ConfigureOrganization, &org)
            .await??;
        let join_code = join_code
            .map(|code| key_text("join code", &code, 64))
            .transpose()?;
        if let Some(url) = &branding.logo_url {
            if !url.starts_with("https://") && !url.starts_with('/') {
                return Err(ValidationError::Email {
                    reason: "the logo URL must be https",
                }
                .into());
            }
            bounded_text("logo URL", url, 500)?;
        }
        if let Some(color) = &branding.primary_color {
            let valid = color.len() == 7
                && color.starts_with('#')
                && color[1..].chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                return Err(ValidationError::KeyCharacters {
                    field: "primary colour (#rrggbb)",
                }
                .into());
            }
        }
        let now = self.ctx.now();
        org.join_code = join_code;
        org.branding = branding;
        org.policy = policy;
        org.updated_at = now;
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            Some(org.id),
            None,
            EventKind::OrganizationUpdated {
                name: org.name.clone(),
            },
            now,
        ));
        let version = org.version + 1;
        changes.put(org.clone());
        self.ctx.store.commit(changes).await?;
        Ok(Organization { version, ..org })
    }

    /// Creates or updates a contract by CRM contract id. Access that the change takes away ends
    /// at once: affected sessions are revoked and `AccessRevoked` events emitted.
    pub async fn upsert_contract(
        &self,
        principal: &Principal,
        upsert: ContractUpsert,
    ) -> Result<Contract, ProvisioningError> {
        let crm_contract_id = key_text("crm_contract_id", &upsert.crm_contract_id, 128)?;
        let crm_account_id = key_text("crm_account_id", &upsert.crm_account_id, 128)?;
        if let (Some(from), Some(until)) = (upsert.valid_from, upsert.valid_until) {
            if until <= from {
                return Err(ProvisioningError::InvalidValidity);
            }
        }
        let org = self
            .ctx
            .store
            .organization_by_crm_account(&crm_account_id)
            .await?
            .ok_or_else(|| ProvisioningError::UnknownOrganization(crm_account_id.clone()))?;
        self.ctx
            .authorize_on(principal, Action::ManageContracts, &org)
            .await??;
        let mut services = BTreeSet::new();
        for key in &upsert.services {
            let service = self
                .ctx
                .store
                .service_by_key(key)
                .await?
                .ok_or_else(|| ProvisioningError::UnknownService(key.clone()))?;
            services.insert(service.id);
        }
        let now = self.ctx.now();
        let existing = self.ctx.store.contract_by_crm_id(&crm_contract_id).await?;
        let contract = match existing {
            Some(existing) => {
                if existing.organization != org.id {
                    return Err(ProvisioningError::ContractOfOtherOrganization(
                        crm_contract_id,
                    ));
                }
                let unchanged = existing.services == services
                    && existing.status == upsert.status
                    && existing.valid_from == upsert.valid_from
                    && existing.valid_until == upsert.valid_until;
                if unchanged {
                    return Ok(existing);
                }
                if existing.status == ContractStatus::Ended {
                    return Err(ProvisioningError::ContractEnded(crm_contract_id));
                }
                let mut next = existing.clone();
                next.services = services;
                next.status = upsert.status;
                next.valid_from = upsert.valid_from;
                next.valid_until = upsert.valid_until;
                next.updated_at = now;
                (Some(existing), next)
            }
            None => {
                let contract = Contract {
                    id: ContractId::generate(self.ctx.random.as_ref()),
                    version: 0,
                    organization: org.id,
                    crm_contract_id,
                    services,
                    status: upsert.status,
                    valid_from: upsert.valid_from,
                    valid_until: upsert.valid_until,
                    access_ended_at: None,
                    created_at: now,
                    updated_at: now,
                };
                (None, contract)
            }
        };
        self.apply_contract(principal, contract.0, contract.1).await
    }

    /// Suspends, resumes or ends a contract by CRM contract id.
    pub async fn change_contract(
        &self,
        principal: &Principal,
        crm_contract_id: &str,
        change: ContractChange,
    ) -> Result<Contract, ProvisioningError> {
        let existing = self
            .ctx
            .store
            .contract_by_crm_id(crm_contract_id)
            .await?
            .ok_or_else(|| ProvisioningError::UnknownContract(crm_contract_id.to_owned()))?;
        let org = self
            .ctx
            .store
            .organization(existing.organization)
            .await?
            .ok_or_else(|| {
                ProvisioningError::UnknownOrganization(existing.organization.to_string())
            })?;
        self.ctx
            .authorize_on(principal, Action::ManageContracts, &org)
            .await??;
        let next_status = match (existing.status, change) {
            (ContractStatus::Ended, _) => {
                return Err(ProvisioningError::ContractEnded(crm_contract_id.to_owned()));
            }
            (ContractStatus::Active, ContractChange::Resume)
            | (ContractStatus::Suspended, ContractChange::Suspend) => return Ok(existing),
            (ContractStatus::Active, ContractChange::Suspend) => ContractStatus::Suspended,
            (ContractStatus::Suspended, ContractChange::Resume) => ContractStatus::Active,
            (ContractStatus::Active | ContractStatus::Suspended, ContractChange::End) => {
                ContractStatus::Ended
            }
        };
        let mut next = existing.clone();
        next.status = next_status;
        next.updated_at = self.ctx.now();
        self.apply_contract(principal, Some(existing), next).await
    }

    async fn apply_contract(
        &self,
        principal: &Principal,
        before: Option<Contract>,
        mut after: Contract,
    ) -> Result<Contract, ProvisioningError> {
        let now = self.ctx.now();
        let actor = principal.actor();
        let was_effective = before.as_ref().is_some_and(|c| c.is_effective(now));
        let is_effective = after.is_effective(now);
        if was_effective && !is_effective {
            after.access_ended_at = Some(now);
        } else if is_effective {
            after.access_ended_at = None;
        }
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &actor,
            Some(after.organization),
            None,
            EventKind::ContractChanged {
                contract: after.id,
                crm_contract_id: after.crm_contract_id.clone(),
                before: before.as_ref().map(|c| c.status),
                after: after.status,
                services: after.services.clone(),
            },
            now,
        ));

        // Services that this change takes away, unless another effective contract of the
        // organization still covers them.
        let before_services: BTreeSet<ServiceId> = match &before {
            Some(contract) if was_effective => contract.services.clone(),
            _ => BTreeSet::new(),
        };
        let after_services: BTreeSet<ServiceId> = if is_effective {
            after.services.clone()
        } else {
            BTreeSet::new()
        };
        let mut lost: BTreeSet<ServiceId> = before_services
            .difference(&after_services)
            .copied()
            .collect();
        if !lost.is_empty() {
            for other in self
                .ctx
                .store
                .contracts_of_organization(after.organization)
                .await?
            {
                if other.id != after.id && other.is_effective(now) {
                    for service in &other.services {
                        lost.remove(service);
                    }
                }
            }
        }
        if !lost.is_empty() {
            self.revoke_access(
                &actor,
                after.organization,
                after.id,
                &lost,
                now,
                &mut changes,
            )
            .await?;
        }
        let version = after.version + 1;
        changes.put(after.clone());
        self.ctx.store.commit(changes).await?;
        Ok(Contract { version, ..after })
    }

    /// Revokes the sessions of active members whose business roles reach a lost service.
    async fn revoke_access(
        &self,
        actor: &crate::authz::Actor,
        organization: OrganizationId,
        contract: ContractId,
        lost: &BTreeSet<ServiceId>,
        now: DateTime<Utc>,
        changes: &mut ChangeSet,
    ) -> Result<(), ProvisioningError> {
        let roles = self.ctx.store.business_roles().await?;
        let mut page = PageRequest::first(500);
        loop {
            let members = self
                .ctx
                .store
                .members_of_organization(organization, page.clone())
                .await?;
            for member in &members.items {
                if member.membership.status != MembershipStatus::Active {
                    continue;
                }
                let reaches: BTreeSet<ServiceId> = roles
                    .iter()
                    .filter(|role| member.membership.business_roles.contains(&role.id))
                    .flat_map(|role| role.services())
                    .filter(|service| lost.contains(service))
                    .collect();
                if reaches.is_empty() {
                    continue;
                }
                changes.event(self.ctx.event(
                    actor,
                    Some(organization),
                    Some(member.identity.id),
                    EventKind::AccessRevoked {
                        services: reaches,
                        contract,
                    },
                    now,
                ));
                revoke_sessions_of(
                    self.ctx,
                    actor,
                    member.identity.id,
                    RevocationReason::AccessEnded,
                    now,
                    changes,
                )
                .await?;
            }
            match members.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        Ok(())
    }

    /// Disables people who have had no access for the grace period: no active membership in an
    /// active organization with an effective contract, and no staff role. Run by the system
    /// on a schedule; staff are never affected.
    pub async fn sweep_lost_access(
        &self,
        principal: &Principal,
    ) -> Result<SweepReport, ProvisioningError> {
        authorize(principal, &Action::DisableIdentity, &Target::Global).into_result()?;
        let now = self.ctx.now();
        let cutoff = now - self.ctx.policy.access_grace_period;
        let mut report = SweepReport::default();
        let mut seen = BTreeSet::new();
        for contract in self
            .ctx
            .store
            .contracts_with_access_ended_before(cutoff)
            .await?
        {
            let mut page = PageRequest::first(500);
            loop {
                let members = self
                    .ctx
                    .store
                    .members_of_organization(contract.organization, page.clone())
                    .await?;
                for member in members.items {
                    let identity = member.identity;
                    if identity.status != IdentityStatus::Active || !seen.insert(identity.id) {
                        continue;
                    }
                    if self.has_any_access(identity.id, now).await? {
                        continue;
                    }
                    let mut changes = ChangeSet::new();
                    let mut disabled = identity.clone();
                    disabled.status = IdentityStatus::Disabled;
                    disabled.disabled_reason = Some("no active contract".to_owned());
                    disabled.updated_at = now;
                    changes.event(self.ctx.event(
                        &principal.actor(),
                        None,
                        Some(identity.id),
                        EventKind::IdentityDisabled {
                            reason: "no active contract".to_owned(),
                        },
                        now,
                    ));
                    revoke_sessions_of(
                        self.ctx,
                        &principal.actor(),
                        identity.id,
                        RevocationReason::AccessEnded,
                        now,
                        &mut changes,
                    )
                    .await?;
                    changes.put(disabled);
                    match self.ctx.store.commit(changes).await {
                        Ok(()) => report.disabled.push(identity.id),
                        // Changed meanwhile: the next sweep looks again.
                        Err(error) if error.kind() == StoreErrorKind::Conflict => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                match members.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
        }
        Ok(report)
    }

    async fn has_any_access(
        &self,
        identity: IdentityId,
        now: DateTime<Utc>,
    ) -> Result<bool, ProvisioningError> {
        for membership in self.ctx.store.memberships_of_identity(identity).await? {
            if !membership.is_active() {
                continue;
            }
            let Some(org) = self.ctx.store.organization(membership.organization).await? else {
                continue;
            };
            if !org.is_active() {
                continue;
            }
            if org.kind == OrgKind::Provider && !membership.staff_roles.is_empty() {
                return Ok(true);
            }
            let contracts = self.ctx.store.contracts_of_organization(org.id).await?;
            if contracts.iter().any(|contract| contract.is_effective(now)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
