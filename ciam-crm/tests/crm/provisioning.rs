//! Commands executed through the façade: idempotency, validation paths, per-row results.

use ciam_core::authz::IntegrationScope;
use ciam_crm::CommandError;
use ciam_crm::commands::*;

use crate::world;

fn batch(items: Vec<Invitee>) -> InviteBatchRequest {
    InviteBatchRequest {
        crm_account_id: "ACC-1".into(),
        items,
    }
}

fn row(email: &str) -> Invitee {
    Invitee {
        email: email.into(),
        ..Invitee::default()
    }
}

#[tokio::test]
async fn same_command_twice_has_the_effect_of_once() {
    let w = world().await;
    w.city_group().await;
    let events_before = w.store.outbox_depth().await.unwrap();
    // Again: no change, no event.
    w.city_group().await;
    assert_eq!(w.store.outbox_depth().await.unwrap(), events_before);
    let end = ChangeContractRequest {
        crm_contract_id: "CON-1".into(),
        change: ContractChangeKind::End,
    };
    let first = w
        .provisioner
        .change_contract(&w.crm, end.clone())
        .await
        .unwrap();
    assert_eq!(first.status, ContractState::Ended);
    let depth = w.store.outbox_depth().await.unwrap();
    // Ending an ended contract again answers with the contract, changing nothing.
    let second = w.provisioner.change_contract(&w.crm, end).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(w.store.outbox_depth().await.unwrap(), depth);
    // But resuming it is refused.
    let resume = w
        .provisioner
        .change_contract(
            &w.crm,
            ChangeContractRequest {
                crm_contract_id: "CON-1".into(),
                change: ContractChangeKind::Resume,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(resume.code(), "rejected");
}

#[tokio::test]
async fn same_idempotency_key_returns_the_first_result() {
    let w = world().await;
    w.city_group().await;
    let command = Command::InviteBatch(batch(vec![
        row("a@citygroup.example"),
        row("b@citygroup.example"),
    ]));
    let first = w
        .provisioner
        .execute(&w.crm, Some("key-1"), command.clone())
        .await
        .unwrap();
    let second = w
        .provisioner
        .execute(&w.crm, Some("key-1"), command.clone())
        .await
        .unwrap();
    assert_eq!(first, second);
    let CommandResponse::InviteBatch(result) = &first else {
        panic!("unexpected response {first:?}")
    };
    assert_eq!(result.summary.created, 2);
    // Without the key the retry is still harmless: rows come back already invited.
    let third = w
        .provisioner
        .execute(&w.crm, None, command.clone())
        .await
        .unwrap();
    let CommandResponse::InviteBatch(third) = third else {
        panic!()
    };
    assert_eq!(third.summary.created, 0);
    assert_eq!(third.summary.skipped, 2);
    assert!(matches!(
        third.items[0].outcome,
        RowOutcome::AlreadyInvited { .. }
    ));
    // Another API client may use the same key for something else.
    let other = w
        .ciam
        .principals()
        .integration("other-crm", [IntegrationScope::Invitations]);
    let theirs = w
        .provisioner
        .execute(
            &other,
            Some("key-1"),
            Command::InviteBatch(batch(vec![row("c@citygroup.example")])),
        )
        .await
        .unwrap();
    assert_ne!(theirs, first);
}

#[tokio::test]
async fn same_key_with_another_body_is_refused() {
    let w = world().await;
    w.city_group().await;
    let first = Command::InviteBatch(batch(vec![row("a@citygroup.example")]));
    let second = Command::InviteBatch(batch(vec![row("z@citygroup.example")]));
    w.provisioner
        .execute(&w.crm, Some("k"), first)
        .await
        .unwrap();
    let error = w
        .provisioner
        .execute(&w.crm, Some("k"), second)
        .await
        .unwrap_err();
    assert!(
        matches!(error, CommandError::IdempotencyKeyReused(_)),
        "{error}"
    );
    assert_eq!(error.http_status(), 422);
    assert_eq!(
        error.to_string(),
        "idempotency key k was already used with a different request"
    );
    // A bad key is a validation error.
    let error = w
        .provisioner
        .execute(
            &w.crm,
            Some("has space"),
            Command::FindIdentity(IdentityQuery::default()),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), "invalid");
}

#[tokio::test]
async fn every_command_runs_through_execute() {
    let w = world().await;
    for command in crate::commands::every_command() {
        // Each must end in a typed response or a typed error, never a panic.
        let _ = w.provisioner.execute(&w.crm, None, command).await;
    }
}

#[tokio::test]
async fn batch_rows_get_their_own_results_with_field_paths() {
    let w = world().await;
    w.city_group().await;
    let items = vec![
        row("ok1@citygroup.example"),
        row("OK1@citygroup.example"),
        row("no-at-sign"),
        row("ok2@citygroup.example"),
        Invitee {
            business_roles: vec!["astronaut".into()],
            ..row("ok3@citygroup.example")
        },
        Invitee {
            given_name: Some("Only".into()),
            ..row("ok4@citygroup.example")
        },
        Invitee {
            mandates: vec![MandateSpec::ServiceManager {
                service: "nope".into(),
            }],
            ..row("ok5@citygroup.example")
        },
    ];
    let result = w
        .provisioner
        .invite_batch(&w.crm, batch(items))
        .await
        .unwrap();
    assert_eq!(result.items.len(), 7);
    assert!(matches!(
        result.items[0].outcome,
        RowOutcome::Invited { .. }
    ));
    assert_eq!(
        result.items[1].outcome,
        RowOutcome::DuplicateInBatch { first_row: 0 }
    );
    let RowOutcome::Invalid { errors } = &result.items[2].outcome else {
        panic!("{:?}", result.items[2])
    };
    assert_eq!(
        errors[0].to_string(),
        "items[2].email: invalid email address: missing '@'"
    );
    assert!(matches!(
        result.items[3].outcome,
        RowOutcome::Invited { .. }
    ));
    let RowOutcome::Invalid { errors } = &result.items[4].outcome else {
        panic!()
    };
    assert_eq!(errors[0].field, "items[4].business_roles[0]");
    let RowOutcome::Invalid { errors } = &result.items[5].outcome else {
        panic!()
    };
    assert_eq!(errors[0].field, "items[5].family_name");
    let RowOutcome::Invalid { errors } = &result.items[6].outcome else {
        panic!()
    };
    assert_eq!(errors[0].field, "items[6].mandates[0].service");
    assert_eq!(
        result.summary,
        BatchSummary {
            total: 7,
            created: 2,
            skipped: 1,
            failed: 4
        }
    );
    assert!(result.batch_id.is_some());
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let w = world().await;
    let error = w
        .provisioner
        .upsert_organization(
            &w.crm,
            UpsertOrganizationRequest {
                crm_account_id: "bad id!".into(),
                name: " ".into(),
                kind: OrganizationKind::Provider,
                parent_crm_account_id: None,
                email_domains: vec!["ok.example".into(), "not a domain".into()],
                suspended: false,
            },
        )
        .await
        .unwrap_err();
    let CommandError::Invalid(errors) = &error else {
        panic!("{error}")
    };
    let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["crm_account_id", "name", "kind", "email_domains[1]"]
    );
    assert_eq!(error.to_body().errors.len(), 4);
    let error = w
        .provisioner
        .upsert_contract(
            &w.crm,
            UpsertContractRequest {
                crm_contract_id: "C".into(),
                crm_account_id: "ACC-1".into(),
                services: vec!["smartplan-app".into(), "unknown-service".into()],
                status: ContractState::Active,
                valid_from: None,
                valid_until: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "services[1]: service unknown-service not found"
    );
    let error = w
        .provisioner
        .invite_batch(&w.crm, batch(vec![]))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "items: must not be empty");
}

#[tokio::test]
async fn missing_scope_is_forbidden() {
    let w = world().await;
    w.city_group().await;
    let reader = w
        .ciam
        .principals()
        .integration("reader", [IntegrationScope::Read]);
    let error = w
        .provisioner
        .invite(
            &reader,
            InviteRequest {
                crm_account_id: "ACC-1".into(),
                email: "a@citygroup.example".into(),
                given_name: None,
                family_name: None,
                business_roles: vec![],
                mandates: vec![],
                contact_person: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.http_status(), 403, "{error}");
}

#[tokio::test]
async fn organization_query_and_contact_link() {
    let w = world().await;
    w.city_group().await;
    let invited = w
        .provisioner
        .invite(
            &w.crm,
            InviteRequest {
                crm_account_id: "ACC-1".into(),
                email: "jeremy.mills@citygroup.example".into(),
                given_name: Some("Jeremy".into()),
                family_name: Some("Mills".into()),
                business_roles: vec!["energy-manager".into()],
                mandates: vec![],
                contact_person: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(invited.status, InvitationState::Pending);
    // Nobody has registered yet: the contact cannot be linked.
    let contact = UpsertContactRequest {
        crm_contact_id: "C-77".into(),
        email: "Jeremy.Mills@citygroup.example".into(),
    };
    let unmatched = w
        .provisioner
        .upsert_contact(&w.crm, contact.clone())
        .await
        .unwrap();
    assert_eq!(unmatched.outcome, ContactOutcome::Unmatched);
    // Jeremy accepts.
    crate::scenario::accept_latest(&w, "jeremy.mills@citygroup.example").await;
    let linked = w
        .provisioner
        .upsert_contact(&w.crm, contact.clone())
        .await
        .unwrap();
    assert_eq!(linked.outcome, ContactOutcome::Linked);
    let identity = linked.identity.unwrap();
    assert_eq!(identity.crm_contact_id.as_deref(), Some("C-77"));
    assert_eq!(identity.memberships.len(), 1);
    assert_eq!(identity.memberships[0].business_roles, ["energy-manager"]);
    assert_eq!(identity.memberships[0].mandates, [MandateSpec::OrgAdmin]);
    let again = w.provisioner.upsert_contact(&w.crm, contact).await.unwrap();
    assert_eq!(again.outcome, ContactOutcome::Unchanged);
    // The link is in the audit log, once.
    let links: Vec<_> = w
        .ciam
        .store()
        .events(ciam_core::store::EventQuery {
            limit: 1000,
            ..ciam_core::store::EventQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter_map(|stored| match stored.event.kind {
            ciam_core::events::EventKind::CrmContactLinked {
                crm_contact_id,
                before,
            } => Some((
                crm_contact_id,
                before,
                stored.event.identity.map(|id| id.as_uuid()),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(links, vec![("C-77".to_owned(), None, Some(identity.id))]);
    // Found both ways.
    let by_contact = w
        .provisioner
        .find_identity(
            &w.crm,
            IdentityQuery {
                email: None,
                crm_contact_id: Some("C-77".into()),
            },
        )
        .await
        .unwrap();
    let by_email = w
        .provisioner
        .find_identity(
            &w.crm,
            IdentityQuery {
                email: Some("JEREMY.MILLS@citygroup.example".into()),
                crm_contact_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_contact, by_email);
    let missing = w
        .provisioner
        .find_identity(
            &w.crm,
            IdentityQuery {
                email: Some("nobody@citygroup.example".into()),
                crm_contact_id: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(missing.http_status(), 404);
    let details = w
        .provisioner
        .organization(
            &w.crm,
            OrganizationQuery {
                crm_account_id: "ACC-1".into(),
                limit: None,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(details.organization.status, OrganizationStatus::Active);
    assert_eq!(details.contracts.len(), 1);
    assert_eq!(details.contracts[0].services, ["smartplan-app"]);
    assert_eq!(details.users.len(), 1);
    assert_eq!(details.users[0].status, PersonStatus::Active);
    assert_eq!(details.users[0].crm_contact_id.as_deref(), Some("C-77"));
}
