//! Self-service profile: email and phone changes take effect only after their codes; every
//! change is a `ContactDetailsChanged` event for the CRM.

use ciam_core::DenyReason;
use ciam_core::events::{ContactField, EventKind};
use ciam_core::identities::ProfileError;
use ciam_core::invitations::InvitationRequest;
use ciam_core::secrets::OneTimeCode;

use crate::support::World;

#[tokio::test]
async fn email_and_phone_change_after_verification() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;
    let profile = world.ciam.profile();

    profile
        .change_name(&jeremy, id, "Jeremy", "Mills")
        .await
        .unwrap();
    profile
        .request_email_change(&jeremy, id, "jeremy@citygroup.example")
        .await
        .unwrap();
    // Not effective yet.
    let current = profile.get(&jeremy, id).await.unwrap();
    assert_eq!(current.email.as_str(), "jeremy.mills@citygroup.example");
    let code = world.mail_code("jeremy@citygroup.example");
    assert!(matches!(
        profile
            .confirm_email_change(&jeremy, id, &OneTimeCode::from_presented("12345x"))
            .await,
        Err(ProfileError::WrongCode)
    ));
    let changed = profile
        .confirm_email_change(&jeremy, id, &code)
        .await
        .unwrap();
    assert_eq!(changed.email.as_str(), "jeremy@citygroup.example");

    profile
        .request_phone_change(&jeremy, id, "+358401112223")
        .await
        .unwrap();
    let code = world.sms_code("+358401112223");
    let changed = profile
        .confirm_phone_change(&jeremy, id, &code)
        .await
        .unwrap();
    assert!(changed.phone_verified);

    let fields: Vec<ContactField> = world
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::ContactDetailsChanged { field, .. } if e.identity == Some(id) => Some(field),
            _ => None,
        })
        .collect();
    assert_eq!(
        fields,
        vec![ContactField::Name, ContactField::Email, ContactField::Phone]
    );
}

#[tokio::test]
async fn profile_changes_refuse_bad_input_and_other_people() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;
    let (_, other) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "ann@citygroup.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;
    let profile = world.ciam.profile();
    assert!(matches!(
        profile.request_phone_change(&jeremy, id, "12345").await,
        Err(ProfileError::Invalid(_))
    ));
    assert!(matches!(
        profile.request_email_change(&jeremy, id, "nope").await,
        Err(ProfileError::Invalid(_))
    ));
    assert!(matches!(
        profile
            .request_email_change(&jeremy, id, "ANN@citygroup.example")
            .await,
        Err(ProfileError::EmailTaken)
    ));
    assert!(matches!(
        profile.change_name(&jeremy, other, "Evil", "Twin").await,
        Err(ProfileError::Denied(DenyReason::NotSelf))
    ));
    assert!(matches!(
        profile
            .confirm_email_change(&jeremy, id, &OneTimeCode::from_presented("000000"))
            .await,
        Err(ProfileError::NothingPending)
    ));
    // Five wrong codes use the change up; the address stays.
    profile
        .request_email_change(&jeremy, id, "jm@citygroup.example")
        .await
        .unwrap();
    let good = world.mail_code("jm@citygroup.example");
    let wrong = if good.expose() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        assert!(matches!(
            profile
                .confirm_email_change(&jeremy, id, &OneTimeCode::from_presented(wrong))
                .await,
            Err(ProfileError::WrongCode)
        ));
    }
    assert!(matches!(
        profile
            .confirm_email_change(&jeremy, id, &OneTimeCode::from_presented(wrong))
            .await,
        Err(ProfileError::CodeExhausted)
    ));
    assert!(matches!(
        profile.confirm_email_change(&jeremy, id, &good).await,
        Err(ProfileError::NothingPending)
    ));
    assert_eq!(
        profile.get(&jeremy, id).await.unwrap().email.as_str(),
        "jeremy.mills@citygroup.example"
    );
    // An expired code does not work.
    profile
        .request_phone_change(&jeremy, id, "+358401112223")
        .await
        .unwrap();
    let code = world.sms_code("+358401112223");
    world.clock.advance(chrono::Duration::minutes(6));
    assert!(matches!(
        profile.confirm_phone_change(&jeremy, id, &code).await,
        Err(ProfileError::CodeExhausted)
    ));
}
