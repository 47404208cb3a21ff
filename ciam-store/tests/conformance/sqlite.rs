//! `SqlStore` on SQLite (a fresh temporary database file per check) against the conformance
//! suite, plus SQLite-specific checks: file creation, reopening, schema versions.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail the test loudly"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ciam_core::store::{Store, StoreErrorKind};
use ciam_store::{SqlStore, SqlStoreOptions};

/// A directory for this test process under cargo's target tmp dir; directories of test
/// processes that are gone are removed first.
pub(crate) fn scratch_dir() -> PathBuf {
    static CLEANED: std::sync::Once = std::sync::Once::new();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ciam-store-sqlite");
    CLEANED.call_once(|| {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let alive = PathBuf::from("/proc").join(&name).exists();
                if !alive || name.parse::<u32>().is_err() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
    let dir = base.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh database file path.
pub(crate) fn fresh_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    scratch_dir().join(format!("store-{}.db", NEXT.fetch_add(1, Ordering::SeqCst)))
}

pub(crate) fn url_of(path: &std::path::Path) -> String {
    format!("sqlite:{}", path.display())
}

async fn sqlite_store() -> Arc<dyn Store> {
    Arc::new(SqlStore::open(&url_of(&fresh_path())).await.unwrap())
}

ciam_store::conformance_tests!(sqlite_store);

#[tokio::test]
async fn the_file_is_created_and_data_survives_reopening() {
    let path = fresh_path();
    assert!(!path.exists());
    let store = SqlStore::open(&url_of(&path)).await.unwrap();
    assert!(path.exists());
    assert!(
        store
            .consume_once(
                "k",
                chrono::DateTime::UNIX_EPOCH,
                chrono::DateTime::<chrono::Utc>::MAX_UTC
            )
            .await
            .unwrap()
    );
    store.close().await;
    let store = SqlStore::open(&url_of(&path)).await.unwrap();
    assert!(
        !store
            .consume_once(
                "k",
                chrono::DateTime::UNIX_EPOCH,
                chrono::DateTime::<chrono::Utc>::MAX_UTC
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.schema_version().await.unwrap(),
        SqlStore::supported_schema_version()
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let path = fresh_path();
    let store = SqlStore::open(&url_of(&path)).await.unwrap();
    store.close().await;
    // Pretend a newer ciam-store applied migration 9999.
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&url_of(&path))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let error = SqlStore::open(&url_of(&path)).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Corrupt);
    assert!(
        error
            .to_string()
            .contains("database schema version 9999 is newer than this ciam-store supports"),
        "{error}"
    );
}

#[tokio::test]
async fn in_memory_databases_work() {
    let store = SqlStore::open("sqlite::memory:").await.unwrap();
    assert_eq!(
        store
            .counter("x", chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn options_and_bad_urls() {
    let path = fresh_path();
    let store = SqlStore::open_with(SqlStoreOptions::new(url_of(&path)).max_connections(2))
        .await
        .unwrap();
    assert!(format!("{store:?}").contains("Sqlite"));
    let error = SqlStore::open("mysql://nowhere").await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable);
}

/// The store's own read connections (one trip to SQLite's thread per read): more reads at once
/// than connections wait for one, reads abandoned half way give theirs up, and after `close`
/// reads fail as unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_share_a_few_connections_and_end_with_close() {
    let path = fresh_path();
    let store = Arc::new(
        SqlStore::open_with(
            SqlStoreOptions::new(url_of(&path))
                .max_connections(2)
                .acquire_timeout(std::time::Duration::from_secs(5)),
        )
        .await
        .unwrap(),
    );
    let now = chrono::DateTime::UNIX_EPOCH;
    store
        .increment_counter("reads", now, now + chrono::Duration::days(1))
        .await
        .unwrap();
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let store = store.clone();
        reads.spawn(async move { store.counter("reads", now).await });
    }
    while let Some(read) = reads.join_next().await {
        assert_eq!(read.unwrap().unwrap(), 1);
    }
    // Reads dropped before they finish (their futures polled once, then abandoned).
    for _ in 0..32 {
        let read = store.counter("reads", now);
        let _ = tokio::time::timeout(std::time::Duration::ZERO, read).await;
    }
    for _ in 0..8 {
        assert_eq!(store.counter("reads", now).await.unwrap(), 1);
    }
    store.close().await;
    assert_eq!(
        store.counter("reads", now).await.unwrap_err().kind(),
        StoreErrorKind::Unavailable
    );
}
