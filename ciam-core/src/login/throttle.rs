//! Throttling of failed sign-ins: per account (the email as typed) and per source (the client
//! address the host passes). After a number of free failures each further failure locks that
//! key for an exponentially growing delay, capped, so there is never a permanent lockout that
//! an attacker could force on a victim. Counters live in the store and are atomic.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::authz::Actor;
use crate::ciam::Context;
use crate::events::EventKind;
use crate::ids::IdentityId;
use crate::store::{ChangeSet, StoreError};

/// Throttling rules. On by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures per account before back-off starts (default 5).
    pub account_free_failures: u32,
    /// Failures per source before back-off starts (default 20).
    pub source_free_failures: u32,
    /// The first lock's length; each further failure doubles it (default 1 second).
    pub base_delay: Duration,
    /// The longest lock (default 15 minutes).
    pub max_delay: Duration,
    /// Failures are counted over this window from the first one (default 24 hours).
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            account_free_failures: 5,
            source_free_failures: 20,
            base_delay: Duration::seconds(1),
            max_delay: Duration::minutes(15),
            window: Duration::hours(24),
        }
    }
}

impl ThrottlePolicy {
    /// The lock after the `failures`-th failure when `free` are free: none, or
    /// `base * 2^(failures - free)`, at most `max_delay`.
    pub fn delay_after(&self, failures: u32, free: u32) -> Option<Duration> {
        if failures < free {
            return None;
        }
        let exponent = (failures - free).min(30);
        let factor = 1_i64 << exponent;
        let delay = self
            .base_delay
            .checked_mul(i32::try_from(factor).unwrap_or(i32::MAX))
            .unwrap_or(self.max_delay);
        Some(delay.min(self.max_delay))
    }
}

/// What is throttled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleScope {
    /// One account (email).
    Account,
    /// One source (client address).
    Source,
}

/// Which step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedStep {
    /// Password (or unknown account: the answer is the same).
    Password,
    /// SMS code.
    SmsCode,
    /// TOTP code.
    Totp,
    /// Recovery code.
    RecoveryCode,
    /// Current password when changing it.
    CurrentPassword,
    /// A sign-in through an identity provider was refused here (disabled account, removed
    /// membership, unknown person without just-in-time creation).
    Federated,
}

pub(crate) fn account_key(email: &str) -> String {
    format!("login:fail:account:{}", email.trim().to_lowercase())
}

fn source_key(source: &str) -> String {
    format!("login:fail:source:{source}")
}

fn lock_key(counter_key: &str) -> String {
    format!("{counter_key}:lock")
}

/// Whether a key is locked now; the hint is the current lock length (an upper bound of the
/// wait).
pub(crate) async fn locked(
    ctx: &Context,
    email: &str,
    source: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<(ThrottleScope, Duration)>, StoreError> {
    let policy = ctx.policy.login.throttle;
    let account = account_key(email);
    if ctx.store.counter(&lock_key(&account), now).await? > 0 {
        let failures = ctx.store.counter(&account, now).await?;
        let wait = policy
            .delay_after(failures, policy.account_free_failures)
            .unwrap_or(policy.base_delay);
        return Ok(Some((ThrottleScope::Account, wait)));
    }
    if let Some(source) = source {
        let key = source_key(source);
        if ctx.store.counter(&lock_key(&key), now).await? > 0 {
            let failures = ctx.store.counter(&key, now).await?;
            let wait = policy
                .delay_after(failures, policy.source_free_failures)
                .unwrap_or(policy.base_delay);
            return Ok(Some((ThrottleScope::Source, wait)));
        }
    }
    Ok(None)
}

/// Counts a failure for the account and the source, locks them when due, and writes the audit
/// events (one for the failure, one per lock).
pub(crate) async fn record_failure(
    ctx: &Context,
    email: &str,
    identity: Option<IdentityId>,
    source: Option<&str>,
    step: FailedStep,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let policy = ctx.policy.login.throttle;
    let mut changes = ChangeSet::new();
    changes.event(ctx.event(
        &Actor::Anonymous,
        None,
        identity,
        EventKind::SignInFailed {
            step,
            source: source.map(str::to_owned),
        },
        now,
    ));
    let mut keys = vec![(
        account_key(email),
        policy.account_free_failures,
        ThrottleScope::Account,
    )];
    if let Some(source) = source {
        keys.push((
            source_key(source),
            policy.source_free_failures,
            ThrottleScope::Source,
        ));
    }
    for (key, free, scope) in keys {
        let failures = ctx
            .store
            .increment_counter(&key, now, now + policy.window)
            .await?;
        if let Some(delay) = policy.delay_after(failures, free) {
            ctx.store
                .increment_counter(&lock_key(&key), now, now + delay)
                .await?;
            changes.event(ctx.event(
                &Actor::Anonymous,
                None,
                identity,
                EventKind::SignInLocked {
                    scope,
                    failures,
                    until: now + delay,
                    source: source.map(str::to_owned),
                },
                now,
            ));
        }
    }
    ctx.store.commit(changes).await
}

/// Clears the account's failures after a successful sign-in (the source's stay: one good
/// account must not reset a source that guesses at others).
pub(crate) async fn record_success(ctx: &Context, email: &str) -> Result<(), StoreError> {
    ctx.store.reset_counter(&account_key(email)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped() {
        let policy = ThrottlePolicy::default();
        assert_eq!(policy.delay_after(4, 5), None);
        assert_eq!(policy.delay_after(5, 5), Some(Duration::seconds(1)));
        assert_eq!(policy.delay_after(6, 5), Some(Duration::seconds(2)));
        assert_eq!(policy.delay_after(10, 5), Some(Duration::seconds(32)));
        assert_eq!(policy.delay_after(20, 5), Some(Duration::minutes(15)));
        assert_eq!(policy.delay_after(u32::MAX, 5), Some(Duration::minutes(15)));
    }
}
