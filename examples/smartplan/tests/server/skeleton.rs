//! The skeleton: health, static files, security headers, CSRF, sessions, errors, flash.

use axum::http::StatusCode;

use crate::support::{self, Backend, Options};

#[tokio::test]
async fn healthz_answers_and_sets_security_headers() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    let response = client.get("/healthz").await;
    assert_eq!(response.status, StatusCode::OK);
    let csp = response.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert!(response.header("referrer-policy").is_some());
    assert!(
        response.header("strict-transport-security").is_none(),
        "no HSTS on http"
    );
    let cookie = response
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("smartplan_csrf="))
        .expect("a CSRF cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// The exempt paths (the API, single sign-on) hand out no CSRF token, so their answers set no
/// CSRF cookie (and cost no random value or MAC); a page sets it, and its forms' token matches.
#[tokio::test]
async fn api_and_saml_answers_set_no_csrf_cookie_and_pages_do() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    for path in ["/api/v1/organizations", "/saml/sso", "/saml/metadata"] {
        let response = client.get(path).await;
        assert!(
            response
                .set_cookies()
                .iter()
                .all(|c| !c.starts_with("smartplan_csrf=")),
            "{path}: {:?}",
            response.set_cookies()
        );
    }
    let page = client.get("/signin").await;
    assert_eq!(page.status, StatusCode::OK);
    let token = client.csrf_token().await;
    assert!(
        page.body.contains(&token),
        "the form carries the cookie's token"
    );
}

#[tokio::test]
async fn https_base_url_gives_hsts_and_secure_cookies() {
    let app = support::build(Options {
        seed: None,
        base_url: "https://smartplan.example".into(),
        ..Options::default()
    })
    .await;
    let response = app.client().get("/healthz").await;
    assert!(response.header("strict-transport-security").is_some());
    assert!(
        response
            .set_cookies()
            .iter()
            .all(|c| c.contains("; Secure"))
    );
}

#[tokio::test]
async fn unknown_pages_get_a_plain_html_404_and_api_paths_json() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    let page = client.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("Page not found"), "{}", page.body);
    assert!(page.body.contains("<main"), "the layout wraps the error");
    let api = client.get("/api/v1/no-such-thing").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn stylesheet_is_served() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let response = app.client().get("/static/smartplan.css").await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/css")
    );
    assert!(response.body.contains("--brand"));
}

#[tokio::test]
async fn a_post_without_csrf_token_is_refused_and_with_one_passes_the_check() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    // No token: 403 before any handler runs.
    client.get("/healthz").await;
    let refused = client.post_form_raw("/signout", &[("x", "1")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("form has expired"),
        "{}",
        refused.body
    );
    // A wrong token.
    let wrong = client.post_form_raw("/signout", &[("csrf", "00")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // The right token passes the CSRF check (the route answers whatever it answers, not 403
    // with the CSRF message).
    let passed = client.post_form("/signout", &[]).await;
    assert!(!passed.body.contains("form has expired"), "{}", passed.body);
}

#[tokio::test]
async fn a_token_from_another_browser_does_not_work() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut alice = app.client();
    let token = alice.csrf_token().await;
    let mut mallory = app.client();
    mallory.get("/healthz").await;
    let response = mallory
        .post_form_raw("/signout", &[("csrf", token.as_str())])
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_cast_is_seeded_on_sqlite_and_seeding_twice_changes_nothing() {
    let app = support::build(Options {
        backend: Backend::Sqlite,
        ..Options::default()
    })
    .await;
    let first = app.cast().clone();
    let again = smartplan::demo::seed(
        &app.state.ciam,
        &app.mail,
        smartplan::demo::SeedOptions {
            jeremy: smartplan::demo::JeremyAs::ContactPerson,
            ..smartplan::demo::SeedOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first, again);
    let pending = app.state.store.pending_org_registrations(10).await.unwrap();
    assert_eq!(pending.len(), 1, "KOKO Media waits for approval once");
}
