//! The SAML IdP endpoints through the router, end to end with SmartPlan Application (the demo
//! SP, `smartplan_app`) on the same fixed clock: metadata (and key rollover), SP-initiated sign-on
//! on both bindings with the detour through sign-in, refusals, `IsPassive` / `ForceAuthn`, no
//! access, IdP-initiated launch, and single logout.

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Duration;
use ciam_core::{Principal, SeededRandom};
use ciam_saml::SigningKey;
use ciam_saml::idp::{ServiceProviderOptions, ServiceProviderRegistrations};
use smartplan::demo::{APP_SERVICE, JEREMY, SCOTT};

use crate::support::*;

const APP_BASE: &str = "http://127.0.0.1:8081";

fn options(allow_idp_initiated: bool) -> ServiceProviderOptions {
    ServiceProviderOptions {
        service_key: Some(APP_SERVICE.to_owned()),
        allow_idp_initiated,
        ..ServiceProviderOptions::default()
    }
}

/// SmartPlan Application set up against the test app's metadata, on the same fixed clock.
fn application_unregistered(
    app: &TestApp,
    metadata: &str,
    accepts_unsolicited: bool,
) -> smartplan_app::AppState {
    let mut config = smartplan_app::AppConfig::new(APP_BASE, metadata);
    config.allow_idp_initiated = accepts_unsolicited;
    smartplan_app::AppState::new(config, app.clock.clone(), Arc::new(SeededRandom::new(9))).unwrap()
}

/// SmartPlan Application, registered with the IdP for the service `smartplan-app`.
async fn application(app: &TestApp, allow_idp_initiated: bool) -> smartplan_app::AppState {
    let metadata = app.client().get("/saml/metadata").await.body;
    let sp = application_unregistered(app, &metadata, allow_idp_initiated);
    ServiceProviderRegistrations::new(app.state.ciam.clone())
        .register(
            &Principal::System,
            &sp.sp_metadata(),
            options(allow_idp_initiated),
        )
        .await
        .unwrap();
    sp
}

fn browser_of(app: &TestApp, sp: &smartplan_app::AppState) -> Client {
    Client::for_router(smartplan_app::app(sp.clone()), &app.state)
}

fn local(url: &str) -> String {
    url.strip_prefix(BASE_URL)
        .unwrap_or_else(|| panic!("not on the IdP: {url}"))
        .to_owned()
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of a hidden field of the POST-binding form.
fn field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker)? + marker.len();
    let rest = &html[at..];
    Some(unescape(&rest[..rest.find('"')?]))
}

fn form_action(html: &str) -> String {
    let marker = "action=\"";
    let at = html.find(marker).unwrap() + marker.len();
    let rest = &html[at..];
    unescape(&rest[..rest.find('"').unwrap()])
}

fn response_xml(html: &str) -> String {
    let encoded = field(html, "SAMLResponse").expect("a SAMLResponse field");
    String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
}

/// Where a sign-in redirect says to come back to.
fn next_of(location: &str) -> String {
    let query = location
        .strip_prefix("/signin?")
        .unwrap_or_else(|| panic!("not a sign-in redirect: {location}"));
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .expect("a next parameter")
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn inflate(encoded: &str) -> String {
    let bytes = STANDARD.decode(encoded).unwrap();
    let mut text = String::new();
    flate2::read::DeflateDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn deflate(xml: &str) -> String {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(xml.as_bytes()).unwrap();
    STANDARD.encode(encoder.finish().unwrap())
}

fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Posts the IdP's form to the application's ACS and returns the application's home page.
async fn deliver(browser_app: &mut Client, form_page: &str) -> TestResponse {
    let mut fields = vec![(
        "SAMLResponse".to_owned(),
        field(form_page, "SAMLResponse").unwrap(),
    )];
    if let Some(relay) = field(form_page, "RelayState") {
        fields.push(("RelayState".to_owned(), relay));
    }
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let posted = browser_app.post_form_raw("/saml/acs", &fields).await;
    assert!(
        posted.status.is_redirection(),
        "the application refused the response: {} {}",
        posted.status,
        posted.body
    );
    browser_app.get(posted.location().unwrap()).await
}

/// The application's SP-initiated request: the IdP path (`/saml/sso?…`).
async fn start_at_application(browser_app: &mut Client) -> String {
    let login = browser_app.get("/login").await;
    assert!(login.status.is_redirection(), "{}", login.body);
    local(login.location().unwrap())
}

fn assert_post_form_to(page: &TestResponse, acs: &str) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(form_action(&page.body), acs);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(!csp.contains("script-src 'unsafe-inline'"), "{csp}");
    assert!(csp.contains(&format!("form-action {APP_BASE}")), "{csp}");
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn metadata_is_signed_and_read_by_the_application() {
    let app = app_default().await;
    let response = app.client().get("/saml/metadata").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(
        response.header("content-type"),
        Some("application/samlmetadata+xml")
    );
    let xml = &response.body;
    assert!(xml.contains("entityID=\"http://127.0.0.1:8080/saml/metadata\""));
    assert!(xml.contains("Location=\"http://127.0.0.1:8080/saml/sso\""));
    assert!(xml.contains("Location=\"http://127.0.0.1:8080/saml/slo\""));
    assert!(xml.contains("<ds:SignatureValue>") || xml.contains("SignatureValue"));
    assert!(xml.contains("validUntil=\"2026-11-30T09:00:00"));
    assert_eq!(xml.matches("<md:KeyDescriptor").count(), 1);
    // The application accepts it as its IdP's metadata.
    let sp = application_unregistered(&app, xml, false);
    assert_eq!(sp.idp_entity_id(), "http://127.0.0.1:8080/saml/metadata");
}

fn next_key() -> SigningKey {
    static KEY: OnceLock<smartplan::keys::GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        smartplan::keys::generate_signing_key("SmartPlan next IdP key", &SeededRandom::new(2))
            .unwrap()
    })
    .signing_key()
    .unwrap()
}

#[tokio::test]
async fn during_a_key_rollover_the_metadata_publishes_both_certificates() {
    let app = app_default().await;
    let mut idp = (*app.state.saml).clone();
    idp.config_mut().keys = idp.config().keys.clone().with_standby(next_key());
    let mut state = app.state.clone();
    state.saml = Arc::new(idp);
    let mut client = Client::for_router(smartplan::app(state), &app.state);
    let xml = client.get("/saml/metadata").await.body;
    assert_eq!(xml.matches("<md:KeyDescriptor").count(), 2, "{xml}");
    assert!(xml.contains(&saml_key().certificate().to_base64()));
    assert!(xml.contains(&next_key().certificate().to_base64()));
}

#[tokio::test]
async fn sp_initiated_sign_on_detours_through_sign_in_and_reaches_the_application() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser_app = browser_of(&app, &sp);
    let sso = start_at_application(&mut browser_app).await;
    assert!(sso.starts_with("/saml/sso?SAMLRequest="), "{sso}");

    let mut browser = app.client();
    let detour = browser.get(&sso).await;
    assert!(detour.status.is_redirection(), "{}", detour.body);
    // The raw request rides in `next`, exactly as received.
    assert_eq!(next_of(detour.location().unwrap()), sso);

    browser.sign_in_as(JEREMY).await;
    let page = browser.get(&sso).await;
    assert_post_form_to(&page, sp.acs_url());
    let xml = response_xml(&page.body);
    assert!(xml.contains("urn:oasis:names:tc:SAML:2.0:status:Success"));

    let home = deliver(&mut browser_app, &page.body).await;
    assert!(home.body.contains("Jeremy"), "{}", home.body);
    assert!(home.body.contains("Mills"));
    assert!(home.body.contains("City Group, Inc."));
    assert!(home.body.contains("consumption.read"));
    assert!(home.body.contains("consumption.export"));
}

#[tokio::test]
async fn a_request_is_checked_again_when_the_person_comes_back_from_sign_in() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser_app = browser_of(&app, &sp);
    let sso = start_at_application(&mut browser_app).await;
    let mut browser = app.client();
    let detour = browser.get(&sso).await;
    let next = next_of(detour.location().unwrap());

    // Too slow: the request is stale on return, and nothing is issued.
    app.clock.advance(Duration::minutes(15));
    browser.sign_in_as(JEREMY).await;
    let stale = browser.get(&next).await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST);
    assert!(stale.body.contains("stale"), "{}", stale.body);
    assert!(!stale.body.contains("SAMLResponse"));

    // A changed SAMLRequest is not a request at all.
    let tampered = next.replace("SAMLRequest=", "SAMLRequest=AAAA");
    let refused = browser.get(&tampered).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(!refused.body.contains("SAMLResponse"));
}

#[tokio::test]
async fn the_post_binding_is_carried_to_a_same_site_get_and_completes() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser_app = browser_of(&app, &sp);
    let sso = start_at_application(&mut browser_app).await;
    let xml = inflate(&query_param(&sso, "SAMLRequest"));
    let relay = query_param(&sso, "RelayState");
    let posted_request = STANDARD.encode(xml.as_bytes());

    let mut browser = app.client();
    let posted = browser
        .post_form_raw(
            "/saml/sso",
            &[
                ("SAMLRequest", posted_request.as_str()),
                ("RelayState", relay.as_str()),
            ],
        )
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let resume = posted.location().unwrap().to_owned();
    assert!(resume.starts_with("/saml/sso?binding=post&SAMLRequest="));

    let detour = browser.get(&resume).await;
    assert_eq!(next_of(detour.location().unwrap()), resume);
    browser.sign_in_as(JEREMY).await;
    let page = browser.get(&resume).await;
    assert_post_form_to(&page, sp.acs_url());
    assert_eq!(field(&page.body, "RelayState").as_deref(), Some(&*relay));
    let home = deliver(&mut browser_app, &page.body).await;
    assert!(home.body.contains("City Group, Inc."), "{}", home.body);
}

#[tokio::test]
async fn refused_requests_get_an_error_page_and_nothing_is_sent_to_the_sp() {
    let app = app_default().await;
    let mut browser = app.client();
    browser.sign_in_as(JEREMY).await;

    let empty = browser.get("/saml/sso").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.body.contains("refused"), "{}", empty.body);

    let garbage = browser.get("/saml/sso?SAMLRequest=not-base64!").await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);

    let missing = browser
        .post_form_raw("/saml/sso", &[("RelayState", "x")])
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.body.contains("SAMLRequest is missing"),
        "{}",
        missing.body
    );

    let doctype = STANDARD.encode("<!DOCTYPE x [<!ENTITY a \"b\">]><x/>");
    let refused = browser
        .post_form_raw("/saml/sso", &[("SAMLRequest", doctype.as_str())])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // An application that is not registered.
    let metadata = app.client().get("/saml/metadata").await.body;
    let stranger = application_unregistered(&app, &metadata, false);
    let mut stranger_browser = browser_of(&app, &stranger);
    let sso = start_at_application(&mut stranger_browser).await;
    let unknown = browser.get(&sso).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body.contains("not registered"), "{}", unknown.body);
    assert!(!unknown.body.contains("SAMLResponse"));
}

/// The application's request with an attribute added to `<samlp:AuthnRequest`, re-encoded for
/// the redirect binding (the application does not sign its requests).
async fn request_with(browser_app: &mut Client, attribute: &str) -> String {
    let sso = start_at_application(browser_app).await;
    let xml = inflate(&query_param(&sso, "SAMLRequest"));
    let changed = xml.replacen(
        "<samlp:AuthnRequest ",
        &format!("<samlp:AuthnRequest {attribute} "),
        1,
    );
    assert_ne!(changed, xml);
    format!(
        "/saml/sso?SAMLRequest={}&RelayState={}",
        enc(&deflate(&changed)),
        enc(&query_param(&sso, "RelayState"))
    )
}

#[tokio::test]
async fn a_passive_request_without_a_session_is_answered_no_passive() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser_app = browser_of(&app, &sp);
    let sso = request_with(&mut browser_app, "IsPassive=\"true\"").await;
    let page = app.client().get(&sso).await;
    assert_post_form_to(&page, sp.acs_url());
    assert!(response_xml(&page.body).contains("status:NoPassive"));
}

#[tokio::test]
async fn force_authn_with_an_old_session_ends_it_and_asks_for_a_new_sign_in() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser_app = browser_of(&app, &sp);
    let mut browser = app.client();
    browser.sign_in_as(JEREMY).await;
    let old_token = browser.jar.get("smartplan_session").cloned().unwrap();
    app.clock.advance(Duration::minutes(5));
    let sso = request_with(&mut browser_app, "ForceAuthn=\"true\"").await;

    let detour = browser.get(&sso).await;
    assert!(detour.status.is_redirection());
    assert_eq!(next_of(detour.location().unwrap()), sso);
    assert!(
        !browser.jar.contains_key("smartplan_session"),
        "cookie removed"
    );
    let old = ciam_core::secrets::SecretToken::from_presented(&old_token);
    assert!(app.state.ciam.sessions().validate(&old).await.is_err());

    // Signed in again just now: answered.
    browser.sign_in_as(JEREMY).await;
    let page = browser.get(&sso).await;
    assert_post_form_to(&page, sp.acs_url());
    assert!(response_xml(&page.body).contains("status:Success"));
}

#[tokio::test]
async fn a_person_without_access_to_the_service_is_answered_request_denied() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser_app = browser_of(&app, &sp);
    let sso = start_at_application(&mut browser_app).await;
    let mut browser = app.client();
    browser.sign_in_as(SCOTT).await;
    let page = browser.get(&sso).await;
    assert_post_form_to(&page, sp.acs_url());
    let xml = response_xml(&page.body);
    assert!(xml.contains("status:RequestDenied"), "{xml}");
    assert!(!xml.contains("<saml:Assertion"));
}

#[tokio::test]
async fn launch_signs_the_person_in_to_an_application_that_allows_it() {
    let app = app_default().await;
    let sp = application(&app, true).await;
    let launch = smartplan::saml::launch_href(sp.entity_id());
    assert_eq!(
        launch,
        "/saml/launch?sp=http%3A%2F%2F127.0.0.1%3A8081%2Fsaml%2Fmetadata"
    );

    let mut browser = app.client();
    let detour = browser.get(&launch).await;
    assert_eq!(next_of(detour.location().unwrap()), launch);

    browser.sign_in_as(JEREMY).await;
    let page = browser.get(&launch).await;
    assert_post_form_to(&page, sp.acs_url());
    let xml = response_xml(&page.body);
    assert!(!xml.contains("InResponseTo"), "unsolicited");
    let mut browser_app = browser_of(&app, &sp);
    let home = deliver(&mut browser_app, &page.body).await;
    assert!(home.body.contains("City Group, Inc."), "{}", home.body);
    assert!(home.body.contains("consumption.read"));

    // Staff without a role in the service: refused with a page, nothing sent.
    let mut scott = app.client();
    scott.sign_in_as(SCOTT).await;
    let refused = scott.get(&launch).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("no access"), "{}", refused.body);
    assert!(!refused.body.contains("SAMLResponse"));
}

#[tokio::test]
async fn launch_refuses_missing_unknown_and_sp_initiated_only_applications() {
    let app = app_default().await;
    let sp = application(&app, false).await;
    let mut browser = app.client();
    browser.sign_in_as(JEREMY).await;

    let missing = browser.get("/saml/launch").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let blank = browser.get("/saml/launch?sp=").await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    let unknown = browser
        .get("/saml/launch?sp=https%3A%2F%2Fnowhere.example%2Fsp")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let not_allowed = browser
        .get(&smartplan::saml::launch_href(sp.entity_id()))
        .await;
    assert_eq!(not_allowed.status, StatusCode::FORBIDDEN);
    assert!(!not_allowed.body.contains("SAMLResponse"));
}

// --- single logout ---------------------------------------------------------------------------

const LOGOUT_SP: &str = "http://127.0.0.1:8082/sp";
const LOGOUT_SP_SLO: &str = "http://127.0.0.1:8082/slo";

fn sp_key() -> SigningKey {
    static KEY: OnceLock<smartplan::keys::GeneratedKey> = OnceLock::new();
    KEY.get_or_init(|| {
        smartplan::keys::generate_signing_key("test SP", &SeededRandom::new(3)).unwrap()
    })
    .signing_key()
    .unwrap()
}

async fn register_logout_sp(app: &TestApp) {
    let cert = sp_key().certificate().to_base64();
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{LOGOUT_SP}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="true" WantAssertionsSigned="true">
    <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{LOGOUT_SP_SLO}"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="http://127.0.0.1:8082/acs" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>"#
    );
    ServiceProviderRegistrations::new(app.state.ciam.clone())
        .register(&Principal::System, &metadata, options(false))
        .await
        .unwrap();
}

fn logout_query(app: &TestApp, name_id: &str, signed: bool) -> String {
    let xml = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_logout1\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{BASE_URL}/saml/slo\"><saml:Issuer>{LOGOUT_SP}</saml:Issuer>\
         <saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\">{name_id}</saml:NameID>\
         </samlp:LogoutRequest>",
        app.clock_now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let mut query = format!(
        "SAMLRequest={}&RelayState=bye&SigAlg={}",
        enc(&deflate(&xml)),
        enc("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    if signed {
        let signature = ciam_saml::testing::sign_raw(&sp_key(), query.as_bytes()).unwrap();
        query.push_str(&format!("&Signature={}", enc(&STANDARD.encode(signature))));
    }
    format!("/saml/slo?{query}")
}

#[tokio::test]
async fn single_logout_ends_the_browsers_session_and_answers_the_sp() {
    let app = app_default().await;
    register_logout_sp(&app).await;
    let jeremy = app.cast().jeremy.unwrap();
    let name_id = app.state.saml.pairwise_id(LOGOUT_SP, &jeremy);
    let mut browser = app.client();
    browser.sign_in_as(JEREMY).await;
    let token = ciam_core::secrets::SecretToken::from_presented(
        browser.jar.get("smartplan_session").unwrap(),
    );

    // Unsigned: refused, the session lives on.
    let unsigned = browser.get(&logout_query(&app, &name_id, false)).await;
    assert_eq!(unsigned.status, StatusCode::BAD_REQUEST);
    assert!(app.state.ciam.sessions().validate(&token).await.is_ok());

    // Someone else's NameID: nothing ends, the answer says PartialLogout.
    let other = browser.get(&logout_query(&app, "someone-else", true)).await;
    assert!(other.status.is_redirection(), "{}", other.body);
    assert!(app.state.ciam.sessions().validate(&token).await.is_ok());
    let answer = inflate(&query_param(other.location().unwrap(), "SAMLResponse"));
    assert!(answer.contains("PartialLogout"), "{answer}");

    let done = browser.get(&logout_query(&app, &name_id, true)).await;
    assert!(done.status.is_redirection(), "{}", done.body);
    let location = done.location().unwrap();
    assert!(location.starts_with(LOGOUT_SP_SLO), "{location}");
    assert_eq!(query_param(location, "RelayState"), "bye");
    let answer = inflate(&query_param(location, "SAMLResponse"));
    assert!(answer.contains("status:Success"));
    assert!(!answer.contains("PartialLogout"));
    assert!(app.state.ciam.sessions().validate(&token).await.is_err());
    assert!(!browser.jar.contains_key("smartplan_session"));

    let empty = browser.post_form_raw("/saml/slo", &[]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}
