//! Scott Long provisions City Group, Inc. and invites Jeremy Mills as contact person; Jeremy
//! accepts, invites a colleague, delegates service management and approves a join request;
//! the contract ends and access ends.

use std::collections::BTreeSet;

use ciam_core::Principal;
use ciam_core::identities::{IdentityStatus, Mandate};
use ciam_core::invitations::{Acceptance, InvitationRequest};
use ciam_core::organizations::ContractChange;
use ciam_core::registrations::{JoinRequestForm, JoinTarget, RegistrationDecision};
use ciam_core::sessions::AuthMethod;

use crate::support::{APP, World, password};

#[tokio::test]
async fn the_city_group_story() {
    let world = World::new().await;
    let ciam = &world.ciam;

    // Scott provisions City Group with its contract, as the CRM would.
    let city = world.city_group().await;

    // Scott invites Jeremy Mills as contact person, with the energy manager role.
    let issued = ciam
        .invitations()
        .invite(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "Jeremy.Mills@citygroup.example".into(),
                given_name: Some("Jeremy".into()),
                family_name: Some("Mills".into()),
                business_roles: vec!["energy-manager".into()],
                contact_person: true,
                ..InvitationRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(issued.mail_sent);
    let mail = world
        .mail
        .latest_to("jeremy.mills@citygroup.example")
        .unwrap();
    assert!(mail.subject.contains("City Group, Inc."));
    assert!(
        mail.text
            .contains("https://my.smartplan.example/invitations/accept?token=")
    );

    // Jeremy opens the link and sets a password.
    let token = world.invitation_token("jeremy.mills@citygroup.example");
    let accepted = ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            &token,
            Acceptance {
                password: Some(password()),
                ..Acceptance::default()
            },
        )
        .await
        .unwrap();
    assert!(accepted.created);
    assert_eq!(accepted.identity.status, IdentityStatus::Active);
    assert!(accepted.identity.email_verified);
    assert!(accepted.membership.mandates.contains(&Mandate::OrgAdmin));
    let jeremy_id = accepted.identity.id;
    let jeremy = world.principal(jeremy_id).await;

    // His roles in the application come from his business role through the contract.
    let roles = ciam
        .roles()
        .resolve(&Principal::System, jeremy_id, APP)
        .await
        .unwrap();
    assert_eq!(
        roles.app_roles,
        BTreeSet::from([
            "consumption.export".to_owned(),
            "consumption.read".to_owned()
        ])
    );

    // Jeremy invites a colleague with the energy manager role.
    let (_, mary_id) = world
        .member(
            &jeremy,
            city.id,
            InvitationRequest {
                email: "mary.major@citygroup.example".into(),
                business_roles: vec!["energy-manager".into()],
                ..InvitationRequest::default()
            },
        )
        .await;

    // ... and delegates the management of the application to her.
    let app = ciam.store().service_by_key(APP).await.unwrap().unwrap();
    let mary_membership = ciam
        .store()
        .membership_of(mary_id, city.id)
        .await
        .unwrap()
        .unwrap();
    ciam.administration()
        .set_mandates(
            &jeremy,
            mary_membership.id,
            BTreeSet::from([Mandate::ServiceManager(app.id)]),
        )
        .await
        .unwrap();
    let mary = world.principal(mary_id).await;

    // Someone asks to join City Group through its verified email domain; Jeremy approves.
    let request = ciam
        .registrations()
        .request_to_join(
            &Principal::Anonymous,
            JoinRequestForm {
                target: JoinTarget::EmailDomain,
                email: "paul.newman@citygroup.example".into(),
                given_name: "Paul".into(),
                family_name: "Newman".into(),
                phone: None,
                password: password(),
            },
        )
        .await
        .unwrap();
    let code = world.mail_code("paul.newman@citygroup.example");
    ciam.registrations()
        .verify_join_request(request.id, &code)
        .await
        .unwrap();
    // Jeremy is told by email that a request waits.
    assert!(
        world
            .mail
            .latest_to("jeremy.mills@citygroup.example")
            .unwrap()
            .subject
            .contains("request to join")
    );
    let pending = ciam
        .registrations()
        .pending_join_requests(&jeremy, city.id, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let approved = ciam
        .registrations()
        .decide_join_request(&jeremy, request.id, RegistrationDecision::Approve)
        .await
        .unwrap();
    let paul_id = approved.identity.unwrap();

    // Mary, as service manager of the application, gives Paul the finance role.
    let paul_membership = ciam
        .store()
        .membership_of(paul_id, city.id)
        .await
        .unwrap()
        .unwrap();
    ciam.administration()
        .set_business_roles(&mary, paul_membership.id, &["finance".into()])
        .await
        .unwrap();
    let paul_roles = ciam
        .roles()
        .resolve(&Principal::System, paul_id, APP)
        .await
        .unwrap();
    assert_eq!(
        paul_roles.app_roles,
        BTreeSet::from(["billing.read".to_owned()])
    );

    // Jeremy is signed in.
    let session = ciam
        .sessions()
        .start(jeremy_id, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    ciam.sessions().validate(&session.token).await.unwrap();

    // The contract ends: access ends at once and the session is revoked.
    ciam.organizations()
        .change_contract(&world.scott, "CON-2001", ContractChange::End)
        .await
        .unwrap();
    assert!(ciam.sessions().validate(&session.token).await.is_err());
    let roles = ciam
        .roles()
        .resolve(&Principal::System, jeremy_id, APP)
        .await
        .unwrap();
    assert!(!roles.has_access());
    let types = world.event_types().await;
    assert!(types.iter().any(|t| t == "access_revoked"));
    assert!(types.iter().any(|t| t == "sessions_revoked"));

    // After the grace period, people with no access left are disabled; staff are not.
    world.clock.advance(chrono::Duration::days(29));
    let report = ciam
        .organizations()
        .sweep_lost_access(&Principal::System)
        .await
        .unwrap();
    assert!(
        report.disabled.is_empty(),
        "disabled before the grace period ended"
    );
    world.clock.advance(chrono::Duration::days(2));
    let report = ciam
        .organizations()
        .sweep_lost_access(&Principal::System)
        .await
        .unwrap();
    assert_eq!(
        report.disabled.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([jeremy_id, mary_id, paul_id])
    );
    let jeremy_now = ciam.store().identity(jeremy_id).await.unwrap().unwrap();
    assert_eq!(jeremy_now.status, IdentityStatus::Disabled);
    let scott_id = world.scott.identity().unwrap();
    let scott_now = ciam.store().identity(scott_id).await.unwrap().unwrap();
    assert_eq!(scott_now.status, IdentityStatus::Active);
}
