//! Home realm discovery: which organizations sign their people in at their own identity
//! provider. By default the stored connections decide ([`StoreFederation`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::OrganizationId;
use crate::login::connections::StoredConnection;
use crate::organizations::Organization;
use crate::settings::SettingKind;
use crate::store::{Store, StoreError};

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

/// Tells which organizations have their own identity provider. [`StoreFederation`] (the
/// default) reads the stored connections; [`StaticFederation`] is a fixed map. Either way the
/// connection itself must be stored for the sign-in to complete.
#[async_trait]
pub trait FederationDirectory: Send + Sync {
    /// The identity provider of `organization`, if it has one.
    async fn idp_for(
        &self,
        organization: &Organization,
    ) -> Result<Option<FederatedIdp>, StoreError>;
}

/// Home realm discovery from the stored connections: the first connection of the organization
/// (by key) with home realm discovery on.
#[derive(Clone)]
pub struct StoreFederation {
    store: Arc<dyn Store>,
}

impl StoreFederation {
    /// Reads connections from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

impl std::fmt::Debug for StoreFederation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreFederation")
    }
}

#[async_trait]
impl FederationDirectory for StoreFederation {
    async fn idp_for(
        &self,
        organization: &Organization,
    ) -> Result<Option<FederatedIdp>, StoreError> {
        let settings = self
            .store
            .settings(SettingKind::IdentityProvider, Some(organization.id))
            .await?;
        for setting in settings
            .iter()
            .filter(|setting| setting.organization == Some(organization.id))
        {
            let stored = StoredConnection::from_setting(setting)?;
            if stored.connection.home_realm_discovery {
                return Ok(Some(FederatedIdp {
                    provider: stored.key,
                    protocol: stored.connection.protocol,
                }));
            }
        }
        Ok(None)
    }
}

/// No organization has its own identity provider (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFederation;

#[async_trait]
impl FederationDirectory for NoFederation {
    async fn idp_for(
        &self,
        _organization: &Organization,
    ) -> Result<Option<FederatedIdp>, StoreError> {
        Ok(None)
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

#[async_trait]
impl FederationDirectory for StaticFederation {
    async fn idp_for(
        &self,
        organization: &Organization,
    ) -> Result<Option<FederatedIdp>, StoreError> {
        Ok(self.by_id.get(&organization.id).cloned().or_else(|| {
            organization
                .crm_account_id
                .as_ref()
                .and_then(|crm| self.by_crm_account.get(crm).cloned())
        }))
    }
}
