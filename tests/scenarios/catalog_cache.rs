//! `Policy::catalog_max_age`: services and business roles reused for a while after they were
//! read. A change made through the same `Ciam` is seen at once; a change made by another node
//! on the same store within the maximum age, never later; with the default (zero) at once.

use std::sync::Arc;

use chrono::Duration;
use ciam_core::credentials::PasswordParams;
use ciam_core::invitations::InvitationRequest;
use ciam_core::services::BusinessRoleDefinition;
use ciam_core::store::Store as _;
use ciam_core::{Ciam, Policy, Principal, SeededRandom};

use crate::support::{APP, World};

/// Another node: its own `Ciam` (and cache) over the world's store and clock.
fn node(world: &World, catalog_max_age: Duration, seed: u64) -> Ciam {
    Ciam::builder()
        .store(world.store.clone())
        .clock(world.clock.clone())
        .random(Arc::new(SeededRandom::new(seed)))
        .policy(Policy {
            password_params: PasswordParams::INSECURE_FAST_FOR_TESTS,
            catalog_max_age,
            ..Policy::default()
        })
        .build()
        .unwrap()
}

fn energy_manager(grants: &[&str]) -> BusinessRoleDefinition {
    BusinessRoleDefinition {
        key: "energy-manager".into(),
        name: "Energy manager".into(),
        grants: grants
            .iter()
            .map(|role| (APP.to_owned(), (*role).to_owned()))
            .collect(),
    }
}

async fn app_roles(ciam: &Ciam, identity: ciam_core::ids::IdentityId) -> Vec<String> {
    ciam.roles()
        .resolve(&Principal::System, identity, APP)
        .await
        .unwrap()
        .app_roles
        .into_iter()
        .collect()
}

#[tokio::test]
async fn a_business_role_changed_elsewhere_is_seen_within_the_maximum_age_and_at_once_here() {
    let world = World::new().await;
    let city_group = world.city_group().await;
    let (_, jeremy) = world
        .member(
            &world.scott,
            city_group.id,
            InvitationRequest {
                business_roles: vec!["energy-manager".into()],
                ..crate::support::request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let cached = node(&world, Duration::seconds(5), 101);
    let uncached = node(&world, Duration::zero(), 102);
    let both = ["consumption.export", "consumption.read"];
    assert_eq!(app_roles(&cached, jeremy).await, both);
    assert_eq!(app_roles(&uncached, jeremy).await, both);

    // Another node takes consumption.export out of the role.
    world
        .ciam
        .catalog()
        .define_business_role(&Principal::System, energy_manager(&["consumption.read"]))
        .await
        .unwrap();
    assert_eq!(
        app_roles(&uncached, jeremy).await,
        ["consumption.read"],
        "without a maximum age the change is seen at once"
    );
    assert_eq!(
        app_roles(&cached, jeremy).await,
        both,
        "within the maximum age the cached role is used"
    );
    world.clock.advance(Duration::seconds(4));
    assert_eq!(app_roles(&cached, jeremy).await, both);
    world.clock.advance(Duration::seconds(1));
    assert_eq!(
        app_roles(&cached, jeremy).await,
        ["consumption.read"],
        "once the maximum age has passed the store is read again"
    );

    // A change made through the caching node itself takes effect at once there.
    cached
        .catalog()
        .define_business_role(&Principal::System, energy_manager(&both))
        .await
        .unwrap();
    assert_eq!(app_roles(&cached, jeremy).await, both);

    // Business roles taken away from the person are never cached: memberships are read
    // on every resolution.
    let membership = world
        .store
        .membership_of(jeremy, city_group.id)
        .await
        .unwrap()
        .unwrap();
    world
        .ciam
        .administration()
        .set_business_roles(&Principal::System, membership.id, &[])
        .await
        .unwrap();
    assert!(app_roles(&cached, jeremy).await.is_empty());
}

#[tokio::test]
async fn the_catalog_through_the_cache_answers_like_the_store() {
    let world = World::new().await;
    let cached = node(&world, Duration::seconds(5), 103);
    let catalog = cached.catalog();
    let service = catalog.service_by_key(APP).await.unwrap().unwrap();
    assert_eq!(service.key, APP);
    assert!(
        catalog
            .service_by_key("no-such-service")
            .await
            .unwrap()
            .is_none()
    );
    let role = world
        .store
        .business_role_by_key("energy-manager")
        .await
        .unwrap()
        .unwrap();
    let through_cache = catalog.business_role(role.id).await.unwrap().unwrap();
    assert_eq!(*through_cache, role);
    // A service defined on another node after a miss is found at once (misses are not kept).
    world
        .ciam
        .catalog()
        .define_service(
            &Principal::System,
            ciam_core::services::ServiceDefinition {
                key: "no-such-service".into(),
                name: "Now there is one".into(),
                app_roles: vec!["view".into()],
            },
        )
        .await
        .unwrap();
    assert!(
        catalog
            .service_by_key("no-such-service")
            .await
            .unwrap()
            .is_some()
    );
}
