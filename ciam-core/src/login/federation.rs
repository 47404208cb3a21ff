//! Home realm discovery: which organizations sign their people in at their own identity
//! provider.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::OrganizationId;
use crate::organizations::Organization;

/// The protocol of a customer's identity provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationProtocol {
    /// OpenID Connect.
    Oidc,
    /// SAML 2.0.
    Saml,
}

/// A customer organization's own identity provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederatedIdp {
    /// The provider's key in the host's configuration (an OIDC issuer or a SAML entity id).
    pub provider: String,
    /// Its protocol.
    pub protocol: FederationProtocol,
}

/// Tells which organizations have their own identity provider. The host implements it over
/// its configuration; [`StaticFederation`] is a ready map.
pub trait FederationDirectory: Send + Sync {
    /// The identity provider of `organization`, if it has one.
    fn idp_for(&self, organization: &Organization) -> Option<FederatedIdp>;
}

/// No organization has its own identity provider (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFederation;

impl FederationDirectory for NoFederation {
    fn idp_for(&self, _organization: &Organization) -> Option<FederatedIdp> {
        None
    }
}

/// Identity providers keyed by organization id or CRM account id.
#[derive(Clone, Debug, Default)]
pub struct StaticFederation {
    by_id: BTreeMap<OrganizationId, FederatedIdp>,
    by_crm_account: BTreeMap<String, FederatedIdp>,
}

impl StaticFederation {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the identity provider of an organization by id.
    pub fn with_organization(mut self, organization: OrganizationId, idp: FederatedIdp) -> Self {
        self.by_id.insert(organization, idp);
        self
    }

    /// Adds the identity provider of an organization by CRM account id.
    pub fn with_crm_account(
        mut self,
        crm_account_id: impl Into<String>,
        idp: FederatedIdp,
    ) -> Self {
        self.by_crm_account.insert(crm_account_id.into(), idp);
        self
    }
}

impl FederationDirectory for StaticFederation {
    fn idp_for(&self, organization: &Organization) -> Option<FederatedIdp> {
        self.by_id.get(&organization.id).cloned().or_else(|| {
            organization
                .crm_account_id
                .as_ref()
                .and_then(|crm| self.by_crm_account.get(crm).cloned())
        })
    }
}
