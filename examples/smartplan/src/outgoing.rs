//! Outgoing mail and SMS that survive a transport outage: [`RetryQueue`] wraps the real
//! transport (SMTP, the SMS gateway). A message is handed to the transport at once; when the
//! transport is unavailable (connection refused, timeout, a 4xx SMTP reply, a 5xx from the
//! gateway) the message is kept in memory and retried with back-off until it goes out or its
//! lifetime ends (mail: a day; SMS: the sign-in code's five minutes), so the person gets it as
//! soon as the transport is back. A recipient refused for good is not retried.
//!
//! Pages ask [`RetryQueue::delayed`] to tell the person that their message is on its way but
//! late. The queue lives in the server process: a message still queued when the process stops
//! is lost (the person asks for a new code or invitation), which the operations guide says.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ciam_core::clock::Clock;
use ciam_core::delivery::{DeliveryError, EmailMessage, Mailer, SmsMessage, SmsSender};

/// Messages kept at most per queue; beyond that a failed message is reported undelivered.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The first retry comes after this long; each further one after twice the previous wait, up
/// to [`MAX_BACKOFF_SECONDS`].
pub const FIRST_BACKOFF_SECONDS: i64 = 5;
/// The longest wait between two attempts.
pub const MAX_BACKOFF_SECONDS: i64 = 300;

/// A transport that can be retried: a mailer or an SMS sender.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The message it carries.
    type Message: Clone + Send + Sync + 'static;
    /// Hands one message over.
    async fn deliver(&self, message: Self::Message) -> Result<(), DeliveryError>;
}

/// Mail through a [`Mailer`].
pub struct MailTransport(pub Arc<dyn Mailer>);

#[async_trait]
impl Transport for MailTransport {
    type Message = EmailMessage;
    async fn deliver(&self, message: EmailMessage) -> Result<(), DeliveryError> {
        self.0.send(message).await
    }
}

/// SMS through an [`SmsSender`].
pub struct SmsTransport(pub Arc<dyn SmsSender>);

#[async_trait]
impl Transport for SmsTransport {
    type Message = SmsMessage;
    async fn deliver(&self, message: SmsMessage) -> Result<(), DeliveryError> {
        self.0.send(message).await
    }
}

struct Pending<M> {
    message: M,
    expires_at: DateTime<Utc>,
    attempts: u32,
    next_attempt_at: DateTime<Utc>,
}

/// What one [`RetryQueue::retry_due`] pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retried {
    /// Messages that went out.
    pub sent: usize,
    /// Messages still waiting (the transport is still down).
    pub waiting: usize,
    /// Messages dropped because their lifetime ended.
    pub expired: usize,
    /// Messages whose recipient was refused for good.
    pub rejected: usize,
}

/// A transport with a retry queue in front (see the module documentation).
pub struct RetryQueue<T: Transport> {
    transport: T,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    capacity: usize,
    pending: Mutex<VecDeque<Pending<T::Message>>>,
}

impl<T: Transport> std::fmt::Debug for RetryQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryQueue")
            .field("pending", &self.pending())
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> RetryQueue<T> {
    /// A queue in front of `transport`; a message is retried until `lifetime` after it was
    /// first handed over.
    pub fn new(transport: T, clock: Arc<dyn Clock>, lifetime: Duration) -> Self {
        Self {
            transport,
            clock,
            lifetime,
            capacity: DEFAULT_CAPACITY,
            pending: Mutex::new(VecDeque::new()),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending<T::Message>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Messages waiting for the transport.
    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Whether messages are waiting: the transport is down, and new messages will be late.
    pub fn delayed(&self) -> bool {
        self.pending() > 0
    }

    /// Hands `message` to the transport; when it is unavailable, keeps the message for retries
    /// and answers `Ok` (it will go out when the transport is back). A refused recipient, or a
    /// full queue, is an error.
    pub async fn submit(&self, message: T::Message) -> Result<(), DeliveryError> {
        match self.transport.deliver(message.clone()).await {
            Ok(()) => Ok(()),
            Err(DeliveryError::Unavailable(reason)) => {
                let now = self.clock.now();
                let mut queue = self.queue();
                if queue.len() >= self.capacity {
                    return Err(DeliveryError::Unavailable(format!(
                        "{reason}; the retry queue is full"
                    )));
                }
                tracing::warn!(%reason, waiting = queue.len() + 1, "transport down: message queued for retry");
                queue.push_back(Pending {
                    message,
                    expires_at: now + self.lifetime,
                    attempts: 1,
                    next_attempt_at: now + backoff(1),
                });
                Ok(())
            }
            Err(other) => Err(other),
        }
    }

    /// Tries every message whose next attempt is due; keeps the ones that fail again (with a
    /// longer wait) and drops the expired and the refused.
    pub async fn retry_due(&self) -> Retried {
        let now = self.clock.now();
        let due: Vec<Pending<T::Message>> = {
            let mut queue = self.queue();
            let (due, later): (VecDeque<_>, VecDeque<_>) = queue
                .drain(..)
                .partition(|pending| pending.next_attempt_at <= now);
            *queue = later;
            due.into_iter().collect()
        };
        let mut report = Retried::default();
        let mut again = Vec::new();
        for mut pending in due {
            if pending.expires_at <= now {
                report.expired += 1;
                continue;
            }
            match self.transport.deliver(pending.message.clone()).await {
                Ok(()) => report.sent += 1,
                Err(DeliveryError::Unavailable(_)) => {
                    pending.attempts = pending.attempts.saturating_add(1);
                    pending.next_attempt_at = now + backoff(pending.attempts);
                    again.push(pending);
                }
                Err(_) => report.rejected += 1,
            }
        }
        let mut queue = self.queue();
        queue.extend(again);
        report.waiting = queue.len();
        if report != Retried::default() {
            tracing::info!(?report, "retried queued messages");
        }
        report
    }
}

/// The wait before attempt number `attempts + 1`.
fn backoff(attempts: u32) -> Duration {
    let factor = 1_i64 << attempts.saturating_sub(1).min(16);
    Duration::seconds(
        FIRST_BACKOFF_SECONDS
            .saturating_mul(factor)
            .min(MAX_BACKOFF_SECONDS),
    )
}

#[async_trait]
impl Mailer for RetryQueue<MailTransport> {
    async fn send(&self, message: EmailMessage) -> Result<(), DeliveryError> {
        self.submit(message).await
    }
}

#[async_trait]
impl SmsSender for RetryQueue<SmsTransport> {
    async fn send(&self, message: SmsMessage) -> Result<(), DeliveryError> {
        self.submit(message).await
    }
}

/// The server's outgoing mail and SMS queues.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Mail.
    pub mail: Arc<RetryQueue<MailTransport>>,
    /// SMS.
    pub sms: Arc<RetryQueue<SmsTransport>>,
}

impl Outgoing {
    /// Queues in front of `mailer` (messages kept a day) and `sms` (kept `sms_lifetime`, the
    /// lifetime of the codes they carry).
    pub fn new(
        mailer: Arc<dyn Mailer>,
        sms: Arc<dyn SmsSender>,
        clock: Arc<dyn Clock>,
        sms_lifetime: Duration,
    ) -> Self {
        Self {
            mail: Arc::new(RetryQueue::new(
                MailTransport(mailer),
                clock.clone(),
                Duration::days(1),
            )),
            sms: Arc::new(RetryQueue::new(SmsTransport(sms), clock, sms_lifetime)),
        }
    }

    /// Retries what is due in both queues.
    pub async fn retry_due(&self) -> (Retried, Retried) {
        (self.mail.retry_due().await, self.sms.retry_due().await)
    }

    /// Retries what is due every `every` until `stop` completes.
    pub async fn run_until(
        &self,
        every: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {
                    self.retry_due().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use chrono::TimeZone;
    use ciam_core::FixedClock;

    use super::*;

    /// A transport that is up or down, refuses `refused@…`, and counts deliveries.
    #[derive(Default)]
    struct Switch {
        up: AtomicBool,
        delivered: AtomicUsize,
    }

    #[async_trait]
    impl Transport for Arc<Switch> {
        type Message = String;
        async fn deliver(&self, message: String) -> Result<(), DeliveryError> {
            if message.starts_with("refused") {
                return Err(DeliveryError::Rejected("no such recipient".into()));
            }
            if !self.up.load(Ordering::SeqCst) {
                return Err(DeliveryError::Unavailable("connection refused".into()));
            }
            self.delivered.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn queue() -> (Arc<Switch>, Arc<FixedClock>, RetryQueue<Arc<Switch>>) {
        let switch = Arc::new(Switch::default());
        let start = Utc
            .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
            .single()
            .unwrap_or_default();
        let clock = Arc::new(FixedClock::new(start));
        let queue = RetryQueue::new(switch.clone(), clock.clone(), Duration::minutes(5));
        (switch, clock, queue)
    }

    #[tokio::test]
    async fn a_refused_recipient_is_an_error_and_not_queued() {
        let (_, _, queue) = queue();
        assert!(matches!(
            queue.submit("refused@x".into()).await,
            Err(DeliveryError::Rejected(_))
        ));
        assert_eq!(queue.pending(), 0);
    }

    #[tokio::test]
    async fn a_message_is_kept_while_down_delivered_once_when_up_and_dropped_when_expired() {
        let (switch, clock, queue) = queue();
        assert_eq!(queue.submit("a".into()).await, Ok(()));
        assert!(queue.delayed());
        // Not due yet: nothing tried.
        assert_eq!(queue.retry_due().await.waiting, 1);
        clock.advance(Duration::seconds(5));
        assert_eq!(queue.retry_due().await.waiting, 1);
        switch.up.store(true, Ordering::SeqCst);
        // The back-off doubled: due 10 s after the failed retry.
        clock.advance(Duration::seconds(9));
        assert_eq!(queue.retry_due().await.sent, 0);
        clock.advance(Duration::seconds(1));
        assert_eq!(queue.retry_due().await.sent, 1);
        assert_eq!(switch.delivered.load(Ordering::SeqCst), 1);
        assert!(!queue.delayed());

        // Down past the message's lifetime: dropped, never delivered late.
        switch.up.store(false, Ordering::SeqCst);
        assert_eq!(queue.submit("b".into()).await, Ok(()));
        clock.advance(Duration::minutes(6));
        let report = queue.retry_due().await;
        assert_eq!((report.expired, report.waiting), (1, 0));
        switch.up.store(true, Ordering::SeqCst);
        clock.advance(Duration::minutes(6));
        assert_eq!(queue.retry_due().await, Retried::default());
        assert_eq!(switch.delivered.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_backoff_doubles_up_to_five_minutes() {
        let waits: Vec<i64> = (1..=9).map(|n| backoff(n).num_seconds()).collect();
        assert_eq!(waits, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX).num_seconds(), 300);
    }
}
