//! The IdP with ciam-core: the signed-in user from a session (roles for the SP's service),
//! refusals answered with a SAML status, the POST form, and single logout ending sessions.

use ciam_core::ids::IdentityId;
use ciam_core::sessions::Session;
use ciam_saml::idp::{
    ErrorStatus, InMemoryServiceProviderRegistry, LogoutOutcome, LogoutReply, ServiceProvider,
    SignOnError, SignedInUser,
};
use ciam_saml::sp::InMemoryReplayCache;

use crate::common::*;
use crate::world::{APP, World, world};

fn app_sp() -> ServiceProvider {
    let mut sp = registered_sp();
    sp.service_key = Some(APP.into());
    sp
}

/// A full SP-initiated round trip through our own SP: the verified assertion.
async fn sign_on(
    world: &World,
    session: &Session,
    sp: &ServiceProvider,
) -> ciam_saml::sp::VerifiedAssertion {
    let (config, connection) = sp_side();
    let outgoing = config
        .authn_request(&connection, Some("relay"), now(), &random())
        .unwrap();
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp.clone());
    let query = outgoing.url.split_once('?').unwrap().1;
    let request = idp()
        .receive_redirect(&registry, query, now())
        .await
        .unwrap();
    let user = SignedInUser::for_session(&world.ciam, session, sp)
        .await
        .unwrap();
    let response = idp()
        .respond(sp, &request, &user, now(), &random())
        .unwrap();
    config
        .consume(
            &connection,
            &response.encoded(),
            Some(&outgoing.request_id),
            now(),
            &InMemoryReplayCache::new(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn the_assertion_carries_the_roles_resolved_for_the_sps_service() {
    let world = world().await;
    let jeremy = world.member("jeremy.mills@citygroup.example", true).await;
    let session = world.session(jeremy).await;
    let user = SignedInUser::for_session(&world.ciam, &session, &app_sp())
        .await
        .unwrap();
    assert_eq!(user.identity_id, jeremy);
    assert_eq!(user.email, "jeremy.mills@citygroup.example");
    assert_eq!(user.organization_id, world.city_group);
    assert_eq!(user.organization_name, "City Group, Inc.");
    assert_eq!(user.roles, ["consumption.export", "consumption.read"]);
    assert_eq!(user.session_id, session.id);
    assert_eq!(user.session_expires_at, session.absolute_expires_at);

    let verified = sign_on(&world, &session, &app_sp()).await;
    assert_eq!(
        verified.attributes()["roles"],
        ["consumption.export", "consumption.read"]
    );
    assert_eq!(
        verified.attribute("organization_id"),
        Some(world.city_group.to_string().as_str())
    );
    assert_eq!(
        verified.name_id(),
        idp().pairwise_id(SP_ENTITY, &jeremy),
        "pairwise by default"
    );
    // The SessionIndex does not reveal the session id or the identity.
    let index = verified.session_index().unwrap();
    assert!(!index.contains(&session.id.to_string()));
    assert!(!index.contains(&jeremy.to_string()));
}

#[tokio::test]
async fn a_person_without_a_role_in_the_service_is_refused_with_request_denied() {
    let world = world().await;
    let nobody = world.member("no.role@citygroup.example", false).await;
    let session = world.session(nobody).await;
    let result = SignedInUser::for_session(&world.ciam, &session, &app_sp()).await;
    assert!(matches!(result, Err(SignOnError::NoAccess)), "{result:?}");
    // An SP without a service key lets any member in, without roles.
    let user = SignedInUser::for_session(&world.ciam, &session, &registered_sp())
        .await
        .unwrap();
    assert!(user.roles.is_empty());
    assert_eq!(user.organization_id, world.city_group);

    // The refusal goes back to the SP as a signed SAML error response.
    let (config, connection) = sp_side();
    let outgoing = config
        .authn_request(&connection, Some("relay"), now(), &random())
        .unwrap();
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(app_sp());
    let request = idp()
        .receive_redirect(&registry, outgoing.url.split_once('?').unwrap().1, now())
        .await
        .unwrap();
    let reply = request.refusal(ErrorStatus::RequestDenied);
    let response = idp().error_response(&reply, now(), &random()).unwrap();
    assert_eq!(response.destination(), SP_ACS);
    assert_eq!(response.relay_state(), Some("relay"));
    assert!(
        response
            .xml()
            .contains("urn:oasis:names:tc:SAML:2.0:status:RequestDenied")
    );
    let refused = config
        .consume(
            &connection,
            &response.encoded(),
            Some(&outgoing.request_id),
            now(),
            &InMemoryReplayCache::new(),
        )
        .await;
    assert!(
        matches!(refused, Err(ciam_saml::sp::ResponseError::Status(ref s)) if s.ends_with(":Responder")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_post_form_submits_itself_under_its_own_csp() {
    let (_, response) = login_round_trip(registered_sp()).await;
    let form = response.post_form();
    let csp = response.content_security_policy();
    assert!(form.contains(&format!("action=\"{SP_ACS}\"")));
    assert!(form.contains("name=\"RelayState\" value=\"relay-1\""));
    assert!(form.contains("<noscript>"));
    assert!(!form.contains("onload"), "no inline event handler");
    // The one script is allowed by its hash, and the form may post only to the SP.
    let script = form
        .split("<script>")
        .nth(1)
        .unwrap()
        .split("</script>")
        .next()
        .unwrap();
    let hash = {
        use base64::Engine;
        let digest = openssl::sha::sha256(script.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(digest)
    };
    assert!(
        csp.contains(&format!("script-src 'sha256-{hash}'")),
        "{csp}"
    );
    assert!(
        csp.contains("form-action https://app.example.test;"),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"));
}

fn logout_request(name_id: &str, session_index: Option<&str>) -> String {
    let index = session_index
        .map(|i| format!("<samlp:SessionIndex>{i}</samlp:SessionIndex>"))
        .unwrap_or_default();
    let logout = format!(
        "<samlp:LogoutRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_lo9\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{IDP_SLO}\"><saml:Issuer>{SP_ENTITY}</saml:Issuer>\
         <saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\">{name_id}</saml:NameID>{index}\
         </samlp:LogoutRequest>",
        now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    redirect_query(&logout, Some("after-logout"), Some(&key("sp")))
}

async fn live(world: &World, session: &Session) -> bool {
    world
        .store
        .sessions_of_identity(session.identity)
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == session.id && s.is_live(now()))
}

async fn receive(query: &str) -> ciam_saml::idp::LogoutRequest {
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(app_sp());
    idp()
        .receive_logout_redirect(&registry, query, now())
        .await
        .unwrap()
}

#[tokio::test]
async fn single_logout_ends_the_session_named_by_its_session_index() {
    let world = world().await;
    let jeremy = world.member("jeremy.mills@citygroup.example", true).await;
    let session = world.session(jeremy).await;
    let other_session = world.session(jeremy).await;
    let verified = sign_on(&world, &session, &app_sp()).await;
    let name_id = verified.name_id().to_owned();
    let index = verified.session_index().unwrap().to_owned();

    // No cookie needed: the sealed SessionIndex names the session.
    let request = receive(&logout_request(&name_id, Some(&index))).await;
    let outcome = idp()
        .end_sessions(&world.ciam, &app_sp(), &request, None)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        LogoutOutcome {
            ended: vec![session.id],
            partial: false
        }
    );
    assert!(!live(&world, &session).await);
    assert!(live(&world, &other_session).await, "only that session ends");
    let reply = idp()
        .logout_response(&app_sp(), &request, &outcome, now(), &random())
        .unwrap();
    let LogoutReply::Redirect(redirect) = reply else {
        panic!("expected the redirect binding")
    };
    assert!(redirect.url.starts_with(SP_SLO));
    assert!(redirect.url.contains("RelayState=after-logout"));

    // The same request again: already ended counts as ended.
    let again = idp()
        .end_sessions(&world.ciam, &app_sp(), &request, None)
        .await
        .unwrap();
    assert!(!again.partial);
}

#[tokio::test]
async fn single_logout_refuses_to_end_someone_elses_session() {
    let world = world().await;
    let jeremy = world.member("jeremy.mills@citygroup.example", true).await;
    let karl = world.member("karl.kearnes@citygroup.example", true).await;
    let session = world.session(jeremy).await;
    let verified = sign_on(&world, &session, &app_sp()).await;
    let index = verified.session_index().unwrap().to_owned();

    // Karl's NameID with Jeremy's session index: nothing ends, PartialLogout.
    let karls_name = idp().pairwise_id(SP_ENTITY, &karl);
    let request = receive(&logout_request(&karls_name, Some(&index))).await;
    let outcome = idp()
        .end_sessions(&world.ciam, &app_sp(), &request, None)
        .await
        .unwrap();
    assert!(outcome.partial && outcome.ended.is_empty(), "{outcome:?}");
    assert!(live(&world, &session).await);
    let LogoutReply::Redirect(redirect) = idp()
        .logout_response(&app_sp(), &request, &outcome, now(), &random())
        .unwrap()
    else {
        panic!("expected the redirect binding")
    };
    assert!(redirect.url.contains("SAMLResponse="));

    // A session index we did not issue (or issued to another SP) names nothing.
    let forged = receive(&logout_request(
        &idp().pairwise_id(SP_ENTITY, &jeremy),
        Some(&format!("{}x", &index[..index.len() - 1])),
    ))
    .await;
    let outcome = idp()
        .end_sessions(&world.ciam, &app_sp(), &forged, None)
        .await
        .unwrap();
    assert!(outcome.partial && outcome.ended.is_empty(), "{outcome:?}");
    assert!(live(&world, &session).await);
}

#[tokio::test]
async fn without_a_session_index_the_browsers_own_session_ends() {
    let world = world().await;
    let jeremy: IdentityId = world.member("jeremy.mills@citygroup.example", true).await;
    let session = world.session(jeremy).await;
    let name_id = idp().pairwise_id(SP_ENTITY, &jeremy);
    let request = receive(&logout_request(&name_id, None)).await;

    let unknown = idp()
        .end_sessions(&world.ciam, &app_sp(), &request, None)
        .await
        .unwrap();
    assert!(
        unknown.partial,
        "no index and no cookie: nothing identified"
    );
    assert!(live(&world, &session).await);

    let outcome = idp()
        .end_sessions(&world.ciam, &app_sp(), &request, Some(&session))
        .await
        .unwrap();
    assert_eq!(outcome.ended, [session.id]);
    assert!(!outcome.partial);
    assert!(!live(&world, &session).await);
}
