//! Starting, checking and ending sessions.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::authz::{Action, Actor, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::events::EventKind;
use crate::ids::{IdentityId, SessionId};
use crate::principals::user_principal;
use crate::secrets::SecretToken;
use crate::sessions::{AuthMethod, RevocationReason, Session};
use crate::store::{ChangeSet, IdentityAccess, SessionAccess, StoreError, StoreErrorKind};

/// Session lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without use (default 30 minutes).
    pub idle_timeout: Duration,
    /// Ends this long after sign-in whatever happens (default 12 hours).
    pub absolute_timeout: Duration,
    /// Use is recorded at most this often, to spare the store a write per request
    /// (default 1 minute).
    pub touch_interval: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::minutes(30),
            absolute_timeout: Duration::hours(12),
            touch_interval: Duration::minutes(1),
        }
    }
}

/// Errors of sessions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// No live session for that token.
    #[error("the session has ended; sign in again")]
    Ended,
    /// The identity cannot hold a session.
    #[error("the account is not active")]
    InactiveIdentity,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session and its token (to set in a cookie; shown once).
#[derive(Debug)]
pub struct StartedSession {
    /// The session.
    pub session: Session,
    /// The bearer token.
    pub token: SecretToken,
}

/// A checked session with the principal it carries.
#[derive(Clone, Debug)]
pub struct ValidSession {
    /// The session.
    pub session: Session,
    /// The principal with grants as of now.
    pub principal: Principal,
    /// The records the principal was resolved from (identity, memberships, organizations,
    /// contracts), read once for the request, for work that needs them again (role resolution
    /// for single sign-on) without a second read.
    pub access: Arc<IdentityAccess>,
}

/// Sessions. Get one from [`crate::Ciam::sessions`].
pub struct Sessions<'a> {
    pub(crate) ctx: &'a Context,
}

impl Sessions<'_> {
    /// Starts a session for an identity that has just authenticated with `methods`. Called by
    /// authentication flows only, after the proof; the identity must be active.
    pub async fn start(
        &self,
        identity: IdentityId,
        methods: Vec<AuthMethod>,
    ) -> Result<StartedSession, SessionError> {
        self.start_with(identity, methods, ChangeSet::new()).await
    }

    /// [`Sessions::start`], committing `changes` (the sign-in's audit event) with the session
    /// in one transaction.
    pub(crate) async fn start_with(
        &self,
        identity: IdentityId,
        methods: Vec<AuthMethod>,
        mut changes: ChangeSet,
    ) -> Result<StartedSession, SessionError> {
        let identity = self
            .ctx
            .store
            .identity(identity)
            .await?
            .ok_or(SessionError::InactiveIdentity)?;
        if !identity.is_active() {
            return Err(SessionError::InactiveIdentity);
        }
        let now = self.ctx.now();
        let policy = self.ctx.policy.sessions;
        let token = SecretToken::generate(self.ctx.random.as_ref());
        let session = Session {
            id: SessionId::generate(self.ctx.random.as_ref()),
            version: 0,
            token_hash: token.hash(),
            identity: identity.id,
            methods,
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now + policy.idle_timeout,
            absolute_expires_at: now + policy.absolute_timeout,
            revoked: None,
        };
        changes.put(session.clone());
        self.ctx.store.commit(changes).await?;
        Ok(StartedSession {
            session: Session {
                version: 1,
                ..session
            },
            token,
        })
    }

    /// Checks a session token: live, identity active; records use (sliding the idle expiry)
    /// and returns the principal with grants as of now.
    pub async fn validate(&self, token: &SecretToken) -> Result<ValidSession, SessionError> {
        let now = self.ctx.now();
        // The session and its identity's access in one read (one round trip on SQL stores).
        let SessionAccess {
            mut session,
            access,
        } = self
            .ctx
            .store
            .session_access(&token.hash())
            .await?
            .ok_or(SessionError::Ended)?;
        if !session.is_live(now) {
            return Err(SessionError::Ended);
        }
        let access = access.ok_or(SessionError::Ended)?;
        let user = user_principal(&access, now);
        if !user.active {
            return Err(SessionError::Ended);
        }
        let principal = Principal::User(user);
        let policy = self.ctx.policy.sessions;
        if now - session.last_seen_at >= policy.touch_interval {
            session.last_seen_at = now;
            session.idle_expires_at = now + policy.idle_timeout;
            let mut changes = ChangeSet::new();
            changes.put(session.clone());
            match self.ctx.store.commit(changes).await {
                Ok(()) => session.version += 1,
                // Another request touched it at the same moment, or it was revoked meanwhile:
                // read it again.
                Err(error) if error.kind() == StoreErrorKind::Conflict => {
                    session = self
                        .ctx
                        .store
                        .session_by_token(&token.hash())
                        .await?
                        .ok_or(SessionError::Ended)?;
                    if !session.is_live(now) {
                        return Err(SessionError::Ended);
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(ValidSession {
            session,
            principal,
            access: Arc::new(access),
        })
    }

    /// Sessions of a person (their own, or any for staff allowed to disable people).
    pub async fn list(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<Vec<Session>, SessionError> {
        authorize_on_person(principal, identity)?;
        Ok(self.ctx.store.sessions_of_identity(identity).await?)
    }

    /// Ends the session of this token (sign out). Unknown or ended tokens are fine.
    pub async fn sign_out(&self, token: &SecretToken) -> Result<(), SessionError> {
        let Some(session) = self.ctx.store.session_by_token(&token.hash()).await? else {
            return Ok(());
        };
        if session.revoked.is_some() {
            return Ok(());
        }
        let now = self.ctx.now();
        let mut changes = ChangeSet::new();
        changes.put(Session {
            revoked: Some((now, RevocationReason::SignedOut)),
            ..session
        });
        match self.ctx.store.commit(changes).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == StoreErrorKind::Conflict => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Ends every other live session of the person holding `current` ("sign out others").
    pub async fn sign_out_others(&self, current: &SecretToken) -> Result<usize, SessionError> {
        let valid = self.validate(current).await?;
        let now = self.ctx.now();
        let mut changes = ChangeSet::new();
        let mut count = 0;
        for session in self
            .ctx
            .store
            .sessions_of_identity(valid.session.identity)
            .await?
        {
            if session.id != valid.session.id && session.is_live(now) {
                changes.put(Session {
                    revoked: Some((now, RevocationReason::SignedOutElsewhere)),
                    ..session
                });
                count += 1;
            }
        }
        if count > 0 {
            changes.event(self.ctx.event(
                &Actor::Identity(valid.session.identity),
                None,
                Some(valid.session.identity),
                EventKind::SessionsRevoked {
                    count,
                    reason: RevocationReason::SignedOutElsewhere,
                },
                now,
            ));
            self.ctx.store.commit(changes).await?;
        }
        Ok(count)
    }

    /// Ends one session of a person by id (their own, or staff).
    pub async fn revoke(
        &self,
        principal: &Principal,
        identity: IdentityId,
        session: SessionId,
    ) -> Result<(), SessionError> {
        authorize_on_person(principal, identity)?;
        let now = self.ctx.now();
        let found = self
            .ctx
            .store
            .sessions_of_identity(identity)
            .await?
            .into_iter()
            .find(|s| s.id == session)
            .ok_or(SessionError::Ended)?;
        if found.revoked.is_some() {
            return Ok(());
        }
        let mut changes = ChangeSet::new();
        changes.put(Session {
            revoked: Some((now, RevocationReason::SignedOut)),
            ..found
        });
        self.ctx.store.commit(changes).await?;
        Ok(())
    }
}

fn authorize_on_person(principal: &Principal, identity: IdentityId) -> Result<(), DenyReason> {
    if principal.identity() == Some(identity) {
        return authorize(
            principal,
            &Action::ManageOwnProfile,
            &Target::Identity(identity),
        )
        .into_result();
    }
    authorize(principal, &Action::DisableIdentity, &Target::Global).into_result()
}

/// Adds the revocation of every live session of `identity` to `changes`, with one
/// `SessionsRevoked` event when there were any. Returns how many.
pub(crate) async fn revoke_sessions_of(
    ctx: &Context,
    actor: &Actor,
    identity: IdentityId,
    reason: RevocationReason,
    now: DateTime<Utc>,
    changes: &mut ChangeSet,
) -> Result<usize, StoreError> {
    let mut count = 0;
    for session in ctx.store.sessions_of_identity(identity).await? {
        if session.is_live(now) {
            changes.put(Session {
                revoked: Some((now, reason)),
                ..session
            });
            count += 1;
        }
    }
    if count > 0 {
        changes.event(ctx.event(
            actor,
            None,
            Some(identity),
            EventKind::SessionsRevoked { count, reason },
            now,
        ));
    }
    Ok(count)
}
