//! SmartPlan Application against a ciam-saml identity provider, through its router.
#![expect(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Duration, TimeZone, Utc};
use ciam_core::ids::{IdentityId, OrganizationId, SessionId};
use ciam_core::sessions::AuthMethod;
use ciam_core::{FixedClock, SeededRandom};
use ciam_saml::SigningKey;
use ciam_saml::idp::{
    IdentityProvider, IdpConfig, InMemoryServiceProviderRegistry, KeyRing, ServiceProvider,
    SignedInUser,
};
use smartplan_app::{AppConfig, AppState, app};
use tower::ServiceExt;
use uuid::Uuid;

const BASE: &str = "http://127.0.0.1:8081";
const IDP_ENTITY: &str = "http://127.0.0.1:8080/saml/metadata";
const IDP_SSO: &str = "http://127.0.0.1:8080/saml/sso";
const IDP_SLO: &str = "http://127.0.0.1:8080/saml/slo";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../ciam-saml/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(name: &str) -> SigningKey {
    SigningKey::from_pem(
        &fixture(&format!("{name}.key")),
        &fixture(&format!("{name}.crt")),
    )
    .unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn idp_with(key_name: &str) -> IdentityProvider {
    IdentityProvider::new(IdpConfig::new(
        IDP_ENTITY,
        IDP_SSO,
        IDP_SLO,
        KeyRing::new(key(key_name)),
        b"pairwise-secret-for-app-tests-only-32b".to_vec(),
    ))
}

fn jeremy(roles: &[&str]) -> SignedInUser {
    SignedInUser {
        identity_id: IdentityId::from_uuid(Uuid::from_u128(0x1001)),
        email: "jeremy.mills@citygroup.example".into(),
        given_name: Some("Jeremy".into()),
        family_name: Some("Mills".into()),
        organization_id: OrganizationId::from_uuid(Uuid::from_u128(0x2002)),
        organization_name: "City Group, Inc.".into(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        auth_methods: vec![AuthMethod::Pwd, AuthMethod::Sms],
        authenticated_at: now() - Duration::minutes(1),
        session_id: SessionId::from_uuid(Uuid::from_u128(0x3003)),
        session_expires_at: now() + Duration::hours(8),
    }
}

struct World {
    idp: IdentityProvider,
    registry: InMemoryServiceProviderRegistry,
    sp: ServiceProvider,
    state: AppState,
    clock: Arc<FixedClock>,
    random: SeededRandom,
}

async fn world_with(allow_idp_initiated: bool) -> World {
    let idp = idp_with("idp");
    let mut config = AppConfig::new(BASE, idp.metadata(false, None).unwrap());
    config.allow_idp_initiated = allow_idp_initiated;
    let clock = Arc::new(FixedClock::new(now()));
    let state = AppState::new(config, clock.clone(), Arc::new(SeededRandom::new(11))).unwrap();
    let mut sp = ServiceProvider::from_metadata(&state.sp_metadata()).unwrap();
    sp.allow_idp_initiated = true;
    sp.service_key = Some("smartplan-app".into());
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp.clone());
    World {
        idp,
        registry,
        sp,
        state,
        clock,
        random: SeededRandom::new(5),
    }
}

async fn world() -> World {
    world_with(false).await
}

async fn send(world: &World, request: Request<Body>) -> Response {
    app(world.state.clone()).oneshot(request).await.unwrap()
}

async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(path: &str, cookies: &str) -> Request<Body> {
    let mut builder = Request::get(path);
    if !cookies.is_empty() {
        builder = builder.header(header::COOKIE, cookies);
    }
    builder.body(Body::empty()).unwrap()
}

fn post_form(path: &str, cookies: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let mut builder =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !cookies.is_empty() {
        builder = builder.header(header::COOKIE, cookies);
    }
    builder.body(Body::from(body)).unwrap()
}

/// `name=value` of each Set-Cookie header (attributes dropped).
fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

fn cookie_value(response: &Response, name: &str) -> Option<String> {
    set_cookies(response)
        .into_iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

fn location(response: &Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Starts single sign-on: the IdP's view of the request and the SSO cookie.
async fn start_login(world: &World, path: &str) -> (String, String) {
    let response = send(world, get(path, "")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let url = location(&response);
    assert!(url.starts_with(&format!("{IDP_SSO}?SAMLRequest=")), "{url}");
    let sso = cookie_value(&response, "smartplan_app_sso").unwrap();
    let query = url.split_once('?').unwrap().1.to_owned();
    (query, format!("smartplan_app_sso={sso}"))
}

/// The IdP answers the request for Jeremy with these roles: the `SAMLResponse` field.
async fn idp_answers(world: &World, query: &str, roles: &[&str]) -> (String, Option<String>) {
    let request = world
        .idp
        .receive_redirect(&world.registry, query, now())
        .await
        .unwrap();
    assert_eq!(request.sp_entity_id(), world.state.entity_id());
    assert_eq!(request.acs_url(), world.state.acs_url());
    let response = world
        .idp
        .respond(&world.sp, &request, &jeremy(roles), now(), &world.random)
        .unwrap();
    (
        response.encoded(),
        response.relay_state().map(str::to_owned),
    )
}

async fn sign_in(world: &World, roles: &[&str]) -> String {
    let (query, sso) = start_login(world, "/login").await;
    let (saml, relay) = idp_answers(world, &query, roles).await;
    let response = send(
        world,
        post_form(
            "/saml/acs",
            &sso,
            &[("SAMLResponse", &saml), ("RelayState", &relay.unwrap())],
        ),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/");
    let session = cookie_value(&response, "smartplan_app_session").unwrap();
    format!("smartplan_app_session={session}")
}

#[tokio::test]
async fn signed_out_home_offers_sign_in() {
    let world = world().await;
    let response = send(&world, get("/", "")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"));
    let html = body_text(response).await;
    assert!(html.contains("Sign in with MySmartPlan"));
    assert!(html.contains(r#"href="/login""#));
}

#[tokio::test]
async fn sp_initiated_sign_in_shows_person_organization_and_roles() {
    let world = world().await;
    let session = sign_in(&world, &["consumption.read", "consumption.export"]).await;
    let html = body_text(send(&world, get("/", &session)).await).await;
    assert!(html.contains("Welcome, Jeremy Mills"), "{html}");
    assert!(html.contains("jeremy.mills@citygroup.example"));
    assert!(html.contains("City Group, Inc."));
    assert!(html.contains("consumption.read"));
    assert!(html.contains("consumption.export"));
    assert!(html.contains("Export consumption data"));
    assert!(html.contains("password and a second factor"));
    assert!(!html.contains("billing.read"));
}

#[tokio::test]
async fn return_to_is_kept_and_only_local() {
    let world = world().await;
    let (query, sso) = start_login(&world, "/login?return_to=%2F%3Fsection%3Droles").await;
    let (saml, _) = idp_answers(&world, &query, &["billing.read"]).await;
    let response = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", &saml)]),
    )
    .await;
    assert_eq!(location(&response), "/?section=roles");

    let (query, sso) = start_login(&world, "/login?return_to=%2F%2Fevil.example%2F").await;
    let (saml, _) = idp_answers(&world, &query, &["billing.read"]).await;
    let response = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", &saml)]),
    )
    .await;
    assert_eq!(location(&response), "/");
}

#[tokio::test]
async fn no_roles_are_explained() {
    let world = world().await;
    let session = sign_in(&world, &[]).await;
    let html = body_text(send(&world, get("/", &session)).await).await;
    assert!(html.contains("You have no roles in SmartPlan Application yet"));
}

#[tokio::test]
async fn a_replayed_response_is_refused_and_starts_no_session() {
    let world = world().await;
    let (query, sso) = start_login(&world, "/login").await;
    let (saml, _) = idp_answers(&world, &query, &["consumption.read"]).await;
    let first = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", &saml)]),
    )
    .await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    // The same response with the same cookie again: the pending request is used up.
    let again = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", &saml)]),
    )
    .await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(cookie_value(&again, "smartplan_app_session").is_none());
    let html = body_text(again).await;
    assert!(html.contains("was not started here"), "{html}");
}

#[tokio::test]
async fn a_response_without_the_browser_cookie_is_refused() {
    let world = world().await;
    let (query, _sso) = start_login(&world, "/login").await;
    let (saml, _) = idp_answers(&world, &query, &["consumption.read"]).await;
    let response = send(
        &world,
        post_form("/saml/acs", "", &[("SAMLResponse", &saml)]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(cookie_value(&response, "smartplan_app_session").is_none());
}

#[tokio::test]
async fn a_response_signed_by_another_key_is_refused() {
    let world = world().await;
    let (query, sso) = start_login(&world, "/login").await;
    let impostor = idp_with("other-idp");
    let request = impostor
        .receive_redirect(&world.registry, &query, now())
        .await
        .unwrap();
    let forged = impostor
        .respond(
            &world.sp,
            &request,
            &jeremy(&["billing.read"]),
            now(),
            &world.random,
        )
        .unwrap();
    let response = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", &forged.encoded())]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(cookie_value(&response, "smartplan_app_session").is_none());
    assert!(body_text(response).await.contains("signature is invalid"));
}

#[tokio::test]
async fn an_expired_response_is_refused() {
    let world = world().await;
    let (query, sso) = start_login(&world, "/login").await;
    let (saml, _) = idp_answers(&world, &query, &["consumption.read"]).await;
    world.clock.advance(Duration::minutes(9));
    let response = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", &saml)]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(response).await.contains("assertion expired"));
}

#[tokio::test]
async fn garbage_and_missing_fields_are_refused_plainly() {
    let world = world().await;
    let (_, sso) = start_login(&world, "/login").await;
    let response = send(
        &world,
        post_form("/saml/acs", &sso, &[("SAMLResponse", "not base64 at all!")]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(response).await.contains("malformed response"));

    let response = send(&world, post_form("/saml/acs", "", &[("other", "x")])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(response).await.contains("sent no SAML response"));
}

#[tokio::test]
async fn idp_initiated_only_when_allowed() {
    for allowed in [false, true] {
        let world = world_with(allowed).await;
        let response = world
            .idp
            .respond_unsolicited(
                &world.sp,
                &jeremy(&["consumption.read"]),
                Some("/"),
                now(),
                &world.random,
            )
            .unwrap();
        let answer = send(
            &world,
            post_form(
                "/saml/acs",
                "",
                &[("SAMLResponse", &response.encoded()), ("RelayState", "/")],
            ),
        )
        .await;
        if allowed {
            assert_eq!(answer.status(), StatusCode::SEE_OTHER);
            assert!(cookie_value(&answer, "smartplan_app_session").is_some());
        } else {
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        }
    }
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let world = world().await;
    let session = sign_in(&world, &["consumption.read"]).await;
    let response = send(&world, post_form("/logout", &session, &[])).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/?signed_out=1");
    assert_eq!(
        cookie_value(&response, "smartplan_app_session").as_deref(),
        Some("")
    );
    // The old cookie no longer works even if the browser kept it.
    let html = body_text(send(&world, get("/?signed_out=1", &session)).await).await;
    assert!(html.contains("You are signed out"));
    assert!(!html.contains("Jeremy"));
}

#[tokio::test]
async fn session_ends_with_its_lifetime() {
    let world = world().await;
    let session = sign_in(&world, &["consumption.read"]).await;
    world
        .clock
        .advance(Duration::hours(8) + Duration::seconds(1));
    let html = body_text(send(&world, get("/", &session)).await).await;
    assert!(html.contains("Sign in with MySmartPlan"));
}

#[tokio::test]
async fn metadata_names_the_acs_and_the_idp_accepts_it() {
    let world = world().await;
    let response = send(&world, get("/saml/metadata", "")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/samlmetadata+xml"
    );
    let xml = body_text(response).await;
    assert!(xml.contains(&format!("entityID=\"{BASE}/saml/metadata\"")));
    let sp = ServiceProvider::from_metadata(&xml).unwrap();
    assert_eq!(
        sp.assertion_consumer_services[0].location,
        format!("{BASE}/saml/acs")
    );
}

#[tokio::test]
async fn setup_refuses_bad_configuration() {
    let idp = idp_with("idp");
    let metadata = idp.metadata(false, None).unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let random = Arc::new(SeededRandom::new(1));
    let bad_base = AppState::new(
        AppConfig::new("ftp://app", metadata.clone()),
        clock.clone(),
        random.clone(),
    );
    assert!(bad_base.unwrap_err().to_string().contains("base url"));
    let bad_metadata = AppState::new(
        AppConfig::new(BASE, "<not-metadata/>"),
        clock.clone(),
        random.clone(),
    );
    assert!(
        bad_metadata
            .unwrap_err()
            .to_string()
            .contains("identity provider metadata was refused")
    );
    let fetched = smartplan_app::fetch_metadata("file:///etc/passwd").await;
    assert!(fetched.is_err());
}

#[tokio::test]
async fn unknown_pages_are_404() {
    let world = world().await;
    let response = send(&world, get("/nope", "")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(body_text(response).await.contains("Page not found"));
}
