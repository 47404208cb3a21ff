//! Removing and disabling people; roles and mandates changes and their limits.

use std::collections::BTreeSet;

use ciam_core::authz::Principal as AuthzPrincipal;
use ciam_core::identities::{AdministrationError, IdentityStatus, Mandate, MembershipStatus};
use ciam_core::invitations::InvitationRequest;
use ciam_core::sessions::AuthMethod;
use ciam_core::store::PageRequest;
use ciam_core::{DenyReason, Principal};

use crate::support::{APP, World, request};

#[tokio::test]
async fn removal_ends_sessions_and_grants_nothing_more() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                contact_person: true,
                ..request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let (_, ann) = world
        .member(
            &jeremy,
            city.id,
            InvitationRequest {
                business_roles: vec!["energy-manager".into()],
                ..request("ann@citygroup.example")
            },
        )
        .await;
    let session = world
        .ciam
        .sessions()
        .start(ann, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    let membership = world
        .ciam
        .store()
        .membership_of(ann, city.id)
        .await
        .unwrap()
        .unwrap();
    let removed = world
        .ciam
        .administration()
        .remove_member(&jeremy, membership.id)
        .await
        .unwrap();
    assert_eq!(removed.status, MembershipStatus::Removed);
    assert!(
        world
            .ciam
            .sessions()
            .validate(&session.token)
            .await
            .is_err()
    );
    assert!(
        !world
            .ciam
            .roles()
            .resolve(&Principal::System, ann, APP)
            .await
            .unwrap()
            .has_access()
    );
    let types = world.event_types().await;
    assert!(types.iter().any(|t| t == "membership_removed"));
    // A removed member can get no roles.
    assert!(matches!(
        world
            .ciam
            .administration()
            .set_business_roles(&jeremy, membership.id, &["finance".into()])
            .await,
        Err(AdministrationError::MembershipRemoved)
    ));
}

#[tokio::test]
async fn disabling_is_for_staff_and_ends_everything() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, jeremy_id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                contact_person: true,
                business_roles: vec!["energy-manager".into()],
                ..request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let (_, ann) = world
        .member(&jeremy, city.id, request("ann@citygroup.example"))
        .await;
    // The contact person removes people but does not disable accounts.
    assert!(matches!(
        world
            .ciam
            .administration()
            .disable(&jeremy, ann, "left")
            .await,
        Err(AdministrationError::Denied(DenyReason::StaffOnly))
    ));
    let session = world
        .ciam
        .sessions()
        .start(jeremy_id, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    let disabled = world
        .ciam
        .administration()
        .disable(&world.customer_service, jeremy_id, "security incident")
        .await
        .unwrap();
    assert_eq!(disabled.status, IdentityStatus::Disabled);
    assert!(
        world
            .ciam
            .sessions()
            .validate(&session.token)
            .await
            .is_err()
    );
    assert!(
        !world
            .ciam
            .roles()
            .resolve(&Principal::System, jeremy_id, APP)
            .await
            .unwrap()
            .has_access()
    );
    // A disabled person acts no more, even with a principal built before.
    let fresh = world.principal(jeremy_id).await;
    let AuthzPrincipal::User(user) = &fresh else {
        panic!("not a user")
    };
    assert!(!user.active);
    assert!(
        world
            .ciam
            .invitations()
            .invite(&fresh, city.id, request("x@citygroup.example"))
            .await
            .is_err()
    );
    assert!(
        world
            .ciam
            .sessions()
            .start(jeremy_id, vec![AuthMethod::Pwd])
            .await
            .is_err()
    );
    // Customer service may not disable staff.
    let scott = world.scott.identity().unwrap();
    assert!(matches!(
        world
            .ciam
            .administration()
            .disable(&world.customer_service, scott, "no")
            .await,
        Err(AdministrationError::Denied(_))
    ));
    // Enabled again.
    let enabled = world
        .ciam
        .administration()
        .enable(&world.customer_service, jeremy_id)
        .await
        .unwrap();
    assert_eq!(enabled.status, IdentityStatus::Active);
    let _ = jeremy;
}

#[tokio::test]
async fn service_managers_assign_only_their_services_roles() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                contact_person: true,
                ..request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let app = world
        .ciam
        .store()
        .service_by_key(APP)
        .await
        .unwrap()
        .unwrap();
    let (_, sam_id) = world
        .member(
            &jeremy,
            city.id,
            InvitationRequest {
                mandates: BTreeSet::from([Mandate::ServiceManager(app.id)]),
                ..request("sam@citygroup.example")
            },
        )
        .await;
    let sam = world.principal(sam_id).await;
    let (_, ann) = world
        .member(&jeremy, city.id, request("ann@citygroup.example"))
        .await;
    let ann_membership = world
        .ciam
        .store()
        .membership_of(ann, city.id)
        .await
        .unwrap()
        .unwrap();
    let admin = world.ciam.administration();
    admin
        .set_business_roles(
            &sam,
            ann_membership.id,
            &["energy-manager".into(), "finance".into()],
        )
        .await
        .unwrap();
    assert!(matches!(
        admin
            .set_business_roles(&sam, ann_membership.id, &["report-reader".into()])
            .await,
        Err(AdministrationError::Denied(DenyReason::Escalation { .. }))
    ));
    // Sam cannot make anyone an org admin or user manager, nor himself.
    assert!(matches!(
        admin
            .set_mandates(
                &sam,
                ann_membership.id,
                BTreeSet::from([Mandate::UserManager])
            )
            .await,
        Err(AdministrationError::Denied(DenyReason::Escalation { .. }))
    ));
    let sam_membership = world
        .ciam
        .store()
        .membership_of(sam_id, city.id)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        admin
            .set_mandates(
                &sam,
                sam_membership.id,
                BTreeSet::from([Mandate::ServiceManager(app.id), Mandate::OrgAdmin])
            )
            .await,
        Err(AdministrationError::Denied(DenyReason::Escalation { .. }))
    ));
    // But he can pass his own service mandate on.
    admin
        .set_mandates(
            &sam,
            ann_membership.id,
            BTreeSet::from([Mandate::ServiceManager(app.id)]),
        )
        .await
        .unwrap();
    // Unknown roles are refused.
    assert!(matches!(
        admin
            .set_business_roles(&jeremy, ann_membership.id, &["ghost".into()])
            .await,
        Err(AdministrationError::UnknownBusinessRole(_))
    ));
    // The contact person sees the members, a page at a time.
    let page = admin
        .members(&jeremy, city.id, PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = admin
        .members(
            &jeremy,
            city.id,
            PageRequest {
                after: page.next.clone(),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next.is_none());
}

#[tokio::test]
async fn staff_search_people_across_organizations() {
    let world = World::new().await;
    let city = world.city_group().await;
    world
        .member(
            &world.scott,
            city.id,
            request("jeremy.mills@citygroup.example"),
        )
        .await;
    let found = world
        .ciam
        .administration()
        .search(&world.customer_service, "jeremy", 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    let (jeremy, _) = (world.principal(found[0].id).await, ());
    assert!(
        world
            .ciam
            .administration()
            .search(&jeremy, "jeremy", 10)
            .await
            .is_err()
    );
}
