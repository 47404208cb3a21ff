//! CRM provisioning and the contract lifecycle: idempotency, validation, authorization,
//! suspension and resumption, sub-organizations.

use ciam_core::authz::IntegrationScope;
use ciam_core::invitations::InvitationRequest;
use ciam_core::organizations::{
    ContractChange, ContractStatus, ContractUpsert, OrgKind, OrganizationUpsert, ProvisioningError,
};
use ciam_core::sessions::AuthMethod;
use ciam_core::{DenyReason, Principal};

use crate::support::{APP, World};

fn city_upsert() -> OrganizationUpsert {
    OrganizationUpsert {
        crm_account_id: "ACC-1001".into(),
        name: "City Group, Inc.".into(),
        kind: OrgKind::Customer,
        parent_crm_account_id: None,
        email_domains: vec!["citygroup.example".into()],
        suspended: false,
    }
}

fn contract(status: ContractStatus) -> ContractUpsert {
    ContractUpsert {
        crm_contract_id: "CON-2001".into(),
        crm_account_id: "ACC-1001".into(),
        services: vec![APP.into()],
        status,
        valid_from: None,
        valid_until: None,
    }
}

#[tokio::test]
async fn provisioning_is_idempotent_by_crm_ids() {
    let world = World::new().await;
    let crm = world
        .ciam
        .principals()
        .integration("crm", [IntegrationScope::Provisioning]);
    let orgs = world.ciam.organizations();
    let first = orgs.upsert(&crm, city_upsert()).await.unwrap();
    orgs.upsert_contract(&crm, contract(ContractStatus::Active))
        .await
        .unwrap();
    let events = world.events().await.len();
    let second = orgs.upsert(&crm, city_upsert()).await.unwrap();
    orgs.upsert_contract(&crm, contract(ContractStatus::Active))
        .await
        .unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(
        world.events().await.len(),
        events,
        "a repeated command emitted events"
    );
    // A real change is applied and recorded.
    let renamed = orgs
        .upsert(
            &crm,
            OrganizationUpsert {
                name: "City Group Holding, Inc.".into(),
                ..city_upsert()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "City Group Holding, Inc.");
    assert_eq!(renamed.id, first.id);
    assert_eq!(
        world.event_types().await.last().map(String::as_str),
        Some("organization_updated")
    );
}

#[tokio::test]
async fn bad_provisioning_input_is_refused_and_changes_nothing() {
    let world = World::new().await;
    let orgs = world.ciam.organizations();
    let before = world.events().await.len();
    let cases = [
        OrganizationUpsert {
            crm_account_id: "".into(),
            ..city_upsert()
        },
        OrganizationUpsert {
            crm_account_id: "ACC 1001".into(),
            ..city_upsert()
        },
        OrganizationUpsert {
            name: " ".into(),
            ..city_upsert()
        },
        OrganizationUpsert {
            name: "x".repeat(201),
            ..city_upsert()
        },
        OrganizationUpsert {
            email_domains: vec!["not a domain".into()],
            ..city_upsert()
        },
        OrganizationUpsert {
            kind: OrgKind::Provider,
            ..city_upsert()
        },
        OrganizationUpsert {
            parent_crm_account_id: Some("ACC-NONE".into()),
            ..city_upsert()
        },
    ];
    for case in cases {
        assert!(
            orgs.upsert(&world.scott, case.clone()).await.is_err(),
            "{case:?} accepted"
        );
    }
    assert!(matches!(
        orgs.upsert_contract(&world.scott, contract(ContractStatus::Active))
            .await,
        Err(ProvisioningError::UnknownOrganization(_))
    ));
    orgs.upsert(&world.scott, city_upsert()).await.unwrap();
    let after_org = world.events().await.len();
    assert_eq!(after_org, before + 1);
    let unknown_service = ContractUpsert {
        services: vec!["nope".into()],
        ..contract(ContractStatus::Active)
    };
    assert!(matches!(
        orgs.upsert_contract(&world.scott, unknown_service).await,
        Err(ProvisioningError::UnknownService(_))
    ));
    let reversed = ContractUpsert {
        valid_from: Some(crate::support::start_time()),
        valid_until: Some(crate::support::start_time() - chrono::Duration::days(1)),
        ..contract(ContractStatus::Active)
    };
    assert!(matches!(
        orgs.upsert_contract(&world.scott, reversed).await,
        Err(ProvisioningError::InvalidValidity)
    ));
    assert_eq!(world.events().await.len(), after_org);
    // A contract id of another organization.
    orgs.upsert_contract(&world.scott, contract(ContractStatus::Active))
        .await
        .unwrap();
    orgs.upsert(
        &world.scott,
        OrganizationUpsert {
            crm_account_id: "ACC-2".into(),
            name: "Other".into(),
            email_domains: vec![],
            ..city_upsert()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        orgs.upsert_contract(
            &world.scott,
            ContractUpsert {
                crm_account_id: "ACC-2".into(),
                ..contract(ContractStatus::Active)
            }
        )
        .await,
        Err(ProvisioningError::ContractOfOtherOrganization(_))
    ));
    // A domain already verified by another organization.
    assert!(matches!(
        orgs.upsert(
            &world.scott,
            OrganizationUpsert {
                crm_account_id: "ACC-3".into(),
                ..city_upsert()
            }
        )
        .await,
        Err(ProvisioningError::DomainTaken)
    ));
}

#[tokio::test]
async fn only_account_managers_and_the_crm_provision() {
    let world = World::new().await;
    let orgs = world.ciam.organizations();
    for principal in [
        world.back_office.clone(),
        world.customer_service.clone(),
        Principal::Anonymous,
        world
            .ciam
            .principals()
            .integration("crm", [IntegrationScope::Invitations]),
    ] {
        assert!(matches!(
            orgs.upsert(&principal, city_upsert()).await,
            Err(ProvisioningError::Denied(_))
        ));
    }
    let city = world.city_group().await;
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                contact_person: true,
                ..InvitationRequest::default()
            },
        )
        .await;
    // Even the contact person cannot change contracts.
    assert!(matches!(
        orgs.change_contract(&jeremy, "CON-2001", ContractChange::End)
            .await,
        Err(ProvisioningError::Denied(DenyReason::StaffOnly))
    ));
}

#[tokio::test]
async fn suspension_stops_access_and_resumption_restores_it_but_an_end_is_final() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (_, jeremy_id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                contact_person: true,
                business_roles: vec!["energy-manager".into()],
                ..InvitationRequest::default()
            },
        )
        .await;
    let orgs = world.ciam.organizations();
    let roles = || async {
        world
            .ciam
            .roles()
            .resolve(&Principal::System, jeremy_id, APP)
            .await
    };
    let session = world
        .ciam
        .sessions()
        .start(jeremy_id, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    orgs.change_contract(&world.scott, "CON-2001", ContractChange::Suspend)
        .await
        .unwrap();
    assert!(!roles().await.unwrap().has_access());
    assert!(
        world
            .ciam
            .sessions()
            .validate(&session.token)
            .await
            .is_err()
    );
    orgs.change_contract(&world.scott, "CON-2001", ContractChange::Resume)
        .await
        .unwrap();
    assert!(roles().await.unwrap().has_access());
    orgs.change_contract(&world.scott, "CON-2001", ContractChange::End)
        .await
        .unwrap();
    assert!(!roles().await.unwrap().has_access());
    assert!(matches!(
        orgs.change_contract(&world.scott, "CON-2001", ContractChange::Resume)
            .await,
        Err(ProvisioningError::ContractEnded(_))
    ));
    assert!(matches!(
        orgs.upsert_contract(&world.scott, contract(ContractStatus::Active))
            .await,
        Err(ProvisioningError::ContractEnded(_))
    ));
}

#[tokio::test]
async fn a_second_contract_covering_the_service_keeps_access() {
    let world = World::new().await;
    let city = world.city_group().await;
    world
        .ciam
        .organizations()
        .upsert_contract(
            &world.scott,
            ContractUpsert {
                crm_contract_id: "CON-2002".into(),
                ..contract(ContractStatus::Active)
            },
        )
        .await
        .unwrap();
    let (_, jeremy_id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                business_roles: vec!["energy-manager".into()],
                ..InvitationRequest::default()
            },
        )
        .await;
    let session = world
        .ciam
        .sessions()
        .start(jeremy_id, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    world
        .ciam
        .organizations()
        .change_contract(&world.scott, "CON-2001", ContractChange::End)
        .await
        .unwrap();
    assert!(world.ciam.sessions().validate(&session.token).await.is_ok());
    assert!(
        world
            .ciam
            .roles()
            .resolve(&Principal::System, jeremy_id, APP)
            .await
            .unwrap()
            .has_access()
    );
}

#[tokio::test]
async fn validity_dates_bound_access() {
    let world = World::new().await;
    let city = world.city_group().await;
    let now = crate::support::start_time();
    world
        .ciam
        .organizations()
        .upsert_contract(
            &world.scott,
            ContractUpsert {
                valid_from: Some(now - chrono::Duration::days(1)),
                valid_until: Some(now + chrono::Duration::days(10)),
                ..contract(ContractStatus::Active)
            },
        )
        .await
        .unwrap();
    let (_, id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                business_roles: vec!["energy-manager".into()],
                ..InvitationRequest::default()
            },
        )
        .await;
    assert!(
        world
            .ciam
            .roles()
            .resolve(&Principal::System, id, APP)
            .await
            .unwrap()
            .has_access()
    );
    world.clock.advance(chrono::Duration::days(10));
    assert!(
        !world
            .ciam
            .roles()
            .resolve(&Principal::System, id, APP)
            .await
            .unwrap()
            .has_access()
    );
}

#[tokio::test]
async fn sub_organizations_are_managed_by_the_parent_contact_person() {
    let world = World::new().await;
    let city = world.city_group().await;
    let orgs = world.ciam.organizations();
    let branch = orgs
        .upsert(
            &world.scott,
            OrganizationUpsert {
                crm_account_id: "ACC-1001-B".into(),
                name: "City Group Branch".into(),
                kind: OrgKind::Customer,
                parent_crm_account_id: Some("ACC-1001".into()),
                email_domains: vec![],
                suspended: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(branch.parent, Some(city.id));
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                contact_person: true,
                ..InvitationRequest::default()
            },
        )
        .await;
    // Jeremy manages the branch too.
    world
        .member(
            &jeremy,
            branch.id,
            InvitationRequest {
                email: "bob.branch@citygroup.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;
    // A parent cannot become its own descendant.
    assert!(matches!(
        orgs.upsert(
            &world.scott,
            OrganizationUpsert {
                parent_crm_account_id: Some("ACC-1001-B".into()),
                ..city_upsert()
            }
        )
        .await,
        Err(ProvisioningError::ParentCycle)
    ));
}
