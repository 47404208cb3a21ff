//! The webhook connector against a real HTTP receiver on 127.0.0.1 that verifies every
//! signature, and the fault test: receiver down, then failing, then slow, while 1000 events
//! are produced; all arrive after it recovers.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use ciam_core::{Clock, SeededRandom, SystemClock};
use ciam_crm::webhook::{
    Verifier, WebhookConfig, WebhookConnector, WebhookSecret, is_public_address, parse_retry_after,
};
use ciam_crm::{
    CrmConnector, CrmEvent, CrmEventData, DeliveryResult, Dispatcher, DispatcherConfig,
};

use crate::{people, produce_events, world};

const OK: u8 = 0;
const FAIL: u8 = 1;
const SLOW: u8 = 2;
const GONE: u8 = 3;
const THROTTLE: u8 = 4;
const REDIRECT: u8 = 5;

struct Receiver {
    mode: AtomicU8,
    verifier: Verifier,
    /// (webhook-id, body) of every accepted delivery, in arrival order.
    deliveries: Mutex<Vec<(String, CrmEvent)>>,
    bad_signatures: AtomicUsize,
    failures_answered: AtomicUsize,
    slow_answered: AtomicUsize,
}

impl Receiver {
    fn new(secrets: &[WebhookSecret]) -> Arc<Self> {
        Arc::new(Self {
            mode: AtomicU8::new(OK),
            verifier: Verifier::new(secrets.to_vec()),
            deliveries: Mutex::new(Vec::new()),
            bad_signatures: AtomicUsize::new(0),
            failures_answered: AtomicUsize::new(0),
            slow_answered: AtomicUsize::new(0),
        })
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn record(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        if self
            .verifier
            .verify_headers(headers, body, SystemClock.now())
            .is_err()
        {
            self.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
        let id = headers["webhook-id"].to_str().unwrap().to_owned();
        let event: CrmEvent = serde_json::from_slice(body).unwrap();
        assert_eq!(event.id.to_string(), id, "webhook-id is the event id");
        self.deliveries.lock().unwrap().push((id, event));
        StatusCode::NO_CONTENT
    }
}

async fn hook(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> Response {
    match receiver.mode.load(Ordering::SeqCst) {
        FAIL => {
            receiver.failures_answered.fetch_add(1, Ordering::SeqCst);
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        SLOW => {
            receiver.slow_answered.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(StdDuration::from_millis(800)).await;
            receiver.record(&headers, &body).into_response()
        }
        GONE => StatusCode::GONE.into_response(),
        THROTTLE => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "7")]).into_response(),
        REDIRECT => (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into_response(),
        _ => receiver.record(&headers, &body).into_response(),
    }
}

async fn elsewhere() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn serve(
    listener: tokio::net::TcpListener,
    receiver: Arc<Receiver>,
) -> tokio::task::JoinHandle<()> {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .route("/elsewhere", axum::routing::post(elsewhere))
        .with_state(receiver);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

async fn receiver_on_free_port(
    receiver: Arc<Receiver>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve(listener, receiver).await)
}

fn connector(
    addr: SocketAddr,
    secrets: Vec<WebhookSecret>,
    timeout: StdDuration,
) -> WebhookConnector {
    let mut config = WebhookConfig::new(format!("http://{addr}/hook"), secrets);
    config.allow_private_targets = true;
    config.allow_http = true;
    config.timeout = timeout;
    WebhookConnector::new(config, Arc::new(SystemClock)).unwrap()
}

fn sample_event(n: u128) -> CrmEvent {
    CrmEvent {
        id: uuid::Uuid::from_u128(n),
        timestamp: SystemClock.now(),
        actor: "system".into(),
        organization: None,
        person: None,
        data: CrmEventData::MembershipActivated,
    }
}

#[tokio::test]
async fn signed_deliveries_verify_and_statuses_are_classified() {
    let random = SeededRandom::new(5);
    let old = WebhookSecret::generate(&random);
    let new = WebhookSecret::generate(&random);
    // The receiver knows only the new secret; the sender signs with both during rotation.
    let receiver = Receiver::new(std::slice::from_ref(&new));
    let (addr, _server) = receiver_on_free_port(receiver.clone()).await;
    let hook = connector(
        addr,
        vec![old.clone(), new.clone()],
        StdDuration::from_secs(2),
    );
    assert_eq!(
        hook.deliver(&sample_event(1)).await,
        DeliveryResult::Delivered
    );
    assert_eq!(receiver.deliveries.lock().unwrap().len(), 1);
    // A receiver that knows only the old secret is still fine.
    hook.set_secrets(vec![old.clone()]).unwrap();
    assert_eq!(
        hook.deliver(&sample_event(2)).await,
        DeliveryResult::Retry {
            reason: "endpoint answered 401 Unauthorized".into(),
            after: None
        }
    );
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 1);
    hook.set_secrets(vec![new.clone()]).unwrap();

    receiver.set(THROTTLE);
    assert_eq!(
        hook.deliver(&sample_event(3)).await,
        DeliveryResult::Retry {
            reason: "endpoint answered 429 Too Many Requests".into(),
            after: Some(StdDuration::from_secs(7))
        }
    );
    receiver.set(REDIRECT);
    let DeliveryResult::Retry { reason, .. } = hook.deliver(&sample_event(4)).await else {
        panic!("a redirect is not a success")
    };
    assert!(reason.contains("redirects are not followed"), "{reason}");
    receiver.set(GONE);
    assert!(matches!(
        hook.deliver(&sample_event(5)).await,
        DeliveryResult::Permanent { .. }
    ));
    assert!(hook.is_disabled());
    receiver.set(OK);
    assert!(matches!(
        hook.deliver(&sample_event(6)).await,
        DeliveryResult::Permanent { .. }
    ));
    hook.enable();
    assert_eq!(
        hook.deliver(&sample_event(7)).await,
        DeliveryResult::Delivered
    );
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let random = SeededRandom::new(6);
    let secret = WebhookSecret::generate(&random);
    for url in [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
    ] {
        assert!(
            WebhookConnector::new(
                WebhookConfig::new(url, vec![secret.clone()]),
                Arc::new(SystemClock)
            )
            .is_err(),
            "{url}"
        );
    }
    assert!(
        WebhookConnector::new(
            WebhookConfig::new("http://crm.example/hook", vec![secret.clone()]),
            Arc::new(SystemClock)
        )
        .is_err(),
        "plain http"
    );
    assert!(
        WebhookConnector::new(
            WebhookConfig::new("https://crm.example/hook", vec![]),
            Arc::new(SystemClock)
        )
        .is_err(),
        "no secret"
    );
    // A host name that resolves to loopback is refused when delivering.
    let hook = WebhookConnector::new(
        WebhookConfig::new("https://localhost:9/hook", vec![secret]),
        Arc::new(SystemClock),
    )
    .unwrap();
    let result = hook.deliver(&sample_event(1)).await;
    assert!(
        matches!(&result, DeliveryResult::Permanent { reason } if reason.contains("private")),
        "{result:?}"
    );
    assert!(!is_public_address("192.168.1.1".parse().unwrap()));
    assert!(!is_public_address("100.64.0.1".parse().unwrap()));
    assert!(!is_public_address("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!is_public_address("fd00::1".parse().unwrap()));
    assert!(is_public_address("93.184.216.34".parse().unwrap()));
    assert!(is_public_address("2606:2800:220:1::1".parse().unwrap()));
    let now = SystemClock.now();
    assert_eq!(
        parse_retry_after("120", now),
        Some(StdDuration::from_secs(120))
    );
    let later = (now + Duration::seconds(30)).to_rfc2822();
    let parsed = parse_retry_after(&later, now).unwrap();
    assert!(parsed <= StdDuration::from_secs(30) && parsed >= StdDuration::from_secs(29));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_down_failing_then_slow_loses_nothing() {
    let w = world().await;
    w.drain_outbox().await;
    let random = SeededRandom::new(9);
    let secret = WebhookSecret::generate(&random);
    let receiver = Receiver::new(std::slice::from_ref(&secret));
    // A port with nobody listening: connection refused.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let hook = Arc::new(connector(addr, vec![secret], StdDuration::from_millis(200)));
    let config = DispatcherConfig {
        batch_size: 64,
        concurrency: 64,
        lease: Duration::seconds(10),
        delivery_timeout: StdDuration::from_secs(1),
        max_attempts: 100_000,
        backoff_base: Duration::milliseconds(5),
        backoff_max: Duration::milliseconds(100),
        idle_poll: StdDuration::from_millis(5),
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(
        w.store.clone(),
        hook,
        Arc::new(SystemClock),
        w.random.clone(),
        config,
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let dispatcher = dispatcher.clone();
        tokio::spawn(async move {
            dispatcher
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let who = people(w.random.as_ref(), 10);
    let started = Instant::now();
    let now = SystemClock.now();
    // Down.
    produce_events(w.store.as_ref(), w.random.as_ref(), &who, 0, 25, now).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert!(receiver.deliveries.lock().unwrap().is_empty());
    // Up, but answering 500.
    receiver.set(FAIL);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let _server = serve(listener, receiver.clone()).await;
    produce_events(w.store.as_ref(), w.random.as_ref(), &who, 25, 50, now).await;
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    // Slow: answers after the sender's timeout.
    receiver.set(SLOW);
    produce_events(w.store.as_ref(), w.random.as_ref(), &who, 50, 75, now).await;
    tokio::time::sleep(StdDuration::from_millis(700)).await;
    // Back.
    receiver.set(OK);
    let recovered = Instant::now();
    produce_events(w.store.as_ref(), w.random.as_ref(), &who, 75, 100, now).await;
    let deadline = Instant::now() + StdDuration::from_secs(60);
    loop {
        let unique: HashSet<String> = receiver
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if unique.len() >= 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 1000 arrived",
            unique.len()
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let drained = recovered.elapsed();
    stop.send(()).unwrap();
    let report = tokio::time::timeout(StdDuration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dispatcher.depth().await.unwrap(), 0);
    assert!(dispatcher.dead_letters(10).await.unwrap().is_empty());
    assert!(receiver.failures_answered.load(Ordering::SeqCst) > 0);
    assert!(receiver.slow_answered.load(Ordering::SeqCst) > 0);
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);

    let deliveries = receiver.deliveries.lock().unwrap().clone();
    // Duplicates only with the same id and the same content.
    let mut by_id: HashMap<String, CrmEvent> = HashMap::new();
    for (id, event) in &deliveries {
        if let Some(first) = by_id.get(id) {
            assert_eq!(first, event, "a duplicate carries the same event");
        } else {
            by_id.insert(id.clone(), event.clone());
        }
    }
    assert_eq!(by_id.len(), 1000);
    // Per-person order: first arrivals of each person's events are in production order.
    let mut seen = HashSet::new();
    let mut next: HashMap<String, usize> = HashMap::new();
    for (id, event) in &deliveries {
        if !seen.insert(id.clone()) {
            continue;
        }
        let CrmEventData::ContactDetailsChanged {
            after: Some(after), ..
        } = &event.data
        else {
            panic!("{event:?}")
        };
        let (person, n) = after.split_once(':').unwrap();
        let expected = next.entry(person.to_owned()).or_insert(0);
        assert_eq!(
            n.parse::<usize>().unwrap(),
            *expected,
            "order of person {person}"
        );
        *expected += 1;
    }
    eprintln!(
        "fault test: {} deliveries for 1000 events ({} duplicates), {} retries, drained {:?} after recovery, total {:?}",
        deliveries.len(),
        deliveries.len() - 1000,
        report.totals.retried,
        drained,
        started.elapsed()
    );
}
