//! Integration tests of ciam-crm over `ciam_store::MemoryStore`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failed expectation is a failed test"
)]

mod commands;
mod dispatcher;
mod postgres;
mod provisioning;
mod reconcile;
mod scenario;
mod signing;
mod webhook;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ciam_core::authz::IntegrationScope;
use ciam_core::credentials::PasswordParams;
use ciam_core::delivery::DevMailbox;
use ciam_core::events::{ContactField, DomainEvent, EventKind};
use ciam_core::ids::{EventId, IdentityId};
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use ciam_core::store::Store;
use ciam_core::{ChangeSet, Ciam, FixedClock, Policy, Principal, RandomSource, SeededRandom};
use ciam_crm::Provisioner;
use ciam_crm::commands::{
    ContractState, OrganizationKind, UpsertContractRequest, UpsertOrganizationRequest,
};
use ciam_store::MemoryStore;

pub(crate) struct World {
    pub(crate) ciam: Ciam,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<FixedClock>,
    pub(crate) random: Arc<SeededRandom>,
    pub(crate) mailbox: Arc<DevMailbox>,
    pub(crate) crm: Principal,
    pub(crate) provisioner: Provisioner,
}

pub(crate) fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0).unwrap()
}

pub(crate) async fn world() -> World {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(FixedClock::new(start()));
    let random = Arc::new(SeededRandom::new(7));
    let policy = Policy {
        password_params: PasswordParams::INSECURE_FAST_FOR_TESTS,
        ..Policy::default()
    };
    let mailbox = Arc::new(DevMailbox::new(10_000));
    let ciam = Ciam::builder()
        .store(store.clone())
        .mailer(mailbox.clone())
        .clock(clock.clone())
        .random(random.clone())
        .policy(policy)
        .build()
        .unwrap();
    let system = Principal::System;
    ciam.catalog()
        .define_service(
            &system,
            ServiceDefinition {
                key: "smartplan-app".into(),
                name: "SmartPlan Application".into(),
                app_roles: vec!["consumption.read".into(), "consumption.admin".into()],
            },
        )
        .await
        .unwrap();
    ciam.catalog()
        .define_business_role(
            &system,
            BusinessRoleDefinition {
                key: "energy-manager".into(),
                name: "Energy manager".into(),
                grants: vec![("smartplan-app".into(), "consumption.read".into())],
            },
        )
        .await
        .unwrap();
    let crm = ciam.principals().integration(
        "crm",
        [
            IntegrationScope::Provisioning,
            IntegrationScope::Invitations,
            IntegrationScope::Leads,
            IntegrationScope::Read,
        ],
    );
    let provisioner = Provisioner::new(ciam.clone());
    World {
        ciam,
        store,
        clock,
        random,
        mailbox,
        crm,
        provisioner,
    }
}

impl World {
    /// City Group with an active contract for smartplan-app.
    pub async fn city_group(&self) {
        self.provisioner
            .upsert_organization(
                &self.crm,
                UpsertOrganizationRequest {
                    crm_account_id: "ACC-1".into(),
                    name: "City Group, Inc.".into(),
                    kind: OrganizationKind::Customer,
                    parent_crm_account_id: None,
                    email_domains: vec!["citygroup.example".into()],
                    suspended: false,
                },
            )
            .await
            .unwrap();
        self.provisioner
            .upsert_contract(
                &self.crm,
                UpsertContractRequest {
                    crm_contract_id: "CON-1".into(),
                    crm_account_id: "ACC-1".into(),
                    services: vec!["smartplan-app".into()],
                    status: ContractState::Active,
                    valid_from: None,
                    valid_until: None,
                },
            )
            .await
            .unwrap();
    }

    /// Acknowledges everything in the outbox (so a test starts from an empty one).
    pub async fn drain_outbox(&self) {
        loop {
            let now = self.clock.now_utc();
            let entries = self
                .store
                .claim_outbox("drain", 500, now, now + chrono::Duration::minutes(1))
                .await
                .unwrap();
            if entries.is_empty() {
                break;
            }
            let ids: Vec<EventId> = entries.iter().map(|e| e.event.id).collect();
            self.store.ack_outbox("drain", &ids).await.unwrap();
        }
    }
}

pub(crate) trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for FixedClock {
    fn now_utc(&self) -> DateTime<Utc> {
        ciam_core::Clock::now(self)
    }
}

/// Commits `per_identity` contact changes for each of `identities` people, interleaved;
/// each change's `after` is `"<person>:<n>"` so that order can be checked.
pub(crate) async fn produce_events(
    store: &dyn Store,
    random: &dyn RandomSource,
    identities: &[IdentityId],
    from: usize,
    to: usize,
    at: DateTime<Utc>,
) {
    for n in from..to {
        for (p, identity) in identities.iter().enumerate() {
            let mut changes = ChangeSet::new();
            changes.event(DomainEvent {
                id: EventId::generate(random),
                at,
                actor: ciam_core::Actor::System,
                organization: None,
                identity: Some(*identity),
                kind: EventKind::ContactDetailsChanged {
                    field: ContactField::Phone,
                    before: None,
                    after: Some(format!("{p}:{n}")),
                },
            });
            store.commit(changes).await.unwrap();
        }
    }
}

pub(crate) fn people(random: &dyn RandomSource, count: usize) -> Vec<IdentityId> {
    (0..count).map(|_| IdentityId::generate(random)).collect()
}
