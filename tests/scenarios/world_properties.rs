//! Property tests over generated worlds through the façade and the store: a disabled identity,
//! a removed membership, an inactive organization or an ended contract grants nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use ciam_core::authz::{Action, OrgTarget, Principal, Target, authorize};
use ciam_core::contact::{EmailAddress, PersonName};
use ciam_core::identities::{Identity, IdentityStatus, Mandate, Membership, MembershipStatus};
use ciam_core::ids::{ContractId, IdentityId, MembershipId, OrganizationId, ServiceId};
use ciam_core::organizations::{
    Branding, Contract, ContractStatus, OrgKind, OrgPolicy, OrgStatus, Organization,
};
use ciam_core::services::{BusinessRole, RoleGrant, Service};
use ciam_core::store::{ChangeSet, Store};
use ciam_core::{Ciam, FixedClock, SeededRandom};
use ciam_store::MemoryStore;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Clone, Debug)]
struct Case {
    identity_status: IdentityStatus,
    membership_status: MembershipStatus,
    org_status: OrgStatus,
    contract_status: ContractStatus,
    contract_expired: bool,
    mandates: BTreeSet<Mandate>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![
            Just(IdentityStatus::Active),
            Just(IdentityStatus::Disabled),
            Just(IdentityStatus::Invited),
            Just(IdentityStatus::Pending)
        ],
        prop_oneof![
            Just(MembershipStatus::Active),
            Just(MembershipStatus::Removed),
            Just(MembershipStatus::PendingApproval)
        ],
        prop_oneof![
            Just(OrgStatus::Active),
            Just(OrgStatus::Suspended),
            Just(OrgStatus::Closed),
            Just(OrgStatus::PendingApproval)
        ],
        prop_oneof![
            Just(ContractStatus::Active),
            Just(ContractStatus::Suspended),
            Just(ContractStatus::Ended)
        ],
        any::<bool>(),
        proptest::collection::btree_set(
            prop_oneof![
                Just(Mandate::OrgAdmin),
                Just(Mandate::UserManager),
                Just(Mandate::ServiceManager(service_id()))
            ],
            0..3,
        ),
    )
        .prop_map(
            |(
                identity_status,
                membership_status,
                org_status,
                contract_status,
                contract_expired,
                mandates,
            )| Case {
                identity_status,
                membership_status,
                org_status,
                contract_status,
                contract_expired,
                mandates,
            },
        )
}

fn service_id() -> ServiceId {
    ServiceId::from_uuid(Uuid::from_u128(77))
}

fn now() -> chrono::DateTime<chrono::Utc> {
    crate::support::start_time()
}

async fn build(case: &Case) -> (Ciam, IdentityId, OrganizationId) {
    let store = Arc::new(MemoryStore::new());
    let org = OrganizationId::from_uuid(Uuid::from_u128(1));
    let identity = IdentityId::from_uuid(Uuid::from_u128(2));
    let role = ciam_core::ids::BusinessRoleId::from_uuid(Uuid::from_u128(3));
    let mut changes = ChangeSet::new();
    changes.put(Service {
        id: service_id(),
        version: 0,
        key: "app".into(),
        name: "App".into(),
        app_roles: BTreeSet::from(["use".to_owned()]),
    });
    changes.put(BusinessRole {
        id: role,
        version: 0,
        key: "user".into(),
        name: "User".into(),
        grants: BTreeSet::from([RoleGrant {
            service: service_id(),
            app_role: "use".into(),
        }]),
    });
    changes.put(Organization {
        id: org,
        version: 0,
        kind: OrgKind::Customer,
        status: case.org_status,
        name: "Org".into(),
        parent: None,
        crm_account_id: None,
        email_domains: BTreeSet::new(),
        join_code: None,
        branding: Branding::default(),
        policy: OrgPolicy::default(),
        created_at: now(),
        updated_at: now(),
    });
    changes.put(Contract {
        id: ContractId::from_uuid(Uuid::from_u128(4)),
        version: 0,
        organization: org,
        crm_contract_id: "C".into(),
        services: BTreeSet::from([service_id()]),
        status: case.contract_status,
        valid_from: None,
        valid_until: case.contract_expired.then(|| now() - Duration::days(1)),
        access_ended_at: None,
        created_at: now(),
        updated_at: now(),
    });
    changes.put(Identity {
        id: identity,
        version: 0,
        email: EmailAddress::parse("p@org.example").unwrap(),
        email_verified: true,
        phone: None,
        phone_verified: false,
        name: PersonName::parse("P", "Q").unwrap(),
        status: case.identity_status,
        crm_contact_id: None,
        pending_email: None,
        pending_phone: None,
        disabled_reason: None,
        created_at: now(),
        updated_at: now(),
    });
    changes.put(Membership {
        id: MembershipId::from_uuid(Uuid::from_u128(5)),
        version: 0,
        identity,
        organization: org,
        status: case.membership_status,
        business_roles: BTreeSet::from([role]),
        mandates: case.mandates.clone(),
        staff_roles: BTreeSet::new(),
        crm_lead_id: None,
        created_at: now(),
        updated_at: now(),
    });
    store.commit(changes).await.unwrap();
    let ciam = Ciam::builder()
        .store(store)
        .clock(Arc::new(FixedClock::new(now())))
        .random(Arc::new(SeededRandom::new(1)))
        .build()
        .unwrap();
    (ciam, identity, org)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inactive_things_grant_nothing(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (has_access, can_act, any_grant) = runtime.block_on(async {
            let (ciam, identity, org) = build(&case).await;
            let roles = ciam.roles().resolve(&Principal::System, identity, "app").await.unwrap();
            let principal = ciam.principals().for_identity(identity).await.unwrap();
            let target = Target::Organization(OrgTarget { id: org, kind: OrgKind::Customer, ancestors: vec![] });
            let can_act = authorize(&principal, &Action::ViewOrganization, &target).is_allowed();
            let any_grant = match &principal {
                Principal::User(user) => !user.grants.is_empty(),
                _ => false,
            };
            (roles.has_access(), can_act, any_grant)
        });
        let everything_active = case.identity_status == IdentityStatus::Active
            && case.membership_status == MembershipStatus::Active
            && case.org_status == OrgStatus::Active;
        let contract_effective = case.contract_status == ContractStatus::Active && !case.contract_expired;
        prop_assert_eq!(has_access, everything_active && contract_effective);
        prop_assert_eq!(any_grant, everything_active);
        prop_assert_eq!(can_act, everything_active && !case.mandates.is_empty());
    }
}
