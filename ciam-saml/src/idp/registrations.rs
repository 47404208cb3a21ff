//! Service provider registrations, stored through the core [`Store`](ciam_core::Store) as
//! settings of kind [`SettingKind::ServiceProvider`] keyed by the SP's entity id.
//!
//! The stored body is the SP's metadata XML plus the local options
//! ([`ServiceProviderOptions`]); it is read and checked again on every use, so what the IdP
//! trusts is always what the metadata says. Several server nodes share the registrations
//! through the database; each keeps the parsed form of the SPs it has seen, keyed by the
//! setting's id and version, so a change on one node is seen by every other at the next
//! request.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ciam_core::events::{DomainEvent, EventKind};
use ciam_core::ids::{EventId, SettingId};
use ciam_core::services::RecentReads;
use ciam_core::settings::{Setting, SettingChange, SettingError, SettingKind};
use ciam_core::store::{RecordRef, StoreErrorKind};
use ciam_core::{Action, ChangeSet, Ciam, DenyReason, Principal, StoreError, authorize};
use serde::{Deserialize, Serialize};

use super::{RegistryError, ServiceProvider, ServiceProviderRegistry};
use crate::NameIdFormat;
use crate::metadata::MetadataError;

/// The local choices made when registering an SP (what its metadata does not say).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceProviderOptions {
    /// The catalog service (its key) whose application roles go into the `roles` attribute.
    /// With one, only people with a role in that service may sign in to the SP.
    pub service_key: Option<String>,
    /// The NameID format when a request names none: `None` takes it from the metadata
    /// (persistent pairwise, or email when the SP lists only that). Only
    /// [`NameIdFormat::Persistent`] and [`NameIdFormat::EmailAddress`] are issued.
    pub name_id_format: Option<NameIdFormat>,
    /// Whether IdP-initiated (unsolicited) SSO is allowed; off by default.
    pub allow_idp_initiated: bool,
    /// Whether the `Response` is signed too (the assertion always is); off by default.
    pub sign_response: bool,
}

/// What is stored in the setting's body.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RegistrationBody {
    metadata_xml: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_key: Option<String>,
    /// The NameID format's URN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_id_format: Option<String>,
    #[serde(default)]
    allow_idp_initiated: bool,
    #[serde(default)]
    sign_response: bool,
}

impl RegistrationBody {
    fn new(metadata_xml: &str, options: &ServiceProviderOptions) -> Self {
        Self {
            metadata_xml: metadata_xml.to_owned(),
            service_key: options.service_key.clone(),
            name_id_format: options.name_id_format.map(|f| f.urn().to_owned()),
            allow_idp_initiated: options.allow_idp_initiated,
            sign_response: options.sign_response,
        }
    }

    fn options(&self) -> Result<ServiceProviderOptions, RegistrationError> {
        let name_id_format = match &self.name_id_format {
            None => None,
            Some(urn) => Some(NameIdFormat::from_urn(urn).ok_or_else(|| {
                RegistrationError::Corrupt(format!("unknown nameid format {urn}"))
            })?),
        };
        Ok(ServiceProviderOptions {
            service_key: self.service_key.clone(),
            name_id_format,
            allow_idp_initiated: self.allow_idp_initiated,
            sign_response: self.sign_response,
        })
    }

    /// The SP as the IdP uses it: metadata read again, options applied.
    fn service_provider(&self) -> Result<ServiceProvider, RegistrationError> {
        let options = self.options()?;
        let mut sp = ServiceProvider::from_metadata(&self.metadata_xml)?;
        apply(&mut sp, &options)?;
        Ok(sp)
    }
}

fn apply(
    sp: &mut ServiceProvider,
    options: &ServiceProviderOptions,
) -> Result<(), RegistrationError> {
    if let Some(format) = options.name_id_format {
        if !matches!(
            format,
            NameIdFormat::Persistent | NameIdFormat::EmailAddress
        ) {
            return Err(RegistrationError::UnsupportedNameIdFormat);
        }
        sp.default_name_id_format = format;
    }
    sp.service_key = options.service_key.clone();
    sp.allow_idp_initiated = options.allow_idp_initiated;
    sp.sign_response = options.sign_response;
    Ok(())
}

/// A registered SP as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredServiceProvider {
    /// The SP as the IdP uses it (metadata and options).
    pub service_provider: ServiceProvider,
    /// The metadata XML it was registered (or last updated) with.
    pub metadata_xml: String,
    /// The options.
    pub options: ServiceProviderOptions,
    /// The stored version (changes with every update).
    pub version: u64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Why a registration operation was refused. Nothing is stored when it fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The metadata is not usable (not well-formed, DOCTYPE, no SP descriptor, no
    /// HTTP-POST assertion consumer service, an endpoint that is not https, a certificate
    /// that cannot be read, signed requests without a signing certificate, ...).
    #[error("service provider metadata refused: {0}")]
    Metadata(#[from] MetadataError),
    /// The entity id cannot be a setting key (longer than 1024 characters or with control
    /// characters).
    #[error("service provider entity id is not usable: {0}")]
    EntityId(SettingError),
    /// Only persistent and email NameIDs are issued.
    #[error("only persistent and email address nameid formats can be issued")]
    UnsupportedNameIdFormat,
    /// The service key names no service in the catalog.
    #[error("service {0} is not in the catalog")]
    UnknownService(String),
    /// An SP with this entity id is already registered (update it instead).
    #[error("service provider {0} is already registered")]
    AlreadyRegistered(String),
    /// No SP with this entity id is registered.
    #[error("service provider {0} is not registered")]
    NotRegistered(String),
    /// Updated metadata must keep the entity id it was registered with.
    #[error("metadata is for {found}, not for the registered {registered}")]
    EntityIdChanged {
        /// The registered entity id.
        registered: String,
        /// The one in the new metadata.
        found: String,
    },
    /// The registration changed meanwhile (another administrator or node); read it again.
    #[error("service provider {0} was changed meanwhile; try again")]
    Conflict(String),
    /// A stored registration could not be read.
    #[error("stored service provider registration is unreadable: {0}")]
    Corrupt(String),
    /// Not allowed (registrations need the catalog mandate: SmartPlan administrators).
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistrationError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

struct Cached {
    id: SettingId,
    version: u64,
    service_provider: Arc<ServiceProvider>,
}

/// SP registrations in the store: register, update, remove and list (for administrators),
/// and the [`ServiceProviderRegistry`] the IdP reads per request.
///
/// Build one per process and share it (`Arc`); it is cheap to keep and safe across nodes.
pub struct ServiceProviderRegistrations {
    ciam: Ciam,
    /// The parsed registrations by entity id, with the setting version they were parsed from.
    cache: RecentReads<String, Cached>,
}

impl std::fmt::Debug for ServiceProviderRegistrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProviderRegistrations")
            .finish_non_exhaustive()
    }
}

impl ServiceProviderRegistrations {
    /// Registrations kept in `ciam`'s store (its clock and randomness are used too).
    pub fn new(ciam: Ciam) -> Self {
        Self {
            cache: RecentReads::new(ciam.policy().catalog_max_age),
            ciam,
        }
    }

    fn authorize(&self, principal: &Principal) -> Result<(), RegistrationError> {
        authorize(
            principal,
            &Action::ManageCatalog,
            &ciam_core::authz::Target::Global,
        )
        .into_result()
        .map_err(RegistrationError::from)
    }

    async fn check_service(
        &self,
        options: &ServiceProviderOptions,
    ) -> Result<(), RegistrationError> {
        if let Some(key) = &options.service_key {
            if self.ciam.store().service_by_key(key).await?.is_none() {
                return Err(RegistrationError::UnknownService(key.clone()));
            }
        }
        Ok(())
    }

    fn event(&self, principal: &Principal, key: &str, change: SettingChange) -> DomainEvent {
        DomainEvent {
            id: EventId::generate(self.ciam.random().as_ref()),
            at: self.ciam.clock().now(),
            actor: principal.actor(),
            organization: None,
            identity: None,
            kind: EventKind::SettingChanged {
                setting: SettingKind::ServiceProvider,
                key: key.to_owned(),
                change,
            },
        }
    }

    /// Registers an SP from its metadata XML with local options. The metadata is checked
    /// first (see [`RegistrationError::Metadata`]); an entity id already registered is
    /// refused. Needs the catalog mandate.
    pub async fn register(
        &self,
        principal: &Principal,
        metadata_xml: &str,
        options: ServiceProviderOptions,
    ) -> Result<RegisteredServiceProvider, RegistrationError> {
        self.authorize(principal)?;
        let body = RegistrationBody::new(metadata_xml, &options);
        let sp = body.service_provider()?;
        self.check_service(&options).await?;
        let store = self.ciam.store();
        if store
            .setting(SettingKind::ServiceProvider, &sp.entity_id)
            .await?
            .is_some()
        {
            return Err(RegistrationError::AlreadyRegistered(sp.entity_id));
        }
        let now = self.ciam.clock().now();
        let setting = Setting::new(
            SettingId::generate(self.ciam.random().as_ref()),
            SettingKind::ServiceProvider,
            sp.entity_id.clone(),
            None,
            &body,
            now,
        )
        .map_err(RegistrationError::EntityId)?;
        let mut changes = ChangeSet::new();
        changes.put(setting.clone());
        changes.event(self.event(principal, &sp.entity_id, SettingChange::Created));
        let committed = store.commit(changes).await;
        self.forget(&sp.entity_id);
        committed.map_err(|error| match error.kind() {
            StoreErrorKind::Unique | StoreErrorKind::Conflict => {
                RegistrationError::AlreadyRegistered(sp.entity_id.clone())
            }
            _ => RegistrationError::Store(error),
        })?;
        Ok(RegisteredServiceProvider {
            service_provider: sp,
            metadata_xml: metadata_xml.to_owned(),
            options,
            version: setting.version + 1,
            created_at: now,
            updated_at: now,
        })
    }

    /// Replaces a registration's metadata (when `metadata_xml` is given; it must keep the
    /// entity id) and options. Needs the catalog mandate.
    pub async fn update(
        &self,
        principal: &Principal,
        entity_id: &str,
        metadata_xml: Option<&str>,
        options: ServiceProviderOptions,
    ) -> Result<RegisteredServiceProvider, RegistrationError> {
        self.authorize(principal)?;
        let store = self.ciam.store();
        let mut setting = store
            .setting(SettingKind::ServiceProvider, entity_id)
            .await?
            .ok_or_else(|| RegistrationError::NotRegistered(entity_id.to_owned()))?;
        let old: RegistrationBody = setting
            .body_as()
            .map_err(|e| RegistrationError::Corrupt(e.to_string()))?;
        let metadata_xml = metadata_xml.unwrap_or(&old.metadata_xml).to_owned();
        let body = RegistrationBody::new(&metadata_xml, &options);
        let sp = body.service_provider()?;
        if sp.entity_id != setting.key {
            return Err(RegistrationError::EntityIdChanged {
                registered: setting.key,
                found: sp.entity_id,
            });
        }
        self.check_service(&options).await?;
        let now = self.ciam.clock().now();
        setting
            .replace_body(&body, now)
            .map_err(|e| RegistrationError::Corrupt(e.to_string()))?;
        let mut changes = ChangeSet::new();
        changes.put(setting.clone());
        changes.event(self.event(principal, entity_id, SettingChange::Updated));
        let committed = store.commit(changes).await;
        self.forget(entity_id);
        committed.map_err(|error| match error.kind() {
            StoreErrorKind::Conflict => RegistrationError::Conflict(entity_id.to_owned()),
            _ => RegistrationError::Store(error),
        })?;
        Ok(RegisteredServiceProvider {
            service_provider: sp,
            metadata_xml,
            options,
            version: setting.version + 1,
            created_at: setting.created_at,
            updated_at: now,
        })
    }

    /// Removes a registration: the SP's requests are refused from the next request on, on
    /// this node at once and on other nodes within [`ciam_core::Policy::catalog_max_age`]. Needs the catalog mandate.
    pub async fn remove(
        &self,
        principal: &Principal,
        entity_id: &str,
    ) -> Result<(), RegistrationError> {
        self.authorize(principal)?;
        let store = self.ciam.store();
        let setting = store
            .setting(SettingKind::ServiceProvider, entity_id)
            .await?
            .ok_or_else(|| RegistrationError::NotRegistered(entity_id.to_owned()))?;
        let mut changes = ChangeSet::new();
        changes.delete(RecordRef::Setting(setting.id, setting.version));
        changes.event(self.event(principal, entity_id, SettingChange::Removed));
        let committed = store.commit(changes).await;
        self.forget(entity_id);
        committed.map_err(|error| match error.kind() {
            StoreErrorKind::Conflict | StoreErrorKind::NotFound => {
                RegistrationError::Conflict(entity_id.to_owned())
            }
            _ => RegistrationError::Store(error),
        })?;
        Ok(())
    }

    /// Every registration, by entity id. Needs the catalog mandate.
    pub async fn list(
        &self,
        principal: &Principal,
    ) -> Result<Vec<RegisteredServiceProvider>, RegistrationError> {
        self.authorize(principal)?;
        let settings = self
            .ciam
            .store()
            .settings(SettingKind::ServiceProvider, None)
            .await?;
        settings.iter().map(registered).collect()
    }

    /// One registration, by entity id. Needs the catalog mandate.
    pub async fn registration(
        &self,
        principal: &Principal,
        entity_id: &str,
    ) -> Result<Option<RegisteredServiceProvider>, RegistrationError> {
        self.authorize(principal)?;
        self.ciam
            .store()
            .setting(SettingKind::ServiceProvider, entity_id)
            .await?
            .as_ref()
            .map(registered)
            .transpose()
    }

    /// Forgets the cached form of `entity_id` after a change made here (also one that failed:
    /// it may have lost to a concurrent change).
    fn forget(&self, entity_id: &str) {
        self.cache.forget(entity_id);
    }

    /// The SP for the IdP. The parsed form is reused while the setting's id and version are
    /// unchanged; the store is asked for them again once the last answer is older than
    /// [`ciam_core::Policy::catalog_max_age`] (zero, the default: on every call). Changes made
    /// through these registrations take effect at once.
    async fn current(
        &self,
        entity_id: &str,
    ) -> Result<Option<Arc<ServiceProvider>>, RegistrationError> {
        let now = self.ciam.clock().now();
        if let Some(cached) = self.cache.fresh(entity_id, now) {
            return Ok(Some(Arc::clone(&cached.service_provider)));
        }
        let ticket = self.cache.ticket();
        let Some(setting) = self
            .ciam
            .store()
            .setting(SettingKind::ServiceProvider, entity_id)
            .await?
        else {
            self.cache.forget(entity_id);
            return Ok(None);
        };
        let cached = match self.cache.any(entity_id) {
            // The store confirms the parsed form: keep it, read now.
            Some(cached) if cached.id == setting.id && cached.version == setting.version => cached,
            _ => {
                let body: RegistrationBody = setting
                    .body_as()
                    .map_err(|e| RegistrationError::Corrupt(e.to_string()))?;
                Arc::new(Cached {
                    id: setting.id,
                    version: setting.version,
                    service_provider: Arc::new(body.service_provider()?),
                })
            }
        };
        let service_provider = Arc::clone(&cached.service_provider);
        self.cache.keep(ticket, entity_id.to_owned(), cached, now);
        Ok(Some(service_provider))
    }
}

fn registered(setting: &Setting) -> Result<RegisteredServiceProvider, RegistrationError> {
    let body: RegistrationBody = setting
        .body_as()
        .map_err(|e| RegistrationError::Corrupt(e.to_string()))?;
    Ok(RegisteredServiceProvider {
        service_provider: body.service_provider()?,
        options: body.options()?,
        metadata_xml: body.metadata_xml,
        version: setting.version,
        created_at: setting.created_at,
        updated_at: setting.updated_at,
    })
}

#[async_trait]
impl ServiceProviderRegistry for ServiceProviderRegistrations {
    async fn get(&self, entity_id: &str) -> Result<Option<Arc<ServiceProvider>>, RegistryError> {
        match self.current(entity_id).await {
            Ok(sp) => Ok(sp),
            Err(error) => Err(RegistryError::Unavailable(error.to_string())),
        }
    }
}
