//! The session cookie and the [`SignedIn`] / [`MaybeSignedIn`] extractors.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use ciam_core::Principal;
use ciam_core::authz::UserPrincipal;
use ciam_core::identities::Identity;
use ciam_core::secrets::SecretToken;
use ciam_core::sessions::{Session, SessionError, StartedSession};
use ciam_core::store::IdentityAccess;

use crate::state::AppState;
use crate::web::WebError;
use crate::web::cookies::{self, SESSION_COOKIE, SetCookie};

/// A signed-in person: the validated session, its token and the resolved principal.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The session.
    pub session: Session,
    /// The session token (from the cookie), for "sign out" and "sign out others".
    pub token: SecretToken,
    /// The person with their grants.
    pub user: UserPrincipal,
    /// The principal to act as.
    pub principal: Principal,
    /// The records the principal was resolved from, read once per request.
    pub access: Arc<IdentityAccess>,
}

impl SignedIn {
    /// The signed-in person's identity record.
    pub async fn identity(&self, state: &AppState) -> Result<Identity, WebError> {
        state
            .store
            .identity(self.user.identity)
            .await?
            .ok_or_else(|| WebError::not_found("person not found"))
    }

    /// Whether this person is on SmartPlan's staff.
    pub fn is_staff(&self) -> bool {
        !self.user.staff_roles.is_empty()
    }
}

/// Validates the session cookie of a request, if there is one.
async fn from_cookie(parts: &Parts, state: &AppState) -> Result<Option<SignedIn>, WebError> {
    let Some(value) = cookies::get(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let token = SecretToken::from_presented(value);
    match state.ciam.sessions().validate(&token).await {
        Ok(valid) => match valid.principal {
            Principal::User(user) => Ok(Some(SignedIn {
                session: valid.session,
                token,
                principal: Principal::User(user.clone()),
                user,
                access: valid.access,
            })),
            _ => Ok(None),
        },
        Err(SessionError::Store(error)) => Err(error.into()),
        Err(_) => Ok(None),
    }
}

fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match from_cookie(parts, state).await {
            Ok(Some(signed_in)) => Ok(signed_in),
            Ok(None) => {
                let next = if parts.method == axum::http::Method::GET {
                    path_and_query(parts)
                } else {
                    "/account".to_owned()
                };
                Err(WebError::sign_in_required(next).into_response())
            }
            Err(error) => Err(error.into_response()),
        }
    }
}

/// The signed-in person, if any.
#[derive(Clone, Debug)]
pub struct MaybeSignedIn(pub Option<SignedIn>);

impl FromRequestParts<AppState> for MaybeSignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        from_cookie(parts, state)
            .await
            .map(MaybeSignedIn)
            .map_err(IntoResponse::into_response)
    }
}

/// The cookie that starts a session in the browser (after a successful sign-in).
pub fn session_cookie(state: &AppState, started: &StartedSession) -> SetCookie {
    SetCookie::new(
        SESSION_COOKIE,
        started.token.expose().to_owned(),
        state.config.is_https(),
    )
}

/// The cookie that removes the session from the browser (sign-out).
pub fn clear_session_cookie(state: &AppState) -> SetCookie {
    SetCookie::removal(SESSION_COOKIE, state.config.is_https())
}
