//! What the CRM hears: the domain events it cares about, as a stable JSON payload
//! ([`CrmEvent`]) that names records by the CRM's own ids where ciam-rs knows them.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use ciam_core::authz::Actor;
use ciam_core::events::{ContactField, DomainEvent, EventKind};
use ciam_core::identities::Mandate;
use ciam_core::ids::{BusinessRoleId, ServiceId};
use ciam_core::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::MandateSpec;

/// Whether the CRM cares about an event: lead registered, customer user registered, contact
/// details changed, membership and roles changed, user deactivated or removed, organization
/// registration submitted and decided, access revoked.
pub fn is_crm_relevant(event: &DomainEvent) -> bool {
    matches!(
        event.kind,
        EventKind::LeadRegistered { .. }
            | EventKind::CustomerUserRegistered { .. }
            | EventKind::ContactDetailsChanged { .. }
            | EventKind::BusinessRolesChanged { .. }
            | EventKind::MandatesChanged { .. }
            | EventKind::MembershipActivated
            | EventKind::MembershipRemoved
            | EventKind::IdentityDisabled { .. }
            | EventKind::IdentityEnabled
            | EventKind::OrgRegistrationSubmitted { .. }
            | EventKind::OrgRegistrationApproved { .. }
            | EventKind::OrgRegistrationRejected { .. }
            | EventKind::AccessRevoked { .. }
    )
}

/// The organization an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrganizationRef {
    /// ciam-rs id.
    pub id: Uuid,
    /// The CRM account id, when the organization has one.
    pub crm_account_id: Option<String>,
}

/// The person an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PersonRef {
    /// ciam-rs id.
    pub id: Uuid,
    /// The CRM contact id, when linked.
    pub crm_contact_id: Option<String>,
    /// The person's current email.
    pub email: Option<String>,
}

/// Which contact detail changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactDetail {
    /// Email address (verified).
    Email,
    /// Phone number (verified).
    Phone,
    /// Given and family name.
    Name,
}

impl From<ContactField> for ContactDetail {
    fn from(field: ContactField) -> Self {
        match field {
            ContactField::Email => Self::Email,
            ContactField::Phone => Self::Phone,
            ContactField::Name => Self::Name,
        }
    }
}

/// What happened, by type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "type", content = "data")]
pub enum CrmEventData {
    /// A lead registered: raise the lead score.
    LeadRegistered {
        /// The CRM lead id from the invitation.
        crm_lead_id: String,
        /// The lead's email.
        email: String,
    },
    /// A customer's user registered.
    CustomerUserRegistered {
        /// Email.
        email: String,
        /// Given name.
        given_name: String,
        /// Family name.
        family_name: String,
    },
    /// A contact detail changed (email and phone after verification).
    ContactDetailsChanged {
        /// Which detail.
        field: ContactDetail,
        /// Before.
        before: Option<String>,
        /// After.
        after: Option<String>,
    },
    /// Business roles in the organization changed.
    BusinessRolesChanged {
        /// Role keys before.
        before: Vec<String>,
        /// Role keys after.
        after: Vec<String>,
    },
    /// Administrative mandates in the organization changed.
    MandatesChanged {
        /// Before.
        before: Vec<MandateSpec>,
        /// After.
        after: Vec<MandateSpec>,
    },
    /// The person became an active member of the organization.
    MembershipActivated,
    /// The person was removed from the organization.
    MembershipRemoved,
    /// The person was deactivated everywhere.
    IdentityDisabled {
        /// Why.
        reason: String,
    },
    /// The person was activated again.
    IdentityEnabled,
    /// The person lost access to services because a contract stopped giving it.
    AccessRevoked {
        /// Service keys.
        services: Vec<String>,
        /// The contract's id in ciam-rs.
        contract_id: Uuid,
    },
    /// An organization registration was submitted.
    OrgRegistrationSubmitted {
        /// The registration id.
        registration_id: Uuid,
        /// The organization's name.
        organization_name: String,
        /// The applicant's email.
        email: String,
    },
    /// An organization registration was approved.
    OrgRegistrationApproved {
        /// The registration id.
        registration_id: Uuid,
        /// Whether an active contract in the CRM approved it automatically.
        automatic: bool,
    },
    /// An organization registration was rejected.
    OrgRegistrationRejected {
        /// The registration id.
        registration_id: Uuid,
        /// Why.
        reason: String,
    },
}

/// One notification to the CRM (the body of a webhook).
///
/// `id` is the domain event's id: stable across retries, so receivers de-duplicate on it
/// (it is also the `webhook-id` header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CrmEvent {
    /// Stable event id, for de-duplication.
    pub id: Uuid,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// Who caused it: `identity:<uuid>`, `integration:<name>`, `system` or `anonymous`.
    pub actor: String,
    /// The organization concerned.
    pub organization: Option<OrganizationRef>,
    /// The person concerned.
    pub person: Option<PersonRef>,
    /// What happened (`type` and `data`).
    #[serde(flatten)]
    pub data: CrmEventData,
}

impl CrmEvent {
    /// The event type as serialized (`lead_registered`, ...).
    pub fn event_type(&self) -> &'static str {
        match &self.data {
            CrmEventData::LeadRegistered { .. } => "lead_registered",
            CrmEventData::CustomerUserRegistered { .. } => "customer_user_registered",
            CrmEventData::ContactDetailsChanged { .. } => "contact_details_changed",
            CrmEventData::BusinessRolesChanged { .. } => "business_roles_changed",
            CrmEventData::MandatesChanged { .. } => "mandates_changed",
            CrmEventData::MembershipActivated => "membership_activated",
            CrmEventData::MembershipRemoved => "membership_removed",
            CrmEventData::IdentityDisabled { .. } => "identity_disabled",
            CrmEventData::IdentityEnabled => "identity_enabled",
            CrmEventData::AccessRevoked { .. } => "access_revoked",
            CrmEventData::OrgRegistrationSubmitted { .. } => "org_registration_submitted",
            CrmEventData::OrgRegistrationApproved { .. } => "org_registration_approved",
            CrmEventData::OrgRegistrationRejected { .. } => "org_registration_rejected",
        }
    }

    /// The key that orders delivery (same as the domain event's): the person's, else the
    /// organization's.
    pub fn ordering_key(&self) -> String {
        match (&self.person, &self.organization) {
            (Some(person), _) => format!("identity:{}", person.id),
            (None, Some(org)) => format!("organization:{}", org.id),
            (None, None) => "global".to_owned(),
        }
    }
}

fn actor_text(actor: &Actor) -> String {
    match actor {
        Actor::Identity(id) => format!("identity:{id}"),
        Actor::Integration(name) => format!("integration:{name}"),
        Actor::System => "system".to_owned(),
        Actor::Anonymous => "anonymous".to_owned(),
    }
}

/// Turns domain events into [`CrmEvent`]s, looking up CRM ids and role and service keys in
/// the store (as they are at delivery time).
#[derive(Clone)]
pub struct EventTranslator {
    store: std::sync::Arc<dyn Store>,
}

impl std::fmt::Debug for EventTranslator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTranslator").finish_non_exhaustive()
    }
}

impl EventTranslator {
    /// A translator reading from `store`.
    pub fn new(store: std::sync::Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The CRM's view of `event`, or `None` when the CRM does not care about it.
    pub async fn translate(&self, event: &DomainEvent) -> Result<Option<CrmEvent>, StoreError> {
        if !is_crm_relevant(event) {
            return Ok(None);
        }
        let data = match &event.kind {
            EventKind::LeadRegistered { crm_lead_id, email } => CrmEventData::LeadRegistered {
                crm_lead_id: crm_lead_id.clone(),
                email: email.clone(),
            },
            EventKind::CustomerUserRegistered {
                email,
                given_name,
                family_name,
            } => CrmEventData::CustomerUserRegistered {
                email: email.clone(),
                given_name: given_name.clone(),
                family_name: family_name.clone(),
            },
            EventKind::ContactDetailsChanged {
                field,
                before,
                after,
            } => CrmEventData::ContactDetailsChanged {
                field: (*field).into(),
                before: before.clone(),
                after: after.clone(),
            },
            EventKind::BusinessRolesChanged { before, after } => {
                let keys = self.role_keys().await?;
                CrmEventData::BusinessRolesChanged {
                    before: role_names(before, &keys),
                    after: role_names(after, &keys),
                }
            }
            EventKind::MandatesChanged { before, after } => {
                let keys = self.service_keys().await?;
                CrmEventData::MandatesChanged {
                    before: mandate_specs(before, &keys),
                    after: mandate_specs(after, &keys),
                }
            }
            EventKind::MembershipActivated => CrmEventData::MembershipActivated,
            EventKind::MembershipRemoved => CrmEventData::MembershipRemoved,
            EventKind::IdentityDisabled { reason } => CrmEventData::IdentityDisabled {
                reason: reason.clone(),
            },
            EventKind::IdentityEnabled => CrmEventData::IdentityEnabled,
            EventKind::AccessRevoked { services, contract } => {
                let keys = self.service_keys().await?;
                CrmEventData::AccessRevoked {
                    services: services.iter().map(|s| service_name(s, &keys)).collect(),
                    contract_id: contract.as_uuid(),
                }
            }
            EventKind::OrgRegistrationSubmitted {
                registration,
                organization_name,
                email,
            } => CrmEventData::OrgRegistrationSubmitted {
                registration_id: registration.as_uuid(),
                organization_name: organization_name.clone(),
                email: email.clone(),
            },
            EventKind::OrgRegistrationApproved {
                registration,
                automatic,
            } => CrmEventData::OrgRegistrationApproved {
                registration_id: registration.as_uuid(),
                automatic: *automatic,
            },
            EventKind::OrgRegistrationRejected {
                registration,
                reason,
            } => CrmEventData::OrgRegistrationRejected {
                registration_id: registration.as_uuid(),
                reason: reason.clone(),
            },
            _ => return Ok(None),
        };
        let organization = match event.organization {
            None => None,
            Some(id) => Some(OrganizationRef {
                id: id.as_uuid(),
                crm_account_id: self
                    .store
                    .organization(id)
                    .await?
                    .and_then(|org| org.crm_account_id),
            }),
        };
        let person = match event.identity {
            None => None,
            Some(id) => {
                let identity = self.store.identity(id).await?;
                Some(PersonRef {
                    id: id.as_uuid(),
                    crm_contact_id: identity.as_ref().and_then(|i| i.crm_contact_id.clone()),
                    email: identity.map(|i| i.email.to_string()),
                })
            }
        };
        Ok(Some(CrmEvent {
            id: event.id.as_uuid(),
            timestamp: event.at,
            actor: actor_text(&event.actor),
            organization,
            person,
            data,
        }))
    }

    async fn role_keys(&self) -> Result<HashMap<BusinessRoleId, String>, StoreError> {
        Ok(self
            .store
            .business_roles()
            .await?
            .into_iter()
            .map(|role| (role.id, role.key))
            .collect())
    }

    async fn service_keys(&self) -> Result<HashMap<ServiceId, String>, StoreError> {
        Ok(self
            .store
            .services()
            .await?
            .into_iter()
            .map(|service| (service.id, service.key))
            .collect())
    }
}

fn role_names(
    roles: &BTreeSet<BusinessRoleId>,
    keys: &HashMap<BusinessRoleId, String>,
) -> Vec<String> {
    roles
        .iter()
        .map(|role| keys.get(role).cloned().unwrap_or_else(|| role.to_string()))
        .collect()
}

fn service_name(service: &ServiceId, keys: &HashMap<ServiceId, String>) -> String {
    keys.get(service)
        .cloned()
        .unwrap_or_else(|| service.to_string())
}

fn mandate_specs(
    mandates: &BTreeSet<Mandate>,
    keys: &HashMap<ServiceId, String>,
) -> Vec<MandateSpec> {
    mandates
        .iter()
        .map(|mandate| {
            MandateSpec::from_core(mandate, |uuid| {
                service_name(&ServiceId::from_uuid(*uuid), keys)
            })
        })
        .collect()
}
