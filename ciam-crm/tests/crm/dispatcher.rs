//! The outbox dispatcher: back-off, Retry-After, dead letters, a killed dispatcher, a
//! graceful stop.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::Duration;
use ciam_core::SeededRandom;
use ciam_crm::{
    CrmConnector, CrmEvent, DeliveryResult, Dispatcher, DispatcherConfig, RecordingConnector,
    backoff_delay,
};

use crate::{NowUtc, World, people, produce_events, world};

fn config() -> DispatcherConfig {
    DispatcherConfig {
        batch_size: 50,
        concurrency: 50,
        lease: Duration::seconds(60),
        delivery_timeout: StdDuration::from_secs(5),
        max_attempts: 3,
        backoff_base: Duration::seconds(1),
        backoff_max: Duration::seconds(60),
        idle_poll: StdDuration::from_millis(5),
        ..DispatcherConfig::default()
    }
}

fn dispatcher(w: &World, connector: Arc<dyn CrmConnector>, config: DispatcherConfig) -> Dispatcher {
    Dispatcher::new(
        w.store.clone(),
        connector,
        w.clock.clone(),
        w.random.clone(),
        config,
    )
    .unwrap()
}

/// Fails with the given result until `failures` deliveries have failed.
struct Flaky {
    failures: AtomicUsize,
    result: DeliveryResult,
    inner: RecordingConnector,
}

#[async_trait]
impl CrmConnector for Flaky {
    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return self.result.clone();
        }
        self.inner.deliver(event).await
    }
}

#[test]
fn backoff_grows_exponentially_with_jitter_and_a_cap() {
    let config = DispatcherConfig {
        backoff_base: Duration::seconds(1),
        backoff_max: Duration::seconds(300),
        ..DispatcherConfig::default()
    };
    let random = SeededRandom::new(3);
    for attempt in 1..=20u32 {
        let full = (1_000i64 << (attempt - 1).min(30)).min(300_000);
        for _ in 0..50 {
            let delay = backoff_delay(&config, attempt, &random).num_milliseconds();
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay} vs {full}"
            );
        }
    }
    let distinct: HashSet<i64> = (0..50)
        .map(|_| backoff_delay(&config, 5, &random).num_milliseconds())
        .collect();
    assert!(distinct.len() > 10, "jitter spreads retries");
}

#[test]
fn impossible_configurations_are_refused() {
    let store: Arc<dyn ciam_core::Store> = Arc::new(ciam_store::MemoryStore::new());
    let bad = DispatcherConfig {
        lease: Duration::seconds(10),
        delivery_timeout: StdDuration::from_secs(10),
        ..DispatcherConfig::default()
    };
    let result = Dispatcher::new(
        store,
        Arc::new(RecordingConnector::new()),
        Arc::new(ciam_core::SystemClock),
        Arc::new(SeededRandom::new(1)),
        bad,
    );
    assert!(result.is_err());
}

#[tokio::test]
async fn retries_then_dead_letters_then_redelivers() {
    let w = world().await;
    w.drain_outbox().await;
    let who = people(w.random.as_ref(), 1);
    produce_events(
        w.store.as_ref(),
        w.random.as_ref(),
        &who,
        0,
        1,
        w.clock.now_utc(),
    )
    .await;
    let flaky = Arc::new(Flaky {
        failures: AtomicUsize::new(3),
        result: DeliveryResult::retry("crm down"),
        inner: RecordingConnector::new(),
    });
    let d = dispatcher(&w, flaky.clone(), config());
    let first = d.run_once().await.unwrap();
    assert_eq!(first.retried, 1);
    // Not due yet: nothing to claim at the same instant.
    assert_eq!(d.run_once().await.unwrap().claimed, 0);
    w.clock.advance(Duration::seconds(61));
    assert_eq!(d.run_once().await.unwrap().retried, 1);
    w.clock.advance(Duration::seconds(61));
    let third = d.run_once().await.unwrap();
    assert_eq!(third.dead_lettered, 1, "{third:?}");
    assert_eq!(d.depth().await.unwrap(), 0);
    let dead = d.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("crm down"));
    assert_eq!(dead[0].event_type, "contact_details_changed");
    d.redeliver(dead[0].event_id).await.unwrap();
    assert_eq!(d.run_once().await.unwrap().delivered, 1);
    assert!(d.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(flaky.inner.events().len(), 1);
}

#[tokio::test]
async fn permanent_failures_dead_letter_at_once() {
    let w = world().await;
    w.drain_outbox().await;
    let who = people(w.random.as_ref(), 2);
    produce_events(
        w.store.as_ref(),
        w.random.as_ref(),
        &who,
        0,
        1,
        w.clock.now_utc(),
    )
    .await;
    let flaky = Arc::new(Flaky {
        failures: AtomicUsize::new(2),
        result: DeliveryResult::permanent("gone"),
        inner: RecordingConnector::new(),
    });
    let d = dispatcher(&w, flaky, config());
    assert_eq!(d.run_once().await.unwrap().dead_lettered, 2);
    assert_eq!(d.redeliver_all(10).await.unwrap(), 2);
    assert_eq!(d.run_once().await.unwrap().delivered, 2);
}

#[tokio::test]
async fn retry_after_is_honoured_and_order_is_kept_behind_a_failure() {
    let w = world().await;
    w.drain_outbox().await;
    let who = people(w.random.as_ref(), 1);
    produce_events(
        w.store.as_ref(),
        w.random.as_ref(),
        &who,
        0,
        3,
        w.clock.now_utc(),
    )
    .await;
    let flaky = Arc::new(Flaky {
        failures: AtomicUsize::new(1),
        result: DeliveryResult::Retry {
            reason: "429".into(),
            after: Some(StdDuration::from_secs(120)),
        },
        inner: RecordingConnector::new(),
    });
    let d = dispatcher(&w, flaky.clone(), config());
    assert_eq!(d.run_once().await.unwrap().retried, 1);
    // The later events of the same person wait behind the first.
    w.clock.advance(Duration::seconds(119));
    assert_eq!(d.run_once().await.unwrap().claimed, 0);
    w.clock.advance(Duration::seconds(2));
    for _ in 0..5 {
        d.run_once().await.unwrap();
    }
    let afters: Vec<String> = flaky
        .inner
        .events()
        .into_iter()
        .map(|e| match e.data {
            ciam_crm::CrmEventData::ContactDetailsChanged { after, .. } => after.unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(afters, ["0:0", "0:1", "0:2"]);
}

/// Never answers: a dispatcher stuck in a delivery.
struct Hang;

#[async_trait]
impl CrmConnector for Hang {
    async fn deliver(&self, _event: &CrmEvent) -> DeliveryResult {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_dispatcher_killed_mid_batch_loses_nothing() {
    let w = world().await;
    w.drain_outbox().await;
    let who = people(w.random.as_ref(), 20);
    produce_events(
        w.store.as_ref(),
        w.random.as_ref(),
        &who,
        0,
        5,
        w.clock.now_utc(),
    )
    .await;
    // Kill it while the deliveries of its first batch hang.
    let doomed = dispatcher(
        &w,
        Arc::new(Hang),
        DispatcherConfig {
            delivery_timeout: StdDuration::from_secs(30),
            ..config()
        },
    );
    let killed = tokio::time::timeout(StdDuration::from_millis(50), doomed.run_once()).await;
    assert!(killed.is_err(), "the batch was cut off");
    // A restarted dispatcher (another consumer) sees nothing until the lease runs out...
    let recorder = Arc::new(RecordingConnector::new());
    let restarted = dispatcher(&w, recorder.clone(), config());
    assert_eq!(restarted.run_once().await.unwrap().claimed, 0);
    // ...then takes everything over.
    w.clock.advance(Duration::seconds(61));
    for _ in 0..20 {
        if restarted.run_once().await.unwrap().claimed == 0 {
            break;
        }
    }
    let ids: HashSet<uuid::Uuid> = recorder.events().iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 100);
    assert_eq!(restarted.depth().await.unwrap(), 0);
}

/// Slow deliveries, to stop in the middle of one.
struct Slow(RecordingConnector);

#[async_trait]
impl CrmConnector for Slow {
    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult {
        tokio::time::sleep(StdDuration::from_millis(30)).await;
        self.0.deliver(event).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_the_batch_in_flight() {
    let w = world().await;
    w.drain_outbox().await;
    let who = people(w.random.as_ref(), 10);
    produce_events(
        w.store.as_ref(),
        w.random.as_ref(),
        &who,
        0,
        10,
        w.clock.now_utc(),
    )
    .await;
    let slow = Arc::new(Slow(RecordingConnector::new()));
    let d = dispatcher(
        &w,
        slow.clone(),
        DispatcherConfig {
            batch_size: 5,
            concurrency: 5,
            ..config()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let d = d.clone();
        tokio::spawn(async move {
            d.run_until(async {
                let _ = stopped.await;
            })
            .await
        })
    };
    tokio::time::sleep(StdDuration::from_millis(45)).await;
    stop.send(()).unwrap();
    let report = tokio::time::timeout(StdDuration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        report.totals.claimed > 0 && report.totals.claimed < 100,
        "{report:?}"
    );
    assert_eq!(report.totals.claimed, report.totals.delivered);
    // Nothing is left leased: another dispatcher at the same instant delivers the rest.
    let rest = Arc::new(RecordingConnector::new());
    let other = dispatcher(&w, rest.clone(), config());
    for _ in 0..50 {
        if other.run_once().await.unwrap().claimed == 0 {
            break;
        }
    }
    let mut ids: Vec<uuid::Uuid> = slow.0.events().iter().map(|e| e.id).collect();
    ids.extend(rest.events().iter().map(|e| e.id));
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 100, "no duplicates after a graceful stop");
    assert_eq!(unique.len(), 100);
}
