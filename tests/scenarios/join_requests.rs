//! Join requests: organizations that refuse them, unknown targets, and who may decide.

use ciam_core::invitations::InvitationRequest;
use ciam_core::organizations::{Branding, OrgPolicy};
use ciam_core::registrations::{
    JoinRequestForm, JoinTarget, RegistrationDecision, RegistrationError, RequestStatus,
};
use ciam_core::{DenyReason, Principal};

use crate::support::{World, password};

fn form(target: JoinTarget, email: &str) -> JoinRequestForm {
    JoinRequestForm {
        target,
        email: email.into(),
        given_name: "Jo".into(),
        family_name: "Iner".into(),
        phone: None,
        password: password(),
    }
}

#[tokio::test]
async fn join_requests_need_a_matching_open_organization_and_a_manager() {
    let world = World::new().await;
    let city = world.city_group().await;
    let registrations = world.ciam.registrations();
    assert!(matches!(
        registrations
            .request_to_join(
                &Principal::Anonymous,
                form(JoinTarget::EmailDomain, "jo@nowhere.example")
            )
            .await,
        Err(RegistrationError::NoMatchingOrganization)
    ));
    assert!(matches!(
        registrations
            .request_to_join(
                &Principal::Anonymous,
                form(JoinTarget::JoinCode("NOPE".into()), "jo@citygroup.example")
            )
            .await,
        Err(RegistrationError::NoMatchingOrganization)
    ));
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
    let (plain, _) = world
        .member(
            &jeremy,
            city.id,
            InvitationRequest {
                email: "pat@citygroup.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;
    let request = registrations
        .request_to_join(
            &Principal::Anonymous,
            form(JoinTarget::EmailDomain, "jo@citygroup.example"),
        )
        .await
        .unwrap();
    // Not decidable before the email is verified.
    assert!(matches!(
        registrations
            .decide_join_request(&jeremy, request.id, RegistrationDecision::Approve)
            .await,
        Err(RegistrationError::WrongState)
    ));
    let code = world.mail_code("jo@citygroup.example");
    registrations
        .verify_join_request(request.id, &code)
        .await
        .unwrap();
    // A plain member may not decide.
    assert!(matches!(
        registrations
            .decide_join_request(&plain, request.id, RegistrationDecision::Approve)
            .await,
        Err(RegistrationError::Denied(DenyReason::OutsideMandate))
    ));
    let rejected = registrations
        .decide_join_request(
            &jeremy,
            request.id,
            RegistrationDecision::Reject {
                reason: "Not one of ours".into(),
            },
        )
        .await
        .unwrap();
    assert!(matches!(rejected.status, RequestStatus::Rejected { .. }));
    assert!(
        world
            .mail
            .latest_to("jo@citygroup.example")
            .unwrap()
            .text
            .contains("Not one of ours")
    );

    // The contact person closes join requests.
    world
        .ciam
        .organizations()
        .configure(
            &jeremy,
            city.id,
            None,
            Branding::default(),
            OrgPolicy {
                require_mfa: false,
                allow_join_requests: false,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        registrations
            .request_to_join(
                &Principal::Anonymous,
                form(JoinTarget::EmailDomain, "jo2@citygroup.example")
            )
            .await,
        Err(RegistrationError::JoinRequestsClosed)
    ));
    // Bad branding is refused.
    assert!(
        world
            .ciam
            .organizations()
            .configure(
                &jeremy,
                city.id,
                None,
                Branding {
                    logo_url: None,
                    primary_color: Some("red".into())
                },
                OrgPolicy::default()
            )
            .await
            .is_err()
    );
}
