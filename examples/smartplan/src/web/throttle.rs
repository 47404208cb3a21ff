//! Throttling of costly endpoints (SMS sending, registration, invitations through the API),
//! counted in the store so that every node of a cluster shares the count.
//!
//! ```ignore
//! state.throttle.check(&state, Rule::Registration, &client.to_string()).await?;
//! ```

use chrono::{DateTime, Duration, Utc};

use crate::state::AppState;
use crate::web::WebError;

/// A throttled action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// Organization registrations and join requests, per client address.
    Registration,
    /// SMS sending (codes, phone verification), per person or client address.
    Sms,
    /// Invitations through the REST API, per API key.
    ApiInvitations,
    /// Invitations from the pages, per signed-in person.
    PageInvitations,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Sms => "sms",
            Self::ApiInvitations => "api_invitations",
            Self::PageInvitations => "page_invitations",
        }
    }
}

/// How many times in which window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Allowed actions per window.
    pub max: u32,
    /// The window.
    pub window: Duration,
}

/// The limits of each [`Rule`].
#[derive(Clone, Debug)]
pub struct Throttle {
    /// Registrations per client address.
    pub registration: Limit,
    /// SMS per subject.
    pub sms: Limit,
    /// API invitation requests per key.
    pub api_invitations: Limit,
    /// Page invitation requests per person.
    pub page_invitations: Limit,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            registration: Limit {
                max: 10,
                window: Duration::hours(1),
            },
            sms: Limit {
                max: 10,
                window: Duration::hours(1),
            },
            api_invitations: Limit {
                max: 600,
                window: Duration::minutes(1),
            },
            page_invitations: Limit {
                max: 60,
                window: Duration::minutes(10),
            },
        }
    }
}

impl Throttle {
    /// The limit of `rule`.
    pub fn limit(&self, rule: Rule) -> Limit {
        match rule {
            Rule::Registration => self.registration,
            Rule::Sms => self.sms,
            Rule::ApiInvitations => self.api_invitations,
            Rule::PageInvitations => self.page_invitations,
        }
    }

    /// Counts one action of `subject` (a client address, an identity id, an API key name)
    /// under `rule`; `Err(429)` with `Retry-After` once the limit of the window is passed.
    pub async fn check(&self, state: &AppState, rule: Rule, subject: &str) -> Result<(), WebError> {
        let limit = self.limit(rule);
        let now = state.clock.now();
        let (start, end) = window(now, limit.window);
        let key = format!("throttle:{}:{subject}:{}", rule.name(), start.timestamp());
        let count = state.store.increment_counter(&key, now, end).await?;
        if count > limit.max {
            let retry = (end - now).num_seconds().max(1);
            state.metrics.throttled(rule.name());
            return Err(WebError::too_many_requests(
                u64::try_from(retry).unwrap_or(1),
            ));
        }
        Ok(())
    }
}

/// The fixed window containing `now`.
fn window(now: DateTime<Utc>, length: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    let seconds = length.num_seconds().max(1);
    let start = now.timestamp() - now.timestamp().rem_euclid(seconds);
    let start = DateTime::from_timestamp(start, 0).unwrap_or(now);
    (start, start + Duration::seconds(seconds))
}
