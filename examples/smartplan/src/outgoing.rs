//! Outgoing mail and SMS that survive a transport outage: [`RetryQueue`] wraps the real
//! transport (SMTP, the SMS gateway).
//!
//! Mail is queued: [`RetryQueue::background`] answers at once and a worker task hands the
//! messages to the transport, [`DEFAULT_CONCURRENCY`] at a time, so that no request waits for
//! the mail server (a batch of thousands of invitations answers as soon as the invitations are
//! written). An SMS carries a sign-in code that the person waits for: [`RetryQueue::new`]
//! hands it over during the request.
//!
//! When the transport is unavailable (connection refused, timeout, a 4xx SMTP reply, a 5xx from
//! the gateway) the message is kept in memory and retried with back-off ([`RetryQueue::retry_due`],
//! run every few seconds) until it goes out or its lifetime ends (mail: a day; SMS: the sign-in
//! code's five minutes), so the person gets it as soon as the transport is back. While the
//! transport is known to be down, new mail joins the waiting messages without being tried, and a
//! retry pass stops trying once one message of it meets the outage again. A recipient refused
//! for good is not retried.
//!
//! Pages ask [`RetryQueue::delayed`] to tell the person that their message is on its way but
//! late. The queue lives in the server process: a graceful shutdown hands over what it holds
//! ([`Outgoing::drain`], bounded); a message still queued when the process stops is lost (the
//! person asks for a new code; the invitation exists and is resent from the invitations page),
//! which the operations guide says. Messages (which carry invitation links with their tokens)
//! are never written to the database.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ciam_core::clock::Clock;
use ciam_core::delivery::{DeliveryError, EmailMessage, Mailer, SmsMessage, SmsSender};
use futures::StreamExt as _;
use tokio::sync::{Semaphore, mpsc};

/// Messages kept at most per queue (queued and waiting); beyond that a message is refused
/// (reported undelivered). A batch of the API's largest size fits.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Messages handed to the transport at once (SMTP connections are pooled).
pub const DEFAULT_CONCURRENCY: usize = 16;

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

/// What [`RetryQueue::drain`] left behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Messages handed over during the drain (first attempts and retries).
    pub sent: usize,
    /// Messages not handed over when the drain ended (lost when the process stops).
    pub left: usize,
}

/// The result of one attempt.
enum Attempt {
    Sent,
    /// The transport is unavailable: keep the message.
    Down,
    /// Refused for good: drop the message.
    Rejected,
}

/// What the queue's users and its worker share.
struct Shared<T: Transport> {
    transport: T,
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    capacity: usize,
    concurrency: usize,
    /// Messages that met an outage (or came while the transport was down), for retries.
    waiting: Mutex<VecDeque<Pending<T::Message>>>,
    /// Messages handed to the worker and not yet tried to the end.
    queued: AtomicUsize,
    /// Messages handed over since the start (first attempts and retries).
    sent: AtomicUsize,
    /// The last attempt found the transport unavailable (until one succeeds).
    down: AtomicBool,
    /// Attempts under way, bounded by `concurrency` (the worker and retry passes share them).
    permits: Semaphore,
}

impl<T: Transport> Shared<T> {
    fn waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending<T::Message>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One attempt to hand `message` over (waiting for a free permit first).
    async fn attempt(&self, message: T::Message) -> Attempt {
        let _permit = self.permits.acquire().await;
        match self.transport.deliver(message).await {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                if self.down.swap(false, Ordering::SeqCst) {
                    tracing::info!("transport back: messages go out again");
                }
                Attempt::Sent
            }
            Err(DeliveryError::Unavailable(reason)) => {
                if !self.down.swap(true, Ordering::SeqCst) {
                    tracing::warn!(%reason, "transport down: messages wait for retries");
                }
                Attempt::Down
            }
            Err(_) => Attempt::Rejected,
        }
    }

    /// Keeps `message` for retries from `next_attempt_at` on.
    fn park(&self, message: T::Message, attempts: u32, next_attempt_at: DateTime<Utc>) {
        let now = self.clock.now();
        let mut waiting = self.waiting();
        waiting.push_back(Pending {
            message,
            expires_at: now + self.lifetime,
            attempts,
            next_attempt_at,
        });
        tracing::debug!(waiting = waiting.len(), "message kept for retry");
    }

    /// The worker's first attempt of a queued message: tried unless the transport is known
    /// to be down, kept for retries when it is.
    async fn first_attempt(&self, message: T::Message) {
        if self.down.load(Ordering::SeqCst) {
            // Due at the next retry pass, which finds out whether the transport is back.
            self.park(message, 0, self.clock.now());
        } else {
            match self.attempt(message.clone()).await {
                Attempt::Sent | Attempt::Rejected => {}
                Attempt::Down => self.park(message, 1, self.clock.now() + backoff(1)),
            }
        }
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }

    /// Tries the waiting messages that `due` picks, `concurrency` at a time; once one meets
    /// the outage, the others of the pass are not tried and wait for the next one.
    async fn retry(&self, due: impl Fn(&Pending<T::Message>) -> bool) -> Retried {
        let now = self.clock.now();
        let picked: Vec<Pending<T::Message>> = {
            let mut waiting = self.waiting();
            let (picked, later): (VecDeque<_>, VecDeque<_>) =
                waiting.drain(..).partition(|pending| due(pending));
            *waiting = later;
            picked.into_iter().collect()
        };
        let mut report = Retried::default();
        let (expired, live): (Vec<_>, Vec<_>) = picked
            .into_iter()
            .partition(|pending| pending.expires_at <= now);
        report.expired = expired.len();
        let outage = AtomicBool::new(false);
        let outage = &outage;
        let results: Vec<(Pending<T::Message>, Attempt)> = futures::stream::iter(live)
            .map(|pending| async move {
                if outage.load(Ordering::SeqCst) {
                    return (pending, Attempt::Down);
                }
                let attempt = self.attempt(pending.message.clone()).await;
                if matches!(attempt, Attempt::Down) {
                    outage.store(true, Ordering::SeqCst);
                }
                (pending, attempt)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut again = Vec::new();
        for (mut pending, attempt) in results {
            match attempt {
                Attempt::Sent => report.sent += 1,
                Attempt::Rejected => report.rejected += 1,
                Attempt::Down => {
                    pending.attempts = pending.attempts.saturating_add(1);
                    pending.next_attempt_at = now + backoff(pending.attempts);
                    again.push(pending);
                }
            }
        }
        let mut waiting = self.waiting();
        waiting.extend(again);
        report.waiting = waiting.len();
        if report != Retried::default() {
            tracing::info!(?report, "retried queued messages");
        }
        report
    }
}

/// A transport with a retry queue in front (see the module documentation).
pub struct RetryQueue<T: Transport> {
    shared: Arc<Shared<T>>,
    /// The worker's inbox (background delivery); `None`: the first attempt is made during
    /// [`RetryQueue::submit`].
    worker: Option<mpsc::UnboundedSender<T::Message>>,
}

impl<T: Transport> std::fmt::Debug for RetryQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryQueue")
            .field("pending", &self.pending())
            .field("lifetime", &self.shared.lifetime)
            .field("background", &self.worker.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Transport> RetryQueue<T> {
    fn shared(transport: T, clock: Arc<dyn Clock>, lifetime: Duration) -> Arc<Shared<T>> {
        Arc::new(Shared {
            transport,
            clock,
            lifetime,
            capacity: DEFAULT_CAPACITY,
            concurrency: DEFAULT_CONCURRENCY,
            waiting: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            permits: Semaphore::new(DEFAULT_CONCURRENCY),
        })
    }

    /// A queue in front of `transport` whose [`Self::submit`] makes the first attempt itself;
    /// a message is retried until `lifetime` after it was first handed over.
    pub fn new(transport: T, clock: Arc<dyn Clock>, lifetime: Duration) -> Self {
        Self {
            shared: Self::shared(transport, clock, lifetime),
            worker: None,
        }
    }

    /// Messages queued or waiting for the transport.
    pub fn pending(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst) + self.shared.waiting().len()
    }

    /// Messages handed to the transport since the queue was made.
    pub fn sent(&self) -> usize {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Whether messages are late: the transport was found down and no attempt has succeeded
    /// since, or messages wait for a retry. New messages will be late too.
    pub fn delayed(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst) || !self.shared.waiting().is_empty()
    }

    /// Takes `message` for delivery and answers `Ok` when it is queued or handed over (it goes
    /// out when the transport is back if it is down). A refused recipient (when handed over
    /// during the call) or a full queue is an error.
    pub async fn submit(&self, message: T::Message) -> Result<(), DeliveryError> {
        if self.pending() >= self.shared.capacity {
            return Err(DeliveryError::Unavailable(
                "the outgoing queue is full".to_owned(),
            ));
        }
        if let Some(worker) = &self.worker {
            self.shared.queued.fetch_add(1, Ordering::SeqCst);
            return match worker.send(message) {
                Ok(()) => Ok(()),
                Err(_) => {
                    self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                    Err(DeliveryError::Unavailable(
                        "the outgoing queue has stopped".to_owned(),
                    ))
                }
            };
        }
        let _permit = self.shared.permits.acquire().await;
        match self.shared.transport.deliver(message.clone()).await {
            Ok(()) => {
                self.shared.sent.fetch_add(1, Ordering::Relaxed);
                self.shared.down.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(DeliveryError::Unavailable(reason)) => {
                self.shared.down.store(true, Ordering::SeqCst);
                tracing::warn!(%reason, waiting = self.shared.waiting().len() + 1, "transport down: message queued for retry");
                let now = self.shared.clock.now();
                self.shared.park(message, 1, now + backoff(1));
                Ok(())
            }
            Err(other) => Err(other),
        }
    }

    /// Tries every waiting message whose next attempt is due; keeps the ones that fail again
    /// (with a longer wait) and drops the expired and the refused.
    pub async fn retry_due(&self) -> Retried {
        let now = self.shared.clock.now();
        self.shared
            .retry(|pending| pending.next_attempt_at <= now)
            .await
    }

    /// Hands over what the queue holds before the process stops: waits for the worker to try
    /// every queued message, then tries every waiting message once more (whatever its
    /// back-off), all within `bound`. What is left is lost with the process (logged).
    pub async fn drain(&self, bound: std::time::Duration) -> Drained {
        let started = tokio::time::Instant::now();
        let sent_before = self.sent();
        let deadline = started + bound;
        while self.shared.queued.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if !self.shared.waiting().is_empty() {
            let _ = tokio::time::timeout_at(deadline, self.shared.retry(|_| true)).await;
        }
        let drained = Drained {
            sent: self.sent().saturating_sub(sent_before),
            left: self.pending(),
        };
        if drained.left > 0 {
            tracing::warn!(
                left = drained.left,
                sent = drained.sent,
                "stopping with messages not handed over: they are lost"
            );
        } else if drained.sent > 0 {
            tracing::info!(sent = drained.sent, "outgoing queue drained");
        }
        drained
    }
}

impl<T: Transport + 'static> RetryQueue<T> {
    /// A queue in front of `transport` whose [`Self::submit`] only queues: a worker task
    /// (spawned on the current Tokio runtime) hands the messages over, [`DEFAULT_CONCURRENCY`]
    /// at a time. Outside a Tokio runtime it falls back to [`Self::new`].
    pub fn background(transport: T, clock: Arc<dyn Clock>, lifetime: Duration) -> Self {
        let shared = Self::shared(transport, clock, lifetime);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Self {
                shared,
                worker: None,
            };
        };
        let (inbox, messages) = mpsc::unbounded_channel();
        let worker = shared.clone();
        runtime.spawn(async move {
            let concurrency = worker.concurrency.max(1);
            let messages = futures::stream::unfold(messages, |mut messages| async move {
                messages.recv().await.map(|message| (message, messages))
            });
            messages
                .for_each_concurrent(concurrency, |message| {
                    let worker = worker.clone();
                    async move { worker.first_attempt(message).await }
                })
                .await;
        });
        Self {
            shared,
            worker: Some(inbox),
        }
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
    /// Mail (queued: delivered by a worker task).
    pub mail: Arc<RetryQueue<MailTransport>>,
    /// SMS (handed over during the request).
    pub sms: Arc<RetryQueue<SmsTransport>>,
}

impl Outgoing {
    /// Queues in front of `mailer` (messages kept a day; delivered in the background, so this
    /// is called on a Tokio runtime) and `sms` (kept `sms_lifetime`, the lifetime of the codes
    /// they carry).
    pub fn new(
        mailer: Arc<dyn Mailer>,
        sms: Arc<dyn SmsSender>,
        clock: Arc<dyn Clock>,
        sms_lifetime: Duration,
    ) -> Self {
        Self {
            mail: Arc::new(RetryQueue::background(
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

    /// Hands over what both queues hold before the process stops, within `bound` in all
    /// (see [`RetryQueue::drain`]).
    pub async fn drain(&self, bound: std::time::Duration) -> (Drained, Drained) {
        let started = tokio::time::Instant::now();
        let mail = self.mail.drain(bound).await;
        let sms = self
            .sms
            .drain(bound.saturating_sub(started.elapsed()))
            .await;
        (mail, sms)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use chrono::TimeZone;
    use ciam_core::FixedClock;

    use super::*;

    /// A transport that is up or down, refuses `refused@…`, takes `delay` for each hand-over,
    /// and counts attempts and deliveries.
    #[derive(Default)]
    struct Switch {
        up: AtomicBool,
        delay: std::time::Duration,
        attempts: AtomicUsize,
        delivered: AtomicUsize,
    }

    #[async_trait]
    impl Transport for Arc<Switch> {
        type Message = String;
        async fn deliver(&self, message: String) -> Result<(), DeliveryError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
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

    fn start() -> Arc<FixedClock> {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
            .single()
            .unwrap_or_default();
        Arc::new(FixedClock::new(start))
    }

    /// Waits (up to 10 s) until `done`.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("not done within 10 s");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_delivery_answers_at_once_and_delivers_every_message_after() {
        let switch = Arc::new(Switch {
            up: AtomicBool::new(true),
            delay: std::time::Duration::from_millis(50),
            ..Switch::default()
        });
        let queue = RetryQueue::background(switch.clone(), start(), Duration::days(1));
        let started = std::time::Instant::now();
        for n in 0..200 {
            assert_eq!(queue.submit(format!("m{n}")).await, Ok(()));
        }
        // 200 hand-overs of 50 ms one after another would take 10 s; queueing takes none.
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "submit waited for the transport: {:?}",
            started.elapsed()
        );
        assert!(queue.pending() > 0 && !queue.delayed());
        until(|| switch.delivered.load(Ordering::SeqCst) == 200).await;
        // DEFAULT_CONCURRENCY at a time: 200 x 50 ms in well under the 10 s of one by one.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        until(|| queue.pending() == 0).await;
        assert_eq!(queue.sent(), 200);
        assert!(!queue.delayed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_delivery_keeps_mail_through_an_outage_and_delivers_it_once_after() {
        let switch = Arc::new(Switch::default());
        let clock = start();
        let queue = RetryQueue::background(switch.clone(), clock.clone(), Duration::days(1));
        assert_eq!(queue.submit("first".into()).await, Ok(()));
        until(|| queue.delayed()).await;
        assert_eq!(switch.attempts.load(Ordering::SeqCst), 1);
        // Known down: more mail waits without being tried.
        for n in 0..50 {
            assert_eq!(queue.submit(format!("m{n}")).await, Ok(()));
        }
        until(|| queue.shared.queued.load(Ordering::SeqCst) == 0).await;
        assert_eq!(queue.pending(), 51);
        assert_eq!(switch.attempts.load(Ordering::SeqCst), 1);
        // A retry pass while still down stops at the first failure.
        clock.advance(Duration::seconds(5));
        let report = queue.retry_due().await;
        assert_eq!((report.sent, report.waiting), (0, 51));
        assert!(switch.attempts.load(Ordering::SeqCst) <= 1 + DEFAULT_CONCURRENCY);
        // The transport is back: the next due pass delivers everything, once.
        switch.up.store(true, Ordering::SeqCst);
        clock.advance(Duration::minutes(1));
        let report = queue.retry_due().await;
        assert_eq!((report.sent, report.waiting), (51, 0));
        assert_eq!(switch.delivered.load(Ordering::SeqCst), 51);
        assert!(!queue.delayed());
        clock.advance(Duration::minutes(10));
        assert_eq!(queue.retry_due().await, Retried::default());
        assert_eq!(switch.delivered.load(Ordering::SeqCst), 51);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drain_hands_over_what_is_queued_and_reports_what_it_could_not() {
        let switch = Arc::new(Switch {
            up: AtomicBool::new(true),
            delay: std::time::Duration::from_millis(20),
            ..Switch::default()
        });
        let queue = RetryQueue::background(switch.clone(), start(), Duration::days(1));
        for n in 0..100 {
            queue.submit(format!("m{n}")).await.unwrap();
        }
        let drained = queue.drain(std::time::Duration::from_secs(10)).await;
        assert_eq!(drained, Drained { sent: 100, left: 0 });
        assert_eq!(switch.delivered.load(Ordering::SeqCst), 100);

        // Down: the drain tries, gives up within its bound and says what is left.
        switch.up.store(false, Ordering::SeqCst);
        for n in 0..10 {
            queue.submit(format!("d{n}")).await.unwrap();
        }
        let started = std::time::Instant::now();
        let drained = queue.drain(std::time::Duration::from_secs(2)).await;
        assert!(started.elapsed() < std::time::Duration::from_secs(3));
        assert_eq!(drained, Drained { sent: 0, left: 10 });
    }

    #[tokio::test]
    async fn a_full_queue_refuses_more() {
        let switch = Arc::new(Switch::default());
        let queue = RetryQueue::new(switch, start(), Duration::days(1));
        for n in 0..DEFAULT_CAPACITY {
            queue.shared.park(format!("m{n}"), 1, start().now());
        }
        assert!(matches!(
            queue.submit("one more".into()).await,
            Err(DeliveryError::Unavailable(reason)) if reason.contains("full")
        ));
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
