//! The OpenAPI description of the provisioning API (`/api/v1`), derived from the same types
//! the code (de)serializes, so that the document and the code cannot drift.
//!
//! The server serves [`openapi`] as `/api/openapi.json` (JSON via `serde_json`), and may
//! merge it into its own document.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::commands::{
    BatchResponse, BatchSummary, ChangeContractRequest, Command, CommandResponse, ContactOutcome,
    ContactResponse, ContractChangeKind, ContractResponse, ContractState, ErrorBody, IdentityQuery,
    IdentityResponse, InvitationResponse, InvitationState, InviteBatchRequest, InviteLeadsRequest,
    InviteRequest, Invitee, LeadInvitee, MandateSpec, MemberStatus, MembershipResponse,
    OrganizationDetails, OrganizationKind, OrganizationQuery, OrganizationResponse,
    OrganizationStatus, PersonStatus, RowOutcome, RowResult, UpsertContactRequest,
    UpsertContractRequest, UpsertOrganizationRequest, UserResponse,
};
use crate::dispatcher::DeadLetter;
use crate::events::{ContactDetail, CrmEvent, CrmEventData, OrganizationRef, PersonRef};
use crate::validation::FieldError;

/// The header carrying a client-chosen idempotency key on write requests.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// Path prefix of the API.
pub const API_PREFIX: &str = "/api/v1";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key of the CRM integration, with its scopes"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ciam-rs CRM provisioning API",
        description = "Provisioning of organizations, contracts, contacts and invitations by the CRM; per-row results for batches; idempotency keys on writes. Webhooks back to the CRM carry `CrmEvent` bodies, signed per Standard Webhooks."
    ),
    paths(
        upsert_organization,
        get_organization,
        upsert_contract,
        change_contract,
        upsert_contact,
        find_identity,
        invite,
        invite_batch,
        invite_leads,
        dead_letters,
        redeliver,
    ),
    components(schemas(
        UpsertOrganizationRequest, UpsertContractRequest, ChangeContractRequest,
        UpsertContactRequest, InviteRequest, Invitee, InviteBatchRequest, LeadInvitee,
        InviteLeadsRequest, OrganizationQuery, IdentityQuery, Command, CommandResponse,
        OrganizationResponse, ContractResponse, ContactOutcome, ContactResponse,
        InvitationResponse, RowOutcome, RowResult, BatchSummary, BatchResponse,
        MembershipResponse, IdentityResponse, UserResponse, OrganizationDetails, ErrorBody,
        FieldError, OrganizationKind, OrganizationStatus, ContractState, ContractChangeKind,
        PersonStatus, MemberStatus, InvitationState, MandateSpec, CrmEvent, CrmEventData,
        OrganizationRef, PersonRef, ContactDetail, DeadLetter,
    )),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    tags(
        (name = "provisioning", description = "Organizations, contracts and contacts (scope `provisioning`; reads need `read`)"),
        (name = "invitations", description = "Invitations (scope `invitations`) and leads (scope `leads`)"),
        (name = "events", description = "Outbound CRM events: dead letters and redelivery"),
    )
)]
struct ApiDoc;

/// The whole document: paths under `/api/v1`, schemas, and the bearer API key scheme.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&openapi())
}

/// Create or update an organization by CRM account id.
#[utoipa::path(
    put, path = "/api/v1/organizations", tag = "provisioning",
    request_body = UpsertOrganizationRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen key; a retry with the same key and body returns the first response")),
    responses(
        (status = 200, body = OrganizationResponse),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn upsert_organization() {}

/// An organization with its contracts and a page of its users.
#[utoipa::path(
    get, path = "/api/v1/organizations/{crm_account_id}", tag = "provisioning",
    params(
        ("crm_account_id" = String, Path, description = "The CRM account id"),
        ("limit" = Option<usize>, Query, description = "Users per page, 1 to 500 (default 100)"),
        ("after" = Option<String>, Query, description = "Cursor from the previous page's `next`"),
    ),
    responses((status = 200, body = OrganizationDetails), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn get_organization() {}

/// Create or update a contract by CRM contract id.
#[utoipa::path(
    put, path = "/api/v1/contracts", tag = "provisioning",
    request_body = UpsertContractRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key")),
    responses(
        (status = 200, body = ContractResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn upsert_contract() {}

/// Suspend, resume or end a contract (repeating a change is a no-op).
#[utoipa::path(
    post, path = "/api/v1/contracts/status", tag = "provisioning",
    request_body = ChangeContractRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key")),
    responses(
        (status = 200, body = ContractResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn change_contract() {}

/// Link a CRM contact id to a person (found by contact id, else email).
#[utoipa::path(
    put, path = "/api/v1/contacts", tag = "provisioning",
    request_body = UpsertContactRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key")),
    responses((status = 200, body = ContactResponse), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn upsert_contact() {}

/// Find a person by email or CRM contact id (exactly one).
#[utoipa::path(
    get, path = "/api/v1/identities", tag = "provisioning",
    params(
        ("email" = Option<String>, Query, description = "Email address"),
        ("crm_contact_id" = Option<String>, Query, description = "CRM contact id"),
    ),
    responses((status = 200, body = IdentityResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn find_identity() {}

/// Invite one person.
#[utoipa::path(
    post, path = "/api/v1/invitations", tag = "invitations",
    request_body = InviteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key")),
    responses(
        (status = 200, body = InvitationResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    )
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn invite() {}

/// Invite many people; every row gets its own result.
#[utoipa::path(
    post, path = "/api/v1/invitations/batch", tag = "invitations",
    request_body = InviteBatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key: a retried batch returns the first result")),
    responses((status = 200, body = BatchResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn invite_batch() {}

/// Invite leads with their CRM lead ids; every row gets its own result.
#[utoipa::path(
    post, path = "/api/v1/leads/invitations", tag = "invitations",
    request_body = InviteLeadsRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key")),
    responses((status = 200, body = BatchResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn invite_leads() {}

/// Events that could not be delivered to the CRM.
#[utoipa::path(
    get, path = "/api/v1/events/dead-letters", tag = "events",
    params(("limit" = Option<usize>, Query, description = "At most this many (default 100)")),
    responses((status = 200, body = [DeadLetter]))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn dead_letters() {}

/// Put a dead letter back for delivery.
#[utoipa::path(
    post, path = "/api/v1/events/{event_id}/redeliver", tag = "events",
    params(("event_id" = uuid::Uuid, Path, description = "The event id")),
    responses((status = 204, description = "Queued for delivery"), (status = 404, body = ErrorBody))
)]
#[expect(
    dead_code,
    reason = "an OpenAPI operation description; the server implements the route"
)]
fn redeliver() {}
