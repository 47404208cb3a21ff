//! The sign-in steps: identifier, password, SMS code, and finishing with a session.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use crate::authz::{Actor, Principal};
use crate::ciam::Context;
use crate::contact::{EmailAddress, PhoneNumber};
use crate::credentials::{
    Credential, CredentialKind, Password, PasswordHashString, Purpose, Verification,
};
use crate::delivery::{MessagePurpose, SmsMessage};
use crate::events::EventKind;
use crate::identities::{Identity, MembershipStatus};
use crate::ids::IdentityId;
use crate::invitations::{Acceptance, AcceptedInvitation, Invitations};
use crate::login::attempt::{AttemptState, Goal, SmsChallenge, Stage, wrap};
use crate::login::federated;
use crate::login::throttle::{self, FailedStep};
use crate::login::{AttemptToken, Login, LoginError, LoginStep, MfaRequirement, SecondFactor};
use crate::organizations::OrgKind;
use crate::secrets::{OneTimeCode, SecretToken};
use crate::sessions::{AuthMethod, RevocationReason, Session, StartedSession};
use crate::store::{ChangeSet, StoreErrorKind};

impl Login<'_> {
    /// Starts a login attempt with the email the person typed; `source` is the client's
    /// address (for throttling). The answer never tells whether the account exists: it is
    /// [`LoginStep::Password`] for every email whose domain does not belong to an organization
    /// with its own identity provider, and [`LoginStep::Federated`] for those that do.
    pub async fn start(&self, email: &str, source: Option<&str>) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let email = email.trim().to_owned();
        let domain = email
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_lowercase());
        let state = AttemptState {
            id: random_id(ctx),
            expires_at: now + ctx.policy.login.attempt_lifetime,
            source: source.map(str::to_owned),
            email: email.clone(),
            stage: Stage::Password {
                email: email.clone(),
            },
        };
        if let Some(domain) = domain {
            if let Some(org) = ctx.domain_owner(&domain).await? {
                if org.is_active() {
                    if let Some(idp) = ctx.auth.federation.idp_for(&org).await? {
                        let state =
                            federated::home_realm_state(ctx, &email, org.id, &idp.provider, source);
                        return Ok(LoginStep::Federated {
                            attempt: seal(ctx, &state)?,
                            organization: org.id,
                            idp,
                        });
                    }
                }
            }
        }
        Ok(LoginStep::Password {
            attempt: seal(ctx, &state)?,
        })
    }

    /// Checks the password. Wrong passwords, unknown emails and inactive accounts give the
    /// same [`LoginError::InvalidCredentials`] after the same work (one argon2id verification).
    /// At [`LoginStep::LinkAccount`] the password of the matching account links the identity
    /// provider's login to it.
    pub async fn password(
        &self,
        attempt: &AttemptToken,
        password: &Password,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let state = open(ctx, attempt, now)?;
        let (email, pending_link) = match &state.stage {
            Stage::Password { email } => (email, None),
            Stage::LinkAccount {
                email,
                identity,
                link,
            } => (email, Some((*identity, link.clone()))),
            _ => return Err(LoginError::WrongStep),
        };
        let source = state.source.as_deref();
        if let Some((scope, retry_after)) = throttle::locked(ctx, email, source, now).await? {
            return Err(LoginError::Throttled { scope, retry_after });
        }
        let identity = match EmailAddress::parse(email) {
            Ok(address) => ctx.store.identity_by_email(&address).await?,
            Err(_) => None,
        };
        // Read once: the password here, the second factors after it.
        let credentials = match &identity {
            Some(identity) => ctx.store.credentials_of_identity(identity.id).await?,
            None => Vec::new(),
        };
        let credential = password_in(&credentials);
        let verification = match &credential {
            Some((credential, hash)) => Some((
                credential,
                ctx.hasher
                    .verify(password, hash, ctx.random.as_ref())
                    .await?,
            )),
            None => {
                // Same work as for a real account, same answer.
                let dummy = dummy_hash(ctx).await?;
                let _ = ctx
                    .hasher
                    .verify(password, &dummy, ctx.random.as_ref())
                    .await?;
                None
            }
        };
        let matched = match (&identity, verification) {
            (Some(identity), Some((credential, Verification::Match))) if identity.is_active() => {
                Some((identity, credential, None))
            }
            (Some(identity), Some((credential, Verification::MatchRehashed(new))))
                if identity.is_active() =>
            {
                Some((identity, credential, Some(new)))
            }
            _ => None,
        };
        let Some((identity, credential, rehashed)) = matched else {
            throttle::record_failure(
                ctx,
                email,
                identity.as_ref().map(|i| i.id),
                source,
                FailedStep::Password,
                now,
            )
            .await?;
            return Err(LoginError::InvalidCredentials);
        };
        if let Some(new_hash) = rehashed {
            // Parameters changed or the hash was imported: store the argon2id hash with the
            // current parameters. A concurrent change wins; the next sign-in tries again.
            let mut changes = ChangeSet::new();
            changes.put(Credential {
                kind: CredentialKind::Password { hash: new_hash },
                updated_at: now,
                ..credential.clone()
            });
            if let Err(error) = ctx.store.commit(changes).await {
                if error.kind() != StoreErrorKind::Conflict {
                    return Err(error.into());
                }
            }
        }
        if let Some((linked, link)) = pending_link {
            if linked != identity.id {
                return Err(LoginError::InvalidCredentials);
            }
            return federated::link_after_password(ctx, state.clone(), identity, &link).await;
        }
        after_first_factor_with(
            ctx,
            state.clone(),
            identity,
            &credentials,
            vec![AuthMethod::Pwd],
            Goal::SignIn,
        )
        .await
    }

    /// Sends an SMS code to the person's verified phone (first send or resend).
    pub async fn send_sms_code(&self, attempt: &AttemptToken) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let mut state = open(ctx, attempt, now)?;
        ensure_not_ended(ctx, &state, now).await?;
        let Stage::SecondFactor { identity, .. } = &state.stage else {
            return Err(LoginError::WrongStep);
        };
        let identity = ctx
            .store
            .identity(*identity)
            .await?
            .ok_or(LoginError::AttemptExpired)?;
        let phone = match (&identity.phone, identity.phone_verified) {
            (Some(phone), true) => phone.clone(),
            _ => return Err(LoginError::FactorUnavailable),
        };
        let policy = &ctx.policy.login;
        let (send, gap_until) = sms_send_slot(ctx, &state, now).await?;
        let code = OneTimeCode::generate(ctx.random.as_ref());
        let expires_at = (now + policy.sms_code_lifetime).min(state.expires_at);
        let mac = code_mac(ctx, &state.id, send, &code, None);
        if let Stage::SecondFactor { sms, .. } = &mut state.stage {
            *sms = Some(SmsChallenge {
                mac,
                send,
                expires_at,
            });
        }
        ctx.send_sms(SmsMessage {
            to: phone,
            text: format!(
                "{} sign-in code: {}. It expires in {} minutes. Never share it.",
                ctx.policy.product_name,
                code.expose(),
                policy.sms_code_lifetime.num_minutes()
            ),
            purpose: MessagePurpose::SignInCode,
        })
        .await;
        Ok(LoginStep::CodeSent {
            attempt: seal(ctx, &state)?,
            expires_at,
            resend_after: gap_until,
        })
    }

    /// Checks the SMS code of the attempt.
    pub async fn verify_sms_code(
        &self,
        attempt: &AttemptToken,
        code: &OneTimeCode,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let state = open(ctx, attempt, now)?;
        ensure_not_ended(ctx, &state, now).await?;
        let Stage::SecondFactor {
            identity,
            methods,
            goal,
            sms,
        } = &state.stage
        else {
            return Err(LoginError::WrongStep);
        };
        let Some(challenge) = sms else {
            return Err(LoginError::WrongStep);
        };
        if now >= challenge.expires_at {
            return Err(LoginError::CodeExpired);
        }
        // A newer code was sent: this one no longer counts.
        if ctx.store.counter(&state.key("sms-sent"), now).await? != challenge.send {
            return Err(LoginError::CodeExpired);
        }
        let expected = code_mac(ctx, &state.id, challenge.send, code, None);
        if !bool::from(expected.as_bytes().ct_eq(challenge.mac.as_bytes())) {
            return Err(
                second_factor_failed(ctx, &state, *identity, FailedStep::SmsCode, now).await,
            );
        }
        let mut methods = methods.clone();
        methods.push(AuthMethod::Sms);
        complete(ctx, &state, *identity, methods, goal.clone()).await
    }
}

impl Login<'_> {
    /// Accepts an invitation (anonymously: the link is the proof) and, when the acceptance sets
    /// a new password, signs the person in with it as the first factor: [`LoginStep::SignedIn`]
    /// when no second factor is required; [`LoginStep::EnrolSecondFactor`] when one is and they
    /// have none (no session exists until it is set up: the organization's policy and the
    /// deployment's [`MfaRequirement`] hold from the first session on);
    /// [`LoginStep::SecondFactor`] when they have one. Without a new password (the account
    /// exists and keeps its own) the step is `None`: the link proves the email, not the
    /// account's password or second factor, so that person signs in as usual. `source` is the
    /// client's address.
    pub async fn accept_invitation(
        &self,
        token: &SecretToken,
        acceptance: Acceptance,
        source: Option<&str>,
    ) -> Result<(AcceptedInvitation, Option<LoginStep>), LoginError> {
        let ctx = self.ctx;
        let with_password = acceptance.password.is_some();
        let accepted = Invitations { ctx }
            .accept(&Principal::Anonymous, token, acceptance)
            .await?;
        if !with_password {
            return Ok((accepted, None));
        }
        let now = ctx.now();
        let email = accepted.identity.email.as_str().to_owned();
        let state = AttemptState {
            id: random_id(ctx),
            expires_at: now + ctx.policy.login.attempt_lifetime,
            source: source.map(str::to_owned),
            email: email.clone(),
            stage: Stage::Password { email },
        };
        let step = after_first_factor(
            ctx,
            state,
            &accepted.identity,
            vec![AuthMethod::Pwd],
            Goal::SignIn,
        )
        .await?;
        Ok((accepted, Some(step)))
    }
}

/// After the first factor: a second factor when policy or enrollment asks for one, else done.
pub(crate) async fn after_first_factor(
    ctx: &Context,
    state: AttemptState,
    identity: &Identity,
    methods: Vec<AuthMethod>,
    goal: Goal,
) -> Result<LoginStep, LoginError> {
    let credentials = ctx.store.credentials_of_identity(identity.id).await?;
    after_first_factor_with(ctx, state, identity, &credentials, methods, goal).await
}

/// [`after_first_factor`] with the person's credentials already read in this step.
async fn after_first_factor_with(
    ctx: &Context,
    mut state: AttemptState,
    identity: &Identity,
    credentials: &[Credential],
    methods: Vec<AuthMethod>,
    goal: Goal,
) -> Result<LoginStep, LoginError> {
    let (required, options) = second_factors_of(ctx, identity, credentials).await?;
    if !required {
        return complete(ctx, &state, identity.id, methods, goal).await;
    }
    if options.is_empty() {
        // Without a sealing key no authenticator app can be set up: the person cannot go on.
        if !ctx.auth.sealer.configured {
            return Err(LoginError::SecondFactorRequired);
        }
        state.stage = Stage::EnrolSecondFactor {
            identity: identity.id,
            methods,
            goal,
            phone: None,
        };
        return Ok(LoginStep::EnrolSecondFactor {
            attempt: seal(ctx, &state)?,
        });
    }
    let phone_hint = if options.contains(&SecondFactor::Sms) {
        identity.phone.as_ref().map(phone_hint)
    } else {
        None
    };
    state.stage = Stage::SecondFactor {
        identity: identity.id,
        methods,
        goal,
        sms: None,
    };
    Ok(LoginStep::SecondFactor {
        attempt: seal(ctx, &state)?,
        options,
        phone_hint,
    })
}

/// Whether a second factor is needed, and which the person has.
pub(crate) async fn second_factor_options(
    ctx: &Context,
    identity: &Identity,
) -> Result<(bool, Vec<SecondFactor>), LoginError> {
    let credentials = ctx.store.credentials_of_identity(identity.id).await?;
    second_factors_of(ctx, identity, &credentials).await
}

/// [`second_factor_options`] from the person's credentials.
async fn second_factors_of(
    ctx: &Context,
    identity: &Identity,
    credentials: &[Credential],
) -> Result<(bool, Vec<SecondFactor>), LoginError> {
    let mut options = Vec::new();
    if identity.phone.is_some() && identity.phone_verified {
        options.push(SecondFactor::Sms);
    }
    let totp = super::totp::confirmed_totp(credentials).is_some();
    if totp {
        options.push(SecondFactor::Totp);
        if super::totp::recovery_codes_left(credentials) > 0 {
            options.push(SecondFactor::RecoveryCode);
        }
    }
    let deployment = ctx.policy.login.require_mfa;
    let mut required = totp || deployment == MfaRequirement::All;
    if !required {
        // The memberships with their organizations in one read.
        let memberships = ctx
            .store
            .identity_access(identity.id)
            .await?
            .map(|access| access.memberships)
            .unwrap_or_default();
        required = memberships.iter().any(|entry| {
            entry.membership.status == MembershipStatus::Active
                && entry.organization.as_ref().is_some_and(|org| {
                    let staff =
                        deployment == MfaRequirement::Staff && org.kind == OrgKind::Provider;
                    org.is_active() && (org.policy.require_mfa || staff)
                })
        });
    }
    Ok((required, options))
}

/// Counts a wrong second-factor code: for the attempt (5 end it) and for the account's
/// throttle. Returns the error to give.
pub(crate) async fn second_factor_failed(
    ctx: &Context,
    state: &AttemptState,
    identity: IdentityId,
    step: FailedStep,
    now: DateTime<Utc>,
) -> LoginError {
    let wrong = match ctx
        .store
        .increment_counter(&state.key("wrong"), now, state.expires_at)
        .await
    {
        Ok(wrong) => wrong,
        Err(error) => return error.into(),
    };
    if let Err(error) = throttle::record_failure(
        ctx,
        &state.email,
        Some(identity),
        state.source.as_deref(),
        step,
        now,
    )
    .await
    {
        return error.into();
    }
    if wrong >= ctx.policy.login.second_factor_tries {
        let mut changes = ChangeSet::new();
        changes.event(ctx.event(
            &Actor::Anonymous,
            None,
            Some(identity),
            EventKind::SignInAttemptEnded { wrong_codes: wrong },
            now,
        ));
        if let Err(error) = ctx.store.commit(changes).await {
            return error.into();
        }
        LoginError::AttemptEnded
    } else {
        LoginError::WrongCode
    }
}

pub(crate) async fn ensure_not_ended(
    ctx: &Context,
    state: &AttemptState,
    now: DateTime<Utc>,
) -> Result<(), LoginError> {
    if ctx.store.counter(&state.key("wrong"), now).await? >= ctx.policy.login.second_factor_tries {
        return Err(LoginError::AttemptEnded);
    }
    Ok(())
}

/// Finishes an attempt: exactly once per attempt, whatever is replayed.
pub(crate) async fn complete(
    ctx: &Context,
    state: &AttemptState,
    identity: IdentityId,
    methods: Vec<AuthMethod>,
    goal: Goal,
) -> Result<LoginStep, LoginError> {
    let now = ctx.now();
    if let Goal::Reset { reset_id } = goal {
        let mut next = state.clone();
        next.stage = Stage::NewPassword { identity, reset_id };
        return Ok(LoginStep::NewPassword {
            attempt: seal(ctx, &next)?,
        });
    }
    if !ctx
        .store
        .consume_once(&state.key("done"), now, state.expires_at)
        .await?
    {
        return Err(LoginError::AttemptExpired);
    }
    throttle::record_success(ctx, &state.email).await?;
    let started = start_session(ctx, identity, methods, state.source.clone()).await?;
    if let Goal::StepUp { session } = goal {
        // The stepped-up session replaces the old one.
        if let Some(old) = ctx
            .store
            .sessions_of_identity(identity)
            .await?
            .into_iter()
            .find(|s| s.id == session && s.revoked.is_none())
        {
            let mut changes = ChangeSet::new();
            changes.put(Session {
                revoked: Some((now, RevocationReason::SignedOut)),
                ..old
            });
            ctx.store.commit(changes).await?;
        }
    }
    Ok(LoginStep::SignedIn(Box::new(started)))
}

pub(crate) async fn start_session(
    ctx: &Context,
    identity: IdentityId,
    methods: Vec<AuthMethod>,
    source: Option<String>,
) -> Result<StartedSession, LoginError> {
    let now = ctx.now();
    let mut changes = ChangeSet::new();
    changes.event(ctx.event(
        &Actor::Identity(identity),
        None,
        Some(identity),
        EventKind::SignedIn {
            methods: methods.clone(),
            source,
        },
        now,
    ));
    // The session and its audit event in one commit.
    Ok(crate::sessions::Sessions { ctx }
        .start_with(identity, methods, changes)
        .await?)
}

pub(crate) fn seal(ctx: &Context, state: &AttemptState) -> Result<AttemptToken, LoginError> {
    Ok(wrap(ctx.auth.sealer.seal(
        AttemptState::PURPOSE,
        state,
        ctx.random.as_ref(),
    )?))
}

pub(crate) fn open(
    ctx: &Context,
    token: &AttemptToken,
    now: DateTime<Utc>,
) -> Result<AttemptState, LoginError> {
    let state: AttemptState = ctx
        .auth
        .sealer
        .open(AttemptState::PURPOSE, token.expose())
        .map_err(|_| LoginError::AttemptExpired)?;
    if now >= state.expires_at {
        return Err(LoginError::AttemptExpired);
    }
    Ok(state)
}

pub(crate) fn random_id(ctx: &Context) -> String {
    let mut bytes = [0u8; 16];
    ctx.random.fill(&mut bytes);
    hex::encode(bytes)
}

/// The MAC of an SMS code of an attempt (never the code itself): bound to the attempt, to
/// which send it was and, for a phone being set up, to that phone.
pub(crate) fn code_mac(
    ctx: &Context,
    attempt: &str,
    send: u32,
    code: &OneTimeCode,
    phone: Option<&PhoneNumber>,
) -> String {
    let send = send.to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![attempt.as_bytes(), &send, code.expose().as_bytes()];
    if let Some(phone) = phone {
        parts.push(b"phone");
        parts.push(phone.as_str().as_bytes());
    }
    ctx.auth.sealer.mac(Purpose::CodeMac, &parts)
}

/// Claims the next SMS send of an attempt: at most `sms_resends + 1` per attempt, one per
/// `sms_resend_interval`. Returns which send it is and when the next may be asked for.
pub(crate) async fn sms_send_slot(
    ctx: &Context,
    state: &AttemptState,
    now: DateTime<Utc>,
) -> Result<(u32, DateTime<Utc>), LoginError> {
    let policy = &ctx.policy.login;
    let max_sends = policy.sms_resends.saturating_add(1);
    if ctx.store.counter(&state.key("sms-sent"), now).await? >= max_sends {
        return Err(LoginError::ResendLimit);
    }
    let gap_until = now + policy.sms_resend_interval;
    if !ctx
        .store
        .consume_once(&state.key("sms-gap"), now, gap_until)
        .await?
    {
        return Err(LoginError::ResendTooSoon);
    }
    let send = ctx
        .store
        .increment_counter(&state.key("sms-sent"), now, state.expires_at)
        .await?;
    if send > max_sends {
        return Err(LoginError::ResendLimit);
    }
    Ok((send, gap_until))
}

/// "…67": the last two digits of a phone number, to show which phone a code goes to.
pub(crate) fn phone_hint(phone: &PhoneNumber) -> String {
    let digits = phone.as_str();
    let tail: String = digits
        .chars()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// The password credential of an identity, with its hash.
pub(crate) async fn password_credential(
    ctx: &Context,
    identity: IdentityId,
) -> Result<Option<(Credential, PasswordHashString)>, LoginError> {
    Ok(password_in(
        &ctx.store.credentials_of_identity(identity).await?,
    ))
}

/// The password credential among `credentials`, with its hash.
fn password_in(credentials: &[Credential]) -> Option<(Credential, PasswordHashString)> {
    credentials
        .iter()
        .find_map(|credential| match &credential.kind {
            CredentialKind::Password { hash } => Some((credential.clone(), hash.clone())),
            _ => None,
        })
}

/// The dummy hash, computed once with the current parameters.
pub(crate) async fn dummy_hash(ctx: &Context) -> Result<PasswordHashString, LoginError> {
    let hash = ctx
        .auth
        .dummy_hash
        .get_or_try_init(|| async {
            let mut bytes = [0u8; 24];
            ctx.random.fill(&mut bytes);
            let password = Password::new(hex::encode(bytes));
            ctx.hasher.hash(&password, ctx.random.as_ref()).await
        })
        .await?;
    Ok(hash.clone())
}
