//! Organizations (customers, partners and the provider itself) and their contracts.
//!
//! The CRM is the master of both: it provisions them through [`Provisioning`] (see
//! [`crate::Ciam::organizations`]). A contract's lifecycle drives access: a service is reachable
//! only through an *effective* contract of the user's organization that covers it.

mod provisioning;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::EmailDomain;
use crate::ids::{ContractId, OrganizationId, ServiceId};

pub use provisioning::{
    ContractChange, ContractUpsert, OrganizationUpsert, Provisioning, ProvisioningError,
    SweepReport,
};

/// What an organization is to the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// The company running ciam-rs (SmartPlan); its members may hold staff roles.
    Provider,
    /// A business customer.
    Customer,
    /// A partner (reseller, installer) with its own users.
    Partner,
}

/// Lifecycle of an organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    /// Registered, waiting for back-office approval.
    PendingApproval,
    /// In business: its members' mandates count.
    Active,
    /// Temporarily stopped: its members' mandates and access count for nothing.
    Suspended,
    /// Closed for good.
    Closed,
}

/// Per-organization branding of the login and self-service pages.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    /// Logo URL (https), shown on sign-in pages for this organization's users.
    pub logo_url: Option<String>,
    /// Primary colour as `#rrggbb`.
    pub primary_color: Option<String>,
}

/// Per-organization rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPolicy {
    /// Every member must use a second factor at sign-in.
    pub require_mfa: bool,
    /// People may ask to join (by join code or verified email domain); the contact person or a
    /// user manager approves.
    pub allow_join_requests: bool,
}

impl Default for OrgPolicy {
    fn default() -> Self {
        Self {
            require_mfa: false,
            allow_join_requests: true,
        }
    }
}

/// An organization: a customer, partner, or the provider itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Identifier.
    pub id: OrganizationId,
    /// Version as stored (0 for a record not yet stored); see [`crate::store::ChangeSet`].
    pub version: u64,
    /// Provider, customer or partner.
    pub kind: OrgKind,
    /// Lifecycle status.
    pub status: OrgStatus,
    /// Display name (1 to 200 characters).
    pub name: String,
    /// The parent organization, for a sub-organization.
    pub parent: Option<OrganizationId>,
    /// The CRM's account id (unique), when the CRM knows the organization.
    pub crm_account_id: Option<String>,
    /// Verified email domains (each unique across organizations): used to find the organization
    /// of a person from their email (join requests, home realm discovery).
    pub email_domains: BTreeSet<EmailDomain>,
    /// A code the organization hands out so that its people can ask to join (unique).
    pub join_code: Option<String>,
    /// Branding of pages for this organization's users.
    pub branding: Branding,
    /// Organization rules.
    pub policy: OrgPolicy,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl Organization {
    /// Whether the organization's members' mandates and access count.
    pub fn is_active(&self) -> bool {
        self.status == OrgStatus::Active
    }
}

/// Lifecycle of a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    /// In force (within its validity dates).
    Active,
    /// Temporarily not in force; may become active again.
    Suspended,
    /// Ended for good; cannot be reactivated (a new contract is needed).
    Ended,
}

/// A contract of an organization covering services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    /// Identifier.
    pub id: ContractId,
    /// Version as stored.
    pub version: u64,
    /// The organization the contract belongs to.
    pub organization: OrganizationId,
    /// The CRM's contract id (unique).
    pub crm_contract_id: String,
    /// Services the contract covers.
    pub services: BTreeSet<ServiceId>,
    /// Lifecycle status.
    pub status: ContractStatus,
    /// Start of validity, if bounded.
    pub valid_from: Option<DateTime<Utc>>,
    /// End of validity (exclusive), if bounded.
    pub valid_until: Option<DateTime<Utc>>,
    /// When the contract stopped giving access (ended, suspended or its validity ran out was
    /// noticed); drives the grace period before users without access are disabled.
    pub access_ended_at: Option<DateTime<Utc>>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
}

impl Contract {
    /// Whether the contract gives access at `now`: active and within its validity dates.
    pub fn is_effective(&self, now: DateTime<Utc>) -> bool {
        self.status == ContractStatus::Active
            && self.valid_from.is_none_or(|from| from <= now)
            && self.valid_until.is_none_or(|until| now < until)
    }

    /// Whether the contract gives access to `service` at `now`.
    pub fn covers(&self, service: ServiceId, now: DateTime<Utc>) -> bool {
        self.is_effective(now) && self.services.contains(&service)
    }
}
