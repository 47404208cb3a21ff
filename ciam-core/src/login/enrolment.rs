//! Setting up a second factor inside a sign-in (ASVS 6.3.3): when a second factor is required
//! (the deployment's [`super::MfaRequirement`], the organization's policy) and the person has
//! none, the attempt stops at [`LoginStep::EnrolSecondFactor`] after the first factor. They set
//! up an authenticator app there (its first code completes the attempt), or give a mobile
//! phone: a code goes to it by SMS, and that code both verifies the phone (it becomes their
//! verified phone, the SMS second factor) and completes the attempt. Either way the attempt
//! completes with both methods, so the first session they get already has two factors. A
//! person with a verified phone never gets here: SMS is offered as their second factor.
//!
//! The phone's code is bound to the attempt, to the send and to the phone (a MAC kept in the
//! sealed attempt); sends are limited and spaced as at the SMS step, and wrong codes count
//! toward the attempt's tries and the account's throttle like any wrong second-factor code.
//! Nothing is stored until the code comes back.
//!
//! The app's secret, likewise, travels sealed inside the attempt's token (a new token when the
//! app's page opens) and is stored only when the app's first code comes back: a person who
//! opens the app's page and then sets up their phone leaves no secret behind.
//!
//! Whoever holds the first factor can set the app up, as anyone signing in for the first time
//! would: this step makes sure no session exists without a second factor, not that the first
//! factor was not stolen before.

use subtle::ConstantTimeEq;

use crate::authz::Actor;
use crate::contact::PhoneNumber;
use crate::delivery::{MessagePurpose, SmsMessage};
use crate::events::{ContactField, EventKind};
use crate::login::attempt::{AttemptState, Goal, PhoneChallenge, SmsChallenge, Stage};
use crate::login::flow::{
    code_mac, complete, ensure_not_ended, open, seal, second_factor_failed, sms_send_slot,
};
use crate::login::throttle::FailedStep;
use crate::login::totp::{PendingSecret, remove_pending_totps};
use crate::login::{AttemptToken, Login, LoginError, LoginStep, RecoveryCode, TotpEnrollment};
use crate::secrets::OneTimeCode;
use crate::sessions::AuthMethod;
use crate::store::ChangeSet;

impl Login<'_> {
    fn enrolling(
        &self,
        attempt: &AttemptToken,
    ) -> Result<(AttemptState, crate::ids::IdentityId, Vec<AuthMethod>, Goal), LoginError> {
        let state = open(self.ctx, attempt, self.ctx.now())?;
        let Some((identity, methods, goal, _)) = state.stage.enrolment() else {
            return Err(LoginError::WrongStep);
        };
        let (methods, goal) = (methods.to_vec(), goal.clone());
        Ok((state, identity, methods, goal))
    }

    /// Starts setting up an authenticator app in an attempt at
    /// [`LoginStep::EnrolSecondFactor`]: a new secret (replacing one started earlier in the
    /// attempt), and the attempt's new token, which carries the secret sealed. Nothing is
    /// stored until the app's first code comes back ([`Login::enrolment_confirm`] with that
    /// token), so a person who then sets up their phone instead leaves no secret behind.
    pub async fn enrolment_totp(
        &self,
        attempt: &AttemptToken,
    ) -> Result<(TotpEnrollment, AttemptToken), LoginError> {
        let ctx = self.ctx;
        let (mut state, identity, methods, goal) = self.enrolling(attempt)?;
        ensure_not_ended(ctx, &state, ctx.now()).await?;
        let (enrollment, sealed_secret) = self.new_totp_secret(identity).await?;
        let phone = state.stage.enrolment_phone_mut().and_then(Option::take);
        state.stage = Stage::EnrolApp {
            identity,
            methods,
            goal,
            phone,
            totp: sealed_secret,
        };
        Ok((enrollment, seal(ctx, &state)?))
    }

    /// Confirms the app set up by [`Login::enrolment_totp`] (its token) with its first code:
    /// the app becomes the person's second factor, and any unconfirmed secret still stored
    /// from the account page is removed. Returns the recovery codes (show them once) and the
    /// next step, signed in with the first factor and the app (or, in a reset, the new
    /// password). Before the app's page was opened it is
    /// [`LoginError::NoPendingEnrollment`].
    pub async fn enrolment_confirm(
        &self,
        attempt: &AttemptToken,
        code: &str,
    ) -> Result<(Vec<RecoveryCode>, LoginStep), LoginError> {
        let (state, identity, mut methods, goal) = self.enrolling(attempt)?;
        ensure_not_ended(self.ctx, &state, self.ctx.now()).await?;
        let Stage::EnrolApp {
            totp: sealed_secret,
            ..
        } = &state.stage
        else {
            return Err(LoginError::NoPendingEnrollment);
        };
        let codes = self
            .finish_totp_enrollment(
                &Actor::Identity(identity),
                identity,
                code,
                PendingSecret::Sealed(sealed_secret),
            )
            .await?;
        if !methods.contains(&AuthMethod::Otp) {
            methods.push(AuthMethod::Otp);
        }
        let step = complete(self.ctx, &state, identity, methods, goal).await?;
        Ok((codes, step))
    }

    /// Sends a code by SMS to `phone` (E.164, such as `+358401234567`) to set it up as the
    /// second factor, in an attempt at [`LoginStep::EnrolSecondFactor`] (first send, resend,
    /// or another number: only the newest code counts). Nothing is stored yet: the number
    /// becomes the person's verified phone when the code comes back
    /// ([`Login::enrolment_confirm_phone`]). A number that is not E.164 is
    /// [`LoginError::Invalid`], and nothing is sent.
    pub async fn enrolment_phone(
        &self,
        attempt: &AttemptToken,
        phone: &str,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let (mut state, _, _, _) = self.enrolling(attempt)?;
        ensure_not_ended(ctx, &state, now).await?;
        let phone = PhoneNumber::parse(phone)?;
        let (send, resend_after) = sms_send_slot(ctx, &state, now).await?;
        let policy = &ctx.policy.login;
        let code = OneTimeCode::generate(ctx.random.as_ref());
        let expires_at = (now + policy.sms_code_lifetime).min(state.expires_at);
        let mac = code_mac(ctx, &state.id, send, &code, Some(&phone));
        if let Some(pending) = state.stage.enrolment_phone_mut() {
            *pending = Some(PhoneChallenge {
                phone: phone.clone(),
                sms: SmsChallenge {
                    mac,
                    send,
                    expires_at,
                },
            });
        }
        ctx.send_sms(SmsMessage {
            to: phone,
            text: crate::messages::sms_code(
                &ctx.policy.product_name,
                code.expose(),
                policy.sms_code_lifetime.num_minutes(),
            ),
            purpose: MessagePurpose::VerificationCode,
        })
        .await;
        Ok(LoginStep::CodeSent {
            attempt: seal(ctx, &state)?,
            expires_at,
            resend_after,
        })
    }

    /// Checks the code sent by [`Login::enrolment_phone`]: the phone becomes the person's
    /// verified phone (audited, `ContactDetailsChanged` and `SecondFactorEnrolled`) and the
    /// attempt completes with the first factor and SMS: signed in (or, in a reset, the new
    /// password is next). A wrong code counts like a wrong SMS code at sign-in.
    pub async fn enrolment_confirm_phone(
        &self,
        attempt: &AttemptToken,
        code: &OneTimeCode,
    ) -> Result<LoginStep, LoginError> {
        let ctx = self.ctx;
        let now = ctx.now();
        let (state, identity, mut methods, goal) = self.enrolling(attempt)?;
        ensure_not_ended(ctx, &state, now).await?;
        let Some((_, _, _, Some(pending))) = state.stage.enrolment() else {
            return Err(LoginError::WrongStep);
        };
        if now >= pending.sms.expires_at {
            return Err(LoginError::CodeExpired);
        }
        // A newer code was sent: this one no longer counts.
        if ctx.store.counter(&state.key("sms-sent"), now).await? != pending.sms.send {
            return Err(LoginError::CodeExpired);
        }
        let expected = code_mac(ctx, &state.id, pending.sms.send, code, Some(&pending.phone));
        if !bool::from(expected.as_bytes().ct_eq(pending.sms.mac.as_bytes())) {
            return Err(
                second_factor_failed(ctx, &state, identity, FailedStep::SmsCode, now).await,
            );
        }
        let mut person = ctx
            .store
            .identity(identity)
            .await?
            .ok_or(LoginError::AttemptExpired)?;
        let before = person.phone.as_ref().map(ToString::to_string);
        person.phone = Some(pending.phone.clone());
        person.phone_verified = true;
        person.pending_phone = None;
        person.updated_at = now;
        let actor = Actor::Identity(identity);
        let mut changes = ChangeSet::new();
        changes.event(ctx.event(
            &actor,
            None,
            Some(identity),
            EventKind::ContactDetailsChanged {
                field: ContactField::Phone,
                before,
                after: Some(pending.phone.to_string()),
            },
            now,
        ));
        changes.event(ctx.event(
            &actor,
            None,
            Some(identity),
            EventKind::SecondFactorEnrolled {
                method: AuthMethod::Sms,
                recovery_codes: 0,
            },
            now,
        ));
        changes.put(person);
        // An app's secret started on the account page and never confirmed goes too.
        let credentials = ctx.store.credentials_of_identity(identity).await?;
        remove_pending_totps(&credentials, &mut changes);
        ctx.store.commit(changes).await?;
        if !methods.contains(&AuthMethod::Sms) {
            methods.push(AuthMethod::Sms);
        }
        complete(ctx, &state, identity, methods, goal).await
    }
}
