//! SmartPlan scenarios: the lead-score event and the contact change reach a recording
//! connector through the outbox dispatcher.

use std::sync::Arc;

use ciam_core::Principal;
use ciam_core::credentials::Password;
use ciam_core::delivery::first_link;
use ciam_core::invitations::Acceptance;
use ciam_core::secrets::SecretToken;
use ciam_crm::commands::{InviteLeadsRequest, LeadInvitee, RowOutcome};
use ciam_crm::events::ContactDetail;
use ciam_crm::{CrmEventData, Dispatcher, DispatcherConfig, RecordingConnector};

use crate::{World, world};

/// Accepts the latest invitation mailed to `email`; returns the identity id.
pub async fn accept_latest(w: &World, email: &str) -> ciam_core::ids::IdentityId {
    let mail = w.mailbox.latest_to(email).expect("an invitation mail");
    let link = first_link(&mail.text).expect("a link");
    let token = link.split("token=").nth(1).expect("a token");
    let accepted = w
        .ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            &SecretToken::from_presented(token),
            Acceptance {
                given_name: Some("Karl".into()),
                family_name: Some("Kearnes".into()),
                password: Some(Password::new("correct horse battery staple")),
            },
        )
        .await
        .unwrap();
    accepted.identity.id
}

async fn deliver_all(w: &World, connector: Arc<RecordingConnector>) {
    let dispatcher =
        Dispatcher::from_ciam(&w.ciam, connector, DispatcherConfig::default()).unwrap();
    for _ in 0..100 {
        if dispatcher.run_once().await.unwrap().claimed == 0 {
            break;
        }
    }
    assert_eq!(dispatcher.depth().await.unwrap(), 0);
}

#[tokio::test]
async fn lead_registration_and_contact_change_reach_the_crm() {
    let w = world().await;
    w.city_group().await;
    let result = w
        .provisioner
        .invite_leads(
            &w.crm,
            InviteLeadsRequest {
                crm_account_id: "ACC-1".into(),
                items: vec![LeadInvitee {
                    email: "karl.kearnes@koko.example".into(),
                    crm_lead_id: "LEAD-4711".into(),
                    given_name: None,
                    family_name: None,
                }],
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(result.items[0].outcome, RowOutcome::Invited { .. }),
        "{result:?}"
    );
    let identity = accept_latest(&w, "karl.kearnes@koko.example").await;

    let recorder = Arc::new(RecordingConnector::new());
    deliver_all(&w, recorder.clone()).await;
    let events = recorder.events();
    let lead = events
        .iter()
        .find(|event| matches!(event.data, CrmEventData::LeadRegistered { .. }))
        .expect("lead_registered reached the connector");
    assert_eq!(
        lead.data,
        CrmEventData::LeadRegistered {
            crm_lead_id: "LEAD-4711".into(),
            email: "karl.kearnes@koko.example".into()
        }
    );
    assert_eq!(
        lead.organization
            .as_ref()
            .and_then(|o| o.crm_account_id.as_deref()),
        Some("ACC-1")
    );
    // Events the CRM does not care about (organization created, invitation created) were
    // acknowledged without delivery: what arrived is the registration of the lead.
    assert!(
        events
            .iter()
            .all(|event| event.event_type() != "invitation_created")
    );

    // Karl changes his name in MySmartPlan.
    recorder.clear();
    let karl = w.ciam.principals().for_identity(identity).await.unwrap();
    w.ciam
        .profile()
        .change_name(&karl, identity, "Karl", "Kearnes-Smith")
        .await
        .unwrap();
    deliver_all(&w, recorder.clone()).await;
    let events = recorder.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].data,
        CrmEventData::ContactDetailsChanged {
            field: ContactDetail::Name,
            before: Some("Karl Kearnes".into()),
            after: Some("Karl Kearnes-Smith".into()),
        }
    );
    let person = events[0].person.as_ref().unwrap();
    assert_eq!(person.id, identity.as_uuid());
    assert_eq!(person.email.as_deref(), Some("karl.kearnes@koko.example"));
}
