//! Federated sign-in through the router against a real OpenID Connect provider: the npm
//! package `oidc-provider` (`tests/oidc-peer/peer.mjs`, the peer of the scenario tests) plays
//! City Group's own IdP. The router client keeps SmartPlan's cookies; reqwest plays the
//! browser at the provider (its development login form, automatic consent).
//!
//! The harness copies the peer into the cargo target directory and runs `npm ci` there when
//! `node_modules` is missing. Without node, npm or the npm registry the tests fail when
//! `CI=true` and print a skip message otherwise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use axum::http::StatusCode;
use ciam_core::login::{ClientSecret, IdentityProviderConnection, OidcClientSettings};
use ciam_core::{Clock as _, Principal, SystemClock};

use crate::support::{self, BASE_URL, Options, TestApp};

const CALLBACK_PATH: &str = "/signin/oidc/callback";

fn redirect_uri() -> String {
    format!("{BASE_URL}{CALLBACK_PATH}")
}

/// The peer process, kept for the life of the test binary: it stops when its standard input
/// closes, that is when this process exits.
static CHILD: Mutex<Option<Child>> = Mutex::new(None);

fn peer_dir() -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-peer");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smartplan-oidc-peer");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut changed = false;
    for file in ["package.json", "package-lock.json", "peer.mjs"] {
        let wanted = std::fs::read(source.join(file)).map_err(|e| format!("read {file}: {e}"))?;
        if std::fs::read(dir.join(file)).ok().as_ref() != Some(&wanted) {
            changed |= file != "peer.mjs";
            std::fs::write(dir.join(file), wanted).map_err(|e| format!("write {file}: {e}"))?;
        }
    }
    if changed || !dir.join("node_modules/oidc-provider/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(dir)
}

/// Starts the peer and answers City Group's issuer.
fn start_peer() -> Result<String, String> {
    let dir = peer_dir()?;
    let log = std::fs::File::create(dir.join("peer.log")).map_err(|e| format!("log: {e}"))?;
    let mut child = Command::new("node")
        .arg("peer.mjs")
        .arg(redirect_uri())
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("node: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("read peer: {e}"))?;
    let ready = line
        .trim()
        .strip_prefix("READY ")
        .ok_or_else(|| format!("the OIDC peer did not start: {line:?}"))?;
    let urls: BTreeMap<String, String> =
        serde_json::from_str(ready).map_err(|e| format!("peer said {ready}: {e}"))?;
    *CHILD.lock().unwrap() = Some(child);
    urls.get("city")
        .cloned()
        .ok_or_else(|| "no city issuer".to_owned())
}

/// City Group's issuer at the running peer, or `None` (skip) outside CI when node or npm is
/// missing.
fn city_issuer_or_skip(test: &str) -> Option<String> {
    static PEER: OnceLock<Result<String, String>> = OnceLock::new();
    match PEER.get_or_init(start_peer) {
        Ok(issuer) => Some(issuer.clone()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the OIDC tests need node, npm and the npm registry in CI: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: oidc-provider unavailable ({why}); set CI=true to make this fatal"
            );
            None
        }
    }
}

/// Plays the browser at the provider: follows its redirects by hand, signs in as `account` on
/// the development login form, and answers the redirect back to our callback (path and query).
async fn browser_at_idp(authorization_url: &str, account: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut next = url::Url::parse(authorization_url).unwrap();
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..12 {
        if next.as_str().starts_with(&redirect_uri()) {
            return format!("{}?{}", next.path(), next.query().unwrap_or_default());
        }
        let cookie = cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match form.take() {
            Some(fields) => http.post(next.clone()).form(&fields),
            None => http.get(next.clone()),
        };
        let response = request.header("cookie", cookie).send().await.unwrap();
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                cookies.remove(name);
            } else {
                cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            next = next.join(&location).unwrap();
            continue;
        }
        assert_eq!(status, 200, "at {next}: {}", response.text().await.unwrap());
        assert!(
            next.path().starts_with("/interaction/"),
            "unexpected page {next}"
        );
        form = Some(vec![
            ("prompt", "login"),
            ("login", account),
            ("password", "anything"),
        ]);
    }
    panic!("too many redirects from {authorization_url}")
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
