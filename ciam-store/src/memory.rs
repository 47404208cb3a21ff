//! The in-memory store: every record, event and counter behind one mutex.
//!
//! The lock is never held across an `await` (no method awaits while holding it), so the store is
//! safe to share between tasks and threads. A commit validates the whole change set (versions,
//! unique fields, event ids) against the current state before it changes anything, so a failed
//! commit leaves no trace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ciam_core::contact::{EmailAddress, EmailDomain};
use ciam_core::credentials::{Credential, CredentialKind};
use ciam_core::events::DomainEvent;
use ciam_core::identities::{Identity, Membership};
use ciam_core::ids::{
    BusinessRoleId, ContractId, CredentialId, EventId, IdentityId, InvitationId, JoinRequestId,
    MembershipId, OrgRegistrationId, OrganizationId, ServiceId, SessionId, SettingId,
};
use ciam_core::invitations::{Invitation, InvitationStatus};
use ciam_core::organizations::{Contract, Organization};
use ciam_core::registrations::{JoinRequest, OrgRegistration, RequestStatus};
use ciam_core::secrets::TokenHash;
use ciam_core::services::{BusinessRole, Service};
use ciam_core::sessions::Session;
use ciam_core::settings::{Setting, SettingKind};
use ciam_core::store::{
    ChangeSet, EventQuery, IdempotencyRecord, Member, OutboxEntry, Page, PageRequest, Record,
    RecordRef, ReleaseOutcome, Store, StoreError, StoredEvent, unique_fields,
};

/// The most items one page of [`Store::members_of_organization`] returns.
pub(crate) const MAX_PAGE: usize = 500;
/// The most items one list query returns.
pub(crate) const MAX_LIST: usize = 500;
/// The most events (audit or outbox) one call returns.
pub(crate) const MAX_EVENTS: usize = 1000;

/// A [`Store`] that keeps everything in memory, behind one lock.
///
/// For tests, examples and single-process demos. It keeps every contract of the port (checked
/// by the conformance suite): version-checked all-or-nothing commits, unique fields, an outbox
/// with leases and per-resource ordering, and atomic counters. Nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied commit: commits validate
        // everything before they mutate, and mutation does not panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("organizations", &state.organizations.len())
            .field("identities", &state.identities.len())
            .field("memberships", &state.memberships.len())
            .field("events", &state.events.len())
            .field("outbox", &state.outbox.len())
            .finish_non_exhaustive()
    }
}

/// Identifies one stored record of any kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RecordKey {
    Organization(OrganizationId),
    Contract(ContractId),
    Identity(IdentityId),
    Membership(MembershipId),
    Service(ServiceId),
    BusinessRole(BusinessRoleId),
    Invitation(InvitationId),
    OrgRegistration(OrgRegistrationId),
    JoinRequest(JoinRequestId),
    Credential(CredentialId),
    Session(SessionId),
    Setting(SettingId),
}

impl RecordKey {
    fn of(record: &Record) -> Self {
        match record {
            Record::Organization(r) => Self::Organization(r.id),
            Record::Contract(r) => Self::Contract(r.id),
            Record::Identity(r) => Self::Identity(r.id),
            Record::Membership(r) => Self::Membership(r.id),
            Record::Service(r) => Self::Service(r.id),
            Record::BusinessRole(r) => Self::BusinessRole(r.id),
            Record::Invitation(r) => Self::Invitation(r.id),
            Record::OrgRegistration(r) => Self::OrgRegistration(r.id),
            Record::JoinRequest(r) => Self::JoinRequest(r.id),
            Record::Credential(r) => Self::Credential(r.id),
            Record::Session(r) => Self::Session(r.id),
            Record::Setting(r) => Self::Setting(r.id),
        }
    }

    fn of_ref(record: &RecordRef) -> (Self, u64) {
        match *record {
            RecordRef::Credential(id, version) => (Self::Credential(id), version),
            RecordRef::Session(id, version) => (Self::Session(id), version),
            RecordRef::Setting(id, version) => (Self::Setting(id), version),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Organization(id) => format!("organization {id}"),
            Self::Contract(id) => format!("contract {id}"),
            Self::Identity(id) => format!("identity {id}"),
            Self::Membership(id) => format!("membership {id}"),
            Self::Service(id) => format!("service {id}"),
            Self::BusinessRole(id) => format!("business role {id}"),
            Self::Invitation(id) => format!("invitation {id}"),
            Self::OrgRegistration(id) => format!("organization registration {id}"),
            Self::JoinRequest(id) => format!("join request {id}"),
            Self::Credential(id) => format!("credential {id}"),
            Self::Session(id) => format!("session {id}"),
            Self::Setting(id) => format!("setting {id}"),
        }
    }
}

/// A value of a unique field: the field name and the compared value.
type UniqueKey = (&'static str, String);

/// The unique values a record claims.
fn unique_keys(record: &Record) -> Vec<UniqueKey> {
    let mut keys = Vec::new();
    match record {
        Record::Organization(org) => {
            if let Some(crm) = &org.crm_account_id {
                keys.push((unique_fields::ORGANIZATION_CRM_ACCOUNT_ID, crm.clone()));
            }
            for domain in &org.email_domains {
                keys.push((
                    unique_fields::ORGANIZATION_EMAIL_DOMAIN,
                    domain.as_str().to_owned(),
                ));
            }
            if let Some(code) = &org.join_code {
                keys.push((unique_fields::ORGANIZATION_JOIN_CODE, code.clone()));
            }
        }
        Record::Contract(contract) => keys.push((
            unique_fields::CONTRACT_CRM_CONTRACT_ID,
            contract.crm_contract_id.clone(),
        )),
        Record::Identity(identity) => {
            keys.push((
                unique_fields::IDENTITY_EMAIL,
                identity.email.normalized().to_owned(),
            ));
            if let Some(crm) = &identity.crm_contact_id {
                keys.push((unique_fields::IDENTITY_CRM_CONTACT_ID, crm.clone()));
            }
        }
        Record::Membership(membership) => keys.push((
            unique_fields::MEMBERSHIP,
            format!("{}/{}", membership.identity, membership.organization),
        )),
        Record::Service(service) => keys.push((unique_fields::SERVICE_KEY, service.key.clone())),
        Record::BusinessRole(role) => {
            keys.push((unique_fields::BUSINESS_ROLE_KEY, role.key.clone()));
        }
        Record::Invitation(invitation) => {
            if let Some(hash) = &invitation.token_hash {
                keys.push((unique_fields::INVITATION_TOKEN, hash.to_hex()));
            }
        }
        Record::Session(session) => {
            keys.push((unique_fields::SESSION_TOKEN, session.token_hash.to_hex()));
        }
        Record::Credential(credential) => {
            if let CredentialKind::FederatedLink { provider, subject } = &credential.kind {
                keys.push((
                    unique_fields::FEDERATED_LINK,
                    federated_key(provider, subject),
                ));
            }
        }
        Record::Setting(setting) => keys.push((
            unique_fields::SETTING_KEY,
            format!("{}:{}", setting.kind.as_str(), setting.key),
        )),
        Record::OrgRegistration(_) | Record::JoinRequest(_) => {}
    }
    keys
}

/// An unambiguous key for (provider, subject): the provider's length prefixes it.
fn federated_key(provider: &str, subject: &str) -> String {
    format!("{}:{provider}{subject}", provider.len())
}

/// An outbox entry as kept by the store.
#[derive(Clone, Debug)]
struct OutboxItem {
    event: DomainEvent,
    ordering_key: String,
    attempts: u32,
    last_error: Option<String>,
    /// When the entry is due again after a failure (`None`: due at once).
    next_attempt_at: Option<DateTime<Utc>>,
    /// The consumer holding it, and until when.
    lease: Option<(String, DateTime<Utc>)>,
    dead: bool,
}

impl OutboxItem {
    fn entry(&self, sequence: i64) -> OutboxEntry {
        OutboxEntry {
            event: self.event.clone(),
            sequence,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Expiring {
    count: u32,
    expires_at: DateTime<Utc>,
}

#[derive(Default)]
struct State {
    organizations: BTreeMap<OrganizationId, Organization>,
    contracts: BTreeMap<ContractId, Contract>,
    identities: BTreeMap<IdentityId, Identity>,
    memberships: BTreeMap<MembershipId, Membership>,
    services: BTreeMap<ServiceId, Service>,
    business_roles: BTreeMap<BusinessRoleId, BusinessRole>,
    invitations: BTreeMap<InvitationId, Invitation>,
    org_registrations: BTreeMap<OrgRegistrationId, OrgRegistration>,
    join_requests: BTreeMap<JoinRequestId, JoinRequest>,
    credentials: BTreeMap<CredentialId, Credential>,
    sessions: BTreeMap<SessionId, Session>,
    settings: BTreeMap<SettingId, Setting>,
    /// Owner of every claimed unique value.
    unique: HashMap<UniqueKey, RecordKey>,
    /// The audit log, in sequence order.
    events: Vec<StoredEvent>,
    event_ids: HashSet<EventId>,
    /// Unacknowledged outbox entries (dead letters included) by sequence.
    outbox: BTreeMap<i64, OutboxItem>,
    outbox_sequence: HashMap<EventId, i64>,
    last_sequence: i64,
    single_use: HashMap<String, DateTime<Utc>>,
    counters: HashMap<String, Expiring>,
    idempotency: HashMap<(String, String), (IdempotencyRecord, DateTime<Utc>)>,
}

impl State {
    fn stored(&self, key: RecordKey) -> Option<Record> {
        match key {
            RecordKey::Organization(id) => self.organizations.get(&id).cloned().map(Into::into),
            RecordKey::Contract(id) => self.contracts.get(&id).cloned().map(Into::into),
            RecordKey::Identity(id) => self.identities.get(&id).cloned().map(Into::into),
            RecordKey::Membership(id) => self.memberships.get(&id).cloned().map(Into::into),
            RecordKey::Service(id) => self.services.get(&id).cloned().map(Into::into),
            RecordKey::BusinessRole(id) => self.business_roles.get(&id).cloned().map(Into::into),
            RecordKey::Invitation(id) => self.invitations.get(&id).cloned().map(Into::into),
            RecordKey::OrgRegistration(id) => {
                self.org_registrations.get(&id).cloned().map(Into::into)
            }
            RecordKey::JoinRequest(id) => self.join_requests.get(&id).cloned().map(Into::into),
            RecordKey::Credential(id) => self.credentials.get(&id).cloned().map(Into::into),
            RecordKey::Session(id) => self.sessions.get(&id).cloned().map(Into::into),
            RecordKey::Setting(id) => self.settings.get(&id).cloned().map(Into::into),
        }
    }

    fn stored_version(&self, key: RecordKey) -> Option<u64> {
        match key {
            RecordKey::Organization(id) => self.organizations.get(&id).map(|r| r.version),
            RecordKey::Contract(id) => self.contracts.get(&id).map(|r| r.version),
            RecordKey::Identity(id) => self.identities.get(&id).map(|r| r.version),
            RecordKey::Membership(id) => self.memberships.get(&id).map(|r| r.version),
            RecordKey::Service(id) => self.services.get(&id).map(|r| r.version),
            RecordKey::BusinessRole(id) => self.business_roles.get(&id).map(|r| r.version),
            RecordKey::Invitation(id) => self.invitations.get(&id).map(|r| r.version),
            RecordKey::OrgRegistration(id) => self.org_registrations.get(&id).map(|r| r.version),
            RecordKey::JoinRequest(id) => self.join_requests.get(&id).map(|r| r.version),
            RecordKey::Credential(id) => self.credentials.get(&id).map(|r| r.version),
            RecordKey::Session(id) => self.sessions.get(&id).map(|r| r.version),
            RecordKey::Setting(id) => self.settings.get(&id).map(|r| r.version),
        }
    }

    fn insert(&mut self, record: Record) {
        match record {
            Record::Organization(r) => {
                self.organizations.insert(r.id, r);
            }
            Record::Contract(r) => {
                self.contracts.insert(r.id, r);
            }
            Record::Identity(r) => {
                self.identities.insert(r.id, r);
            }
            Record::Membership(r) => {
                self.memberships.insert(r.id, r);
            }
            Record::Service(r) => {
                self.services.insert(r.id, r);
            }
            Record::BusinessRole(r) => {
                self.business_roles.insert(r.id, r);
            }
            Record::Invitation(r) => {
                self.invitations.insert(r.id, r);
            }
            Record::OrgRegistration(r) => {
                self.org_registrations.insert(r.id, r);
            }
            Record::JoinRequest(r) => {
                self.join_requests.insert(r.id, r);
            }
            Record::Credential(r) => {
                self.credentials.insert(r.id, r);
            }
            Record::Session(r) => {
                self.sessions.insert(r.id, r);
            }
            Record::Setting(r) => {
                self.settings.insert(r.id, r);
            }
        }
    }

    fn remove(&mut self, key: RecordKey) {
        match key {
            RecordKey::Organization(id) => {
                self.organizations.remove(&id);
            }
            RecordKey::Contract(id) => {
                self.contracts.remove(&id);
            }
            RecordKey::Identity(id) => {
                self.identities.remove(&id);
            }
            RecordKey::Membership(id) => {
                self.memberships.remove(&id);
            }
            RecordKey::Service(id) => {
                self.services.remove(&id);
            }
            RecordKey::BusinessRole(id) => {
                self.business_roles.remove(&id);
            }
            RecordKey::Invitation(id) => {
                self.invitations.remove(&id);
            }
            RecordKey::OrgRegistration(id) => {
                self.org_registrations.remove(&id);
            }
            RecordKey::JoinRequest(id) => {
                self.join_requests.remove(&id);
            }
            RecordKey::Credential(id) => {
                self.credentials.remove(&id);
            }
            RecordKey::Session(id) => {
                self.sessions.remove(&id);
            }
            RecordKey::Setting(id) => {
                self.settings.remove(&id);
            }
        }
    }

    /// Validates the whole change set, then applies it; on error nothing has changed.
    fn commit(&mut self, changes: ChangeSet) -> Result<(), StoreError> {
        // 1. Versions, applied in order over an overlay of the records this change set touches
        //    (so a record written twice in one change set must carry the version after the
        //    first write, as sequential SQL updates would require).
        let mut touched: Vec<(RecordKey, Option<Record>)> = Vec::new();
        let mut position: HashMap<RecordKey, usize> = HashMap::new();
        let current_version = |touched: &[(RecordKey, Option<Record>)],
                               position: &HashMap<RecordKey, usize>,
                               key: RecordKey|
         -> Option<u64> {
            match position.get(&key) {
                Some(&index) => touched
                    .get(index)
                    .and_then(|(_, record)| record.as_ref().map(Record::version)),
                None => self.stored_version(key),
            }
        };
        for mut record in changes.records {
            let key = RecordKey::of(&record);
            let expected = record.version();
            let ok = match current_version(&touched, &position, key) {
                None => expected == 0,
                Some(stored) => expected != 0 && stored == expected,
            };
            if !ok {
                return Err(StoreError::conflict(record.describe()));
            }
            let next = expected
                .checked_add(1)
                .ok_or_else(|| StoreError::conflict(record.describe()))?;
            record.set_version(next);
            set_touched(&mut touched, &mut position, key, Some(record));
        }
        for deletion in &changes.deletions {
            let (key, expected) = RecordKey::of_ref(deletion);
            match current_version(&touched, &position, key) {
                Some(stored) if expected != 0 && stored == expected => {}
                _ => return Err(StoreError::conflict(key.describe())),
            }
            set_touched(&mut touched, &mut position, key, None);
        }

        // 2. Unique fields: every value claimed by a written record must be free, or held by
        //    a record this change set rewrites (whose new claims are checked here too).
        let mut claimed: HashMap<UniqueKey, RecordKey> = HashMap::new();
        for (key, record) in &touched {
            let Some(record) = record else { continue };
            for unique in unique_keys(record) {
                if let Some(other) = claimed.get(&unique)
                    && other != key
                {
                    return Err(StoreError::unique(unique.0));
                }
                if let Some(owner) = self.unique.get(&unique)
                    && owner != key
                    && !position.contains_key(owner)
                {
                    return Err(StoreError::unique(unique.0));
                }
                claimed.insert(unique, *key);
            }
        }

        // 3. Event ids are unique (receivers de-duplicate by them).
        let mut new_ids = HashSet::new();
        for event in &changes.events {
            if self.event_ids.contains(&event.id) || !new_ids.insert(event.id) {
                return Err(StoreError::conflict(format!("event {}", event.id)));
            }
        }

        // 4. Apply.
        for (key, _) in &touched {
            if let Some(old) = self.stored(*key) {
                for unique in unique_keys(&old) {
                    if self.unique.get(&unique) == Some(key) {
                        self.unique.remove(&unique);
                    }
                }
            }
        }
        self.unique.extend(claimed);
        for (key, record) in touched {
            match record {
                Some(record) => self.insert(record),
                None => self.remove(key),
            }
        }
        for event in changes.events {
            self.last_sequence += 1;
            let sequence = self.last_sequence;
            self.event_ids.insert(event.id);
            self.outbox_sequence.insert(event.id, sequence);
            self.outbox.insert(
                sequence,
                OutboxItem {
                    ordering_key: event.ordering_key(),
                    event: event.clone(),
                    attempts: 0,
                    last_error: None,
                    next_attempt_at: None,
                    lease: None,
                    dead: false,
                },
            );
            self.events.push(StoredEvent { sequence, event });
        }
        Ok(())
    }

    fn claim(
        &mut self,
        consumer: &str,
        limit: usize,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Vec<OutboxEntry> {
        let limit = limit.min(MAX_EVENTS);
        let mut seen_keys: HashSet<String> = HashSet::new();
        let mut claimed = Vec::new();
        for (sequence, item) in &mut self.outbox {
            if claimed.len() >= limit {
                break;
            }
            if item.dead {
                continue;
            }
            // Only the oldest open entry of each ordering key may go out.
            if !seen_keys.insert(item.ordering_key.clone()) {
                continue;
            }
            let due = item.next_attempt_at.is_none_or(|at| at <= now);
            let free = match &item.lease {
                None => true,
                Some((holder, until)) => holder == consumer || *until <= now,
            };
            if due && free {
                item.lease = Some((consumer.to_owned(), lease_until));
                claimed.push(item.entry(*sequence));
            }
        }
        claimed
    }

    fn item_of(&mut self, event: EventId) -> Option<(i64, &mut OutboxItem)> {
        let sequence = *self.outbox_sequence.get(&event)?;
        self.outbox.get_mut(&sequence).map(|item| (sequence, item))
    }
}

fn set_touched(
    touched: &mut Vec<(RecordKey, Option<Record>)>,
    position: &mut HashMap<RecordKey, usize>,
    key: RecordKey,
    record: Option<Record>,
) {
    match position.get(&key).and_then(|&index| touched.get_mut(index)) {
        Some(slot) => slot.1 = record,
        None => {
            position.insert(key, touched.len());
            touched.push((key, record));
        }
    }
}

fn matches_status(statuses: &[InvitationStatus], status: InvitationStatus) -> bool {
    statuses.is_empty() || statuses.contains(&status)
}

/// Sorts `items` by `key` and keeps at most `limit` (capped at [`MAX_LIST`]).
fn sorted_limited<T, K: Ord>(mut items: Vec<T>, limit: usize, key: impl FnMut(&T) -> K) -> Vec<T> {
    items.sort_by_key(key);
    items.truncate(limit.min(MAX_LIST));
    items
}

#[async_trait]
impl Store for MemoryStore {
    async fn commit(&self, changes: ChangeSet) -> Result<(), StoreError> {
        self.lock().commit(changes)
    }

    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>, StoreError> {
        Ok(self.lock().organizations.get(&id).cloned())
    }

    async fn organization_by_crm_account(
        &self,
        crm_account_id: &str,
    ) -> Result<Option<Organization>, StoreError> {
        Ok(self
            .lock()
            .organizations
            .values()
            .find(|org| org.crm_account_id.as_deref() == Some(crm_account_id))
            .cloned())
    }

    async fn organization_by_email_domain(
        &self,
        domain: &EmailDomain,
    ) -> Result<Option<Organization>, StoreError> {
        Ok(self
            .lock()
            .organizations
            .values()
            .find(|org| org.email_domains.contains(domain))
            .cloned())
    }

    async fn organization_by_join_code(
        &self,
        code: &str,
    ) -> Result<Option<Organization>, StoreError> {
        Ok(self
            .lock()
            .organizations
            .values()
            .find(|org| org.join_code.as_deref() == Some(code))
            .cloned())
    }

    async fn sub_organizations(
        &self,
        parent: OrganizationId,
    ) -> Result<Vec<Organization>, StoreError> {
        let items = self
            .lock()
            .organizations
            .values()
            .filter(|org| org.parent == Some(parent))
            .cloned()
            .collect();
        Ok(sorted_limited(items, usize::MAX, |org| {
            (org.name.clone(), org.id)
        }))
    }

    async fn search_organizations(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Organization>, StoreError> {
        let query = query.to_lowercase();
        let items = self
            .lock()
            .organizations
            .values()
            .filter(|org| org.name.to_lowercase().contains(&query))
            .cloned()
            .collect();
        Ok(sorted_limited(items, limit, |org| {
            (org.name.clone(), org.id)
        }))
    }

    async fn contract(&self, id: ContractId) -> Result<Option<Contract>, StoreError> {
        Ok(self.lock().contracts.get(&id).cloned())
    }

    async fn contract_by_crm_id(
        &self,
        crm_contract_id: &str,
    ) -> Result<Option<Contract>, StoreError> {
        Ok(self
            .lock()
            .contracts
            .values()
            .find(|contract| contract.crm_contract_id == crm_contract_id)
            .cloned())
    }

    async fn contracts_of_organization(
        &self,
        organization: OrganizationId,
    ) -> Result<Vec<Contract>, StoreError> {
        let mut items: Vec<Contract> = self
            .lock()
            .contracts
            .values()
            .filter(|contract| contract.organization == organization)
            .cloned()
            .collect();
        items.sort_by_key(|contract| (contract.created_at, contract.id));
        Ok(items)
    }

    async fn contracts_with_access_ended_before(
        &self,
        before: DateTime<Utc>,
    ) -> Result<Vec<Contract>, StoreError> {
        let ended = |contract: &Contract| contract.access_ended_at.or(contract.valid_until);
        let mut items: Vec<Contract> = self
            .lock()
            .contracts
            .values()
            .filter(|contract| ended(contract).is_some_and(|at| at <= before))
            .cloned()
            .collect();
        items.sort_by_key(|contract| (ended(contract), contract.id));
        Ok(items)
    }

    async fn identity(&self, id: IdentityId) -> Result<Option<Identity>, StoreError> {
        Ok(self.lock().identities.get(&id).cloned())
    }

    async fn identity_by_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Option<Identity>, StoreError> {
        Ok(self
            .lock()
            .identities
            .values()
            .find(|identity| identity.email.same_as(email))
            .cloned())
    }

    async fn identities_by_emails(
        &self,
        emails: &[EmailAddress],
    ) -> Result<Vec<Identity>, StoreError> {
        let wanted: std::collections::HashSet<&str> =
            emails.iter().map(EmailAddress::normalized).collect();
        let mut items: Vec<Identity> = self
            .lock()
            .identities
            .values()
            .filter(|identity| wanted.contains(identity.email.normalized()))
            .cloned()
            .collect();
        items.sort_by(|a, b| a.email.normalized().cmp(b.email.normalized()));
        Ok(items)
    }

    async fn identity_by_crm_contact(
        &self,
        crm_contact_id: &str,
    ) -> Result<Option<Identity>, StoreError> {
        Ok(self
            .lock()
            .identities
            .values()
            .find(|identity| identity.crm_contact_id.as_deref() == Some(crm_contact_id))
            .cloned())
    }

    async fn search_identities(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Identity>, StoreError> {
        let query = query.to_lowercase();
        let items = self
            .lock()
            .identities
            .values()
            .filter(|identity| {
                identity.email.normalized().starts_with(&query)
                    || identity.name.given.to_lowercase().contains(&query)
                    || identity.name.family.to_lowercase().contains(&query)
                    || identity.name.full().to_lowercase().contains(&query)
            })
            .cloned()
            .collect();
        Ok(sorted_limited(items, limit, |identity| {
            identity.email.normalized().to_owned()
        }))
    }

    async fn membership(&self, id: MembershipId) -> Result<Option<Membership>, StoreError> {
        Ok(self.lock().memberships.get(&id).cloned())
    }

    async fn membership_of(
        &self,
        identity: IdentityId,
        organization: OrganizationId,
    ) -> Result<Option<Membership>, StoreError> {
        Ok(self
            .lock()
            .memberships
            .values()
            .find(|m| m.identity == identity && m.organization == organization)
            .cloned())
    }

    async fn memberships_in_organization(
        &self,
        organization: OrganizationId,
        identities: &[IdentityId],
    ) -> Result<Vec<Membership>, StoreError> {
        let wanted: std::collections::HashSet<IdentityId> = identities.iter().copied().collect();
        Ok(self
            .lock()
            .memberships
            .values()
            .filter(|m| m.organization == organization && wanted.contains(&m.identity))
            .cloned()
            .collect())
    }

    async fn memberships_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Membership>, StoreError> {
        let mut items: Vec<Membership> = self
            .lock()
            .memberships
            .values()
            .filter(|m| m.identity == identity)
            .cloned()
            .collect();
        items.sort_by_key(|m| (m.created_at, m.id));
        Ok(items)
    }

    async fn members_of_organization(
        &self,
        organization: OrganizationId,
        page: PageRequest,
    ) -> Result<Page<Member>, StoreError> {
        let limit = page.limit.clamp(1, MAX_PAGE);
        let mut members: Vec<(String, Member)> = {
            let state = self.lock();
            state
                .memberships
                .values()
                .filter(|m| m.organization == organization)
                .filter_map(|membership| {
                    let identity = state.identities.get(&membership.identity)?;
                    let cursor = identity.email.normalized().to_owned();
                    if page.after.as_ref().is_some_and(|after| cursor <= *after) {
                        return None;
                    }
                    Some((
                        cursor,
                        Member {
                            membership: membership.clone(),
                            identity: identity.clone(),
                        },
                    ))
                })
                .collect()
        };
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let more = members.len() > limit;
        members.truncate(limit);
        let next = if more {
            members.last().map(|(cursor, _)| cursor.clone())
        } else {
            None
        };
        Ok(Page {
            items: members.into_iter().map(|(_, member)| member).collect(),
            next,
        })
    }

    async fn service(&self, id: ServiceId) -> Result<Option<Service>, StoreError> {
        Ok(self.lock().services.get(&id).cloned())
    }

    async fn service_by_key(&self, key: &str) -> Result<Option<Service>, StoreError> {
        Ok(self
            .lock()
            .services
            .values()
            .find(|service| service.key == key)
            .cloned())
    }

    async fn services(&self) -> Result<Vec<Service>, StoreError> {
        let mut items: Vec<Service> = self.lock().services.values().cloned().collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    async fn business_role(&self, id: BusinessRoleId) -> Result<Option<BusinessRole>, StoreError> {
        Ok(self.lock().business_roles.get(&id).cloned())
    }

    async fn business_role_by_key(&self, key: &str) -> Result<Option<BusinessRole>, StoreError> {
        Ok(self
            .lock()
            .business_roles
            .values()
            .find(|role| role.key == key)
            .cloned())
    }

    async fn business_roles(&self) -> Result<Vec<BusinessRole>, StoreError> {
        let mut items: Vec<BusinessRole> = self.lock().business_roles.values().cloned().collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    async fn invitation(&self, id: InvitationId) -> Result<Option<Invitation>, StoreError> {
        Ok(self.lock().invitations.get(&id).cloned())
    }

    async fn invitation_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<Invitation>, StoreError> {
        Ok(self
            .lock()
            .invitations
            .values()
            .find(|invitation| invitation.token_hash.as_ref() == Some(token_hash))
            .cloned())
    }

    async fn invitations_of_organization(
        &self,
        organization: OrganizationId,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError> {
        let items = self
            .lock()
            .invitations
            .values()
            .filter(|i| i.organization == organization && matches_status(statuses, i.status))
            .cloned()
            .collect();
        Ok(sorted_limited(items, limit, |i| {
            std::cmp::Reverse((i.created_at, i.id))
        }))
    }

    async fn invitations_with_status(
        &self,
        statuses: &[InvitationStatus],
        limit: usize,
    ) -> Result<Vec<Invitation>, StoreError> {
        let items = self
            .lock()
            .invitations
            .values()
            .filter(|i| matches_status(statuses, i.status))
            .cloned()
            .collect();
        Ok(sorted_limited(items, limit, |i| (i.created_at, i.id)))
    }

    async fn open_invitations_for_email(
        &self,
        email: &EmailAddress,
    ) -> Result<Vec<Invitation>, StoreError> {
        let mut items: Vec<Invitation> = self
            .lock()
            .invitations
            .values()
            .filter(|i| {
                i.email.same_as(email)
                    && matches!(
                        i.status,
                        InvitationStatus::HeldForReview | InvitationStatus::Pending
                    )
            })
            .cloned()
            .collect();
        items.sort_by_key(|i| (i.created_at, i.id));
        Ok(items)
    }

    async fn open_invitations_for_emails(
        &self,
        emails: &[EmailAddress],
    ) -> Result<Vec<Invitation>, StoreError> {
        let wanted: std::collections::HashSet<&str> =
            emails.iter().map(EmailAddress::normalized).collect();
        let mut items: Vec<Invitation> = self
            .lock()
            .invitations
            .values()
            .filter(|i| {
                wanted.contains(i.email.normalized())
                    && matches!(
                        i.status,
                        InvitationStatus::HeldForReview | InvitationStatus::Pending
                    )
            })
            .cloned()
            .collect();
        items.sort_by(|a, b| {
            (a.email.normalized(), a.created_at, a.id).cmp(&(
                b.email.normalized(),
                b.created_at,
                b.id,
            ))
        });
        Ok(items)
    }

    async fn org_registration(
        &self,
        id: OrgRegistrationId,
    ) -> Result<Option<OrgRegistration>, StoreError> {
        Ok(self.lock().org_registrations.get(&id).cloned())
    }

    async fn pending_org_registrations(
        &self,
        limit: usize,
    ) -> Result<Vec<OrgRegistration>, StoreError> {
        let items = self
            .lock()
            .org_registrations
            .values()
            .filter(|r| r.status == RequestStatus::PendingApproval)
            .cloned()
            .collect();
        Ok(sorted_limited(items, limit, |r| (r.created_at, r.id)))
    }

    async fn join_request(&self, id: JoinRequestId) -> Result<Option<JoinRequest>, StoreError> {
        Ok(self.lock().join_requests.get(&id).cloned())
    }

    async fn pending_join_requests(
        &self,
        organization: OrganizationId,
        limit: usize,
    ) -> Result<Vec<JoinRequest>, StoreError> {
        let items = self
            .lock()
            .join_requests
            .values()
            .filter(|r| {
                r.organization == organization && r.status == RequestStatus::PendingApproval
            })
            .cloned()
            .collect();
        Ok(sorted_limited(items, limit, |r| (r.created_at, r.id)))
    }

    async fn credentials_of_identity(
        &self,
        identity: IdentityId,
    ) -> Result<Vec<Credential>, StoreError> {
        let mut items: Vec<Credential> = self
            .lock()
            .credentials
            .values()
            .filter(|c| c.identity == identity)
            .cloned()
            .collect();
        items.sort_by_key(|c| (c.created_at, c.id));
        Ok(items)
    }

    async fn credential_by_federated_link(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Credential>, StoreError> {
        Ok(self
            .lock()
            .credentials
            .values()
            .find(|c| {
                matches!(&c.kind, CredentialKind::FederatedLink { provider: p, subject: s }
                    if p == provider && s == subject)
            })
            .cloned())
    }

    async fn session_by_token(
        &self,
        token_hash: &TokenHash,
    ) -> Result<Option<Session>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .values()
            .find(|s| s.token_hash == *token_hash)
            .cloned())
    }

    async fn sessions_of_identity(&self, identity: IdentityId) -> Result<Vec<Session>, StoreError> {
        let mut items: Vec<Session> = self
            .lock()
            .sessions
            .values()
            .filter(|s| s.identity == identity)
            .cloned()
            .collect();
        items.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
        Ok(items)
    }

    async fn setting(&self, kind: SettingKind, key: &str) -> Result<Option<Setting>, StoreError> {
        Ok(self
            .lock()
            .settings
            .values()
            .find(|setting| setting.kind == kind && setting.key == key)
            .cloned())
    }

    async fn settings(
        &self,
        kind: SettingKind,
        organization: Option<OrganizationId>,
    ) -> Result<Vec<Setting>, StoreError> {
        let mut items: Vec<Setting> = self
            .lock()
            .settings
            .values()
            .filter(|setting| {
                setting.kind == kind
                    && organization
                        .is_none_or(|organization| setting.organization == Some(organization))
            })
            .cloned()
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = query.limit.min(MAX_EVENTS);
        let state = self.lock();
        let mut items: Vec<StoredEvent> = state
            .events
            .iter()
            .filter(|stored| {
                let event = &stored.event;
                query
                    .organization
                    .is_none_or(|org| event.organization == Some(org))
                    && query.identity.is_none_or(|id| event.identity == Some(id))
                    && query.since.is_none_or(|since| since <= event.at)
                    && query.until.is_none_or(|until| event.at < until)
            })
            .cloned()
            .collect();
        drop(state);
        items.sort_by_key(|stored| std::cmp::Reverse((stored.event.at, stored.sequence)));
        items.truncate(limit);
        Ok(items)
    }

    async fn claim_outbox(
        &self,
        consumer: &str,
        limit: usize,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self.lock().claim(consumer, limit, now, lease_until))
    }

    async fn ack_outbox(&self, consumer: &str, events: &[EventId]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for event in events {
            let held = state.item_of(*event).is_some_and(|(_, item)| {
                !item.dead
                    && item
                        .lease
                        .as_ref()
                        .is_some_and(|(holder, _)| holder == consumer)
            });
            if held && let Some(sequence) = state.outbox_sequence.remove(event) {
                state.outbox.remove(&sequence);
            }
        }
        Ok(())
    }

    async fn release_outbox(
        &self,
        consumer: &str,
        event: EventId,
        error: &str,
        retry_at: DateTime<Utc>,
        max_attempts: u32,
    ) -> Result<ReleaseOutcome, StoreError> {
        let mut state = self.lock();
        let Some((_, item)) = state.item_of(event) else {
            return Err(StoreError::not_found(format!("outbox entry {event}")));
        };
        let held = !item.dead
            && item
                .lease
                .as_ref()
                .is_some_and(|(holder, _)| holder == consumer);
        if !held {
            return Err(StoreError::conflict(format!(
                "outbox entry {event} (not leased by {consumer})"
            )));
        }
        item.attempts = item.attempts.saturating_add(1);
        item.last_error = Some(error.to_owned());
        item.lease = None;
        if item.attempts >= max_attempts {
            item.dead = true;
            Ok(ReleaseOutcome::DeadLettered)
        } else {
            item.next_attempt_at = Some(retry_at);
            Ok(ReleaseOutcome::WillRetry)
        }
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .filter(|(_, item)| item.dead)
            .take(limit.min(MAX_EVENTS))
            .map(|(sequence, item)| item.entry(*sequence))
            .collect())
    }

    async fn redeliver(&self, event: EventId, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.lock();
        match state.item_of(event) {
            Some((_, item)) if item.dead => {
                item.dead = false;
                item.attempts = 0;
                item.lease = None;
                item.next_attempt_at = Some(now);
                Ok(())
            }
            _ => Err(StoreError::not_found(format!("dead letter {event}"))),
        }
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let depth = self.lock().outbox.values().filter(|i| !i.dead).count();
        Ok(u64::try_from(depth).unwrap_or(u64::MAX))
    }

    async fn consume_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.single_use.get(key) {
            Some(until) if *until > now => Ok(false),
            _ => {
                state.single_use.insert(key.to_owned(), expires_at);
                Ok(true)
            }
        }
    }

    async fn increment_counter(
        &self,
        key: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let mut state = self.lock();
        let counter = state.counters.entry(key.to_owned()).or_insert(Expiring {
            count: 0,
            expires_at,
        });
        if counter.expires_at <= now {
            *counter = Expiring {
                count: 0,
                expires_at,
            };
        }
        counter.count = counter.count.saturating_add(1);
        Ok(counter.count)
    }

    async fn counter(&self, key: &str, now: DateTime<Utc>) -> Result<u32, StoreError> {
        Ok(self
            .lock()
            .counters
            .get(key)
            .filter(|c| c.expires_at > now)
            .map_or(0, |c| c.count))
    }

    async fn reset_counter(&self, key: &str) -> Result<(), StoreError> {
        self.lock().counters.remove(key);
        Ok(())
    }

    async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut state = self.lock();
        let id = (scope.to_owned(), key.to_owned());
        match state.idempotency.get(&id) {
            Some((record, expires_at)) if *expires_at > now => Ok(Some(record.clone())),
            Some(_) => {
                // Expired: forget it, so that the key can be saved again.
                state.idempotency.remove(&id);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn save_idempotency_record(
        &self,
        scope: &str,
        key: &str,
        record: IdempotencyRecord,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let id = (scope.to_owned(), key.to_owned());
        if state.idempotency.contains_key(&id) {
            return Ok(false);
        }
        state.idempotency.insert(id, (record, expires_at));
        Ok(true)
    }
}
