//! Two dispatchers (two connection pools, as on two nodes) over one PostgreSQL database:
//! every event delivered at least once, never the same claim concurrently, order per person.
//!
//! The server comes from `CIAM_TEST_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`); the test creates its own database and drops
//! it afterwards. Without the variable the test is skipped with a message, except under
//! `CI=true`, where that is a failure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use chrono::Duration;
use ciam_core::store::Store;
use ciam_core::{Clock, SeededRandom, SystemClock};
use ciam_crm::{
    CrmConnector, CrmEvent, CrmEventData, DeliveryResult, Dispatcher, DispatcherConfig,
};
use ciam_store::SqlStore;
use sqlx::Connection as _;

use crate::{people, produce_events};

const URL_VAR: &str = "CIAM_TEST_POSTGRES_URL";

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// Records deliveries and catches two deliveries of one event at the same time.
#[derive(Default)]
struct Shared {
    in_flight: Mutex<HashSet<uuid::Uuid>>,
    concurrent: Mutex<usize>,
    deliveries: Mutex<Vec<(String, CrmEvent)>>,
}

struct Node {
    name: String,
    shared: Arc<Shared>,
}

#[async_trait]
impl CrmConnector for Node {
    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult {
        if !self.shared.in_flight.lock().unwrap().insert(event.id) {
            *self.shared.concurrent.lock().unwrap() += 1;
        }
        tokio::time::sleep(StdDuration::from_millis(1)).await;
        self.shared.in_flight.lock().unwrap().remove(&event.id);
        self.shared
            .deliveries
            .lock()
            .unwrap()
            .push((self.name.clone(), event.clone()));
        DeliveryResult::Delivered
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_dispatchers_on_one_postgres_deliver_everything_once_at_a_time() {
    let server = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "{URL_VAR} is not set, and under CI=true the PostgreSQL tests must run"
            );
            eprintln!("SKIPPED two_dispatchers_on_one_postgres: set {URL_VAR} to run it");
            return;
        }
    };
    let nanos = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("ciam_test_crm_{}_{nanos}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = with_database(&server, &name);

    let node_a = Arc::new(SqlStore::open(&url).await.unwrap());
    let node_b = Arc::new(SqlStore::open(&url).await.unwrap());
    let random = Arc::new(SeededRandom::new(11));
    let who = people(random.as_ref(), 20);
    let now = SystemClock.now();
    produce_events(node_a.as_ref(), random.as_ref(), &who, 0, 25, now).await;
    let total = 20 * 25;

    let shared = Arc::new(Shared::default());
    let config = DispatcherConfig {
        batch_size: 8,
        concurrency: 8,
        lease: Duration::seconds(30),
        delivery_timeout: StdDuration::from_secs(2),
        idle_poll: StdDuration::from_millis(5),
        ..DispatcherConfig::default()
    };
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for (label, store) in [
        ("a", node_a.clone() as Arc<dyn Store>),
        ("b", node_b.clone() as Arc<dyn Store>),
    ] {
        let dispatcher = Dispatcher::new(
            store,
            Arc::new(Node {
                name: label.to_owned(),
                shared: shared.clone(),
            }),
            Arc::new(SystemClock),
            random.clone(),
            config.clone(),
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(async move {
            dispatcher
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        }));
    }
    let deadline = Instant::now() + StdDuration::from_secs(120);
    loop {
        let unique: HashSet<uuid::Uuid> = shared
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.id)
            .collect();
        if unique.len() >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} arrived",
            unique.len()
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        tokio::time::timeout(StdDuration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(node_b.outbox_depth().await.unwrap(), 0);
    assert_eq!(
        *shared.concurrent.lock().unwrap(),
        0,
        "a claim was delivered twice at once"
    );
    let deliveries = shared.deliveries.lock().unwrap().clone();
    let by_node: HashMap<&str, usize> = deliveries.iter().fold(HashMap::new(), |mut m, (n, _)| {
        *m.entry(n.as_str()).or_default() += 1;
        m
    });
    assert_eq!(by_node.len(), 2, "both dispatchers took part: {by_node:?}");
    let mut seen = HashSet::new();
    let mut next: HashMap<String, usize> = HashMap::new();
    for (_, event) in &deliveries {
        if !seen.insert(event.id) {
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
    assert_eq!(seen.len(), total);
    eprintln!(
        "postgres: {} deliveries of {total} events by two dispatchers {by_node:?}",
        deliveries.len()
    );
    node_a.close().await;
    node_b.close().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();
}
