//! The company login by SAML through the router: a customer's IdP (ciam-saml's own IdP with a
//! key of its own, playing City Group's) is connected to City Group; `/signin` with a
//! citygroup.example email goes there by home realm discovery, the IdP answers our request, and
//! the response posted to `/signin/saml/acs` signs the person in, created just in time. A
//! response for another attempt changes nothing.

use axum::http::StatusCode;
use ciam_core::contact::EmailAddress;
use ciam_core::ids::{IdentityId, OrganizationId, SessionId};
use ciam_core::login::{IdentityProviderConnection, SamlIdpSettings};
use ciam_core::sessions::AuthMethod;
use ciam_core::{Principal, SeededRandom};
use ciam_saml::idp::{
    IdentityProvider, IdpConfig, InMemoryServiceProviderRegistry, KeyRing, ServiceProvider,
    SignedInUser,
};

use crate::support::{self, Client, TestApp};

const IDP_ENTITY: &str = "https://idp.citygroup.example/saml";
const IDP_SSO: &str = "https://idp.citygroup.example/saml/sso";
const PERSON: &str = "nina.new@citygroup.example";

fn customer_idp() -> IdentityProvider {
    let key = smartplan::keys::generate_signing_key("City Group IdP", &SeededRandom::new(9))
        .unwrap()
        .signing_key()
        .unwrap();
    IdentityProvider::new(IdpConfig::new(
        IDP_ENTITY,
        IDP_SSO,
        "https://idp.citygroup.example/saml/slo",
        KeyRing::new(key),
        b"pairwise-secret-of-the-customer-idp".to_vec(),
    ))
}

async fn connected(app: &TestApp, idp: &IdentityProvider) {
    let settings = IdentityProviderConnection {
        just_in_time: true,
        ..IdentityProviderConnection::saml(
            "City Group login",
            SamlIdpSettings {
                metadata_xml: String::new(),
                allow_unsolicited: false,
            },
        )
    };
    app.state
        .saml_sign_in
        .connect(
            &Principal::System,
            app.cast().city_group,
            &idp.metadata(false, None).unwrap(),
            false,
            settings,
        )
        .await
        .unwrap();
}

fn nina(app: &TestApp) -> SignedInUser {
    let now = app.clock_now();
    SignedInUser {
        identity_id: IdentityId::from_uuid(uuid::Uuid::from_u128(0x51)),
        email: PERSON.into(),
        given_name: Some("Nina".into()),
        family_name: Some("New".into()),
        organization_id: OrganizationId::from_uuid(uuid::Uuid::from_u128(0x52)),
        organization_name: "City Group IT".into(),
        roles: vec![],
        auth_methods: vec![AuthMethod::Pwd],
        authenticated_at: now - chrono::Duration::minutes(1),
        session_id: SessionId::from_uuid(uuid::Uuid::from_u128(0x53)),
        session_expires_at: now + chrono::Duration::hours(8),
    }
}

/// Enters the email at `/signin` and follows our redirects until the browser would leave for
/// the IdP; returns that URL.
async fn go_to_idp(client: &mut Client) -> String {
    let mut response = client.post_form("/signin", &[("email", PERSON)]).await;
    for _ in 0..4 {
        let location = response
            .location()
            .unwrap_or_else(|| panic!("expected a redirect, got {response:?}"))
            .to_owned();
        if location.starts_with(IDP_SSO) {
            return location;
        }
        response = client.get(&location).await;
    }
    panic!("never sent to the IdP")
}

/// The IdP checks our request and answers it: (SAMLResponse, RelayState).
async fn idp_answers(app: &TestApp, idp: &IdentityProvider, url: &str) -> (String, String) {
    let mut sp =
        ServiceProvider::from_metadata(&app.state.saml_sign_in.config().metadata()).unwrap();
    sp.allow_idp_initiated = false;
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp.clone());
    let query = url.split_once('?').unwrap().1;
    let request = idp
        .receive_redirect(&registry, query, app.clock_now())
        .await
        .unwrap();
    let relay = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "RelayState")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let response = idp
        .respond(
            &sp,
            &request,
            &nina(app),
            app.clock_now(),
            &SeededRandom::new(3),
        )
        .unwrap();
    (response.encoded(), relay)
}

#[tokio::test]
async fn a_city_group_employee_signs_in_with_the_company_saml_login_and_is_created_just_in_time() {
    let app = support::app_default().await;
    let idp = customer_idp();
    connected(&app, &idp).await;
    let mut browser = app.client();
    let url = go_to_idp(&mut browser).await;
    let (response, relay) = idp_answers(&app, &idp, &url).await;

    let done = browser
        .post_form(
            "/signin/saml/acs",
            &[("SAMLResponse", &response), ("RelayState", &relay)],
        )
        .await;
    assert!(done.status.is_redirection(), "{done:?}");
    let account = browser.get("/account").await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    assert!(account.body.contains("Nina New"), "{}", account.body);
    let identity = app
        .state
        .store
        .identity_by_email(&EmailAddress::parse(PERSON).unwrap())
        .await
        .unwrap()
        .expect("created just in time");
    assert!(
        app.state
            .store
            .membership_of(identity.id, app.cast().city_group)
            .await
            .unwrap()
            .is_some_and(|m| m.is_active())
    );

    // The same response again (a replay) signs nobody in.
    let mut thief = app.client();
    thief
        .post_form(
            "/signin/saml/acs",
            &[("SAMLResponse", &response), ("RelayState", &relay)],
        )
        .await;
    assert_ne!(thief.get("/account").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_response_for_another_browsers_attempt_signs_nobody_in() {
    let app = support::app_default().await;
    let idp = customer_idp();
    connected(&app, &idp).await;
    let mut first = app.client();
    let url = go_to_idp(&mut first).await;
    let (response, relay) = idp_answers(&app, &idp, &url).await;

    // Another browser, with its own attempt, posts the first one's response.
    let mut other = app.client();
    go_to_idp(&mut other).await;
    other
        .post_form(
            "/signin/saml/acs",
            &[("SAMLResponse", &response), ("RelayState", &relay)],
        )
        .await;
    assert_ne!(other.get("/account").await.status, StatusCode::OK);
    assert!(
        app.state
            .store
            .identity_by_email(&EmailAddress::parse(PERSON).unwrap())
            .await
            .unwrap()
            .is_none(),
        "nobody created"
    );
}
