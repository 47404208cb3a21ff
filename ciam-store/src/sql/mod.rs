//! `SqlStore`: the `Store` port over SQLite (embedded, the default) and PostgreSQL (shared by
//! several server nodes), with sqlx.
//!
//! Layout: one table per record kind (`id`, `version`, the record as JSON in `data`, plus the
//! columns that lookups, unique constraints and ordering need), an `events` table (the audit log,
//! `sequence` in commit order) and an `outbox` table written in the same transaction. Embedded
//! migrations (`migrations/sqlite`, `migrations/postgres`) run on open; a database that has
//! applied a migration this code does not know is refused.

mod db;
mod records;
#[cfg(feature = "sqlite")]
mod sqlite_reads;
mod store;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ciam_core::store::StoreError;

use db::{Pool, Reads, args};

/// Options for [`SqlStore::open_with`].
#[derive(Clone, Debug)]
pub struct SqlStoreOptions {
    url: String,
    max_connections: u32,
    busy_timeout: Duration,
    acquire_timeout: Duration,
    migrate: bool,
}

impl SqlStoreOptions {
    /// Options for a database URL: `sqlite:path/to/file.db` (created when missing),
    /// `sqlite::memory:`, or `postgres://user@host:5432/database`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            busy_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(30),
            migrate: true,
        }
    }

    /// The most connections to keep open (readers, for SQLite; all, for PostgreSQL). Default 8.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long SQLite waits for another process's write lock. Default 30 s.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long to wait for a free connection before failing with `Unavailable`. Default 30 s.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether to apply pending migrations on open (default `true`). With `false`, a database
    /// whose schema is behind is refused instead.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}

/// The `Store` port over SQLite or PostgreSQL. Cheap to clone (the pools are shared).
///
/// SQLite: the file is created when missing and opened in WAL mode with foreign keys on,
/// `synchronous = NORMAL` and a busy timeout. Writes go through one connection with
/// `BEGIN IMMEDIATE` (SQLite allows one writer at a time), reads through a pool of readers.
///
/// PostgreSQL: one pool; outbox claims use `FOR UPDATE SKIP LOCKED`, so several dispatchers on
/// several nodes never hold the same entry.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Reads.
    read: Reads,
    /// Transactions and single-statement writes (the same pool as `read` on PostgreSQL).
    write: Pool,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.inner.write.backend())
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Opens (and migrates) the database at `url`: `sqlite:path/to/file.db` (created when
    /// missing), `sqlite::memory:`, or `postgres://user@host:5432/database`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(SqlStoreOptions::new(url)).await
    }

    /// Opens the database with options.
    pub async fn open_with(options: SqlStoreOptions) -> Result<Self, StoreError> {
        let url = options.url.as_str();
        if url.starts_with("sqlite:") {
            return open_sqlite(&options).await;
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return open_postgres(&options).await;
        }
        Err(StoreError::unavailable(
            "unsupported database URL (expected sqlite:... or postgres://...)",
        ))
    }

    /// Closes every connection; further calls fail with `Unavailable`.
    pub async fn close(&self) {
        self.inner.read.close().await;
        self.inner.write.close().await;
    }

    /// Refreshes the query planner's statistics (`ANALYZE`); worth running after a bulk import.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        self.inner.write.execute("ANALYZE", args![]).await?;
        Ok(())
    }

    /// The schema version of the database (the newest applied migration).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let row = self
            .inner
            .read
            .fetch_optional("SELECT MAX(version) FROM _sqlx_migrations", args![])
            .await?;
        Ok(row
            .map(|r| r.opt_int(0))
            .transpose()?
            .flatten()
            .unwrap_or(0))
    }

    /// The newest schema version this code knows.
    pub fn supported_schema_version() -> i64 {
        latest_version()
    }
}

#[cfg(feature = "sqlite")]
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
#[cfg(feature = "postgres")]
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

fn latest_version() -> i64 {
    #[cfg(feature = "sqlite")]
    let migrator = &SQLITE_MIGRATIONS;
    #[cfg(all(feature = "postgres", not(feature = "sqlite")))]
    let migrator = &POSTGRES_MIGRATIONS;
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

fn migrate_error(error: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    match error {
        M::VersionMissing(version) => newer_schema(version),
        M::VersionMismatch(version) => StoreError::corrupt(format!(
            "migration {version} was applied with different contents than this ciam-store has"
        )),
        M::Dirty(version) => StoreError::corrupt(format!(
            "migration {version} failed part way earlier; repair the database by hand"
        )),
        M::Execute(e) => db::map_error(e),
        other => StoreError::unavailable(format!("cannot migrate the database: {other}")),
    }
}

fn newer_schema(version: i64) -> StoreError {
    StoreError::corrupt(format!(
        "database schema version {version} is newer than this ciam-store supports \
         (newest known: {}); upgrade ciam-store",
        latest_version()
    ))
}

/// Refuses a database that applied a migration this code does not know, then migrates.
async fn check_and_migrate(
    pool: &Pool,
    migrator: &sqlx::migrate::Migrator,
    table_exists_sql: &str,
    migrate: bool,
) -> Result<(), StoreError> {
    let exists = pool
        .fetch_optional(table_exists_sql, args![])
        .await?
        .is_some();
    if exists {
        let rows = pool
            .fetch_all(
                "SELECT version FROM _sqlx_migrations ORDER BY version",
                args![],
            )
            .await?;
        for row in rows {
            let version = row.int(0)?;
            if !migrator.version_exists(version) {
                return Err(newer_schema(version));
            }
        }
    }
    if migrate {
        match pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(p) => migrator.run(p).await.map_err(migrate_error)?,
            #[cfg(feature = "postgres")]
            Pool::Postgres(p) => migrator.run(p).await.map_err(migrate_error)?,
        }
    } else {
        let applied = if exists {
            pool.fetch_all("SELECT version FROM _sqlx_migrations", args![])
                .await?
                .len()
        } else {
            0
        };
        if applied < migrator.iter().count() {
            return Err(StoreError::unavailable(
                "the database schema is behind this ciam-store and migrations are disabled",
            ));
        }
    }
    Ok(())
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(options: &SqlStoreOptions) -> Result<SqlStore, StoreError> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };

    let memory = options.url.contains(":memory:") || options.url.contains("mode=memory");
    let connect = SqliteConnectOptions::from_str(&options.url)
        .map_err(|e| StoreError::unavailable(format!("bad SQLite URL: {e}")))?
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout)
        .synchronous(SqliteSynchronous::Normal);
    let connect = if memory {
        connect
    } else {
        connect.journal_mode(SqliteJournalMode::Wal)
    };
    // One writer connection: SQLite allows one writer at a time, so queueing writers here
    // (instead of letting them fight over the file lock) keeps commits from failing busy.
    // It keeps 64 MiB of pages (SQLite's default is 2 MiB): a commit of a thousand people
    // touches pages all over the indexes, and with the default cache the writer spilled and
    // re-read them for every commit (the import of a million people took four times as long).
    // Statement journals stay in memory.
    let writer_connect = connect
        .clone()
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory");
    // SQLite connections are in-process handles to a local file: there is no link that could
    // break between uses, so the pool does not ping one before handing it out (sqlx's default
    // would add a round trip to the connection's worker thread to every query).
    let write = SqlitePoolOptions::new()
        .test_before_acquire(false)
        .max_connections(1)
        .min_connections(if memory { 1 } else { 0 })
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(writer_connect)
        .await
        .map_err(db::map_error)?;
    let write = Pool::Sqlite(write);
    check_and_migrate(
        &write,
        &SQLITE_MIGRATIONS,
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        options.migrate,
    )
    .await?;
    let read = if memory {
        // Every connection to `:memory:` is its own database: share the one.
        Reads::Pool(write.clone())
    } else {
        // The store's own read connections: one trip to SQLite's worker thread per read
        // (sqlx's pool adds a ping after each; see `sqlite_reads`).
        Reads::Sqlite(Arc::new(
            sqlite_reads::SqliteReaders::open(
                connect.read_only(true),
                options.max_connections,
                options.acquire_timeout,
            )
            .await?,
        ))
    };
    Ok(SqlStore {
        inner: Arc::new(Inner { read, write }),
    })
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: &SqlStoreOptions) -> Result<SqlStore, StoreError> {
    Err(StoreError::unavailable(
        "this build of ciam-store has no SQLite support (feature `sqlite`)",
    ))
}

#[cfg(feature = "postgres")]
async fn open_postgres(options: &SqlStoreOptions) -> Result<SqlStore, StoreError> {
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    let connect = PgConnectOptions::from_str(&options.url)
        .map_err(|e| StoreError::unavailable(format!("bad PostgreSQL URL: {e}")))?;
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(db::map_error)?;
    let pool = Pool::Postgres(pool);
    check_and_migrate(
        &pool,
        &POSTGRES_MIGRATIONS,
        "SELECT 1 FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
        options.migrate,
    )
    .await?;
    Ok(SqlStore {
        inner: Arc::new(Inner {
            read: Reads::Pool(pool.clone()),
            write: pool,
        }),
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &SqlStoreOptions) -> Result<SqlStore, StoreError> {
    Err(StoreError::unavailable(
        "this build of ciam-store has no PostgreSQL support (feature `postgres`)",
    ))
}
