//! The outbox dispatcher: delivers the store's outbox to a [`CrmConnector`], at least once,
//! in order per person (or organization), with back-off, dead letters and a graceful stop.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ciam_core::events::DomainEvent;
use ciam_core::ids::EventId;
use ciam_core::store::{OutboxEntry, ReleaseOutcome, Store, StoreError};
use ciam_core::{Ciam, Clock, RandomSource};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::connector::{CrmConnector, DeliveryResult};
use crate::events::EventTranslator;

/// Errors of the dispatcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The configuration cannot work.
    #[error("invalid dispatcher configuration: {0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the dispatcher works. `DispatcherConfig::default()` suits production.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// This dispatcher's name in the outbox leases (default: `ciam-crm-` and random hex, so
    /// that every process is a consumer of its own).
    pub consumer: Option<String>,
    /// Entries claimed at once (default 100). The store gives at most one entry per ordering
    /// key per claim, so a batch is delivered in parallel.
    pub batch_size: usize,
    /// Deliveries running at once within a batch (default 16).
    pub concurrency: usize,
    /// How long a claim is ours (default 2 minutes). Must exceed the time a batch can take:
    /// `delivery_timeout x ceil(batch_size / concurrency)`, checked by [`Dispatcher::new`].
    pub lease: Duration,
    /// Longest one delivery may take before it counts as failed (default 15 s).
    pub delivery_timeout: std::time::Duration,
    /// Attempts before an entry becomes a dead letter (default 15).
    pub max_attempts: u32,
    /// First retry delay (default 1 s); doubled on every further attempt.
    pub backoff_base: Duration,
    /// Longest retry delay (default 1 hour).
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured (default 6 hours).
    pub max_retry_after: Duration,
    /// How long to wait when there is nothing to deliver (default 1 s).
    pub idle_poll: std::time::Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            consumer: None,
            batch_size: 100,
            concurrency: 16,
            lease: Duration::minutes(2),
            delivery_timeout: std::time::Duration::from_secs(15),
            max_attempts: 15,
            backoff_base: Duration::seconds(1),
            backoff_max: Duration::hours(1),
            max_retry_after: Duration::hours(6),
            idle_poll: std::time::Duration::from_secs(1),
        }
    }
}

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries claimed.
    pub claimed: usize,
    /// Delivered and acknowledged.
    pub delivered: usize,
    /// Acknowledged without delivery (not for the CRM, or not wanted by the connector).
    pub skipped: usize,
    /// Released for a later attempt.
    pub retried: usize,
    /// Became dead letters.
    pub dead_lettered: usize,
}

impl BatchReport {
    fn add(&mut self, other: &BatchReport) {
        self.claimed += other.claimed;
        self.delivered += other.delivered;
        self.skipped += other.skipped;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
    }
}

/// What [`Dispatcher::run_until`] did in total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Sums over all batches.
    pub totals: BatchReport,
    /// Batches run.
    pub batches: usize,
    /// Store failures survived (each followed by a pause).
    pub store_errors: usize,
}

/// A dead letter as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// The event id (redeliver with it).
    pub event_id: Uuid,
    /// The event type (`lead_registered`, ...).
    pub event_type: String,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
}

impl DeadLetter {
    fn from_entry(entry: &OutboxEntry) -> Self {
        Self {
            event_id: entry.event.id.as_uuid(),
            event_type: entry.event.type_name(),
            occurred_at: entry.event.at,
            attempts: entry.attempts,
            last_error: entry.last_error.clone(),
        }
    }
}

enum Fate {
    Ack,
    Skip,
    Release {
        error: String,
        retry_at: DateTime<Utc>,
        max_attempts: u32,
    },
}

/// Delivers the outbox to a connector. Cheap to clone; several dispatchers (in one process
/// or many, on one database) can run at once: the store's leases make sure that no entry is
/// held by two of them at the same time.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    connector: Arc<dyn CrmConnector>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    translator: EventTranslator,
    consumer: String,
    config: DispatcherConfig,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("consumer", &self.consumer)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `store`, with time and randomness injected.
    pub fn new(
        store: Arc<dyn Store>,
        connector: Arc<dyn CrmConnector>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
        config: DispatcherConfig,
    ) -> Result<Self, DispatchError> {
        if config.batch_size == 0 || config.concurrency == 0 || config.max_attempts == 0 {
            return Err(DispatchError::Config(
                "batch_size, concurrency and max_attempts must be above zero".to_owned(),
            ));
        }
        if config.backoff_base <= Duration::zero() || config.backoff_max < config.backoff_base {
            return Err(DispatchError::Config(
                "backoff_base must be positive and at most backoff_max".to_owned(),
            ));
        }
        let rounds = config.batch_size.div_ceil(config.concurrency);
        let worst = Duration::from_std(config.delivery_timeout)
            .ok()
            .and_then(|timeout| timeout.checked_mul(i32::try_from(rounds).ok()?))
            .ok_or_else(|| DispatchError::Config("delivery_timeout is too long".to_owned()))?;
        if config.lease <= worst {
            return Err(DispatchError::Config(format!(
                "lease ({}s) must exceed delivery_timeout x ceil(batch_size / concurrency) ({}s)",
                config.lease.num_seconds(),
                worst.num_seconds()
            )));
        }
        let consumer = match &config.consumer {
            Some(name) if !name.trim().is_empty() => name.clone(),
            _ => {
                let mut bytes = [0u8; 8];
                random.fill(&mut bytes);
                let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                format!("ciam-crm-{suffix}")
            }
        };
        Ok(Self {
            translator: EventTranslator::new(store.clone()),
            store,
            connector,
            clock,
            random,
            consumer,
            config,
        })
    }

    /// A dispatcher using the façade's store, clock and randomness.
    pub fn from_ciam(
        ciam: &Ciam,
        connector: Arc<dyn CrmConnector>,
        config: DispatcherConfig,
    ) -> Result<Self, DispatchError> {
        Self::new(
            ciam.store().clone(),
            connector,
            ciam.clock().clone(),
            ciam.random().clone(),
            config,
        )
    }

    /// This dispatcher's consumer name in the outbox leases.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Claims one batch and delivers it: every claimed entry is acknowledged or released
    /// before this returns (unless the future is dropped, in which case the lease runs out
    /// and another dispatcher takes the entries over: nothing is lost).
    pub async fn run_once(&self) -> Result<BatchReport, DispatchError> {
        let now = self.clock.now();
        let entries = self
            .store
            .claim_outbox(
                &self.consumer,
                self.config.batch_size,
                now,
                now + self.config.lease,
            )
            .await?;
        let mut report = BatchReport {
            claimed: entries.len(),
            ..BatchReport::default()
        };
        if entries.is_empty() {
            return Ok(report);
        }
        // The store gives one entry per ordering key; group anyway so that a store giving
        // several never breaks the order.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<OutboxEntry>> = HashMap::new();
        for entry in entries {
            let key = entry.event.ordering_key();
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(entry);
        }
        let groups: Vec<Vec<OutboxEntry>> = order
            .into_iter()
            .filter_map(|key| groups.remove(&key))
            .collect();
        let results: Vec<Result<BatchReport, StoreError>> = futures::stream::iter(groups)
            .map(|group| self.deliver_group(group))
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(group) => report.add(&BatchReport {
                    claimed: 0,
                    ..group
                }),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            // Entries whose ack or release failed stay leased until the lease ends; then they
            // are delivered again (same id): at least once.
            Some(error) => Err(error.into()),
            None => Ok(report),
        }
    }

    async fn deliver_group(&self, group: Vec<OutboxEntry>) -> Result<BatchReport, StoreError> {
        let mut report = BatchReport::default();
        let mut failed: Option<(String, DateTime<Utc>)> = None;
        for entry in group {
            let fate = match &failed {
                // An earlier event of this key failed: this one waits behind it.
                Some((error, retry_at)) => Fate::Release {
                    error: format!("waiting behind an earlier event: {error}"),
                    retry_at: *retry_at,
                    max_attempts: self.config.max_attempts.saturating_add(entry.attempts),
                },
                None => self.attempt(&entry).await,
            };
            match fate {
                Fate::Ack | Fate::Skip => {
                    self.store
                        .ack_outbox(&self.consumer, &[entry.event.id])
                        .await?;
                    if matches!(fate, Fate::Ack) {
                        report.delivered += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
                Fate::Release {
                    error,
                    retry_at,
                    max_attempts,
                } => {
                    let outcome = self
                        .store
                        .release_outbox(
                            &self.consumer,
                            entry.event.id,
                            &error,
                            retry_at,
                            max_attempts,
                        )
                        .await?;
                    match outcome {
                        ReleaseOutcome::WillRetry => report.retried += 1,
                        ReleaseOutcome::DeadLettered => {
                            tracing::warn!(
                                event = %entry.event.id,
                                attempts = entry.attempts + 1,
                                %error,
                                "crm event dead-lettered"
                            );
                            report.dead_lettered += 1;
                        }
                    }
                    if failed.is_none() {
                        failed = Some((error, retry_at));
                    }
                }
            }
        }
        Ok(report)
    }

    async fn attempt(&self, entry: &OutboxEntry) -> Fate {
        let event = match self.translator.translate(&entry.event).await {
            Ok(Some(event)) => event,
            Ok(None) => return Fate::Skip,
            Err(error) => {
                return self.retry_fate(entry, format!("cannot read the store: {error}"), None);
            }
        };
        if !self.connector.wants(&event) {
            return Fate::Skip;
        }
        let result = match tokio::time::timeout(
            self.config.delivery_timeout,
            self.connector.deliver(&event),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => DeliveryResult::retry("delivery timed out"),
        };
        match result {
            DeliveryResult::Delivered => Fate::Ack,
            DeliveryResult::Retry { reason, after } => self.retry_fate(entry, reason, after),
            DeliveryResult::Permanent { reason } => Fate::Release {
                error: reason,
                retry_at: self.clock.now(),
                // This attempt is the last one.
                max_attempts: entry.attempts.saturating_add(1),
            },
        }
    }

    fn retry_fate(
        &self,
        entry: &OutboxEntry,
        reason: String,
        after: Option<std::time::Duration>,
    ) -> Fate {
        let delay = match after.and_then(|after| Duration::from_std(after).ok()) {
            Some(after) => after.clamp(Duration::zero(), self.config.max_retry_after),
            None => self.backoff(entry.attempts.saturating_add(1)),
        };
        Fate::Release {
            error: reason,
            retry_at: self.clock.now() + delay,
            max_attempts: self.config.max_attempts,
        }
    }

    /// The delay before the next try after `attempt` failed (1-based): exponential from
    /// `backoff_base`, capped at `backoff_max`, with "equal jitter" (uniform in the upper
    /// half) so that many failed events do not come back at the same instant.
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(&self.config, attempt, self.random.as_ref())
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, DispatchError> {
        Ok(self
            .store
            .dead_letters(limit)
            .await?
            .iter()
            .map(DeadLetter::from_entry)
            .collect())
    }

    /// The dead-lettered domain events themselves, oldest first.
    pub async fn dead_letter_events(
        &self,
        limit: usize,
    ) -> Result<Vec<DomainEvent>, DispatchError> {
        Ok(self
            .store
            .dead_letters(limit)
            .await?
            .into_iter()
            .map(|entry| entry.event)
            .collect())
    }

    /// Puts a dead letter back for delivery now, with its attempts reset.
    pub async fn redeliver(&self, event: Uuid) -> Result<(), DispatchError> {
        Ok(self
            .store
            .redeliver(EventId::from_uuid(event), self.clock.now())
            .await?)
    }

    /// Puts every dead letter back (at most `limit`); returns how many.
    pub async fn redeliver_all(&self, limit: usize) -> Result<usize, DispatchError> {
        let letters = self.store.dead_letters(limit).await?;
        let now = self.clock.now();
        for letter in &letters {
            self.store.redeliver(letter.event.id, now).await?;
        }
        Ok(letters.len())
    }

    /// Entries waiting for delivery (dead letters excluded).
    pub async fn depth(&self) -> Result<u64, DispatchError> {
        Ok(self.store.outbox_depth().await?)
    }

    /// Delivers until `shutdown` completes. A batch in flight when it does is finished
    /// (every claimed entry acknowledged or released) before this returns; nothing is lost.
    /// Store failures are logged and followed by a pause, never fatal.
    pub async fn run_until<F>(&self, shutdown: F) -> RunReport
    where
        F: Future<Output = ()> + Send,
    {
        let mut report = RunReport::default();
        let shutdown = shutdown;
        tokio::pin!(shutdown);
        let mut stopping = false;
        while !stopping {
            let batch = self.run_once();
            tokio::pin!(batch);
            let result = tokio::select! {
                biased;
                result = &mut batch => result,
                () = &mut shutdown => {
                    stopping = true;
                    batch.await
                }
            };
            let idle = match result {
                Ok(batch) => {
                    report.batches += 1;
                    report.totals.add(&batch);
                    batch.claimed == 0
                }
                Err(error) => {
                    tracing::warn!(%error, consumer = %self.consumer, "outbox dispatch failed");
                    report.store_errors += 1;
                    true
                }
            };
            if idle && !stopping {
                tokio::select! {
                    biased;
                    () = &mut shutdown => stopping = true,
                    () = tokio::time::sleep(self.config.idle_poll) => {}
                }
            }
        }
        report
    }
}

/// The back-off delay after `attempt` (1-based) failed; see [`Dispatcher::backoff`].
pub fn backoff_delay(
    config: &DispatcherConfig,
    attempt: u32,
    random: &dyn RandomSource,
) -> Duration {
    let base = config.backoff_base.num_milliseconds().max(1);
    let max = config.backoff_max.num_milliseconds().max(base);
    let exponent = attempt.saturating_sub(1).min(40);
    let full = base.saturating_mul(1_i64 << exponent).min(max);
    let half = full / 2;
    let span = u32::try_from(full - half).unwrap_or(u32::MAX);
    let jitter = i64::from(random.below(span.saturating_add(1)));
    Duration::milliseconds(half + jitter)
}
