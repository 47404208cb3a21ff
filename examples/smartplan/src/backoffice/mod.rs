//! The back office for SmartPlan staff:
//!
//! - `GET /backoffice`: the dashboard (what is waiting, by the person's staff roles);
//! - `GET /backoffice/organizations?q=`: organizations (`POST` creates one: AccountManager);
//!   `GET /backoffice/organizations/{id}`: contracts, members, invitations and "Invite contact
//!   person" (`POST …/{id}/contact-person`);
//! - `GET /backoffice/registrations`: the registration queue (`POST …/{id}` approves, or
//!   rejects with a reason: BackOffice);
//! - `GET /backoffice/users?q=`: people across organizations (CustomerService);
//! - `GET /backoffice/invitations`: invitations held for review (`POST …/{id}/release`,
//!   `…/{id}/revoke`: BackOffice);
//! - `GET /backoffice/audit?organization=&person=&page=`: the audit log.
//!
//! Staff roles decide what is shown; ciam-core authorizes every read and change again. People
//! without a staff role get 404 for every page here.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ciam_core::authz::{Action, Actor, Target, authorize};
use ciam_core::ids::{IdentityId, InvitationId, OrgRegistrationId, OrganizationId};
use ciam_core::invitations::{InvitationRequest, InvitationStatus};
use ciam_core::organizations::{OrgKind, OrganizationUpsert};
use ciam_core::registrations::{RegistrationDecision as Decision, RequestStatus};
use ciam_core::store::{EventQuery, PageRequest};
use serde::Deserialize;

use crate::orgadmin::{
    ContractRow, OrgAccess, contract_rows, display_name, invitation_kind, invitation_status,
    lenient_query, member_status,
};
use crate::state::AppState;
use crate::web::flash::redirect_with;
use crate::web::{FieldErrors, Flash, Form, Page, PageContext, SignedIn, WebError, render};

/// Audit events per page.
const AUDIT_PAGE: usize = 50;
/// The deepest audit page (the store answers at most this many events per query).
const AUDIT_MAX_EVENTS: usize = 1_000;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/backoffice", get(dashboard))
        .route(
            "/backoffice/organizations",
            get(organizations).post(create_organization),
        )
        .route("/backoffice/organizations/{id}", get(organization))
        .route(
            "/backoffice/organizations/{id}/contact-person",
            post(invite_contact_person),
        )
        .route("/backoffice/registrations", get(registrations))
        .route("/backoffice/registrations/{id}", post(decide_registration))
        .route("/backoffice/users", get(users))
        .route("/backoffice/invitations", get(held_invitations))
        .route(
            "/backoffice/invitations/{id}/release",
            post(release_invitation),
        )
        .route(
            "/backoffice/invitations/{id}/revoke",
            post(revoke_invitation),
        )
        .route("/backoffice/audit", get(audit))
}

/// The signed-in person as staff: 404 for anyone without a staff role.
struct Staff {
    me: SignedIn,
}

impl Staff {
    fn of(me: SignedIn) -> Result<Self, WebError> {
        if me.is_staff() {
            Ok(Self { me })
        } else {
            Err(WebError::not_found("there is no page at this address"))
        }
    }

    fn may(&self, action: &Action) -> bool {
        authorize(&self.me.principal, action, &Target::Global).is_allowed()
    }

    fn decides_registrations(&self) -> bool {
        self.may(&Action::DecideOrgRegistration)
    }

    fn reviews_invitations(&self) -> bool {
        self.may(&Action::ReviewHeldInvitation)
    }

    fn creates_organizations(&self) -> bool {
        self.may(&Action::ProvisionOrganization)
    }

    fn searches_users(&self) -> bool {
        self.may(&Action::DisableIdentity)
    }

    fn require(&self, allowed: bool, what: &str) -> Result<(), WebError> {
        if allowed {
            Ok(())
        } else {
            Err(WebError::forbidden(format!(
                "your staff role does not allow {what}"
            )))
        }
    }
}

/// The back office's sub-navigation.
#[derive(Clone, Debug)]
pub struct StaffNav {
    current: &'static str,
    /// Show the registrations and held invitations links.
    pub back_office: bool,
    /// Show the user search link.
    pub customer_service: bool,
}

impl StaffNav {
    fn new(staff: &Staff, current: &'static str) -> Self {
        Self {
            current,
            back_office: staff.decides_registrations(),
            customer_service: staff.searches_users(),
        }
    }

    /// `aria-current` value for a link.
    pub fn aria(&self, page: &str) -> &'static str {
        if self.current == page {
            "page"
        } else {
            "false"
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dashboard
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "backoffice/dashboard.html")]
struct DashboardPage {
    page: Page,
    nav: StaffNav,
    roles: String,
    pending_registrations: Option<usize>,
    held_invitations: Option<usize>,
    organizations: usize,
    creates_organizations: bool,
}

/// `GET /backoffice`.
async fn dashboard(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Html<String>, WebError> {
    let staff = Staff::of(me)?;
    let principal = &staff.me.principal;
    let pending_registrations = if staff.decides_registrations() {
        Some(
            state
                .ciam
                .registrations()
                .pending_registrations(principal, 500)
                .await?
                .len(),
        )
    } else {
        None
    };
    let held_invitations = if staff.reviews_invitations() {
        Some(
            state
                .ciam
                .invitations()
                .held_for_review(principal, 500)
                .await?
                .len(),
        )
    } else {
        None
    };
    let organizations = state.store.search_organizations("", 1000).await?.len();
    let roles = staff
        .me
        .user
        .staff_roles
        .iter()
        .map(|role| format!("{role:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    render(&DashboardPage {
        page: ctx.page("Back office"),
        nav: StaffNav::new(&staff, "dashboard"),
        roles,
        pending_registrations,
        held_invitations,
        organizations,
        creates_organizations: staff.creates_organizations(),
    })
}

// ---------------------------------------------------------------------------------------------
// Organizations
// ---------------------------------------------------------------------------------------------

/// The search query.
#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

/// A row of the organizations table.
#[derive(Clone, Debug)]
pub struct OrganizationRow {
    href: String,
    name: String,
    kind: String,
    status: String,
    crm: String,
    domains: String,
}

/// The "new organization" form.
#[derive(Clone, Debug, Default, Deserialize)]
struct NewOrganizationForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    crm_account_id: String,
    #[serde(default)]
    email_domain: String,
}

#[derive(Template)]
#[template(path = "backoffice/organizations.html")]
struct OrganizationsPage {
    page: Page,
    nav: StaffNav,
    q: String,
    rows: Vec<OrganizationRow>,
    creates_organizations: bool,
    form: NewOrganizationForm,
    errors: FieldErrors,
}

async fn organizations_page(
    state: &AppState,
    ctx: &PageContext,
    staff: &Staff,
    q: String,
    form: NewOrganizationForm,
    errors: FieldErrors,
) -> Result<Html<String>, WebError> {
    let found = state.store.search_organizations(q.trim(), 200).await?;
    let rows = found
        .iter()
        .map(|org| OrganizationRow {
            href: format!("/backoffice/organizations/{}", org.id),
            name: org.name.clone(),
            kind: format!("{:?}", org.kind),
            status: format!("{:?}", org.status),
            crm: org.crm_account_id.clone().unwrap_or_default(),
            domains: org
                .email_domains
                .iter()
                .map(|domain| domain.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    render(&OrganizationsPage {
        page: ctx.page("Organizations"),
        nav: StaffNav::new(staff, "organizations"),
        q,
        rows,
        creates_organizations: staff.creates_organizations(),
        form,
        errors,
    })
}

/// `GET /backoffice/organizations?q=`.
async fn organizations(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, WebError> {
    let staff = Staff::of(me)?;
    let query: SearchQuery = lenient_query(raw);
    organizations_page(
        &state,
        &ctx,
        &staff,
        query.q.unwrap_or_default(),
        NewOrganizationForm::default(),
        FieldErrors::new(),
    )
    .await
}

/// `POST /backoffice/organizations`: a new customer organization (AccountManager).
async fn create_organization(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<NewOrganizationForm>,
) -> Result<Response, WebError> {
    let staff = Staff::of(me)?;
    staff.require(staff.creates_organizations(), "creating organizations")?;
    let mut errors = FieldErrors::new();
    if form.name.trim().is_empty() {
        errors.add("name", "enter the organization's name");
    }
    if form.crm_account_id.trim().is_empty() {
        errors.add("crm_account_id", "enter the CRM account id");
    }
    if !form.crm_account_id.trim().is_empty()
        && state
            .store
            .organization_by_crm_account(form.crm_account_id.trim())
            .await?
            .is_some()
    {
        errors.add(
            "crm_account_id",
            "an organization with this CRM account id exists already",
        );
    }
    let upsert = OrganizationUpsert {
        crm_account_id: form.crm_account_id.trim().to_owned(),
        name: form.name.trim().to_owned(),
        kind: OrgKind::Customer,
        parent_crm_account_id: None,
        email_domains: Some(form.email_domain.trim().to_owned())
            .filter(|domain| !domain.is_empty())
            .into_iter()
            .collect(),
        suspended: false,
    };
    let result = if errors.is_empty() {
        Some(
            state
                .ciam
                .organizations()
                .upsert(&staff.me.principal, upsert)
                .await,
        )
    } else {
        None
    };
    match result {
        Some(Ok(org)) => Ok(redirect_with(
            &state,
            &format!("/backoffice/organizations/{}", org.id),
            Flash::success(format!("{} was created", org.name)),
        )),
        Some(Err(error)) => {
            let error: WebError = error.into();
            if error.status() != StatusCode::UNPROCESSABLE_ENTITY {
                return Err(error);
            }
            errors.add("form", error.message().to_owned());
            let page =
                organizations_page(&state, &ctx, &staff, String::new(), form, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        None => {
            let page =
                organizations_page(&state, &ctx, &staff, String::new(), form, errors).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// A member row on the organization page.
#[derive(Clone, Debug)]
pub struct StaffMemberRow {
    name: String,
    email: String,
    status: &'static str,
    contact_person: bool,
}

/// An invitation row on the organization page.
#[derive(Clone, Debug)]
pub struct StaffInvitationRow {
    email: String,
    kind: &'static str,
    status: &'static str,
}

/// The "Invite contact person" form.
#[derive(Clone, Debug, Default, Deserialize)]
struct ContactPersonForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    /// The business-role checkboxes (`role_{key}`).
    #[serde(flatten)]
    roles: std::collections::HashMap<String, String>,
}

/// A business-role checkbox of the "Invite contact person" form.
#[derive(Clone, Debug)]
pub struct RoleBox {
    field: String,
    label: String,
    checked: bool,
}

fn role_field(role: &ciam_core::services::BusinessRole) -> String {
    format!("role_{}", role.key)
}

fn role_ticked(form: &ContactPersonForm, role: &ciam_core::services::BusinessRole) -> bool {
    form.roles
        .get(&role_field(role))
        .is_some_and(|value| !value.is_empty())
}

#[derive(Template)]
#[template(path = "backoffice/organization.html")]
struct OrganizationPage {
    page: Page,
    nav: StaffNav,
    base: String,
    name: String,
    kind: String,
    status: String,
    crm: String,
    domains: String,
    contracts: Vec<ContractRow>,
    members: Vec<StaffMemberRow>,
    invitations: Vec<StaffInvitationRow>,
    may_invite: bool,
    roles: Vec<RoleBox>,
    form: ContactPersonForm,
    errors: FieldErrors,
    admin_href: String,
    audit_href: String,
}

async fn organization_page(
    state: &AppState,
    ctx: &PageContext,
    staff: &Staff,
    access: &OrgAccess,
    form: ContactPersonForm,
    errors: FieldErrors,
) -> Result<Html<String>, WebError> {
    let principal = &staff.me.principal;
    let services = state.store.services().await?;
    let org = &access.organization;
    let members = state
        .ciam
        .administration()
        .members(principal, org.id, PageRequest::first(200))
        .await?;
    let members = members
        .items
        .iter()
        .map(|member| StaffMemberRow {
            name: display_name(&member.identity),
            email: member.identity.email.to_string(),
            status: member_status(&member.identity, &member.membership),
            contact_person: member
                .membership
                .mandates
                .contains(&ciam_core::identities::Mandate::OrgAdmin),
        })
        .collect();
    let invitations = state
        .ciam
        .invitations()
        .list(
            principal,
            org.id,
            &[
                InvitationStatus::Pending,
                InvitationStatus::HeldForReview,
                InvitationStatus::Accepted,
                InvitationStatus::Revoked,
                InvitationStatus::Expired,
            ],
            100,
        )
        .await?
        .iter()
        .map(|invitation| StaffInvitationRow {
            email: invitation.email.to_string(),
            kind: invitation_kind(invitation),
            status: invitation_status(invitation),
        })
        .collect();
    render(&OrganizationPage {
        page: ctx.page(org.name.clone()),
        nav: StaffNav::new(staff, "organizations"),
        base: format!("/backoffice/organizations/{}", org.id),
        name: org.name.clone(),
        kind: format!("{:?}", org.kind),
        status: format!("{:?}", org.status),
        crm: org.crm_account_id.clone().unwrap_or_default(),
        domains: org
            .email_domains
            .iter()
            .map(|domain| domain.as_str().to_owned())
            .collect::<Vec<_>>()
            .join(", "),
        contracts: contract_rows(state, org.id, &services).await?,
        members,
        invitations,
        may_invite: may_invite_contact(access),
        roles: state
            .store
            .business_roles()
            .await?
            .iter()
            .map(|role| RoleBox {
                field: role_field(role),
                label: role.name.clone(),
                checked: role_ticked(&form, role),
            })
            .collect(),
        form,
        errors,
        admin_href: access.href(""),
        audit_href: format!("/backoffice/audit?organization={}", org.id),
    })
}

fn may_invite_contact(access: &OrgAccess) -> bool {
    access.allows(&Action::InviteMember {
        role_services: Default::default(),
        mandates: [ciam_core::identities::Mandate::OrgAdmin]
            .into_iter()
            .collect(),
    })
}

/// The organization in the path, for staff (404 when it does not exist or they may not see
/// it).
async fn staff_organization(
    state: &AppState,
    staff: &Staff,
    id: &str,
) -> Result<OrgAccess, WebError> {
    OrgAccess::load(state, &staff.me, id)
        .await
        .map_err(|_| WebError::not_found("there is no organization at this address"))
}

/// `GET /backoffice/organizations/{id}`.
async fn organization(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let staff = Staff::of(me)?;
    let access = staff_organization(&state, &staff, &id).await?;
    organization_page(
        &state,
        &ctx,
        &staff,
        &access,
        ContactPersonForm::default(),
        FieldErrors::new(),
    )
    .await
}

/// `POST /backoffice/organizations/{id}/contact-person`: invites the organization's contact
/// person (the OrgAdmin mandate comes with accepting).
async fn invite_contact_person(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<ContactPersonForm>,
) -> Result<Response, WebError> {
    let staff = Staff::of(me)?;
    let access = staff_organization(&state, &staff, &id).await?;
    staff.require(may_invite_contact(&access), "inviting contact persons")?;
    let mut errors = FieldErrors::new();
    let email = form.email.trim().to_owned();
    if email.is_empty() {
        errors.add("email", "enter the contact person's email address");
    } else if ciam_core::contact::EmailAddress::parse(&email).is_err() {
        errors.add("email", "this is not a valid email address");
    }
    if errors.is_empty() {
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
        let request = InvitationRequest {
            email: email.clone(),
            given_name: optional(&form.given_name),
            family_name: optional(&form.family_name),
            contact_person: true,
            business_roles: state
                .store
                .business_roles()
                .await?
                .iter()
                .filter(|role| role_ticked(&form, role))
                .map(|role| role.key.clone())
                .collect(),
            ..InvitationRequest::default()
        };
        match state
            .ciam
            .invitations()
            .invite(&staff.me.principal, access.id(), request)
            .await
        {
            Ok(_) => {
                return Ok(redirect_with(
                    &state,
                    &format!("/backoffice/organizations/{}", access.id()),
                    Flash::success(format!(
                        "{email} is invited as the contact person of {}",
                        access.organization.name
                    )),
                ));
            }
            Err(error) => {
                let error: WebError = error.into();
                if error.status() == StatusCode::FORBIDDEN
                    || error.status().is_server_error()
                    || error.status() == StatusCode::NOT_FOUND
                {
                    return Err(error);
                }
                errors.add("email", error.message().to_owned());
            }
        }
    }
    let page = organization_page(&state, &ctx, &staff, &access, form, errors).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

// ---------------------------------------------------------------------------------------------
// Registrations
// ---------------------------------------------------------------------------------------------

/// A registration waiting for a decision.
#[derive(Clone, Debug)]
pub struct RegistrationRow {
    action: String,
    organization: String,
    business_id: String,
    domain: String,
    applicant: String,
    email: String,
    phone: String,
    created: String,
    reason_id: String,
}

#[derive(Template)]
#[template(path = "backoffice/registrations.html")]
struct RegistrationsPage {
    page: Page,
    nav: StaffNav,
    rows: Vec<RegistrationRow>,
}

/// `GET /backoffice/registrations`.
async fn registrations(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Html<String>, WebError> {
    let staff = Staff::of(me)?;
    staff.require(staff.decides_registrations(), "deciding registrations")?;
    let pending = state
        .ciam
        .registrations()
        .pending_registrations(&staff.me.principal, 500)
        .await?;
    let rows = pending
        .iter()
        .enumerate()
        .map(|(index, registration)| RegistrationRow {
            action: format!("/backoffice/registrations/{}", registration.id),
            organization: registration.organization_name.clone(),
            business_id: registration.business_id.clone().unwrap_or_default(),
            domain: registration
                .email_domain
                .as_ref()
                .map(|domain| domain.as_str().to_owned())
                .unwrap_or_default(),
            applicant: registration.applicant.name.full().trim().to_owned(),
            email: registration.applicant.email.to_string(),
            phone: registration
                .applicant
                .phone
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            created: registration
                .created_at
                .format("%Y-%m-%d %H:%M UTC")
                .to_string(),
            reason_id: format!("reason-{}", index + 1),
        })
        .collect();
    render(&RegistrationsPage {
        page: ctx.page("Registrations"),
        nav: StaffNav::new(&staff, "registrations"),
        rows,
    })
}

/// The decision form.
#[derive(Debug, Deserialize)]
struct RegistrationDecisionForm {
    decision: Option<String>,
    reason: Option<String>,
}

/// `POST /backoffice/registrations/{id}`: `decision=approve`, or `decision=reject` with a
/// `reason` (required: the applicant reads it).
async fn decide_registration(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<RegistrationDecisionForm>,
) -> Result<Response, WebError> {
    let staff = Staff::of(me)?;
    staff.require(staff.decides_registrations(), "deciding registrations")?;
    let not_found = || WebError::not_found("there is no registration at this address");
    let id: OrgRegistrationId = id.parse().map_err(|_| not_found())?;
    let registration = state
        .ciam
        .registrations()
        .registration(id)
        .await
        .map_err(|_| not_found())?;
    if registration.status != RequestStatus::PendingApproval {
        return Err(WebError::conflict(
            "already_decided",
            "this registration is not waiting for a decision any more",
        ));
    }
    let (decision, message) = match form.decision.as_deref() {
        Some("approve") => (
            Decision::Approve,
            format!("{} is approved", registration.organization_name),
        ),
        Some("reject") => {
            let reason = form
                .reason
                .map(|reason| reason.trim().to_owned())
                .filter(|reason| !reason.is_empty())
                .ok_or_else(|| {
                    WebError::invalid("give a reason for the rejection: the applicant reads it")
                })?;
            (
                Decision::Reject { reason },
                format!("{} is rejected", registration.organization_name),
            )
        }
        _ => return Err(WebError::invalid("choose approve or reject")),
    };
    state
        .ciam
        .registrations()
        .decide_registration(&staff.me.principal, registration.id, decision)
        .await?;
    Ok(redirect_with(
        &state,
        "/backoffice/registrations",
        Flash::success(message),
    ))
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// A person found.
#[derive(Clone, Debug)]
pub struct PersonRow {
    name: String,
    email: String,
    status: String,
    organizations: Vec<(String, String)>,
    audit_href: String,
}

#[derive(Template)]
#[template(path = "backoffice/users.html")]
struct UsersPage {
    page: Page,
    nav: StaffNav,
    q: String,
    searched: bool,
    error: String,
    rows: Vec<PersonRow>,
}

/// `GET /backoffice/users?q=`.
async fn users(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let staff = Staff::of(me)?;
    staff.require(staff.searches_users(), "searching users")?;
    let query: SearchQuery = lenient_query(raw);
    let q = query.q.unwrap_or_default().trim().to_owned();
    let mut rows = Vec::new();
    let mut error = String::new();
    if !q.is_empty() {
        match state
            .ciam
            .administration()
            .search(&staff.me.principal, &q, 50)
            .await
        {
            Ok(found) => {
                for identity in found {
                    let mut organizations = Vec::new();
                    for membership in state.store.memberships_of_identity(identity.id).await? {
                        if let Some(org) = state.store.organization(membership.organization).await?
                        {
                            organizations.push((
                                format!("/backoffice/organizations/{}", org.id),
                                format!("{} ({})", org.name, member_status(&identity, &membership)),
                            ));
                        }
                    }
                    rows.push(PersonRow {
                        name: display_name(&identity),
                        email: identity.email.to_string(),
                        status: format!("{:?}", identity.status),
                        organizations,
                        audit_href: format!("/backoffice/audit?person={}", identity.id),
                    });
                }
            }
            Err(failure) => {
                let failure: WebError = failure.into();
                if failure.status() != StatusCode::UNPROCESSABLE_ENTITY {
                    return Err(failure);
                }
                error = failure.message().to_owned();
            }
        }
    }
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = render(&UsersPage {
        page: ctx.page("Users"),
        nav: StaffNav::new(&staff, "users"),
        searched: !q.is_empty(),
        q,
        error,
        rows,
    })?;
    Ok((status, page).into_response())
}

// ---------------------------------------------------------------------------------------------
// Held invitations
// ---------------------------------------------------------------------------------------------

/// An invitation held for review.
#[derive(Clone, Debug)]
pub struct HeldRow {
    base: String,
    email: String,
    organization: String,
    kind: &'static str,
    created: String,
}

#[derive(Template)]
#[template(path = "backoffice/invitations.html")]
struct HeldPage {
    page: Page,
    nav: StaffNav,
    rows: Vec<HeldRow>,
}

/// `GET /backoffice/invitations`.
async fn held_invitations(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Html<String>, WebError> {
    let staff = Staff::of(me)?;
    staff.require(staff.reviews_invitations(), "reviewing invitations")?;
    let held = state
        .ciam
        .invitations()
        .held_for_review(&staff.me.principal, 500)
        .await?;
    let mut names: BTreeMap<OrganizationId, String> = BTreeMap::new();
    let mut rows = Vec::new();
    for invitation in &held {
        let organization = match names.get(&invitation.organization) {
            Some(name) => name.clone(),
            None => {
                let name = state
                    .store
                    .organization(invitation.organization)
                    .await?
                    .map(|org| org.name)
                    .unwrap_or_default();
                names.insert(invitation.organization, name.clone());
                name
            }
        };
        rows.push(HeldRow {
            base: format!("/backoffice/invitations/{}", invitation.id),
            email: invitation.email.to_string(),
            organization,
            kind: invitation_kind(invitation),
            created: invitation
                .created_at
                .format("%Y-%m-%d %H:%M UTC")
                .to_string(),
        });
    }
    render(&HeldPage {
        page: ctx.page("Held invitations"),
        nav: StaffNav::new(&staff, "invitations"),
        rows,
    })
}

async fn held_invitation(
    state: &AppState,
    staff: &Staff,
    id: &str,
) -> Result<InvitationId, WebError> {
    staff.require(staff.reviews_invitations(), "reviewing invitations")?;
    let not_found = || WebError::not_found("there is no held invitation at this address");
    let id: InvitationId = id.parse().map_err(|_| not_found())?;
    let invitation = state.store.invitation(id).await?.ok_or_else(not_found)?;
    if invitation.status != InvitationStatus::HeldForReview {
        return Err(WebError::conflict(
            "not_held",
            "this invitation is not held for review any more",
        ));
    }
    Ok(invitation.id)
}

/// `POST /backoffice/invitations/{id}/release`: the mail goes out.
async fn release_invitation(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let staff = Staff::of(me)?;
    let id = held_invitation(&state, &staff, &id).await?;
    let issued = state
        .ciam
        .invitations()
        .release(&staff.me.principal, id)
        .await?;
    Ok(redirect_with(
        &state,
        "/backoffice/invitations",
        Flash::success(format!(
            "the invitation to {} was released and sent",
            issued.invitation.email
        )),
    ))
}

/// `POST /backoffice/invitations/{id}/revoke`: refused; nothing is sent.
async fn revoke_invitation(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let staff = Staff::of(me)?;
    let id = held_invitation(&state, &staff, &id).await?;
    let refused = state
        .ciam
        .invitations()
        .refuse(&staff.me.principal, id)
        .await?;
    Ok(redirect_with(
        &state,
        "/backoffice/invitations",
        Flash::success(format!("the invitation to {} was revoked", refused.email)),
    ))
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

/// The audit filter.
#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    organization: Option<String>,
    person: Option<String>,
    page: Option<usize>,
}

/// An audit event, for display.
#[derive(Clone, Debug)]
pub struct AuditRow {
    at: String,
    what: String,
    actor: String,
    organization: String,
    person: String,
}

#[derive(Template)]
#[template(path = "backoffice/audit.html")]
struct AuditPage {
    page: Page,
    nav: StaffNav,
    organizations: Vec<(String, String)>,
    organization: String,
    person: String,
    person_label: String,
    rows: Vec<AuditRow>,
    previous: Option<String>,
    next: Option<String>,
    page_number: usize,
}

fn audit_href(organization: &str, person: &str, page: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if !organization.is_empty() {
        query.append_pair("organization", organization);
    }
    if !person.is_empty() {
        query.append_pair("person", person);
    }
    query.append_pair("page", &page.to_string());
    format!("/backoffice/audit?{}", query.finish())
}

/// A person's email for the audit table (looked up once per page).
async fn email_of(
    state: &AppState,
    cache: &mut BTreeMap<IdentityId, String>,
    id: IdentityId,
) -> Result<String, WebError> {
    if let Some(email) = cache.get(&id) {
        return Ok(email.clone());
    }
    let email = state
        .store
        .identity(id)
        .await?
        .map(|identity| identity.email.to_string())
        .unwrap_or_else(|| id.to_string());
    cache.insert(id, email.clone());
    Ok(email)
}

/// `GET /backoffice/audit?organization=&person=&page=`.
async fn audit(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, WebError> {
    let staff = Staff::of(me)?;
    staff.require(staff.may(&Action::ViewAudit), "reading the audit log")?;
    let query: AuditQuery = lenient_query(raw);
    let organization_text = query.organization.unwrap_or_default().trim().to_owned();
    let person_text = query.person.unwrap_or_default().trim().to_owned();
    let organization: Option<OrganizationId> = if organization_text.is_empty() {
        None
    } else {
        Some(
            organization_text
                .parse()
                .map_err(|_| WebError::invalid("choose an organization from the list"))?,
        )
    };
    // A person by id, or by email address.
    let (person, person_label): (Option<IdentityId>, String) = if person_text.is_empty() {
        (None, String::new())
    } else if let Ok(id) = person_text.parse() {
        let label = state
            .store
            .identity(id)
            .await?
            .map(|identity| identity.email.to_string())
            .unwrap_or_else(|| person_text.clone());
        (Some(id), label)
    } else {
        let email = ciam_core::contact::EmailAddress::parse(&person_text)
            .map_err(|_| WebError::invalid("give the person's email address"))?;
        let identity = state
            .store
            .identity_by_email(&email)
            .await?
            .ok_or_else(|| WebError::not_found("nobody has this email address"))?;
        (Some(identity.id), identity.email.to_string())
    };
    let page_number = query.page.unwrap_or(1).max(1);
    let wanted = (page_number * AUDIT_PAGE + 1).min(AUDIT_MAX_EVENTS);
    let events = state
        .ciam
        .audit()
        .events(
            &staff.me.principal,
            EventQuery {
                organization,
                identity: person,
                since: None,
                until: None,
                limit: wanted,
            },
        )
        .await?;
    let skip = (page_number - 1) * AUDIT_PAGE;
    let has_more = events.len() > page_number * AUDIT_PAGE;
    let mut org_names: BTreeMap<OrganizationId, String> = BTreeMap::new();
    let all_orgs = state.store.search_organizations("", 1000).await?;
    for org in &all_orgs {
        org_names.insert(org.id, org.name.clone());
    }
    let mut people: BTreeMap<IdentityId, String> = BTreeMap::new();
    let mut rows = Vec::new();
    for stored in events.iter().skip(skip).take(AUDIT_PAGE) {
        let event = &stored.event;
        let actor = match &event.actor {
            Actor::Identity(id) => email_of(&state, &mut people, *id).await?,
            Actor::Integration(name) => format!("integration {name}"),
            Actor::System => "SmartPlan (automatic)".to_owned(),
            Actor::Anonymous => "not signed in".to_owned(),
        };
        let person = match event.identity {
            Some(id) => email_of(&state, &mut people, id).await?,
            None => String::new(),
        };
        rows.push(AuditRow {
            at: event.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            what: event.type_name(),
            actor,
            organization: event
                .organization
                .and_then(|id| org_names.get(&id).cloned())
                .unwrap_or_default(),
            person,
        });
    }
    let previous =
        (page_number > 1).then(|| audit_href(&organization_text, &person_text, page_number - 1));
    let next = has_more.then(|| audit_href(&organization_text, &person_text, page_number + 1));
    render(&AuditPage {
        page: ctx.page("Audit log"),
        nav: StaffNav::new(&staff, "audit"),
        organizations: all_orgs
            .iter()
            .map(|org| (org.id.to_string(), org.name.clone()))
            .collect(),
        organization: organization_text,
        person: person_text,
        person_label,
        rows,
        previous,
        next,
        page_number,
    })
}
