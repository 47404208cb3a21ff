//! Re-authentication before sensitive account changes (ASVS 7.5.1): changing the email
//! address, the phone, the password or the second factors needs an authentication within the
//! last few minutes. A session's authentication time is its start ([`Session::created_at`]):
//! every sign-in, step-up and re-authentication starts a new session, so a session older than
//! the window was not authenticated recently. Re-authenticating with the password starts a
//! new session (new token, the old one ended), like a step-up; a wrong password counts toward
//! the account's throttle exactly like one at sign-in.

use chrono::{DateTime, Duration, Utc};

use crate::ciam::Context;
use crate::credentials::{Password, Verification};
use crate::login::flow::{password_credential, start_session};
use crate::login::throttle::{self, FailedStep};
use crate::login::{Login, LoginError};
use crate::secrets::SecretToken;
use crate::sessions::{
    AuthMethod, RevocationReason, Session, Sessions, StartedSession, ValidSession,
};
use crate::store::ChangeSet;

/// Whether `session` was authenticated within `window` before `now`.
pub fn authenticated_recently(session: &Session, now: DateTime<Utc>, window: Duration) -> bool {
    now - session.created_at <= window
}

impl Login<'_> {
    /// Confirms the password of the person holding `session`, for a sensitive change. On
    /// success a new session replaces `session` (same methods plus the password; its start is
    /// now); a wrong password counts for the account and `source` like a sign-in failure
    /// (audited as `SignInFailed { step: current_password }`) and, past the free failures,
    /// makes the next try wait. A person without a password gets
    /// [`LoginError::FactorUnavailable`] (they re-authenticate by signing in again).
    pub async fn reauthenticate(
        &self,
        session: &SecretToken,
        password: &Password,
        source: Option<&str>,
    ) -> Result<StartedSession, LoginError> {
        let ctx = self.ctx;
        let (valid, now) = check_current_password(
            ctx,
            session,
            password,
            source,
            LoginError::FactorUnavailable,
        )
        .await?;
        let identity_id = valid.session.identity;
        let email = valid.access.identity.email.as_str();
        throttle::record_success(ctx, email).await?;
        let mut methods = valid.session.methods.clone();
        if !methods.contains(&AuthMethod::Pwd) {
            methods.push(AuthMethod::Pwd);
        }
        let started = start_session(ctx, identity_id, methods, source.map(str::to_owned)).await?;
        let mut changes = ChangeSet::new();
        changes.put(Session {
            revoked: Some((now, RevocationReason::SignedOut)),
            ..valid.session
        });
        ctx.store.commit(changes).await?;
        Ok(started)
    }
}

/// Checks the current password of the person holding `session` before a sensitive change
/// (re-authentication, password change): throttled like a sign-in, and a wrong password
/// counts for the account and `source` (audited as `SignInFailed { step: current_password }`).
/// `no_password` is the error for a person without a password. Returns the checked session
/// (with the person's records) and the instant of the check.
pub(crate) async fn check_current_password(
    ctx: &Context,
    session: &SecretToken,
    password: &Password,
    source: Option<&str>,
    no_password: LoginError,
) -> Result<(ValidSession, DateTime<Utc>), LoginError> {
    let valid = Sessions { ctx }.validate(session).await?;
    let identity_id = valid.session.identity;
    let now = ctx.now();
    let email = valid.access.identity.email.as_str();
    if let Some((scope, retry_after)) = throttle::locked(ctx, email, source, now).await? {
        return Err(LoginError::Throttled { scope, retry_after });
    }
    let Some((_, stored)) = password_credential(ctx, identity_id).await? else {
        return Err(no_password);
    };
    if ctx
        .hasher
        .verify(password, &stored, ctx.random.as_ref())
        .await?
        == Verification::Mismatch
    {
        throttle::record_failure(
            ctx,
            email,
            Some(identity_id),
            source,
            FailedStep::CurrentPassword,
            now,
        )
        .await?;
        return Err(LoginError::InvalidCredentials);
    }
    Ok((valid, now))
}
