//! Passwords at sign-in: throttling, rehash and import upgrade, change, reset by link, and the
//! administrator who can start a reset but never set a password.

use chrono::Duration;
use ciam_core::credentials::{
    Credential, CredentialKind, Password, PasswordError, PasswordHashString,
};
use ciam_core::delivery::first_link;
use ciam_core::events::EventKind;
use ciam_core::ids::CredentialId;
use ciam_core::login::{LoginError, LoginStep, ThrottleScope};
use ciam_core::store::{ChangeSet, Store};
use ciam_core::{DenyReason, SeededRandom};

use crate::login::{
    JEREMY, JEREMY_PHONE, attempt, auth_ciam, city_with_jeremy, signed_in, with_password,
};
use crate::support::{World, password};

#[tokio::test]
async fn repeated_failures_back_off_exponentially_but_never_for_good() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let wrong = Password::new("guessing the password");
    for _ in 0..5 {
        assert!(matches!(
            with_password(&ciam, JEREMY, &wrong).await,
            Err(LoginError::InvalidCredentials)
        ));
    }
    // Locked: even the right password waits (1 s after the fifth failure).
    assert!(matches!(
        with_password(&ciam, JEREMY, &password()).await,
        Err(LoginError::Throttled {
            scope: ThrottleScope::Account,
            ..
        })
    ));
    world.clock.advance(Duration::seconds(1));
    assert!(matches!(
        with_password(&ciam, JEREMY, &wrong).await,
        Err(LoginError::InvalidCredentials)
    ));
    // The sixth failure doubles the wait.
    world.clock.advance(Duration::seconds(1));
    assert!(matches!(
        with_password(&ciam, JEREMY, &password()).await,
        Err(LoginError::Throttled { .. })
    ));
    world.clock.advance(Duration::seconds(1));
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let events = world.events().await;
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::SignInLocked {
            scope: ThrottleScope::Account,
            failures: 6,
            ..
        }
    )));
    // Success clears the account's failures.
    assert!(matches!(
        with_password(&ciam, JEREMY, &wrong).await,
        Err(LoginError::InvalidCredentials)
    ));
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());

    // However many failures, the wait is capped at 15 minutes.
    for _ in 0..40 {
        world.clock.advance(Duration::minutes(16));
        let _ = with_password(&ciam, JEREMY, &wrong).await;
    }
    world.clock.advance(Duration::minutes(15));
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
}

#[tokio::test]
async fn a_source_guessing_at_many_accounts_is_throttled() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    for n in 0..20 {
        let first = attempt(
            login
                .start(&format!("user{n}@citygroup.example"), Some("203.0.113.9"))
                .await
                .unwrap(),
        );
        assert!(matches!(
            login.password(&first, &password()).await,
            Err(LoginError::InvalidCredentials)
        ));
    }
    let first = attempt(login.start(JEREMY, Some("203.0.113.9")).await.unwrap());
    assert!(matches!(
        login.password(&first, &password()).await,
        Err(LoginError::Throttled {
            scope: ThrottleScope::Source,
            ..
        })
    ));
    // Jeremy from his own address is not affected.
    let first = attempt(login.start(JEREMY, Some("198.51.100.7")).await.unwrap());
    signed_in(login.password(&first, &password()).await.unwrap());
    assert!(world.events().await.iter().any(|e| matches!(
        e.kind,
        EventKind::SignInLocked {
            scope: ThrottleScope::Source,
            ..
        }
    )));
}

async fn replace_password_hash(world: &World, email: &str, hash: &str) -> CredentialId {
    let identity = world
        .store
        .identity_by_email(&ciam_core::contact::EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    let credential = world
        .store
        .credentials_of_identity(identity.id)
        .await
        .unwrap()
        .into_iter()
        .find(|c| matches!(c.kind, CredentialKind::Password { .. }))
        .unwrap();
    let mut changes = ChangeSet::new();
    changes.put(Credential {
        kind: CredentialKind::Password {
            hash: PasswordHashString::parse(hash).unwrap(),
        },
        ..credential.clone()
    });
    world.store.commit(changes).await.unwrap();
    credential.id
}

async fn stored_hash(world: &World, id: CredentialId, email: &str) -> String {
    let identity = world
        .store
        .identity_by_email(&ciam_core::contact::EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap();
    world
        .store
        .credentials_of_identity(identity.id)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| match c.kind {
            CredentialKind::Password { hash } => hash.as_str().to_owned(),
            _ => String::new(),
        })
        .unwrap()
}

#[tokio::test]
async fn hashes_are_upgraded_at_sign_in() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    // An imported bcrypt hash (from the old portal).
    let bcrypt_hash = world_bcrypt(&password());
    let id = replace_password_hash(&world, JEREMY, &bcrypt_hash).await;
    assert!(matches!(
        with_password(&ciam, JEREMY, &Password::new("not it at all")).await,
        Err(LoginError::InvalidCredentials)
    ));
    assert_eq!(
        stored_hash(&world, id, JEREMY).await,
        bcrypt_hash,
        "no upgrade on failure"
    );
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let upgraded = stored_hash(&world, id, JEREMY).await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{upgraded}"
    );

    // Older argon2id parameters are rehashed with the current ones.
    let older =
        ciam_core::credentials::PasswordHasher::new(ciam_core::credentials::PasswordParams {
            memory_kib: 32,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap()
        .hash(&password(), &SeededRandom::new(1))
        .await
        .unwrap();
    replace_password_hash(&world, JEREMY, older.as_str()).await;
    signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    assert!(
        stored_hash(&world, id, JEREMY)
            .await
            .contains("m=64,t=1,p=1")
    );
}

fn world_bcrypt(password: &Password) -> String {
    // A bcrypt hash (cost 4), as an import from the old portal would bring.
    bcrypt::hash(password.expose(), 4).unwrap()
}

#[tokio::test]
async fn password_change_needs_the_current_one_and_ends_other_sessions() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let here = signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let elsewhere = signed_in(with_password(&ciam, JEREMY, &password()).await.unwrap());
    let new = Password::new("a brand new passphrase 2026");
    assert!(matches!(
        login
            .change_password(&here.token, &Password::new("wrong current"), &new)
            .await,
        Err(LoginError::InvalidCredentials)
    ));
    assert!(matches!(
        login
            .change_password(&here.token, &password(), &Password::new("password123"))
            .await,
        Err(LoginError::Password(PasswordError::TooCommon))
    ));
    assert_eq!(
        login
            .change_password(&here.token, &password(), &new)
            .await
            .unwrap(),
        1
    );
    assert!(ciam.sessions().validate(&here.token).await.is_ok());
    assert!(ciam.sessions().validate(&elsewhere.token).await.is_err());
    assert!(matches!(
        with_password(&ciam, JEREMY, &password()).await,
        Err(LoginError::InvalidCredentials)
    ));
    signed_in(with_password(&ciam, JEREMY, &new).await.unwrap());
    assert!(
        world
            .events()
            .await
            .iter()
            .any(|e| matches!(e.kind, EventKind::PasswordChanged))
    );
}

fn reset_token(world: &World, email: &str) -> String {
    let mail = world.mail.latest_to(email).unwrap();
    assert!(mail.subject.contains("Reset"));
    let link = first_link(&mail.text).unwrap();
    link.split("token=").nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn reset_by_link_is_single_use_expires_and_keeps_the_second_factor() {
    let world = World::new().await;
    city_with_jeremy(&world, true).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    let before = signed_in({
        let second = attempt(with_password(&ciam, JEREMY, &password()).await.unwrap());
        let sent = attempt(login.send_sms_code(&second).await.unwrap());
        login
            .verify_sms_code(&sent, &world.sms_code(JEREMY_PHONE))
            .await
            .unwrap()
    });

    // Unknown addresses get the same (empty) answer and no mail.
    let mails = world.mail.len();
    login
        .request_password_reset("nobody@citygroup.example")
        .await
        .unwrap();
    assert_eq!(world.mail.len(), mails);

    login.request_password_reset(JEREMY).await.unwrap();
    let token = reset_token(&world, JEREMY);
    // The link does not bypass the second factor.
    let step = login.begin_reset(&token).await.unwrap();
    let LoginStep::SecondFactor {
        attempt: second, ..
    } = step
    else {
        panic!("MFA is required, got {step:?}")
    };
    assert!(matches!(
        login
            .complete_reset(&second, &Password::new("a brand new passphrase 2026"))
            .await,
        Err(LoginError::WrongStep)
    ));
    let sent = attempt(login.send_sms_code(&second).await.unwrap());
    let step = login
        .verify_sms_code(&sent, &world.sms_code(JEREMY_PHONE))
        .await
        .unwrap();
    let LoginStep::NewPassword { attempt: choose } = step else {
        panic!("then the new password, got {step:?}")
    };
    assert!(matches!(
        login
            .complete_reset(&choose, &Password::new("12345678"))
            .await,
        Err(LoginError::Password(PasswordError::TooCommon))
    ));
    let new = Password::new("a brand new passphrase 2026");
    login.complete_reset(&choose, &new).await.unwrap();
    // Every session ended; the link is used up.
    assert!(ciam.sessions().validate(&before.token).await.is_err());
    assert!(matches!(
        login.complete_reset(&choose, &new).await,
        Err(LoginError::InvalidResetLink)
    ));
    assert!(matches!(
        login.begin_reset(&token).await,
        Err(LoginError::InvalidResetLink)
    ));
    // A new link expires after an hour.
    login.request_password_reset(JEREMY).await.unwrap();
    let later = reset_token(&world, JEREMY);
    world.clock.advance(Duration::minutes(60));
    assert!(matches!(
        login.begin_reset(&later).await,
        Err(LoginError::InvalidResetLink)
    ));
    // A forged link is refused.
    assert!(matches!(
        login.begin_reset("not-a-link").await,
        Err(LoginError::InvalidResetLink)
    ));
}

#[tokio::test]
async fn reset_without_second_factor_goes_straight_to_the_new_password() {
    let world = World::new().await;
    city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    login.request_password_reset(JEREMY).await.unwrap();
    let token = reset_token(&world, JEREMY);
    let choose = attempt(login.begin_reset(&token).await.unwrap());
    let new = Password::new("another fresh passphrase");
    login.complete_reset(&choose, &new).await.unwrap();
    signed_in(with_password(&ciam, JEREMY, &new).await.unwrap());
    // Reset mails to one address are limited per hour.
    for _ in 0..5 {
        login.request_password_reset(JEREMY).await.unwrap();
    }
    let resets = world
        .mail
        .messages()
        .iter()
        .filter(|m| m.message.subject.contains("Reset") && m.message.to.as_str() == JEREMY)
        .count();
    assert_eq!(resets, 3);
}

#[tokio::test]
async fn an_admin_can_start_a_reset_but_not_set_the_password() {
    let world = World::new().await;
    let (_, jeremy, jeremy_id) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    let login = ciam.login();
    // Another customer's contact person cannot.
    let other = world
        .ciam
        .organizations()
        .upsert(
            &world.scott,
            ciam_core::organizations::OrganizationUpsert {
                crm_account_id: "ACC-9".into(),
                name: "Other Ltd".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["other.example".into()],
                suspended: false,
            },
        )
        .await
        .unwrap();
    let (stranger, _) = world
        .member(
            &world.scott,
            other.id,
            ciam_core::invitations::InvitationRequest {
                email: "boss@other.example".into(),
                mandates: std::collections::BTreeSet::from([
                    ciam_core::identities::Mandate::OrgAdmin,
                ]),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(
        login.start_reset_for(&stranger, jeremy_id).await,
        Err(LoginError::Denied(DenyReason::OutsideMandate))
    ));
    // Jeremy himself (no mandate) cannot start one for others, and customer service can.
    let mails = world.mail.len();
    login
        .start_reset_for(&world.customer_service, jeremy_id)
        .await
        .unwrap();
    assert_eq!(world.mail.len(), mails + 1);
    let token = reset_token(&world, JEREMY);
    // The reset still goes through Jeremy's mailbox: the admin only caused the mail.
    let choose = attempt(login.begin_reset(&token).await.unwrap());
    login
        .complete_reset(&choose, &Password::new("a quiet new passphrase"))
        .await
        .unwrap();
    assert!(
        world
            .events()
            .await
            .iter()
            .any(|e| matches!(e.kind, EventKind::PasswordResetRequested { by_admin: true }))
    );
    let _ = jeremy;
}
