//! Serde round trips of every command and response, unknown fields refused, OpenAPI.

use chrono::{TimeZone, Utc};
use ciam_crm::commands::*;
use ciam_crm::{CrmEvent, CrmEventData, FieldError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, value, "{json}");
}

fn invitee() -> Invitee {
    Invitee {
        email: "karl@koko.example".into(),
        given_name: Some("Karl".into()),
        family_name: Some("Kearnes".into()),
        business_roles: vec!["energy-manager".into()],
        mandates: vec![
            MandateSpec::UserManager,
            MandateSpec::ServiceManager {
                service: "smartplan-app".into(),
            },
        ],
        contact_person: true,
    }
}

pub fn every_command() -> Vec<Command> {
    let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    vec![
        Command::UpsertOrganization(UpsertOrganizationRequest {
            crm_account_id: "ACC-1".into(),
            name: "City Group, Inc.".into(),
            kind: OrganizationKind::Partner,
            parent_crm_account_id: Some("ACC-0".into()),
            email_domains: vec!["citygroup.example".into()],
            suspended: true,
        }),
        Command::UpsertContract(UpsertContractRequest {
            crm_contract_id: "CON-1".into(),
            crm_account_id: "ACC-1".into(),
            services: vec!["smartplan-app".into()],
            status: ContractState::Suspended,
            valid_from: Some(at),
            valid_until: Some(at + chrono::Duration::days(365)),
        }),
        Command::ChangeContract(ChangeContractRequest {
            crm_contract_id: "CON-1".into(),
            change: ContractChangeKind::End,
        }),
        Command::UpsertContact(UpsertContactRequest {
            crm_contact_id: "C-1".into(),
            email: "jeremy.mills@citygroup.example".into(),
        }),
        Command::Invite(InviteRequest {
            crm_account_id: "ACC-1".into(),
            email: "a@citygroup.example".into(),
            given_name: Some("A".into()),
            family_name: Some("B".into()),
            business_roles: vec!["energy-manager".into()],
            mandates: vec![MandateSpec::OrgAdmin],
            contact_person: false,
        }),
        Command::InviteBatch(InviteBatchRequest {
            crm_account_id: "ACC-1".into(),
            items: vec![
                invitee(),
                Invitee {
                    email: "x@y.example".into(),
                    ..Invitee::default()
                },
            ],
        }),
        Command::InviteLeads(InviteLeadsRequest {
            crm_account_id: "ACC-1".into(),
            items: vec![LeadInvitee {
                email: "lead@koko.example".into(),
                crm_lead_id: "L-1".into(),
                given_name: None,
                family_name: None,
            }],
        }),
        Command::GetOrganization(OrganizationQuery {
            crm_account_id: "ACC-1".into(),
            limit: Some(10),
            after: Some("cursor".into()),
        }),
        Command::FindIdentity(IdentityQuery {
            email: None,
            crm_contact_id: Some("C-1".into()),
        }),
    ]
}

#[test]
fn every_command_round_trips() {
    let commands = every_command();
    assert_eq!(commands.len(), 9);
    for command in &commands {
        round_trip(command);
        // The inner request alone round-trips too (what a REST body carries).
        let value = serde_json::to_value(command).unwrap();
        assert_eq!(value["command"], command.name());
    }
}

#[test]
fn requests_refuse_unknown_fields() {
    let bodies = [
        r#"{"crm_account_id":"A","name":"N","colour":"red"}"#,
        r#"{"crm_contract_id":"C","crm_account_id":"A","services":[],"status":"active","x":1}"#,
        r#"{"crm_contract_id":"C","change":"end","why":"x"}"#,
        r#"{"crm_contact_id":"C","email":"a@b.example","phone":"+3584"}"#,
        r#"{"crm_account_id":"A","email":"a@b.example","role":"x"}"#,
        r#"{"crm_account_id":"A","items":[{"email":"a@b.example","nick":"x"}]}"#,
        r#"{"crm_account_id":"A","items":[{"email":"a@b.example","crm_lead_id":"L","score":3}]}"#,
    ];
    assert!(serde_json::from_str::<UpsertOrganizationRequest>(bodies[0]).is_err());
    assert!(serde_json::from_str::<UpsertContractRequest>(bodies[1]).is_err());
    assert!(serde_json::from_str::<ChangeContractRequest>(bodies[2]).is_err());
    assert!(serde_json::from_str::<UpsertContactRequest>(bodies[3]).is_err());
    assert!(serde_json::from_str::<InviteRequest>(bodies[4]).is_err());
    assert!(serde_json::from_str::<InviteBatchRequest>(bodies[5]).is_err());
    assert!(serde_json::from_str::<InviteLeadsRequest>(bodies[6]).is_err());
    // Defaults fill what is left out.
    let minimal: UpsertOrganizationRequest =
        serde_json::from_str(r#"{"crm_account_id":"A","name":"N"}"#).unwrap();
    assert_eq!(minimal.kind, OrganizationKind::Customer);
    assert!(!minimal.suspended);
    let mandate: MandateSpec =
        serde_json::from_str(r#"{"mandate":"service_manager","service":"smartplan-app"}"#).unwrap();
    assert_eq!(
        mandate,
        MandateSpec::ServiceManager {
            service: "smartplan-app".into()
        }
    );
}

#[test]
fn every_response_round_trips() {
    let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let id = Uuid::from_u128(42);
    let org = OrganizationResponse {
        id,
        crm_account_id: Some("ACC-1".into()),
        name: "City Group".into(),
        kind: OrganizationKind::Customer,
        status: OrganizationStatus::Active,
        parent_id: None,
        email_domains: vec!["citygroup.example".into()],
        version: 3,
        created_at: at,
        updated_at: at,
    };
    let contract = ContractResponse {
        id,
        crm_contract_id: "CON-1".into(),
        organization_id: id,
        services: vec!["smartplan-app".into()],
        status: ContractState::Ended,
        valid_from: None,
        valid_until: Some(at),
        access_ended_at: Some(at),
        version: 2,
    };
    let identity = IdentityResponse {
        id,
        email: "a@b.example".into(),
        email_verified: true,
        phone: Some("+358401234567".into()),
        phone_verified: false,
        given_name: "A".into(),
        family_name: "B".into(),
        status: PersonStatus::Active,
        crm_contact_id: Some("C-1".into()),
        memberships: vec![MembershipResponse {
            organization_id: id,
            crm_account_id: Some("ACC-1".into()),
            status: MemberStatus::Active,
            business_roles: vec!["energy-manager".into()],
            mandates: vec![MandateSpec::OrgAdmin],
            crm_lead_id: None,
        }],
    };
    let batch = BatchResponse {
        batch_id: Some(id),
        summary: BatchSummary {
            total: 3,
            created: 1,
            skipped: 1,
            failed: 1,
        },
        items: vec![
            RowResult {
                index: 0,
                email: "a@b.example".into(),
                outcome: RowOutcome::Invited { invitation_id: id },
            },
            RowResult {
                index: 1,
                email: "a@b.example".into(),
                outcome: RowOutcome::DuplicateInBatch { first_row: 0 },
            },
            RowResult {
                index: 2,
                email: "nope".into(),
                outcome: RowOutcome::Invalid {
                    errors: vec![FieldError::new(
                        "items[2].email",
                        "invalid email address: missing '@'",
                    )],
                },
            },
        ],
    };
    let responses = vec![
        CommandResponse::UpsertOrganization(org.clone()),
        CommandResponse::UpsertContract(contract.clone()),
        CommandResponse::ChangeContract(contract.clone()),
        CommandResponse::UpsertContact(ContactResponse {
            outcome: ContactOutcome::Linked,
            identity: Some(identity.clone()),
        }),
        CommandResponse::Invite(InvitationResponse {
            invitation_id: id,
            organization_id: id,
            email: "a@b.example".into(),
            status: InvitationState::HeldForReview,
            crm_lead_id: Some("L-1".into()),
            expires_at: at,
            mail_sent: false,
        }),
        CommandResponse::InviteBatch(batch.clone()),
        CommandResponse::InviteLeads(batch),
        CommandResponse::GetOrganization(OrganizationDetails {
            organization: org,
            contracts: vec![contract],
            users: vec![UserResponse {
                identity_id: id,
                email: "a@b.example".into(),
                given_name: "A".into(),
                family_name: "B".into(),
                status: PersonStatus::Invited,
                crm_contact_id: None,
                membership_status: MemberStatus::PendingApproval,
                business_roles: vec![],
                mandates: vec![],
                crm_lead_id: Some("L-1".into()),
            }],
            next: Some("x".into()),
        }),
        CommandResponse::FindIdentity(identity),
    ];
    for response in &responses {
        round_trip(response);
    }
    round_trip(&ErrorBody {
        code: "invalid".into(),
        message: "items[3].email: invalid email address: missing '@'".into(),
        errors: vec![FieldError::new(
            "items[3].email",
            "invalid email address: missing '@'",
        )],
    });
}

#[test]
fn crm_events_round_trip_with_type_and_data() {
    let event = CrmEvent {
        id: Uuid::from_u128(1),
        timestamp: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        actor: "system".into(),
        organization: None,
        person: None,
        data: CrmEventData::LeadRegistered {
            crm_lead_id: "L-1".into(),
            email: "lead@koko.example".into(),
        },
    };
    round_trip(&event);
    let value = serde_json::to_value(&event).unwrap();
    assert_eq!(value["type"], "lead_registered");
    assert_eq!(value["data"]["crm_lead_id"], "L-1");
    let unit = CrmEvent {
        data: CrmEventData::MembershipRemoved,
        ..event
    };
    round_trip(&unit);
}

#[test]
fn openapi_document_has_paths_and_schemas() {
    let doc = ciam_crm::openapi::openapi();
    let json = serde_json::to_value(&doc).unwrap();
    for path in [
        "/api/v1/organizations",
        "/api/v1/organizations/{crm_account_id}",
        "/api/v1/contracts",
        "/api/v1/contracts/status",
        "/api/v1/contacts",
        "/api/v1/identities",
        "/api/v1/invitations",
        "/api/v1/invitations/batch",
        "/api/v1/leads/invitations",
        "/api/v1/events/dead-letters",
    ] {
        assert!(json["paths"].get(path).is_some(), "missing {path}");
    }
    let schemas = &json["components"]["schemas"];
    for schema in [
        "UpsertOrganizationRequest",
        "InviteBatchRequest",
        "BatchResponse",
        "RowOutcome",
        "ErrorBody",
        "CrmEvent",
        "CrmEventData",
        "MandateSpec",
    ] {
        assert!(schemas.get(schema).is_some(), "missing schema {schema}");
    }
    // Requests refuse unknown fields in the document too.
    assert_eq!(
        schemas["UpsertOrganizationRequest"]["additionalProperties"],
        serde_json::Value::Bool(false)
    );
    assert!(
        ciam_crm::openapi::openapi_json()
            .unwrap()
            .contains("Idempotency-Key")
    );
}
