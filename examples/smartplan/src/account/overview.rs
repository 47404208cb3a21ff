//! `GET /account` (MySmartPlan) and `POST /account/name`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ciam_core::Principal;
use ciam_core::identities::ProfileError;
use ciam_core::identities::{Identity, Mandate, MembershipStatus};
use ciam_saml::idp::ServiceProviderRegistrations;
use serde::Deserialize;

use crate::account::rules;
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::{self, FieldErrors, Form, Page, PageContext, SignedIn, WebError};

/// An organization the person belongs to, with their business roles there.
pub(super) struct OrganizationRow {
    name: String,
    status: &'static str,
    status_class: &'static str,
    roles: Vec<String>,
    duties: Vec<&'static str>,
}

/// A service the person can open.
pub(super) struct ServiceLink {
    name: String,
    href: String,
}

#[derive(Template)]
#[template(path = "account/overview.html")]
struct OverviewPage {
    page: Page,
    email: String,
    pending_email: Option<String>,
    phone: Option<String>,
    phone_verified: bool,
    second_factor_missing: bool,
    organizations: Vec<OrganizationRow>,
    services: Vec<ServiceLink>,
    given_name: String,
    family_name: String,
    errors: FieldErrors,
}

/// The name form. Both fields are required.
#[derive(Deserialize)]
pub(super) struct NameForm {
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
}

async fn organizations(state: &AppState, me: &SignedIn) -> Result<Vec<OrganizationRow>, WebError> {
    let memberships = state
        .ciam
        .profile()
        .memberships(&me.principal, me.user.identity)
        .await?;
    let mut rows = Vec::new();
    for membership in memberships {
        if membership.status == MembershipStatus::Removed {
            continue;
        }
        let Some(organization) = state.store.organization(membership.organization).await? else {
            continue;
        };
        let mut roles = Vec::new();
        for role in &membership.business_roles {
            if let Some(role) = state.store.business_role(*role).await? {
                roles.push(role.name);
            }
        }
        let mut duties = Vec::new();
        for mandate in &membership.mandates {
            duties.push(match mandate {
                Mandate::OrgAdmin => "Contact person (manages the organization)",
                Mandate::UserManager => "Manages users",
                Mandate::ServiceManager(_) => "Manages a service",
            });
        }
        duties.dedup();
        if !membership.staff_roles.is_empty() {
            duties.push("SmartPlan staff");
        }
        let (status, status_class) = match (membership.status, organization.is_active()) {
            (MembershipStatus::Active, true) => ("Active", "active"),
            (MembershipStatus::Active, false) => ("Organization not active", "disabled"),
            (MembershipStatus::PendingApproval, _) => ("Waiting for approval", "pending"),
            (MembershipStatus::Removed, _) => ("Removed", "disabled"),
        };
        rows.push(OrganizationRow {
            name: organization.name,
            status,
            status_class,
            roles,
            duties,
        });
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// The registered SAML service providers whose service the person has roles in.
async fn services(state: &AppState, me: &SignedIn) -> Result<Vec<ServiceLink>, WebError> {
    let registrations = ServiceProviderRegistrations::new(state.ciam.clone())
        .list(&Principal::System)
        .await
        .map_err(WebError::internal)?;
    let mut links = Vec::new();
    for registration in registrations {
        let Some(service_key) = registration.options.service_key.as_deref() else {
            continue;
        };
        let roles = match state
            .ciam
            .roles()
            .resolve(&me.principal, me.user.identity, service_key)
            .await
        {
            Ok(roles) => roles,
            Err(ciam_core::services::RoleResolutionError::UnknownService(_)) => continue,
            Err(error) => return Err(error.into()),
        };
        if !roles.has_access() {
            continue;
        }
        let name = match state.store.service_by_key(service_key).await? {
            Some(service) => service.name,
            None => service_key.to_owned(),
        };
        let entity_id: String = url::form_urlencoded::byte_serialize(
            registration.service_provider.entity_id.as_bytes(),
        )
        .collect();
        links.push(ServiceLink {
            name,
            href: format!("/saml/launch?sp={entity_id}"),
        });
    }
    links.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(links)
}

async fn render_overview(
    state: &AppState,
    ctx: &PageContext,
    me: &SignedIn,
    identity: &Identity,
    (given_name, family_name): (String, String),
    errors: FieldErrors,
) -> Result<Response, WebError> {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = OverviewPage {
        page: ctx.page("MySmartPlan"),
        email: identity.email.to_string(),
        pending_email: identity
            .pending_email
            .as_ref()
            .map(|pending| pending.new_value.to_string()),
        phone: identity.phone.as_ref().map(ToString::to_string),
        phone_verified: identity.phone_verified,
        second_factor_missing: rules::second_factor_missing(state, identity).await?,
        organizations: organizations(state, me).await?,
        services: services(state, me).await?,
        given_name,
        family_name,
        errors,
    };
    Ok((status, web::render(&page)?).into_response())
}

/// `GET /account`.
pub(super) async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
) -> Result<Response, WebError> {
    let identity = state
        .ciam
        .profile()
        .get(&me.principal, me.user.identity)
        .await?;
    let name = (identity.name.given.clone(), identity.name.family.clone());
    render_overview(&state, &ctx, &me, &identity, name, FieldErrors::new()).await
}

/// `POST /account/name`.
pub(super) async fn change_name(
    State(state): State<AppState>,
    ctx: PageContext,
    me: SignedIn,
    Form(form): Form<NameForm>,
) -> Result<Response, WebError> {
    let given = form.given_name.trim().to_owned();
    let family = form.family_name.trim().to_owned();
    let mut errors = FieldErrors::new();
    if rules::check_name(&mut errors, &given, &family).is_some() {
        match state
            .ciam
            .profile()
            .change_name(&me.principal, me.user.identity, &given, &family)
            .await
        {
            Ok(_) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account",
                    Flash::success("Your name is saved."),
                ));
            }
            Err(ProfileError::Unchanged) => {
                return Ok(flash::redirect_with(
                    &state,
                    "/account",
                    Flash::info("Your name is unchanged."),
                ));
            }
            Err(ProfileError::Invalid(error)) => errors.add("given_name", error.to_string()),
            Err(error) => return Err(error.into()),
        }
    }
    let identity = state
        .ciam
        .profile()
        .get(&me.principal, me.user.identity)
        .await?;
    render_overview(&state, &ctx, &me, &identity, (given, family), errors).await
}
