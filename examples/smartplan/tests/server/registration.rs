//! Organization registration (`/register`, `/register/verify`) and joining an organization
//! (`/join`, `/join/verify`).

use axum::http::StatusCode;
use ciam_core::delivery::first_code;
use ciam_core::registrations::RequestStatus;
use smartplan::demo::{JEREMY, SeedOptions};

use crate::support::{self, Backend, Options, TestApp};

const KARL: &str = "karl.kearnes@kokomedia.example";
const PASSWORD: &str = "violet-harbour-lantern";

async fn app_without_koko(backend: Backend) -> TestApp {
    support::build(Options {
        backend,
        seed: Some(SeedOptions {
            jeremy: smartplan::demo::JeremyAs::ContactPerson,
            without_koko_registration: true,
            ..SeedOptions::default()
        }),
        ..Options::default()
    })
    .await
}

fn registration_form<'a>(email: &'a str, phone: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("organization_name", "KOKO Media Inc."),
        ("business_id", "FI2912345-6"),
        ("given_name", "Karl"),
        ("family_name", "Kearnes"),
        ("email", email),
        ("phone", phone),
        ("password", PASSWORD),
        ("password_confirmation", PASSWORD),
    ]
}

async fn pending(app: &TestApp) -> usize {
    app.state
        .store
        .pending_org_registrations(100)
        .await
        .unwrap()
        .len()
}

fn with(
    mut fields: Vec<(&'static str, &'static str)>,
    name: &str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    for field in &mut fields {
        if field.0 == name {
            field.1 = value;
        }
    }
    fields
}

async fn registers_verifies_and_waits(backend: Backend) {
    let app = app_without_koko(backend).await;
    let mut client = app.client();
    let page = client.get("/register").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Register your organization"));
    assert!(page.body.contains("at least 8 characters"));

    let response = client
        .post_form("/register", &registration_form(KARL, "+15555550199"))
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let location = response.location().unwrap().to_owned();
    assert!(location.starts_with("/register/verify?registration="));
    let verify = client.get(&location).await;
    assert_eq!(verify.status, StatusCode::OK);
    assert!(verify.body.contains("Code from the email"));
    assert!(verify.body.contains("Code from the SMS"));
    let email_code = first_code(&app.mail.latest_to(KARL).unwrap().text)
        .unwrap()
        .to_owned();
    let sms_code = first_code(&app.sms.latest_to("+15555550199").unwrap().text)
        .unwrap()
        .to_owned();

    let wrong = client
        .post_form(
            &location,
            &[("email_code", "000000"), ("phone_code", sms_code.as_str())],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("the code is not correct"));
    let missing = client
        .post_form(&location, &[("email_code", email_code.as_str())])
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.body.contains("enter the code from the SMS"));
    let forged = client
        .post_form_raw(
            &location,
            &[
                ("email_code", email_code.as_str()),
                ("phone_code", sms_code.as_str()),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(pending(&app).await, 0);

    let right = client
        .post_form(
            &location,
            &[
                ("email_code", email_code.as_str()),
                ("phone_code", sms_code.as_str()),
            ],
        )
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let waiting = client.get(&location).await;
    assert_eq!(waiting.status, StatusCode::OK);
    assert!(waiting.body.contains("Waiting for approval"));
    assert!(
        waiting
            .body
            .contains("customer service checks your request")
    );
    assert_eq!(pending(&app).await, 1);
    // Posting again changes nothing.
    let again = client
        .post_form(&location, &[("email_code", email_code.as_str())])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(pending(&app).await, 1);
}

#[tokio::test]
async fn an_organization_registers_verifies_and_waits_for_approval() {
    registers_verifies_and_waits(Backend::Memory).await;
}

#[tokio::test]
async fn an_organization_registers_verifies_and_waits_for_approval_on_sqlite() {
    registers_verifies_and_waits(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_registrations_are_explained_keep_what_was_typed_and_store_nothing() {
    let app = app_without_koko(Backend::Memory).await;
    let good = registration_form(KARL, "");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            with(good.clone(), "organization_name", " "),
            "enter your organization",
        ),
        (
            with(good.clone(), "given_name", ""),
            "enter your given name",
        ),
        (
            with(good.clone(), "email", ""),
            "enter your work email address",
        ),
        (
            with(good.clone(), "email", "karl-at-koko"),
            "invalid email address",
        ),
        (with(good.clone(), "phone", "12345"), "international format"),
        (
            with(
                with(good.clone(), "password", "password123"),
                "password_confirmation",
                "password123",
            ),
            "too common",
        ),
        (
            with(good.clone(), "password_confirmation", "another-one-here"),
            "the two passwords are not the same",
        ),
        (
            with(good.clone(), "email", JEREMY),
            "an account with this email address already exists",
        ),
        (
            with(good.clone(), "email", "someone.else@citygroup.example"),
            "already registered; ask to join it instead",
        ),
    ];
    for (fields, message) in cases {
        let mut client = app.client();
        let response = client.post_form("/register", &fields).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{message}"
        );
        assert!(
            response.body.contains(message),
            "{message}: {}",
            response.body
        );
        assert!(
            response.body.contains("value=\"Kearnes\""),
            "{message}: kept"
        );
        assert!(
            !response.body.contains(PASSWORD),
            "{message}: no password sent back"
        );
    }
    assert_eq!(pending(&app).await, 0);
    assert!(app.mail.latest_to(KARL).is_none());

    let mut client = app.client();
    client.get("/register").await;
    let forged = client.post_form_raw("/register", &good).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(app.mail.latest_to(KARL).is_none());
}

#[tokio::test]
async fn registration_is_throttled_per_client() {
    let app = app_without_koko(Backend::Memory).await;
    let mut client = app.client();
    let limit = app.state.throttle.registration.max;
    for n in 0..limit {
        let email = format!("person{n}@webmail-{n}.example");
        let fields = registration_form(&email, "");
        let response = client.post_form("/register", &fields).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{n}");
    }
    let fields = registration_form("one.more@another.example", "");
    let response = client.post_form("/register", &fields).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(response.header("retry-after").is_some());
    assert!(app.mail.latest_to("one.more@another.example").is_none());
}

#[tokio::test]
async fn unknown_registrations_and_requests_are_not_found() {
    let app = support::app_default().await;
    let mut client = app.client();
    for path in [
        "/register/verify",
        "/register/verify?registration=nonsense",
        "/join/verify?request=nonsense",
    ] {
        assert_eq!(
            client.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_person_asks_to_join_by_email_domain_and_waits_for_the_contact_person() {
    let app = support::app_default().await;
    let mut client = app.client();
    assert_eq!(client.get("/join").await.status, StatusCode::OK);
    let email = "nina.new@citygroup.example";
    let fields = [
        ("join_code", ""),
        ("given_name", "Nina"),
        ("family_name", "New"),
        ("email", email),
        ("phone", ""),
        ("password", PASSWORD),
        ("password_confirmation", PASSWORD),
    ];
    let response = client.post_form("/join", &fields).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let location = response.location().unwrap().to_owned();
    assert!(location.starts_with("/join/verify?request="));
    let code = first_code(&app.mail.latest_to(email).unwrap().text)
        .unwrap()
        .to_owned();
    let wrong = client
        .post_form(&location, &[("email_code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let right = client
        .post_form(&location, &[("email_code", code.as_str())])
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let waiting = client.get(&location).await;
    assert!(waiting.body.contains("Waiting for approval"));
    assert!(waiting.body.contains("contact person checks your request"));
    let requests = app
        .state
        .ciam
        .registrations()
        .pending_join_requests(
            &app.state
                .ciam
                .principals()
                .for_identity(app.cast().jeremy.unwrap())
                .await
                .unwrap(),
            app.cast().city_group,
            100,
        )
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert!(matches!(requests[0].status, RequestStatus::PendingApproval));
    // Jeremy, City Group's contact person, is told by email.
    assert!(app.mail.latest_to(JEREMY).is_some());
}

#[tokio::test]
async fn a_join_request_without_a_matching_organization_is_explained() {
    let app = support::app_default().await;
    let mut client = app.client();
    let fields = [
        ("join_code", "no-such-code"),
        ("given_name", "Nina"),
        ("family_name", "New"),
        ("email", "nina@nowhere.example"),
        ("phone", ""),
        ("password", PASSWORD),
        ("password_confirmation", PASSWORD),
    ];
    let response = client.post_form("/join", &fields).await;
    assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.body.contains("no organization matches"));
    assert!(response.body.contains("value=\"no-such-code\""));
    assert!(app.mail.latest_to("nina@nowhere.example").is_none());
}
