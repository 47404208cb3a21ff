//! Re-authentication before sensitive account changes (ASVS 7.5.1): changing the email
//! address, the phone, the password or the second factors needs an authentication within the
//! last few minutes. A session's authentication time is its start ([`Session::created_at`]):
//! every sign-in, step-up and re-authentication starts a new session, so a session older than
//! the window was not authenticated recently. Re-authenticating with the password starts a
//! new session (new token, the old one ended), like a step-up; a wrong password counts toward
//! the account's throttle exactly like one at sign-in.
//!
//! A person without a password (signed in through a company login or Google) who has a second
//! factor (an authenticator app, a verified phone) re-authenticates with that factor instead
//! ([`Login::reauthenticate_by_second_factor`]): the answer is the usual second-factor step,
//! whose success starts a new session replacing the old one. Wrong codes count toward the
//! attempt's tries and the account's and source's throttle, and a throttled account cannot
//! start one, as with the password. A person with a password confirms with it.

use chrono::{DateTime, Duration, Utc};

use crate::ciam::Context;
use crate::credentials::{Password, Verification};
use crate::login::attempt::{AttemptState, Goal, Stage};
use crate::login::flow::{
    password_credential, phone_hint, random_id, seal, second_factor_options, start_session,
};
use crate::login::throttle::{self, FailedStep};
use crate::login::{Login, LoginError, LoginStep, SecondFactor};
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

impl Login<'_> {
    /// Re-authentication by the second factor, for a person without a password who has one:
    /// the answer is [`LoginStep::SecondFactor`] (their factors, the phone hint); the factor's
    /// success ([`Login::verify_totp`], [`Login::send_sms_code`] and
    /// [`Login::verify_sms_code`], [`Login::verify_recovery_code`]) gives a new session that
    /// replaces `session`, with the factor added to its methods and its start now. Wrong codes
    /// are throttled and audited as at sign-in (`SignInFailed`), and a throttled account or
    /// source gets [`LoginError::Throttled`] here. A person with a password gets
    /// [`LoginError::WrongStep`] (they confirm with it, [`Login::reauthenticate`]); one without
    /// any second factor gets [`LoginError::FactorUnavailable`] (they sign in again at their
    /// identity provider).
    pub async fn reauthenticate_by_second_factor(
        &self,
        session: &SecretToken,
        source: Option<&str>,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let valid = Sessions { ctx }.validate(session).await?;
        let now = ctx.now();
        let identity = &valid.access.identity;
        let email = identity.email.as_str();
        if let Some((scope, retry_after)) = throttle::locked(ctx, email, source, now).await? {
            return Err(LoginError::Throttled { scope, retry_after });
        }
        if password_credential(ctx, identity.id).await?.is_some() {
            return Err(LoginError::WrongStep);
        }
        let (_, options) = second_factor_options(ctx, identity).await?;
        if options.is_empty() {
            return Err(LoginError::FactorUnavailable);
        }
        let phone_hint = if options.contains(&SecondFactor::Sms) {
            identity.phone.as_ref().map(phone_hint)
        } else {
            None
        };
        step_up_attempt(ctx, &valid, source, options, phone_hint, now)
    }
}

/// The second-factor step whose success replaces the session `valid` with a new one (step-up
/// and re-authentication by a second factor): an attempt for the session's person with its
/// methods so far, sealed.
pub(crate) fn step_up_attempt(
    ctx: &Context,
    valid: &ValidSession,
    source: Option<&str>,
    options: Vec<SecondFactor>,
    phone_hint: Option<String>,
    now: DateTime<Utc>,
) -> Result<LoginStep, LoginError> {
    let identity = &valid.access.identity;
    let state = AttemptState {
        id: random_id(ctx),
        expires_at: now + ctx.policy.login.attempt_lifetime,
        source: source.map(str::to_owned),
        email: identity.email.as_str().to_owned(),
        stage: Stage::SecondFactor {
            identity: identity.id,
            methods: valid.session.methods.clone(),
            goal: Goal::StepUp {
                session: valid.session.id,
            },
            sms: None,
        },
    };
    Ok(LoginStep::SecondFactor {
        attempt: seal(ctx, &state)?,
        options,
        phone_hint,
    })
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
