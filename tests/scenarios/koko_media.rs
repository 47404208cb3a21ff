//! Karl Kearnes registers KOKO Media Inc.; back office approves; Karl invites and approves
//! users. Also automatic approval through the CRM and rejection.

use std::sync::Arc;

use self::async_trait_free::Lookup;
use ciam_core::identities::Mandate;
use ciam_core::invitations::InvitationRequest;
use ciam_core::organizations::{Branding, OrgPolicy};
use ciam_core::registrations::{
    JoinRequestForm, JoinTarget, OrgRegistrationForm, RegistrationDecision, RegistrationError,
    RequestStatus,
};
use ciam_core::secrets::OneTimeCode;
use ciam_core::{DenyReason, Principal};

use crate::support::{World, password};

fn karl_form() -> OrgRegistrationForm {
    OrgRegistrationForm {
        organization_name: "KOKO Media Inc.".into(),
        business_id: Some("FI-1234567".into()),
        email: "karl.kearnes@kokomedia.example".into(),
        given_name: "Karl".into(),
        family_name: "Kearnes".into(),
        phone: Some("+358 40 765 4321".into()),
        password: password(),
    }
}

#[tokio::test]
async fn karl_registers_koko_media_and_back_office_approves() {
    let world = World::new().await;
    let ciam = &world.ciam;
    let registrations = ciam.registrations();

    let registration = registrations
        .register_organization(&Principal::Anonymous, karl_form())
        .await
        .unwrap();
    assert_eq!(registration.status, RequestStatus::AwaitingVerification);

    // A wrong code is refused and counted.
    let wrong = registrations
        .verify_registration(
            registration.id,
            &OneTimeCode::from_presented("000000"),
            Some(&OneTimeCode::from_presented("000000")),
        )
        .await;
    assert!(matches!(wrong, Err(RegistrationError::WrongCode)));

    // Codes went to the email and the phone.
    let email_code = world.mail_code("karl.kearnes@kokomedia.example");
    let phone_code = world.sms_code("+358407654321");
    let verified = registrations
        .verify_registration(registration.id, &email_code, Some(&phone_code))
        .await
        .unwrap();
    assert_eq!(verified.status, RequestStatus::PendingApproval);

    // Karl cannot sign in yet: no identity exists.
    let karl_email =
        ciam_core::contact::EmailAddress::parse("karl.kearnes@kokomedia.example").unwrap();
    assert!(
        ciam.store()
            .identity_by_email(&karl_email)
            .await
            .unwrap()
            .is_none()
    );

    // An account manager cannot decide; back office can.
    let denied = registrations
        .decide_registration(&world.scott, registration.id, RegistrationDecision::Approve)
        .await;
    assert!(matches!(
        denied,
        Err(RegistrationError::Denied(DenyReason::StaffOnly))
    ));
    let queue = registrations
        .pending_registrations(&world.back_office, 10)
        .await
        .unwrap();
    assert_eq!(queue.len(), 1);
    let approved = registrations
        .decide_registration(
            &world.back_office,
            registration.id,
            RegistrationDecision::Approve,
        )
        .await
        .unwrap();
    assert!(matches!(approved.status, RequestStatus::Approved { .. }));
    let koko_id = approved.organization.unwrap();
    let koko = ciam.store().organization(koko_id).await.unwrap().unwrap();
    assert_eq!(koko.name, "KOKO Media Inc.");
    assert!(
        koko.email_domains
            .iter()
            .any(|d| d.as_str() == "kokomedia.example")
    );

    // Deciding twice is refused.
    let again = registrations
        .decide_registration(
            &world.back_office,
            registration.id,
            RegistrationDecision::Approve,
        )
        .await;
    assert!(matches!(again, Err(RegistrationError::WrongState)));

    // Karl is the contact person, with a verified phone.
    let karl = ciam
        .store()
        .identity_by_email(&karl_email)
        .await
        .unwrap()
        .unwrap();
    assert!(karl.phone_verified);
    let membership = ciam
        .store()
        .membership_of(karl.id, koko_id)
        .await
        .unwrap()
        .unwrap();
    assert!(membership.mandates.contains(&Mandate::OrgAdmin));
    assert!(
        world
            .mail
            .latest_to("karl.kearnes@kokomedia.example")
            .unwrap()
            .subject
            .contains("approved")
    );
    let karl_principal = world.principal(karl.id).await;

    // Karl invites a user ...
    world
        .member(
            &karl_principal,
            koko_id,
            InvitationRequest {
                email: "kim.koko@kokomedia.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;

    // ... sets a join code, and approves someone who asks to join with it.
    ciam.organizations()
        .configure(
            &karl_principal,
            koko_id,
            Some("KOKO-2026".into()),
            Branding {
                logo_url: Some("https://kokomedia.example/logo.png".into()),
                primary_color: Some("#ff6600".into()),
            },
            OrgPolicy::default(),
        )
        .await
        .unwrap();
    let request = registrations
        .request_to_join(
            &Principal::Anonymous,
            JoinRequestForm {
                target: JoinTarget::JoinCode("KOKO-2026".into()),
                email: "freelancer@othermail.example".into(),
                given_name: "Fay".into(),
                family_name: "Lancer".into(),
                phone: None,
                password: password(),
            },
        )
        .await
        .unwrap();
    let code = world.mail_code("freelancer@othermail.example");
    registrations
        .verify_join_request(request.id, &code)
        .await
        .unwrap();
    let decided = registrations
        .decide_join_request(&karl_principal, request.id, RegistrationDecision::Approve)
        .await
        .unwrap();
    assert!(decided.identity.is_some());
    let types = world.event_types().await;
    for expected in [
        "org_registration_submitted",
        "org_registration_approved",
        "organization_created",
        "join_request_submitted",
        "join_request_approved",
        "customer_user_registered",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} missing in {types:?}"
        );
    }
}

mod async_trait_free {
    use ciam_core::registrations::{ContractLookup, OrgRegistration};
    use ciam_core::store::StoreError;

    /// A CRM that confirms an active contract for business id FI-1234567.
    pub struct Lookup;

    #[async_trait::async_trait]
    impl ContractLookup for Lookup {
        async fn active_contract_for(
            &self,
            registration: &OrgRegistration,
        ) -> Result<Option<ciam_core::registrations::ContractConfirmation>, StoreError> {
            Ok(
                (registration.business_id.as_deref() == Some("FI-1234567")).then(|| {
                    ciam_core::registrations::ContractConfirmation {
                        crm_account_id: "ACC-KOKO".into(),
                    }
                }),
            )
        }
    }
}

#[tokio::test]
async fn an_active_crm_contract_approves_automatically() {
    let world = World::with_lookup(Some(Arc::new(Lookup))).await;
    let registrations = world.ciam.registrations();
    let registration = registrations
        .register_organization(&Principal::Anonymous, karl_form())
        .await
        .unwrap();
    let email_code = world.mail_code("karl.kearnes@kokomedia.example");
    let phone_code = world.sms_code("+358407654321");
    let verified = registrations
        .verify_registration(registration.id, &email_code, Some(&phone_code))
        .await
        .unwrap();
    assert!(matches!(
        verified.status,
        RequestStatus::Approved {
            by: ciam_core::Actor::System,
            ..
        }
    ));
    let org = world
        .ciam
        .store()
        .organization_by_crm_account("ACC-KOKO")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.name, "KOKO Media Inc.");
}

#[tokio::test]
async fn rejection_keeps_the_reason_and_tells_the_applicant() {
    let world = World::new().await;
    let registrations = world.ciam.registrations();
    let registration = registrations
        .register_organization(&Principal::Anonymous, karl_form())
        .await
        .unwrap();
    let email_code = world.mail_code("karl.kearnes@kokomedia.example");
    let phone_code = world.sms_code("+358407654321");
    registrations
        .verify_registration(registration.id, &email_code, Some(&phone_code))
        .await
        .unwrap();
    let no_reason = registrations
        .decide_registration(
            &world.back_office,
            registration.id,
            RegistrationDecision::Reject {
                reason: "  ".into(),
            },
        )
        .await;
    assert!(matches!(no_reason, Err(RegistrationError::ReasonRequired)));
    let rejected = registrations
        .decide_registration(
            &world.back_office,
            registration.id,
            RegistrationDecision::Reject {
                reason: "We could not confirm the business id".into(),
            },
        )
        .await
        .unwrap();
    let RequestStatus::Rejected { reason, .. } = rejected.status else {
        panic!("not rejected")
    };
    assert_eq!(reason, "We could not confirm the business id");
    let mail = world
        .mail
        .latest_to("karl.kearnes@kokomedia.example")
        .unwrap();
    assert!(mail.text.contains("We could not confirm the business id"));
    assert!(
        world
            .ciam
            .store()
            .organization_by_crm_account("ACC-KOKO")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn registration_input_errors_change_nothing() {
    let world = World::new().await;
    let registrations = world.ciam.registrations();
    let before = world.events().await.len();

    let mut bad_email = karl_form();
    bad_email.email = "karl-at-kokomedia".into();
    assert!(matches!(
        registrations
            .register_organization(&Principal::Anonymous, bad_email)
            .await,
        Err(RegistrationError::Invalid(_))
    ));
    let mut bad_phone = karl_form();
    bad_phone.phone = Some("040 765 4321".into());
    assert!(matches!(
        registrations
            .register_organization(&Principal::Anonymous, bad_phone)
            .await,
        Err(RegistrationError::Invalid(_))
    ));
    let mut short_password = karl_form();
    short_password.password = ciam_core::credentials::Password::new("short");
    assert!(matches!(
        registrations
            .register_organization(&Principal::Anonymous, short_password)
            .await,
        Err(RegistrationError::Password(_))
    ));
    // An email that already has an account.
    let mut existing = karl_form();
    existing.email = "scott.long@smartplan.example".into();
    assert!(matches!(
        registrations
            .register_organization(&Principal::Anonymous, existing)
            .await,
        Err(RegistrationError::AccountExists)
    ));
    // A domain another organization verified.
    world.city_group().await;
    let mut taken = karl_form();
    taken.email = "someone@citygroup.example".into();
    assert!(matches!(
        registrations
            .register_organization(&Principal::Anonymous, taken)
            .await,
        Err(RegistrationError::DomainTaken)
    ));
    assert!(world.sms.messages().is_empty());
    // Only the City Group provisioning events were added.
    let added: Vec<String> = world.event_types().await.into_iter().skip(before).collect();
    assert!(
        added
            .iter()
            .all(|t| t == "organization_created" || t == "contract_changed"),
        "{added:?}"
    );
}

#[tokio::test]
async fn codes_are_exhausted_after_five_wrong_tries_and_resends_are_limited() {
    let world = World::new().await;
    let registrations = world.ciam.registrations();
    let mut form = karl_form();
    form.phone = None;
    let registration = registrations
        .register_organization(&Principal::Anonymous, form)
        .await
        .unwrap();
    let good = world.mail_code("karl.kearnes@kokomedia.example");
    let wrong = OneTimeCode::from_presented("999999");
    let wrong = if wrong.expose() == good.expose() {
        OneTimeCode::from_presented("999998")
    } else {
        wrong
    };
    for _ in 0..4 {
        assert!(matches!(
            registrations
                .verify_registration(registration.id, &wrong, None)
                .await,
            Err(RegistrationError::WrongCode)
        ));
    }
    assert!(matches!(
        registrations
            .verify_registration(registration.id, &wrong, None)
            .await,
        Err(RegistrationError::CodeExhausted)
    ));
    // Even the right code no longer works.
    assert!(matches!(
        registrations
            .verify_registration(registration.id, &good, None)
            .await,
        Err(RegistrationError::CodeExhausted)
    ));
    // A new code works.
    registrations
        .resend_registration_codes(registration.id)
        .await
        .unwrap();
    let fresh = world.mail_code("karl.kearnes@kokomedia.example");
    registrations
        .verify_registration(registration.id, &fresh, None)
        .await
        .unwrap();
    // Codes expire after five minutes.
    let mut form = karl_form();
    form.email = "other@kokomedia2.example".into();
    form.phone = None;
    let second = registrations
        .register_organization(&Principal::Anonymous, form)
        .await
        .unwrap();
    let code = world.mail_code("other@kokomedia2.example");
    world.clock.advance(chrono::Duration::minutes(5));
    assert!(matches!(
        registrations
            .verify_registration(second.id, &code, None)
            .await,
        Err(RegistrationError::CodeExhausted)
    ));
    for _ in 0..3 {
        registrations
            .resend_registration_codes(second.id)
            .await
            .unwrap();
    }
    assert!(matches!(
        registrations.resend_registration_codes(second.id).await,
        Err(RegistrationError::TooManyCodes)
    ));
}
