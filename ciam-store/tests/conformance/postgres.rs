//! `SqlStore` on PostgreSQL against the conformance suite.
//!
//! The server comes from `CIAM_TEST_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`). The test creates a fresh, uniquely named
//! database for the run (one schema per check inside it) and drops it afterwards. Without the
//! variable the test is skipped with a message, except under `CI=true`, where that is a failure.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail the test loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ciam_core::store::{Store, StoreErrorKind};
use ciam_store::{SqlStore, SqlStoreOptions};
use sqlx::Connection as _;

/// The environment variable naming the PostgreSQL server for tests.
pub(crate) const URL_VAR: &str = "CIAM_TEST_POSTGRES_URL";

/// The server URL, or `None` (with a visible message) to skip; panics under `CI=true`.
pub(crate) fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{URL_VAR} is not set, and under CI=true the PostgreSQL tests must run");
            }
            eprintln!(
                "SKIPPED {test}: set {URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres \
                 to run the PostgreSQL tests"
            );
            None
        }
    }
}

/// `url` with its database replaced by `database`.
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

/// A database created for one test run and dropped by [`TestDatabase::drop_now`].
pub(crate) struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    pub(crate) async fn create(server: &str, purpose: &str) -> Self {
        let nanos = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("ciam_test_{purpose}_{}_{nanos}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(server).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        Self {
            server: server.to_owned(),
            name,
        }
    }

    pub(crate) fn url(&self) -> String {
        with_database(&self.server, &self.name)
    }

    pub(crate) async fn drop_now(self) {
        let mut admin = sqlx::PgConnection::connect(&self.server).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

/// Every check of the suite, each on a fresh schema of one fresh database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_suite_on_postgres() {
    let Some(server) = server_url("conformance_suite_on_postgres") else {
        return;
    };
    let database = TestDatabase::create(&server, "conformance").await;
    let url = database.url();
    let next = Arc::new(AtomicUsize::new(0));
    let previous: Arc<tokio::sync::Mutex<Option<SqlStore>>> = Arc::default();
    let factory = {
        let url = url.clone();
        move || {
            let url = url.clone();
            let next = next.clone();
            let previous = previous.clone();
            async move {
                // The previous check is over: free its connections.
                if let Some(store) = previous.lock().await.take() {
                    store.close().await;
                }
                let schema = format!("check_{}", next.fetch_add(1, Ordering::SeqCst));
                let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let separator = if url.contains('?') { '&' } else { '?' };
                let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
                let store = SqlStore::open_with(SqlStoreOptions::new(scoped).max_connections(6))
                    .await
                    .unwrap();
                *previous.lock().await = Some(store.clone());
                Arc::new(store) as Arc<dyn Store>
            }
        }
    };
    let failures = ciam_store::conformance::run_all_collecting(factory).await;
    database.drop_now().await;
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "{} checks failed:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[tokio::test]
async fn postgres_refuses_a_newer_schema() {
    let Some(server) = server_url("postgres_refuses_a_newer_schema") else {
        return;
    };
    let database = TestDatabase::create(&server, "schema").await;
    let store = SqlStore::open(&database.url()).await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        SqlStore::supported_schema_version()
    );
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&database.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let result = SqlStore::open(&database.url()).await;
    database.drop_now().await;
    let error = result.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert!(
        error
            .to_string()
            .contains("database schema version 9999 is newer than this ciam-store supports"),
        "{error}"
    );
}

#[test]
fn database_names_are_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
