//! Setting up a second factor inside a sign-in (ASVS 6.3.3): when a second factor is required
//! (the deployment's [`super::MfaRequirement`], the organization's policy) and the person has
//! none, the attempt stops at [`LoginStep::EnrolSecondFactor`] after the first factor. They set
//! up an authenticator app there; its first code completes the attempt with both methods, so
//! the first session they get already has two factors. A person with a verified phone never
//! gets here: SMS is offered as their second factor.
//!
//! Whoever holds the first factor can set the app up, as anyone signing in for the first time
//! would: this step makes sure no session exists without a second factor, not that the first
//! factor was not stolen before.

use crate::authz::Actor;
use crate::login::attempt::{AttemptState, Goal, Stage};
use crate::login::flow::{complete, open};
use crate::login::{AttemptToken, Login, LoginError, LoginStep, RecoveryCode, TotpEnrollment};
use crate::sessions::AuthMethod;

impl Login<'_> {
    fn enrolling(
        &self,
        attempt: &AttemptToken,
    ) -> Result<(AttemptState, crate::ids::IdentityId, Vec<AuthMethod>, Goal), LoginError> {
        let state = open(self.ctx, attempt, self.ctx.now())?;
        let Stage::EnrolSecondFactor {
            identity,
            methods,
            goal,
        } = &state.stage
        else {
            return Err(LoginError::WrongStep);
        };
        let (identity, methods, goal) = (*identity, methods.clone(), goal.clone());
        Ok((state, identity, methods, goal))
    }

    /// Starts setting up an authenticator app in an attempt at
    /// [`LoginStep::EnrolSecondFactor`]: a new secret (replacing one started earlier).
    pub async fn enrolment_totp(
        &self,
        attempt: &AttemptToken,
    ) -> Result<TotpEnrollment, LoginError> {
        let (_, identity, _, _) = self.enrolling(attempt)?;
        self.start_totp_enrollment(identity).await
    }

    /// Confirms the app with its first code: the recovery codes (show them once) and the next
    /// step, signed in with the first factor and the app (or, in a reset, the new password).
    pub async fn enrolment_confirm(
        &self,
        attempt: &AttemptToken,
        code: &str,
    ) -> Result<(Vec<RecoveryCode>, LoginStep), LoginError> {
        let (state, identity, mut methods, goal) = self.enrolling(attempt)?;
        let codes = self
            .finish_totp_enrollment(&Actor::Identity(identity), identity, code)
            .await?;
        if !methods.contains(&AuthMethod::Otp) {
            methods.push(AuthMethod::Otp);
        }
        let step = complete(self.ctx, &state, identity, methods, goal).await?;
        Ok((codes, step))
    }
}
