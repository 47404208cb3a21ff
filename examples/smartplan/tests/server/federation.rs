//! Federated sign-in through the router against a real OpenID Connect provider: the npm
//! package `oidc-provider` (`tests/oidc-peer/peer.mjs`, the peer of the scenario tests) plays
//! City Group's own IdP. The router client keeps SmartPlan's cookies; `ciam_tests::oidc_peer`
//! plays the browser at the provider (its development login form, automatic consent).
//!
//! The peer harness is `ciam_tests::oidc_peer` (shared with the scenario tests): it copies the
//! peer into the cargo target directory and runs `npm ci` there when `node_modules` is missing.
//! Without node, npm or the npm registry the tests fail when `CI=true` and print a skip message
//! otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use axum::http::StatusCode;
use ciam_core::login::{ClientSecret, IdentityProviderConnection, OidcClientSettings};
use ciam_core::{Clock as _, Principal, SystemClock};

use crate::support::{self, BASE_URL, Options, TestApp};

const CALLBACK_PATH: &str = "/signin/oidc/callback";

fn redirect_uri() -> String {
    format!("{BASE_URL}{CALLBACK_PATH}")
}

/// Starts the peer and answers City Group's issuer.
fn start_peer() -> Result<String, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smartplan-oidc-peer");
    let issuers = ciam_tests::oidc_peer::start(&dir, &redirect_uri())?;
    issuers
        .get("city")
        .cloned()
        .ok_or_else(|| "no city issuer".to_owned())
}

/// City Group's issuer at the running peer, or `None` (skip) outside CI when node or npm is
/// missing.
fn city_issuer_or_skip(test: &str) -> Option<String> {
    static PEER: OnceLock<Result<String, String>> = OnceLock::new();
    ciam_tests::oidc_peer::or_skip(PEER.get_or_init(start_peer), test)
}

/// Plays the browser at the provider (signs in as `account`) and answers the redirect back to
/// our callback (path and query).
async fn browser_at_idp(authorization_url: &str, account: &str) -> String {
    let callback = ciam_tests::oidc_peer::browser(authorization_url, &redirect_uri(), account)
        .await
        .unwrap();
    format!(
        "{}?{}",
        callback.path(),
        callback.query().unwrap_or_default()
    )
}

/// The app with City Group's OIDC connection (just-in-time accounts) at the peer; its clock
/// reads real time, the provider's tokens carrying real times.
async fn app_with_city_idp(issuer: &str) -> TestApp {
    let app = support::build(Options::default()).await;
    app.clock.set(SystemClock.now());
    let providers = app.state.ciam.identity_providers();
    let secret = providers
        .seal_client_secret(&ClientSecret::new("smartplan-secret"))
        .unwrap();
    let mut connection = IdentityProviderConnection::oidc(
        "City Group login",
        OidcClientSettings::new(issuer, "smartplan", secret),
    );
    connection.just_in_time = true;
    providers
        .add_connection(
            &Principal::System,
            issuer,
            Some(app.cast().city_group),
            connection,
        )
        .await
        .unwrap();
    app
}

/// Starts the sign-in with Anna's email and answers the authorization URL we were sent to.
async fn start_at_city_idp(client: &mut support::Client, issuer: &str) -> String {
    let response = client
        .post_form("/signin", &[("email", "anna.virtanen@citygroup.example")])
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    let location = response.location().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{issuer}/")) || location.starts_with(issuer),
        "sent to {location}, not to City Group's IdP {issuer}"
    );
    let request: BTreeMap<String, String> = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(request["redirect_uri"], redirect_uri());
    assert_eq!(request["login_hint"], "anna.virtanen@citygroup.example");
    location
}

#[tokio::test]
async fn a_city_group_employee_signs_in_through_city_groups_oidc_idp() {
    let Some(issuer) =
        city_issuer_or_skip("a_city_group_employee_signs_in_through_city_groups_oidc_idp")
    else {
        return;
    };
    let app = app_with_city_idp(&issuer).await;
    let mut client = app.client();

    let authorization_url = start_at_city_idp(&mut client, &issuer).await;
    assert!(!client.jar.contains_key("smartplan_session"));
    let callback = browser_at_idp(&authorization_url, "anna").await;

    let response = client.get(&callback).await;
    assert!(
        response.status.is_redirection(),
        "{}: {}",
        response.status,
        response.body
    );
    assert_eq!(response.location(), Some("/account"));
    assert!(client.jar.contains_key("smartplan_session"));
    assert!(!client.jar.contains_key("smartplan_login"));

    let account = client.get("/account").await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    assert!(account.body.contains("Anna"), "{}", account.body);
    assert!(account.body.contains("Virtanen"), "{}", account.body);
    assert!(account.body.contains("City Group"), "{}", account.body);

    // The code was used: replaying the response signs in nobody (a fresh browser).
    let mut other = app.client();
    let replay = other.get(&callback).await;
    assert!(!other.jar.contains_key("smartplan_session"), "{replay:?}");
}

#[tokio::test]
async fn a_callback_with_a_wrong_state_changes_nothing_and_says_why() {
    let Some(issuer) =
        city_issuer_or_skip("a_callback_with_a_wrong_state_changes_nothing_and_says_why")
    else {
        return;
    };
    let app = app_with_city_idp(&issuer).await;
    let mut client = app.client();
    let authorization_url = start_at_city_idp(&mut client, &issuer).await;
    let callback = browser_at_idp(&authorization_url, "anna").await;
    let code = url::Url::parse(&format!("{BASE_URL}{callback}"))
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, value)| value.into_owned())
        .unwrap();

    let forged = format!("{CALLBACK_PATH}?code={code}&state=not-the-state-we-sent");
    let response = client.get(&forged).await;
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        response.body
    );
    assert!(
        response.body.contains(
            "this sign-in response does not belong to this browser or was already used; start again"
        ),
        "{}",
        response.body
    );
    assert!(!client.jar.contains_key("smartplan_session"));
    let account = client.get("/account").await;
    assert!(account.status.is_redirection(), "{account:?}");
    assert!(account.location().unwrap().starts_with("/signin"));

    // The sign-in in progress is untouched: the genuine response still signs Anna in.
    let genuine = client.get(&callback).await;
    assert_eq!(genuine.location(), Some("/account"), "{genuine:?}");
    assert!(client.jar.contains_key("smartplan_session"));
}

#[tokio::test]
async fn an_id_token_issued_in_the_future_by_our_clock_is_refused() {
    let Some(issuer) =
        city_issuer_or_skip("an_id_token_issued_in_the_future_by_our_clock_is_refused")
    else {
        return;
    };
    let app = app_with_city_idp(&issuer).await;
    let mut client = app.client();
    let authorization_url = start_at_city_idp(&mut client, &issuer).await;
    let callback = browser_at_idp(&authorization_url, "anna").await;
    // Our clock an hour behind the provider's: its token looks issued an hour from now.
    app.clock
        .set(SystemClock.now() - chrono::Duration::hours(1));
    let response = client.get(&callback).await;
    // The provider's answer cannot be verified: 502, in plain words, nobody signed in.
    assert_eq!(response.status, StatusCode::BAD_GATEWAY, "{response:?}");
    assert!(
        response
            .body
            .contains("the sign-in at your identity provider could not be verified"),
        "{}",
        response.body
    );
    assert!(!client.jar.contains_key("smartplan_session"));
    assert!(client.get("/account").await.status.is_redirection());
}

/// Whether `text` holds a JWT: `eyJ` (the base64 of `{"`) starting three base64url segments
/// joined by dots (the ID token, or a JWT access token).
fn has_jwt(text: &str) -> bool {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("eyJ").any(|(at, _)| {
        let segments: Vec<&str> = text[at..]
            .split(|c: char| !b64(c) && c != '.')
            .next()
            .unwrap_or_default()
            .split('.')
            .collect();
        segments.len() >= 3 && segments[..3].iter().all(|segment| segment.len() >= 4)
    })
}

/// Everything a browser receives in `response`: status line, headers (with the cookies) and
/// body.
fn all_the_browser_sees(response: &support::TestResponse) -> String {
    let headers = response
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n{headers}\n\n{}", response.status, response.body)
}

#[tokio::test]
async fn the_providers_tokens_never_reach_the_browser() {
    let Some(issuer) = city_issuer_or_skip("the_providers_tokens_never_reach_the_browser") else {
        return;
    };
    let app = app_with_city_idp(&issuer).await;
    let mut client = app.client();
    let mut seen = Vec::new();
    let started = client
        .post_form("/signin", &[("email", "anna.virtanen@citygroup.example")])
        .await;
    let authorization_url = started.location().unwrap().to_owned();
    // From the callback on: the provider's tokens exist only after the code exchange.
    let callback = browser_at_idp(&authorization_url, "anna").await;
    let signed_in = client.get(&callback).await;
    assert_eq!(signed_in.location(), Some("/account"), "{signed_in:?}");
    seen.push(all_the_browser_sees(&signed_in));
    for page in [
        "/account",
        "/account/sessions",
        "/account/mfa",
        "/account/email",
    ] {
        let response = client.get(page).await;
        assert_eq!(response.status, StatusCode::OK, "{page}: {}", response.body);
        seen.push(all_the_browser_sees(&response));
    }
    let jar = client
        .jar
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("\n");
    seen.push(jar);
    for text in &seen {
        assert!(!has_jwt(text), "a JWT reached the browser:\n{text}");
        for word in ["id_token", "access_token", "refresh_token", "code_verifier"] {
            assert!(!text.contains(word), "{word} reached the browser:\n{text}");
        }
    }
}
