//! Plain tests for each staff role, integrations and anonymous principals.

use std::collections::BTreeSet;

use ciam_core::authz::{
    Action, DenyReason, IntegrationPrincipal, IntegrationScope, OrgTarget, Principal, Target,
    UserPrincipal, authorize,
};
use ciam_core::identities::{Mandate, StaffRole};
use ciam_core::ids::{IdentityId, OrganizationId};
use ciam_core::organizations::OrgKind;
use uuid::Uuid;

fn staff(roles: &[StaffRole]) -> Principal {
    Principal::User(UserPrincipal {
        identity: IdentityId::from_uuid(Uuid::from_u128(1)),
        active: true,
        staff_roles: roles.iter().copied().collect(),
        grants: Vec::new(),
    })
}

fn customer() -> Target {
    Target::Organization(OrgTarget {
        id: OrganizationId::from_uuid(Uuid::from_u128(10)),
        kind: OrgKind::Customer,
        ancestors: Vec::new(),
    })
}

fn provider() -> Target {
    Target::Organization(OrgTarget {
        id: OrganizationId::from_uuid(Uuid::from_u128(11)),
        kind: OrgKind::Provider,
        ancestors: Vec::new(),
    })
}

fn invite_admin() -> Action {
    Action::InviteMember {
        role_services: BTreeSet::new(),
        mandates: BTreeSet::from([Mandate::OrgAdmin]),
    }
}

fn allowed(principal: &Principal, action: Action, target: &Target) -> bool {
    authorize(principal, &action, target).is_allowed()
}

#[test]
fn administrator_may_do_everything() {
    let admin = staff(&[StaffRole::Administrator]);
    for target in [customer(), provider(), Target::Global] {
        assert!(allowed(&admin, Action::ManageStaff, &target));
        assert!(allowed(&admin, Action::ManageCatalog, &target));
        assert!(allowed(&admin, Action::RemoveMember, &target));
    }
}

#[test]
fn account_manager_provisions_and_invites_contact_persons() {
    let am = staff(&[StaffRole::AccountManager]);
    assert!(allowed(&am, Action::ProvisionOrganization, &Target::Global));
    assert!(allowed(&am, Action::ManageContracts, &customer()));
    assert!(allowed(&am, invite_admin(), &customer()));
    assert!(allowed(&am, Action::InviteLead, &customer()));
    assert!(!allowed(&am, Action::RemoveMember, &customer()));
    assert!(!allowed(
        &am,
        Action::DecideOrgRegistration,
        &Target::Global
    ));
    assert!(!allowed(&am, Action::ManageStaff, &provider()));
    assert!(!allowed(&am, invite_admin(), &provider()));
}

#[test]
fn customer_service_manages_users_of_customers_only() {
    let cs = staff(&[StaffRole::CustomerService]);
    assert!(allowed(&cs, invite_admin(), &customer()));
    assert!(allowed(&cs, Action::RemoveMember, &customer()));
    assert!(allowed(&cs, Action::DecideJoinRequest, &customer()));
    assert!(allowed(&cs, Action::DisableIdentity, &Target::Global));
    assert!(!allowed(&cs, Action::DisableIdentity, &provider()));
    assert!(!allowed(&cs, Action::RemoveMember, &provider()));
    assert!(!allowed(
        &cs,
        Action::ProvisionOrganization,
        &Target::Global
    ));
    assert!(!allowed(&cs, Action::ManageStaff, &provider()));
}

#[test]
fn back_office_decides_registrations_and_held_invitations() {
    let bo = staff(&[StaffRole::BackOffice]);
    assert!(allowed(&bo, Action::DecideOrgRegistration, &Target::Global));
    assert!(allowed(&bo, Action::ReviewHeldInvitation, &customer()));
    assert!(allowed(&bo, Action::ViewOrganization, &customer()));
    assert!(!allowed(&bo, invite_admin(), &customer()));
    assert!(!allowed(&bo, Action::RemoveMember, &customer()));
    assert!(!allowed(
        &bo,
        Action::ProvisionOrganization,
        &Target::Global
    ));
}

#[test]
fn inactive_staff_is_denied() {
    let Principal::User(mut user) = staff(&[StaffRole::Administrator]) else {
        unreachable!()
    };
    user.active = false;
    assert_eq!(
        authorize(
            &Principal::User(user),
            &Action::ManageStaff,
            &Target::Global
        ),
        ciam_core::Decision::Deny(DenyReason::InactiveIdentity)
    );
}

#[test]
fn integrations_act_through_scopes_on_customers_only() {
    let crm = Principal::Integration(IntegrationPrincipal {
        name: "crm".into(),
        scopes: BTreeSet::from([IntegrationScope::Provisioning]),
    });
    assert!(allowed(
        &crm,
        Action::ProvisionOrganization,
        &Target::Global
    ));
    assert!(allowed(&crm, Action::ManageContracts, &customer()));
    assert!(!allowed(&crm, Action::ManageContracts, &provider()));
    assert_eq!(
        authorize(&crm, &invite_admin(), &customer()),
        ciam_core::Decision::Deny(DenyReason::MissingScope(IntegrationScope::Invitations))
    );
    assert!(!allowed(&crm, Action::RemoveMember, &customer()));
    assert!(!allowed(
        &crm,
        Action::DecideOrgRegistration,
        &Target::Global
    ));
}

#[test]
fn anonymous_may_only_self_serve() {
    assert!(allowed(
        &Principal::Anonymous,
        Action::SelfService,
        &Target::Global
    ));
    assert_eq!(
        authorize(
            &Principal::Anonymous,
            &Action::ViewOrganization,
            &customer()
        ),
        ciam_core::Decision::Deny(DenyReason::NotSignedIn)
    );
}

#[test]
fn people_change_only_their_own_profile() {
    let me = IdentityId::from_uuid(Uuid::from_u128(1));
    let other = IdentityId::from_uuid(Uuid::from_u128(2));
    let user = staff(&[]);
    assert!(allowed(
        &user,
        Action::ManageOwnProfile,
        &Target::Identity(me)
    ));
    assert_eq!(
        authorize(&user, &Action::ManageOwnProfile, &Target::Identity(other)),
        ciam_core::Decision::Deny(DenyReason::NotSelf)
    );
    // Even an administrator does not edit someone else's profile.
    let admin = staff(&[StaffRole::Administrator]);
    assert!(!allowed(
        &admin,
        Action::ManageOwnProfile,
        &Target::Identity(other)
    ));
}
