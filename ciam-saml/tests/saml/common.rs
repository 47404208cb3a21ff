//! Fixtures shared by the tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ciam_core::SeededRandom;
use ciam_core::ids::{IdentityId, OrganizationId, SessionId};
use ciam_core::sessions::AuthMethod;
use ciam_saml::SigningKey;
use ciam_saml::idp::{
    IdentityProvider, IdpConfig, InMemoryServiceProviderRegistry, KeyRing, SamlResponse,
    ServiceProvider, SignedInUser,
};
use ciam_saml::sp::{IdpConnection, SpConfig};
use ciam_saml::testing;
use uuid::Uuid;

pub const IDP_ENTITY: &str = "https://idp.smartplan.test/saml";
pub const IDP_SSO: &str = "https://idp.smartplan.test/saml/sso";
pub const IDP_SLO: &str = "https://idp.smartplan.test/saml/slo";
pub const SP_ENTITY: &str = "https://app.example.test/saml/metadata";
pub const SP_ACS: &str = "https://app.example.test/saml/acs";
pub const SP_SLO: &str = "https://app.example.test/saml/slo";

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn key(name: &str) -> SigningKey {
    SigningKey::from_pem(
        &fixture(&format!("{name}.key")),
        &fixture(&format!("{name}.crt")),
    )
    .unwrap()
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 5, 17, 9, 30, 0).unwrap()
}

pub fn random() -> SeededRandom {
    SeededRandom::new(7)
}

pub fn idp_with_key(name: &str) -> IdentityProvider {
    IdentityProvider::new(IdpConfig::new(
        IDP_ENTITY,
        IDP_SSO,
        IDP_SLO,
        KeyRing::new(key(name)),
        b"pairwise-secret-for-tests-only-32bytes!".to_vec(),
    ))
}

pub fn idp() -> IdentityProvider {
    idp_with_key("idp")
}

/// SP metadata as a customer's application would publish it (signs its requests).
pub fn sp_metadata(entity: &str, acs: &str) -> String {
    let cert = key("sp").certificate().to_base64();
    format!(
        r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"
      AuthnRequestsSigned="true" WantAssertionsSigned="true">
    <md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
      <ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data>
    </ds:KeyInfo></md:KeyDescriptor>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{SP_SLO}"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0" isDefault="true"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}/second" index="1"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>"#
    )
}

pub fn registered_sp() -> ServiceProvider {
    ServiceProvider::from_metadata(&sp_metadata(SP_ENTITY, SP_ACS)).unwrap()
}

pub async fn registry_with(sp: ServiceProvider) -> InMemoryServiceProviderRegistry {
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp);
    registry
}

pub fn user() -> SignedInUser {
    SignedInUser {
        identity_id: IdentityId::from_uuid(Uuid::from_u128(0x1111)),
        email: "ada@customer.test".into(),
        given_name: Some("Ada".into()),
        family_name: Some("Lovelace".into()),
        organization_id: OrganizationId::from_uuid(Uuid::from_u128(0x2222)),
        organization_name: "Customer & Co".into(),
        roles: vec!["planner".into(), "viewer".into()],
        auth_methods: vec![AuthMethod::Pwd],
        authenticated_at: now() - Duration::minutes(1),
        session_id: SessionId::from_uuid(Uuid::from_u128(0x3333)),
        session_expires_at: now() + Duration::hours(8),
    }
}

/// Our SP configured to trust our IdP through its metadata.
pub fn sp_side() -> (SpConfig, IdpConnection) {
    let metadata = idp().metadata(false, None).unwrap();
    let connection = IdpConnection::from_metadata(&metadata).unwrap();
    let mut config = SpConfig::new(SP_ENTITY, SP_ACS);
    config.signing_key = Some(key("sp"));
    (config, connection)
}

/// An SP-initiated login through our own SP and IdP: the request id and the IdP's response.
pub async fn login_round_trip(sp: ServiceProvider) -> (String, SamlResponse) {
    let (config, connection) = sp_side();
    let outgoing = config
        .authn_request(&connection, Some("relay-1"), now(), &random())
        .unwrap();
    let query = outgoing.url.split_once('?').unwrap().1.to_owned();
    let registry = registry_with(sp.clone()).await;
    let idp = idp();
    let request = idp
        .receive_redirect(&registry, &query, now())
        .await
        .unwrap();
    let response = idp
        .respond(&sp, &request, &user(), now(), &random())
        .unwrap();
    (outgoing.request_id, response)
}

pub fn b64(xml: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(xml.as_bytes())
}

/// A Redirect-binding query for `message`, signed with `signer` when given.
pub fn redirect_query(
    message: &str,
    relay: Option<&str>,
    signer: Option<&ciam_saml::SigningKey>,
) -> String {
    use base64::Engine;
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(message.as_bytes()).unwrap();
    let deflated = enc.finish().unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
    let q = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let mut query = format!("SAMLRequest={}", q(&encoded));
    if let Some(r) = relay {
        query.push_str(&format!("&RelayState={}", q(r)));
    }
    if let Some(key) = signer {
        query.push_str(&format!(
            "&SigAlg={}",
            q("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
        ));
        let sig = testing::sign_raw(key, query.as_bytes()).unwrap();
        query.push_str(&format!(
            "&Signature={}",
            q(&base64::engine::general_purpose::STANDARD.encode(sig))
        ));
    }
    query
}
