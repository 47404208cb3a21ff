//! Property tests over generated worlds: organizations with sub-organizations, people with
//! mandates and contracts. Each property runs at least 256 cases.

use std::collections::BTreeSet;

use ciam_core::authz::{
    Action, Decision, OrgGrant, OrgTarget, Principal, Target, UserPrincipal, authorize,
};
use ciam_core::identities::Mandate;
use ciam_core::ids::{OrganizationId, ServiceId};
use ciam_core::organizations::OrgKind;
use proptest::prelude::*;
use uuid::Uuid;

const SERVICES: u128 = 3;

fn org_id(n: usize) -> OrganizationId {
    OrganizationId::from_uuid(Uuid::from_u128(1000 + n as u128))
}

fn service_id(n: u128) -> ServiceId {
    ServiceId::from_uuid(Uuid::from_u128(n + 1))
}

/// A forest of customer organizations: `parents[i]` is the parent index of org i (< i).
#[derive(Clone, Debug)]
struct World {
    parents: Vec<Option<usize>>,
}

impl World {
    fn target(&self, org: usize) -> OrgTarget {
        let mut ancestors = Vec::new();
        let mut next = self.parents[org];
        while let Some(parent) = next {
            ancestors.push(org_id(parent));
            next = self.parents[parent];
        }
        OrgTarget {
            id: org_id(org),
            kind: OrgKind::Customer,
            ancestors,
        }
    }
}

fn world() -> impl Strategy<Value = World> {
    (1usize..8).prop_flat_map(|n| {
        let parents: Vec<BoxedStrategy<Option<usize>>> = (0..n)
            .map(|i| {
                if i == 0 {
                    Just(None).boxed()
                } else {
                    prop_oneof![Just(None), (0..i).prop_map(Some)].boxed()
                }
            })
            .collect();
        parents.prop_map(|parents| World { parents })
    })
}

fn mandate() -> impl Strategy<Value = Mandate> {
    prop_oneof![
        Just(Mandate::OrgAdmin),
        Just(Mandate::UserManager),
        (0..SERVICES).prop_map(|s| Mandate::ServiceManager(service_id(s))),
    ]
}

fn services() -> impl Strategy<Value = BTreeSet<ServiceId>> {
    proptest::collection::btree_set((0..SERVICES).prop_map(service_id), 0..3)
}

fn grant(orgs: usize) -> impl Strategy<Value = OrgGrant> {
    (
        0..orgs,
        proptest::collection::btree_set(mandate(), 0..3),
        services(),
    )
        .prop_map(|(org, mandates, covered_services)| OrgGrant {
            organization: org_id(org),
            mandates,
            covered_services,
        })
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::ViewOrganization),
        Just(Action::ConfigureOrganization),
        (services(), proptest::collection::btree_set(mandate(), 0..3)).prop_map(
            |(role_services, mandates)| Action::InviteMember {
                role_services,
                mandates
            }
        ),
        Just(Action::ManageInvitation),
        Just(Action::DecideJoinRequest),
        services().prop_map(|role_services| Action::AssignBusinessRoles { role_services }),
        proptest::collection::btree_set(mandate(), 0..3)
            .prop_map(|mandates| Action::ChangeMandates { mandates }),
        Just(Action::RemoveMember),
        Just(Action::ViewAudit),
        Just(Action::ProvisionOrganization),
        Just(Action::ManageContracts),
        Just(Action::DecideOrgRegistration),
        Just(Action::DisableIdentity),
        Just(Action::ManageStaff),
        Just(Action::InviteLead),
    ]
}

fn scenario() -> impl Strategy<Value = (World, UserPrincipal, usize, Action)> {
    world().prop_flat_map(|world| {
        let n = world.parents.len();
        (
            Just(world),
            proptest::collection::vec(grant(n), 0..4),
            0..n,
            action(),
            any::<bool>(),
        )
            .prop_map(|(world, grants, target, action, active)| {
                let user = UserPrincipal {
                    identity: ciam_core::ids::IdentityId::from_uuid(Uuid::from_u128(7)),
                    active,
                    staff_roles: BTreeSet::new(),
                    grants,
                };
                (world, user, target, action)
            })
    })
}

/// Mandates held in grants that cover `target` (the target or one of its ancestors).
fn covering<'a>(user: &'a UserPrincipal, target: &OrgTarget) -> Vec<&'a OrgGrant> {
    user.grants
        .iter()
        .filter(|g| g.organization == target.id || target.ancestors.contains(&g.organization))
        .collect()
}

fn holds(grants: &[&OrgGrant], mandate: Mandate) -> bool {
    grants.iter().any(|g| g.mandates.contains(&mandate))
}

fn manages_service(grants: &[&OrgGrant], service: ServiceId) -> bool {
    holds(grants, Mandate::OrgAdmin)
        || grants.iter().any(|g| {
            g.mandates.contains(&Mandate::ServiceManager(service))
                && g.covered_services.contains(&service)
        })
}

fn could_exercise(grants: &[&OrgGrant], mandate: Mandate) -> bool {
    match mandate {
        Mandate::OrgAdmin => holds(grants, Mandate::OrgAdmin),
        Mandate::UserManager => {
            holds(grants, Mandate::OrgAdmin) || holds(grants, Mandate::UserManager)
        }
        Mandate::ServiceManager(service) => manages_service(grants, service),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Nobody acts outside the organizations (and sub-organizations) their mandates cover.
    #[test]
    fn no_action_outside_mandated_organizations((world, user, target, action) in scenario()) {
        let org = world.target(target);
        let decision = authorize(&Principal::User(user.clone()), &action, &Target::Organization(org.clone()));
        if decision.is_allowed() {
            let grants = covering(&user, &org);
            prop_assert!(
                grants.iter().any(|g| !g.mandates.is_empty()),
                "allowed {action:?} on {org:?} without a covering mandate: {user:?}"
            );
        }
    }

    /// Nobody grants a role or mandate they could not exercise themselves.
    #[test]
    fn no_grant_beyond_what_the_granter_holds((world, user, target, action) in scenario()) {
        let org = world.target(target);
        let decision = authorize(&Principal::User(user.clone()), &action, &Target::Organization(org.clone()));
        let grants = covering(&user, &org);
        if decision.is_allowed() {
            match &action {
                Action::InviteMember { role_services, mandates } => {
                    for service in role_services {
                        prop_assert!(manages_service(&grants, *service));
                    }
                    for mandate in mandates {
                        prop_assert!(could_exercise(&grants, *mandate));
                    }
                }
                Action::AssignBusinessRoles { role_services } => {
                    for service in role_services {
                        prop_assert!(manages_service(&grants, *service));
                    }
                }
                Action::ChangeMandates { mandates } => {
                    for mandate in mandates {
                        prop_assert!(could_exercise(&grants, *mandate));
                    }
                }
                _ => {}
            }
        }
    }

    /// A disabled identity is denied everything.
    #[test]
    fn inactive_identities_can_do_nothing((world, mut user, target, action) in scenario()) {
        user.active = false;
        let org = world.target(target);
        let decision = authorize(&Principal::User(user), &action, &Target::Organization(org));
        prop_assert!(!decision.is_allowed());
    }

    /// A ServiceManager mandate whose service no effective contract covers gives nothing in
    /// that service.
    #[test]
    fn service_manager_needs_an_effective_contract((world, mut user, target, _action) in scenario(), service in 0..SERVICES) {
        let service = service_id(service);
        for grant in &mut user.grants {
            grant.covered_services.remove(&service);
            grant.mandates.remove(&Mandate::OrgAdmin);
        }
        let org = world.target(target);
        let decision = authorize(
            &Principal::User(user),
            &Action::AssignBusinessRoles { role_services: BTreeSet::from([service]) },
            &Target::Organization(org),
        );
        prop_assert!(!decision.is_allowed());
    }

    /// Customer users never pass staff-only actions, whatever mandates they hold.
    #[test]
    fn mandates_never_reach_staff_actions((world, mut user, target, _action) in scenario()) {
        user.active = true;
        let org = world.target(target);
        for action in [
            Action::ProvisionOrganization,
            Action::ManageContracts,
            Action::ManageCatalog,
            Action::DecideOrgRegistration,
            Action::ReviewHeldInvitation,
            Action::DisableIdentity,
            Action::ManageStaff,
            Action::InviteLead,
        ] {
            let decision = authorize(&Principal::User(user.clone()), &action, &Target::Organization(org.clone()));
            prop_assert!(!decision.is_allowed(), "{action:?} allowed for {user:?}");
        }
    }
}

#[test]
fn a_grant_in_a_parent_covers_its_sub_organizations() {
    let world = World {
        parents: vec![None, Some(0), Some(1)],
    };
    let user = UserPrincipal {
        identity: ciam_core::ids::IdentityId::from_uuid(Uuid::from_u128(7)),
        active: true,
        staff_roles: BTreeSet::new(),
        grants: vec![OrgGrant {
            organization: org_id(0),
            mandates: BTreeSet::from([Mandate::OrgAdmin]),
            covered_services: BTreeSet::new(),
        }],
    };
    let principal = Principal::User(user);
    for org in 0..3 {
        assert_eq!(
            authorize(
                &principal,
                &Action::RemoveMember,
                &Target::Organization(world.target(org))
            ),
            Decision::Allow
        );
    }
    // ... but a grant in the sub-organization does not cover the parent.
    let child_admin = Principal::User(UserPrincipal {
        identity: ciam_core::ids::IdentityId::from_uuid(Uuid::from_u128(8)),
        active: true,
        staff_roles: BTreeSet::new(),
        grants: vec![OrgGrant {
            organization: org_id(1),
            mandates: BTreeSet::from([Mandate::OrgAdmin]),
            covered_services: BTreeSet::new(),
        }],
    });
    assert!(
        !authorize(
            &child_admin,
            &Action::RemoveMember,
            &Target::Organization(world.target(0))
        )
        .is_allowed()
    );
}
