//! MySmartPlan: `/account` and its pages (name, email, phone, password, authenticator app,
//! sessions).

use axum::http::StatusCode;
use ciam_core::contact::EmailAddress;
use ciam_core::credentials::Password;
use ciam_core::delivery::first_code;
use ciam_core::identities::Identity;
use smartplan::demo::{DEMO_PASSWORD, JEREMY, JeremyAs, SCOTT, SeedOptions};

use crate::support::{self, Backend, Client, Options, TestApp};

const NEW_PASSWORD: &str = "copper-meadow-quartz";

async fn jeremy(app: &TestApp) -> Identity {
    app.state
        .store
        .identity(app.cast().jeremy.unwrap())
        .await
        .unwrap()
        .unwrap()
}

async fn signed_in(app: &TestApp) -> Client {
    let mut client = app.client();
    client.sign_in_as(JEREMY).await;
    client
}

#[tokio::test]
async fn every_page_needs_a_sign_in() {
    let app = support::app_default().await;
    let mut client = app.client();
    for path in [
        "/account",
        "/account/email",
        "/account/phone",
        "/account/password",
        "/account/mfa",
        "/account/sessions",
    ] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        let location = response.location().unwrap();
        assert!(
            location.starts_with("/signin?next=%2Faccount"),
            "{path}: {location}"
        );
    }
    let response = client
        .post_form(
            "/account/name",
            &[("given_name", "X"), ("family_name", "Y")],
        )
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(jeremy(&app).await.name.given, "Jeremy");
}

#[tokio::test]
async fn the_overview_shows_the_profile_organizations_roles_and_services() {
    let app = support::app_default().await;
    let mut client = signed_in(&app).await;
    let page = client.get("/account").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("MySmartPlan"));
    assert!(page.body.contains(JEREMY));
    assert!(page.body.contains("value=\"Jeremy\""));
    assert!(page.body.contains("City Group, Inc."));
    assert!(page.body.contains("Energy manager"));
    assert!(page.body.contains("Contact person"));
    // No SAML service provider is registered yet.
    assert!(page.body.contains("No service is open to you yet"));

    // With SmartPlan Application registered, the overview links to its IdP-initiated launch.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let application = smartplan::cli::demo::smartplan_application(&app.state, address)
        .await
        .unwrap();
    let entity_id: String =
        url::form_urlencoded::byte_serialize(application.entity_id().as_bytes()).collect();
    let page = client.get("/account").await;
    assert!(page.body.contains("Open SmartPlan Application"));
    assert!(
        page.body
            .contains(&format!("href=\"/saml/launch?sp={entity_id}\"")),
        "{}",
        page.body
    );
    // Scott has no role in SmartPlan Application: no link.
    let mut scott = app.client();
    scott.sign_in_as(SCOTT).await;
    assert!(
        !scott
            .get("/account")
            .await
            .body
            .contains("Open SmartPlan Application")
    );
}

async fn name_changes(backend: Backend) {
    let app = support::build(Options {
        backend,
        ..Options::default()
    })
    .await;
    let mut client = signed_in(&app).await;
    let response = client
        .post_form(
            "/account/name",
            &[("given_name", " Jeremiah "), ("family_name", "Mills-Brown")],
        )
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.location(), Some("/account"));
    let person = jeremy(&app).await;
    assert_eq!(person.name.given, "Jeremiah");
    assert_eq!(person.name.family, "Mills-Brown");
    assert!(
        client
            .get("/account")
            .await
            .body
            .contains("Your name is saved.")
    );

    let bad = client
        .post_form(
            "/account/name",
            &[("given_name", "Jeremy"), ("family_name", "")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("enter your family name"));
    assert!(
        bad.body.contains("value=\"Jeremy\""),
        "what was typed is kept"
    );
    assert_eq!(jeremy(&app).await.name.family, "Mills-Brown");

    let forged = client
        .post_form_raw(
            "/account/name",
            &[("given_name", "Evil"), ("family_name", "Name")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(jeremy(&app).await.name.given, "Jeremiah");
}

#[tokio::test]
async fn the_name_changes_and_bad_input_changes_nothing() {
    name_changes(Backend::Memory).await;
}

#[tokio::test]
async fn the_name_changes_and_bad_input_changes_nothing_on_sqlite() {
    name_changes(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_email_changes_after_the_code_sent_to_the_new_address() {
    let app = support::app_default().await;
    let mut client = signed_in(&app).await;
    let new = "jeremy@citygroup-mail.example";

    for (email, message) in [
        ("", "enter the new email address"),
        ("not-an-email", "invalid email address"),
        (SCOTT, "another account uses this email address"),
        (JEREMY, "this is already your email address"),
    ] {
        let response = client
            .post_form("/account/email", &[("email", email)])
            .await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{email}");
        assert!(
            response.body.contains(message),
            "{email}: {}",
            response.body
        );
        assert!(jeremy(&app).await.pending_email.is_none());
    }

    let response = client.post_form("/account/email", &[("email", new)]).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let page = client.get("/account/email").await;
    assert!(page.body.contains(&format!("Code sent to {new}")));
    let mail = app.mail.latest_to(new).unwrap();
    let code = first_code(&mail.text).unwrap().to_owned();

    let wrong = client
        .post_form("/account/email/verify", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("the code is not correct"));
    assert_eq!(jeremy(&app).await.email.as_str(), JEREMY);
    let empty = client
        .post_form("/account/email/verify", &[("code", "")])
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);

    let forged = client
        .post_form_raw("/account/email/verify", &[("code", code.as_str())])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(jeremy(&app).await.email.as_str(), JEREMY);

    let right = client
        .post_form("/account/email/verify", &[("code", code.as_str())])
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    assert_eq!(jeremy(&app).await.email.as_str(), new);
    assert!(
        client
            .get("/account")
            .await
            .body
            .contains(&format!("Your email address is now {new}"))
    );

    // Nothing pending any more.
    let none = client
        .post_form("/account/email/verify", &[("code", code.as_str())])
        .await;
    assert_eq!(none.status, StatusCode::SEE_OTHER);
    assert_eq!(none.location(), Some("/account/email"));
}

/// Codes sent to `address` so far.
fn codes_to(app: &TestApp, address: &str) -> usize {
    app.mail
        .messages()
        .iter()
        .filter(|kept| kept.message.to.normalized() == address)
        .count()
}

/// The answer to asking for an email change to `email`.
async fn ask_for_code(client: &mut Client, email: &str) -> support::TestResponse {
    client
        .post_form("/account/email", &[("email", email)])
        .await
}

/// The `Retry-After` seconds of a 429 answer that shows the email page again.
#[track_caller]
fn refused(response: &support::TestResponse) -> u64 {
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        response.body
    );
    assert!(
        response.body.contains("Your email address"),
        "{}",
        response.body
    );
    assert!(response.body.contains("try again"), "{}", response.body);
    response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn email_codes_are_spaced_and_limited_per_person_and_per_address() {
    let app = support::app_default().await;
    let mut jeremy_client = signed_in(&app).await;
    let target = "jeremy.new@citygroup-mail.example";

    let first = ask_for_code(&mut jeremy_client, target).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(codes_to(&app, target), 1);
    // At once again: the gap (30 s) refuses it, on the page, and nothing is sent or changed.
    let other = "jeremy.other@citygroup-mail.example";
    let again = ask_for_code(&mut jeremy_client, other).await;
    let wait = refused(&again);
    assert!((1..=30).contains(&wait), "{wait}");
    assert_eq!(codes_to(&app, other), 0);
    assert_eq!(
        jeremy(&app)
            .await
            .pending_email
            .map(|p| p.new_value.to_string())
            .as_deref(),
        Some(target)
    );

    // After the gap: up to 5 codes in the hour.
    for sent in 2..=5 {
        app.clock.advance(chrono::Duration::seconds(31));
        let response = ask_for_code(&mut jeremy_client, target).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
        assert_eq!(codes_to(&app, target), sent);
    }
    // The sixth waits for the next hour, whatever the address.
    app.clock.advance(chrono::Duration::seconds(31));
    let sixth = ask_for_code(&mut jeremy_client, other).await;
    let wait = refused(&sixth);
    assert!(wait > 30 && wait <= 3600, "{wait}");
    assert_eq!(codes_to(&app, other), 0);

    // Nobody else can send more to that address this hour either; other addresses are fine.
    let mut scott = app.client();
    scott.sign_in_as(SCOTT).await;
    let flood = ask_for_code(&mut scott, target).await;
    assert!(refused(&flood) > 30);
    assert_eq!(codes_to(&app, target), 5);
    app.clock.advance(chrono::Duration::seconds(31));
    let own = ask_for_code(&mut scott, "scott.new@smartplan-mail.example").await;
    assert_eq!(own.status, StatusCode::SEE_OTHER, "{}", own.body);

    // The next hour, codes go out again.
    app.clock
        .set(support::start_time() + chrono::Duration::hours(1));
    let mut jeremy_client = signed_in(&app).await;
    let next_hour = ask_for_code(&mut jeremy_client, target).await;
    assert_eq!(
        next_hour.status,
        StatusCode::SEE_OTHER,
        "{}",
        next_hour.body
    );
    assert_eq!(codes_to(&app, target), 6);
}

#[tokio::test]
async fn the_phone_is_verified_by_sms_and_can_be_removed() {
    let app = support::app_default().await;
    let mut client = signed_in(&app).await;
    let phone = "+15555550123";

    for (input, message) in [
        ("", "enter your mobile number"),
        ("0401234567", "international format"),
    ] {
        let response = client
            .post_form("/account/phone", &[("phone", input)])
            .await;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{input}");
        assert!(response.body.contains(message), "{input}");
        assert!(
            response.body.contains(&format!("value=\"{input}\"")),
            "kept"
        );
    }
    assert!(app.sms.latest_to(phone).is_none());

    let response = client
        .post_form("/account/phone", &[("phone", "+1 555 555 0123")])
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let sms = app.sms.latest_to(phone).unwrap();
    let code = first_code(&sms.text).unwrap().to_owned();
    let page = client.get("/account/phone").await;
    assert!(page.body.contains(&format!("Code sent by SMS to {phone}")));

    let wrong = client
        .post_form("/account/phone/verify", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(jeremy(&app).await.phone.is_none());
    let right = client
        .post_form("/account/phone/verify", &[("code", code.as_str())])
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let person = jeremy(&app).await;
    assert_eq!(
        person.phone.as_ref().map(ToString::to_string).as_deref(),
        Some(phone)
    );
    assert!(person.phone_verified);

    let forged = client
        .post_form_raw("/account/phone", &[("decision", "remove")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(jeremy(&app).await.phone.is_some());
    let removed = client
        .post_form("/account/phone", &[("decision", "remove")])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert!(jeremy(&app).await.phone.is_none());
    let nothing = client
        .post_form("/account/phone", &[("decision", "remove")])
        .await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(nothing.body.contains("no phone number to remove"));
}

#[tokio::test]
async fn the_only_second_factor_cannot_be_removed_when_the_organization_requires_one() {
    let app = support::build(Options {
        seed: Some(SeedOptions {
            jeremy: JeremyAs::ContactPerson,
            city_group_requires_mfa: true,
            ..SeedOptions::default()
        }),
        ..Options::default()
    })
    .await;
    let mut client = signed_in(&app).await;
    let page = client.get("/account").await;
    assert!(page.body.contains("Set up a second factor"));
    client
        .post_form("/account/phone", &[("phone", "+15555550123")])
        .await;
    let code = first_code(&app.sms.latest_to("+15555550123").unwrap().text)
        .unwrap()
        .to_owned();
    client
        .post_form("/account/phone/verify", &[("code", code.as_str())])
        .await;
    assert!(
        !client
            .get("/account")
            .await
            .body
            .contains("Set up a second factor")
    );
    let refused = client
        .post_form("/account/phone", &[("decision", "remove")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("set up an authenticator app first"));
    assert!(jeremy(&app).await.phone_verified);
}

async fn password_works(app: &TestApp, password: &str) -> bool {
    let identity = jeremy(app).await;
    let credentials = app
        .state
        .store
        .credentials_of_identity(identity.id)
        .await
        .unwrap();
    let hash = credentials
        .iter()
        .find_map(|credential| match &credential.kind {
            ciam_core::credentials::CredentialKind::Password { hash } => Some(hash.clone()),
            _ => None,
        })
        .unwrap();
    app.state
        .ciam
        .password_hasher()
        .verify(
            &Password::new(password),
            &hash,
            app.state.ciam.random().as_ref(),
        )
        .await
        .unwrap()
        != ciam_core::credentials::Verification::Mismatch
}

#[tokio::test]
async fn the_password_changes_with_the_current_one_and_other_sessions_end() {
    let app = support::app_default().await;
    let mut client = signed_in(&app).await;
    let mut other = signed_in(&app).await;
    assert_eq!(other.get("/account").await.status, StatusCode::OK);

    for (fields, message) in [
        (
            [
                ("current_password", "wrong-password-here"),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirmation", NEW_PASSWORD),
            ],
            "the current password is not correct",
        ),
        (
            [
                ("current_password", DEMO_PASSWORD),
                ("new_password", "short"),
                ("new_password_confirmation", "short"),
            ],
            "at least 8 characters",
        ),
        (
            [
                ("current_password", DEMO_PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirmation", "something-else-entirely"),
            ],
            "the two passwords are not the same",
        ),
        (
            [
                ("current_password", ""),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirmation", NEW_PASSWORD),
            ],
            "enter your current password",
        ),
    ] {
        let response = client.post_form("/account/password", &fields).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{message}"
        );
        assert!(response.body.contains(message), "{message}");
        assert!(!response.body.contains(NEW_PASSWORD));
    }
    assert!(password_works(&app, DEMO_PASSWORD).await);
    let good = [
        ("current_password", DEMO_PASSWORD),
        ("new_password", NEW_PASSWORD),
        ("new_password_confirmation", NEW_PASSWORD),
    ];
    let forged = client.post_form_raw("/account/password", &good).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(password_works(&app, DEMO_PASSWORD).await);

    let response = client.post_form("/account/password", &good).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert!(password_works(&app, NEW_PASSWORD).await);
    assert!(
        client
            .get("/account")
            .await
            .body
            .contains("Your other session was signed out.")
    );
    assert_eq!(other.get("/account").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_sessions_page_lists_them_and_signs_out_the_others() {
    let app = support::app_default().await;
    let mut client = signed_in(&app).await;
    let mut other = signed_in(&app).await;
    let page = client.get("/account/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("This session"));
    assert!(page.body.contains("Another session"));
    assert!(page.body.contains("password"));

    let forged = client.post_form_raw("/account/sessions/others", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(other.get("/account").await.status, StatusCode::OK);

    let response = client.post_form("/account/sessions/others", &[]).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(other.get("/account").await.status, StatusCode::SEE_OTHER);
    let page = client.get("/account/sessions").await;
    assert!(page.body.contains("Your other session is signed out."));
    assert!(!page.body.contains("Another session"));
    assert!(page.body.contains("You are signed in nowhere else."));
}

fn secret_in(page: &str) -> String {
    let start = page.find("<p class=\"secret-key\"><code>").unwrap()
        + "<p class=\"secret-key\"><code>".len();
    let end = start + page[start..].find("</code>").unwrap();
    page[start..end].split_whitespace().collect()
}

fn totp_code(secret: &str, app: &TestApp) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        "x".to_owned(),
    )
    .unwrap();
    totp.generate(u64::try_from(app.clock_now().timestamp()).unwrap())
}

async fn totp_enrolment(backend: Backend) {
    let app = support::build(Options {
        backend,
        ..Options::default()
    })
    .await;
    let mut client = signed_in(&app).await;
    let page = client.get("/account/mfa").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No authenticator app is set up yet"));

    // Recovery codes come with an app.
    let early = client.post_form("/account/mfa/recovery-codes", &[]).await;
    assert_eq!(early.status, StatusCode::SEE_OTHER);
    assert_eq!(early.location(), Some("/account/mfa"));

    let forged = client.post_form_raw("/account/mfa/totp", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let enrol = client.post_form("/account/mfa/totp", &[]).await;
    assert_eq!(enrol.status, StatusCode::OK);
    assert!(enrol.body.contains("<svg"));
    assert!(!enrol.body.contains("<?xml"));
    assert_eq!(enrol.header("cache-control"), Some("no-store"));
    let secret = secret_in(&enrol.body);
    assert!(secret.len() >= 32);

    let wrong = client
        .post_form("/account/mfa/totp/confirm", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("the code is not correct"));
    assert!(
        client
            .get("/account/mfa")
            .await
            .body
            .contains("No authenticator app is set up yet")
    );

    let code = totp_code(&secret, &app);
    let confirmed = client
        .post_form("/account/mfa/totp/confirm", &[("code", code.as_str())])
        .await;
    assert_eq!(confirmed.status, StatusCode::OK);
    assert!(
        confirmed
            .body
            .contains("This is the only time they are shown")
    );
    assert_eq!(confirmed.body.matches("<li><code>").count(), 10);
    assert_eq!(confirmed.header("cache-control"), Some("no-store"));
    let page = client.get("/account/mfa").await;
    assert!(page.body.contains("Your authenticator app is set up."));
    assert!(
        page.body
            .contains("<strong>10</strong> unused recovery codes")
    );

    let renewed = client.post_form("/account/mfa/recovery-codes", &[]).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert!(
        renewed
            .body
            .contains("Your earlier recovery codes no longer work.")
    );
    assert_eq!(renewed.body.matches("<li><code>").count(), 10);
    assert_ne!(renewed.body, confirmed.body);
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_with_the_qr_code_and_a_first_code() {
    totp_enrolment(Backend::Memory).await;
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_on_sqlite() {
    totp_enrolment(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_email_of_another_person_cannot_be_reached() {
    // Pages act on the signed-in person only: there is no identity in any account URL, and a
    // second person's change stays theirs.
    let app = support::app_default().await;
    let mut scott = app.client();
    scott.sign_in_as(SCOTT).await;
    scott
        .post_form(
            "/account/name",
            &[("given_name", "Scotty"), ("family_name", "Long")],
        )
        .await;
    assert_eq!(jeremy(&app).await.name.given, "Jeremy");
    let scott_identity = app
        .state
        .store
        .identity_by_email(&EmailAddress::parse(SCOTT).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(scott_identity.name.given, "Scotty");
}

/// ASVS 7.4.4: every page a signed-in person reaches offers "Sign out" (a CSRF-protected form),
/// MySmartPlan, the organization administration and the back office alike.
#[tokio::test]
async fn every_signed_in_page_offers_sign_out() {
    let app = support::app_default().await;
    let city_group = app.cast().city_group;
    let mut jeremy = signed_in(&app).await;
    let mut scott = app.client();
    scott.sign_in_as(SCOTT).await;
    let admin = format!("/admin/orgs/{city_group}");
    let pages: [(&mut Client, Vec<String>); 2] = [
        (
            &mut jeremy,
            [
                "/account",
                "/account/email",
                "/account/phone",
                "/account/password",
                "/account/mfa",
                "/account/sessions",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain([
                admin.clone(),
                format!("{admin}/users"),
                format!("{admin}/approvals"),
            ])
            .collect(),
        ),
        (
            &mut scott,
            // The back office start page, which every staff role opens.
            vec!["/backoffice".into()],
        ),
    ];
    for (client, paths) in pages {
        for path in paths {
            let page = client.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{path}");
            assert!(
                page.body.contains("action=\"/signout\"") && page.body.contains("Sign out"),
                "{path} has no sign-out"
            );
        }
    }
}
