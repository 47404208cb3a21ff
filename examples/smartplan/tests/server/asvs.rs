//! OWASP ASVS 5.0 level 2 rows that no area's own tests covered (docs/security.md, "OWASP ASVS
//! 5.0, level 2"): repeated parameters (15.3.7), type confusion (15.3.5), no password expiry
//! (6.2.10), no hints or security questions (6.4.2).

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ciam_core::authz::IntegrationScope;
use ciam_core::contact::EmailAddress;
use ciam_core::secrets::SecretToken;
use serde_json::json;
use smartplan::demo::{BETTY, DEMO_PASSWORD, JEREMY};

use crate::support::{self, Client, TestApp, TestResponse};

const MIA: &str = "mia.member@citygroup.example";

async fn full_key(app: &TestApp) -> String {
    smartplan::api::keys::create(
        &app.state.store,
        &ciam_core::SeededRandom::new(4242),
        app.clock_now(),
        "crm",
        [
            IntegrationScope::Provisioning,
            IntegrationScope::Invitations,
            IntegrationScope::Leads,
            IntegrationScope::Read,
        ]
        .into_iter()
        .collect::<BTreeSet<_>>(),
    )
    .await
    .unwrap()
    .key
}

/// A form body written as given (repeats kept), with the CSRF token first.
async fn post_raw_body(client: &mut Client, path: &str, body: &str) -> TestResponse {
    let token = client.csrf_token().await;
    client
        .send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("csrf={token}&{body}")))
                .unwrap(),
        )
        .await
}

async fn signed_in(app: &TestApp, client: &Client) -> bool {
    let Some(token) = client.jar.get("smartplan_session") else {
        return false;
    };
    app.state
        .ciam
        .sessions()
        .validate(&SecretToken::from_presented(token.as_str()))
        .await
        .is_ok()
}

fn refused_as_repeated(response: &TestResponse, name: &str) {
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "{}",
        response.body
    );
    assert!(
        response.body.contains("more than once") && response.body.contains(name),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn repeated_form_fields_and_query_parameters_are_refused_not_merged() {
    let app = support::app_default().await;
    let city = app.cast().city_group;

    // Sign-in: two emails are not "the first" or "the last": the form is refused, no attempt.
    let mut browser = app.client();
    let refused = post_raw_body(
        &mut browser,
        "/signin",
        &format!(
            "email={}&email={}",
            JEREMY.replace('@', "%40"),
            BETTY.replace('@', "%40")
        ),
    )
    .await;
    refused_as_repeated(&refused, "email");
    assert!(!browser.jar.contains_key("smartplan_login"));
    // The same form once: accepted.
    let accepted = browser.post_form("/signin", &[("email", JEREMY)]).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);

    // A page's query string.
    let page = app.client().get("/signin?next=/account&next=/admin").await;
    refused_as_repeated(&page, "next");

    // Org admin role change: a repeated checkbox changes nothing.
    let mia = support::add_person(&app, city, support::person(MIA, "Mia", "Member")).await;
    let mut jeremy = app.client();
    jeremy.sign_in_as(JEREMY).await;
    let path = format!("/admin/orgs/{city}/users/{mia}/roles");
    let before = app
        .state
        .store
        .membership_of(mia, city)
        .await
        .unwrap()
        .unwrap();
    let repeated = post_raw_body(
        &mut jeremy,
        &path,
        "role_billing-viewer=on&role_billing-viewer=on",
    )
    .await;
    refused_as_repeated(&repeated, "role_billing-viewer");
    let after = app
        .state
        .store
        .membership_of(mia, city)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.business_roles, before.business_roles);
    assert_eq!(after.version, before.version);
    let once = post_raw_body(&mut jeremy, &path, "role_billing-viewer=on").await;
    assert_eq!(once.status, StatusCode::SEE_OTHER, "{}", once.body);
    assert_eq!(
        app.state
            .store
            .membership_of(mia, city)
            .await
            .unwrap()
            .unwrap()
            .business_roles
            .len(),
        before.business_roles.len() + 1
    );

    // The API: a repeated query parameter is a 400 with a stable code.
    let key = full_key(&app).await;
    let mut crm = app.client();
    let lookup = crm
        .api(
            Method::GET,
            &format!(
                "/api/v1/identities?email={}&email={}",
                JEREMY.replace('@', "%40"),
                MIA.replace('@', "%40")
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(lookup.status, StatusCode::BAD_REQUEST, "{}", lookup.body);
    assert_eq!(lookup.json()["error"]["code"], "repeated_parameter");
    assert!(
        lookup.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"email\"")
    );
    let page = crm
        .api(
            Method::GET,
            &format!(
                "/api/v1/organizations/{}?limit=1&limit=500",
                smartplan::demo::CITY_GROUP_ACCOUNT
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(page.json()["error"]["code"], "repeated_parameter");
    // A JSON body repeating a member is refused too (422), and changes nothing.
    let body = crm
        .send(
            Request::put(format!(
                "/api/v1/organizations/{}",
                smartplan::demo::CITY_GROUP_ACCOUNT
            ))
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"name": "City Group, Inc.", "name": "Renamed"}"#,
            ))
            .unwrap(),
        )
        .await;
    assert_eq!(
        body.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        body.body
    );
    assert!(body.body.contains("duplicate field"), "{}", body.body);
    let organization = app.state.store.organization(city).await.unwrap().unwrap();
    assert_eq!(organization.name, "City Group, Inc.");
}

#[tokio::test]
async fn type_confused_json_bodies_are_refused_and_change_nothing() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let mut crm = app.client();
    let path = format!(
        "/api/v1/organizations/{}",
        smartplan::demo::CITY_GROUP_ACCOUNT
    );
    let city = app.cast().city_group;
    let before = app.state.store.organization(city).await.unwrap().unwrap();
    // No value is coerced into the type the field has: numbers, booleans, arrays, objects and
    // null where a string is expected, strings where a boolean or a list is expected.
    let confused = [
        json!({"name": 42}),
        json!({"name": true}),
        json!({"name": ["City Group, Inc."]}),
        json!({"name": {"value": "City Group, Inc."}}),
        json!({"name": null}),
        json!({"name": "City Group, Inc.", "suspended": "true"}),
        json!({"name": "City Group, Inc.", "suspended": 1}),
        json!({"name": "City Group, Inc.", "email_domains": "citygroup.example"}),
        json!({"name": "City Group, Inc.", "kind": 1}),
        json!({"name": "City Group, Inc.", "kind": "provider"}),
    ];
    for body in &confused {
        let refused = crm.api(Method::PUT, &path, Some(&key), Some(body)).await;
        // 422 `invalid` names the field; serde_json reports a few mismatches (a number for an
        // enum) as a syntax error: 400 `malformed_json`. Either way: refused, not coerced.
        let code = refused.json()["error"]["code"].clone();
        assert!(
            (refused.status == StatusCode::UNPROCESSABLE_ENTITY && code == "invalid")
                || (refused.status == StatusCode::BAD_REQUEST && code == "malformed_json"),
            "{body}: {} {}",
            refused.status,
            refused.body
        );
    }
    let wrong_query = crm
        .api(Method::GET, &format!("{path}?limit=ten"), Some(&key), None)
        .await;
    assert_eq!(wrong_query.status, StatusCode::UNPROCESSABLE_ENTITY);
    let after = app.state.store.organization(city).await.unwrap().unwrap();
    assert_eq!(after.version, before.version);
    assert_eq!(after.name, before.name);
    assert_eq!(after.status, before.status);
}

#[tokio::test]
async fn a_password_set_years_ago_still_signs_in_and_no_rotation_is_asked() {
    let app = support::app_default().await;
    // Betty's password was set at the start; years pass.
    app.clock.advance(chrono::Duration::days(5 * 365));
    let mut client = app.client();
    let started = client.post_form("/signin", &[("email", BETTY)]).await;
    assert_eq!(started.location(), Some("/signin/password"), "{started:?}");
    let done = client
        .post_form(
            "/signin/password",
            &[("password", DEMO_PASSWORD), ("next", "/account")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let destination = done.location().unwrap().to_owned();
    assert!(
        !destination.contains("password"),
        "sent to {destination}: no change asked"
    );
    assert!(signed_in(&app, &client).await);
    let account = client.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    let lower = account.body.to_lowercase();
    for nag in [
        "password has expired",
        "password expires",
        "password is too old",
        "change your password now",
        "must change your password",
    ] {
        assert!(!lower.contains(nag), "{nag}: {}", account.body);
    }
    // The stored credential has no expiry to read.
    let identity = app
        .state
        .store
        .identity_by_email(&EmailAddress::parse(BETTY).unwrap())
        .await
        .unwrap()
        .unwrap();
    let credentials = app
        .state
        .store
        .credentials_of_identity(identity.id)
        .await
        .unwrap();
    let stored = serde_json::to_string(&credentials).unwrap().to_lowercase();
    assert!(!stored.contains("expir"), "{stored}");
}

/// The names of every input, select and textarea in `page`.
fn field_names(page: &str) -> Vec<String> {
    let mut names = Vec::new();
    for tag in ["<input", "<select", "<textarea"] {
        let mut rest = page;
        while let Some(at) = rest.find(tag) {
            rest = &rest[at + tag.len()..];
            let end = rest.find('>').unwrap_or(rest.len());
            if let Some(name_at) = rest[..end].find("name=\"") {
                let value = &rest[name_at + 6..end];
                names.push(value[..value.find('"').unwrap_or(0)].to_owned());
            }
        }
    }
    names
}

#[tokio::test]
async fn no_page_asks_for_a_password_hint_or_a_security_question() {
    let app = support::app_default().await;
    let mut pages = Vec::new();
    let mut anonymous = app.client();
    for path in ["/register", "/join", "/password/forgot", "/signin"] {
        let page = anonymous.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        pages.push((path.to_owned(), page.body));
    }
    // The reset page with a genuine link.
    anonymous
        .post_form("/password/forgot", &[("email", BETTY)])
        .await;
    let mail = app.mail.latest_to(BETTY).unwrap();
    let link = ciam_core::delivery::first_link(&mail.text)
        .unwrap()
        .to_owned();
    let path = link.strip_prefix(support::BASE_URL).unwrap().to_owned();
    let opened = anonymous.get(&path).await;
    let reset = anonymous.get(opened.location().unwrap()).await;
    assert!(reset.body.contains("name=\"confirm\""), "{}", reset.body);
    pages.push(("/password/reset".to_owned(), reset.body));
    // The invitation page.
    let inviter = app
        .state
        .ciam
        .principals()
        .for_identity(app.cast().jeremy.unwrap())
        .await
        .unwrap();
    let issued = app
        .state
        .ciam
        .invitations()
        .invite(
            &inviter,
            app.cast().city_group,
            support::person("ann.example@citygroup.example", "Ann", "Example"),
        )
        .await
        .unwrap();
    let token = issued.token.unwrap().expose().to_owned();
    let accept = anonymous
        .get(&format!("/invitations/accept?token={token}"))
        .await;
    assert!(
        accept.body.contains("password_confirmation"),
        "{}",
        accept.body
    );
    pages.push(("/invitations/accept".to_owned(), accept.body));
    // The signed-in password page.
    let mut betty = app.client();
    betty.sign_in_as(BETTY).await;
    let password = betty.get("/account/password").await;
    assert!(
        password.body.contains("current_password"),
        "{}",
        password.body
    );
    pages.push(("/account/password".to_owned(), password.body));

    for (path, body) in &pages {
        let names = field_names(body);
        assert!(!names.is_empty(), "{path} has a form");
        for name in &names {
            let lower = name.to_lowercase();
            for word in ["hint", "question", "answer", "reminder", "memorable"] {
                assert!(!lower.contains(word), "{path} asks for {name}");
            }
        }
        let text = body.to_lowercase();
        for phrase in ["password hint", "security question", "secret question"] {
            assert!(!text.contains(phrase), "{path} mentions {phrase}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 6.1.2, 6.2.11: context-specific words
// ---------------------------------------------------------------------------------------------

const KARL: &str = "karl.kearnes@kokomedia.example";
const GOOD_PASSWORD: &str = "violet-harbour-lantern";

fn registration_form(password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("organization_name", "KOKO Media Inc.".to_owned()),
        ("business_id", "FI2912345-6".to_owned()),
        ("given_name", "Karl".to_owned()),
        ("family_name", "Kearnes".to_owned()),
        ("email", KARL.to_owned()),
        ("phone", String::new()),
        ("password", password.to_owned()),
        ("password_confirmation", password.to_owned()),
    ]
}

async fn register(client: &mut Client, password: &str) -> TestResponse {
    let form = registration_form(password);
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client.post_form("/register", &fields).await
}

async fn app_without_koko() -> TestApp {
    support::build(support::Options {
        seed: Some(smartplan::demo::SeedOptions {
            jeremy: smartplan::demo::JeremyAs::ContactPerson,
            without_koko_registration: true,
            ..smartplan::demo::SeedOptions::default()
        }),
        ..support::Options::default()
    })
    .await
}

async fn pending_registrations(app: &TestApp) -> usize {
    app.state
        .store
        .pending_org_registrations(100)
        .await
        .unwrap()
        .len()
}

/// A reset link for `email`, opened: the client is on the new-password step.
async fn open_reset(app: &TestApp, client: &mut Client, email: &str) {
    client
        .post_form("/password/forgot", &[("email", email)])
        .await;
    let mail = app.mail.latest_to(email).unwrap();
    let link = ciam_core::delivery::first_link(&mail.text)
        .unwrap()
        .to_owned();
    let path = link.strip_prefix(support::BASE_URL).unwrap().to_owned();
    let opened = client.get(&path).await;
    assert_eq!(opened.location(), Some("/password/reset"), "{opened:?}");
}

fn refused_as_context_word(response: &TestResponse, word: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.body
    );
    assert!(
        response.body.contains(word) && response.body.contains("easy to guess here"),
        "{word}: {}",
        response.body
    );
}

#[tokio::test]
async fn passwords_with_the_service_name_or_the_persons_own_words_are_refused_everywhere() {
    let app = app_without_koko().await;

    // Registration: the service's name, the person's name and email, the organization's name.
    for (password, word) in [
        ("Smart-Plan-2026!", "smartplan"),
        ("karl.kearnes.1990", "karlkearnes"),
        ("Kearnes-and-co-99", "kearnes"),
        ("koko media forever", "kokomedia"),
    ] {
        let refused = register(&mut app.client(), password).await;
        refused_as_context_word(&refused, word);
    }
    assert_eq!(pending_registrations(&app).await, 0);
    assert!(app.mail.latest_to(KARL).is_none());
    let accepted = register(&mut app.client(), GOOD_PASSWORD).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);

    // Invitation acceptance: Ann of City Group.
    let inviter = app
        .state
        .ciam
        .principals()
        .for_identity(app.cast().jeremy.unwrap())
        .await
        .unwrap();
    let issued = app
        .state
        .ciam
        .invitations()
        .invite(
            &inviter,
            app.cast().city_group,
            support::person("ann.example@citygroup.example", "Ann", "Example"),
        )
        .await
        .unwrap();
    let token = issued.token.unwrap().expose().to_owned();
    let accept = format!("/invitations/accept?token={token}");
    let form = |password: &'static str| {
        vec![
            ("decision", "accept"),
            ("given_name", "Ann"),
            ("family_name", "Example"),
            ("password", password),
            ("password_confirmation", password),
        ]
    };
    let refused = app
        .client()
        .post_form(&accept, &form("city-group-rocks-2026"))
        .await;
    refused_as_context_word(&refused, "citygroup");
    let refused = app
        .client()
        .post_form(&accept, &form("SMARTPLAN makes plans"))
        .await;
    refused_as_context_word(&refused, "smartplan");
    assert!(
        app.state
            .store
            .identity_by_email(&EmailAddress::parse("ann.example@citygroup.example").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let accepted = app.client().post_form(&accept, &form(GOOD_PASSWORD)).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);

    // Password change: Betty Office of SmartPlan.
    let mut betty = app.client();
    betty.sign_in_as(BETTY).await;
    for (password, word) in [
        ("Betty.Office.2026", "bettyoffice"),
        ("my-smartplan-pw", "smartplan"),
    ] {
        let refused = betty
            .post_form(
                "/account/password",
                &[
                    ("current_password", DEMO_PASSWORD),
                    ("new_password", password),
                    ("new_password_confirmation", password),
                ],
            )
            .await;
        refused_as_context_word(&refused, word);
    }

    // Reset: Jeremy of City Group.
    let mut jeremy = app.client();
    open_reset(&app, &mut jeremy, JEREMY).await;
    let refused = jeremy
        .post_form(
            "/password/reset",
            &[
                ("password", "jeremy-2026-mills"),
                ("confirm", "jeremy-2026-mills"),
            ],
        )
        .await;
    refused_as_context_word(&refused, "jeremy");
    // The old password still signs in: nothing changed.
    let mut check = app.client();
    check.post_form("/signin", &[("email", JEREMY)]).await;
    let signed = check
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
}

// ---------------------------------------------------------------------------------------------
// 6.2.12: breached passwords
// ---------------------------------------------------------------------------------------------

const BREACHED: &str = "correct-horse-battery-staple-1";
const BREACHED_LIST: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/asvs-pwned-passwords.txt");
const VANISHING_LIST: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/asvs-pwned-vanishing.txt");
const VANISHING_OPEN_LIST: &str = concat!(
    env!("CARGO_TARGET_TMPDIR"),
    "/asvs-pwned-vanishing-open.txt"
);

/// A small list in the download's format: `HEX40:COUNT` lines (CRLF), sorted by hash.
fn write_list(path: &str) {
    use ciam_core::credentials::breached::sha1_hex;
    let mut lines = vec![format!("{}:4211", sha1_hex(BREACHED))];
    for n in 0..2_000 {
        lines.push(format!(
            "{}:{}",
            sha1_hex(&format!("leaked-{n}")),
            n % 13 + 1
        ));
    }
    lines.sort();
    std::fs::write(path, lines.join("\r\n") + "\r\n").unwrap();
}

fn with_breached_list(config: &mut smartplan::config::Config) {
    config.passwords.breached_list = Some(BREACHED_LIST.into());
}

fn with_vanishing_list(config: &mut smartplan::config::Config) {
    config.passwords.breached_list = Some(VANISHING_LIST.into());
}

fn with_vanishing_list_failing_open(config: &mut smartplan::config::Config) {
    config.passwords.breached_list = Some(VANISHING_OPEN_LIST.into());
    config.passwords.breached_list_unavailable = ciam_core::credentials::BreachCheckFailure::Allow;
}

async fn app_with(configure: fn(&mut smartplan::config::Config)) -> TestApp {
    support::build(support::Options {
        seed: Some(smartplan::demo::SeedOptions {
            jeremy: smartplan::demo::JeremyAs::ContactPerson,
            without_koko_registration: true,
            ..smartplan::demo::SeedOptions::default()
        }),
        configure: Some(configure),
        ..support::Options::default()
    })
    .await
}

#[tokio::test]
async fn breached_passwords_are_refused_at_registration_change_and_reset() {
    write_list(BREACHED_LIST);
    let app = app_with(with_breached_list).await;

    let refused = register(&mut app.client(), BREACHED).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("appeared in a data breach"),
        "{}",
        refused.body
    );
    assert_eq!(pending_registrations(&app).await, 0);

    let mut betty = app.client();
    betty.sign_in_as(BETTY).await;
    let refused = betty
        .post_form(
            "/account/password",
            &[
                ("current_password", DEMO_PASSWORD),
                ("new_password", BREACHED),
                ("new_password_confirmation", BREACHED),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("appeared in a data breach"),
        "{}",
        refused.body
    );

    let mut jeremy = app.client();
    open_reset(&app, &mut jeremy, JEREMY).await;
    let refused = jeremy
        .post_form(
            "/password/reset",
            &[("password", BREACHED), ("confirm", BREACHED)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("appeared in a data breach"),
        "{}",
        refused.body
    );

    // A password not in the list goes through.
    let accepted = register(&mut app.client(), GOOD_PASSWORD).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
}

#[tokio::test]
async fn an_unreadable_breach_list_refuses_new_passwords_unless_configured_to_allow_them() {
    write_list(VANISHING_LIST);
    let app = app_with(with_vanishing_list).await;
    std::fs::remove_file(VANISHING_LIST).unwrap();
    let refused = register(&mut app.client(), GOOD_PASSWORD).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused
            .body
            .contains("cannot be checked against known breaches"),
        "{}",
        refused.body
    );
    assert_eq!(pending_registrations(&app).await, 0);
    assert!(app.mail.latest_to(KARL).is_none());

    // Failing open is a choice of the configuration: then the password is accepted unchecked.
    write_list(VANISHING_OPEN_LIST);
    let open = app_with(with_vanishing_list_failing_open).await;
    std::fs::remove_file(VANISHING_OPEN_LIST).unwrap();
    let accepted = register(&mut open.client(), GOOD_PASSWORD).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
}

// ---------------------------------------------------------------------------------------------
// 7.5.1: re-authentication before sensitive changes
// ---------------------------------------------------------------------------------------------

/// Betty, signed in eleven minutes ago (the session is still live: idle 30 minutes).
async fn stale_betty(app: &TestApp) -> Client {
    let mut betty = app.client();
    betty.sign_in_as(BETTY).await;
    app.clock.advance(chrono::Duration::minutes(11));
    betty
}

fn sent_to_confirm(response: &TestResponse, next: &str) {
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    let location = response.location().unwrap();
    assert_eq!(
        location,
        format!("/account/confirm?next={}", next.replace('/', "%2F")),
        "{response:?}"
    );
}

async fn betty_identity(app: &TestApp) -> ciam_core::identities::Identity {
    app.state
        .store
        .identity_by_email(&EmailAddress::parse(BETTY).unwrap())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_stale_session_confirms_the_password_before_changing_email_phone_or_mfa() {
    let app = support::app_default().await;
    let mut betty = stale_betty(&app).await;
    let before = betty_identity(&app).await;
    let credentials_before = app
        .state
        .store
        .credentials_of_identity(before.id)
        .await
        .unwrap();

    let email = betty
        .post_form(
            "/account/email",
            &[("email", "betty.new@smartplan.example")],
        )
        .await;
    sent_to_confirm(&email, "/account/email");
    let phone = betty
        .post_form("/account/phone", &[("phone", "+15555550199")])
        .await;
    sent_to_confirm(&phone, "/account/phone");
    let totp = betty.post_form("/account/mfa/totp", &[]).await;
    sent_to_confirm(&totp, "/account/mfa");
    let codes = betty.post_form("/account/mfa/recovery-codes", &[]).await;
    sent_to_confirm(&codes, "/account/mfa");
    // Nothing changed, nothing sent.
    let after = betty_identity(&app).await;
    assert_eq!(after, before);
    assert!(app.mail.latest_to("betty.new@smartplan.example").is_none());
    assert!(app.sms.latest_to("+15555550199").is_none());
    assert_eq!(
        app.state
            .store
            .credentials_of_identity(before.id)
            .await
            .unwrap(),
        credentials_before
    );

    // The confirmation page asks for the password.
    let page = betty.get("/account/confirm?next=%2Faccount%2Femail").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("type=\"password\""), "{}", page.body);
    let old_session = betty.jar["smartplan_session"].clone();
    let confirmed = betty
        .post_form(
            "/account/confirm",
            &[("password", DEMO_PASSWORD), ("next", "/account/email")],
        )
        .await;
    assert_eq!(
        confirmed.status,
        StatusCode::SEE_OTHER,
        "{}",
        confirmed.body
    );
    assert_eq!(confirmed.location(), Some("/account/email"));
    // A new session replaces the old one.
    assert_ne!(betty.jar["smartplan_session"], old_session);
    assert!(
        app.state
            .ciam
            .sessions()
            .validate(&SecretToken::from_presented(old_session.as_str()))
            .await
            .is_err()
    );

    // Now the change goes through.
    let email = betty
        .post_form(
            "/account/email",
            &[("email", "betty.new@smartplan.example")],
        )
        .await;
    assert_eq!(email.location(), Some("/account/email"), "{email:?}");
    assert!(app.mail.latest_to("betty.new@smartplan.example").is_some());
    let totp = betty.post_form("/account/mfa/totp", &[]).await;
    assert_eq!(totp.status, StatusCode::OK, "{}", totp.body);
    // A next outside MySmartPlan is not followed.
    app.clock.advance(chrono::Duration::minutes(11));
    let elsewhere = betty
        .post_form(
            "/account/confirm",
            &[
                ("password", DEMO_PASSWORD),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(elsewhere.location(), Some("/account"));
}

#[tokio::test]
async fn a_wrong_password_when_confirming_is_throttled_like_a_sign_in() {
    let app = support::app_default().await;
    let mut betty = stale_betty(&app).await;
    for n in 0..5 {
        let wrong = betty
            .post_form(
                "/account/confirm",
                &[("password", "not-her-password"), ("next", "/account/email")],
            )
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::UNAUTHORIZED,
            "{n}: {}",
            wrong.body
        );
        assert!(wrong.body.contains("the password is not correct"));
    }
    // Past the free failures the account waits, even with the right password.
    let waits = betty
        .post_form(
            "/account/confirm",
            &[("password", DEMO_PASSWORD), ("next", "/account/email")],
        )
        .await;
    assert_eq!(
        waits.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        waits.body
    );
    assert!(waits.header("retry-after").is_some());
    assert!(waits.body.contains("too many failed attempts"));
    // Still not confirmed: the change is still refused.
    let email = betty
        .post_form(
            "/account/email",
            &[("email", "betty.new@smartplan.example")],
        )
        .await;
    sent_to_confirm(&email, "/account/email");
    // The failures are audited as sign-in failures, and the sign-in page waits too.
    let events = app
        .state
        .store
        .events(ciam_core::store::EventQuery {
            identity: Some(betty_identity(&app).await.id),
            limit: 100,
            ..ciam_core::store::EventQuery::default()
        })
        .await
        .unwrap();
    let failed = events
        .iter()
        .filter(|stored| {
            matches!(
                stored.event.kind,
                ciam_core::events::EventKind::SignInFailed { .. }
            )
        })
        .count();
    assert_eq!(failed, 5);
    let mut other = app.client();
    other.post_form("/signin", &[("email", BETTY)]).await;
    let signin = other
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(signin.status, StatusCode::TOO_MANY_REQUESTS);
    // After the wait the right password confirms.
    app.clock.advance(chrono::Duration::seconds(2));
    let confirmed = betty
        .post_form(
            "/account/confirm",
            &[("password", DEMO_PASSWORD), ("next", "/account/email")],
        )
        .await;
    assert_eq!(
        confirmed.status,
        StatusCode::SEE_OTHER,
        "{}",
        confirmed.body
    );
}

#[tokio::test]
async fn a_person_without_a_password_confirms_by_signing_in_again() {
    let app = support::app_default().await;
    // Betty signs in only through an identity provider: her password is gone.
    let identity = betty_identity(&app).await;
    let mut changes = ciam_core::store::ChangeSet::new();
    for credential in app
        .state
        .store
        .credentials_of_identity(identity.id)
        .await
        .unwrap()
    {
        changes.delete(ciam_core::store::RecordRef::Credential(
            credential.id,
            credential.version,
        ));
    }
    app.state.store.commit(changes).await.unwrap();
    let mut betty = stale_betty(&app).await;
    let page = betty.get("/account/confirm?next=%2Faccount%2Fphone").await;
    assert!(!page.body.contains("type=\"password\""), "{}", page.body);
    assert!(page.body.contains("Sign in again"), "{}", page.body);
    // A password cannot confirm (there is none).
    let tried = betty
        .post_form(
            "/account/confirm",
            &[("password", DEMO_PASSWORD), ("next", "/account/phone")],
        )
        .await;
    assert_eq!(tried.status, StatusCode::OK);
    let again = betty
        .post_form("/account/confirm/again", &[("next", "/account/phone")])
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), Some("/signin?next=%2Faccount%2Fphone"));
    assert!(!signed_in(&app, &betty).await);
}

// ---------------------------------------------------------------------------------------------
// 6.3.3: a second factor for every account (deployment-wide)
// ---------------------------------------------------------------------------------------------

fn staff_need_mfa(config: &mut smartplan::config::Config) {
    config.security.require_mfa = smartplan::config::MfaRequirement::Staff;
}

fn everyone_needs_mfa(config: &mut smartplan::config::Config) {
    config.security.require_mfa = smartplan::config::MfaRequirement::All;
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

/// Email and password at the sign-in pages; the response to the password.
async fn password_sign_in(client: &mut Client, email: &str) -> TestResponse {
    let started = client.post_form("/signin", &[("email", email)]).await;
    assert_eq!(started.location(), Some("/signin/password"), "{started:?}");
    client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await
}

/// Sets up the app at `/signin/enrol`; the response to the first code.
async fn enrol(app: &TestApp, client: &mut Client) -> TestResponse {
    let page = client.get("/signin/enrol").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("needs a second step"), "{}", page.body);
    assert!(!client.jar.contains_key("smartplan_session"));
    let secret = secret_in(&page.body);
    let wrong = client
        .post_form("/signin/enrol", &[("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!client.jar.contains_key("smartplan_session"));
    client
        .post_form("/signin/enrol", &[("code", &totp_code(&secret, app))])
        .await
}

async fn session_methods(app: &TestApp, client: &Client) -> Vec<ciam_core::sessions::AuthMethod> {
    let token = client.jar.get("smartplan_session").expect("a session");
    app.state
        .ciam
        .sessions()
        .validate(&SecretToken::from_presented(token.as_str()))
        .await
        .unwrap()
        .session
        .methods
}

#[tokio::test]
async fn staff_without_a_second_factor_set_one_up_before_they_get_a_session() {
    let app = app_with(staff_need_mfa).await;
    let mut betty = app.client();
    let after_password = password_sign_in(&mut betty, BETTY).await;
    assert_eq!(
        after_password.status,
        StatusCode::SEE_OTHER,
        "{}",
        after_password.body
    );
    assert_eq!(after_password.location(), Some("/signin/enrol"));
    assert!(!betty.jar.contains_key("smartplan_session"));
    // No page with rights before the second factor.
    let backoffice = betty.get("/backoffice").await;
    assert!(backoffice.status.is_redirection(), "{backoffice:?}");
    assert!(backoffice.location().unwrap().starts_with("/signin"));

    let done = enrol(&app, &mut betty).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("recovery-codes"), "{}", done.body);
    assert!(
        session_methods(&app, &betty)
            .await
            .contains(&ciam_core::sessions::AuthMethod::Otp)
    );
    assert_eq!(betty.get("/backoffice").await.status, StatusCode::OK);

    // Next time the app's code is asked as usual.
    let mut again = app.client();
    let after_password = password_sign_in(&mut again, BETTY).await;
    assert_eq!(after_password.location(), Some("/signin/totp"));

    // A customer's contact person is not staff: the password alone signs in.
    let mut jeremy = app.client();
    let signed = password_sign_in(&mut jeremy, JEREMY).await;
    assert_eq!(signed.location(), Some("/account"), "{signed:?}");
    assert!(jeremy.jar.contains_key("smartplan_session"));
}

#[tokio::test]
async fn with_mfa_for_everyone_customers_set_one_up_too_and_a_verified_phone_is_used() {
    let app = app_with(everyone_needs_mfa).await;
    let mut jeremy = app.client();
    let after_password = password_sign_in(&mut jeremy, JEREMY).await;
    assert_eq!(
        after_password.location(),
        Some("/signin/enrol"),
        "{after_password:?}"
    );
    let done = enrol(&app, &mut jeremy).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(jeremy.jar.contains_key("smartplan_session"));

    // Someone with a verified phone gets the SMS step instead of the setup.
    support::verify_phone(&app, BETTY, "+15555550142").await;
    let mut betty = app.client();
    let after_password = password_sign_in(&mut betty, BETTY).await;
    assert_eq!(
        after_password.location(),
        Some("/signin/sms"),
        "{after_password:?}"
    );
    assert!(!betty.jar.contains_key("smartplan_session"));
}
