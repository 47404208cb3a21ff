//! The `Store` port: reads, and one atomic write.
//!
//! A [`ChangeSet`] carries records, each with the version it expects to replace (0 for a new
//! record), plus the domain events the change causes. [`Store::commit`] applies all of it or
//! nothing: a stale version is [`StoreErrorKind::Conflict`] (never a lost update), a clash on a
//! unique field is [`StoreErrorKind::Unique`] naming the field, and the events land in the
//! outbox in the same commit.
//!
//! Backends: `ciam_store::MemoryStore`, `ciam_store::SqlStore` (SQLite, PostgreSQL). The
//! conformance suite in `ciam-store` (feature `conformance`) checks any implementation.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::{EmailAddress, EmailDomain};
use crate::credentials::Credential;
use crate::events::DomainEvent;
use crate::identities::{Identity, Membership};
use crate::ids::{
    BusinessRoleId, ContractId, CredentialId, EventId, IdentityId, InvitationId, JoinRequestId,
    MembershipId, OrgRegistrationId, OrganizationId, ServiceId, SessionId, SettingId,
};
use crate::invitations::{Invitation, InvitationStatus};
use crate::organizations::{Contract, Organization};
use crate::registrations::{JoinRequest, OrgRegistration};
use crate::secrets::TokenHash;
use crate::services::{BusinessRole, Service};
use crate::sessions::Session;
use crate::settings::{Setting, SettingKind};

/// What kind of storage failure happened. Driver errors never cross the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// A record that had to exist does not.
    NotFound,
    /// A record changed since it was read (stale version), or was created concurrently.
    Conflict,
    /// A unique field clashes with another record.
    Unique,
    /// The store cannot be reached or is overloaded; retrying later may work.
    Unavailable,
    /// Stored data could not be decoded, or the schema is newer than this code.
    Corrupt,
}

/// A storage error: a kind, the field for [`StoreErrorKind::Unique`], and a message safe to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    field: Option<&'static str>,
    message: String,
}

impl StoreError {
    /// A `NotFound` error.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self {
            kind: StoreErrorKind::NotFound,
            field: None,
            message: format!("{what} not found"),
        }
    }

    /// A `Conflict` error.
    pub fn conflict(what: impl fmt::Display) -> Self {
        Self {
            kind: StoreErrorKind::Conflict,
            field: None,
            message: format!("{what} was changed concurrently"),
        }
    }

    /// A `Unique` error naming the field.
    pub fn unique(field: &'static str) -> Self {
        Self {
            kind: StoreErrorKind::Unique,
            field: Some(field),
            message: format!("{field} is already in use"),
        }
    }

    /// An `Unavailable` error.
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Self {
            kind: StoreErrorKind::Unavailable,
            field: None,
            message: format!("store unavailable: {message}"),
        }
    }

    /// A `Corrupt` error.
    pub fn corrupt(message: impl fmt::Display) -> Self {
        Self {
            kind: StoreErrorKind::Corrupt,
            field: None,
            message: format!("stored data is unusable: {message}"),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The unique field that clashed, for [`StoreErrorKind::Unique`].
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }
}

/// Unique field names reported by [`StoreError::unique`].
pub mod unique_fields {
    /// `Identity::email` (case-insensitive).
    pub const IDENTITY_EMAIL: &str = "email";
    /// `Identity::crm_contact_id`.
    pub const IDENTITY_CRM_CONTACT_ID: &str = "crm_contact_id";
    /// `Organization::crm_account_id`.
    pub const ORGANIZATION_CRM_ACCOUNT_ID: &str = "crm_account_id";
    /// One of `Organization::email_domains`.
    pub const ORGANIZATION_EMAIL_DOMAIN: &str = "email_domain";
    /// `Organization::join_code`.
    pub const ORGANIZATION_JOIN_CODE: &str = "join_code";
    /// `Contract::crm_contract_id`.
    pub const CONTRACT_CRM_CONTRACT_ID: &str = "crm_contract_id";
    /// `(Membership::identity, Membership::organization)`.
    pub const MEMBERSHIP: &str = "membership";
    /// `Service::key`.
    pub const SERVICE_KEY: &str = "service_key";
    /// `BusinessRole::key`.
    pub const BUSINESS_ROLE_KEY: &str = "business_role_key";
    /// `Invitation::token_hash`.
    pub const INVITATION_TOKEN: &str = "invitation_token";
    /// `Session::token_hash`.
    pub const SESSION_TOKEN: &str = "session_token";
    /// `(provider, subject)` of a federated link.
    pub const FEDERATED_LINK: &str = "federated_link";
    /// `(Setting::kind, Setting::key)`.
    pub const SETTING_KEY: &str = "setting_key";
}

/// One record of any kind, as written in a [`ChangeSet`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "record")]
pub enum Record {
    /// An organization.
    Organization(Organization),
    /// A contract.
    Contract(Contract),
    /// An identity.
    Identity(Identity),
    /// A membership.
    Membership(Membership),
    /// A service.
    Service(Service),
    /// A business role.
    BusinessRole(BusinessRole),
    /// An invitation.
    Invitation(Invitation),
    /// An organization registration.
    OrgRegistration(OrgRegistration),
    /// A join request.
    JoinRequest(JoinRequest),
    /// A credential.
    Credential(Credential),
    /// A session.
    Session(Session),
    /// A piece of stored configuration.
    Setting(Setting),
}

impl Record {
    /// The version the writer read (0 for a new record).
    pub fn version(&self) -> u64 {
        match self {
            Self::Organization(r) => r.version,
            Self::Contract(r) => r.version,
            Self::Identity(r) => r.version,
            Self::Membership(r) => r.version,
            Self::Service(r) => r.version,
            Self::BusinessRole(r) => r.version,
            Self::Invitation(r) => r.version,
            Self::OrgRegistration(r) => r.version,
            Self::JoinRequest(r) => r.version,
            Self::Credential(r) => r.version,
            Self::Session(r) => r.version,
            Self::Setting(r) => r.version,
        }
    }

    /// Sets the version (stores call this with the new version when they save the record).
    pub fn set_version(&mut self, version: u64) {
        match self {
            Self::Organization(r) => r.version = version,
            Self::Contract(r) => r.version = version,
            Self::Identity(r) => r.version = version,
            Self::Membership(r) => r.version = version,
            Self::Service(r) => r.version = version,
            Self::BusinessRole(r) => r.version = version,
            Self::Invitation(r) => r.version = version,
            Self::OrgRegistration(r) => r.version = version,
            Self::JoinRequest(r) => r.version = version,
            Self::Credential(r) => r.version = version,
            Self::Session(r) => r.version = version,
            Self::Setting(r) => r.version = version,
        }
    }

    /// A short description for errors, such as `identity 0b6f…`.
    pub fn describe(&self) -> String {
        match self {
            Self::Organization(r) => format!("organization {}", r.id),
            Self::Contract(r) => format!("contract {}", r.id),
            Self::Identity(r) => format!("identity {}", r.id),
            Self::Membership(r) => format!("membership {}", r.id),
            Self::Service(r) => format!("service {}", r.id),
            Self::BusinessRole(r) => format!("business role {}", r.id),
            Self::Invitation(r) => format!("invitation {}", r.id),
            Self::OrgRegistration(r) => format!("organization registration {}", r.id),
            Self::JoinRequest(r) => format!("join request {}", r.id),
            Self::Credential(r) => format!("credential {}", r.id),
            Self::Session(r) => format!("session {}", r.id),
            Self::Setting(r) => format!("setting {} {}", r.kind.as_str(), r.key),
        }
    }
}

/// A record to delete, with the version the writer read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "record", content = "id")]
pub enum RecordRef {
    /// A credential (replaced passwords, unlinked accounts).
    Credential(CredentialId, u64),
    /// A session (pruned after expiry).
    Session(SessionId, u64),
    /// A piece of stored configuration (an SP unregistered, an API key revoked).
    Setting(SettingId, u64),
}

/// Everything one operation writes: committed entirely or not at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Records to insert (version 0) or update (the version read).
    pub records: Vec<Record>,
    /// Records to delete.
    pub deletions: Vec<RecordRef>,
    /// Events caused by the change; they go to the outbox and the audit log.
    pub events: Vec<DomainEvent>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a record to write.
    pub fn put(&mut self, record: impl Into<Record>) -> &mut Self {
        self.records.push(record.into());
        self
    }

    /// Adds a record to delete.
    pub fn delete(&mut self, record: RecordRef) -> &mut Self {
        self.deletions.push(record);
        self
    }

    /// Adds an event.
    pub fn event(&mut self, event: DomainEvent) -> &mut Self {
        self.events.push(event);
        self
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.deletions.is_empty() && self.events.is_empty()
    }
}

macro_rules! record_from {
    ($($variant:ident),*) => {
        $(impl From<$variant> for Record {
            fn from(record: $variant) -> Self {
                Record::$variant(record)
            }
        })*
    };
}
record_from!(
    Organization,
    Contract,
    Identity,
    Membership,
    Service,
    BusinessRole,
    Invitation,
    OrgRegistration,
    JoinRequest,
    Credential,
    Session,
    Setting
);

/// A page request for keyset pagination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<String>,
    /// At most this many items (stores cap it at 500).
    pub limit: usize,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        Self { after: None, limit }
    }
}

/// A page of results with the cursor for the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// A member of an organization: the membership and the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The membership.
    pub membership: Membership,
    /// The person.
    pub identity: Identity,
}

/// Which audit events to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events about this organization.
    pub organization: Option<OrganizationId>,
    /// Only events about this identity.
    pub identity: Option<IdentityId>,
    /// Only events at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this instant.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (newest first; stores cap it at 1000).
    pub limit: usize,
}

/// An event read back from the store with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the store's event sequence (increasing with commit order).
    pub sequence: i64,
    /// The event.
    pub event: DomainEvent,
}

/// An outbox entry claimed by a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The event.
    pub event: DomainEvent,
    /// Position in the event sequence.
    pub sequence: i64,
    /// Delivery attempts before this claim.
    pub attempts: u32,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
}

/// What [`Store::release_outbox`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The entry will be tried again at the given time.
    WillRetry,
    /// The entry used up its attempts and is now a dead letter.
    DeadLettered,
}

/// A saved response to an idempotent request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Fingerprint of the request (so a different request with the same key is refused).
    pub request_hash: String,
    /// The response to replay.
    pub response: serde_json::Value,
}

/// The records that decide a person's access at one instant: the identity and, for each of
/// its memberships (in [`Store::memberships_of_identity`] order), the organization (when it
/// still exists) with all of that organization's contracts.
///
/// Read by [`Store::identity_access`] on every authenticated request (session check, role
/// resolution for single sign-on), so that backends can answer it in few round trips.
#[derive(Clone, Debug, PartialEq)]
pub struct IdentityAccess {
    /// The identity.
    pub identity: Identity,
    /// Its memberships, with their organizations and contracts.
    pub memberships: Vec<MembershipAccess>,
}

/// One membership of an [`IdentityAccess`] with its organization and that organization's
/// contracts.
#[derive(Clone, Debug, PartialEq)]
pub struct MembershipAccess {
    /// The membership.
    pub membership: Membership,
    /// The organization, `None` when it no longer exists.
    pub organization: Option<Organization>,
    /// Every contract of the organization (in [`Store::contracts_of_organization`] order);
    /// empty when the organization does not exist.
    pub contracts: Vec<Contract>,
}

/// A session with the access records of its identity, as read by [`Store::session_access`]
/// for the session check of every authenticated request.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionAccess {
    /// The session (live or not: the caller decides).
    pub session: Session,
    /// The access records of the session's identity; `None` when the identity is gone.
    pub access: Option<IdentityAccess>,
}

/// The storage port.
///
/// Implementations must make [`Store::commit`] atomic and version-checked, keep events in the
/// outbox in commit order, and make every counter and single-use operation atomic across
/// processes. Run the conformance suite of `ciam-store` against an implementation.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies a change set atomically (see the module docs).
    async fn commit(&self, changes: ChangeSet) -> Result<(), StoreError>;

    // ----- organizations and contracts -----

    /// An organization by id.
    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError>;
    /// An organization by CRM account id.
    async fn organization_by_crm_account(
        &self,
        crm_account_id: &str,
    ) -> Result<Option<Organization>, StoreError>;
    /// The organization that verified `domain`.
    async fn organization_by_email_domain(
        &self,
        domain: &EmailDomain,
    ) -> Result<Option<Organization>, StoreError>;
    /// The organization with this join code.
    async fn organization_by_join_code(
        &self,
        code: &str,
    ) -> Result<Option<Organization>, StoreError>;
    /// Direct sub-organizations of `parent`.
    async fn sub_organizations(
        &self,
        parent: OrganizationId,
    ) -> Result<Vec<Organization>, StoreError>;
    /// Organizations by name (case-insensitive substring), at most `limit`, ordered by name.
    async fn search_organizations(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Organization>, StoreError>;
    /// A contract by id.
    async fn contract(&self, id: ContractId) -> Result<Option<Contract>, StoreError>;
    /// A contract by CRM contract id.
    async fn contract_by_crm_id(
        &self,
        crm_contract_id: &str,
    ) -> Result<Option<Contract>, StoreError>;
    /// All contracts of an organization.
    async fn contracts_of_organization(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<Contract>, StoreError>;
    /// Contracts that stopped giving access at or before `before` (for the grace-period
    /// sweep): those whose `access_ended_at`, or else whose `valid_until`, is at or before
    /// `before`.
    async fn contracts_with_access_ended_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<Contract>, StoreError>;

    // ----- identities and memberships -----

    /// An identity by id.
    async fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError>;
    /// An identity by email (case-insensitive).
    async fn identity_by_email(&self, email: &EmailAddress)
    -> Result<Option<Identity>, StoreError>;
    /// The identities with any of `emails` (case-insensitive), ordered by normalized email;
    /// emails without an identity are left out. Any number of emails may be asked for at once
    /// (an implementation splits a long list into several queries): a batch reads its rows'
    /// identities with one call instead of one per row.
    async fn identities_by_emails(
        &self,
        emails: &[EmailAddress],
    ) -> Result<Vec<Identity>, StoreError>;
    /// An identity by CRM contact id.
    async fn identity_by_crm_contact(
        &self,
        crm_contact_id: &str,
    ) -> Result<Option<Identity>, StoreError>;
    /// Identities whose email starts with `query` or whose name contains it (case-insensitive),
    /// at most `limit`, ordered by email.
    async fn search_identities(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Identity>, StoreError>;
    /// A membership by id.
    async fn membership(&self, id: MembershipId) -> Result<Option<Membership>, StoreError>;
    /// The membership of `identity` in `organization`.
    async fn membership_of(
        &self,
        identity: IdentityId,
        organization: OrganizationId,
    ) -> Result<Option<Membership>, StoreError>;
    /// The memberships in `organization` of any of `identities`, in no particular order
    /// (at most one per identity). Any number of identities may be asked for at once.
    async fn memberships_in_organization(
        &self,
        organization: OrganizationId,
        identities: &[IdentityId],
    ) -> Result<Vec<Membership>, StoreError>;
    /// All memberships of an identity.
    async fn memberships_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Membership>, StoreError>;
    /// The identity with its memberships, their organizations and contracts (see
    /// [`IdentityAccess`]); `None` when there is no such identity. The default composes the
    /// single reads above; backends override it to answer in fewer round trips, and must
    /// return exactly what the default would.
    async fn identity_access(&self, id: IdentityId) -> Result<Option<IdentityAccess>, StoreError> {
        let Some(identity) = self.identity(id).await? else {
            return Ok(None);
        };
        let mut memberships = Vec::new();
        for membership in self.memberships_of_identity(id).await? {
            let organization = self.organization(membership.organization).await?;
            let contracts = match &organization {
                Some(organization) => self.contracts_of_organization(organization.id).await?,
                None => Vec::new(),
            };
            memberships.push(MembershipAccess {
                membership,
                organization,
                contracts,
            });
        }
        Ok(Some(IdentityAccess {
            identity,
            memberships,
        }))
    }
    /// Members of an organization ordered by email, keyset-paginated.
    async fn members_of_organization(
        &self,
        organization: OrganizationId,
        page: PageRequest,
    ) -> Result<Page<Member>, StoreError>;

    // ----- services and roles -----

    /// A service by id.
    async fn service(&self, id: ServiceId) -> Result<Option<Service>, StoreError>;
    /// A service by key.
    async fn service_by_key(&self, key: &str) -> Result<Option<Service>, StoreError>;
    /// All services, ordered by key.
    async fn services(&self) -> Result<Vec<Service>, StoreError>;
    /// A business role by id.
    async fn business_role(&self, id: BusinessRoleId) -> Result<Option<BusinessRole>, StoreError>;
    /// A business role by key.
    async fn business_role_by_key(&self, key: &str) -> Result<Option<BusinessRole>, StoreError>;
    /// All business roles, ordered by key.
    async fn business_roles(&self) -> Result<Vec<BusinessRole>, StoreError>;

    // ----- invitations and requests -----

    /// An invitation by id.
    async fn invitation(&self, id: InvitationId) -> Result<Option<Invitation>, StoreError>;
    /// An invitation by the hash of its current token.
    async fn invitation_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<Invitation>, StoreError>;
    /// Invitations of an organization with one of `statuses` (all when empty), newest first.
    async fn invitations_of_organization(
        &self,
        organization: OrganizationId,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError>;
    /// Invitations with one of `statuses` across all organizations (held for review, due to
    /// expire), oldest first.
    async fn invitations_with_status(
        &self,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError>;
    /// Live (held or pending) invitations for this email, across organizations.
    async fn open_invitations_for_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Vec<Invitation>, StoreError>;
    /// Live (held or pending) invitations for any of `emails` (case-insensitive), across
    /// organizations, ordered by normalized email and then oldest first. Any number of emails
    /// may be asked for at once.
    async fn open_invitations_for_emails(
        &self,
        emails: &[EmailAddress],
    ) -> Result<Vec<Invitation>, StoreError>;
    /// An organization registration by id.
    async fn org_registration(
        &self,
        id: OrgRegistrationId,
    ) -> Result<Option<OrgRegistration>, StoreError>;
    /// Organization registrations waiting for a decision, oldest first.
    async fn pending_org_registrations(
        &self,
        limit: usize,
    ) -> Result<Vec<OrgRegistration>, StoreError>;
    /// A join request by id.
    async fn join_request(&self, id: JoinRequestId) -> Result<Option<JoinRequest>, StoreError>;
    /// Join requests of an organization waiting for a decision, oldest first.
    async fn pending_join_requests(
        &self,
        organization: OrganizationId,
        limit: usize,
    ) -> Result<Vec<JoinRequest>, StoreError>;

    // ----- credentials and sessions -----

    /// Credentials of an identity.
    async fn credentials_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Credential>, StoreError>;
    /// The federated link for (provider, subject).
    async fn credential_by_federated_link(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Credential>, StoreError>;
    /// A session by the hash of its token.
    async fn session_by_token(&self, token_hash: &TokenHash)
    -> Result<Option<Session>, StoreError>;
    /// Sessions of an identity (live or not), newest first.
    async fn sessions_of_identity(&self, identity: IdentityId) -> Result<Vec<Session>, StoreError>;
    /// The session with this token hash and the access records of its identity (see
    /// [`SessionAccess`]); `None` when there is no such session. The default composes
    /// [`Store::session_by_token`] and [`Store::identity_access`]; backends override it to
    /// answer in one round trip, and must return exactly what the default would.
    async fn session_access(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<SessionAccess>, StoreError> {
        let Some(session) = self.session_by_token(token_hash).await? else {
            return Ok(None);
        };
        let access = self.identity_access(session.identity).await?;
        Ok(Some(SessionAccess { session, access }))
    }

    // ----- settings -----

    /// The setting of `kind` with `key`.
    async fn setting(&self, kind: SettingKind, key: &str) -> Result<Option<Setting>, StoreError>;
    /// Settings of `kind`, ordered by key: those of `organization` when given, every one of
    /// that kind otherwise.
    async fn settings(
        &self,
        kind: SettingKind,
        organization: Option<OrganizationId>,
    ) -> Result<Vec<Setting>, StoreError>;

    // ----- audit and outbox -----

    /// Audit events matching `query`, newest first.
    async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// Claims up to `limit` deliverable outbox entries for `consumer` until `lease_until`.
    ///
    /// Deliverable: not acknowledged, not dead, due (`next_attempt_at <= now`), not leased by
    /// anyone else, and the oldest open entry of its ordering key (so events of one resource
    /// are delivered in order). Two consumers never hold the same entry at once.
    async fn claim_outbox(
        &self,
        consumer: &str,
        limit: usize,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Acknowledges delivered entries (only those still leased by `consumer`).
    async fn ack_outbox(&self, consumer: &str, events: &[EventId]) -> Result<(), StoreError>;
    /// Releases a failed entry for retry at `retry_at`, or dead-letters it once it has been
    /// attempted `max_attempts` times.
    async fn release_outbox(
        &self,
        consumer: &str,
        event: EventId,
        error: &str,
        retry_at: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<ReleaseOutcome, StoreError>;
    /// Dead letters, oldest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Puts a dead letter back for delivery now (attempts reset).
    async fn redeliver(&self, event: EventId, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Entries not yet acknowledged (dead letters excluded).
    async fn outbox_depth(&self) -> Result<u64, StoreError>;

    // ----- counters and single use -----

    /// Records the single use of `key` until `expires_at`; `true` for the first use, `false`
    /// when already used and not yet expired. Atomic: of concurrent uses exactly one wins.
    async fn consume_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Adds one to the counter `key` and returns the new count; a counter past its expiry
    /// starts again at one with the new `expires_at`. Atomic.
    async fn increment_counter(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<u32, StoreError>;
    /// The current count of `key` (0 when absent or expired).
    async fn counter(&self, key: &str, now: DateTime<Utc>) -> Result<u32, StoreError>;
    /// Removes the counter `key`.
    async fn reset_counter(&self, key: &str) -> Result<(), StoreError>;

    /// The saved response for an idempotency key in `scope`, if not expired.
    async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
    /// Saves a response for an idempotency key unless one exists; `false` when one did.
    async fn save_idempotency_record(
        &self,
        scope: &str,
        key: &str,
        record: IdempotencyRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// A shared, type-erased store.
pub type SharedStore = Arc<dyn Store>;
