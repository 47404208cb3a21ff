//! Services, their application roles, and business roles that people understand.
//!
//! A [`BusinessRole`] such as "Energy manager" maps to pairs of (service, application role) such
//! as `smartplan-app: consumption.read`. Role resolution ([`crate::Ciam::roles`]) turns a
//! person's business roles into the application roles of one service, through active contracts.

mod cache;
mod catalog;
mod resolution;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::{BusinessRoleId, ServiceId};

pub(crate) use cache::CatalogCache;
pub use cache::{ReadTicket, RecentReads};

pub use catalog::{BusinessRoleDefinition, Catalog, CatalogError, ServiceDefinition};
pub use resolution::{ResolvedRoles, RoleResolution, RoleResolutionError};

/// The key of the built-in business role given to leads.
pub const LEAD_ROLE_KEY: &str = "lead";

/// One of the provider's online services (an application behind single sign-on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Identifier.
    pub id: ServiceId,
    /// Version as stored.
    pub version: u64,
    /// Stable key, such as `smartplan-app` (unique).
    pub key: String,
    /// Display name.
    pub name: String,
    /// The application roles that the service understands, such as `consumption.read`.
    pub app_roles: BTreeSet<String>,
}

/// One application role of one service granted by a business role.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleGrant {
    /// The service.
    pub service: ServiceId,
    /// An application role of that service.
    pub app_role: String,
}

/// A role people understand, mapped to application roles of services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessRole {
    /// Identifier.
    pub id: BusinessRoleId,
    /// Version as stored.
    pub version: u64,
    /// Stable key, such as `energy-manager` (unique).
    pub key: String,
    /// Display name, such as "Energy manager".
    pub name: String,
    /// What the role means in each service.
    pub grants: BTreeSet<RoleGrant>,
}

impl BusinessRole {
    /// The services this role grants something in.
    pub fn services(&self) -> BTreeSet<ServiceId> {
        self.grants.iter().map(|grant| grant.service).collect()
    }
}
