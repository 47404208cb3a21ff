//! Password change (needs the current password; revokes the other sessions), password reset
//! by an emailed single-use link that does not bypass the second factor, a reset started by an
//! administrator (who never sets the password), and step-up of a session.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::{Action, Actor, Principal, Target, authorize};
use crate::ciam::Context;
use crate::contact::EmailAddress;
use crate::credentials::{self, Credential, CredentialKind, Password, Purpose};
use crate::delivery::{EmailMessage, MessagePurpose};
use crate::events::EventKind;
use crate::identities::MembershipStatus;
use crate::ids::{CredentialId, IdentityId};
use crate::login::attempt::{AttemptState, Goal, Stage};
use crate::login::flow::{after_first_factor, open, password_credential, random_id};
use crate::login::reauth::{check_current_password, step_up_attempt};
use crate::login::throttle;
use crate::login::{AttemptToken, Login, LoginError, LoginStep};
use crate::secrets::SecretToken;
use crate::sessions::{AuthMethod, RevocationReason, Session, Sessions, revoke_sessions_of};
use crate::store::ChangeSet;

/// The content of a sealed reset link.
#[derive(Debug, Serialize, Deserialize)]
struct ResetClaim {
    id: String,
    identity: IdentityId,
    expires_at: DateTime<Utc>,
}

impl Login<'_> {
    /// Sends a password-reset link to `email` if it belongs to an active account. The answer is
    /// the same whether it does or not. At most a few links per address per hour.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let Ok(address) = EmailAddress::parse(email.trim()) else {
            return Ok(());
        };
        let sent = ctx
            .store
            .increment_counter(
                &format!("reset:mail:{}", address.normalized()),
                now,
                now + chrono::Duration::hours(1),
            )
            .await?;
        if sent > ctx.policy.login.reset_links_per_hour {
            return Ok(());
        }
        let Some(identity) = ctx.store.identity_by_email(&address).await? else {
            return Ok(());
        };
        if !identity.is_active() {
            return Ok(());
        }
        send_reset_link(ctx, &Actor::Anonymous, identity.id, &identity.email, false).await
    }

    /// An administrator (customer service, or a user manager of one of the person's
    /// organizations) sends the person a reset link. The administrator never sees the link
    /// and never chooses the password.
    pub async fn start_reset_for(
        &self,
        principal: &Principal,
        identity: IdentityId,
    ) -> Result<(), LoginError> {
        let ctx = self.ctx;
        let allowed = authorize(principal, &Action::DisableIdentity, &Target::Global)
            .into_result()
            .is_ok();
        let mut denial = None;
        if !allowed {
            let mut granted = false;
            for membership in ctx.store.memberships_of_identity(identity).await? {
                if membership.status == MembershipStatus::Removed {
                    continue;
                }
                let Some(org) = ctx.store.organization(membership.organization).await? else {
                    continue;
                };
                match ctx
                    .authorize_on(principal, Action::RemoveMember, &org)
                    .await?
                {
                    Ok(()) => {
                        granted = true;
                        break;
                    }
                    Err(reason) => denial = Some(reason),
                }
            }
            if !granted {
                return Err(denial
                    .unwrap_or(crate::authz::DenyReason::OutsideMandate)
                    .into());
            }
        }
        let person = ctx
            .store
            .identity(identity)
            .await?
            .ok_or(LoginError::InvalidResetLink)?;
        send_reset_link(ctx, &principal.actor(), person.id, &person.email, true).await
    }

    /// Opens a reset link: the next step is the second factor when the person has or needs one,
    /// else the new password.
    pub async fn begin_reset(&self, link_token: &str) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let claim: ResetClaim = ctx
            .auth
            .sealer
            .open(Purpose::Reset, link_token)
            .map_err(|_| LoginError::InvalidResetLink)?;
        if now >= claim.expires_at || ctx.store.counter(&used_key(&claim.id), now).await? > 0 {
            return Err(LoginError::InvalidResetLink);
        }
        let identity = ctx
            .store
            .identity(claim.identity)
            .await?
            .filter(|identity| identity.is_active())
            .ok_or(LoginError::InvalidResetLink)?;
        let state = AttemptState {
            id: random_id(ctx),
            expires_at: (now + ctx.policy.login.attempt_lifetime).min(claim.expires_at),
            source: None,
            email: identity.email.as_str().to_owned(),
            stage: Stage::Password {
                email: identity.email.as_str().to_owned(),
            },
        };
        after_first_factor(
            ctx,
            state,
            &identity,
            vec![AuthMethod::Email],
            Goal::Reset { reset_id: claim.id },
        )
        .await
    }

    /// Sets the new password at the end of a reset. The link is then used up, and every
    /// session of the person is revoked. The person signs in afterwards.
    pub async fn complete_reset(
        &self,
        attempt: &AttemptToken,
        new_password: &Password,
    ) -> Result<(), LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let state = open(ctx, attempt, now)?;
        let Stage::NewPassword { identity, reset_id } = &state.stage else {
            return Err(LoginError::WrongStep);
        };
        let person = ctx
            .store
            .identity(*identity)
            .await?
            .ok_or(LoginError::InvalidCredentials)?;
        let about = credentials::context_of(ctx, &person).await?;
        credentials::screen_new_password(ctx, new_password, &about).await?;
        let hash = ctx.hasher.hash(new_password, ctx.random.as_ref()).await?;
        // Single use: of two concurrent completions exactly one counts.
        let uses = ctx
            .store
            .increment_counter(
                &used_key(reset_id),
                now,
                state.expires_at + ctx.policy.login.reset_link_lifetime,
            )
            .await?;
        if uses != 1 {
            return Err(LoginError::InvalidResetLink);
        }
        let actor = Actor::Identity(*identity);
        let mut changes = ChangeSet::new();
        put_password(ctx, *identity, hash, now, &mut changes).await?;
        revoke_sessions_of(
            ctx,
            &actor,
            *identity,
            RevocationReason::CredentialsChanged,
            now,
            &mut changes,
        )
        .await?;
        changes.event(ctx.event(
            &actor,
            None,
            Some(*identity),
            EventKind::PasswordChanged,
            now,
        ));
        ctx.store.commit(changes).await?;
        throttle::record_success(ctx, &state.email).await?;
        Ok(())
    }

    /// Changes the password of the person holding `session`: needs the current password (a
    /// wrong one counts toward throttling); every other session of the person is revoked.
    /// Returns how many.
    pub async fn change_password(
        &self,
        session: &SecretToken,
        current: &Password,
        new_password: &Password,
    ) -> Result<usize, LoginError> {
        let ctx = self.ctx;
        let (valid, now) =
            check_current_password(ctx, session, current, None, LoginError::InvalidCredentials)
                .await?;
        let identity_id = valid.session.identity;
        let identity = &valid.access.identity;
        let about = credentials::context_of(ctx, identity).await?;
        credentials::screen_new_password(ctx, new_password, &about).await?;
        let hash = ctx.hasher.hash(new_password, ctx.random.as_ref()).await?;
        let actor = Actor::Identity(identity_id);
        let mut changes = ChangeSet::new();
        put_password(ctx, identity_id, hash, now, &mut changes).await?;
        let mut revoked = 0;
        for other in ctx.store.sessions_of_identity(identity_id).await? {
            if other.id != valid.session.id && other.is_live(now) {
                changes.put(Session {
                    revoked: Some((now, RevocationReason::CredentialsChanged)),
                    ..other
                });
                revoked += 1;
            }
        }
        if revoked > 0 {
            changes.event(ctx.event(
                &actor,
                None,
                Some(identity_id),
                EventKind::SessionsRevoked {
                    count: revoked,
                    reason: RevocationReason::CredentialsChanged,
                },
                now,
            ));
        }
        changes.event(ctx.event(
            &actor,
            None,
            Some(identity_id),
            EventKind::PasswordChanged,
            now,
        ));
        ctx.store.commit(changes).await?;
        Ok(revoked)
    }

    /// Steps up a signed-in session with a second factor: the answer is the second-factor step;
    /// its success gives a new session (new token) with both methods and ends the old one.
    /// `source` is the client's address (for throttling). Throttled like the sign-in's second
    /// factor: wrong codes count for the attempt (5 end it) and for the account's and the
    /// source's throttle, and while either is locked no step-up starts
    /// ([`LoginError::Throttled`]), so a held session cannot guess codes faster than a sign-in.
    pub async fn step_up(
        &self,
        session: &SecretToken,
        source: Option<&str>,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let valid = Sessions { ctx }.validate(session).await?;
        let identity = &valid.access.identity;
        let now = ctx.now();
        let email = identity.email.as_str();
        if let Some((scope, retry_after)) = throttle::locked(ctx, email, source, now).await? {
            return Err(LoginError::Throttled { scope, retry_after });
        }
        let (_, options) = crate::login::flow::second_factor_options(ctx, identity).await?;
        if options.is_empty() {
            return Err(LoginError::SecondFactorRequired);
        }
        step_up_attempt(ctx, &valid, source, options, None, now)
    }
}

fn used_key(reset_id: &str) -> String {
    format!("reset:used:{reset_id}")
}

async fn send_reset_link(
    ctx: &Context,
    actor: &Actor,
    identity: IdentityId,
    email: &EmailAddress,
    by_admin: bool,
) -> Result<(), LoginError> {
    let now = ctx.now();
    let claim = ResetClaim {
        id: random_id(ctx),
        identity,
        expires_at: now + ctx.policy.login.reset_link_lifetime,
    };
    let token = ctx
        .auth
        .sealer
        .seal(Purpose::Reset, &claim, ctx.random.as_ref())?;
    let link = ctx.link(&format!("/password/reset?token={token}"));
    let mut changes = ChangeSet::new();
    changes.event(ctx.event(
        actor,
        None,
        Some(identity),
        EventKind::PasswordResetRequested { by_admin },
        now,
    ));
    ctx.store.commit(changes).await?;
    ctx.send_mail(EmailMessage {
        to: email.clone(),
        subject: format!("Reset your {} password", ctx.policy.product_name),
        text: format!(
            "Someone asked to reset the password of your {} account.\n\n\
             To choose a new password, open this link within {} minutes:\n{link}\n\n\
             If it was not you, ignore this message: your password stays as it is.",
            ctx.policy.product_name,
            ctx.policy.login.reset_link_lifetime.num_minutes()
        ),
        html: None,
        purpose: MessagePurpose::Notice,
    })
    .await;
    Ok(())
}

/// Replaces (or creates) the password credential in `changes`.
async fn put_password(
    ctx: &Context,
    identity: IdentityId,
    hash: crate::credentials::PasswordHashString,
    now: DateTime<Utc>,
    changes: &mut ChangeSet,
) -> Result<(), LoginError> {
    match password_credential(ctx, identity).await? {
        Some((credential, _)) => {
            changes.put(Credential {
                kind: CredentialKind::Password { hash },
                updated_at: now,
                ..credential
            });
        }
        None => {
            changes.put(Credential {
                id: CredentialId::generate(ctx.random.as_ref()),
                version: 0,
                identity,
                kind: CredentialKind::Password { hash },
                created_at: now,
                updated_at: now,
            });
        }
    }
    Ok(())
}
