//! The CRM REST API under `/api/v1` and its OpenAPI 3.1 document at `/api/openapi.json`.
//!
//! Every route authenticates a bearer API key ([`keys::ApiCaller`]), runs one ciam-crm
//! provisioning command through `Provisioner` (which authorizes the key's scopes and makes an
//! `Idempotency-Key` retry safe), and answers JSON. Errors are `{"error": {"code", "message",
//! "errors"?}}` with stable codes; bad input (malformed JSON, unknown fields, wrong types,
//! oversized bodies) is refused before anything changes.

pub mod keys;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, RequestExt};
use chrono::{DateTime, Utc};
use ciam_core::authz::{Action, Target, authorize};
use ciam_crm::commands::{
    BatchResponse, ChangeContractRequest, Command, CommandResponse, ContactResponse,
    ContractChangeKind, ContractResponse, ContractState, IdentityQuery, IdentityResponse,
    InviteBatchRequest, InviteLeadsRequest, OrganizationDetails, OrganizationKind,
    OrganizationQuery, OrganizationResponse, UpsertContactRequest, UpsertContractRequest,
    UpsertOrganizationRequest,
};
use ciam_crm::{CommandError, MAX_IDEMPOTENCY_KEY_LEN, Provisioner};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::state::AppState;
use crate::web::error::ApiErrorBody;
use crate::web::forms::{repeated_name, repeated_parameter_error};
use crate::web::throttle::Rule;
use crate::web::{ApiError, WebError};
use keys::ApiCaller;

/// The routes of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route(
            "/api/v1/organizations/{crm_account_id}",
            put(put_organization).get(get_organization),
        )
        .route(
            "/api/v1/organizations/{crm_account_id}/contracts/{crm_contract_id}",
            put(put_contract),
        )
        .route(
            "/api/v1/contracts/{crm_contract_id}/status",
            post(change_contract),
        )
        .route("/api/v1/contacts/{crm_contact_id}", put(put_contact))
        .route("/api/v1/invitations", post(invite))
        .route("/api/v1/leads/invitations", post(invite_leads))
        .route("/api/v1/identities", get(find_identity))
}

// ---------------------------------------------------------------------------------------------
// Input: JSON bodies and query strings refused plainly
// ---------------------------------------------------------------------------------------------

/// A JSON body; a rejection becomes a JSON error with a stable code.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.limits.body_bytes;
        match request.extract::<Json<T>, _>().await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(json_rejection(rejection, limit))),
        }
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> WebError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => WebError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(error) => WebError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {}", error.body_text()),
        ),
        JsonRejection::JsonDataError(error) => WebError::invalid(format!(
            "the body does not match the schema: {}",
            error.body_text()
        )),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            WebError::payload_too_large(limit)
        }
        other => WebError::bad_request("bad_request", other.body_text()),
    }
}

/// A query string; unknown parameters and wrong types are refused (422), and so is a parameter
/// given more than once (400 `repeated_parameter`), never merged.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(name) = repeated_name(parts.uri.query().unwrap_or_default().as_bytes()) {
            return Err(ApiError(repeated_parameter_error(&name)));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(query_rejection(&rejection))),
        }
    }
}

use axum::http::request::Parts;

fn query_rejection(rejection: &QueryRejection) -> WebError {
    WebError::invalid(format!(
        "the query string is not valid: {}",
        rejection.body_text()
    ))
}

/// The `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(ciam_crm::openapi::IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            WebError::invalid(format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(text.to_owned()))
}

async fn execute(
    state: &AppState,
    caller: &ApiCaller,
    headers: &HeaderMap,
    command: Command,
) -> Result<CommandResponse, ApiError> {
    let key = idempotency_key(headers)?;
    let provisioner = Provisioner::new(state.ciam.clone());
    Ok(provisioner
        .execute(&caller.principal, key.as_deref(), command)
        .await?)
}

fn unexpected(response: &CommandResponse) -> ApiError {
    ApiError(WebError::internal(format!(
        "unexpected provisioning response {response:?}"
    )))
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// An organization, keyed by the CRM account id in the path.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationBody {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// Customer (default) or partner.
    #[serde(default)]
    pub kind: OrganizationKind,
    /// The parent's CRM account id, for a sub-organization.
    #[serde(default)]
    pub parent_crm_account_id: Option<String>,
    /// Verified email domains (each owned by one organization only).
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Suspend the organization.
    #[serde(default)]
    pub suspended: bool,
}

/// A contract, keyed by the CRM account and contract ids in the path.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractBody {
    /// Keys of the services the contract covers.
    pub services: Vec<String>,
    /// Status.
    pub status: ContractState,
    /// Start of validity (RFC 3339), if bounded.
    #[serde(default)]
    pub valid_from: Option<DateTime<Utc>>,
    /// End of validity (exclusive), if bounded.
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
}

/// A lifecycle change of a contract.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractChangeBody {
    /// `suspend`, `resume` or `end` (repeating a change is a no-op).
    pub change: ContractChangeKind,
}

/// The email of a CRM contact, keyed by the contact id in the path.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactBody {
    /// The contact's email address (finds the person when the id is not linked yet).
    pub email: String,
}

/// Paging of an organization's users.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsersPage {
    /// Users per page, 1 to 500 (default 100).
    pub limit: Option<usize>,
    /// Cursor from the previous page's `next`.
    pub after: Option<String>,
}

/// How to find a person: exactly one of the two.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IdentityLookup {
    /// Email address.
    pub email: Option<String>,
    /// CRM contact id.
    pub crm_contact_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

/// Create or update an organization by CRM account id.
#[utoipa::path(
    put, path = "/api/v1/organizations/{crm_account_id}", tag = "provisioning",
    request_body = OrganizationBody,
    params(
        ("crm_account_id" = String, Path, description = "The CRM account id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client-chosen key; a retry with the same key and body returns the first response"),
    ),
    responses(
        (status = 200, body = OrganizationResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 413, body = ApiErrorBody),
        (status = 415, body = ApiErrorBody), (status = 422, body = ApiErrorBody),
    )
)]
async fn put_organization(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(crm_account_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OrganizationBody>,
) -> Result<Json<OrganizationResponse>, ApiError> {
    let command = Command::UpsertOrganization(UpsertOrganizationRequest {
        crm_account_id,
        name: body.name,
        kind: body.kind,
        parent_crm_account_id: body.parent_crm_account_id,
        email_domains: body.email_domains,
        suspended: body.suspended,
    });
    match execute(&state, &caller, &headers, command).await? {
        CommandResponse::UpsertOrganization(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// An organization with its contracts and a page of its users with their status.
#[utoipa::path(
    get, path = "/api/v1/organizations/{crm_account_id}", tag = "provisioning",
    params(("crm_account_id" = String, Path, description = "The CRM account id"), UsersPage),
    responses(
        (status = 200, body = OrganizationDetails),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody),
    )
)]
async fn get_organization(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(crm_account_id): Path<String>,
    ApiQuery(page): ApiQuery<UsersPage>,
) -> Result<Json<OrganizationDetails>, ApiError> {
    let command = Command::GetOrganization(OrganizationQuery {
        crm_account_id,
        limit: page.limit,
        after: page.after,
    });
    match execute(&state, &caller, &HeaderMap::new(), command).await? {
        CommandResponse::GetOrganization(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// Create or update a contract of an organization.
#[utoipa::path(
    put, path = "/api/v1/organizations/{crm_account_id}/contracts/{crm_contract_id}", tag = "provisioning",
    request_body = ContractBody,
    params(
        ("crm_account_id" = String, Path, description = "The CRM account id"),
        ("crm_contract_id" = String, Path, description = "The CRM contract id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key"),
    ),
    responses(
        (status = 200, body = ContractResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 409, body = ApiErrorBody), (status = 413, body = ApiErrorBody),
        (status = 415, body = ApiErrorBody), (status = 422, body = ApiErrorBody),
    )
)]
async fn put_contract(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path((crm_account_id, crm_contract_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContractBody>,
) -> Result<Json<ContractResponse>, ApiError> {
    let command = Command::UpsertContract(UpsertContractRequest {
        crm_contract_id,
        crm_account_id,
        services: body.services,
        status: body.status,
        valid_from: body.valid_from,
        valid_until: body.valid_until,
    });
    match execute(&state, &caller, &headers, command).await? {
        CommandResponse::UpsertContract(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// Suspend, resume or end a contract (access ends at once when it ends).
#[utoipa::path(
    post, path = "/api/v1/contracts/{crm_contract_id}/status", tag = "provisioning",
    request_body = ContractChangeBody,
    params(
        ("crm_contract_id" = String, Path, description = "The CRM contract id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key"),
    ),
    responses(
        (status = 200, body = ContractResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 413, body = ApiErrorBody), (status = 415, body = ApiErrorBody),
        (status = 422, body = ApiErrorBody),
    )
)]
async fn change_contract(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(crm_contract_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContractChangeBody>,
) -> Result<Json<ContractResponse>, ApiError> {
    let command = Command::ChangeContract(ChangeContractRequest {
        crm_contract_id,
        change: body.change,
    });
    match execute(&state, &caller, &headers, command).await? {
        CommandResponse::ChangeContract(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// Link a CRM contact id to a person (found by contact id, else by email).
#[utoipa::path(
    put, path = "/api/v1/contacts/{crm_contact_id}", tag = "provisioning",
    request_body = ContactBody,
    params(
        ("crm_contact_id" = String, Path, description = "The CRM contact id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key"),
    ),
    responses(
        (status = 200, body = ContactResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 413, body = ApiErrorBody),
        (status = 415, body = ApiErrorBody), (status = 422, body = ApiErrorBody),
    )
)]
async fn put_contact(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(crm_contact_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ContactBody>,
) -> Result<Json<ContactResponse>, ApiError> {
    let command = Command::UpsertContact(UpsertContactRequest {
        crm_contact_id,
        email: body.email,
    });
    match execute(&state, &caller, &headers, command).await? {
        CommandResponse::UpsertContact(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// Invite people into an organization (`items`: one row for the "Invite" button, many for a
/// batch); every row gets its own result.
#[utoipa::path(
    post, path = "/api/v1/invitations", tag = "invitations",
    request_body = InviteBatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key: a retried batch returns the first result")),
    responses(
        (status = 200, body = BatchResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 413, body = ApiErrorBody), (status = 415, body = ApiErrorBody),
        (status = 422, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
    )
)]
async fn invite(
    State(state): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InviteBatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    state
        .throttle
        .check(&state, Rule::ApiInvitations, &caller.name)
        .await?;
    match execute(&state, &caller, &headers, Command::InviteBatch(body)).await? {
        CommandResponse::InviteBatch(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// Invite leads with their CRM lead ids; every row gets its own result.
#[utoipa::path(
    post, path = "/api/v1/leads/invitations", tag = "invitations",
    request_body = InviteLeadsRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Client-chosen idempotency key")),
    responses(
        (status = 200, body = BatchResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody), (status = 404, body = ApiErrorBody),
        (status = 413, body = ApiErrorBody), (status = 415, body = ApiErrorBody),
        (status = 422, body = ApiErrorBody), (status = 429, body = ApiErrorBody),
    )
)]
async fn invite_leads(
    State(state): State<AppState>,
    caller: ApiCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<InviteLeadsRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    state
        .throttle
        .check(&state, Rule::ApiInvitations, &caller.name)
        .await?;
    match execute(&state, &caller, &headers, Command::InviteLeads(body)).await? {
        CommandResponse::InviteLeads(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

/// Find a person by email or CRM contact id, with their memberships.
#[utoipa::path(
    get, path = "/api/v1/identities", tag = "provisioning",
    params(IdentityLookup),
    responses(
        (status = 200, body = IdentityResponse),
        (status = 400, body = ApiErrorBody), (status = 401, body = ApiErrorBody),
        (status = 403, body = ApiErrorBody),
        (status = 404, body = ApiErrorBody), (status = 422, body = ApiErrorBody),
    )
)]
async fn find_identity(
    State(state): State<AppState>,
    caller: ApiCaller,
    ApiQuery(lookup): ApiQuery<IdentityLookup>,
) -> Result<Json<IdentityResponse>, ApiError> {
    // The `read` scope first: a key without it is refused (403) exactly like an organization
    // read, before anything is looked up, so the answer says nothing about the person.
    authorize(
        &caller.principal,
        &Action::ViewOrganization,
        &Target::Global,
    )
    .into_result()
    .map_err(|reason| ApiError(CommandError::Denied(reason.to_string()).into()))?;
    let command = Command::FindIdentity(IdentityQuery {
        email: lookup.email,
        crm_contact_id: lookup.crm_contact_id,
    });
    match execute(&state, &caller, &HeaderMap::new(), command).await? {
        CommandResponse::FindIdentity(response) => Ok(Json(response)),
        other => Err(unexpected(&other)),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SmartPlan CRM API",
        description = "Provisioning of organizations, contracts, contacts and invitations by the CRM (ciam-rs). Bearer API keys with scopes; JSON errors {\"error\": {\"code\", \"message\"}}; an Idempotency-Key header makes a retried write safe."
    ),
    paths(
        put_organization, get_organization, put_contract, change_contract, put_contact,
        invite, invite_leads, find_identity,
    ),
    components(schemas(OrganizationBody, ContractBody, ContractChangeBody, ContactBody, ApiErrorBody)),
    tags(
        (name = "provisioning", description = "Organizations, contracts and contacts (scope `provisioning`; reads need `read`)"),
        (name = "invitations", description = "Invitations (scope `invitations`) and leads (scope `leads`)"),
    )
)]
struct ApiDoc;

/// The OpenAPI 3.1 document: this server's routes, with the request and response schemas and
/// the bearer security scheme of ciam-crm's provisioning API (the same Rust types).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let mut crm = ciam_crm::openapi::openapi();
    // Only the schemas and the security scheme: the routes are this server's.
    crm.paths = utoipa::openapi::Paths::new();
    crm.tags = None;
    doc.merge(crm);
    doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "api_key",
        Vec::<String>::new(),
    )]);
    doc.servers = None;
    doc
}

async fn openapi_json() -> Response {
    match serde_json::to_string_pretty(&openapi()) {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(error) => ApiError(WebError::internal(error)).into_response(),
    }
}
