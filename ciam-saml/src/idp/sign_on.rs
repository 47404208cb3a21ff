//! Where the IdP meets ciam-core: the signed-in user an assertion is issued for (identity,
//! organization, application roles for the SP's service), and the sessions a `LogoutRequest`
//! ends.

use std::collections::BTreeSet;

use ciam_core::Principal;
use ciam_core::ids::{IdentityId, OrganizationId, SessionId};
use ciam_core::organizations::Organization;
use ciam_core::services::RoleResolutionError;
use ciam_core::sessions::{Session, SessionError};
use ciam_core::store::IdentityAccess;
use ciam_core::{Ciam, StoreError};

use super::{IdentityProvider, LogoutRequest, ServiceProvider, SignedInUser};

/// Why no assertion can be issued for a signed-in person.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignOnError {
    /// The SP's service gives this person no application role (no active membership with a
    /// business role for it, or no effective contract covering it). Answer the SP with
    /// [`super::ErrorStatus::RequestDenied`] or show a page.
    #[error("you have no access to this application")]
    NoAccess,
    /// The person has no active membership in an active organization.
    #[error("you do not belong to an active organization")]
    NoOrganization,
    /// The person's identity is gone or not active.
    #[error("the account is not active")]
    InactiveIdentity,
    /// The SP's `service_key` names no service in the catalog (a registration mistake).
    #[error("service {0} is not in the catalog")]
    UnknownService(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<RoleResolutionError> for SignOnError {
    fn from(value: RoleResolutionError) -> Self {
        match value {
            RoleResolutionError::UnknownService(key) => Self::UnknownService(key),
            RoleResolutionError::UnknownIdentity => Self::InactiveIdentity,
            RoleResolutionError::Store(error) => Self::Store(error),
            // The system principal is never denied; anything else means no access.
            _ => Self::NoAccess,
        }
    }
}

impl SignedInUser {
    /// The user an assertion for `sp` is issued for, from a live session (as
    /// `ciam.sessions().validate(..)` returns it): email and names from the identity; the
    /// application roles that role resolution gives for the SP's `service_key`, and the
    /// organization through which that access comes. An SP with a service key is refused
    /// ([`SignOnError::NoAccess`]) to a person without any role in that service; an SP
    /// without one gets no `roles` and the first active organization of the person.
    pub async fn for_session(
        ciam: &Ciam,
        session: &Session,
        sp: &ServiceProvider,
    ) -> Result<Self, SignOnError> {
        let access = ciam
            .store()
            .identity_access(session.identity)
            .await?
            .ok_or(SignOnError::InactiveIdentity)?;
        Self::for_session_access(ciam, session, &access, sp).await
    }

    /// Like [`SignedInUser::for_session`] with the person's records already read for this
    /// request (`ValidSession::access` of `ciam.sessions().validate(..)`), so that the session
    /// check and the assertion share one read.
    pub async fn for_session_access(
        ciam: &Ciam,
        session: &Session,
        access: &IdentityAccess,
        sp: &ServiceProvider,
    ) -> Result<Self, SignOnError> {
        let identity = &access.identity;
        if identity.id != session.identity || !identity.is_active() {
            return Err(SignOnError::InactiveIdentity);
        }
        let (roles, via) = match &sp.service_key {
            Some(key) => {
                let resolved = ciam
                    .roles()
                    .resolve_in(&Principal::System, access, key)
                    .await?;
                if !resolved.has_access() {
                    return Err(SignOnError::NoAccess);
                }
                (
                    resolved.app_roles.into_iter().collect(),
                    resolved.organizations,
                )
            }
            None => (Vec::new(), BTreeSet::new()),
        };
        let organization = choose_organization(access, &via)?;
        let name = |part: &str| (!part.trim().is_empty()).then(|| part.to_owned());
        Ok(Self {
            identity_id: identity.id,
            email: identity.email.as_str().to_owned(),
            given_name: name(&identity.name.given),
            family_name: name(&identity.name.family),
            organization_id: organization.id,
            organization_name: organization.name.clone(),
            roles,
            auth_methods: session.methods.clone(),
            authenticated_at: session.created_at,
            session_id: session.id,
            session_expires_at: session.absolute_expires_at,
        })
    }
}

/// The organization the assertion names: the first (by id) of those giving access to the
/// service, or else the first (by id) active organization of an active membership.
fn choose_organization<'a>(
    access: &'a IdentityAccess,
    via: &BTreeSet<OrganizationId>,
) -> Result<&'a Organization, SignOnError> {
    let organizations = || {
        access
            .memberships
            .iter()
            .filter_map(|entry| entry.organization.as_ref().map(|org| (entry, org)))
    };
    if let Some(first) = via.iter().next() {
        if let Some((_, org)) = organizations().find(|(_, org)| org.id == *first) {
            return Ok(org);
        }
    }
    organizations()
        .filter(|(entry, org)| entry.membership.is_active() && org.is_active())
        .map(|(_, org)| org)
        .min_by_key(|org| org.id)
        .ok_or(SignOnError::NoOrganization)
}

/// Why sessions named by a `LogoutRequest` could not be ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutError {
    /// The request was made by another SP than the one given.
    #[error("logout request does not belong to this service provider")]
    WrongServiceProvider,
    /// Ending a session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`IdentityProvider::end_sessions`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogoutOutcome {
    /// The sessions now ended (those already ended count as ended).
    pub ended: Vec<SessionId>,
    /// Some session could not be identified: a `SessionIndex` not issued by us to this SP,
    /// one for another person than the NameID names, or no `SessionIndex` and no browser
    /// session of that person. The response then says `PartialLogout`.
    pub partial: bool,
}

impl IdentityProvider {
    /// Ends the sessions a checked `LogoutRequest` names, and tells what was done (for
    /// [`IdentityProvider::logout_response`]).
    ///
    /// Each `SessionIndex` we issued opens (it is sealed, see the assertion) to an identity and
    /// a session; the session is ended when the request's NameID is that identity's NameID at
    /// this SP (pairwise id or email). Without any `SessionIndex`, `browser_session` (the
    /// session of the browser that carried the request, when its cookie came along) is ended
    /// if it is that person's. Works on both bindings: no cookie is needed when the SP sends
    /// the `SessionIndex` it received, as SAML SPs do.
    pub async fn end_sessions(
        &self,
        ciam: &Ciam,
        sp: &ServiceProvider,
        request: &LogoutRequest,
        browser_session: Option<&Session>,
    ) -> Result<LogoutOutcome, LogoutError> {
        if request.sp_entity_id != sp.entity_id {
            return Err(LogoutError::WrongServiceProvider);
        }
        let mut outcome = LogoutOutcome::default();
        let mut targets = Vec::new();
        for index in &request.session_indexes {
            match self.open_session_index(&sp.entity_id, index) {
                Some(target) => targets.push(target),
                None => outcome.partial = true,
            }
        }
        if request.session_indexes.is_empty() {
            match browser_session {
                Some(session) => targets.push((session.identity, session.id)),
                None => outcome.partial = true,
            }
        }
        for (identity, session) in targets {
            if !self.names(ciam, sp, &request.name_id, identity).await? {
                outcome.partial = true;
                continue;
            }
            match ciam
                .sessions()
                .revoke(&Principal::System, identity, session)
                .await
            {
                Ok(()) | Err(SessionError::Ended) => outcome.ended.push(session),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(outcome)
    }

    /// Whether `name_id` is what this IdP issues to `sp` for `identity` (pairwise, or email).
    async fn names(
        &self,
        ciam: &Ciam,
        sp: &ServiceProvider,
        name_id: &str,
        identity: IdentityId,
    ) -> Result<bool, StoreError> {
        if self.pairwise_id(&sp.entity_id, &identity) == name_id {
            return Ok(true);
        }
        Ok(ciam
            .store()
            .identity(identity)
            .await?
            .is_some_and(|i| i.email.normalized() == name_id.trim().to_lowercase()))
    }
}
