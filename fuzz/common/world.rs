//! A small in-memory world shared by the fuzz targets that run the façade: one service, one
//! business role, City Group (CRM account `ACC-1`, domain `citygroup.example`) with an active
//! contract, and the CRM's integration principal.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use ciam_core::authz::IntegrationScope;
use ciam_core::credentials::PasswordParams;
use ciam_core::delivery::DevMailbox;
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use ciam_core::store::Store;
use ciam_core::{Ciam, FixedClock, Policy, Principal, SeededRandom};
use ciam_crm::Provisioner;
use ciam_crm::commands::{
    ContractState, OrganizationKind, UpsertContractRequest, UpsertOrganizationRequest,
};
use ciam_store::MemoryStore;

#[allow(dead_code, reason = "each target uses the parts it needs")]
pub struct World {
    pub ciam: Ciam,
    pub crm: Principal,
    pub provisioner: Provisioner,
}

/// A fresh world, or `None` if it cannot be built (then the input is skipped; it never is).
pub async fn world() -> Option<World> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let now = Utc.with_ymd_and_hms(2030, 5, 17, 9, 30, 0).single()?;
    let policy = Policy {
        password_params: PasswordParams::INSECURE_FAST_FOR_TESTS,
        ..Policy::default()
    };
    let ciam = Ciam::builder()
        .store(store)
        .mailer(Arc::new(DevMailbox::new(100)))
        .clock(Arc::new(FixedClock::new(now)))
        .random(Arc::new(SeededRandom::new(7)))
        .policy(policy)
        .build()
        .ok()?;
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
        .ok()?;
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
        .ok()?;
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
    provisioner
        .upsert_organization(
            &crm,
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
        .ok()?;
    provisioner
        .upsert_contract(
            &crm,
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
        .ok()?;
    Some(World {
        ciam,
        crm,
        provisioner,
    })
}

/// Runs `future` on one single-threaded Tokio runtime (built once; the façade may spawn
/// blocking work), or returns `None` if the runtime cannot be built.
pub fn block_on<F: std::future::Future>(future: F) -> Option<F::Output> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()
    });
    runtime.as_ref().map(|runtime| runtime.block_on(future))
}
