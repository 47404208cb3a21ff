//! A ciam-core world on a `MemoryStore`: the catalog, SmartPlan with an administrator, City
//! Group with a contract for the application and a member holding a business role.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use ciam_core::credentials::{Password, PasswordParams, SecretKey};
use ciam_core::identities::StaffRole;
use ciam_core::ids::{IdentityId, OrganizationId};
use ciam_core::invitations::{Acceptance, InvitationRequest};
use ciam_core::organizations::{ContractStatus, ContractUpsert, OrgKind, OrganizationUpsert};
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use ciam_core::sessions::{AuthMethod, Session};
use ciam_core::{Ciam, FixedClock, Policy, Principal, SeededRandom, Store};
use ciam_store::MemoryStore;

use crate::common::now;

pub const APP: &str = "smartplan-app";

pub struct World {
    pub ciam: Ciam,
    pub store: Arc<dyn Store>,
    pub admin: Principal,
    pub city_group: OrganizationId,
}

async fn invite_and_accept(
    ciam: &Ciam,
    inviter: &Principal,
    org: OrganizationId,
    request: InvitationRequest,
) -> IdentityId {
    let issued = ciam
        .invitations()
        .invite(inviter, org, request)
        .await
        .unwrap();
    ciam.invitations()
        .accept(
            &Principal::Anonymous,
            &issued.token.unwrap(),
            Acceptance {
                password: Some(Password::new("correct horse battery staple")),
                ..Acceptance::default()
            },
        )
        .await
        .unwrap()
        .identity
        .id
}

pub async fn world() -> World {
    world_at(now()).await
}

/// The world with its clock at `start`.
pub async fn world_at(start: DateTime<Utc>) -> World {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Arc::new(FixedClock::new(start));
    let ciam = Ciam::builder()
        .store(store.clone())
        .clock(clock)
        .random(Arc::new(SeededRandom::new(11)))
        .secret_key(SecretKey::from_bytes([5; 32]))
        .policy(Policy {
            password_params: PasswordParams::INSECURE_FAST_FOR_TESTS,
            ..Policy::default()
        })
        .build()
        .unwrap();
    let system = Principal::System;
    ciam.catalog()
        .define_service(
            &system,
            ServiceDefinition {
                key: APP.into(),
                name: "SmartPlan Application".into(),
                app_roles: vec!["consumption.read".into(), "consumption.export".into()],
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
                grants: vec![
                    (APP.into(), "consumption.read".into()),
                    (APP.into(), "consumption.export".into()),
                ],
            },
        )
        .await
        .unwrap();
    let provider = ciam
        .organizations()
        .create_provider(&system, "SmartPlan")
        .await
        .unwrap();
    let admin_id = invite_and_accept(
        &ciam,
        &system,
        provider.id,
        InvitationRequest {
            email: "scott.long@smartplan.example".into(),
            given_name: Some("Scott".into()),
            family_name: Some("Long".into()),
            staff_roles: BTreeSet::from([StaffRole::Administrator]),
            ..InvitationRequest::default()
        },
    )
    .await;
    let admin = ciam.principals().for_identity(admin_id).await.unwrap();
    let city_group = ciam
        .organizations()
        .upsert(
            &system,
            OrganizationUpsert {
                crm_account_id: "ACC-1001".into(),
                name: "City Group, Inc.".into(),
                kind: OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["citygroup.example".into()],
                suspended: false,
            },
        )
        .await
        .unwrap();
    ciam.organizations()
        .upsert_contract(
            &system,
            ContractUpsert {
                crm_contract_id: "CON-2001".into(),
                crm_account_id: "ACC-1001".into(),
                services: vec![APP.into()],
                status: ContractStatus::Active,
                valid_from: None,
                valid_until: None,
            },
        )
        .await
        .unwrap();
    World {
        ciam,
        store,
        admin,
        city_group: city_group.id,
    }
}

impl World {
    /// A City Group member; with the energy-manager role when `with_role`.
    pub async fn member(&self, email: &str, with_role: bool) -> IdentityId {
        invite_and_accept(
            &self.ciam,
            &Principal::System,
            self.city_group,
            InvitationRequest {
                email: email.into(),
                given_name: Some("Jeremy".into()),
                family_name: Some("Mills".into()),
                business_roles: if with_role {
                    vec!["energy-manager".into()]
                } else {
                    Vec::new()
                },
                ..InvitationRequest::default()
            },
        )
        .await
    }

    /// A new password session of `identity`.
    pub async fn session(&self, identity: IdentityId) -> Session {
        self.ciam
            .sessions()
            .start(identity, vec![AuthMethod::Pwd])
            .await
            .unwrap()
            .session
    }
}
