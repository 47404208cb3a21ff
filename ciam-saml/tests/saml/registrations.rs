//! SP registrations stored through the core `Store`: register, refuse garbage without storing
//! anything, update, remove, list, authorization, and a consistent view across nodes.

use ciam_core::Principal;
use ciam_core::events::EventKind;
use ciam_core::settings::{SettingChange, SettingKind};
use ciam_core::store::EventQuery;
use ciam_saml::NameIdFormat;
use ciam_saml::idp::{
    RegistrationError, ServiceProviderOptions, ServiceProviderRegistrations,
    ServiceProviderRegistry,
};

use crate::common::*;
use crate::world::{APP, World, world};

fn options() -> ServiceProviderOptions {
    ServiceProviderOptions {
        service_key: Some(APP.into()),
        ..ServiceProviderOptions::default()
    }
}

async fn stored_count(world: &World) -> usize {
    world
        .store
        .settings(SettingKind::ServiceProvider, None)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn an_sp_registered_from_metadata_is_stored_and_used_by_the_idp() {
    let world = world().await;
    let registrations = ServiceProviderRegistrations::new(world.ciam.clone());
    let metadata = sp_metadata(SP_ENTITY, SP_ACS);
    let registered = registrations
        .register(&world.admin, &metadata, options())
        .await
        .unwrap();
    assert_eq!(registered.service_provider.entity_id, SP_ENTITY);
    assert_eq!(
        registered.service_provider.service_key.as_deref(),
        Some(APP)
    );
    assert!(!registered.service_provider.allow_idp_initiated);

    // Stored as a setting: kind ServiceProvider, key = entity id, body = metadata + options.
    let setting = world
        .store
        .setting(SettingKind::ServiceProvider, SP_ENTITY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(setting.body["metadata_xml"], metadata.as_str());
    assert_eq!(setting.body["service_key"], APP);
    assert_eq!(setting.body["allow_idp_initiated"], false);

    // The IdP reads it per request: a signed request from that SP is accepted.
    let (config, connection) = sp_side();
    let outgoing = config
        .authn_request(&connection, None, now(), &random())
        .unwrap();
    let query = outgoing.url.split_once('?').unwrap().1;
    let request = idp()
        .receive_redirect(&registrations, query, now())
        .await
        .unwrap();
    assert_eq!(request.sp_entity_id(), SP_ENTITY);
    assert!(request.was_signed());

    // Audited.
    let events = world
        .store
        .events(EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(events.iter().any(|e| matches!(
        &e.event.kind,
        EventKind::SettingChanged { setting: SettingKind::ServiceProvider, key, change: SettingChange::Created }
            if key == SP_ENTITY
    )));
}

#[tokio::test]
async fn garbage_is_refused_with_a_clear_error_and_nothing_is_stored() {
    let world = world().await;
    let registrations = ServiceProviderRegistrations::new(world.ciam.clone());
    let good = sp_metadata(SP_ENTITY, SP_ACS);
    let cert = key("sp").certificate().to_base64();
    let cases: Vec<(&str, String, ServiceProviderOptions)> = vec![
        ("not xml", "this is not metadata".into(), options()),
        (
            "doctype",
            format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{good}"),
            options(),
        ),
        (
            "no entity id",
            good.replace(&format!("entityID=\"{SP_ENTITY}\""), ""),
            options(),
        ),
        (
            "an idp, not an sp",
            idp().metadata(false, None).unwrap(),
            options(),
        ),
        (
            "no post acs",
            good.replace("bindings:HTTP-POST", "bindings:HTTP-Artifact"),
            options(),
        ),
        (
            "acs over plain http",
            sp_metadata(SP_ENTITY, "http://app.example.test/saml/acs"),
            options(),
        ),
        (
            "acs not a url",
            sp_metadata(SP_ENTITY, "javascript:alert(1)"),
            options(),
        ),
        (
            "certificate garbage",
            good.replace(&cert, "bm90IGEgY2VydGlmaWNhdGU="),
            options(),
        ),
        (
            "signed requests without a certificate",
            {
                let start = good.find("<md:KeyDescriptor").unwrap();
                let end = good.find("</md:KeyDescriptor>").unwrap() + "</md:KeyDescriptor>".len();
                format!("{}{}", &good[..start], &good[end..])
            },
            options(),
        ),
        (
            "unknown service",
            good.clone(),
            ServiceProviderOptions {
                service_key: Some("no-such-service".into()),
                ..ServiceProviderOptions::default()
            },
        ),
        (
            "transient nameid cannot be issued",
            good.clone(),
            ServiceProviderOptions {
                name_id_format: Some(NameIdFormat::Transient),
                ..options()
            },
        ),
        (
            "entity id with a control character",
            sp_metadata("https://app.example.test/\u{7}", SP_ACS),
            options(),
        ),
    ];
    for (what, metadata, options) in cases {
        let result = registrations
            .register(&world.admin, &metadata, options)
            .await;
        let error = result.expect_err(what);
        assert!(!error.to_string().is_empty(), "{what}: {error:?}");
        assert_eq!(stored_count(&world).await, 0, "{what} stored something");
    }
    // And the good one passes, so the cases above fail for their own reason.
    registrations
        .register(&world.admin, &good, options())
        .await
        .unwrap();
    assert_eq!(stored_count(&world).await, 1);
}

#[tokio::test]
async fn errors_name_what_is_wrong() {
    let world = world().await;
    let registrations = ServiceProviderRegistrations::new(world.ciam.clone());
    let http = sp_metadata(SP_ENTITY, "http://app.example.test/saml/acs");
    let error = registrations
        .register(&world.admin, &http, options())
        .await
        .unwrap_err();
    assert!(matches!(error, RegistrationError::Metadata(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "service provider metadata refused: metadata endpoint \"http://app.example.test/saml/acs\" is not an https url"
    );
    let error = registrations
        .register(
            &world.admin,
            &sp_metadata(SP_ENTITY, SP_ACS),
            ServiceProviderOptions {
                service_key: Some("nope".into()),
                ..ServiceProviderOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "service nope is not in the catalog");
}

#[tokio::test]
async fn a_second_registration_of_an_entity_id_is_refused() {
    let world = world().await;
    let registrations = ServiceProviderRegistrations::new(world.ciam.clone());
    let metadata = sp_metadata(SP_ENTITY, SP_ACS);
    registrations
        .register(&world.admin, &metadata, options())
        .await
        .unwrap();
    let again = registrations
        .register(&world.admin, &metadata, ServiceProviderOptions::default())
        .await;
    assert!(
        matches!(again, Err(RegistrationError::AlreadyRegistered(ref e)) if e == SP_ENTITY),
        "{again:?}"
    );
    let stored = registrations
        .registration(&world.admin, SP_ENTITY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.options, options(), "the first registration stays");
}

#[tokio::test]
async fn only_administrators_manage_registrations() {
    let world = world().await;
    let registrations = ServiceProviderRegistrations::new(world.ciam.clone());
    let member = world.member("jeremy.mills@citygroup.example", true).await;
    let member = world.ciam.principals().for_identity(member).await.unwrap();
    let metadata = sp_metadata(SP_ENTITY, SP_ACS);
    for principal in [&member, &Principal::Anonymous] {
        let result = registrations
            .register(principal, &metadata, options())
            .await;
        assert!(
            matches!(result, Err(RegistrationError::Denied(_))),
            "{result:?}"
        );
        assert!(matches!(
            registrations.list(principal).await,
            Err(RegistrationError::Denied(_))
        ));
    }
    assert_eq!(stored_count(&world).await, 0);
    registrations
        .register(&world.admin, &metadata, options())
        .await
        .unwrap();
    for result in [
        registrations
            .update(&member, SP_ENTITY, None, ServiceProviderOptions::default())
            .await
            .map(|_| ()),
        registrations.remove(&member, SP_ENTITY).await,
    ] {
        assert!(
            matches!(result, Err(RegistrationError::Denied(_))),
            "{result:?}"
        );
    }
    assert_eq!(stored_count(&world).await, 1);
}

#[tokio::test]
async fn update_list_and_remove() {
    let world = world().await;
    let registrations = ServiceProviderRegistrations::new(world.ciam.clone());
    registrations
        .register(&world.admin, &sp_metadata(SP_ENTITY, SP_ACS), options())
        .await
        .unwrap();
    let other = "https://reports.example.test/saml";
    registrations
        .register(
            &world.admin,
            &sp_metadata(other, "https://reports.example.test/acs"),
            ServiceProviderOptions::default(),
        )
        .await
        .unwrap();
    let listed: Vec<_> = registrations
        .list(&world.admin)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.service_provider.entity_id)
        .collect();
    assert_eq!(listed, [SP_ENTITY, other], "ordered by entity id");

    // Options change; the metadata stays when none is given.
    let updated = registrations
        .update(
            &world.admin,
            SP_ENTITY,
            None,
            ServiceProviderOptions {
                allow_idp_initiated: true,
                sign_response: true,
                name_id_format: Some(NameIdFormat::EmailAddress),
                ..options()
            },
        )
        .await
        .unwrap();
    assert!(updated.service_provider.allow_idp_initiated);
    assert_eq!(
        updated.service_provider.default_name_id_format,
        NameIdFormat::EmailAddress
    );
    assert_eq!(updated.metadata_xml, sp_metadata(SP_ENTITY, SP_ACS));
    let sp = ServiceProviderRegistry::get(&registrations, SP_ENTITY)
        .await
        .unwrap()
        .unwrap();
    assert!(sp.allow_idp_initiated && sp.sign_response);
    idp()
        .respond_unsolicited(&sp, &user(), None, now(), &random())
        .unwrap();

    // New metadata must keep the entity id; a refused update changes nothing.
    let moved = registrations
        .update(
            &world.admin,
            SP_ENTITY,
            Some(&sp_metadata(other, SP_ACS)),
            options(),
        )
        .await;
    assert!(
        matches!(moved, Err(RegistrationError::EntityIdChanged { .. })),
        "{moved:?}"
    );
    let bad = registrations
        .update(
            &world.admin,
            SP_ENTITY,
            Some("<md:EntityDescriptor"),
            options(),
        )
        .await;
    assert!(
        matches!(bad, Err(RegistrationError::Metadata(_))),
        "{bad:?}"
    );
    let kept = registrations
        .registration(&world.admin, SP_ENTITY)
        .await
        .unwrap()
        .unwrap();
    assert!(kept.options.allow_idp_initiated);
    assert_eq!(kept.version, updated.version);

    let missing = registrations
        .update(&world.admin, "https://nobody.test", None, options())
        .await;
    assert!(matches!(missing, Err(RegistrationError::NotRegistered(_))));

    registrations.remove(&world.admin, other).await.unwrap();
    assert!(matches!(
        registrations.remove(&world.admin, other).await,
        Err(RegistrationError::NotRegistered(_))
    ));
    assert_eq!(stored_count(&world).await, 1);
}

#[tokio::test]
async fn every_node_sees_a_change_made_on_another() {
    let world = world().await;
    // Two server nodes: two registries over one store.
    let node_a = ServiceProviderRegistrations::new(world.ciam.clone());
    let node_b = ServiceProviderRegistrations::new(world.ciam.clone());
    node_b
        .register(&world.admin, &sp_metadata(SP_ENTITY, SP_ACS), options())
        .await
        .unwrap();
    let first = ServiceProviderRegistry::get(&node_a, SP_ENTITY)
        .await
        .unwrap()
        .unwrap();
    assert!(!first.allow_idp_initiated);
    assert_eq!(first.assertion_consumer_services[0].location, SP_ACS);

    // Node B moves the ACS and allows IdP-initiated SSO; node A (which has the old one
    // parsed) sees both at once.
    let moved = "https://app.example.test/saml/acs-v2";
    node_b
        .update(
            &world.admin,
            SP_ENTITY,
            Some(&sp_metadata(SP_ENTITY, moved)),
            ServiceProviderOptions {
                allow_idp_initiated: true,
                ..options()
            },
        )
        .await
        .unwrap();
    let second = ServiceProviderRegistry::get(&node_a, SP_ENTITY)
        .await
        .unwrap()
        .unwrap();
    assert!(second.allow_idp_initiated);
    assert_eq!(second.assertion_consumer_services[0].location, moved);

    // Node B removes it; node A refuses the SP's requests from then on.
    node_b.remove(&world.admin, SP_ENTITY).await.unwrap();
    assert!(
        ServiceProviderRegistry::get(&node_a, SP_ENTITY)
            .await
            .unwrap()
            .is_none()
    );
    let (config, connection) = sp_side();
    let outgoing = config
        .authn_request(&connection, None, now(), &random())
        .unwrap();
    let query = outgoing.url.split_once('?').unwrap().1;
    let refused = idp().receive_redirect(&node_a, query, now()).await;
    assert!(
        matches!(refused, Err(ciam_saml::idp::RequestError::UnknownIssuer)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn with_a_maximum_age_other_nodes_changes_arrive_within_it_and_this_nodes_at_once() {
    use std::sync::Arc;

    use ciam_core::credentials::PasswordParams;
    use ciam_core::{Ciam, FixedClock, Policy, SeededRandom};

    let world = world().await;
    let clock = Arc::new(FixedClock::new(now()));
    let caching = Ciam::builder()
        .store(world.store.clone())
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(12)))
        .policy(Policy {
            password_params: PasswordParams::INSECURE_FAST_FOR_TESTS,
            catalog_max_age: chrono::Duration::seconds(5),
            ..Policy::default()
        })
        .build()
        .unwrap();
    let node_a = ServiceProviderRegistrations::new(caching);
    let node_b = ServiceProviderRegistrations::new(world.ciam.clone());
    node_b
        .register(&world.admin, &sp_metadata(SP_ENTITY, SP_ACS), options())
        .await
        .unwrap();
    assert_eq!(acs(&node_a).await.as_deref(), Some(SP_ACS));

    // Node B moves the ACS: node A keeps the registration it read for up to five seconds.
    let moved = "https://app.example.test/saml/acs-v2";
    node_b
        .update(
            &world.admin,
            SP_ENTITY,
            Some(&sp_metadata(SP_ENTITY, moved)),
            options(),
        )
        .await
        .unwrap();
    assert_eq!(acs(&node_b).await.as_deref(), Some(moved));
    assert_eq!(acs(&node_a).await.as_deref(), Some(SP_ACS));
    clock.advance(chrono::Duration::seconds(4));
    assert_eq!(acs(&node_a).await.as_deref(), Some(SP_ACS));
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(acs(&node_a).await.as_deref(), Some(moved));

    // A change made through node A is seen there at once.
    node_a
        .update(
            &world.admin,
            SP_ENTITY,
            Some(&sp_metadata(SP_ENTITY, SP_ACS)),
            options(),
        )
        .await
        .unwrap();
    assert_eq!(acs(&node_a).await.as_deref(), Some(SP_ACS));

    // Removed on node B: node A refuses the SP once its copy is five seconds old.
    node_b.remove(&world.admin, SP_ENTITY).await.unwrap();
    assert_eq!(acs(&node_a).await.as_deref(), Some(SP_ACS));
    clock.advance(chrono::Duration::seconds(5));
    assert_eq!(acs(&node_a).await, None);
}

/// The first ACS of the test SP as `node` sees it, if registered.
async fn acs(node: &ServiceProviderRegistrations) -> Option<String> {
    ServiceProviderRegistry::get(node, SP_ENTITY)
        .await
        .unwrap()
        .map(|sp| sp.assertion_consumer_services[0].location.clone())
}
