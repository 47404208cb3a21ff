//! OIDC sign-in against a real OpenID Connect provider: the npm package `oidc-provider`,
//! started by this harness on 127.0.0.1 (`tests/oidc-peer/peer.mjs`), playing Google, City
//! Group's own IdP, an IdP that hands out another issuer's tokens (mix-up) and a server that
//! redirects back-channel calls. The browser leg is driven with reqwest against the provider's
//! development interactions (login form, automatic consent).
//!
//! The harness (`ciam_tests::oidc_peer`, shared with the SmartPlan server's tests) copies the
//! peer into the cargo target directory and runs `npm ci` there when `node_modules` is missing. Without node, npm or the npm registry the tests fail when
//! `CI=true` and print a skip message otherwise.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ciam_core::Clock as _;
use ciam_core::events::EventKind;
use ciam_core::login::{
    ClaimRoleMapping, ClientSecret, GOOGLE_ISSUER, IdentityProviderConnection, LoginError,
    LoginStep, OidcClientSettings, OidcError, OidcLogin, OidcOptions, SigningAlgorithm,
};
use ciam_core::organizations::Organization;
use ciam_core::sessions::AuthMethod;
use ciam_core::{Ciam, Principal, SystemClock};

use crate::login::{attempt, auth_ciam, city_with_jeremy, signed_in};
use crate::support::{APP, World, password};

const REDIRECT_URI: &str = "http://127.0.0.1:9/login/oidc/callback";
const SOURCE: Option<&str> = Some("198.51.100.20");

/// The issuers of the running peer.
#[derive(Clone, Debug)]
struct Peer {
    google: String,
    city: String,
    mixup: String,
    audience: String,
    redirector: String,
}

fn start_peer() -> Result<Peer, String> {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("oidc-peer");
    let issuers = ciam_tests::oidc_peer::start(&dir, REDIRECT_URI)?;
    let get = |name: &str| issuers.get(name).cloned().ok_or(format!("no {name}"));
    Ok(Peer {
        google: get("google")?,
        city: get("city")?,
        mixup: get("mixup")?,
        audience: get("audience")?,
        redirector: get("redirector")?,
    })
}

/// The running peer, or `None` (skip) outside CI when node or npm is missing.
fn peer_or_skip(test: &str) -> Option<Peer> {
    static PEER: OnceLock<Result<Peer, String>> = OnceLock::new();
    ciam_tests::oidc_peer::or_skip(PEER.get_or_init(start_peer), test)
}

/// What the provider sent back to our callback.
#[derive(Debug)]
enum Callback {
    Code { code: String, state: String },
    Error(String),
}

/// Plays the browser at the provider (signs in as `account`) and reads our callback.
#[expect(
    clippy::panic,
    reason = "test helper: an unexpected answer is a failed test"
)]
async fn browser(authorization_url: &str, account: &str) -> Callback {
    let callback = ciam_tests::oidc_peer::browser(authorization_url, REDIRECT_URI, account)
        .await
        .unwrap();
    let query: BTreeMap<String, String> = callback.query_pairs().into_owned().collect();
    match (query.get("code"), query.get("state"), query.get("error")) {
        (Some(code), Some(state), _) => Callback::Code {
            code: code.clone(),
            state: state.clone(),
        },
        (_, _, Some(error)) => Callback::Error(error.clone()),
        _ => panic!("unexpected callback {callback}"),
    }
}

fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A world whose clock reads real time (the provider's tokens carry real times).
async fn world_now() -> World {
    let world = World::new().await;
    world.clock.set(SystemClock.now());
    world
}

fn oidc() -> OidcLogin {
    OidcLogin::new(OidcOptions::new(REDIRECT_URI)).unwrap()
}

fn connection(
    ciam: &Ciam,
    display_name: &str,
    issuer: &str,
    client_id: &str,
) -> IdentityProviderConnection {
    let secret = ciam
        .identity_providers()
        .seal_client_secret(&ClientSecret::new("smartplan-secret"))
        .unwrap();
    IdentityProviderConnection::oidc(
        display_name,
        OidcClientSettings::new(issuer, client_id, secret),
    )
}

fn city_connection(ciam: &Ciam, peer: &Peer, just_in_time: bool) -> IdentityProviderConnection {
    let mut connection = connection(ciam, "City Group login", &peer.city, "smartplan");
    if let Some(oidc) = &mut connection.oidc {
        oidc.scopes.push("groups".into());
    }
    connection.just_in_time = just_in_time;
    connection.role_mapping = vec![ClaimRoleMapping {
        claim: "groups".into(),
        value: "energy".into(),
        business_role: "energy-manager".into(),
    }];
    connection
}

async fn with_city_idp(world: &World, peer: &Peer, just_in_time: bool) -> (Ciam, Organization) {
    let (city, _, _) = city_with_jeremy(world, false).await;
    let ciam = auth_ciam(world, None);
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            &peer.city,
            Some(city.id),
            city_connection(&ciam, peer, just_in_time),
        )
        .await
        .unwrap();
    (ciam, city)
}

/// Begins the round trip for `attempt` and plays the browser as `account`.
#[expect(
    clippy::panic,
    reason = "test helper: an unexpected answer is a failed test"
)]
async fn round_trip(
    ciam: &Ciam,
    oidc: &OidcLogin,
    attempt: &ciam_core::login::AttemptToken,
    account: &str,
) -> (ciam_core::login::AttemptToken, String, String) {
    let redirect = ciam.login().oidc_begin(oidc, attempt).await.unwrap();
    match browser(&redirect.authorization_url, account).await {
        Callback::Code { code, state } => (redirect.attempt, code, state),
        Callback::Error(error) => panic!("the provider refused the sign-in: {error}"),
    }
}

#[tokio::test]
async fn a_city_group_employee_signs_in_through_city_groups_own_oidc_idp() {
    let Some(peer) =
        peer_or_skip("a_city_group_employee_signs_in_through_city_groups_own_oidc_idp")
    else {
        return;
    };
    let world = world_now().await;
    let (ciam, city) = with_city_idp(&world, &peer, true).await;
    let oidc = oidc();
    let login = ciam.login();

    // Home realm discovery by the email's domain.
    let step = login
        .start("anna.virtanen@citygroup.example", SOURCE)
        .await
        .unwrap();
    let LoginStep::Federated {
        attempt: first,
        organization,
        idp,
    } = step
    else {
        panic!("City Group signs in at its own IdP, got {step:?}")
    };
    assert_eq!(organization, city.id);
    assert_eq!(idp.provider, peer.city);

    // The authorization request: code flow, PKCE S256, state, nonce, the scopes, a hint.
    let redirect = login.oidc_begin(&oidc, &first).await.unwrap();
    let request = query(&redirect.authorization_url);
    assert!(redirect.authorization_url.starts_with(&peer.city));
    assert_eq!(request["response_type"], "code");
    assert_eq!(request["client_id"], "smartplan");
    assert_eq!(request["redirect_uri"], REDIRECT_URI);
    assert_eq!(request["code_challenge_method"], "S256");
    assert_eq!(request["code_challenge"].len(), 43);
    assert!(request["state"].len() >= 43 && request["nonce"].len() >= 43);
    assert_eq!(request["scope"], "openid email profile groups");
    assert_eq!(request["login_hint"], "anna.virtanen@citygroup.example");

    let Callback::Code { code, state } = browser(&redirect.authorization_url, "anna").await else {
        panic!("the IdP refused")
    };
    let started = signed_in(
        login
            .oidc_finish(&oidc, &redirect.attempt, &code, &state, SOURCE)
            .await
            .unwrap(),
    );
    assert_eq!(started.session.methods, vec![AuthMethod::Fed]);
    let anna = started.session.identity;
    let identity = ciam.store().identity(anna).await.unwrap().unwrap();
    assert_eq!(identity.email.as_str(), "anna.virtanen@citygroup.example");
    assert_eq!(identity.name.full(), "Anna Virtanen");
    // Created just in time in City Group, the `energy` group mapped to the energy manager role,
    // which gives application roles through City Group's contract.
    let membership = ciam
        .store()
        .membership_of(anna, city.id)
        .await
        .unwrap()
        .unwrap();
    assert!(membership.is_active());
    let roles = ciam
        .roles()
        .resolve(&Principal::System, anna, APP)
        .await
        .unwrap();
    assert!(roles.app_roles.contains("consumption.read"));
    let link = ciam
        .store()
        .credential_by_federated_link(&peer.city, "anna")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link.identity, anna);
    let valid = ciam.sessions().validate(&started.token).await.unwrap();
    assert_eq!(valid.principal.identity(), Some(anna));
    assert!(world.events().await.iter().any(|e| e.identity == Some(anna)
        && matches!(&e.kind, EventKind::FederatedAccountCreated { provider, .. } if provider == &peer.city)));

    // The same callback cannot be used twice.
    assert!(matches!(
        login
            .oidc_finish(&oidc, &redirect.attempt, &code, &state, SOURCE)
            .await,
        Err(LoginError::Oidc(OidcError::Replayed))
    ));
    // Nor the code with another attempt: its state does not match, and with that attempt's
    // own state the provider refuses the used code (and the other PKCE verifier).
    let other = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let other = login.oidc_begin(&oidc, &other).await.unwrap();
    assert!(matches!(
        login
            .oidc_finish(&oidc, &other.attempt, &code, &state, SOURCE)
            .await,
        Err(LoginError::Oidc(OidcError::StateMismatch))
    ));
    let other_state = query(&other.authorization_url)["state"].clone();
    assert!(matches!(
        login
            .oidc_finish(&oidc, &other.attempt, &code, &other_state, SOURCE)
            .await,
        Err(LoginError::Oidc(OidcError::TokenExchange(_)))
    ));
}

#[tokio::test]
async fn a_wrong_state_changes_nothing_and_a_wrong_nonce_is_refused() {
    let Some(peer) = peer_or_skip("a_wrong_state_changes_nothing_and_a_wrong_nonce_is_refused")
    else {
        return;
    };
    let world = world_now().await;
    let (ciam, _) = with_city_idp(&world, &peer, true).await;
    let oidc = oidc();
    let login = ciam.login();
    let first = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "anna").await;
    assert!(matches!(
        login
            .oidc_finish(&oidc, &kept, &code, "forged-state", SOURCE)
            .await,
        Err(LoginError::Oidc(OidcError::StateMismatch))
    ));
    // An attempt that never went to the provider has no request to match.
    assert!(matches!(
        login
            .oidc_finish(&oidc, &first, &code, &state, SOURCE)
            .await,
        Err(LoginError::WrongStep)
    ));
    // The wrong state consumed nothing: the genuine callback still completes.
    signed_in(
        login
            .oidc_finish(&oidc, &kept, &code, &state, SOURCE)
            .await
            .unwrap(),
    );

    // An authorization request with another nonce (injected by an attacker) yields an ID token
    // that does not match the attempt's nonce.
    let first = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let redirect = login.oidc_begin(&oidc, &first).await.unwrap();
    let mut url = url::Url::parse(&redirect.authorization_url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            let v = if k == "nonce" {
                "attacker-nonce".into()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let Callback::Code { code, state } = browser(url.as_str(), "anna").await else {
        panic!("the IdP refused")
    };
    let refused = login
        .oidc_finish(&oidc, &redirect.attempt, &code, &state, SOURCE)
        .await;
    assert!(
        matches!(&refused, Err(LoginError::Oidc(OidcError::InvalidIdToken(why))) if why.to_lowercase().contains("nonce")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let Some(peer) = peer_or_skip("a_token_from_another_issuer_is_refused") else {
        return;
    };
    let world = world_now().await;
    let (city, _, _) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    // City Group's connection is the mix-up IdP: its token endpoint answers with City Group
    // IdP's tokens (same signing keys, another issuer).
    let mut mixup = city_connection(&ciam, &peer, true);
    if let Some(oidc) = &mut mixup.oidc {
        oidc.issuer = peer.mixup.clone();
    }
    ciam.identity_providers()
        .add_connection(&Principal::System, &peer.mixup, Some(city.id), mixup)
        .await
        .unwrap();
    let oidc = oidc();
    let login = ciam.login();
    let first = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let redirect = login.oidc_begin(&oidc, &first).await.unwrap();
    assert!(redirect.authorization_url.starts_with(&peer.mixup));
    // The browser is sent to the other issuer with the same request.
    let at_city = redirect
        .authorization_url
        .replacen(&peer.mixup, &peer.city, 1);
    let Callback::Code { code, state } = browser(&at_city, "anna").await else {
        panic!("the IdP refused")
    };
    let refused = login
        .oidc_finish(&oidc, &redirect.attempt, &code, &state, SOURCE)
        .await;
    assert!(
        matches!(&refused, Err(LoginError::Oidc(OidcError::InvalidIdToken(why))) if why.contains("issuer")),
        "{refused:?}"
    );
    assert!(
        ciam.store()
            .credential_by_federated_link(&peer.mixup, "anna")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_token_for_another_client_is_refused() {
    let Some(peer) = peer_or_skip("a_token_for_another_client_is_refused") else {
        return;
    };
    let world = world_now().await;
    let (city, _, _) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    // City Group's connection is the peer's `audience` provider, whose token endpoint redeems
    // our exchange as `another-client`: the ID token it answers is genuine (right issuer, keys,
    // nonce, algorithm) but issued to another relying party.
    let mut connection = city_connection(&ciam, &peer, true);
    if let Some(oidc) = &mut connection.oidc {
        oidc.issuer = peer.audience.clone();
    }
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            &peer.audience,
            Some(city.id),
            connection,
        )
        .await
        .unwrap();
    let oidc = oidc();
    let login = ciam.login();
    // The browser asks for a code for `another-client` with our request's state, nonce and
    // PKCE challenge.
    let first = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let redirect = login.oidc_begin(&oidc, &first).await.unwrap();
    assert_eq!(query(&redirect.authorization_url)["client_id"], "smartplan");
    let for_another = redirect
        .authorization_url
        .replacen("client_id=smartplan&", "client_id=another-client&", 1)
        .replacen("&client_id=smartplan", "&client_id=another-client", 1);
    assert_eq!(query(&for_another)["client_id"], "another-client");
    let Callback::Code { code, state } = browser(&for_another, "anna").await else {
        panic!("the IdP refused")
    };
    let refused = login
        .oidc_finish(&oidc, &redirect.attempt, &code, &state, SOURCE)
        .await;
    assert!(
        matches!(&refused, Err(LoginError::Oidc(OidcError::InvalidIdToken(why))) if why.contains("Invalid audiences") && why.contains("another-client")),
        "{refused:?}"
    );
    assert!(
        ciam.store()
            .credential_by_federated_link(&peer.audience, "anna")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_signature_algorithm_is_pinned_per_provider() {
    let Some(peer) = peer_or_skip("the_signature_algorithm_is_pinned_per_provider") else {
        return;
    };
    let world = world_now().await;
    let (city, _, _) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    // The client whose ID tokens are ES256, with the default RS256-only allowlist.
    let mut es256 = city_connection(&ciam, &peer, true);
    if let Some(oidc) = &mut es256.oidc {
        oidc.client_id = "smartplan-es256".into();
    }
    let stored = ciam
        .identity_providers()
        .add_connection(&Principal::System, &peer.city, Some(city.id), es256.clone())
        .await
        .unwrap();
    let oidc = oidc();
    let login = ciam.login();
    let first = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "anna").await;
    let refused = login.oidc_finish(&oidc, &kept, &code, &state, SOURCE).await;
    assert!(
        matches!(&refused, Err(LoginError::Oidc(OidcError::InvalidIdToken(why))) if why.contains("ES256")),
        "{refused:?}"
    );
    // Allowing ES256 for this provider lets the same kind of token through.
    if let Some(oidc) = &mut es256.oidc {
        oidc.allowed_algs = vec![SigningAlgorithm::Es256];
    }
    ciam.identity_providers()
        .update_connection(&Principal::System, &peer.city, stored.version, es256)
        .await
        .unwrap();
    let first = attempt(
        login
            .start("anna.virtanen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "anna").await;
    signed_in(
        login
            .oidc_finish(&oidc, &kept, &code, &state, SOURCE)
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn an_unknown_subject_is_refused_or_created_just_in_time() {
    let Some(peer) = peer_or_skip("an_unknown_subject_is_refused_or_created_just_in_time") else {
        return;
    };
    let world = world_now().await;
    let (ciam, city) = with_city_idp(&world, &peer, false).await;
    let oidc = oidc();
    let login = ciam.login();
    let first = attempt(
        login
            .start("ville.nieminen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "ville").await;
    assert!(matches!(
        login.oidc_finish(&oidc, &kept, &code, &state, SOURCE).await,
        Err(LoginError::NotProvisioned)
    ));
    let stored = ciam
        .identity_providers()
        .connections(&Principal::System, Some(city.id))
        .await
        .unwrap();
    ciam.identity_providers()
        .update_connection(
            &Principal::System,
            &peer.city,
            stored[0].version,
            city_connection(&ciam, &peer, true),
        )
        .await
        .unwrap();
    // City Group's IdP is authoritative for its own domain, verified flag or not.
    let first = attempt(
        login
            .start("ville.nieminen@citygroup.example", SOURCE)
            .await
            .unwrap(),
    );
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "ville").await;
    let started = signed_in(
        login
            .oidc_finish(&oidc, &kept, &code, &state, SOURCE)
            .await
            .unwrap(),
    );
    let ville = ciam
        .store()
        .identity(started.session.identity)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ville.email.as_str(), "ville.nieminen@citygroup.example");
}

#[tokio::test]
async fn google_links_an_existing_account_after_its_password_and_signs_up_leads() {
    let Some(peer) =
        peer_or_skip("google_links_an_existing_account_after_its_password_and_signs_up_leads")
    else {
        return;
    };
    let world = world_now().await;
    let (city, _, jeremy) = city_with_jeremy(&world, false).await;
    let ciam = auth_ciam(&world, None);
    // "Google": the preset's shape, with the peer's issuer (the real one is GOOGLE_ISSUER).
    let google = IdentityProviderConnection {
        leads_organization: Some(city.id),
        ..connection(&ciam, "Google", &peer.google, "smartplan")
    };
    ciam.identity_providers()
        .add_connection(&Principal::System, &peer.google, None, google)
        .await
        .unwrap();
    let oidc = oidc();
    let login = ciam.login();

    // Jeremy's Google account has his verified email: his password links it.
    let first = login.start_at_provider(&peer.google, SOURCE).await.unwrap();
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "jeremy").await;
    let step = login
        .oidc_finish(&oidc, &kept, &code, &state, SOURCE)
        .await
        .unwrap();
    let LoginStep::LinkAccount { attempt: link, .. } = step else {
        panic!("expected to prove the password, got {step:?}")
    };
    let started = signed_in(login.password(&link, &password()).await.unwrap());
    assert_eq!(started.session.identity, jeremy);
    assert_eq!(
        started.session.methods,
        vec![AuthMethod::Fed, AuthMethod::Pwd]
    );
    let first = login.start_at_provider(&peer.google, SOURCE).await.unwrap();
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "jeremy").await;
    assert_eq!(
        signed_in(
            login
                .oidc_finish(&oidc, &kept, &code, &state, SOURCE)
                .await
                .unwrap()
        )
        .session
        .identity,
        jeremy
    );

    // A new Google user becomes a lead (policy of this connection).
    let first = login.start_at_provider(&peer.google, SOURCE).await.unwrap();
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "karl").await;
    let karl = signed_in(
        login
            .oidc_finish(&oidc, &kept, &code, &state, SOURCE)
            .await
            .unwrap(),
    );
    let identity = ciam
        .store()
        .identity(karl.session.identity)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.email.as_str(), "karl.kearnes@gmail.com");
    // An unverified Google email creates nobody.
    let first = login.start_at_provider(&peer.google, SOURCE).await.unwrap();
    let (kept, code, state) = round_trip(&ciam, &oidc, &first, "unverified").await;
    assert!(matches!(
        login.oidc_finish(&oidc, &kept, &code, &state, SOURCE).await,
        Err(LoginError::IncompleteClaims { .. })
    ));
}

#[tokio::test]
async fn back_channel_calls_follow_no_redirects() {
    let Some(peer) = peer_or_skip("back_channel_calls_follow_no_redirects") else {
        return;
    };
    let world = world_now().await;
    let ciam = auth_ciam(&world, None);
    ciam.identity_providers()
        .add_connection(
            &Principal::System,
            &peer.redirector,
            None,
            connection(&ciam, "Redirecting", &peer.redirector, "smartplan"),
        )
        .await
        .unwrap();
    let first = ciam
        .login()
        .start_at_provider(&peer.redirector, SOURCE)
        .await
        .unwrap();
    let refused = ciam.login().oidc_begin(&oidc(), &first).await;
    assert!(
        matches!(&refused, Err(LoginError::Oidc(OidcError::Discovery(why))) if why.contains("302")),
        "{refused:?}"
    );
    // The Google preset names Google's issuer.
    let preset = OidcClientSettings::google(
        "id",
        ciam.identity_providers()
            .seal_client_secret(&ClientSecret::new("s"))
            .unwrap(),
    );
    assert_eq!(preset.issuer, GOOGLE_ISSUER);
    assert_eq!(preset.allowed_algs, vec![SigningAlgorithm::Rs256]);
}
