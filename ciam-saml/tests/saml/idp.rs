//! The IdP side: SP registry, AuthnRequest checks, responses, metadata, rollover and logout.

use ciam_core::sessions::AuthMethod;
use ciam_saml::idp::{
    InMemoryServiceProviderRegistry, IssueError, LogoutOutcome, LogoutReply, RequestError,
    ServiceProvider, ServiceProviderRegistry, authn_context,
};
use ciam_saml::sp::{IdpConnection, InMemoryReplayCache, SpConfig};
use ciam_saml::{Binding, NameIdFormat, testing};

use crate::common::*;

fn authn_request_xml(issuer: &str, acs: Option<&str>, format: Option<&str>) -> String {
    let acs = acs
        .map(|a| format!(" AssertionConsumerServiceURL=\"{a}\""))
        .unwrap_or_default();
    let policy = format
        .map(|f| format!("<samlp:NameIDPolicy Format=\"{f}\" AllowCreate=\"true\"/>"))
        .unwrap_or_default();
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_req1\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{IDP_SSO}\"{acs}>\
         <saml:Issuer>{issuer}</saml:Issuer>{policy}</samlp:AuthnRequest>",
        now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

#[tokio::test]
async fn the_registry_reads_sp_metadata() {
    let sp = registered_sp();
    assert_eq!(sp.entity_id, SP_ENTITY);
    assert_eq!(sp.assertion_consumer_services.len(), 2);
    assert_eq!(sp.assertion_consumer_services[0].binding, Binding::HttpPost);
    assert!(sp.assertion_consumer_services[0].is_default);
    assert_eq!(
        sp.signing_certificates,
        vec![key("sp").certificate().clone()]
    );
    assert!(sp.authn_requests_signed && sp.want_assertions_signed);
    assert!(
        !sp.allow_idp_initiated,
        "idp-initiated sso is off by default"
    );
    assert_eq!(sp.default_name_id_format, NameIdFormat::Persistent);
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp.clone());
    assert_eq!(
        registry.get(SP_ENTITY).await.unwrap(),
        Some(std::sync::Arc::new(sp))
    );
    assert_eq!(registry.list().len(), 1);
    assert!(registry.remove(SP_ENTITY));
    assert_eq!(registry.get(SP_ENTITY).await.unwrap(), None);
}

#[test]
fn sp_metadata_with_a_doctype_is_refused() {
    let metadata = format!(
        "<!DOCTYPE x []>{}",
        sp_metadata(SP_ENTITY, SP_ACS).replace("<?xml version=\"1.0\"?>", "")
    );
    assert!(matches!(
        ServiceProvider::from_metadata(&metadata),
        Err(ciam_saml::MetadataError::Doctype)
    ));
}

#[tokio::test]
async fn a_signed_redirect_request_is_accepted() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), None),
        Some("rs"),
        Some(&key("sp")),
    );
    let request = idp()
        .receive_redirect(&registry, &query, now())
        .await
        .unwrap();
    assert_eq!(request.id(), "_req1");
    assert_eq!(request.acs_url(), SP_ACS);
    assert_eq!(request.relay_state(), Some("rs"));
    assert!(request.was_signed());
    assert_eq!(request.name_id_format(), NameIdFormat::Persistent);
}

#[tokio::test]
async fn a_redirect_request_signed_by_another_key_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), None),
        None,
        Some(&key("other-idp")),
    );
    let result = idp().receive_redirect(&registry, &query, now()).await;
    assert!(
        matches!(result, Err(RequestError::InvalidSignature)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_tampered_redirect_request_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), None),
        Some("rs"),
        Some(&key("sp")),
    );
    let tampered = query.replacen("RelayState=rs", "RelayState=rt", 1);
    let result = idp().receive_redirect(&registry, &tampered, now()).await;
    assert!(
        matches!(result, Err(RequestError::InvalidSignature)),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unsigned_request_is_refused_when_the_sp_signs_its_requests() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), None),
        None,
        None,
    );
    let result = idp().receive_redirect(&registry, &query, now()).await;
    assert!(
        matches!(result, Err(RequestError::MissingSignature)),
        "{result:?}"
    );
    // The same request is fine for an SP that does not sign.
    let mut lenient = registered_sp();
    lenient.authn_requests_signed = false;
    let registry = registry_with(lenient).await;
    idp()
        .receive_redirect(&registry, &query, now())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_post_request_signed_with_a_certificate_carried_in_the_request_is_refused() {
    // Enveloped signature by an attacker's key whose certificate travels in KeyInfo.
    let registry = registry_with(registered_sp()).await;
    let xml = authn_request_xml(SP_ENTITY, Some(SP_ACS), None);
    let attacker = key("other-idp");
    let template = testing::signature_template(
        "_req1",
        attacker.certificate(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    );
    let with_template = xml.replacen("</saml:Issuer>", &format!("</saml:Issuer>{template}"), 1);
    let forged = testing::sign_first_template(&with_template, &attacker).unwrap();
    let result = idp()
        .receive_post(&registry, &b64(&forged), None, now())
        .await;
    assert!(
        matches!(result, Err(RequestError::InvalidSignature)),
        "{result:?}"
    );
    // Signed by the registered key, the same request passes.
    let template = testing::signature_template(
        "_req1",
        key("sp").certificate(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    );
    let with_template = xml.replacen("</saml:Issuer>", &format!("</saml:Issuer>{template}"), 1);
    let good = testing::sign_first_template(&with_template, &key("sp")).unwrap();
    let request = idp()
        .receive_post(&registry, &b64(&good), Some("p"), now())
        .await
        .unwrap();
    assert!(request.was_signed());
}

#[tokio::test]
async fn an_unknown_issuer_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml("https://stranger.test", Some(SP_ACS), None),
        None,
        Some(&key("sp")),
    );
    let result = idp().receive_redirect(&registry, &query, now()).await;
    assert!(
        matches!(result, Err(RequestError::UnknownIssuer)),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_acs_url_not_in_metadata_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some("https://evil.test/acs"), None),
        None,
        Some(&key("sp")),
    );
    let result = idp().receive_redirect(&registry, &query, now()).await;
    assert!(
        matches!(result, Err(RequestError::UnknownAssertionConsumerService)),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unsupported_nameid_format_is_refused_with_an_error_response() {
    let registry = registry_with(registered_sp()).await;
    let format = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName";
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), Some(format)),
        None,
        Some(&key("sp")),
    );
    let result = idp().receive_redirect(&registry, &query, now()).await;
    let Err(RequestError::UnsupportedNameIdFormat(reply)) = result else {
        panic!("{result:?}")
    };
    let response = idp().error_response(&reply, now(), &random()).unwrap();
    assert_eq!(response.destination(), SP_ACS);
    assert!(response.xml().contains("status:InvalidNameIDPolicy"));
    // The email format is supported.
    let email = NameIdFormat::EmailAddress.urn();
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), Some(email)),
        None,
        Some(&key("sp")),
    );
    let request = idp()
        .receive_redirect(&registry, &query, now())
        .await
        .unwrap();
    assert_eq!(request.name_id_format(), NameIdFormat::EmailAddress);
}

#[tokio::test]
async fn a_doctype_in_a_request_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let xml = format!(
        "<!DOCTYPE r [<!ENTITY x \"y\">]>{}",
        authn_request_xml(SP_ENTITY, Some(SP_ACS), None)
    );
    let query = redirect_query(&xml, None, Some(&key("sp")));
    let result = idp().receive_redirect(&registry, &query, now()).await;
    assert!(matches!(result, Err(RequestError::Doctype)), "{result:?}");
    let result = idp().receive_post(&registry, &b64(&xml), None, now()).await;
    assert!(matches!(result, Err(RequestError::Doctype)), "{result:?}");
}

#[tokio::test]
async fn a_deflate_bomb_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let padding = " ".repeat(2 * 1024 * 1024);
    let xml = authn_request_xml(SP_ENTITY, Some(SP_ACS), None).replacen(
        "<saml:Issuer>",
        &format!("{padding}<saml:Issuer>"),
        1,
    );
    let query = redirect_query(&xml, None, Some(&key("sp")));
    assert!(query.len() < 64 * 1024, "compressed well: {}", query.len());
    let result = idp().receive_redirect(&registry, &query, now()).await;
    assert!(matches!(result, Err(RequestError::TooLarge)), "{result:?}");
}

#[tokio::test]
async fn a_stale_request_is_refused() {
    let registry = registry_with(registered_sp()).await;
    let query = redirect_query(
        &authn_request_xml(SP_ENTITY, Some(SP_ACS), None),
        None,
        Some(&key("sp")),
    );
    let later = now() + chrono::Duration::hours(1);
    let result = idp().receive_redirect(&registry, &query, later).await;
    assert!(matches!(result, Err(RequestError::Stale)), "{result:?}");
}

fn parse(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml).unwrap()
}

fn find<'a>(doc: &'a roxmltree::Document<'a>, name: &str) -> roxmltree::Node<'a, 'a> {
    doc.descendants()
        .find(|n| n.tag_name().name() == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn the_response_carries_every_required_element() {
    let (request_id, response) = login_round_trip(registered_sp()).await;
    let doc = parse(response.xml());
    assert_eq!(
        find(&doc, "Response").attribute("InResponseTo"),
        Some(request_id.as_str())
    );
    assert_eq!(
        find(&doc, "SignatureMethod").attribute("Algorithm"),
        Some("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    assert_eq!(
        find(&doc, "DigestMethod").attribute("Algorithm"),
        Some("http://www.w3.org/2001/04/xmlenc#sha256")
    );
    assert!(!response.xml().contains("sha1"));
    let scd = find(&doc, "SubjectConfirmationData");
    assert_eq!(scd.attribute("Recipient"), Some(SP_ACS));
    assert_eq!(scd.attribute("InResponseTo"), Some(request_id.as_str()));
    assert_eq!(scd.attribute("NotOnOrAfter"), Some("2030-05-17T09:35:00Z"));
    let conditions = find(&doc, "Conditions");
    assert!(conditions.attribute("NotBefore").is_some());
    assert_eq!(
        conditions.attribute("NotOnOrAfter"),
        Some("2030-05-17T09:35:00Z")
    );
    assert_eq!(find(&doc, "Audience").text(), Some(SP_ENTITY));
    let authn = find(&doc, "AuthnStatement");
    // The SessionIndex is sealed: present, and neither the session id nor the identity id.
    let index = authn.attribute("SessionIndex").unwrap();
    assert!(index.len() > 40, "{index}");
    assert!(!index.contains(&user().session_id.to_string()));
    assert!(!index.contains(&user().identity_id.to_string()));
    assert_eq!(
        authn.attribute("SessionNotOnOrAfter"),
        Some("2030-05-17T17:30:00Z")
    );
    assert_eq!(
        find(&doc, "AuthnContextClassRef").text(),
        Some(authn_context::PASSWORD)
    );
    let name_id = find(&doc, "NameID");
    assert_eq!(
        name_id.attribute("Format"),
        Some(NameIdFormat::Persistent.urn())
    );
    let form = response.post_form();
    assert!(form.contains("document.forms[0].submit()"));
    assert!(form.contains(&format!("action=\"{SP_ACS}\"")));
    assert!(form.contains("name=\"RelayState\" value=\"relay-1\""));
}

#[tokio::test]
async fn pairwise_nameids_differ_per_sp_and_are_stable() {
    let idp = idp();
    let a = idp.pairwise_id("https://a.test", &user().identity_id);
    let b = idp.pairwise_id("https://b.test", &user().identity_id);
    assert_ne!(a, b);
    assert_eq!(a, idp.pairwise_id("https://a.test", &user().identity_id));
    assert!(!a.contains(&user().identity_id.to_string()));
}

#[tokio::test]
async fn mfa_sessions_get_the_mfa_context() {
    let mut sp = registered_sp();
    sp.allow_idp_initiated = true;
    let mut who = user();
    who.auth_methods = vec![AuthMethod::Pwd, AuthMethod::Otp];
    let response = idp()
        .respond_unsolicited(&sp, &who, None, now(), &random())
        .unwrap();
    assert!(response.xml().contains(authn_context::MFA));
}

#[tokio::test]
async fn idp_initiated_sso_is_off_by_default() {
    let sp = registered_sp();
    let result = idp().respond_unsolicited(&sp, &user(), None, now(), &random());
    assert!(
        matches!(result, Err(IssueError::UnsolicitedNotAllowed)),
        "{result:?}"
    );
}

#[tokio::test]
async fn key_rollover_publishes_two_certificates_and_signs_with_the_switched_key() {
    let mut idp = idp();
    idp.config_mut().keys = idp.config().keys.clone().with_standby(key("idp-next"));
    let metadata = idp.metadata(true, None).unwrap();
    let connection = IdpConnection::from_metadata(&metadata).unwrap();
    assert_eq!(connection.signing_certificates.len(), 2);
    let mut sp = registered_sp();
    sp.allow_idp_initiated = true;
    let before = idp
        .respond_unsolicited(&sp, &user(), None, now(), &random())
        .unwrap();
    assert!(before.xml().contains(&key("idp").certificate().to_base64()));
    idp.config_mut().keys.switch();
    let after = idp
        .respond_unsolicited(&sp, &user(), None, now(), &random())
        .unwrap();
    assert!(
        after
            .xml()
            .contains(&key("idp-next").certificate().to_base64())
    );
    // An SP that only knows the new certificate accepts the new response, not the old one.
    let config = SpConfig::new(SP_ENTITY, SP_ACS);
    let mut only_new = connection.clone();
    only_new.allow_unsolicited = true;
    only_new.signing_certificates = vec![key("idp-next").certificate().clone()];
    config
        .consume(
            &only_new,
            &b64(after.xml()),
            None,
            now(),
            &InMemoryReplayCache::new(),
        )
        .await
        .unwrap();
    assert!(
        config
            .consume(
                &only_new,
                &b64(before.xml()),
                None,
                now(),
                &InMemoryReplayCache::new()
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn single_logout_is_verified_and_answered() {
    let registry = registry_with(registered_sp()).await;
    let logout = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_lo1\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{IDP_SLO}\"><saml:Issuer>{SP_ENTITY}</saml:Issuer>\
         <saml:NameID>abc</saml:NameID><samlp:SessionIndex>s-1</samlp:SessionIndex>\
         </samlp:LogoutRequest>",
        now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let unsigned = redirect_query(&logout, None, None);
    let result = idp()
        .receive_logout_redirect(&registry, &unsigned, now())
        .await;
    assert!(
        matches!(result, Err(RequestError::MissingSignature)),
        "{result:?}"
    );
    let query = redirect_query(&logout, Some("back"), Some(&key("sp")));
    let request = idp()
        .receive_logout_redirect(&registry, &query, now())
        .await
        .unwrap();
    assert_eq!(request.name_id(), "abc");
    assert_eq!(request.session_indexes(), ["s-1".to_owned()]);
    let reply = idp()
        .logout_response(
            &registered_sp(),
            &request,
            &LogoutOutcome::default(),
            now(),
            &random(),
        )
        .unwrap();
    let LogoutReply::Redirect(redirect) = reply else {
        panic!("expected redirect")
    };
    assert!(redirect.url.starts_with(SP_SLO));
    assert!(redirect.url.contains("&SigAlg=") && redirect.url.contains("&Signature="));
}
