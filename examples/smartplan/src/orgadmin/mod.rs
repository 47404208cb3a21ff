//! Organization administration for contact persons and delegates:
//!
//! - `GET /admin/orgs/{id}`: the overview (contracts, counts, the person's own mandates);
//! - `GET /admin/orgs/{id}/users?q=&status=`: members, searchable, filtered by status;
//! - `GET /admin/orgs/{id}/users/{identity}`: one member: business roles
//!   (`POST …/roles`), delegation (`POST …/mandates`: UserManager and
//!   ServiceManager(service), only what the acting person could exercise themselves), and
//!   removal (`POST …/remove`);
//! - `GET /admin/orgs/{id}/approvals`: join requests (`POST …/approvals/{request}`, approve or
//!   reject);
//! - `GET /admin/orgs/{id}/invitations`: the single invite form (`POST`), the CSV batch
//!   (`POST …/invitations/batch`, a per-row result table), the list with resend and revoke;
//! - `GET /admin/approvals`: to the approvals of the organization the person administers, or a
//!   chooser (the link in ciam-core's "someone wants to join" mail).
//!
//! Every page checks the person's mandates through [`OrgAccess`]: an organization they may
//! not view answers 404, and so does the id of a member, request or invitation of another
//! organization. ciam-core authorizes each change again.

pub mod access;
mod batch;

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ciam_core::authz::Action;
use ciam_core::identities::{Identity, IdentityStatus, Mandate, Membership, MembershipStatus};
use ciam_core::ids::{IdentityId, InvitationId, JoinRequestId};
use ciam_core::invitations::{
    Invitation, InvitationError, InvitationKind, InvitationRequest, InvitationStatus,
};
use ciam_core::registrations::{RegistrationDecision as Decision, RequestStatus};
use ciam_core::services::{BusinessRole, Service};
use ciam_core::store::{Member, PageRequest};
use serde::Deserialize;

pub use access::OrgAccess;
use access::{mandate_label, service_name};

use crate::state::AppState;
use crate::web::flash::redirect_with;
use crate::web::{FieldErrors, Flash, Form, Page, PageContext, SignedIn, WebError, render};

/// How many members a users page reads at most.
const MEMBERS_PAGE: usize = 200;
/// How many invitations the list shows.
const INVITATIONS_SHOWN: usize = 200;

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/approvals", get(approvals_chooser))
        .route("/admin/orgs/{id}", get(overview))
        .route("/admin/orgs/{id}/users", get(users))
        .route("/admin/orgs/{id}/users/{identity}", get(user))
        .route("/admin/orgs/{id}/users/{identity}/roles", post(set_roles))
        .route(
            "/admin/orgs/{id}/users/{identity}/mandates",
            post(set_mandates),
        )
        .route("/admin/orgs/{id}/users/{identity}/remove", post(remove))
        .route("/admin/orgs/{id}/approvals", get(approvals))
        .route("/admin/orgs/{id}/approvals/{request}", post(decide))
        .route(
            "/admin/orgs/{id}/invitations",
            get(invitations).post(invite),
        )
        .route(
            "/admin/orgs/{id}/invitations/batch",
            post(batch::invite_batch),
        )
        .route(
            "/admin/orgs/{id}/invitations/{invitation}/resend",
            post(resend),
        )
        .route(
            "/admin/orgs/{id}/invitations/{invitation}/revoke",
            post(revoke),
        )
        .route("/static/csv-file.js", get(csv_file_script))
}

/// The script that fills the CSV text area from a chosen file.
const CSV_FILE_SCRIPT: &str = include_str!("../../static/csv-file.js");

/// `GET /static/csv-file.js`.
async fn csv_file_script() -> Response {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/javascript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSV_FILE_SCRIPT,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Shared view helpers
// ---------------------------------------------------------------------------------------------

/// A person's name, or their email when no name is known.
pub fn display_name(identity: &Identity) -> String {
    let full = identity.name.full();
    if full.trim().is_empty() {
        identity.email.to_string()
    } else {
        full.trim().to_owned()
    }
}

/// A member's status in words (the account's state first when it is disabled).
pub fn member_status(identity: &Identity, membership: &Membership) -> &'static str {
    if identity.status == IdentityStatus::Disabled {
        return "Disabled";
    }
    match membership.status {
        MembershipStatus::Active if identity.status == IdentityStatus::Invited => "Invited",
        MembershipStatus::Active => "Active",
        MembershipStatus::PendingApproval => "Waiting for approval",
        MembershipStatus::Removed => "Removed",
    }
}

/// An invitation's status in words.
pub fn invitation_status(invitation: &Invitation) -> &'static str {
    match invitation.status {
        InvitationStatus::HeldForReview => "Held for review",
        InvitationStatus::Pending => "Pending",
        InvitationStatus::Accepted => "Accepted",
        InvitationStatus::Revoked => "Revoked",
        InvitationStatus::Expired => "Expired",
    }
}

/// An invitation's kind in words.
pub fn invitation_kind(invitation: &Invitation) -> &'static str {
    match invitation.kind {
        InvitationKind::Member => "Member",
        InvitationKind::ContactPerson => "Contact person",
        InvitationKind::Lead { .. } => "Lead",
    }
}

/// Names of business roles by id.
fn role_names(roles: &[BusinessRole], ids: &BTreeSet<ciam_core::ids::BusinessRoleId>) -> String {
    let names: Vec<&str> = roles
        .iter()
        .filter(|role| ids.contains(&role.id))
        .map(|role| role.name.as_str())
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The catalog: services and business roles.
async fn catalog(state: &AppState) -> Result<(Vec<Service>, Vec<BusinessRole>), WebError> {
    Ok((
        state.store.services().await?,
        state.store.business_roles().await?,
    ))
}

/// Services covered by the organization's contracts (what ServiceManager can name).
async fn contracted_services(
    state: &AppState,
    access: &OrgAccess,
    services: &[Service],
) -> Result<Vec<Service>, WebError> {
    let contracts = state.store.contracts_of_organization(access.id()).await?;
    let covered: BTreeSet<_> = contracts
        .iter()
        .flat_map(|contract| contract.services.iter().copied())
        .collect();
    Ok(services
        .iter()
        .filter(|service| covered.contains(&service.id))
        .cloned()
        .collect())
}

/// The query of a search page; an unreadable one counts as empty (a search form cannot produce
/// one, and a hand-made address should still show the page).
pub fn lenient_query<T: serde::de::DeserializeOwned + Default>(raw: Option<String>) -> T {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()).unwrap_or_default()
}

fn forbidden_here(what: &str) -> WebError {
    WebError::forbidden(format!("your mandate here does not allow {what}"))
}

/// An id from the path of something inside the organization; a malformed one is simply not
/// found.
fn parse_id<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, WebError> {
    text.parse()
        .map_err(|_| WebError::not_found(format!("there is no {what} at this address")))
}

/// The organization's sub-navigation.
#[derive(Clone, Debug)]
pub struct OrgNav {
    /// `/admin/orgs/{id}`.
    pub base: String,
    /// Show the approvals and invitations links.
    pub manages_users: bool,
    /// Which page is shown.
    pub current: &'static str,
}

impl OrgNav {
    fn new(access: &OrgAccess, current: &'static str) -> Self {
        Self {
            base: access.href(""),
            manages_users: access.manages_users(),
            current,
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
// /admin/approvals
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "orgadmin/chooser.html")]
struct ChooserPage {
    page: Page,
    organizations: Vec<(String, String)>,
}

/// `GET /admin/approvals`.
async fn approvals_chooser(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    let mut organizations = Vec::new();
    for grant in &me.user.grants {
        let access = OrgAccess::load(&state, &me, &grant.organization.to_string()).await;
        if let Ok(access) = access
            && access.allows(&Action::DecideJoinRequest)
        {
            organizations.push((access.href("/approvals"), access.organization.name.clone()));
        }
    }
    match organizations.as_slice() {
        [] => Err(WebError::not_found(
            "you do not approve join requests for any organization",
        )),
        [(href, _)] => Ok(Redirect::to(href).into_response()),
        _ => Ok(render(&ChooserPage {
            page: ctx.page("Choose an organization"),
            organizations,
        })?
        .into_response()),
    }
}

// ---------------------------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------------------------

/// A contract, for display.
#[derive(Clone, Debug)]
pub struct ContractRow {
    /// The CRM contract id.
    pub crm_id: String,
    /// Its status in words.
    pub status: String,
    /// The services it covers.
    pub services: String,
    /// Valid until, if set.
    pub valid_until: String,
}

/// The organization's contracts, for display.
pub async fn contract_rows(
    state: &AppState,
    organization: ciam_core::ids::OrganizationId,
    services: &[Service],
) -> Result<Vec<ContractRow>, WebError> {
    let contracts = state.store.contracts_of_organization(organization).await?;
    Ok(contracts
        .iter()
        .map(|contract| ContractRow {
            crm_id: contract.crm_contract_id.clone(),
            status: format!("{:?}", contract.status),
            services: contract
                .services
                .iter()
                .map(|id| service_name(services, *id))
                .collect::<Vec<_>>()
                .join(", "),
            valid_until: contract
                .valid_until
                .map(|until| until.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "open-ended".to_owned()),
        })
        .collect())
}

#[derive(Template)]
#[template(path = "orgadmin/overview.html")]
struct OverviewPage {
    page: Page,
    nav: OrgNav,
    name: String,
    status: String,
    contracts: Vec<ContractRow>,
    active_members: usize,
    waiting: Option<usize>,
    open_invitations: Option<usize>,
    my_mandates: Vec<String>,
}

/// `GET /admin/orgs/{id}`.
async fn overview(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let (services, _) = catalog(&state).await?;
    let members = state
        .ciam
        .administration()
        .members(&me.principal, access.id(), PageRequest::first(500))
        .await?;
    let active_members = members
        .items
        .iter()
        .filter(|member| member.membership.is_active())
        .count();
    let waiting = if access.allows(&Action::DecideJoinRequest) {
        Some(
            state
                .ciam
                .registrations()
                .pending_join_requests(&me.principal, access.id(), 500)
                .await?
                .len(),
        )
    } else {
        None
    };
    let open_invitations = if access.manages_users() {
        let open = state
            .ciam
            .invitations()
            .list(
                &me.principal,
                access.id(),
                &[InvitationStatus::Pending, InvitationStatus::HeldForReview],
                500,
            )
            .await?
            .len();
        Some(open)
    } else {
        None
    };
    let my_mandates = me
        .user
        .grants
        .iter()
        .filter(|grant| grant.organization == access.id())
        .flat_map(|grant| grant.mandates.iter())
        .map(|mandate| mandate_label(&services, mandate))
        .collect();
    render(&OverviewPage {
        page: ctx
            .page(access.organization.name.clone())
            .branded(access.branding()),
        nav: OrgNav::new(&access, "overview"),
        name: access.organization.name.clone(),
        status: format!("{:?}", access.organization.status),
        contracts: contract_rows(&state, access.id(), &services).await?,
        active_members,
        waiting,
        open_invitations,
        my_mandates,
    })
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

/// The query of the users page.
#[derive(Debug, Default, Deserialize)]
struct UsersQuery {
    q: Option<String>,
    status: Option<String>,
    after: Option<String>,
}

/// A row of the users table.
#[derive(Clone, Debug)]
pub struct MemberRow {
    /// The person's page.
    pub href: String,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Status in words.
    pub status: &'static str,
    /// Business roles.
    pub roles: String,
    /// Mandates in words.
    pub mandates: String,
}

fn member_row(
    access: &OrgAccess,
    member: &Member,
    roles: &[BusinessRole],
    services: &[Service],
) -> MemberRow {
    MemberRow {
        href: access.href(&format!("/users/{}", member.identity.id)),
        name: display_name(&member.identity),
        email: member.identity.email.to_string(),
        status: member_status(&member.identity, &member.membership),
        roles: role_names(roles, &member.membership.business_roles),
        mandates: member
            .membership
            .mandates
            .iter()
            .map(|mandate| match mandate {
                Mandate::OrgAdmin => "Contact person".to_owned(),
                Mandate::UserManager => "User manager".to_owned(),
                Mandate::ServiceManager(service) => {
                    format!("Manages {}", service_name(services, *service))
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn status_matches(filter: &str, row: &MemberRow) -> bool {
    match filter {
        "active" => row.status == "Active",
        "waiting" => row.status == "Waiting for approval",
        "removed" => row.status == "Removed",
        "disabled" => row.status == "Disabled",
        "invited" => row.status == "Invited",
        _ => true,
    }
}

#[derive(Template)]
#[template(path = "orgadmin/users.html")]
struct UsersPage {
    page: Page,
    nav: OrgNav,
    name: String,
    q: String,
    status: String,
    statuses: Vec<(&'static str, &'static str)>,
    rows: Vec<MemberRow>,
    next: Option<String>,
}

/// `GET /admin/orgs/{id}/users`.
async fn users(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Html<String>, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let query: UsersQuery = lenient_query(raw);
    let (services, roles) = catalog(&state).await?;
    let page = state
        .ciam
        .administration()
        .members(
            &me.principal,
            access.id(),
            PageRequest {
                after: query.after.clone().filter(|after| !after.is_empty()),
                limit: MEMBERS_PAGE,
            },
        )
        .await?;
    let q = query.q.unwrap_or_default().trim().to_owned();
    let needle = q.to_lowercase();
    let status = query.status.unwrap_or_else(|| "current".to_owned());
    let rows: Vec<MemberRow> = page
        .items
        .iter()
        .map(|member| member_row(&access, member, &roles, &services))
        .filter(|row| {
            needle.is_empty()
                || row.name.to_lowercase().contains(&needle)
                || row.email.to_lowercase().contains(&needle)
        })
        .filter(|row| {
            if status == "current" {
                row.status != "Removed"
            } else {
                status_matches(&status, row)
            }
        })
        .collect();
    let next = page.next.map(|after| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("q", &q);
        query.append_pair("status", &status);
        query.append_pair("after", &after);
        access.href(&format!("/users?{}", query.finish()))
    });
    render(&UsersPage {
        page: ctx.page("Users").branded(access.branding()),
        nav: OrgNav::new(&access, "users"),
        name: access.organization.name.clone(),
        q,
        status,
        statuses: vec![
            ("current", "Everyone but removed"),
            ("active", "Active"),
            ("invited", "Invited"),
            ("waiting", "Waiting for approval"),
            ("disabled", "Disabled"),
            ("removed", "Removed"),
            ("all", "All"),
        ],
        rows,
        next,
    })
}

/// A member of the organization named in the path: 404 when the person is not a member here.
async fn member_here(
    state: &AppState,
    access: &OrgAccess,
    identity: &str,
) -> Result<Member, WebError> {
    let not_member = || WebError::not_found("this person is not a member of this organization");
    let identity: IdentityId = identity.parse().map_err(|_| not_member())?;
    let membership = state
        .store
        .membership_of(identity, access.id())
        .await?
        .ok_or_else(not_member)?;
    let identity = state
        .store
        .identity(identity)
        .await?
        .ok_or_else(not_member)?;
    Ok(Member {
        membership,
        identity,
    })
}

/// A checkbox of a form.
#[derive(Clone, Debug)]
pub struct Choice {
    /// The field name.
    pub field: String,
    /// The label.
    pub label: String,
    /// Checked now.
    pub checked: bool,
    /// The acting person may change it.
    pub editable: bool,
}

#[derive(Template)]
#[template(path = "orgadmin/user.html")]
struct UserPage {
    page: Page,
    nav: OrgNav,
    base: String,
    name: String,
    email: String,
    phone: String,
    status: &'static str,
    removed: bool,
    roles: Vec<Choice>,
    any_role_editable: bool,
    mandates: Vec<Choice>,
    any_mandate_editable: bool,
    other_mandates: Vec<String>,
    can_remove: bool,
    is_self: bool,
}

fn role_field(role: &BusinessRole) -> String {
    format!("role_{}", role.key)
}

fn service_field(service: &Service) -> String {
    format!("service_{}", service.key)
}

/// The delegable mandates shown on a member's page: UserManager and ServiceManager of each
/// service under contract.
fn delegable(services: &[Service]) -> Vec<(String, Mandate, String)> {
    let mut out = vec![(
        "user_manager".to_owned(),
        Mandate::UserManager,
        "User manager: invites, approves and removes users".to_owned(),
    )];
    for service in services {
        out.push((
            service_field(service),
            Mandate::ServiceManager(service.id),
            format!("Service manager of {}: assigns its roles", service.name),
        ));
    }
    out
}

/// `GET /admin/orgs/{id}/users/{identity}`.
async fn user(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path((id, identity)): Path<(String, String)>,
) -> Result<Html<String>, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let member = member_here(&state, &access, &identity).await?;
    let (services, roles) = catalog(&state).await?;
    let contracted = contracted_services(&state, &access, &services).await?;
    let role_choices: Vec<Choice> = roles
        .iter()
        .map(|role| Choice {
            field: role_field(role),
            label: role.name.clone(),
            checked: member.membership.business_roles.contains(&role.id),
            editable: access.may_assign(role),
        })
        .collect();
    let mandate_choices: Vec<Choice> = delegable(&contracted)
        .into_iter()
        .map(|(field, mandate, label)| Choice {
            field,
            label,
            checked: member.membership.mandates.contains(&mandate),
            editable: access.may_delegate(mandate),
        })
        .collect();
    let shown: BTreeSet<Mandate> = delegable(&contracted).into_iter().map(|m| m.1).collect();
    let other_mandates = member
        .membership
        .mandates
        .iter()
        .filter(|mandate| !shown.contains(mandate))
        .map(|mandate| mandate_label(&services, mandate))
        .collect();
    let name = display_name(&member.identity);
    render(&UserPage {
        page: ctx.page(name.clone()).branded(access.branding()),
        nav: OrgNav::new(&access, "users"),
        base: access.href(&format!("/users/{}", member.identity.id)),
        email: member.identity.email.to_string(),
        phone: member
            .identity
            .phone
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        status: member_status(&member.identity, &member.membership),
        removed: member.membership.status == MembershipStatus::Removed,
        any_role_editable: role_choices.iter().any(|choice| choice.editable),
        roles: role_choices,
        any_mandate_editable: mandate_choices.iter().any(|choice| choice.editable),
        mandates: mandate_choices,
        other_mandates,
        can_remove: access.allows(&Action::RemoveMember),
        is_self: member.identity.id == me.user.identity,
        name,
    })
}

/// The checkboxes of a form (`name=on`), plus the CSRF field.
type Checkboxes = HashMap<String, String>;

fn checked(form: &Checkboxes, field: &str) -> bool {
    form.get(field).is_some_and(|value| !value.is_empty())
}

/// `POST /admin/orgs/{id}/users/{identity}/roles`: the roles the person may assign are set as
/// ticked; the others stay as they are.
async fn set_roles(
    State(state): State<AppState>,
    me: SignedIn,
    Path((id, identity)): Path<(String, String)>,
    Form(form): Form<Checkboxes>,
) -> Result<Response, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let member = member_here(&state, &access, &identity).await?;
    let (_, roles) = catalog(&state).await?;
    if !roles.iter().any(|role| access.may_assign(role)) {
        return Err(forbidden_here("assigning business roles"));
    }
    let wanted: Vec<String> = roles
        .iter()
        .filter(|role| {
            if access.may_assign(role) {
                checked(&form, &role_field(role))
            } else {
                member.membership.business_roles.contains(&role.id)
            }
        })
        .map(|role| role.key.clone())
        .collect();
    state
        .ciam
        .administration()
        .set_business_roles(&me.principal, member.membership.id, &wanted)
        .await?;
    Ok(redirect_with(
        &state,
        &access.href(&format!("/users/{}", member.identity.id)),
        Flash::success(format!(
            "business roles of {} saved",
            display_name(&member.identity)
        )),
    ))
}

/// `POST /admin/orgs/{id}/users/{identity}/mandates`: delegation. The mandates the person may
/// give are set as ticked; the others stay as they are.
async fn set_mandates(
    State(state): State<AppState>,
    me: SignedIn,
    Path((id, identity)): Path<(String, String)>,
    Form(form): Form<Checkboxes>,
) -> Result<Response, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let member = member_here(&state, &access, &identity).await?;
    let (services, _) = catalog(&state).await?;
    let contracted = contracted_services(&state, &access, &services).await?;
    let choices = delegable(&contracted);
    if !choices
        .iter()
        .any(|(_, mandate, _)| access.may_delegate(*mandate))
    {
        return Err(forbidden_here("delegating"));
    }
    let shown: BTreeSet<Mandate> = choices.iter().map(|(_, mandate, _)| *mandate).collect();
    // Mandates not on the form (OrgAdmin, services without a contract) stay as they are.
    let mut wanted: BTreeSet<Mandate> = member
        .membership
        .mandates
        .iter()
        .filter(|mandate| !shown.contains(mandate))
        .copied()
        .collect();
    for (field, mandate, _) in &choices {
        let keep = if access.may_delegate(*mandate) {
            checked(&form, field)
        } else {
            member.membership.mandates.contains(mandate)
        };
        if keep {
            wanted.insert(*mandate);
        }
    }
    state
        .ciam
        .administration()
        .set_mandates(&me.principal, member.membership.id, wanted)
        .await?;
    Ok(redirect_with(
        &state,
        &access.href(&format!("/users/{}", member.identity.id)),
        Flash::success(format!(
            "delegation of {} saved",
            display_name(&member.identity)
        )),
    ))
}

/// `POST /admin/orgs/{id}/users/{identity}/remove`.
async fn remove(
    State(state): State<AppState>,
    me: SignedIn,
    Path((id, identity)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let member = member_here(&state, &access, &identity).await?;
    if !access.allows(&Action::RemoveMember) {
        return Err(forbidden_here("removing users"));
    }
    if member.identity.id == me.user.identity {
        return Err(WebError::invalid(
            "you cannot remove yourself; ask another administrator",
        ));
    }
    state
        .ciam
        .administration()
        .remove_member(&me.principal, member.membership.id)
        .await?;
    Ok(redirect_with(
        &state,
        &access.href("/users"),
        Flash::success(format!(
            "{} was removed from {}",
            display_name(&member.identity),
            access.organization.name
        )),
    ))
}

// ---------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------

/// A join request, for display.
#[derive(Clone, Debug)]
pub struct JoinRow {
    /// Where its decision posts.
    pub action: String,
    /// The applicant's name.
    pub name: String,
    /// The applicant's email.
    pub email: String,
    /// When it was made.
    pub created: String,
}

#[derive(Template)]
#[template(path = "orgadmin/approvals.html")]
struct ApprovalsPage {
    page: Page,
    nav: OrgNav,
    name: String,
    requests: Vec<JoinRow>,
}

/// `GET /admin/orgs/{id}/approvals`.
async fn approvals(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    if !access.allows(&Action::DecideJoinRequest) {
        return Err(forbidden_here("approving join requests"));
    }
    let pending = state
        .ciam
        .registrations()
        .pending_join_requests(&me.principal, access.id(), 500)
        .await?;
    let requests = pending
        .iter()
        .map(|request| JoinRow {
            action: access.href(&format!("/approvals/{}", request.id)),
            name: request.applicant.name.full().trim().to_owned(),
            email: request.applicant.email.to_string(),
            created: request.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        })
        .collect();
    render(&ApprovalsPage {
        page: ctx.page("Approvals").branded(access.branding()),
        nav: OrgNav::new(&access, "approvals"),
        name: access.organization.name.clone(),
        requests,
    })
}

/// The decision form.
#[derive(Debug, Deserialize)]
struct DecisionForm {
    decision: Option<String>,
    reason: Option<String>,
}

/// `POST /admin/orgs/{id}/approvals/{request}`: `decision=approve` or `decision=reject`
/// (with an optional `reason`).
async fn decide(
    State(state): State<AppState>,
    me: SignedIn,
    Path((id, request)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, WebError> {
    let access = OrgAccess::load(&state, &me, &id).await?;
    let request_id: JoinRequestId = parse_id(&request, "join request")?;
    let request = state
        .ciam
        .registrations()
        .join_request(request_id)
        .await
        .ok()
        .filter(|request| request.organization == access.id())
        .ok_or_else(|| WebError::not_found("there is no join request at this address"))?;
    if !access.allows(&Action::DecideJoinRequest) {
        return Err(forbidden_here("approving join requests"));
    }
    if request.status != RequestStatus::PendingApproval {
        return Err(WebError::conflict(
            "already_decided",
            "this request is not waiting for a decision any more",
        ));
    }
    let (decision, message) = match form.decision.as_deref() {
        Some("approve") => (
            Decision::Approve,
            format!(
                "{} can now sign in to {}",
                request.applicant.email, access.organization.name
            ),
        ),
        Some("reject") => (
            Decision::Reject {
                reason: form
                    .reason
                    .map(|reason| reason.trim().to_owned())
                    .filter(|reason| !reason.is_empty())
                    .unwrap_or_else(|| "not approved by the organization".to_owned()),
            },
            format!("the request of {} was rejected", request.applicant.email),
        ),
        _ => return Err(WebError::invalid("choose approve or reject")),
    };
    state
        .ciam
        .registrations()
        .decide_join_request(&me.principal, request.id, decision)
        .await?;
    Ok(redirect_with(
        &state,
        &access.href("/approvals"),
        Flash::success(message),
    ))
}

// ---------------------------------------------------------------------------------------------
// Invitations
// ---------------------------------------------------------------------------------------------

/// A row of the invitation list.
#[derive(Clone, Debug)]
pub struct InvitationRow {
    /// `/admin/orgs/{id}/invitations/{invitation}`.
    pub base: String,
    /// Email.
    pub email: String,
    /// Kind in words.
    pub kind: &'static str,
    /// Status in words.
    pub status: &'static str,
    /// Whether it can be resent or revoked.
    pub open: bool,
    /// Expiry.
    pub expires: String,
}

/// The single-invite form.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

/// One row of a batch's result.
#[derive(Clone, Debug)]
pub struct BatchResultRow {
    /// The line in the file.
    pub line: usize,
    /// The email as given.
    pub email: String,
    /// Whether it worked.
    pub ok: bool,
    /// The outcome in words.
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "orgadmin/invitations.html")]
struct InvitationsPage {
    page: Page,
    nav: OrgNav,
    name: String,
    base: String,
    form: InviteForm,
    errors: FieldErrors,
    roles: Vec<Choice>,
    csv: String,
    csv_error: String,
    batch: Option<Vec<BatchResultRow>>,
    batch_summary: String,
    max_rows: usize,
    invitations: Vec<InvitationRow>,
}

/// What the invitations page shows besides the list.
#[derive(Default)]
struct InvitationsView {
    form: InviteForm,
    errors: FieldErrors,
    csv: String,
    csv_error: String,
    batch: Option<Vec<BatchResultRow>>,
    batch_summary: String,
}

async fn invitations_page(
    state: &AppState,
    ctx: &PageContext,
    access: &OrgAccess,
    view: InvitationsView,
) -> Result<Html<String>, WebError> {
    let (_, roles) = catalog(state).await?;
    let list = state
        .ciam
        .invitations()
        .list(
            &access.principal,
            access.id(),
            &[
                InvitationStatus::Pending,
                InvitationStatus::HeldForReview,
                InvitationStatus::Accepted,
                InvitationStatus::Revoked,
                InvitationStatus::Expired,
            ],
            INVITATIONS_SHOWN,
        )
        .await?;
    let invitations = list
        .iter()
        .map(|invitation| InvitationRow {
            base: access.href(&format!("/invitations/{}", invitation.id)),
            email: invitation.email.to_string(),
            kind: invitation_kind(invitation),
            status: invitation_status(invitation),
            open: invitation.status == InvitationStatus::Pending,
            expires: invitation.expires_at.format("%Y-%m-%d").to_string(),
        })
        .collect();
    let role_choices = roles
        .iter()
        .filter(|role| access.may_assign(role))
        .map(|role| Choice {
            field: role_field(role),
            label: role.name.clone(),
            checked: checked(&view.form.rest, &role_field(role)),
            editable: true,
        })
        .collect();
    render(&InvitationsPage {
        page: ctx.page("Invitations").branded(access.branding()),
        nav: OrgNav::new(access, "invitations"),
        name: access.organization.name.clone(),
        base: access.href("/invitations"),
        form: view.form,
        errors: view.errors,
        roles: role_choices,
        csv: view.csv,
        csv_error: view.csv_error,
        batch: view.batch,
        batch_summary: view.batch_summary,
        max_rows: batch::MAX_ROWS,
        invitations,
    })
}

/// Loads the organization for the invitation pages (users managed here, or 403).
async fn invitation_access(
    state: &AppState,
    me: &SignedIn,
    id: &str,
) -> Result<OrgAccess, WebError> {
    let access = OrgAccess::load(state, me, id).await?;
    if !access.manages_users() {
        return Err(forbidden_here("inviting users"));
    }
    Ok(access)
}

/// `GET /admin/orgs/{id}/invitations`.
async fn invitations(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
) -> Result<Html<String>, WebError> {
    let access = invitation_access(&state, &me, &id).await?;
    invitations_page(&state, &ctx, &access, InvitationsView::default()).await
}

/// `POST /admin/orgs/{id}/invitations`: one invitation.
async fn invite(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Path(id): Path<String>,
    Form(form): Form<InviteForm>,
) -> Result<Response, WebError> {
    let access = invitation_access(&state, &me, &id).await?;
    let (_, roles) = catalog(&state).await?;
    let mut errors = FieldErrors::new();
    let email = form.email.trim().to_owned();
    if email.is_empty() {
        errors.add("email", "enter the email address of the person to invite");
    } else if ciam_core::contact::EmailAddress::parse(&email).is_err() {
        errors.add("email", "this is not a valid email address");
    }
    if !errors.is_empty() {
        let page = invitations_page(
            &state,
            &ctx,
            &access,
            InvitationsView {
                form,
                errors,
                ..InvitationsView::default()
            },
        )
        .await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let business_roles = roles
        .iter()
        .filter(|role| access.may_assign(role) && checked(&form.rest, &role_field(role)))
        .map(|role| role.key.clone())
        .collect();
    let optional = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
    let request = InvitationRequest {
        email: email.clone(),
        given_name: optional(&form.given_name),
        family_name: optional(&form.family_name),
        business_roles,
        ..InvitationRequest::default()
    };
    match state
        .ciam
        .invitations()
        .invite(&me.principal, access.id(), request)
        .await
    {
        Ok(issued) => {
            let flash = if issued.invitation.status == InvitationStatus::HeldForReview {
                Flash::success(format!(
                    "the invitation to {email} is held for review by SmartPlan"
                ))
            } else if state.outgoing.as_ref().is_some_and(|o| o.mail.delayed()) {
                // The mail server is down: the invitation waits in the retry queue.
                Flash::warning(format!(
                    "the invitation to {email} is created; mail is delayed right now and it \
                     goes out as soon as the mail server answers"
                ))
            } else {
                Flash::success(format!("invitation sent to {email}"))
            };
            Ok(redirect_with(&state, &access.href("/invitations"), flash))
        }
        Err(error) => {
            let field = match &error {
                InvitationError::Invalid(_)
                | InvitationError::AlreadyMember(_)
                | InvitationError::AlreadyInvited { .. } => "email",
                InvitationError::Denied(_)
                | InvitationError::Store(_)
                | InvitationError::Conflict => return Err(error.into()),
                _ => "form",
            };
            let web: WebError = error.into();
            let mut errors = FieldErrors::new();
            errors.add(field, web.message().to_owned());
            let page = invitations_page(
                &state,
                &ctx,
                &access,
                InvitationsView {
                    form,
                    errors,
                    ..InvitationsView::default()
                },
            )
            .await?;
            Ok((web.status(), page).into_response())
        }
    }
}

/// The invitation named in the path, if it belongs to the organization.
async fn invitation_here(
    state: &AppState,
    access: &OrgAccess,
    invitation: &str,
) -> Result<Invitation, WebError> {
    let not_here = || WebError::not_found("there is no invitation at this address");
    let id: InvitationId = invitation.parse().map_err(|_| not_here())?;
    state
        .store
        .invitation(id)
        .await?
        .filter(|invitation| invitation.organization == access.id())
        .ok_or_else(not_here)
}

/// `POST /admin/orgs/{id}/invitations/{invitation}/resend`.
async fn resend(
    State(state): State<AppState>,
    me: SignedIn,
    Path((id, invitation)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let access = invitation_access(&state, &me, &id).await?;
    let invitation = invitation_here(&state, &access, &invitation).await?;
    state
        .ciam
        .invitations()
        .resend(&me.principal, invitation.id)
        .await?;
    Ok(redirect_with(
        &state,
        &access.href("/invitations"),
        Flash::success(format!("invitation sent again to {}", invitation.email)),
    ))
}

/// `POST /admin/orgs/{id}/invitations/{invitation}/revoke`.
async fn revoke(
    State(state): State<AppState>,
    me: SignedIn,
    Path((id, invitation)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let access = invitation_access(&state, &me, &id).await?;
    let invitation = invitation_here(&state, &access, &invitation).await?;
    state
        .ciam
        .invitations()
        .revoke(&me.principal, invitation.id)
        .await?;
    Ok(redirect_with(
        &state,
        &access.href("/invitations"),
        Flash::success(format!(
            "the invitation to {} was revoked",
            invitation.email
        )),
    ))
}
