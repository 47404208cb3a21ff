//! Invitation acceptance (`/invitations/accept?token=`): the page shows the inviting
//! organization (in its branding), who invited and as what; the invitee sets their name and a
//! password (or uses the company login when the organization has an identity provider), or
//! declines. The new password is the first factor of a sign-in (ciam-core's
//! `Login::accept_invitation`): the new account is signed in at once and sent to MySmartPlan,
//! or, when the organization's policy or `[security] require_mfa` requires a second factor,
//! sent to the sign-in's enrolment step (`/signin/enrol`: a mobile phone or an authenticator
//! app) and gets no session before it is set up. An existing account that keeps its password
//! signs in as usual. Expired, used, withdrawn and unknown links get a plain page that says
//! what happened and what to do.

use crate::web::forms::Query;
use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ciam_core::Principal;
use ciam_core::authz::Actor;
use ciam_core::credentials::CredentialKind;
use ciam_core::identities::Identity;
use ciam_core::invitations::{
    Acceptance, Invitation, InvitationError, InvitationKind, InvitationStatus,
};
use ciam_core::login::{LoginError, LoginStep};
use ciam_core::organizations::Organization;
use ciam_core::secrets::SecretToken;
use ciam_core::settings::SettingKind;
use serde::Deserialize;

use crate::account::rules;
use crate::signin::{self, progress::Progress};
use crate::state::AppState;
use crate::web::flash::{self, Flash};
use crate::web::{self, Branding, ClientAddr, FieldErrors, Form, Page, PageContext, WebError};

/// The routes of this area.
pub fn routes() -> Router<AppState> {
    Router::new().route("/invitations/accept", get(show).post(submit))
}

/// `?token=` (the secret from the invitation link; never logged).
#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

impl TokenQuery {
    fn secret(&self) -> SecretToken {
        SecretToken::from_presented(self.token.trim())
    }
}

/// The acceptance form (and the decline button, `decision=decline`). No `Debug`: it holds the
/// password.
#[derive(Deserialize)]
struct AcceptForm {
    #[serde(default)]
    decision: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirmation: String,
}

#[derive(Template)]
#[template(path = "invitations/accept.html")]
struct AcceptPage {
    page: Page,
    token: String,
    organization: String,
    inviter: String,
    role: &'static str,
    email: String,
    expires: String,
    needs_name: bool,
    needs_password: bool,
    company_login: bool,
    given_name: String,
    family_name: String,
    password_rules: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "invitations/unusable.html")]
struct UnusablePage {
    page: Page,
    explanation: &'static str,
    advice: &'static str,
    sign_in: bool,
}

#[derive(Template)]
#[template(path = "invitations/declined.html")]
struct DeclinedPage {
    page: Page,
    organization: String,
}

/// What the page needs to know about an invitation beyond the record.
struct Invited {
    invitation: Invitation,
    organization: Organization,
    inviter: String,
    /// The account that already exists for the invited email, if any.
    existing: Option<Identity>,
    /// Whether that account already has a password.
    has_password: bool,
    company_login: bool,
}

impl Invited {
    async fn load(state: &AppState, invitation: Invitation) -> Result<Self, WebError> {
        let organization = state
            .store
            .organization(invitation.organization)
            .await?
            .ok_or_else(|| WebError::not_found("this invitation link is not valid"))?;
        let inviter = match &invitation.invited_by {
            Actor::Identity(id) => match state.store.identity(*id).await? {
                Some(person) => person.name.full(),
                None => "SmartPlan".to_owned(),
            },
            Actor::Integration(_) | Actor::System | Actor::Anonymous => {
                "SmartPlan customer service".to_owned()
            }
        };
        let existing = state.store.identity_by_email(&invitation.email).await?;
        let has_password = match &existing {
            Some(person) => state
                .store
                .credentials_of_identity(person.id)
                .await?
                .iter()
                .any(|credential| matches!(credential.kind, CredentialKind::Password { .. })),
            None => false,
        };
        let company_login = state
            .store
            .settings(SettingKind::IdentityProvider, Some(organization.id))
            .await?
            .iter()
            .any(|setting| setting.organization == Some(organization.id));
        Ok(Self {
            invitation,
            organization,
            inviter,
            existing,
            has_password,
            company_login,
        })
    }

    fn needs_name(&self) -> bool {
        self.existing.is_none()
    }

    fn needs_password(&self) -> bool {
        !self.has_password
    }

    fn page(
        &self,
        ctx: &PageContext,
        token: &str,
        given_name: String,
        family_name: String,
        errors: FieldErrors,
    ) -> AcceptPage {
        let title = format!("Join {}", self.organization.name);
        AcceptPage {
            page: ctx
                .page(title)
                .branded(Branding::for_organization(&self.organization)),
            token: token.to_owned(),
            organization: self.organization.name.clone(),
            inviter: self.inviter.clone(),
            role: role_in_words(&self.invitation.kind),
            email: self.invitation.email.to_string(),
            expires: self
                .invitation
                .expires_at
                .format("%-d %B %Y at %H:%M UTC")
                .to_string(),
            needs_name: self.needs_name(),
            needs_password: self.needs_password(),
            company_login: self.company_login,
            given_name,
            family_name,
            password_rules: String::new(),
            errors,
        }
    }
}

fn role_in_words(kind: &InvitationKind) -> &'static str {
    match kind {
        InvitationKind::Member => "as a user of its SmartPlan services",
        InvitationKind::ContactPerson => {
            "as its contact person: you decide who in your organization uses SmartPlan's services"
        }
        InvitationKind::Lead { .. } => "to try SmartPlan's services",
    }
}

/// The plain page for a link that cannot be used, or the error when the failure is another.
fn unusable(ctx: &PageContext, error: InvitationError) -> Result<Response, WebError> {
    let (status, title, explanation, advice, sign_in) = match &error {
        InvitationError::NotFound | InvitationError::NotUsable(InvitationStatus::HeldForReview) => {
            (
                StatusCode::NOT_FOUND,
                "This invitation link is not valid",
                "We could not find an invitation for this link. The link may be incomplete, or a newer invitation replaced it.",
                "Open the link from the newest invitation email again, in full. If it still does not work, ask the person who invited you to send a new invitation.",
                false,
            )
        }
        InvitationError::NotUsable(InvitationStatus::Accepted) => (
            StatusCode::GONE,
            "This invitation has already been used",
            "The invitation was accepted, and each invitation link works only once.",
            "If you accepted it, sign in with your email address and password. If you did not, tell the person who invited you.",
            true,
        ),
        InvitationError::NotUsable(InvitationStatus::Revoked) => (
            StatusCode::GONE,
            "This invitation was withdrawn",
            "The invitation was declined, withdrawn by your organization, or replaced by a newer one.",
            "Use the link in the newest invitation email, or ask the person who invited you to send a new invitation.",
            false,
        ),
        InvitationError::Expired | InvitationError::NotUsable(InvitationStatus::Expired) => (
            StatusCode::GONE,
            "This invitation has expired",
            "Invitation links work for a limited time, and this one's time has run out.",
            "Ask the person who invited you to send the invitation again; the new email has a fresh link.",
            false,
        ),
        _ => return Err(error.into()),
    };
    let page = UnusablePage {
        page: ctx.page(title),
        explanation,
        advice,
        sign_in,
    };
    Ok((status, web::render(&page)?).into_response())
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<TokenQuery>,
) -> Result<Response, WebError> {
    let invitation = match state.ciam.invitations().preview(&query.secret()).await {
        Ok(invitation) => invitation,
        Err(error) => return unusable(&ctx, error),
    };
    let invited = Invited::load(&state, invitation).await?;
    let (given, family) = invited
        .invitation
        .name
        .as_ref()
        .map(|name| (name.given.clone(), name.family.clone()))
        .unwrap_or_default();
    let mut page = invited.page(&ctx, &query.token, given, family, FieldErrors::new());
    page.password_rules = rules::password_rules(&state.ciam.policy().password);
    Ok(web::render(&page)?.into_response())
}

async fn submit(
    State(state): State<AppState>,
    ctx: PageContext,
    client: ClientAddr,
    Query(query): Query<TokenQuery>,
    Form(form): Form<AcceptForm>,
) -> Result<Response, WebError> {
    let token = query.secret();
    let invitations = state.ciam.invitations();
    let invitation = match invitations.preview(&token).await {
        Ok(invitation) => invitation,
        Err(error) => return unusable(&ctx, error),
    };
    if form.decision == "decline" {
        let organization = state
            .store
            .organization(invitation.organization)
            .await?
            .map(|organization| organization.name)
            .unwrap_or_default();
        return match invitations.decline(&Principal::Anonymous, &token).await {
            Ok(_) => Ok(web::render(&DeclinedPage {
                page: ctx.page("Invitation declined"),
                organization,
            })?
            .into_response()),
            Err(error) => unusable(&ctx, error),
        };
    }
    let invited = Invited::load(&state, invitation).await?;
    let policy = &state.ciam.policy().password;
    let given = form.given_name.trim().to_owned();
    let family = form.family_name.trim().to_owned();
    let mut errors = FieldErrors::new();
    if invited.needs_name() {
        rules::check_name(&mut errors, &given, &family);
    }
    let password = if invited.needs_password() {
        rules::check_new_password(
            policy,
            &mut errors,
            ("password", &form.password),
            ("password_confirmation", &form.password_confirmation),
        )
    } else {
        None
    };
    let again = |errors: FieldErrors| -> Result<Response, WebError> {
        let mut page = invited.page(&ctx, &query.token, given.clone(), family.clone(), errors);
        page.password_rules = rules::password_rules(policy);
        Ok((StatusCode::UNPROCESSABLE_ENTITY, web::render(&page)?).into_response())
    };
    if !errors.is_empty() {
        return again(errors);
    }
    let acceptance = Acceptance {
        given_name: invited.needs_name().then(|| given.clone()),
        family_name: invited.needs_name().then(|| family.clone()),
        password,
    };
    let source = client.to_string();
    let (accepted, step) = match state
        .ciam
        .login()
        .accept_invitation(&token, acceptance, Some(&source))
        .await
    {
        Ok(accepted) => accepted,
        Err(LoginError::Invitation(InvitationError::Password(error))) => {
            errors.add("password", error.to_string());
            return again(errors);
        }
        Err(LoginError::Invitation(InvitationError::Invalid(error))) => {
            errors.add("given_name", error.to_string());
            return again(errors);
        }
        Err(LoginError::Invitation(
            error @ (InvitationError::NotFound
            | InvitationError::NotUsable(_)
            | InvitationError::Expired),
        )) => return unusable(&ctx, error),
        Err(LoginError::Invitation(error)) => return Err(error.into()),
        Err(error) => return Err(error.into()),
    };
    let organization = &invited.organization.name;
    let Some(step) = step else {
        // An existing account: the invitation link proves the email, not the person's
        // password or second factor, so they sign in as usual (unless they already are).
        let message = format!("You have joined {organization}.");
        let signed_in_as_invitee = ctx
            .signed_in
            .as_ref()
            .is_some_and(|signed_in| signed_in.user.identity == accepted.identity.id);
        if signed_in_as_invitee {
            return Ok(flash::redirect_with(
                &state,
                "/account",
                Flash::success(message),
            ));
        }
        return Ok(flash::redirect_with(
            &state,
            "/signin?next=%2Faccount",
            Flash::success(format!(
                "{message} Sign in with your email address and password."
            )),
        ));
    };
    // The new password is the first factor of a sign-in: a second factor that the
    // organization or the deployment requires is set up before any session exists.
    let flash = match &step {
        LoginStep::SignedIn(_) => {
            Flash::success(format!("Welcome to {organization}. Your account is ready."))
        }
        _ => Flash::info(format!(
            "Welcome to {organization}. Your account needs a second step at sign-in: set up your mobile phone or an authenticator app now to finish signing in."
        )),
    };
    let progress = Progress::new(
        accepted.identity.email.as_str(),
        Some("/account".to_owned()),
    );
    let mut response = signin::follow(&state, progress, step).await?;
    flash.cookie(&state).append_to(response.headers_mut());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_invitation_kind_is_explained() {
        assert!(role_in_words(&InvitationKind::ContactPerson).contains("contact person"));
        assert!(role_in_words(&InvitationKind::Member).contains("user"));
        assert!(
            role_in_words(&InvitationKind::Lead {
                crm_lead_id: "L".into()
            })
            .contains("try")
        );
    }
}
