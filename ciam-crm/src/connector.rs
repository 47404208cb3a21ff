//! The outbound port: a [`CrmConnector`] receives the events the CRM cares about.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::events::CrmEvent;

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The CRM has it.
    Delivered,
    /// Not now: try again later, no sooner than `after` when the CRM said so (`Retry-After`).
    Retry {
        /// What went wrong (kept on the outbox entry).
        reason: String,
        /// The delay the CRM asked for, if any.
        after: Option<Duration>,
    },
    /// It will never work as it is (the endpoint is gone, the payload was refused): the event
    /// becomes a dead letter at once, to be redelivered by hand after the cause is fixed.
    Permanent {
        /// What went wrong.
        reason: String,
    },
}

impl DeliveryResult {
    /// A retry without a requested delay.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            reason: reason.into(),
            after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.into(),
        }
    }
}

/// Receives the domain events the CRM cares about, one at a time, in order per person (or
/// organization). Delivery is at least once: the same event (same [`CrmEvent::id`]) may
/// arrive again after a failure or a crash, so the receiving side de-duplicates by id.
///
/// Implementations must bound each delivery in time (the dispatcher also does, see
/// [`crate::DispatcherConfig::delivery_timeout`]).
#[async_trait]
pub trait CrmConnector: Send + Sync {
    /// Whether this connector wants the event at all (default: every CRM event). Events it
    /// does not want are acknowledged without delivery.
    fn wants(&self, event: &CrmEvent) -> bool {
        let _ = event;
        true
    }

    /// Delivers one event.
    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult;
}

#[async_trait]
impl<T: CrmConnector + ?Sized> CrmConnector for std::sync::Arc<T> {
    fn wants(&self, event: &CrmEvent) -> bool {
        (**self).wants(event)
    }

    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult {
        (**self).deliver(event).await
    }
}

/// A connector that keeps what it receives in memory: for tests and for trying things out.
#[derive(Debug, Default)]
pub struct RecordingConnector {
    events: Mutex<Vec<CrmEvent>>,
}

impl RecordingConnector {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything received so far, in order of arrival.
    pub fn events(&self) -> Vec<CrmEvent> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

#[async_trait]
impl CrmConnector for RecordingConnector {
    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(event.clone());
        DeliveryResult::Delivered
    }
}
