//! Executes provisioning commands through the `ciam_core::Ciam` façade, with validation that
//! names fields and client-chosen idempotency keys.

use std::collections::{BTreeSet, HashMap};

use chrono::Duration;
use ciam_core::authz::{Action, Target, authorize};
use ciam_core::contact::{EmailAddress, bounded_text, key_text};
use ciam_core::events::{DomainEvent, EventKind};
use ciam_core::identities::AdministrationError;
use ciam_core::identities::{Identity, Mandate, Membership, MembershipStatus};
use ciam_core::ids::{BusinessRoleId, EventId, ServiceId};
use ciam_core::invitations::{BatchRowOutcome, InvitationError, InvitationKind, InvitationRequest};
use ciam_core::organizations::{
    Contract, ContractUpsert, Organization, OrganizationUpsert, ProvisioningError,
};
use ciam_core::store::{IdempotencyRecord, PageRequest, StoreError, StoreErrorKind};
use ciam_core::{ChangeSet, Ciam, Principal};
use sha2::{Digest, Sha256};

use crate::commands::{
    BatchResponse, ChangeContractRequest, Command, CommandResponse, ContactOutcome,
    ContactResponse, ContractResponse, ErrorBody, IdentityQuery, IdentityResponse,
    InvitationResponse, InviteBatchRequest, InviteLeadsRequest, InviteRequest, Invitee,
    LeadInvitee, MandateSpec, MembershipResponse, OrganizationDetails, OrganizationKind,
    OrganizationQuery, OrganizationResponse, RowOutcome, RowResult, UpsertContactRequest,
    UpsertContractRequest, UpsertOrganizationRequest, UserResponse,
};
use crate::validation::{self, FieldError, ValidationErrors};

/// Why a provisioning command failed. Every variant maps to one HTTP status
/// ([`CommandError::http_status`]) and a stable code ([`CommandError::code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The request is not valid; each refused field is named.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// The caller may not do this.
    #[error("not allowed: {0}")]
    Denied(String),
    /// A record the command names does not exist.
    #[error("{what} {key} not found")]
    NotFound {
        /// What kind of record.
        what: &'static str,
        /// The key given.
        key: String,
    },
    /// The command breaks a business rule (an ended contract, an inactive organization).
    #[error("{0}")]
    Rejected(String),
    /// A record changed concurrently; retrying the command is safe.
    #[error("changed concurrently, retry: {0}")]
    Conflict(String),
    /// The idempotency key was used before with a different request.
    #[error("idempotency key {0} was already used with a different request")]
    IdempotencyKeyReused(String),
    /// Storage failed; retrying later may work.
    #[error("storage failed: {0}")]
    Unavailable(String),
}

impl CommandError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Denied(_) => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Rejected(_) => "rejected",
            Self::Conflict(_) => "conflict",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status a REST API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Invalid(_) | Self::Rejected(_) | Self::IdempotencyKeyReused(_) => 422,
            Self::Denied(_) => 403,
            Self::NotFound { .. } => 404,
            Self::Conflict(_) => 409,
            Self::Unavailable(_) => 503,
        }
    }

    /// The error as a response body.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
            errors: match self {
                Self::Invalid(errors) => errors.errors().to_vec(),
                _ => Vec::new(),
            },
        }
    }

    fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid(ValidationErrors::single(field, reason))
    }
}

impl From<ValidationErrors> for CommandError {
    fn from(errors: ValidationErrors) -> Self {
        Self::Invalid(errors)
    }
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        match error.kind() {
            StoreErrorKind::Conflict | StoreErrorKind::Unique => Self::Conflict(error.to_string()),
            StoreErrorKind::NotFound => Self::NotFound {
                what: "record",
                key: error.to_string(),
            },
            _ => Self::Unavailable(error.to_string()),
        }
    }
}

fn from_provisioning(error: ProvisioningError) -> CommandError {
    match error {
        ProvisioningError::Denied(reason) => CommandError::Denied(reason.to_string()),
        ProvisioningError::Invalid(error) => CommandError::invalid("request", error),
        ProvisioningError::UnknownOrganization(key) => CommandError::NotFound {
            what: "organization",
            key,
        },
        ProvisioningError::UnknownContract(key) => CommandError::NotFound {
            what: "contract",
            key,
        },
        ProvisioningError::UnknownService(key) => {
            CommandError::invalid("services", format!("service {key} not found"))
        }
        ProvisioningError::ParentCycle => CommandError::invalid(
            "parent_crm_account_id",
            "an organization cannot be its own ancestor",
        ),
        ProvisioningError::ProviderNotProvisionable => {
            CommandError::invalid("kind", "the provider cannot be provisioned through the CRM")
        }
        ProvisioningError::InvalidValidity => {
            CommandError::invalid("valid_until", "must be after valid_from")
        }
        ProvisioningError::DomainTaken => CommandError::invalid(
            "email_domains",
            "a domain is already verified by another organization",
        ),
        ProvisioningError::Conflict => CommandError::Conflict("record changed".to_owned()),
        ProvisioningError::Store(error) => error.into(),
        other => CommandError::Rejected(other.to_string()),
    }
}

fn from_invitation(error: InvitationError) -> CommandError {
    match error {
        InvitationError::Denied(reason) => CommandError::Denied(reason.to_string()),
        InvitationError::Invalid(error) => CommandError::invalid("request", error),
        InvitationError::UnknownOrganization => CommandError::NotFound {
            what: "organization",
            key: String::new(),
        },
        InvitationError::UnknownBusinessRole(key) => {
            CommandError::invalid("business_roles", format!("business role {key} not found"))
        }
        InvitationError::UnknownService(key) => {
            CommandError::invalid("mandates", format!("service {key} not found"))
        }
        InvitationError::NameRequired => {
            CommandError::invalid("given_name", "given and family name go together")
        }
        InvitationError::Conflict => CommandError::Conflict("invitation changed".to_owned()),
        InvitationError::Store(error) => error.into(),
        other => CommandError::Rejected(other.to_string()),
    }
}

fn from_administration(error: AdministrationError) -> CommandError {
    match error {
        AdministrationError::Denied(reason) => CommandError::Denied(reason.to_string()),
        AdministrationError::Store(error) => error.into(),
        other => CommandError::Rejected(other.to_string()),
    }
}

/// The idempotency scope of a caller: keys of different API clients never collide.
pub fn idempotency_scope(principal: &Principal) -> String {
    match principal {
        Principal::Integration(integration) => format!("crm:{}", integration.name),
        Principal::User(user) => format!("user:{}", user.identity),
        Principal::System => "system".to_owned(),
        Principal::Anonymous => "anonymous".to_owned(),
    }
}

/// The fingerprint of a command that an idempotency key is bound to (SHA-256 of its JSON).
pub fn request_hash(command: &Command) -> Result<String, CommandError> {
    let bytes = serde_json::to_vec(command)
        .map_err(|error| CommandError::Unavailable(format!("cannot encode request: {error}")))?;
    Ok(hex_lower(&Sha256::digest(&bytes)))
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Names of services and business roles by id, for responses.
struct Keys {
    services: HashMap<ServiceId, String>,
    roles: HashMap<BusinessRoleId, String>,
}

impl Keys {
    fn service(&self, id: &ServiceId) -> String {
        self.services
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn role(&self, id: &BusinessRoleId) -> String {
        self.roles
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    fn mandates(&self, mandates: &BTreeSet<Mandate>) -> Vec<MandateSpec> {
        mandates
            .iter()
            .map(|mandate| {
                MandateSpec::from_core(mandate, |uuid| self.service(&ServiceId::from_uuid(*uuid)))
            })
            .collect()
    }

    fn roles(&self, roles: &BTreeSet<BusinessRoleId>) -> Vec<String> {
        roles.iter().map(|role| self.role(role)).collect()
    }
}

/// Runs provisioning commands for the CRM (or any caller) through the façade.
///
/// Every command takes the acting [`Principal`] (usually
/// `ciam.principals().integration("crm", scopes)`); the façade authorizes it.
#[derive(Clone, Debug)]
pub struct Provisioner {
    ciam: Ciam,
    idempotency_ttl: Duration,
}

/// How long a saved response answers retries with the same idempotency key (24 hours).
pub const DEFAULT_IDEMPOTENCY_TTL_HOURS: i64 = 24;

/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl Provisioner {
    /// A provisioner over `ciam`.
    pub fn new(ciam: Ciam) -> Self {
        Self {
            ciam,
            idempotency_ttl: Duration::hours(DEFAULT_IDEMPOTENCY_TTL_HOURS),
        }
    }

    /// How long a saved response answers retries (default 24 hours).
    pub fn with_idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.idempotency_ttl = ttl;
        self
    }

    /// The façade.
    pub fn ciam(&self) -> &Ciam {
        &self.ciam
    }

    /// Runs `command`. With an idempotency key, the first successful response is saved
    /// (scoped to the caller, see [`idempotency_scope`]) and returned again for a retry with
    /// the same key and the same request; the same key with another request is
    /// [`CommandError::IdempotencyKeyReused`]. Failures are not saved: retrying a failed
    /// command runs it again.
    pub async fn execute(
        &self,
        principal: &Principal,
        idempotency_key: Option<&str>,
        command: Command,
    ) -> Result<CommandResponse, CommandError> {
        let Some(key) = idempotency_key else {
            return self.run(principal, command).await;
        };
        validate_idempotency_key(key)?;
        let store = self.ciam.store();
        let scope = idempotency_scope(principal);
        let hash = request_hash(&command)?;
        let now = self.ciam.clock().now();
        if let Some(saved) = store.idempotency_record(&scope, key, now).await? {
            return replay(key, &hash, saved);
        }
        let response = self.run(principal, command).await?;
        let record = IdempotencyRecord {
            request_hash: hash.clone(),
            response: serde_json::to_value(&response).map_err(|error| {
                CommandError::Unavailable(format!("cannot encode response: {error}"))
            })?,
        };
        let saved = store
            .save_idempotency_record(&scope, key, record, now + self.idempotency_ttl)
            .await?;
        if !saved {
            // A concurrent request with the same key finished first: answer like it did.
            if let Some(first) = store.idempotency_record(&scope, key, now).await? {
                return replay(key, &hash, first);
            }
        }
        Ok(response)
    }

    async fn run(
        &self,
        principal: &Principal,
        command: Command,
    ) -> Result<CommandResponse, CommandError> {
        Ok(match command {
            Command::UpsertOrganization(request) => CommandResponse::UpsertOrganization(
                self.upsert_organization(principal, request).await?,
            ),
            Command::UpsertContract(request) => {
                CommandResponse::UpsertContract(self.upsert_contract(principal, request).await?)
            }
            Command::ChangeContract(request) => {
                CommandResponse::ChangeContract(self.change_contract(principal, request).await?)
            }
            Command::UpsertContact(request) => {
                CommandResponse::UpsertContact(self.upsert_contact(principal, request).await?)
            }
            Command::Invite(request) => {
                CommandResponse::Invite(self.invite(principal, request).await?)
            }
            Command::InviteBatch(request) => {
                CommandResponse::InviteBatch(self.invite_batch(principal, request).await?)
            }
            Command::InviteLeads(request) => {
                CommandResponse::InviteLeads(self.invite_leads(principal, request).await?)
            }
            Command::GetOrganization(query) => {
                CommandResponse::GetOrganization(self.organization(principal, query).await?)
            }
            Command::FindIdentity(query) => {
                CommandResponse::FindIdentity(self.find_identity(principal, query).await?)
            }
        })
    }

    async fn keys(&self) -> Result<Keys, CommandError> {
        let store = self.ciam.store();
        Ok(Keys {
            services: store
                .services()
                .await?
                .into_iter()
                .map(|service| (service.id, service.key))
                .collect(),
            roles: store
                .business_roles()
                .await?
                .into_iter()
                .map(|role| (role.id, role.key))
                .collect(),
        })
    }

    /// Creates or updates an organization by CRM account id. The same request twice changes
    /// nothing the second time.
    pub async fn upsert_organization(
        &self,
        principal: &Principal,
        request: UpsertOrganizationRequest,
    ) -> Result<OrganizationResponse, CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_account_id", &request.crm_account_id);
        errors.check("name", bounded_text("value", &request.name, 200));
        if request.kind == OrganizationKind::Provider {
            errors.push("kind", "must be customer or partner");
        }
        if let Some(parent) = &request.parent_crm_account_id {
            validation::crm_id(&mut errors, "parent_crm_account_id", parent);
            if parent.trim() == request.crm_account_id.trim() {
                errors.push(
                    "parent_crm_account_id",
                    "an organization cannot be its own parent",
                );
            }
        }
        for (index, domain) in request.email_domains.iter().enumerate() {
            validation::domain(&mut errors, &format!("email_domains[{index}]"), domain);
        }
        errors.into_result()?;
        let parent = request.parent_crm_account_id.clone();
        let org = self
            .ciam
            .organizations()
            .upsert(
                principal,
                OrganizationUpsert {
                    crm_account_id: request.crm_account_id,
                    name: request.name,
                    kind: request.kind.into(),
                    parent_crm_account_id: request.parent_crm_account_id,
                    email_domains: request.email_domains,
                    suspended: request.suspended,
                },
            )
            .await
            .map_err(|error| match error {
                ProvisioningError::UnknownOrganization(key) if Some(&key) == parent.as_ref() => {
                    CommandError::invalid(
                        "parent_crm_account_id",
                        format!("no organization with CRM account id {key}"),
                    )
                }
                other => from_provisioning(other),
            })?;
        Ok(organization_response(&org))
    }

    /// Creates or updates a contract by CRM contract id.
    pub async fn upsert_contract(
        &self,
        principal: &Principal,
        request: UpsertContractRequest,
    ) -> Result<ContractResponse, CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_contract_id", &request.crm_contract_id);
        validation::crm_id(&mut errors, "crm_account_id", &request.crm_account_id);
        let keys = self.keys().await?;
        let known: BTreeSet<&String> = keys.services.values().collect();
        for (index, service) in request.services.iter().enumerate() {
            let field = format!("services[{index}]");
            validation::key(&mut errors, &field, service);
            if !known.contains(service) {
                errors.push(field, format!("service {service} not found"));
            }
        }
        if let (Some(from), Some(until)) = (request.valid_from, request.valid_until) {
            if until <= from {
                errors.push("valid_until", "must be after valid_from");
            }
        }
        errors.into_result()?;
        let contract = self
            .ciam
            .organizations()
            .upsert_contract(
                principal,
                ContractUpsert {
                    crm_contract_id: request.crm_contract_id,
                    crm_account_id: request.crm_account_id,
                    services: request.services,
                    status: request.status.into(),
                    valid_from: request.valid_from,
                    valid_until: request.valid_until,
                },
            )
            .await
            .map_err(from_provisioning)?;
        Ok(contract_response(&contract, &keys))
    }

    /// Suspends, resumes or ends a contract. Repeating a change is a no-op.
    pub async fn change_contract(
        &self,
        principal: &Principal,
        request: ChangeContractRequest,
    ) -> Result<ContractResponse, CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_contract_id", &request.crm_contract_id);
        errors.into_result()?;
        let contract = self
            .ciam
            .organizations()
            .change_contract(
                principal,
                request.crm_contract_id.trim(),
                request.change.into(),
            )
            .await
            .map_err(|error| match error {
                // Ending an ended contract again is what the CRM meant: no error.
                ProvisioningError::ContractEnded(key) => CommandError::Rejected(format!(
                    "contract {key} has ended and cannot be changed"
                )),
                other => from_provisioning(other),
            });
        let contract = match contract {
            Ok(contract) => contract,
            Err(CommandError::Rejected(message))
                if request.change == crate::commands::ContractChangeKind::End =>
            {
                let existing = self
                    .ciam
                    .store()
                    .contract_by_crm_id(request.crm_contract_id.trim())
                    .await?;
                match existing {
                    Some(contract)
                        if contract.status == ciam_core::organizations::ContractStatus::Ended =>
                    {
                        // Authorize the read as a contract change would be.
                        self.authorize_contract(principal, &contract).await?;
                        contract
                    }
                    _ => return Err(CommandError::Rejected(message)),
                }
            }
            Err(other) => return Err(other),
        };
        let keys = self.keys().await?;
        Ok(contract_response(&contract, &keys))
    }

    async fn authorize_contract(
        &self,
        principal: &Principal,
        contract: &Contract,
    ) -> Result<(), CommandError> {
        let org = self
            .ciam
            .store()
            .organization(contract.organization)
            .await?
            .ok_or_else(|| CommandError::NotFound {
                what: "organization",
                key: contract.organization.to_string(),
            })?;
        let target = Target::Organization(self.ciam.org_target(&org).await?);
        authorize(principal, &Action::ManageContracts, &target)
            .into_result()
            .map_err(|reason| CommandError::Denied(reason.to_string()))
    }

    /// Whether `principal` may do `action` in the organization of `membership`.
    async fn allowed_in(
        &self,
        principal: &Principal,
        action: &Action,
        membership: &Membership,
    ) -> Result<Option<Organization>, CommandError> {
        let Some(org) = self
            .ciam
            .store()
            .organization(membership.organization)
            .await?
        else {
            return Ok(None);
        };
        let target = Target::Organization(self.ciam.org_target(&org).await?);
        Ok(authorize(principal, action, &target)
            .is_allowed()
            .then_some(org))
    }

    /// Links a CRM contact id to the person with that id or, else, that email. Only the CRM
    /// contact id is written; the person's own contact details stay theirs.
    ///
    /// The caller needs the provisioning right in every organization the person belongs to
    /// (so an integration can never relabel the provider's staff).
    pub async fn upsert_contact(
        &self,
        principal: &Principal,
        request: UpsertContactRequest,
    ) -> Result<ContactResponse, CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_contact_id", &request.crm_contact_id);
        let email = errors.check("email", EmailAddress::parse(&request.email));
        errors.into_result()?;
        let Some(email) = email else {
            return Err(CommandError::invalid("email", "invalid email address"));
        };
        let crm_contact_id = request.crm_contact_id.trim().to_owned();
        let store = self.ciam.store();
        let by_contact = store.identity_by_crm_contact(&crm_contact_id).await?;
        let (identity, outcome) = match by_contact {
            Some(identity) => (identity, ContactOutcome::Unchanged),
            None => match store.identity_by_email(&email).await? {
                Some(identity) => (identity, ContactOutcome::Linked),
                None => {
                    authorize(principal, &Action::ProvisionOrganization, &Target::Global)
                        .into_result()
                        .map_err(|reason| CommandError::Denied(reason.to_string()))?;
                    return Ok(ContactResponse {
                        outcome: ContactOutcome::Unmatched,
                        identity: None,
                    });
                }
            },
        };
        let memberships: Vec<Membership> = store
            .memberships_of_identity(identity.id)
            .await?
            .into_iter()
            .filter(|membership| membership.status != MembershipStatus::Removed)
            .collect();
        if memberships.is_empty() {
            authorize(principal, &Action::ProvisionOrganization, &Target::Global)
                .into_result()
                .map_err(|reason| CommandError::Denied(reason.to_string()))?;
        }
        for membership in &memberships {
            if self
                .allowed_in(principal, &Action::ProvisionOrganization, membership)
                .await?
                .is_none()
            {
                return Err(CommandError::Denied(
                    "the person belongs to an organization outside your provisioning rights"
                        .to_owned(),
                ));
            }
        }
        let identity = if outcome == ContactOutcome::Linked {
            let mut next = identity.clone();
            let now = self.ciam.clock().now();
            next.crm_contact_id = Some(crm_contact_id.clone());
            next.updated_at = now;
            let mut changes = ChangeSet::new();
            changes.event(DomainEvent {
                id: EventId::generate(self.ciam.random().as_ref()),
                at: now,
                actor: principal.actor(),
                organization: None,
                identity: Some(identity.id),
                kind: EventKind::CrmContactLinked {
                    crm_contact_id,
                    before: identity.crm_contact_id.clone(),
                },
            });
            changes.put(next.clone());
            store.commit(changes).await?;
            next.version += 1;
            next
        } else {
            identity
        };
        let response = self.identity_response(principal, &identity).await?;
        Ok(ContactResponse {
            outcome,
            identity: Some(response),
        })
    }

    async fn organization_for_invite(
        &self,
        crm_account_id: &str,
    ) -> Result<Organization, CommandError> {
        self.ciam
            .store()
            .organization_by_crm_account(crm_account_id.trim())
            .await?
            .ok_or_else(|| CommandError::NotFound {
                what: "organization",
                key: crm_account_id.to_owned(),
            })
    }

    /// Checks an invitee and turns it into the core's request; errors carry `prefix` paths.
    async fn invitation_request(
        &self,
        prefix: &str,
        invitee: &Invitee,
        role_keys: &BTreeSet<String>,
        errors: &mut ValidationErrors,
    ) -> Result<Option<InvitationRequest>, CommandError> {
        validation::email(errors, &format!("{prefix}email"), &invitee.email);
        validation::name(
            errors,
            prefix,
            invitee.given_name.as_deref(),
            invitee.family_name.as_deref(),
        );
        for (index, role) in invitee.business_roles.iter().enumerate() {
            if !role_keys.contains(role.trim()) {
                errors.push(
                    format!("{prefix}business_roles[{index}]"),
                    format!("business role {role} not found"),
                );
            }
        }
        let mut mandates = BTreeSet::new();
        for (index, mandate) in invitee.mandates.iter().enumerate() {
            match mandate {
                MandateSpec::OrgAdmin => {
                    mandates.insert(Mandate::OrgAdmin);
                }
                MandateSpec::UserManager => {
                    mandates.insert(Mandate::UserManager);
                }
                MandateSpec::ServiceManager { service } => {
                    match self.ciam.store().service_by_key(service.trim()).await? {
                        Some(found) => {
                            mandates.insert(Mandate::ServiceManager(found.id));
                        }
                        None => errors.push(
                            format!("{prefix}mandates[{index}].service"),
                            format!("service {service} not found"),
                        ),
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Ok(None);
        }
        Ok(Some(InvitationRequest {
            email: invitee.email.clone(),
            given_name: invitee.given_name.clone(),
            family_name: invitee.family_name.clone(),
            business_roles: invitee
                .business_roles
                .iter()
                .map(|role| role.trim().to_owned())
                .collect(),
            mandates,
            staff_roles: BTreeSet::new(),
            contact_person: invitee.contact_person,
            crm_lead_id: None,
        }))
    }

    async fn role_keys(&self) -> Result<BTreeSet<String>, CommandError> {
        Ok(self
            .ciam
            .store()
            .business_roles()
            .await?
            .into_iter()
            .map(|role| role.key)
            .collect())
    }

    /// Invites one person. Inviting someone who already has an open invitation is refused
    /// (`rejected`); with an idempotency key, a retry returns the first invitation.
    pub async fn invite(
        &self,
        principal: &Principal,
        request: InviteRequest,
    ) -> Result<InvitationResponse, CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_account_id", &request.crm_account_id);
        let role_keys = self.role_keys().await?;
        let prepared = self
            .invitation_request("", &request.invitee(), &role_keys, &mut errors)
            .await?;
        errors.into_result()?;
        let Some(prepared) = prepared else {
            return Err(CommandError::invalid("request", "not valid"));
        };
        let org = self
            .organization_for_invite(&request.crm_account_id)
            .await?;
        let issued = self
            .ciam
            .invitations()
            .invite(principal, org.id, prepared)
            .await
            .map_err(from_invitation)?;
        let invitation = issued.invitation;
        Ok(InvitationResponse {
            invitation_id: invitation.id.as_uuid(),
            organization_id: invitation.organization.as_uuid(),
            email: invitation.email.to_string(),
            status: invitation.status.into(),
            crm_lead_id: match invitation.kind {
                InvitationKind::Lead { crm_lead_id } => Some(crm_lead_id),
                InvitationKind::Member | InvitationKind::ContactPerson => None,
            },
            expires_at: invitation.expires_at,
            mail_sent: issued.mail_sent,
        })
    }

    /// Invites many people into one organization. Every row gets its own result; a bad row
    /// never fails the batch. Repeating a batch invites nobody twice (rows come back
    /// `already_invited`); with an idempotency key it returns the first result.
    pub async fn invite_batch(
        &self,
        principal: &Principal,
        request: InviteBatchRequest,
    ) -> Result<BatchResponse, CommandError> {
        self.check_batch_shape(&request.crm_account_id, request.items.len())?;
        let role_keys = self.role_keys().await?;
        let mut rows = Vec::with_capacity(request.items.len());
        for (index, invitee) in request.items.iter().enumerate() {
            let mut errors = ValidationErrors::new();
            let prepared = self
                .invitation_request(
                    &format!("items[{index}]."),
                    invitee,
                    &role_keys,
                    &mut errors,
                )
                .await?;
            rows.push((invitee.email.clone(), prepared.ok_or(errors)));
        }
        self.run_batch(principal, &request.crm_account_id, rows)
            .await
    }

    /// Invites leads: each registers with the role `lead`, and the CRM hears
    /// `lead_registered` with its lead id when they do.
    pub async fn invite_leads(
        &self,
        principal: &Principal,
        request: InviteLeadsRequest,
    ) -> Result<BatchResponse, CommandError> {
        self.check_batch_shape(&request.crm_account_id, request.items.len())?;
        let rows = request
            .items
            .iter()
            .enumerate()
            .map(|(index, lead)| (lead.email.clone(), lead_request(index, lead)))
            .collect();
        self.run_batch(principal, &request.crm_account_id, rows)
            .await
    }

    fn check_batch_shape(&self, crm_account_id: &str, rows: usize) -> Result<(), CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_account_id", crm_account_id);
        let max = self.ciam.policy().max_batch_rows;
        if rows == 0 {
            errors.push("items", "must not be empty");
        } else if rows > max {
            errors.push("items", format!("at most {max} rows"));
        }
        Ok(errors.into_result()?)
    }

    async fn run_batch(
        &self,
        principal: &Principal,
        crm_account_id: &str,
        rows: Vec<(String, Result<InvitationRequest, ValidationErrors>)>,
    ) -> Result<BatchResponse, CommandError> {
        let org = self.organization_for_invite(crm_account_id).await?;
        let mut outcomes: Vec<Option<RowOutcome>> = vec![None; rows.len()];
        let mut valid = Vec::new();
        let mut positions = Vec::new();
        for (index, (_, row)) in rows.iter().enumerate() {
            match row {
                Ok(request) => {
                    positions.push(index);
                    valid.push(request.clone());
                }
                Err(errors) => {
                    outcomes[index] = Some(RowOutcome::Invalid {
                        errors: errors.errors().to_vec(),
                    });
                }
            }
        }
        let mut batch_id = None;
        if !valid.is_empty() {
            let (batch, results) = self
                .ciam
                .invitations()
                .invite_batch(principal, org.id, valid)
                .await
                .map_err(from_invitation)?;
            for (position, outcome) in results.into_iter().enumerate() {
                let Some(&index) = positions.get(position) else {
                    continue;
                };
                let outcome = row_outcome(index, outcome, &positions);
                if outcome.is_created() {
                    batch_id = Some(batch.as_uuid());
                }
                outcomes[index] = Some(outcome);
            }
        }
        let items = rows
            .into_iter()
            .zip(outcomes)
            .enumerate()
            .map(|(index, ((email, _), outcome))| RowResult {
                index,
                email,
                outcome: outcome.unwrap_or(RowOutcome::Invalid {
                    errors: vec![FieldError::new(format!("items[{index}]"), "not processed")],
                }),
            })
            .collect();
        Ok(BatchResponse::new(batch_id, items))
    }

    /// An organization with its contracts and a page of its users.
    pub async fn organization(
        &self,
        principal: &Principal,
        query: OrganizationQuery,
    ) -> Result<OrganizationDetails, CommandError> {
        let mut errors = ValidationErrors::new();
        validation::crm_id(&mut errors, "crm_account_id", &query.crm_account_id);
        let limit = query.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            errors.push("limit", "must be between 1 and 500");
        }
        errors.into_result()?;
        let org = self
            .ciam
            .organizations()
            .by_crm_account(principal, query.crm_account_id.trim())
            .await
            .map_err(from_provisioning)?;
        let keys = self.keys().await?;
        let contracts = self
            .ciam
            .store()
            .contracts_of_organization(org.id)
            .await?
            .iter()
            .map(|contract| contract_response(contract, &keys))
            .collect();
        let page = self
            .ciam
            .administration()
            .members(
                principal,
                org.id,
                PageRequest {
                    after: query.after,
                    limit,
                },
            )
            .await
            .map_err(from_administration)?;
        let users = page
            .items
            .iter()
            .map(|member| UserResponse {
                identity_id: member.identity.id.as_uuid(),
                email: member.identity.email.to_string(),
                given_name: member.identity.name.given.clone(),
                family_name: member.identity.name.family.clone(),
                status: member.identity.status.into(),
                crm_contact_id: member.identity.crm_contact_id.clone(),
                membership_status: member.membership.status.into(),
                business_roles: keys.roles(&member.membership.business_roles),
                mandates: keys.mandates(&member.membership.mandates),
                crm_lead_id: member.membership.crm_lead_id.clone(),
            })
            .collect();
        Ok(OrganizationDetails {
            organization: organization_response(&org),
            contracts,
            users,
            next: page.next,
        })
    }

    /// A person by email or CRM contact id, with the memberships the caller may see. A person
    /// the caller may not see is reported as not found.
    pub async fn find_identity(
        &self,
        principal: &Principal,
        query: IdentityQuery,
    ) -> Result<IdentityResponse, CommandError> {
        let store = self.ciam.store();
        let identity = match (&query.email, &query.crm_contact_id) {
            (Some(email), None) => {
                let email = EmailAddress::parse(email)
                    .map_err(|error| CommandError::invalid("email", error))?;
                store.identity_by_email(&email).await?
            }
            (None, Some(contact)) => {
                let contact = key_text("value", contact, validation::CRM_ID_MAX)
                    .map_err(|error| CommandError::invalid("crm_contact_id", error))?;
                store.identity_by_crm_contact(&contact).await?
            }
            _ => {
                return Err(CommandError::invalid(
                    "email",
                    "give exactly one of email and crm_contact_id",
                ));
            }
        };
        let not_found = || CommandError::NotFound {
            what: "person",
            key: query
                .email
                .clone()
                .or_else(|| query.crm_contact_id.clone())
                .unwrap_or_default(),
        };
        let identity = identity.ok_or_else(not_found)?;
        let response = self.identity_response(principal, &identity).await?;
        let has_memberships = !store.memberships_of_identity(identity.id).await?.is_empty();
        let visible = if has_memberships {
            !response.memberships.is_empty()
        } else {
            authorize(principal, &Action::ViewOrganization, &Target::Global).is_allowed()
        };
        if visible {
            Ok(response)
        } else {
            Err(not_found())
        }
    }

    async fn identity_response(
        &self,
        principal: &Principal,
        identity: &Identity,
    ) -> Result<IdentityResponse, CommandError> {
        let keys = self.keys().await?;
        let mut memberships = Vec::new();
        for membership in self
            .ciam
            .store()
            .memberships_of_identity(identity.id)
            .await?
        {
            let Some(org) = self
                .allowed_in(principal, &Action::ViewOrganization, &membership)
                .await?
            else {
                continue;
            };
            memberships.push(MembershipResponse {
                organization_id: org.id.as_uuid(),
                crm_account_id: org.crm_account_id.clone(),
                status: membership.status.into(),
                business_roles: keys.roles(&membership.business_roles),
                mandates: keys.mandates(&membership.mandates),
                crm_lead_id: membership.crm_lead_id.clone(),
            });
        }
        Ok(IdentityResponse {
            id: identity.id.as_uuid(),
            email: identity.email.to_string(),
            email_verified: identity.email_verified,
            phone: identity
                .phone
                .as_ref()
                .map(|phone| phone.as_str().to_owned()),
            phone_verified: identity.phone_verified,
            given_name: identity.name.given.clone(),
            family_name: identity.name.family.clone(),
            status: identity.status.into(),
            crm_contact_id: identity.crm_contact_id.clone(),
            memberships,
        })
    }
}

fn lead_request(index: usize, lead: &LeadInvitee) -> Result<InvitationRequest, ValidationErrors> {
    let prefix = format!("items[{index}].");
    let mut errors = ValidationErrors::new();
    validation::email(&mut errors, &format!("{prefix}email"), &lead.email);
    validation::crm_id(
        &mut errors,
        &format!("{prefix}crm_lead_id"),
        &lead.crm_lead_id,
    );
    validation::name(
        &mut errors,
        &prefix,
        lead.given_name.as_deref(),
        lead.family_name.as_deref(),
    );
    errors.into_result()?;
    Ok(InvitationRequest {
        email: lead.email.clone(),
        given_name: lead.given_name.clone(),
        family_name: lead.family_name.clone(),
        crm_lead_id: Some(lead.crm_lead_id.trim().to_owned()),
        ..InvitationRequest::default()
    })
}

fn row_outcome(index: usize, outcome: BatchRowOutcome, positions: &[usize]) -> RowOutcome {
    match outcome {
        BatchRowOutcome::Invited { invitation } => RowOutcome::Invited {
            invitation_id: invitation.as_uuid(),
        },
        BatchRowOutcome::HeldForReview { invitation } => RowOutcome::HeldForReview {
            invitation_id: invitation.as_uuid(),
        },
        BatchRowOutcome::AlreadyMember => RowOutcome::AlreadyMember,
        BatchRowOutcome::AlreadyInvited { invitation } => RowOutcome::AlreadyInvited {
            invitation_id: invitation.as_uuid(),
        },
        BatchRowOutcome::DuplicateInBatch { first_row } => RowOutcome::DuplicateInBatch {
            first_row: positions.get(first_row).copied().unwrap_or(first_row),
        },
        BatchRowOutcome::InvalidEmail { reason } => RowOutcome::Invalid {
            errors: vec![FieldError::new(format!("items[{index}].email"), reason)],
        },
        BatchRowOutcome::Invalid { reason } => RowOutcome::Invalid {
            errors: vec![FieldError::new(format!("items[{index}]"), reason)],
        },
        BatchRowOutcome::NotAllowed { reason } => RowOutcome::NotAllowed { reason },
    }
}

fn replay(
    key: &str,
    hash: &str,
    saved: IdempotencyRecord,
) -> Result<CommandResponse, CommandError> {
    if saved.request_hash != hash {
        return Err(CommandError::IdempotencyKeyReused(key.to_owned()));
    }
    serde_json::from_value(saved.response)
        .map_err(|error| CommandError::Unavailable(format!("saved response is unusable: {error}")))
}

fn validate_idempotency_key(key: &str) -> Result<(), CommandError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|byte| byte.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(CommandError::invalid(
            "idempotency_key",
            format!("1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ))
    }
}

/// The API shape of an organization.
pub fn organization_response(org: &Organization) -> OrganizationResponse {
    OrganizationResponse {
        id: org.id.as_uuid(),
        crm_account_id: org.crm_account_id.clone(),
        name: org.name.clone(),
        kind: org.kind.into(),
        status: org.status.into(),
        parent_id: org.parent.map(|parent| parent.as_uuid()),
        email_domains: org
            .email_domains
            .iter()
            .map(|domain| domain.as_str().to_owned())
            .collect(),
        version: org.version,
        created_at: org.created_at,
        updated_at: org.updated_at,
    }
}

fn contract_response(contract: &Contract, keys: &Keys) -> ContractResponse {
    ContractResponse {
        id: contract.id.as_uuid(),
        crm_contract_id: contract.crm_contract_id.clone(),
        organization_id: contract.organization.as_uuid(),
        services: contract
            .services
            .iter()
            .map(|service| keys.service(service))
            .collect(),
        status: contract.status.into(),
        valid_from: contract.valid_from,
        valid_until: contract.valid_until,
        access_ended_at: contract.access_ended_at,
        version: contract.version,
    }
}
