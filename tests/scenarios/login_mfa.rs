//! Second factors: SMS codes (verified phone only, 5 minutes, 5 tries, limited resends), TOTP
//! (enrollment, ±1 step, no reuse of a step, sealed secret), recovery codes, and step-up.

use chrono::Duration;
use ciam_core::credentials::CredentialKind;
use ciam_core::events::EventKind;
use ciam_core::invitations::InvitationRequest;
use ciam_core::login::{LoginError, LoginStep, RecoveryCode, SecondFactor, TotpEnrollment};
use ciam_core::secrets::OneTimeCode;
use ciam_core::sessions::AuthMethod;
use ciam_core::store::Store;
use ciam_core::{Ciam, Principal};
use totp_rs::TOTP;

use crate::login::{
    JEREMY, JEREMY_PHONE, attempt, auth_ciam, city_with_jeremy, signed_in, with_password,
};
use crate::support::{World, password};

fn code_at(enrollment: &TotpEnrollment, ciam: &Ciam, offset_steps: i64) -> String {
    let totp = TOTP::from_url(&enrollment.otpauth_uri).unwrap();
    let at = ciam.clock().now().timestamp() + offset_steps * 30;
    totp.generate(u64::try_from(at).unwrap())
}

/// A six-digit code that is not `code`.
fn other_code(code: &OneTimeCode) -> OneTimeCode {
    OneTimeCode::from_presented(if code.expose() == "111111" {
        "222222"
    } else {
        "111111"
    })
}

/// Four wrong SMS codes are refused as wrong; the fifth ends the attempt.
async fn five_wrong_sms_codes(
    login: &ciam_core::login::Login<'_>,
    sent: &ciam_core::login::AttemptToken,
    wrong: &OneTimeCode,
) {
    for _ in 0..4 {
        assert!(matches!(
            login.verify_sms_code(sent, wrong).await,
            Err(LoginError::WrongCode)
        ));
    }
    assert!(matches!(
        login.verify_sms_code(sent, wrong).await,
        Err(LoginError::AttemptEnded)
    ));
}

async fn sms_step(ciam: &Ciam) -> ciam_core::login::AttemptToken {
    let step = with_password(ciam, JEREMY, &password()).await.unwrap();
    attempt(step)
}

#[tokio::test]
async fn five_wrong_sms_codes_end_the_attempt() {
    let world = World::new().await;
    city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let second = sms_step(&ciam).await;
    let sent = attempt(login.send_sms_code(&second).await.unwrap());
    let code = world.sms_code(JEREMY_PHONE);
    let wrong = other_code(&code);
    five_wrong_sms_codes(&login, &sent, &wrong).await;
    // Even the right code no longer works in this attempt, nor does a new code.
    assert!(matches!(
        login.verify_sms_code(&sent, &code).await,
        Err(LoginError::AttemptEnded)
    ));
    assert!(matches!(
        login.send_sms_code(&second).await,
        Err(LoginError::AttemptEnded)
    ));
    assert!(
        world
            .events()
            .await
            .iter()
            .any(|e| matches!(e.kind, EventKind::SignInAttemptEnded { wrong_codes: 5 }))
    );
}

#[tokio::test]
async fn wrong_second_factor_codes_count_toward_the_accounts_throttle() {
    let world = World::new().await;
    city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let second = sms_step(&ciam).await;
    let sent = attempt(login.send_sms_code(&second).await.unwrap());
    let code = world.sms_code(JEREMY_PHONE);
    let wrong = other_code(&code);
    // Five wrong codes (the account's free failures) after a right password ...
    for _ in 0..5 {
        assert!(login.verify_sms_code(&sent, &wrong).await.is_err());
    }
    // ... lock the account: even the right password waits now.
    let first = attempt(login.start(JEREMY, Some("203.0.113.77")).await.unwrap());
    assert!(matches!(
        login.password(&first, &password()).await,
        Err(LoginError::Throttled {
            scope: ciam_core::login::ThrottleScope::Account,
            ..
        })
    ));
    let failed = world
        .events()
        .await
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::SignInFailed {
                    step: ciam_core::login::FailedStep::SmsCode,
                    ..
                }
            )
        })
        .count();
    assert_eq!(failed, 5);
    // The lock is temporary (exponential back-off, never permanent).
    world.clock.advance(Duration::minutes(16));
    let first = attempt(login.start(JEREMY, Some("203.0.113.77")).await.unwrap());
    assert!(matches!(
        login.password(&first, &password()).await.unwrap(),
        LoginStep::SecondFactor { .. }
    ));
}

#[tokio::test]
async fn sms_codes_expire_after_five_minutes() {
    let world = World::new().await;
    city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let second = sms_step(&ciam).await;
    let LoginStep::CodeSent {
        attempt: sent,
        expires_at,
        ..
    } = login.send_sms_code(&second).await.unwrap()
    else {
        panic!("a code is sent")
    };
    assert_eq!(expires_at, ciam.clock().now() + Duration::minutes(5));
    let code = world.sms_code(JEREMY_PHONE);
    world.clock.advance(Duration::minutes(5));
    assert!(matches!(
        login.verify_sms_code(&sent, &code).await,
        Err(LoginError::CodeExpired)
    ));
}

#[tokio::test]
async fn resends_are_spaced_limited_and_replace_the_previous_code() {
    let world = World::new().await;
    city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let second = sms_step(&ciam).await;
    let first_sent = attempt(login.send_sms_code(&second).await.unwrap());
    let first_code = world.sms_code(JEREMY_PHONE);
    assert!(matches!(
        login.send_sms_code(&second).await,
        Err(LoginError::ResendTooSoon)
    ));
    let mut latest = first_sent.clone();
    for _ in 0..3 {
        world.clock.advance(Duration::seconds(30));
        latest = attempt(login.send_sms_code(&second).await.unwrap());
    }
    world.clock.advance(Duration::seconds(30));
    assert!(matches!(
        login.send_sms_code(&second).await,
        Err(LoginError::ResendLimit)
    ));
    let sms_count = world
        .sms
        .messages()
        .iter()
        .filter(|m| m.message.to.as_str() == JEREMY_PHONE)
        .count();
    assert_eq!(
        sms_count,
        1 + 4,
        "the phone verification code and four sign-in codes"
    );
    // The first code no longer counts once a newer one was sent.
    assert!(matches!(
        login.verify_sms_code(&first_sent, &first_code).await,
        Err(LoginError::CodeExpired)
    ));
    let latest_code = world.sms_code(JEREMY_PHONE);
    signed_in(login.verify_sms_code(&latest, &latest_code).await.unwrap());
}

#[tokio::test]
async fn sms_goes_only_to_a_verified_phone() {
    let world = World::new().await;
    let (city, _, _) = city_with_jeremy(&world, true).await;
    // Ann has a phone number waiting for verification: no SMS option, and MFA is required.
    let (ann, ann_id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: "ann.lee@citygroup.example".into(),
                ..InvitationRequest::default()
            },
        )
        .await;
    world
        .ciam
        .profile()
        .request_phone_change(&ann, ann_id, "+358409998887")
        .await
        .unwrap();
    let ciam = auth_ciam(&world, None);
    // No SMS to the unverified number: the only way on is setting up an authenticator app.
    assert!(matches!(
        with_password(&ciam, "ann.lee@citygroup.example", &password()).await,
        Ok(LoginStep::EnrolSecondFactor { .. })
    ));
    assert_eq!(
        world
            .sms
            .messages()
            .iter()
            .filter(|m| m.message.to.as_str() == "+358409998887")
            .count(),
        1,
        "only the verification code"
    );
}

#[tokio::test]
async fn totp_enrollment_login_step_reuse_and_recovery_codes() {
    let world = World::new().await;
    let (_, jeremy, jeremy_id) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();

    // Someone else cannot enroll for Jeremy.
    assert!(login.enroll_totp(&world.scott, jeremy_id).await.is_err());
    // Without a configured key, TOTP cannot be set up.
    assert!(matches!(
        world.ciam.login().enroll_totp(&jeremy, jeremy_id).await,
        Err(LoginError::NoSecretKey)
    ));

    let enrollment = login.enroll_totp(&jeremy, jeremy_id).await.unwrap();
    assert!(enrollment.otpauth_uri.starts_with("otpauth://totp/"));
    assert!(enrollment.otpauth_uri.contains("issuer=MySmartPlan"));
    assert!(enrollment.qr_svg.contains("<svg"));
    assert_eq!(format!("{enrollment:?}"), "TotpEnrollment(<redacted>)");
    // Not effective before confirmation: the password alone still signs in.
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert!(matches!(
        login.confirm_totp(&jeremy, jeremy_id, "000000").await,
        Err(LoginError::WrongCode)
    ));
    let codes = login
        .confirm_totp(&jeremy, jeremy_id, &code_at(&enrollment, &ciam, 0))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);

    // The secret is stored sealed, recovery codes hashed.
    let credentials = world
        .store
        .credentials_of_identity(jeremy_id)
        .await
        .unwrap();
    let stored = serde_json::to_string(&credentials).unwrap();
    assert!(!stored.contains(&enrollment.secret_base32));
    assert!(!stored.contains(codes[0].expose()));
    assert!(credentials.iter().any(|c| matches!(
        &c.kind,
        CredentialKind::Totp {
            confirmed_at: Some(_),
            ..
        }
    )));

    // The step used for confirmation cannot be used again, even in the next 30 s window.
    let step = with_password(&ciam, JEREMY, &password()).await.unwrap();
    let LoginStep::SecondFactor {
        attempt: second,
        options,
        ..
    } = step
    else {
        panic!("an enrolled app makes TOTP required, got {step:?}")
    };
    assert_eq!(
        options,
        vec![
            SecondFactor::Sms,
            SecondFactor::Totp,
            SecondFactor::RecoveryCode
        ]
    );
    assert!(matches!(
        login
            .verify_totp(&second, &code_at(&enrollment, &ciam, 0))
            .await,
        Err(LoginError::WrongCode)
    ));
    // The next step's code (clock drift of one step) works once.
    let next = code_at(&enrollment, &ciam, 1);
    let started = signed_in(login.verify_totp(&second, &next).await.unwrap());
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Pwd, AuthMethod::Otp]
    );
    let again = attempt(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert!(matches!(
        login.verify_totp(&again, &next).await,
        Err(LoginError::WrongCode)
    ));
    // Two steps away is refused.
    world.clock.advance(Duration::seconds(30));
    assert!(matches!(
        login
            .verify_totp(&again, &code_at(&enrollment, &ciam, 2))
            .await,
        Err(LoginError::WrongCode)
    ));
    // One step late still works (a step not used before).
    world.clock.advance(Duration::seconds(60));
    signed_in(
        login
            .verify_totp(&again, &code_at(&enrollment, &ciam, -1))
            .await
            .unwrap(),
    );

    // A recovery code works once.
    let third = attempt(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let presented = RecoveryCode::from_presented(&codes[3].expose().to_uppercase());
    signed_in(
        login
            .verify_recovery_code(&third, &presented)
            .await
            .unwrap(),
    );
    let fourth = attempt(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert!(matches!(
        login.verify_recovery_code(&fourth, &presented).await,
        Err(LoginError::WrongCode)
    ));
    signed_in(
        login
            .verify_recovery_code(&fourth, &codes[4])
            .await
            .unwrap(),
    );
    assert!(
        world
            .events()
            .await
            .iter()
            .any(|e| matches!(e.kind, EventKind::RecoveryCodeUsed { remaining: 8 }))
    );
    assert!(world.events().await.iter().any(|e| matches!(
        e.kind,
        EventKind::SecondFactorEnrolled {
            method: AuthMethod::Otp,
            recovery_codes: 10
        }
    )));

    // Renewed recovery codes replace the old ones: an old unused code stops working, a new
    // one works. Only the person themselves may renew them.
    assert!(matches!(
        login.renew_recovery_codes(&world.scott, jeremy_id).await,
        Err(LoginError::Denied(_))
    ));
    let renewed = login
        .renew_recovery_codes(&jeremy, jeremy_id)
        .await
        .unwrap();
    assert_eq!(renewed.len(), 10);
    let fifth = attempt(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert!(matches!(
        login.verify_recovery_code(&fifth, &codes[5]).await,
        Err(LoginError::WrongCode)
    ));
    signed_in(
        login
            .verify_recovery_code(&fifth, &renewed[0])
            .await
            .unwrap(),
    );
    assert!(
        world
            .events()
            .await
            .iter()
            .any(|e| matches!(e.kind, EventKind::RecoveryCodesRenewed { count: 10 }))
    );
}

#[tokio::test]
async fn step_up_replaces_the_session() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let first = signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert_eq!(first.session.level(), 1);
    let second = attempt(login.step_up(&first.token, None).await.unwrap());
    let sent = attempt(login.send_sms_code(&second).await.unwrap());
    let stepped = signed_in(
        login
            .verify_sms_code(&sent, &world.sms_code(JEREMY_PHONE))
            .await
            .unwrap(),
    );
    assert_eq!(stepped.session.level(), 2);
    assert_eq!(
        stepped.session.methods,
        vec![AuthMethod::Pwd, AuthMethod::Sms]
    );
    assert_ne!(stepped.token, first.token);
    assert!(ciam.sessions().validate(&first.token).await.is_err());
    assert!(ciam.sessions().validate(&stepped.token).await.is_ok());
    let _ = Principal::System;
}

#[tokio::test]
async fn wrong_step_up_codes_are_throttled_like_the_sign_ins_second_factor() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let source = Some("203.0.113.80");
    let first = signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let second = attempt(login.step_up(&first.token, source).await.unwrap());
    let sent = attempt(login.send_sms_code(&second).await.unwrap());
    let code = world.sms_code(JEREMY_PHONE);
    let wrong = other_code(&code);
    // Five tries per attempt, as at sign-in; each counts for the account and the source.
    five_wrong_sms_codes(&login, &sent, &wrong).await;
    let failed = world
        .events()
        .await
        .iter()
        .filter(|e| {
            matches!(
                &e.kind,
                EventKind::SignInFailed {
                    step: ciam_core::login::FailedStep::SmsCode,
                    source: Some(s),
                } if s == "203.0.113.80"
            )
        })
        .count();
    assert_eq!(failed, 5);
    // The account is locked now: no new step-up (with more tries) until the wait is over.
    assert!(matches!(
        login.step_up(&first.token, source).await,
        Err(LoginError::Throttled {
            scope: ciam_core::login::ThrottleScope::Account,
            ..
        })
    ));
    assert!(matches!(
        login.step_up(&first.token, None).await,
        Err(LoginError::Throttled { .. })
    ));
    // The session itself is untouched, and the lock is temporary.
    assert!(ciam.sessions().validate(&first.token).await.is_ok());
    world.clock.advance(Duration::seconds(2));
    let again = attempt(login.step_up(&first.token, source).await.unwrap());
    let sent = attempt(login.send_sms_code(&again).await.unwrap());
    let stepped = signed_in(
        login
            .verify_sms_code(&sent, &world.sms_code(JEREMY_PHONE))
            .await
            .unwrap(),
    );
    assert_eq!(stepped.session.level(), 2);
}

#[tokio::test]
async fn a_phone_set_up_inside_a_sign_in_is_verified_by_its_code_and_completes_it() {
    let world = World::new().await;
    let (_, jeremy, jeremy_id) = city_with_jeremy(&world, true).await;
    world
        .ciam
        .profile()
        .remove_phone(&jeremy, jeremy_id)
        .await
        .unwrap();
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let LoginStep::EnrolSecondFactor { attempt: enrol } =
        with_password(&ciam, JEREMY, &password()).await.unwrap()
    else {
        panic!("expected the enrolment step")
    };
    // Nothing to confirm before a code was sent; a malformed number sends nothing.
    assert!(matches!(
        login
            .enrolment_confirm_phone(&enrol, &OneTimeCode::from_presented("123456"))
            .await,
        Err(LoginError::WrongStep)
    ));
    let sent_before = world.sms.messages().len();
    assert!(matches!(
        login.enrolment_phone(&enrol, "040 765 4321").await,
        Err(LoginError::Invalid(_))
    ));
    assert_eq!(world.sms.messages().len(), sent_before);

    let phone = "+358407654321";
    let sent = attempt(
        login
            .enrolment_phone(&enrol, "+358 40 765 4321")
            .await
            .unwrap(),
    );
    let code = world.sms_code(phone);
    assert!(matches!(
        login
            .enrolment_confirm_phone(&sent, &OneTimeCode::from_presented("000000"))
            .await,
        Err(LoginError::WrongCode)
    ));
    let person = world.store.identity(jeremy_id).await.unwrap().unwrap();
    assert!(person.phone.is_none(), "nothing is stored before the code");
    let started = signed_in(login.enrolment_confirm_phone(&sent, &code).await.unwrap());
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Pwd, AuthMethod::Sms]
    );
    let person = world.store.identity(jeremy_id).await.unwrap().unwrap();
    assert_eq!(person.phone.map(|p| p.to_string()).as_deref(), Some(phone));
    assert!(person.phone_verified);
    // One session per attempt.
    assert!(matches!(
        login.enrolment_confirm_phone(&sent, &code).await,
        Err(LoginError::AttemptExpired)
    ));
    let events = world.events().await;
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::SecondFactorEnrolled {
            method: AuthMethod::Sms,
            ..
        }
    )));
    // From now on the phone is the SMS step.
    let LoginStep::SecondFactor { options, .. } =
        with_password(&ciam, JEREMY, &password()).await.unwrap()
    else {
        panic!("expected the second factor")
    };
    assert_eq!(options, vec![SecondFactor::Sms]);
}

/// The TOTP credentials stored for `identity`: (confirmed or not) per credential.
async fn stored_totps(world: &World, identity: ciam_core::ids::IdentityId) -> Vec<bool> {
    world
        .store
        .credentials_of_identity(identity)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| match c.kind {
            CredentialKind::Totp { confirmed_at, .. } => Some(confirmed_at.is_some()),
            _ => None,
        })
        .collect()
}

/// Jeremy, in City Group that requires MFA, without a phone: his sign-in stops at the
/// enrolment step; its attempt.
#[expect(
    clippy::panic,
    reason = "test helper: an unexpected step is a failed test"
)]
async fn jeremy_at_enrolment(
    world: &World,
    ciam: &Ciam,
) -> (
    Principal,
    ciam_core::ids::IdentityId,
    ciam_core::login::AttemptToken,
) {
    let (_, jeremy, jeremy_id) = city_with_jeremy(world, true).await;
    world
        .ciam
        .profile()
        .remove_phone(&jeremy, jeremy_id)
        .await
        .unwrap();
    let LoginStep::EnrolSecondFactor { attempt: enrol } =
        with_password(ciam, JEREMY, &password()).await.unwrap()
    else {
        panic!("expected the enrolment step")
    };
    (jeremy, jeremy_id, enrol)
}

#[tokio::test]
async fn an_app_opened_inside_a_sign_in_then_left_for_the_phone_leaves_no_secret_behind() {
    let world = World::new().await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let (jeremy, jeremy_id, enrol) = jeremy_at_enrolment(&world, &ciam).await;

    // Opening the app's page stores nothing: the secret travels in the attempt.
    let (app, with_app) = login.enrolment_totp(&enrol).await.unwrap();
    assert_ne!(with_app, enrol);
    assert_eq!(stored_totps(&world, jeremy_id).await, Vec::<bool>::new());
    // An app's setup started on the account page (another tab) and never confirmed.
    login.enroll_totp(&jeremy, jeremy_id).await.unwrap();
    assert_eq!(stored_totps(&world, jeremy_id).await, vec![false]);

    // The person chooses the phone instead.
    let phone = "+358407654321";
    let sent = attempt(login.enrolment_phone(&with_app, phone).await.unwrap());
    let code = world.sms_code(phone);
    // Back to the app's page and again to the phone: the code sent still counts.
    let (_, back) = login.enrolment_totp(&sent).await.unwrap();
    assert_eq!(stored_totps(&world, jeremy_id).await, vec![false]);
    signed_in(login.enrolment_confirm_phone(&back, &code).await.unwrap());
    assert_eq!(
        stored_totps(&world, jeremy_id).await,
        Vec::<bool>::new(),
        "no unconfirmed secret remains, neither the attempt's nor the account page's"
    );

    // The attempt's app can no longer be set up with it afterwards.
    assert!(matches!(
        login
            .enrolment_confirm(&with_app, &code_at(&app, &ciam, 0))
            .await,
        Err(LoginError::AttemptExpired)
    ));
    assert_eq!(stored_totps(&world, jeremy_id).await, Vec::<bool>::new());
}

#[tokio::test]
async fn an_app_set_up_inside_a_sign_in_is_stored_only_when_its_first_code_comes_back() {
    let world = World::new().await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let (jeremy, jeremy_id, enrol) = jeremy_at_enrolment(&world, &ciam).await;

    // Without the app's page there is nothing to confirm.
    assert!(matches!(
        login.enrolment_confirm(&enrol, "000000").await,
        Err(LoginError::NoPendingEnrollment)
    ));
    let (first, _) = login.enrolment_totp(&enrol).await.unwrap();
    // Opening the page again replaces the secret: only the newest token's app counts.
    let (app, with_app) = login.enrolment_totp(&enrol).await.unwrap();
    assert_ne!(first.secret_base32, app.secret_base32);
    assert!(matches!(
        login.enrolment_confirm(&with_app, "000000").await,
        Err(LoginError::WrongCode)
    ));
    assert_eq!(stored_totps(&world, jeremy_id).await, Vec::<bool>::new());
    // An app's setup started on the account page and never confirmed.
    login.enroll_totp(&jeremy, jeremy_id).await.unwrap();
    assert_eq!(stored_totps(&world, jeremy_id).await, vec![false]);

    let (codes, step) = login
        .enrolment_confirm(&with_app, &code_at(&app, &ciam, 0))
        .await
        .unwrap();
    assert_eq!(codes.len(), 10);
    let started = signed_in(step);
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Pwd, AuthMethod::Otp]
    );
    // One confirmed app, sealed; the account page's unconfirmed secret is gone.
    assert_eq!(stored_totps(&world, jeremy_id).await, vec![true]);
    let stored = serde_json::to_string(
        &world
            .store
            .credentials_of_identity(jeremy_id)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(!stored.contains(&app.secret_base32));
    // A replay of the attempt sets nothing up again (the recovery codes stay those shown).
    assert!(matches!(
        login
            .enrolment_confirm(&with_app, &code_at(&app, &ciam, 1))
            .await,
        Err(LoginError::AttemptExpired)
    ));
    let after_replay = serde_json::to_string(
        &world
            .store
            .credentials_of_identity(jeremy_id)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(after_replay, stored);
    // From now on the app is the second step.
    let LoginStep::SecondFactor { attempt: next, .. } =
        with_password(&ciam, JEREMY, &password()).await.unwrap()
    else {
        panic!("expected the second factor")
    };
    world.clock.advance(Duration::seconds(90));
    signed_in(
        login
            .verify_totp(&next, &code_at(&app, &ciam, 0))
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn accepting_an_invitation_with_a_password_is_the_first_factor_of_a_sign_in() {
    let world = World::new().await;
    let (city, _, _) = city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let email = "ann.example@citygroup.example";
    ciam.invitations()
        .invite(
            &world.scott,
            city.id,
            InvitationRequest {
                email: email.into(),
                ..InvitationRequest::default()
            },
        )
        .await
        .unwrap();
    let (accepted, step) = ciam
        .login()
        .accept_invitation(
            &world.invitation_token(email),
            ciam_core::invitations::Acceptance {
                given_name: Some("Ann".into()),
                family_name: Some("Example".into()),
                password: Some(password()),
            },
            Some("198.51.100.9"),
        )
        .await
        .unwrap();
    assert!(
        matches!(step, Some(LoginStep::EnrolSecondFactor { .. })),
        "{step:?}"
    );
    assert!(
        world
            .store
            .sessions_of_identity(accepted.identity.id)
            .await
            .unwrap()
            .is_empty(),
        "no session before the second factor"
    );
}
