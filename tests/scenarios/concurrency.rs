//! Single-use things under concurrency: of simultaneous uses exactly one wins.

use ciam_core::Principal;
use ciam_core::invitations::{Acceptance, InvitationError, InvitationRequest};

use crate::support::{World, password};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_simultaneous_acceptances_of_one_invitation_exactly_one_succeeds() {
    for round in 0..20 {
        let world = World::new().await;
        let city = world.city_group().await;
        let issued = world
            .ciam
            .invitations()
            .invite(
                &world.scott,
                city.id,
                InvitationRequest {
                    email: format!("racer{round}@citygroup.example"),
                    given_name: Some("Race".into()),
                    family_name: Some("Condition".into()),
                    ..InvitationRequest::default()
                },
            )
            .await
            .unwrap();
        let token = issued.token.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let ciam = world.ciam.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                ciam.invitations()
                    .accept(
                        &Principal::Anonymous,
                        &token,
                        Acceptance {
                            password: Some(password()),
                            ..Acceptance::default()
                        },
                    )
                    .await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => wins += 1,
                Err(InvitationError::Conflict | InvitationError::NotUsable(_)) => {}
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
        let memberships = world
            .ciam
            .store()
            .memberships_of_identity(
                world
                    .ciam
                    .store()
                    .identity_by_email(
                        &ciam_core::contact::EmailAddress::parse(&format!(
                            "racer{round}@citygroup.example"
                        ))
                        .unwrap(),
                    )
                    .await
                    .unwrap()
                    .unwrap()
                    .id,
            )
            .await
            .unwrap();
        assert_eq!(memberships.len(), 1);
        let accepted_events = world
            .event_types()
            .await
            .into_iter()
            .filter(|t| t == "invitation_accepted")
            .count();
        // Staff invitations of the world plus this one.
        assert_eq!(accepted_events, 4);
    }
}
