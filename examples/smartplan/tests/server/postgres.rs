//! The server on PostgreSQL: the API routes, and two app instances (two pools, as two nodes)
//! on one database — a session made on one is valid on the other, and the outbox is delivered
//! once through the CRM webhook dispatchers of both.
//!
//! The server comes from `CIAM_TEST_POSTGRES_URL`; each test creates its own database and drops
//! it afterwards. Without the variable the tests are skipped with a message, except under
//! `CI=true`, where that is a failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::{Method, StatusCode};
use ciam_core::sessions::AuthMethod;
use ciam_store::SqlStore;
use serde_json::json;
use smartplan::web::SignedIn;
use sqlx::Connection as _;

use crate::support::{self, Backend, Options};

const URL_VAR: &str = "CIAM_TEST_POSTGRES_URL";

pub(crate) struct Database {
    admin: sqlx::PgConnection,
    name: String,
    pub(crate) url: String,
}

impl Database {
    pub(crate) async fn drop(mut self) {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut self.admin)
        .await
        .unwrap();
        let _ = self.admin.close().await;
    }
}

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

pub(crate) async fn database(label: &str) -> Option<Database> {
    let server = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "{URL_VAR} is not set, and under CI=true the PostgreSQL tests must run"
            );
            eprintln!("SKIPPED smartplan {label} on PostgreSQL: set {URL_VAR} to run it");
            return None;
        }
    };
    let nanos = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("smartplan_test_{label}_{}_{nanos}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    Some(Database {
        url: with_database(&server, &name),
        admin,
        name,
    })
}

pub(crate) async fn node(url: &str, seed: bool) -> support::TestApp {
    let store = Arc::new(SqlStore::open(url).await.unwrap());
    support::build(Options {
        backend: Backend::Store(store),
        seed: seed.then_some(smartplan::demo::SeedOptions {
            jeremy: smartplan::demo::JeremyAs::ContactPerson,
            ..smartplan::demo::SeedOptions::default()
        }),
        // Each node its own randomness, as two processes have: with one seed both dispatchers
        // drew the same consumer name and shared one outbox lease (an event went out twice).
        random_seed: if seed { 42 } else { 43 },
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_on_postgres() {
    let Some(db) = database("api").await else {
        return;
    };
    let app = node(&db.url, true).await;
    let key = smartplan::api::keys::create(
        &app.state.store,
        &ciam_core::SeededRandom::new(3),
        app.clock_now(),
        "crm",
        [
            ciam_core::authz::IntegrationScope::Provisioning,
            ciam_core::authz::IntegrationScope::Invitations,
            ciam_core::authz::IntegrationScope::Read,
        ]
        .into_iter()
        .collect(),
    )
    .await
    .unwrap()
    .key;
    let mut client = app.client();
    assert_eq!(client.get("/readyz").await.status, StatusCode::OK);
    let put = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9",
            Some(&key),
            Some(&json!({"name": "Nordic Heat Oy"})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let city = client
        .api(
            Method::GET,
            "/api/v1/organizations/ACC-1001",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(city.status, StatusCode::OK, "{}", city.body);
    assert!(city.body.contains("jeremy.mills@citygroup.example"));
    let bad = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-10",
            Some(&key),
            Some(&json!({"name": "X", "unknown": 1})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body =
        json!({"crm_account_id": "ACC-1001", "items": [{"email": "mary.major@citygroup.example"}]});
    let mut results = Vec::new();
    for _ in 0..2 {
        let request = axum::http::Request::post("/api/v1/invitations")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "pg-1")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let response = client.send(request).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.body);
        results.push(response.json());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0]["summary"]["created"], 1);
    db.drop().await;
}

/// Counts webhook deliveries by `webhook-id`.
async fn receiver() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counter = seen.clone();
    let router = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let counter = counter.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                *counter.lock().unwrap().entry(id).or_default() += 1;
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{address}/hooks"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_sessions_and_deliver_the_outbox_once() {
    let Some(db) = database("nodes").await else {
        return;
    };
    let a = node(&db.url, true).await;
    let b = node(&db.url, false).await;

    // A session started on node A is valid on node B (through the server's extractor).
    let jeremy = a.cast().jeremy.unwrap();
    let started = a
        .state
        .ciam
        .sessions()
        .start(jeremy, vec![AuthMethod::Pwd])
        .await
        .unwrap();
    let request = axum::http::Request::get("/account")
        .header(
            "cookie",
            format!("smartplan_session={}", started.token.expose()),
        )
        .body(())
        .unwrap();
    let (mut parts, ()) = request.into_parts();
    let signed_in = SignedIn::from_request_parts(&mut parts, &b.state)
        .await
        .expect("node B accepts node A's session");
    assert_eq!(signed_in.user.identity, jeremy);

    // The outbox: both nodes run a dispatcher for the same endpoint; each event arrives once.
    let (url, seen) = receiver().await;
    let endpoint = smartplan::config::WebhookConfig {
        name: "crm".into(),
        url: url::Url::parse(&url).unwrap(),
        secret: smartplan::config::Redacted::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    };
    let depth_before = a.state.store.outbox_depth().await.unwrap();
    assert!(depth_before > 0, "seeding produced events");
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let mut consumers = Vec::new();
    for app in [&a, &b] {
        let (_, dispatcher) =
            smartplan::webhooks::dispatchers(&app.state.ciam, std::slice::from_ref(&endpoint))
                .unwrap()
                .remove(0);
        // Each node leases under its own name: with one name, a node would take the other's
        // claimed entries as its own and deliver them again.
        assert!(dispatcher.consumer().starts_with("webhook:crm:"));
        consumers.push(dispatcher.consumer().to_owned());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(async move {
            dispatcher
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await
        }));
    }
    assert_ne!(consumers[0], consumers[1], "one lease owner per node");
    // The fixed clock stands still; deliveries need none of it to move. Bounded wait.
    for _ in 0..600 {
        if a.state.store.outbox_depth().await.unwrap() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        a.state.store.outbox_depth().await.unwrap(),
        0,
        "everything delivered"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.values().all(|count| *count == 1),
        "an event was delivered twice: {seen:?}"
    );
    db.drop().await;
}
