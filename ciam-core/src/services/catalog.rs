//! Defining services and business roles.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::{ValidationError, bounded_text, key_text};
use crate::events::EventKind;
use crate::ids::{BusinessRoleId, ServiceId};
use crate::services::{BusinessRole, LEAD_ROLE_KEY, RoleGrant, Service};
use crate::store::{ChangeSet, StoreError, StoreErrorKind};

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A role mapping names an unknown service.
    #[error("service {0} not found")]
    UnknownService(String),
    /// A role mapping names an application role the service does not have.
    #[error("service {service} has no application role {app_role}")]
    UnknownAppRole {
        /// The service key.
        service: String,
        /// The application role.
        app_role: String,
    },
    /// Changed concurrently; retry.
    #[error("the catalog was changed concurrently; retry")]
    Conflict,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CatalogError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict | StoreErrorKind::Unique => Self::Conflict,
            _ => Self::Store(error),
        }
    }
}

/// A service to create or update (by key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDefinition {
    /// Stable key, such as `smartplan-app`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Application roles.
    pub app_roles: Vec<String>,
}

/// A business role to create or update (by key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessRoleDefinition {
    /// Stable key, such as `energy-manager`.
    pub key: String,
    /// Display name.
    pub name: String,
    /// (service key, application role) pairs.
    pub grants: Vec<(String, String)>,
}

/// Services and business roles. Get one from [`crate::Ciam::catalog`].
pub struct Catalog<'a> {
    pub(crate) ctx: &'a Context,
}

impl Catalog<'_> {
    /// All services.
    pub async fn services(&self) -> Result<Vec<Service>, CatalogError> {
        Ok(self.ctx.store.services().await?)
    }

    /// All business roles.
    pub async fn business_roles(&self) -> Result<Vec<BusinessRole>, CatalogError> {
        Ok(self.ctx.store.business_roles().await?)
    }

    /// The service with `key`. Reused for [`crate::Policy::catalog_max_age`] after it was read
    /// (for the paths that need it on every request, such as single sign-on).
    pub async fn service_by_key(&self, key: &str) -> Result<Option<Arc<Service>>, CatalogError> {
        Ok(self
            .ctx
            .catalog_cache
            .service_by_key(self.ctx.store.as_ref(), key, self.ctx.now())
            .await?)
    }

    /// The business role `id`. Reused for [`crate::Policy::catalog_max_age`] after it was
    /// read.
    pub async fn business_role(
        &self,
        id: BusinessRoleId,
    ) -> Result<Option<Arc<BusinessRole>>, CatalogError> {
        Ok(self
            .ctx
            .catalog_cache
            .business_role(self.ctx.store.as_ref(), id, self.ctx.now())
            .await?)
    }

    /// Commits a change to services or business roles and forgets what the cache held, also
    /// when the commit failed (it may have lost to a concurrent change).
    async fn commit_catalog_change(&self, changes: ChangeSet) -> Result<(), CatalogError> {
        let committed = self.ctx.store.commit(changes).await;
        self.ctx.catalog_cache.invalidate();
        Ok(committed?)
    }

    /// Creates or updates a service by key (Administrator or system).
    pub async fn define_service(
        &self,
        principal: &Principal,
        definition: ServiceDefinition,
    ) -> Result<Service, CatalogError> {
        authorize(principal, &Action::ManageCatalog, &Target::Global).into_result()?;
        let key = key_text("service key", &definition.key, 64)?;
        let name = bounded_text("service name", &definition.name, 200)?;
        let app_roles = definition
            .app_roles
            .iter()
            .map(|role| key_text("application role", role, 128))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let now = self.ctx.now();
        let service = match self.ctx.store.service_by_key(&key).await? {
            Some(existing) => {
                if existing.name == name && existing.app_roles == app_roles {
                    return Ok(existing);
                }
                Service {
                    name,
                    app_roles,
                    ..existing
                }
            }
            None => Service {
                id: ServiceId::generate(self.ctx.random.as_ref()),
                version: 0,
                key: key.clone(),
                name,
                app_roles,
            },
        };
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            None,
            None,
            EventKind::ServiceDefined {
                service: service.id,
                key,
            },
            now,
        ));
        let version = service.version + 1;
        changes.put(service.clone());
        self.commit_catalog_change(changes).await?;
        Ok(Service { version, ..service })
    }

    /// Creates or updates a business role by key (Administrator or system). Every mapping must
    /// name an existing service and one of its application roles.
    pub async fn define_business_role(
        &self,
        principal: &Principal,
        definition: BusinessRoleDefinition,
    ) -> Result<BusinessRole, CatalogError> {
        authorize(principal, &Action::ManageCatalog, &Target::Global).into_result()?;
        let key = key_text("business role key", &definition.key, 64)?;
        let name = bounded_text("business role name", &definition.name, 200)?;
        let mut grants = BTreeSet::new();
        for (service_key, app_role) in &definition.grants {
            let service = self
                .ctx
                .store
                .service_by_key(service_key)
                .await?
                .ok_or_else(|| CatalogError::UnknownService(service_key.clone()))?;
            if !service.app_roles.contains(app_role) {
                return Err(CatalogError::UnknownAppRole {
                    service: service_key.clone(),
                    app_role: app_role.clone(),
                });
            }
            grants.insert(RoleGrant {
                service: service.id,
                app_role: app_role.clone(),
            });
        }
        let now = self.ctx.now();
        let role = match self.ctx.store.business_role_by_key(&key).await? {
            Some(existing) => {
                if existing.name == name && existing.grants == grants {
                    return Ok(existing);
                }
                BusinessRole {
                    name,
                    grants,
                    ..existing
                }
            }
            None => BusinessRole {
                id: BusinessRoleId::generate(self.ctx.random.as_ref()),
                version: 0,
                key: key.clone(),
                name,
                grants,
            },
        };
        let mut changes = ChangeSet::new();
        changes.event(self.ctx.event(
            &principal.actor(),
            None,
            None,
            EventKind::BusinessRoleDefined { role: role.id, key },
            now,
        ));
        let version = role.version + 1;
        changes.put(role.clone());
        self.commit_catalog_change(changes).await?;
        Ok(BusinessRole { version, ..role })
    }

    /// The built-in `lead` business role (no application roles), created on first use.
    pub async fn lead_role(&self) -> Result<BusinessRole, CatalogError> {
        if let Some(role) = self.ctx.store.business_role_by_key(LEAD_ROLE_KEY).await? {
            return Ok(role);
        }
        let result = self
            .define_business_role(
                &Principal::System,
                BusinessRoleDefinition {
                    key: LEAD_ROLE_KEY.to_owned(),
                    name: "Lead".to_owned(),
                    grants: Vec::new(),
                },
            )
            .await;
        match result {
            Ok(role) => Ok(role),
            // Created concurrently: read it.
            Err(CatalogError::Conflict) => self
                .ctx
                .store
                .business_role_by_key(LEAD_ROLE_KEY)
                .await?
                .ok_or(CatalogError::Conflict),
            Err(error) => Err(error),
        }
    }
}
