//! Our SP with ciam-core's federated login, against our own IdP playing the customer's IdP:
//! connecting from metadata, the request bound to the attempt, JIT sign-in, unsolicited
//! responses only where allowed. (The same against pysaml2 is in `interop.rs`.)

use ciam_core::contact::EmailAddress;
use ciam_core::login::{ClaimRoleMapping, IdentityProviderConnection, LoginStep, SamlIdpSettings};
use ciam_core::settings::SettingKind;
use ciam_saml::idp::{InMemoryServiceProviderRegistry, ServiceProvider, SignedInUser};
use ciam_saml::sp::{ConnectError, ResponseError, SamlSignIn, SamlSignInError, SpConfig};

use crate::common::*;
use crate::world::{World, world};

const OUR_SP: &str = "https://ciam.test/saml/sp";
const OUR_ACS: &str = "https://ciam.test/saml/acs";

fn connection_settings() -> IdentityProviderConnection {
    IdentityProviderConnection {
        just_in_time: true,
        role_mapping: vec![ClaimRoleMapping {
            claim: "roles".into(),
            value: "planner".into(),
            business_role: "energy-manager".into(),
        }],
        ..IdentityProviderConnection::saml(
            "City Group login",
            SamlIdpSettings {
                metadata_xml: String::new(),
                allow_unsolicited: false,
            },
        )
    }
}

/// Our SP, with the customer's IdP (our own IdP) connected to City Group.
async fn connected(world: &World, allow_unsolicited: bool) -> SamlSignIn {
    let sign_in = SamlSignIn::new(world.ciam.clone(), SpConfig::new(OUR_SP, OUR_ACS));
    sign_in
        .connect(
            &world.admin,
            world.city_group,
            &idp().metadata(false, None).unwrap(),
            allow_unsolicited,
            connection_settings(),
        )
        .await
        .unwrap();
    sign_in
}

/// The customer's IdP's view of our SP and of its user.
fn customer_side(sign_in: &SamlSignIn) -> (ServiceProvider, SignedInUser) {
    let mut sp = ServiceProvider::from_metadata(&sign_in.config().metadata()).unwrap();
    sp.allow_idp_initiated = true;
    let mut person = user();
    person.email = "new.person@citygroup.example".into();
    (sp, person)
}

async fn attempt(world: &World) -> ciam_core::login::AttemptToken {
    let step = world
        .ciam
        .login()
        .start("new.person@citygroup.example", None)
        .await
        .unwrap();
    let LoginStep::Federated { attempt, .. } = step else {
        panic!("expected home realm discovery to pick the IdP, got {step:?}")
    };
    attempt
}

#[tokio::test]
async fn connecting_refuses_unusable_metadata_and_stores_nothing() {
    let world = world().await;
    let sign_in = SamlSignIn::new(world.ciam.clone(), SpConfig::new(OUR_SP, OUR_ACS));
    let metadata = idp().metadata(false, None).unwrap();
    let without_key = {
        let start = metadata.find("<md:KeyDescriptor").unwrap();
        let end = metadata.rfind("</md:KeyDescriptor>").unwrap() + "</md:KeyDescriptor>".len();
        format!("{}{}", &metadata[..start], &metadata[end..])
    };
    for bad in [
        without_key,
        metadata.replace("https://idp.smartplan.test", "http://idp.smartplan.test"),
        format!("<!DOCTYPE x>{metadata}"),
        sign_in.config().metadata(),
    ] {
        let result = sign_in
            .connect(
                &world.admin,
                world.city_group,
                &bad,
                false,
                connection_settings(),
            )
            .await;
        assert!(
            matches!(result, Err(ConnectError::Metadata(_))),
            "{result:?}"
        );
    }
    let stored = world
        .store
        .settings(SettingKind::IdentityProvider, None)
        .await
        .unwrap();
    assert!(stored.is_empty());
}

#[tokio::test]
async fn a_person_of_the_customer_signs_in_and_is_created_just_in_time() {
    let world = world().await;
    let sign_in = connected(&world, false).await;
    let (sp, person) = customer_side(&sign_in);
    let attempt = attempt(&world).await;
    let outgoing = sign_in.begin(&attempt, Some("back-to")).await.unwrap();
    assert!(outgoing.url.starts_with(IDP_SSO));

    // The customer's IdP checks our request and answers it.
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp.clone());
    let request = idp()
        .receive_redirect(&registry, outgoing.url.split_once('?').unwrap().1, now())
        .await
        .unwrap();
    assert_eq!(request.id(), outgoing.request_id);
    let response = idp()
        .respond(&sp, &request, &person, now(), &random())
        .unwrap();

    let step = sign_in
        .finish(&attempt, &response.encoded(), None)
        .await
        .unwrap();
    let LoginStep::SignedIn(started) = step else {
        panic!("expected a session, got {step:?}")
    };
    let store = world.ciam.store();
    let identity = store
        .identity_by_email(&EmailAddress::parse("new.person@citygroup.example").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.session.identity, identity.id);
    let membership = store
        .membership_of(identity.id, world.city_group)
        .await
        .unwrap()
        .unwrap();
    assert!(membership.is_active());
    assert_eq!(
        membership.business_roles.len(),
        1,
        "roles mapped from `roles`"
    );
    let subject = idp().pairwise_id(&sp.entity_id, &person.identity_id);
    let link = store
        .credential_by_federated_link(IDP_ENTITY, &subject)
        .await
        .unwrap();
    assert_eq!(link.map(|c| c.identity), Some(identity.id));

    // Replaying the response fails (request answered, assertion used).
    let replay = sign_in.finish(&attempt, &response.encoded(), None).await;
    assert!(replay.is_err(), "{replay:?}");
}

#[tokio::test]
async fn a_response_to_another_attempt_is_refused() {
    let world = world().await;
    let sign_in = connected(&world, false).await;
    let (sp, person) = customer_side(&sign_in);
    let mine = attempt(&world).await;
    let theirs = attempt(&world).await;
    let outgoing = sign_in.begin(&theirs, None).await.unwrap();
    let registry = InMemoryServiceProviderRegistry::new();
    registry.put(sp.clone());
    let request = idp()
        .receive_redirect(&registry, outgoing.url.split_once('?').unwrap().1, now())
        .await
        .unwrap();
    let response = idp()
        .respond(&sp, &request, &person, now(), &random())
        .unwrap();
    let result = sign_in.finish(&mine, &response.encoded(), None).await;
    assert!(
        matches!(
            result,
            Err(SamlSignInError::Response(ResponseError::WrongInResponseTo))
        ),
        "{result:?}"
    );
    // An unsolicited response does not complete an attempt either.
    let unsolicited = idp()
        .respond_unsolicited(&sp, &person, None, now(), &random())
        .unwrap();
    let result = sign_in.finish(&mine, &unsolicited.encoded(), None).await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test]
async fn unsolicited_responses_sign_in_only_where_the_connection_allows_them() {
    for allowed in [false, true] {
        let world = world().await;
        let sign_in = connected(&world, allowed).await;
        let (sp, person) = customer_side(&sign_in);
        let response = idp()
            .respond_unsolicited(&sp, &person, None, now(), &random())
            .unwrap();
        let result = sign_in
            .finish_unsolicited(&response.encoded(), Some("192.0.2.1"))
            .await;
        if allowed {
            assert!(matches!(result, Ok(LoginStep::SignedIn(_))), "{result:?}");
        } else {
            assert!(
                matches!(
                    result,
                    Err(SamlSignInError::Response(
                        ResponseError::UnsolicitedNotAllowed
                    ))
                ),
                "{result:?}"
            );
        }
    }
}
