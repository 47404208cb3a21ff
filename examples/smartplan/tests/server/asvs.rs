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

use crate::support::{self, Client, TestApp, TestResponse, signed_in};

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

/// Invites `email` (Ann Nordqvist) into City Group as the system; the acceptance path.
async fn invite_ann(app: &TestApp, email: &str) -> String {
    let issued = app
        .state
        .ciam
        .invitations()
        .invite(
            &ciam_core::Principal::System,
            app.cast().city_group,
            support::person(email, "Ann", "Nordqvist"),
        )
        .await
        .unwrap();
    format!(
        "/invitations/accept?token={}",
        issued.token.unwrap().expose()
    )
}

fn acceptance_form(password: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("decision", "accept"),
        ("given_name", "Ann"),
        ("family_name", "Nordqvist"),
        ("password", password),
        ("password_confirmation", password),
    ]
}

/// The organization's name and the person's name are context words even where the email does
/// not give them away (registration, invitation acceptance, change and reset), and `[passwords]
/// context_words` is the list looked for.
#[tokio::test]
async fn the_organizations_name_and_the_configured_words_are_context_words_on_every_path() {
    let app = support::build(support::Options {
        seed: Some(smartplan::demo::SeedOptions {
            jeremy: smartplan::demo::JeremyAs::ContactPerson,
            without_koko_registration: true,
            ..smartplan::demo::SeedOptions::default()
        }),
        configure: Some(|config| {
            config.passwords.context_words = vec!["Aurora Grid".to_owned()];
        }),
        ..support::Options::default()
    })
    .await;

    // Registration of an organization named unlike the email's domain.
    let register_as = |password: &'static str| {
        let mut form = registration_form(password);
        form[0].1 = "Nordlicht Energie GmbH".to_owned();
        form
    };
    for (password, word) in [
        ("nordlicht-energie-99", "nordlichtenergie"),
        ("Aurora-Grid-2026", "auroragrid"),
    ] {
        let form = register_as(password);
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = app.client().post_form("/register", &fields).await;
        refused_as_context_word(&refused, word);
    }
    assert_eq!(pending_registrations(&app).await, 0);

    // Invitation acceptance by someone whose email gives away neither the organization nor
    // her name.
    let ann = "a.n@post.test";
    let accept = invite_ann(&app, ann).await;
    for (password, word) in [
        ("city-group-rocks-2026", "citygroup"),
        ("my aurora grid pass", "auroragrid"),
    ] {
        let refused = app
            .client()
            .post_form(&accept, &acceptance_form(password))
            .await;
        refused_as_context_word(&refused, word);
    }
    let mut client = app.client();
    let accepted = client
        .post_form(&accept, &acceptance_form(GOOD_PASSWORD))
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    assert!(client.jar.contains_key("smartplan_session"));

    // Password change and reset: the person's name and the organizations they belong to.
    for (password, word) in [
        ("citygroup-violet-7", "citygroup"),
        ("nordqvist-violet-5", "nordqvist"),
        ("auroragrid-lantern", "auroragrid"),
    ] {
        let refused = client
            .post_form(
                "/account/password",
                &[
                    ("current_password", GOOD_PASSWORD),
                    ("new_password", password),
                    ("new_password_confirmation", password),
                ],
            )
            .await;
        refused_as_context_word(&refused, word);
    }
    let mut reset = app.client();
    open_reset(&app, &mut reset, ann).await;
    let refused = reset
        .post_form(
            "/password/reset",
            &[
                ("password", "city-group-lantern-3"),
                ("confirm", "city-group-lantern-3"),
            ],
        )
        .await;
    refused_as_context_word(&refused, "citygroup");
    // The service's default word is not looked for when the configuration replaces the list.
    let accepted = reset
        .post_form(
            "/password/reset",
            &[
                ("password", "smartplan-violet-lantern"),
                ("confirm", "smartplan-violet-lantern"),
            ],
        )
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
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

const ACCEPTANCE_LIST: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/asvs-pwned-acceptance.txt");

fn with_acceptance_list(config: &mut smartplan::config::Config) {
    config.passwords.breached_list = Some(ACCEPTANCE_LIST.into());
}

#[tokio::test]
async fn a_breached_password_is_refused_at_invitation_acceptance() {
    write_list(ACCEPTANCE_LIST);
    let app = app_with(with_acceptance_list).await;
    let ann = "ann.nordqvist@post.test";
    let accept = invite_ann(&app, ann).await;
    let refused = app
        .client()
        .post_form(&accept, &acceptance_form(BREACHED))
        .await;
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
    assert!(
        app.state
            .store
            .identity_by_email(&EmailAddress::parse(ann).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let accepted = app
        .client()
        .post_form(&accept, &acceptance_form(GOOD_PASSWORD))
        .await;
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
    // A code before the app's page was opened: nothing to confirm, back to the page.
    let early = betty
        .post_form("/signin/enrol", &[("code", "123456")])
        .await;
    assert_eq!(early.status, StatusCode::SEE_OTHER, "{}", early.body);
    assert_eq!(early.location(), Some("/signin/enrol"));
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

/// The 6-digit code of the newest SMS to `phone`.
fn sms_code_to(app: &TestApp, phone: &str) -> String {
    let text = app.sms.latest_to(phone).expect("an SMS").text;
    ciam_core::delivery::first_code(&text).unwrap().to_owned()
}

#[tokio::test]
async fn a_mobile_phone_can_be_the_second_factor_set_up_at_sign_in() {
    let app = app_with(everyone_needs_mfa).await;
    let jeremy_before = support::principal_of(&app, JEREMY).await.0;
    let phone = "+15555550177";
    let mut jeremy = app.client();
    let after_password = password_sign_in(&mut jeremy, JEREMY).await;
    assert_eq!(after_password.location(), Some("/signin/enrol"));
    // The app's page offers the phone too.
    let page = jeremy.get("/signin/enrol").await;
    assert!(
        page.body.contains("href=\"/signin/enrol/phone\""),
        "{}",
        page.body
    );
    let page = jeremy.get("/signin/enrol/phone").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Mobile number"));

    // Bad input is explained and changes nothing: no SMS, no session, no phone.
    let identity_before = app.state.store.identity(jeremy_before).await.unwrap();
    let sent_before = app.sms.messages().len();
    for (input, message) in [
        ("", "enter your mobile number"),
        ("0401234567", "international format"),
        ("+1 555 CALL ME", "international format"),
    ] {
        let response = jeremy
            .post_form(
                "/signin/enrol/phone",
                &[("action", "send"), ("phone", input)],
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{input}: {}",
            response.body
        );
        assert!(
            response.body.contains(message),
            "{input}: {}",
            response.body
        );
        assert!(
            response.body.contains(&format!("value=\"{input}\"")),
            "kept"
        );
    }
    let no_code = jeremy
        .post_form("/signin/enrol/phone", &[("action", "verify"), ("code", "")])
        .await;
    assert_eq!(no_code.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.sms.messages().len(), sent_before);
    assert_eq!(
        app.state.store.identity(jeremy_before).await.unwrap(),
        identity_before
    );
    assert!(!jeremy.jar.contains_key("smartplan_session"));

    // A code goes to the number typed (spaces allowed), and only that number's newest code
    // counts: a code sent before to another number does not verify this one.
    let first = jeremy
        .post_form(
            "/signin/enrol/phone",
            &[("action", "send"), ("phone", "+1 555 555 0166")],
        )
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let old_code = sms_code_to(&app, "+15555550166");
    app.clock.advance(chrono::Duration::seconds(31));
    let sent = jeremy
        .post_form(
            "/signin/enrol/phone",
            &[("action", "send"), ("phone", "+1 555 555 0177")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    assert_eq!(sent.location(), Some("/signin/enrol/phone"));
    let code = sms_code_to(&app, phone);
    let page = jeremy.get("/signin/enrol/phone").await;
    assert!(
        page.body.contains(&format!("Code sent by SMS to {phone}")),
        "{}",
        page.body
    );
    if old_code != code {
        let stale = jeremy
            .post_form(
                "/signin/enrol/phone",
                &[("action", "verify"), ("code", &old_code)],
            )
            .await;
        assert_eq!(stale.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let wrong = jeremy
        .post_form(
            "/signin/enrol/phone",
            &[("action", "verify"), ("code", "000000")],
        )
        .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains("the code is wrong"), "{}", wrong.body);
    assert!(!jeremy.jar.contains_key("smartplan_session"));
    assert!(
        app.state
            .store
            .identity(jeremy_before)
            .await
            .unwrap()
            .unwrap()
            .phone
            .is_none()
    );

    // The right code verifies the phone and completes the sign-in at the MFA level.
    let done = jeremy
        .post_form(
            "/signin/enrol/phone",
            &[("action", "verify"), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    let methods = session_methods(&app, &jeremy).await;
    assert!(methods.contains(&ciam_core::sessions::AuthMethod::Pwd));
    assert!(methods.contains(&ciam_core::sessions::AuthMethod::Sms));
    let person = app
        .state
        .store
        .identity(jeremy_before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        person.phone.as_ref().map(ToString::to_string).as_deref(),
        Some(phone)
    );
    assert!(person.phone_verified);
    // The code works once: the attempt is over.
    let replay = jeremy
        .post_form(
            "/signin/enrol/phone",
            &[("action", "verify"), ("code", &code)],
        )
        .await;
    assert!(replay.status.is_redirection(), "{replay:?}");
    assert!(replay.location().unwrap().starts_with("/signin"));

    // Next time the SMS step is asked as usual.
    let mut again = app.client();
    let after_password = password_sign_in(&mut again, JEREMY).await;
    assert_eq!(after_password.location(), Some("/signin/sms"));
}

/// Betty without a password (she signs in through an identity provider), with a verified
/// phone, signed in eleven minutes ago.
async fn stale_betty_without_password_with_phone(app: &TestApp, phone: &str) -> Client {
    let identity = betty_identity(app).await;
    let mut betty = app.client();
    betty.sign_in_as(BETTY).await;
    support::verify_phone(app, BETTY, phone).await;
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
    app.clock.advance(chrono::Duration::minutes(11));
    betty
}

#[tokio::test]
async fn a_person_without_a_password_confirms_with_their_second_factor() {
    let app = support::app_default().await;
    let phone = "+15555550142";
    let mut betty = stale_betty_without_password_with_phone(&app, phone).await;
    let old_token = betty.jar.get("smartplan_session").cloned().unwrap();
    let change = betty
        .post_form("/account/phone", &[("phone", "+15555550143")])
        .await;
    sent_to_confirm(&change, "/account/phone");
    let page = betty.get("/account/confirm?next=%2Faccount%2Fphone").await;
    assert!(!page.body.contains("type=\"password\""), "{}", page.body);
    assert!(
        page.body
            .contains("action=\"/account/confirm/second-factor\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("Sign in again"), "{}", page.body);

    let started = betty
        .post_form(
            "/account/confirm/second-factor",
            &[("next", "/account/phone")],
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert_eq!(started.location(), Some("/signin/sms"));
    let sent = betty.post_form("/signin/sms", &[("action", "send")]).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let code = sms_code_to(&app, phone);
    let wrong = betty
        .post_form("/signin/sms", &[("action", "verify"), ("code", "000000")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Still not confirmed.
    let still = betty
        .post_form("/account/phone", &[("phone", "+15555550143")])
        .await;
    sent_to_confirm(&still, "/account/phone");
    let confirmed = betty
        .post_form("/signin/sms", &[("action", "verify"), ("code", &code)])
        .await;
    assert_eq!(
        confirmed.status,
        StatusCode::SEE_OTHER,
        "{}",
        confirmed.body
    );
    assert_eq!(confirmed.location(), Some("/account/phone"));
    // A new session replaced the old one, and the change goes ahead.
    let new_token = betty.jar.get("smartplan_session").cloned().unwrap();
    assert_ne!(new_token, old_token);
    assert!(
        app.state
            .ciam
            .sessions()
            .validate(&SecretToken::from_presented(old_token.as_str()))
            .await
            .is_err()
    );
    assert!(
        session_methods(&app, &betty)
            .await
            .contains(&ciam_core::sessions::AuthMethod::Sms)
    );
    let change = betty
        .post_form("/account/phone", &[("phone", "+15555550143")])
        .await;
    assert_eq!(change.status, StatusCode::SEE_OTHER, "{}", change.body);
    assert_eq!(change.location(), Some("/account/phone"));
    assert!(app.sms.latest_to("+15555550143").is_some());
    // The wrong code was audited as a sign-in failure.
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
    assert_eq!(
        events
            .iter()
            .filter(|stored| matches!(
                stored.event.kind,
                ciam_core::events::EventKind::SignInFailed { .. }
            ))
            .count(),
        1
    );
}

#[tokio::test]
async fn wrong_second_factor_codes_when_confirming_are_throttled_like_a_sign_in() {
    let app = support::app_default().await;
    let phone = "+15555550142";
    let mut betty = stale_betty_without_password_with_phone(&app, phone).await;
    let started = betty
        .post_form(
            "/account/confirm/second-factor",
            &[("next", "/account/email")],
        )
        .await;
    assert_eq!(started.location(), Some("/signin/sms"));
    betty.post_form("/signin/sms", &[("action", "send")]).await;
    for n in 0..4 {
        let wrong = betty
            .post_form("/signin/sms", &[("action", "verify"), ("code", "000000")])
            .await;
        assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{n}");
    }
    // The fifth wrong code ends the attempt...
    let ended = betty
        .post_form("/signin/sms", &[("action", "verify"), ("code", "000000")])
        .await;
    assert!(ended.status.is_redirection(), "{ended:?}");
    // ...and past the account's free failures a new confirmation waits, as a sign-in would.
    let waits = betty
        .post_form(
            "/account/confirm/second-factor",
            &[("next", "/account/email")],
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
    let email = betty
        .post_form(
            "/account/email",
            &[("email", "betty.new@smartplan.example")],
        )
        .await;
    sent_to_confirm(&email, "/account/email");
}

#[tokio::test]
async fn a_person_with_a_password_confirms_with_it_not_with_the_second_factor_alone() {
    let app = support::app_default().await;
    support::verify_phone(&app, BETTY, "+15555550142").await;
    let mut betty = stale_betty(&app).await;
    let page = betty.get("/account/confirm?next=%2Faccount%2Fphone").await;
    assert!(page.body.contains("type=\"password\""), "{}", page.body);
    assert!(!page.body.contains("/account/confirm/second-factor"));
    let tried = betty
        .post_form(
            "/account/confirm/second-factor",
            &[("next", "/account/phone")],
        )
        .await;
    assert_eq!(tried.status, StatusCode::OK, "{tried:?}");
    let still = betty
        .post_form("/account/phone", &[("phone", "+15555550143")])
        .await;
    sent_to_confirm(&still, "/account/phone");
}

// ---------------------------------------------------------------------------------------------
// 6.3.2: no default accounts
// ---------------------------------------------------------------------------------------------

/// A process of the `smartplan` binary, killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Whether `GET /healthz` at `address` answers 200.
fn healthy(address: std::net::SocketAddr) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Starts `smartplan ARGS` with `env` only and waits until it answers at `address`.
async fn start_smartplan(
    args: &[&str],
    env: &[(&str, String)],
    address: std::net::SocketAddr,
    log: &std::path::Path,
) -> Running {
    let file = std::fs::File::create(log).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_smartplan"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut running = Running(command.spawn().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !healthy(address) {
        if let Ok(Some(status)) = running.0.try_wait() {
            panic!(
                "smartplan {args:?} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "smartplan {args:?} did not answer within 90 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    running
}

/// The number of rows of `table`.
async fn rows(database: &str, table: &str) -> i64 {
    use sqlx::Row as _;
    let options: sqlx::sqlite::SqliteConnectOptions =
        std::str::FromStr::from_str(database).unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.read_only(true))
        .await
        .unwrap();
    let count = sqlx::query(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap()
        .get::<i64, _>(0);
    pool.close().await;
    count
}

/// `smartplan serve` (the real command: configuration from the environment, the database
/// migrated by `smartplan migrate`) on an empty database answers without creating a single
/// identity, credential, membership, session or setting (no API key); the demo's cast appears only when `smartplan
/// demo` runs on that database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_empty_database_creates_no_account_and_the_cast_exists_only_after_demo() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("smartplan.db").display());
    let key = dir.path().join("idp.key.pem");
    let certificate = dir.path().join("idp.crt.pem");
    smartplan::keys::ensure_signing_key(
        &key,
        &certificate,
        "no default accounts",
        &ciam_core::clock::OsRandom,
    )
    .unwrap();
    let listen = free_address();
    let env = vec![
        ("SMARTPLAN_LISTEN", listen.to_string()),
        ("SMARTPLAN_PUBLIC_BASE_URL", format!("http://{listen}")),
        ("SMARTPLAN_DATABASE_URL", database.clone()),
        (
            "SMARTPLAN_SECRET_KEY",
            "0101010101010101010101010101010101010101010101010101010101010101".to_owned(),
        ),
        ("SMARTPLAN_SMTP_HOST", "127.0.0.1".to_owned()),
        ("SMARTPLAN_SMTP_PORT", "1".to_owned()),
        ("SMARTPLAN_SMTP_SECURITY", "none".to_owned()),
        (
            "SMARTPLAN_SMTP_FROM",
            "SmartPlan <no-reply@smartplan.example>".to_owned(),
        ),
        ("SMARTPLAN_SMS_URL", "http://127.0.0.1:1/sms".to_owned()),
        ("SMARTPLAN_SMS_AUTH_VALUE", "Bearer none".to_owned()),
        ("SMARTPLAN_SAML_KEY_FILE", key.display().to_string()),
        (
            "SMARTPLAN_SAML_CERTIFICATE_FILE",
            certificate.display().to_string(),
        ),
    ];
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_smartplan"))
        .arg("migrate")
        .env_clear()
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    {
        let _serving =
            start_smartplan(&["serve"], &env, listen, &dir.path().join("serve.log")).await;
    }
    for table in [
        "identities",
        "credentials",
        "memberships",
        "sessions",
        "settings",
    ] {
        assert_eq!(rows(&database, table).await, 0, "{table} after serve");
    }

    let demo_listen = free_address();
    let app_listen = free_address();
    let data_dir = dir.path().join("demo-data");
    {
        let _demo = start_smartplan(
            &[
                "demo",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--database-url",
                &database,
                "--listen",
                &demo_listen.to_string(),
                "--app-listen",
                &app_listen.to_string(),
            ],
            &[],
            demo_listen,
            &dir.path().join("demo.log"),
        )
        .await;
    }
    assert!(rows(&database, "identities").await > 0);
    assert!(rows(&database, "credentials").await > 0);
    let store = ciam_store::SqlStore::open(&database).await.unwrap();
    let scott = ciam_core::store::Store::identity_by_email(
        &store,
        &EmailAddress::parse(smartplan::demo::SCOTT).unwrap(),
    )
    .await
    .unwrap();
    assert!(scott.is_some(), "the demo's cast exists after demo");
    store.close().await;
}
