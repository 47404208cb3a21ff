//! Leads: invited by the CRM with a lead id; webmail addresses held for review; the
//! `LeadRegistered` event carries the lead id when the lead registers.

use std::collections::BTreeSet;

use ciam_core::authz::IntegrationScope;
use ciam_core::events::EventKind;
use ciam_core::invitations::{
    Acceptance, BatchRowOutcome, InvitationError, InvitationRequest, InvitationStatus,
};
use ciam_core::organizations::OrganizationUpsert;
use ciam_core::services::LEAD_ROLE_KEY;
use ciam_core::{DenyReason, Principal};

use crate::support::{World, password};

fn lead(email: &str, id: &str) -> InvitationRequest {
    InvitationRequest {
        email: email.into(),
        crm_lead_id: Some(id.into()),
        ..InvitationRequest::default()
    }
}

#[tokio::test]
async fn a_lead_registers_and_the_crm_hears_the_lead_id() {
    let world = World::new().await;
    let ciam = &world.ciam;
    let crm = ciam.principals().integration(
        "crm",
        [IntegrationScope::Provisioning, IntegrationScope::Leads],
    );
    let prospect = ciam
        .organizations()
        .upsert(
            &crm,
            OrganizationUpsert {
                crm_account_id: "ACC-PROSPECT".into(),
                name: "Prospect Oy".into(),
                kind: ciam_core::organizations::OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec![],
                suspended: false,
            },
        )
        .await
        .unwrap();

    // Batch of leads: one business address, one webmail address (held), one bad row.
    let (_, outcomes) = ciam
        .invitations()
        .invite_batch(
            &crm,
            prospect.id,
            vec![
                lead("lena.lead@prospect.example", "LEAD-77"),
                lead("lena.private@gmail.com", "LEAD-78"),
                lead("not an email", "LEAD-79"),
            ],
        )
        .await
        .unwrap();
    assert!(matches!(outcomes[0], BatchRowOutcome::Invited { .. }));
    let BatchRowOutcome::HeldForReview { invitation: held } = outcomes[1] else {
        panic!("webmail lead not held: {:?}", outcomes[1])
    };
    assert!(matches!(outcomes[2], BatchRowOutcome::InvalidEmail { .. }));
    assert!(world.mail.latest_to("lena.private@gmail.com").is_none());

    // The lead accepts.
    let token = world.invitation_token("lena.lead@prospect.example");
    let accepted = ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            &token,
            Acceptance {
                given_name: Some("Lena".into()),
                family_name: Some("Lead".into()),
                password: Some(password()),
            },
        )
        .await
        .unwrap();
    let lead_role = ciam
        .store()
        .business_role_by_key(LEAD_ROLE_KEY)
        .await
        .unwrap()
        .unwrap();
    assert!(accepted.membership.business_roles.contains(&lead_role.id));
    assert_eq!(accepted.membership.crm_lead_id.as_deref(), Some("LEAD-77"));
    let events = world.events().await;
    let registered: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LeadRegistered { crm_lead_id, email } => {
                Some((crm_lead_id.clone(), email.clone(), e.identity))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        registered,
        vec![(
            "LEAD-77".to_owned(),
            "lena.lead@prospect.example".to_owned(),
            Some(accepted.identity.id)
        )]
    );

    // The held invitation: the CRM may not release it; back office does, and the mail goes.
    assert!(matches!(
        ciam.invitations().release(&crm, held).await,
        Err(InvitationError::Denied(DenyReason::StaffOnly))
    ));
    let queue = ciam
        .invitations()
        .held_for_review(&world.back_office, 10)
        .await
        .unwrap();
    assert_eq!(
        queue.iter().map(|i| i.id).collect::<BTreeSet<_>>(),
        BTreeSet::from([held])
    );
    let released = ciam
        .invitations()
        .release(&world.back_office, held)
        .await
        .unwrap();
    assert_eq!(released.invitation.status, InvitationStatus::Pending);
    assert!(world.mail.latest_to("lena.private@gmail.com").is_some());
}

#[tokio::test]
async fn back_office_refuses_a_held_invitation_without_sending_it() {
    let world = World::new().await;
    let ciam = &world.ciam;
    let city = world.city_group().await;
    let held = ciam
        .invitations()
        .invite(
            &world.scott,
            city.id,
            lead("pat.private@gmail.com", "LEAD-9"),
        )
        .await
        .unwrap();
    assert_eq!(held.invitation.status, InvitationStatus::HeldForReview);
    // Refusing is back office's decision: the account manager who invited may not.
    assert!(matches!(
        ciam.invitations()
            .refuse(&world.scott, held.invitation.id)
            .await,
        Err(InvitationError::Denied(_))
    ));
    let refused = ciam
        .invitations()
        .refuse(&world.back_office, held.invitation.id)
        .await
        .unwrap();
    assert_eq!(refused.status, InvitationStatus::Revoked);
    assert!(world.mail.latest_to("pat.private@gmail.com").is_none());
    // Final: neither released nor refused again.
    assert!(matches!(
        ciam.invitations()
            .release(&world.back_office, held.invitation.id)
            .await,
        Err(InvitationError::NotUsable(InvitationStatus::Revoked))
    ));
    assert!(matches!(
        ciam.invitations()
            .refuse(&world.back_office, held.invitation.id)
            .await,
        Err(InvitationError::NotUsable(InvitationStatus::Revoked))
    ));
}

#[tokio::test]
async fn webmail_policy_can_refuse_or_allow() {
    use ciam_core::{Ciam, Policy, WebmailPolicy};
    for (policy, expect_refused) in [(WebmailPolicy::Refuse, true), (WebmailPolicy::Allow, false)] {
        let world = World::new().await;
        let ciam = Ciam::builder()
            .store(world.store.clone())
            .clock(world.clock.clone())
            .mailer(world.mail.clone())
            .policy(Policy {
                webmail_policy: policy,
                password_params: ciam_core::credentials::PasswordParams::INSECURE_FAST_FOR_TESTS,
                ..Policy::default()
            })
            .build()
            .unwrap();
        let city = world.city_group().await;
        let result = ciam
            .invitations()
            .invite(&world.scott, city.id, lead("someone@hotmail.com", "LEAD-1"))
            .await;
        if expect_refused {
            assert!(matches!(result, Err(InvitationError::WebmailRefused)));
        } else {
            assert_eq!(result.unwrap().invitation.status, InvitationStatus::Pending);
        }
    }
}

#[tokio::test]
async fn an_integration_without_the_leads_scope_cannot_invite_leads() {
    let world = World::new().await;
    let city = world.city_group().await;
    let crm = world
        .ciam
        .principals()
        .integration("crm", [IntegrationScope::Provisioning]);
    let result = world
        .ciam
        .invitations()
        .invite(&crm, city.id, lead("x@citygroup.example", "LEAD-1"))
        .await;
    assert!(matches!(
        result,
        Err(InvitationError::Denied(DenyReason::MissingScope(
            IntegrationScope::Leads
        )))
    ));
}
