//! Invitation failure paths: validation, authorization, duplicates, resend, revoke, expiry,
//! and batch outcomes.

use std::collections::BTreeSet;

use ciam_core::identities::Mandate;
use ciam_core::invitations::{
    Acceptance, BatchRowOutcome, InvitationError, InvitationRequest, InvitationStatus,
};
use ciam_core::organizations::OrganizationUpsert;
use ciam_core::store::Store as _;
use ciam_core::{DenyReason, Principal};

use crate::support::{World, password, request};

fn accept_with_password() -> Acceptance {
    Acceptance {
        given_name: Some("Ann".into()),
        family_name: Some("Example".into()),
        password: Some(password()),
    }
}

#[tokio::test]
async fn invalid_invitations_are_refused_and_change_nothing() {
    let world = World::new().await;
    let city = world.city_group().await;
    let invitations = world.ciam.invitations();
    let events = world.events().await.len();
    let mails = world.mail.len();
    assert!(matches!(
        invitations
            .invite(&world.scott, city.id, request("no-at-sign"))
            .await,
        Err(InvitationError::Invalid(_))
    ));
    assert!(matches!(
        invitations
            .invite(
                &world.scott,
                city.id,
                InvitationRequest {
                    business_roles: vec!["ghost".into()],
                    ..request("a@citygroup.example")
                }
            )
            .await,
        Err(InvitationError::UnknownBusinessRole(_))
    ));
    assert!(matches!(
        invitations
            .invite(
                &world.scott,
                city.id,
                InvitationRequest {
                    given_name: Some("Only".into()),
                    ..request("a@citygroup.example")
                }
            )
            .await,
        Err(InvitationError::NameRequired)
    ));
    assert!(matches!(
        invitations
            .invite(
                &world.scott,
                city.id,
                InvitationRequest {
                    given_name: Some("x".repeat(101)),
                    family_name: Some("y".into()),
                    ..request("a@citygroup.example")
                }
            )
            .await,
        Err(InvitationError::Invalid(_))
    ));
    assert!(matches!(
        invitations
            .invite(
                &world.scott,
                city.id,
                InvitationRequest {
                    staff_roles: [ciam_core::identities::StaffRole::BackOffice].into(),
                    ..request("a@citygroup.example")
                }
            )
            .await,
        Err(InvitationError::StaffRoleOutsideProvider)
    ));
    assert!(matches!(
        invitations
            .invite(
                &world.scott,
                ciam_core::ids::OrganizationId::from_uuid(uuid::Uuid::from_u128(9)),
                request("a@citygroup.example")
            )
            .await,
        Err(InvitationError::UnknownOrganization)
    ));
    assert_eq!(world.events().await.len(), events);
    assert_eq!(world.mail.len(), mails);
}

#[tokio::test]
async fn suspended_organizations_take_no_invitations() {
    let world = World::new().await;
    let city = world.city_group().await;
    world
        .ciam
        .organizations()
        .upsert(
            &world.scott,
            OrganizationUpsert {
                crm_account_id: "ACC-1001".into(),
                name: "City Group, Inc.".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["citygroup.example".into()],
                suspended: true,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        world
            .ciam
            .invitations()
            .invite(&world.scott, city.id, request("a@citygroup.example"))
            .await,
        Err(InvitationError::OrganizationInactive)
    ));
}

#[tokio::test]
async fn delegates_cannot_escalate_or_leave_their_organization() {
    let world = World::new().await;
    let city = world.city_group().await;
    let invitations = world.ciam.invitations();
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                contact_person: true,
                ..request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let (user_manager, _) = world
        .member(
            &jeremy,
            city.id,
            InvitationRequest {
                mandates: BTreeSet::from([Mandate::UserManager]),
                ..request("uma.manager@citygroup.example")
            },
        )
        .await;
    // A user manager invites plain users and other user managers ...
    invitations
        .invite(&user_manager, city.id, request("plain@citygroup.example"))
        .await
        .unwrap();
    // ... but cannot give roles of a service they do not manage, nor the OrgAdmin mandate.
    assert!(matches!(
        invitations
            .invite(
                &user_manager,
                city.id,
                InvitationRequest {
                    business_roles: vec!["energy-manager".into()],
                    ..request("r@citygroup.example")
                }
            )
            .await,
        Err(InvitationError::Denied(DenyReason::Escalation { .. }))
    ));
    assert!(matches!(
        invitations
            .invite(
                &user_manager,
                city.id,
                InvitationRequest {
                    contact_person: true,
                    ..request("r@citygroup.example")
                }
            )
            .await,
        Err(InvitationError::Denied(DenyReason::Escalation { .. }))
    ));
    // A plain member cannot invite at all.
    let (plain, _) = world
        .member(&jeremy, city.id, request("pat.plain@citygroup.example"))
        .await;
    assert!(matches!(
        invitations
            .invite(&plain, city.id, request("r@citygroup.example"))
            .await,
        Err(InvitationError::Denied(DenyReason::OutsideMandate))
    ));
    // Jeremy cannot invite into another organization.
    let other = world
        .ciam
        .organizations()
        .upsert(
            &world.scott,
            OrganizationUpsert {
                crm_account_id: "ACC-OTHER".into(),
                name: "Other Inc.".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec![],
                suspended: false,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        invitations
            .invite(&jeremy, other.id, request("x@other.example"))
            .await,
        Err(InvitationError::Denied(DenyReason::OutsideMandate))
    ));
    // Nobody outside the organization sees its invitations.
    assert!(invitations.list(&jeremy, other.id, &[], 10).await.is_err());
    assert_eq!(
        invitations
            .list(&jeremy, city.id, &[InvitationStatus::Pending], 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn duplicates_members_and_open_invitations_are_reported() {
    let world = World::new().await;
    let city = world.city_group().await;
    let invitations = world.ciam.invitations();
    world
        .member(&world.scott, city.id, request("member@citygroup.example"))
        .await;
    assert!(matches!(
        invitations
            .invite(&world.scott, city.id, request("MEMBER@citygroup.example"))
            .await,
        Err(InvitationError::AlreadyMember(_))
    ));
    invitations
        .invite(&world.scott, city.id, request("open@citygroup.example"))
        .await
        .unwrap();
    assert!(matches!(
        invitations
            .invite(&world.scott, city.id, request("Open@CityGroup.example"))
            .await,
        Err(InvitationError::AlreadyInvited { .. })
    ));
}

#[tokio::test]
async fn resend_kills_the_old_link_and_revoke_and_expiry_end_it() {
    let world = World::new().await;
    let city = world.city_group().await;
    let invitations = world.ciam.invitations();
    let issued = invitations
        .invite(&world.scott, city.id, request("ann@citygroup.example"))
        .await
        .unwrap();
    let old = issued.token.unwrap();
    let resent = invitations
        .resend(&world.scott, issued.invitation.id)
        .await
        .unwrap();
    assert!(matches!(
        invitations
            .accept(&Principal::Anonymous, &old, accept_with_password())
            .await,
        Err(InvitationError::NotFound)
    ));
    let new = resent.token.unwrap();
    // Revoked: the new link stops working too.
    invitations
        .revoke(&world.scott, issued.invitation.id)
        .await
        .unwrap();
    assert!(
        invitations
            .accept(&Principal::Anonymous, &new, accept_with_password())
            .await
            .is_err()
    );
    assert!(matches!(
        invitations.resend(&world.scott, issued.invitation.id).await,
        Err(InvitationError::NotUsable(InvitationStatus::Revoked))
    ));

    // Expiry: after 7 days the link fails, and the sweep marks it expired.
    let issued = invitations
        .invite(&world.scott, city.id, request("bea@citygroup.example"))
        .await
        .unwrap();
    world.clock.advance(chrono::Duration::days(7));
    assert!(matches!(
        invitations
            .accept(
                &Principal::Anonymous,
                issued.token.as_ref().unwrap(),
                accept_with_password()
            )
            .await,
        Err(InvitationError::Expired)
    ));
    assert_eq!(
        invitations
            .expire_due(&Principal::System, 100)
            .await
            .unwrap(),
        1
    );
    let stored = world
        .ciam
        .store()
        .invitation(issued.invitation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, InvitationStatus::Expired);
}

#[tokio::test]
async fn the_invitee_declines_with_the_token_and_the_link_stops_working() {
    let world = World::new().await;
    let city = world.city_group().await;
    let invitations = world.ciam.invitations();
    let issued = invitations
        .invite(&world.scott, city.id, request("dee@citygroup.example"))
        .await
        .unwrap();
    let token = issued.token.unwrap();
    let unknown = ciam_core::secrets::SecretToken::from_presented("not-a-token");
    assert!(matches!(
        invitations.decline(&Principal::Anonymous, &unknown).await,
        Err(InvitationError::NotFound)
    ));
    let declined = invitations
        .decline(&Principal::Anonymous, &token)
        .await
        .unwrap();
    assert_eq!(declined.status, InvitationStatus::Revoked);
    assert!(declined.token_hash.is_none());
    assert!(matches!(
        invitations
            .accept(&Principal::Anonymous, &token, accept_with_password())
            .await,
        Err(InvitationError::NotFound)
    ));
    assert!(matches!(
        invitations.decline(&Principal::Anonymous, &token).await,
        Err(InvitationError::NotFound)
    ));

    // An expired invitation cannot be declined (it is already dead).
    let issued = invitations
        .invite(&world.scott, city.id, request("eve@citygroup.example"))
        .await
        .unwrap();
    world.clock.advance(chrono::Duration::days(7));
    assert!(matches!(
        invitations
            .decline(&Principal::Anonymous, issued.token.as_ref().unwrap())
            .await,
        Err(InvitationError::Expired)
    ));
}

#[tokio::test]
async fn acceptance_needs_a_valid_password_and_name_and_works_once() {
    let world = World::new().await;
    let city = world.city_group().await;
    let invitations = world.ciam.invitations();
    let issued = invitations
        .invite(&world.scott, city.id, request("ann@citygroup.example"))
        .await
        .unwrap();
    let token = issued.token.unwrap();
    let short = Acceptance {
        password: Some(ciam_core::credentials::Password::new("short")),
        ..accept_with_password()
    };
    assert!(matches!(
        invitations
            .accept(&Principal::Anonymous, &token, short)
            .await,
        Err(InvitationError::Password(_))
    ));
    let nameless = Acceptance {
        given_name: None,
        family_name: None,
        ..accept_with_password()
    };
    assert!(matches!(
        invitations
            .accept(&Principal::Anonymous, &token, nameless)
            .await,
        Err(InvitationError::NameRequired)
    ));
    let no_password = Acceptance {
        password: None,
        ..accept_with_password()
    };
    assert!(matches!(
        invitations
            .accept(&Principal::Anonymous, &token, no_password)
            .await,
        Err(InvitationError::PasswordRequired)
    ));
    // Nothing was created by the failures.
    let email = ciam_core::contact::EmailAddress::parse("ann@citygroup.example").unwrap();
    assert!(
        world
            .ciam
            .store()
            .identity_by_email(&email)
            .await
            .unwrap()
            .is_none()
    );
    invitations
        .accept(&Principal::Anonymous, &token, accept_with_password())
        .await
        .unwrap();
    assert!(matches!(
        invitations
            .accept(&Principal::Anonymous, &token, accept_with_password())
            .await,
        Err(InvitationError::NotUsable(InvitationStatus::Accepted))
    ));
}

#[tokio::test]
async fn an_existing_person_joins_a_second_organization_with_their_account() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (_, ann) = world
        .member(&world.scott, city.id, request("ann@citygroup.example"))
        .await;
    let other = world
        .ciam
        .organizations()
        .upsert(
            &world.scott,
            OrganizationUpsert {
                crm_account_id: "ACC-OTHER".into(),
                name: "Other Inc.".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec![],
                suspended: false,
            },
        )
        .await
        .unwrap();
    let issued = world
        .ciam
        .invitations()
        .invite(&world.scott, other.id, request("ann@citygroup.example"))
        .await
        .unwrap();
    let accepted = world
        .ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            issued.token.as_ref().unwrap(),
            Acceptance::default(),
        )
        .await
        .unwrap();
    assert!(!accepted.created);
    assert_eq!(accepted.identity.id, ann);
    assert_eq!(
        world
            .ciam
            .store()
            .memberships_of_identity(ann)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_batch_gives_every_row_its_own_outcome() {
    let world = World::new().await;
    let city = world.city_group().await;
    let (jeremy, _) = world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                contact_person: true,
                ..request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let (user_manager, _) = world
        .member(
            &jeremy,
            city.id,
            InvitationRequest {
                mandates: BTreeSet::from([Mandate::UserManager]),
                ..request("uma@citygroup.example")
            },
        )
        .await;
    world
        .ciam
        .invitations()
        .invite(&user_manager, city.id, request("open@citygroup.example"))
        .await
        .unwrap();
    let mut rows = vec![
        request("new1@citygroup.example"),
        request("jeremy.mills@citygroup.example"),
        request("NEW1@citygroup.example"),
        request("broken"),
        InvitationRequest {
            business_roles: vec!["energy-manager".into()],
            ..request("roles@citygroup.example")
        },
        request("open@citygroup.example"),
        InvitationRequest {
            business_roles: vec!["ghost".into()],
            ..request("ghost@citygroup.example")
        },
    ];
    for i in 0..993 {
        rows.push(request(&format!("bulk{i}@citygroup.example")));
    }
    let (_, outcomes) = world
        .ciam
        .invitations()
        .invite_batch(&user_manager, city.id, rows)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1000);
    assert!(matches!(outcomes[0], BatchRowOutcome::Invited { .. }));
    assert_eq!(outcomes[1], BatchRowOutcome::AlreadyMember);
    assert_eq!(
        outcomes[2],
        BatchRowOutcome::DuplicateInBatch { first_row: 0 }
    );
    assert!(matches!(outcomes[3], BatchRowOutcome::InvalidEmail { .. }));
    assert!(matches!(outcomes[4], BatchRowOutcome::NotAllowed { .. }));
    assert!(matches!(
        outcomes[5],
        BatchRowOutcome::AlreadyInvited { .. }
    ));
    assert!(matches!(outcomes[6], BatchRowOutcome::Invalid { .. }));
    assert!(
        outcomes[7..]
            .iter()
            .all(|o| matches!(o, BatchRowOutcome::Invited { .. }))
    );
    assert!(world.mail.latest_to("bulk992@citygroup.example").is_some());
    let pending = world
        .ciam
        .invitations()
        .list(&jeremy, city.id, &[InvitationStatus::Pending], 2000)
        .await
        .unwrap();
    // Lists are capped at 500 by the store.
    assert_eq!(pending.len(), 500);
    // A batch above the limit is refused as a whole.
    let too_many: Vec<_> = (0..50_001)
        .map(|i| request(&format!("x{i}@citygroup.example")))
        .collect();
    assert!(matches!(
        world
            .ciam
            .invitations()
            .invite_batch(&jeremy, city.id, too_many)
            .await,
        Err(InvitationError::BatchTooLarge(_))
    ));
    // Someone without any invite right is refused as a whole.
    let (plain, _) = world
        .member(&jeremy, city.id, request("pat.plain@citygroup.example"))
        .await;
    assert!(matches!(
        world
            .ciam
            .invitations()
            .invite_batch(&plain, city.id, vec![request("z@citygroup.example")])
            .await,
        Err(InvitationError::Denied(_))
    ));
}

/// A batch of more than two chunks (500 rows are checked and written together) with every kind
/// of row mixed in, several of them in a later chunk than the row they clash with: each row
/// gets the outcome it gets on its own, every invitation is written with its
/// `InvitationCreated` event in the outbox and only the hash of its token, and every sent one
/// is mailed once.
#[tokio::test]
async fn a_batch_across_chunks_gives_every_row_the_outcome_it_gets_alone() {
    let world = World::new().await;
    let city = world.city_group().await;
    let crm = world.ciam.principals().integration(
        "crm",
        [
            ciam_core::authz::IntegrationScope::Invitations,
            ciam_core::authz::IntegrationScope::Leads,
        ],
    );
    world
        .member(
            &world.scott,
            city.id,
            InvitationRequest {
                contact_person: true,
                ..request("jeremy.mills@citygroup.example")
            },
        )
        .await;
    let open = world
        .ciam
        .invitations()
        .invite(&crm, city.id, request("open@citygroup.example"))
        .await
        .unwrap()
        .invitation
        .id;
    let lead = |email: &str, id: &str| InvitationRequest {
        email: email.into(),
        crm_lead_id: Some(id.into()),
        ..InvitationRequest::default()
    };
    let mut rows: Vec<InvitationRequest> = (0..1200)
        .map(|i| request(&format!("bulk{i}@citygroup.example")))
        .collect();
    rows[10] = request("first@citygroup.example");
    rows[700] = request("FIRST@citygroup.example");
    rows[750] = request("jeremy.mills@citygroup.example");
    rows[800] = request("not an email");
    rows[850] = request("open@citygroup.example");
    rows[900] = lead("lena.private@gmail.com", "LEAD-1");
    rows[950] = InvitationRequest {
        business_roles: vec!["ghost".into()],
        ..request("ghost@citygroup.example")
    };
    rows[1000] = lead("leo.lead@citygroup.example", "LEAD-2");
    rows[1100] = InvitationRequest {
        given_name: Some("Only".into()),
        ..request("half.named@citygroup.example")
    };
    let outbox = world.store.outbox_depth().await.unwrap();
    let mails = world.mail.len();
    let (_, outcomes) = world
        .ciam
        .invitations()
        .invite_batch(&crm, city.id, rows)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1200);
    assert_eq!(
        outcomes[700],
        BatchRowOutcome::DuplicateInBatch { first_row: 10 }
    );
    assert_eq!(outcomes[750], BatchRowOutcome::AlreadyMember);
    assert!(matches!(
        outcomes[800],
        BatchRowOutcome::InvalidEmail { .. }
    ));
    assert_eq!(
        outcomes[850],
        BatchRowOutcome::AlreadyInvited { invitation: open }
    );
    assert!(matches!(
        outcomes[900],
        BatchRowOutcome::HeldForReview { .. }
    ));
    assert!(
        matches!(&outcomes[950], BatchRowOutcome::Invalid { reason } if reason.contains("ghost")),
        "{:?}",
        outcomes[950]
    );
    assert!(
        matches!(&outcomes[1100], BatchRowOutcome::Invalid { reason } if reason.contains("name")),
        "{:?}",
        outcomes[1100]
    );
    let refused = [700, 750, 800, 850, 950, 1100];
    for (index, outcome) in outcomes.iter().enumerate() {
        if index != 900 && !refused.contains(&index) {
            assert!(
                matches!(outcome, BatchRowOutcome::Invited { .. }),
                "row {index}: {outcome:?}"
            );
        }
    }
    // 1 194 invitations (one held): each with its event in the outbox, in the same commits.
    assert_eq!(
        world.store.outbox_depth().await.unwrap(),
        outbox + 1194,
        "one InvitationCreated event per invitation"
    );
    // Every sent invitation mailed once; the held one not at all.
    assert_eq!(world.mail.len(), mails + 1193);
    assert!(world.mail.latest_to("lena.private@gmail.com").is_none());
    // The store knows the token only by its hash; the mailed link's token finds the row.
    for email in ["bulk1199@citygroup.example", "leo.lead@citygroup.example"] {
        let token = world.invitation_token(email);
        let stored = world
            .store
            .invitation_by_token(&token.hash())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.email.to_string(), email);
        let json = serde_json::to_string(&stored).unwrap();
        assert!(!json.contains(token.expose()), "a raw token stored: {json}");
    }
    // Refused rows wrote nothing.
    for email in ["ghost@citygroup.example", "half.named@citygroup.example"] {
        let address = ciam_core::contact::EmailAddress::parse(email).unwrap();
        assert!(
            world
                .store
                .open_invitations_for_email(&address)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // The same rows again: everyone is invited or a member already, nobody twice.
    let again: Vec<InvitationRequest> = (0..1200)
        .filter(|i| ![10, 700, 750, 800, 850, 900, 950, 1000, 1100].contains(i))
        .map(|i| request(&format!("bulk{i}@citygroup.example")))
        .collect();
    let (_, outcomes) = world
        .ciam
        .invitations()
        .invite_batch(&crm, city.id, again)
        .await
        .unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, BatchRowOutcome::AlreadyInvited { .. }))
    );
    assert_eq!(world.mail.len(), mails + 1193);
}
