//! Sign-in: identifier first, home realm discovery, password, SMS code, sessions, and the
//! answers that must not tell accounts apart. Shared helpers for the other `login_*` modules.

use std::sync::Arc;

use chrono::Duration;
use ciam_core::credentials::{HashingWork, Password, SecretKey};
use ciam_core::events::EventKind;
use ciam_core::ids::IdentityId;
use ciam_core::invitations::InvitationRequest;
use ciam_core::login::{
    AttemptToken, FailedStep, FederatedIdp, FederationDirectory, FederationProtocol, LoginError,
    LoginStep, SecondFactor, StaticFederation,
};
use ciam_core::organizations::{Branding, OrgPolicy, Organization};
use ciam_core::secrets::{OneTimeCode, SecretToken};
use ciam_core::sessions::AuthMethod;
use ciam_core::store::Store;
use ciam_core::{Ciam, Policy, Principal, SeededRandom};

use crate::support::{World, password};

pub const JEREMY: &str = "jeremy.mills@citygroup.example";
pub const JEREMY_PHONE: &str = "+358401234567";

/// A façade over the world's store, clock and outboxes with a configured secret key.
pub fn auth_ciam(world: &World, federation: Option<Arc<dyn FederationDirectory>>) -> Ciam {
    auth_ciam_with(world, federation, world.ciam.policy().clone())
}

/// A façade like [`auth_ciam`] with another deployment's secret key.
pub fn auth_ciam_with_key(world: &World, key: [u8; 32]) -> Ciam {
    Ciam::builder()
        .store(world.store.clone())
        .clock(world.clock.clone())
        .random(Arc::new(SeededRandom::new(4343)))
        .secret_key(SecretKey::from_bytes(key))
        .build()
        .unwrap()
}

pub fn auth_ciam_with(
    world: &World,
    federation: Option<Arc<dyn FederationDirectory>>,
    policy: Policy,
) -> Ciam {
    let mut builder = Ciam::builder()
        .store(world.store.clone())
        .clock(world.clock.clone())
        .random(Arc::new(SeededRandom::new(4242)))
        .mailer(world.mail.clone())
        .sms(world.sms.clone())
        .policy(policy)
        .secret_key(SecretKey::from_bytes([7; 32]));
    if let Some(federation) = federation {
        builder = builder.federation(federation);
    }
    builder.build().unwrap()
}

/// City Group with Jeremy Mills (verified phone); MFA required when `require_mfa`.
pub async fn city_with_jeremy(
    world: &World,
    require_mfa: bool,
) -> (Organization, Principal, IdentityId) {
    let city = world.city_group().await;
    let (jeremy, id) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                email: JEREMY.into(),
                given_name: Some("Jeremy".into()),
                family_name: Some("Mills".into()),
                ..InvitationRequest::default()
            },
        )
        .await;
    let profile = world.ciam.profile();
    profile
        .request_phone_change(&jeremy, id, JEREMY_PHONE)
        .await
        .unwrap();
    let code = world.sms_code(JEREMY_PHONE);
    profile
        .confirm_phone_change(&jeremy, id, &code)
        .await
        .unwrap();
    if require_mfa {
        world
            .ciam
            .organizations()
            .configure(
                &world.customer_service,
                city.id,
                None,
                Branding::default(),
                OrgPolicy {
                    require_mfa: true,
                    allow_join_requests: true,
                },
            )
            .await
            .unwrap();
    }
    (city, jeremy, id)
}

#[expect(
    clippy::panic,
    reason = "test helper: an unexpected step is a failed test"
)]
pub fn attempt(step: LoginStep) -> AttemptToken {
    match step {
        LoginStep::Password { attempt }
        | LoginStep::Federated { attempt, .. }
        | LoginStep::LinkAccount { attempt, .. }
        | LoginStep::SecondFactor { attempt, .. }
        | LoginStep::CodeSent { attempt, .. }
        | LoginStep::NewPassword { attempt } => attempt,
        other => panic!("expected a step with an attempt, got {other:?}"),
    }
}

#[expect(
    clippy::panic,
    reason = "test helper: an unexpected step is a failed test"
)]
pub fn signed_in(step: LoginStep) -> Box<ciam_core::sessions::StartedSession> {
    match step {
        LoginStep::SignedIn(started) => started,
        other => panic!("expected to be signed in, got {other:?}"),
    }
}

/// Identifier and password; returns the step after the password.
pub async fn with_password(
    ciam: &Ciam,
    email: &str,
    pw: &Password,
) -> Result<LoginStep, LoginError> {
    let login = ciam.login();
    let first = attempt(login.start(email, Some("198.51.100.7")).await.unwrap());
    login.password(&first, pw).await
}

#[tokio::test]
async fn jeremy_signs_in_with_password_and_sms_otp() {
    let world = World::new().await;
    let (_, _, jeremy_id) = city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();

    let step = login.start(JEREMY, Some("198.51.100.7")).await.unwrap();
    let LoginStep::Password { attempt: first } = step else {
        panic!("identifier first: the password is next, got {step:?}")
    };
    let step = login.password(&first, &password()).await.unwrap();
    let LoginStep::SecondFactor {
        attempt: second,
        options,
        phone_hint,
    } = step
    else {
        panic!("City Group requires MFA, got {step:?}")
    };
    assert_eq!(options, vec![SecondFactor::Sms]);
    assert_eq!(phone_hint.as_deref(), Some("…67"));
    // The password alone gives no session.
    assert!(matches!(
        login
            .verify_sms_code(&second, &OneTimeCode::from_presented("000000"))
            .await,
        Err(LoginError::WrongStep)
    ));

    let sent = attempt(login.send_sms_code(&second).await.unwrap());
    let code = world.sms_code(JEREMY_PHONE);
    let started = signed_in(login.verify_sms_code(&sent, &code).await.unwrap());
    assert_eq!(started.session.identity, jeremy_id);
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Pwd, AuthMethod::Sms]
    );
    assert_eq!(started.session.level(), 2);
    let valid = ciam.sessions().validate(&started.token).await.unwrap();
    assert_eq!(valid.principal.identity(), Some(jeremy_id));

    // The attempt yields one session only, however often its last step is replayed.
    assert!(matches!(
        login.verify_sms_code(&sent, &code).await,
        Err(LoginError::AttemptExpired)
    ));
    assert!(world.events().await.iter().any(|e| matches!(
        &e.kind,
        EventKind::SignedIn { methods, source } if methods == &vec![AuthMethod::Pwd, AuthMethod::Sms]
            && source.as_deref() == Some("198.51.100.7")
    )));
}

#[tokio::test]
async fn without_mfa_the_password_signs_in_and_each_login_rotates_the_session() {
    let world = World::new().await;
    let (_, _, jeremy_id) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let one = signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let two = signed_in(
        with_password(&ciam, "Jeremy.Mills@CityGroup.example", &password())
            .await
            .unwrap(),
    );
    assert_eq!(one.session.identity, jeremy_id);
    assert_eq!(one.session.methods, vec![AuthMethod::Pwd]);
    assert_eq!(one.session.level(), 1);
    assert_ne!(one.token, two.token);
    assert_ne!(one.session.id, two.session.id);
}

#[tokio::test]
async fn unknown_emails_and_wrong_passwords_get_the_same_answer() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let wrong = with_password(&ciam, JEREMY, &Password::new("not the password at all")).await;
    let unknown = with_password(&ciam, "nobody@citygroup.example", &password()).await;
    let malformed = with_password(&ciam, "not an email", &password()).await;
    for result in [&wrong, &unknown, &malformed] {
        let Err(error) = result else {
            panic!("must fail: {result:?}")
        };
        assert!(matches!(error, LoginError::InvalidCredentials));
        assert_eq!(error.to_string(), "the email or password is wrong");
    }
    // Every failure is audited.
    let failures = world
        .events()
        .await
        .into_iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::SignInFailed {
                    step: FailedStep::Password,
                    ..
                }
            )
        })
        .count();
    assert_eq!(failures, 3);

    // A disabled person gets the same answer with the right password.
    let carl = world.customer_service.clone();
    let jeremy_id = world
        .store
        .identity_by_email(&ciam_core::contact::EmailAddress::parse(JEREMY).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    world
        .ciam
        .administration()
        .disable(&carl, jeremy_id, "left the company")
        .await
        .unwrap();
    assert!(matches!(
        with_password(&ciam, JEREMY, &password()).await,
        Err(LoginError::InvalidCredentials)
    ));
}

/// An unknown email costs exactly the password work of a wrong password: one argon2id
/// verification at the current parameters (against the dummy hash, computed once), and
/// nothing else. Counted by the hasher, not timed: without the dummy verification the unknown
/// email costs no verification at all; with a dummy hash of other (cheaper) parameters its
/// verification is not one at the current parameters.
#[tokio::test]
async fn unknown_emails_take_as_long_as_wrong_passwords() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let hasher = ciam.password_hasher();
    let wrong = Password::new("definitely the wrong one");
    let one_verification = HashingWork {
        hashes: 0,
        current_verifications: 1,
        other_verifications: 0,
    };
    // Jeremy's hash has the current parameters: the right password costs one verification.
    let before = hasher.work();
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert_eq!(hasher.work().since(&before), one_verification);
    // The first unknown email also computes the dummy hash, once.
    let before = hasher.work();
    assert!(matches!(
        with_password(&ciam, "nobody@citygroup.example", &wrong).await,
        Err(LoginError::InvalidCredentials)
    ));
    assert_eq!(
        hasher.work().since(&before),
        HashingWork {
            hashes: 1,
            ..one_verification
        }
    );
    for round in 0..3 {
        // Spread the failures over time so that throttling does not answer first.
        world.clock.advance(Duration::hours(25));
        for email in [
            JEREMY,
            "nobody@citygroup.example",
            "Nobody.Else@example.org",
        ] {
            let login = ciam.login();
            let first = attempt(
                login
                    .start(email, Some(&format!("198.51.100.{round}")))
                    .await
                    .unwrap(),
            );
            let before = hasher.work();
            assert!(matches!(
                login.password(&first, &wrong).await,
                Err(LoginError::InvalidCredentials)
            ));
            assert_eq!(
                hasher.work().since(&before),
                one_verification,
                "the password work for {email}"
            );
        }
    }
}

#[tokio::test]
async fn home_realm_discovery_sends_city_group_to_its_own_idp() {
    let world = World::new().await;
    let (city, _, _) = city_with_jeremy(&world, false).await;
    let idp = FederatedIdp {
        provider: "https://login.citygroup.example".into(),
        protocol: FederationProtocol::Oidc,
    };
    let federation = StaticFederation::new().with_crm_account("ACC-1001", idp.clone());
    let ciam = auth_ciam(&world, Some(Arc::new(federation)));
    let step = ciam
        .login()
        .start("anyone@CityGroup.example", None)
        .await
        .unwrap();
    let LoginStep::Federated {
        organization,
        idp: found,
        attempt: federated,
    } = step
    else {
        panic!("expected the IdP, got {step:?}")
    };
    assert_eq!(organization, city.id);
    assert_eq!(found, idp);
    // No password for a federated attempt.
    assert!(matches!(
        ciam.login().password(&federated, &password()).await,
        Err(LoginError::WrongStep)
    ));
    // Other domains (and unknown ones) use the password.
    for email in ["scott.long@smartplan.example", "someone@unknown.example"] {
        assert!(matches!(
            ciam.login().start(email, None).await.unwrap(),
            LoginStep::Password { .. }
        ));
    }
}

#[tokio::test]
async fn attempts_expire_and_cannot_be_forged() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let first = attempt(login.start(JEREMY, None).await.unwrap());
    let mut text = first.expose().to_owned();
    let flipped = if text.ends_with('A') { 'B' } else { 'A' };
    text.pop();
    text.push(flipped);
    assert!(matches!(
        login
            .password(&AttemptToken::from_presented(text), &password())
            .await,
        Err(LoginError::AttemptExpired)
    ));
    // A token sealed by another deployment's key does not open.
    let other = Ciam::builder()
        .store(world.store.clone())
        .clock(world.clock.clone())
        .secret_key(SecretKey::from_bytes([8; 32]))
        .build()
        .unwrap();
    assert!(matches!(
        other.login().password(&first, &password()).await,
        Err(LoginError::AttemptExpired)
    ));
    world.clock.advance(Duration::minutes(10));
    assert!(matches!(
        login.password(&first, &password()).await,
        Err(LoginError::AttemptExpired)
    ));
    assert_eq!(format!("{first:?}"), "AttemptToken(<redacted>)");
    let _ = SecretToken::from_presented("unused");
}
