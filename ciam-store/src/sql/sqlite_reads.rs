//! The read connections of a SQLite file: sqlx connections that the store hands out itself.
//!
//! sqlx's pool checks every connection it takes back with a ping, and it does so in a task of
//! its own; on SQLite that ping is a second trip to the connection's worker thread after every
//! query, and the task one more wake-up. A read through these connections is one trip: a
//! connection is taken (waiting for one when all are busy, up to the acquire timeout), the
//! statement runs, and the connection goes back only when the statement ran to the end. A read
//! that fails or is abandoned half way (its future dropped) closes its connection instead, so
//! a connection that comes back is always idle: no statement open, no transaction.

use std::sync::Mutex;
use std::time::Duration;

use ciam_core::store::StoreError;
use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::db::map_error;

/// Up to `max` read-only connections to one SQLite file.
pub(crate) struct SqliteReaders {
    connect: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: Semaphore,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for SqliteReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReaders")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl SqliteReaders {
    /// Opens the first connection (so that a bad path fails here, not at the first read).
    pub(crate) async fn open(
        connect: SqliteConnectOptions,
        max: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let first = connect.connect().await.map_err(map_error)?;
        Ok(Self {
            connect,
            idle: Mutex::new(vec![first]),
            permits: Semaphore::new(usize::try_from(max.max(1)).unwrap_or(1)),
            acquire_timeout,
        })
    }

    /// A connection for one read: an idle one, or a new one while fewer than `max` are open.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let permit = match tokio::time::timeout(self.acquire_timeout, self.permits.acquire()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StoreError::unavailable("the store is closed")),
            Err(_) => {
                return Err(StoreError::unavailable(
                    "timed out waiting for a read connection",
                ));
            }
        };
        let idle = self.take_idle();
        let connection = match idle {
            Some(connection) => connection,
            None => self.connect.connect().await.map_err(map_error)?,
        };
        Ok(Lease {
            readers: self,
            connection,
            _permit: permit,
        })
    }

    fn take_idle(&self) -> Option<SqliteConnection> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    /// Closes every idle connection; reads after this fail with `Unavailable`, and connections
    /// still leased are closed when their read ends.
    pub(crate) async fn close(&self) {
        self.permits.close();
        while let Some(connection) = self.take_idle() {
            // Closing a read-only connection cannot lose anything; an error here only means
            // its worker is already gone.
            let _ = sqlx::Connection::close(connection).await;
        }
    }
}

/// One connection, taken for one read; dropped without [`Lease::give_back`], it closes.
pub(crate) struct Lease<'a> {
    readers: &'a SqliteReaders,
    connection: SqliteConnection,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection to run the statement on.
    pub(crate) fn connection(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }

    /// The statement ran to the end: the connection is idle and goes back for the next read
    /// (unless the store was closed meanwhile).
    pub(crate) fn give_back(self) {
        if !self.readers.permits.is_closed() {
            self.readers
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(self.connection);
        }
    }
}
