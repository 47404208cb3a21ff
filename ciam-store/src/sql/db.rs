//! A thin layer over the two sqlx drivers, so that the store logic is written once.
//!
//! Queries are written with `?` placeholders; for PostgreSQL they are rewritten to `$1, $2, ...`.
//! Values are only 64-bit integers and text (both nullable), which both backends store the same
//! way. Driver errors are mapped to [`StoreError`] here and never leave this module.

use ciam_core::store::{StoreError, unique_fields};

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgPool, PgRow};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{SqlitePool, SqliteRow};

/// A bound query argument.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    /// A (nullable) 64-bit integer.
    Int(Option<i64>),
    /// A (nullable) text.
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Self::Int(Some(value))
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Self::Int(value)
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Self::Text(Some(value))
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Self::Text(Some(value.to_owned()))
    }
}

impl From<&String> for Arg {
    fn from(value: &String) -> Self {
        Self::Text(Some(value.clone()))
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Self::Text(value)
    }
}

impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Self {
        Self::Text(value.map(str::to_owned))
    }
}

/// Builds a `Vec<Arg>` from values convertible to [`Arg`].
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::sql::db::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// Which backend a pool talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite,
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    Postgres,
}

/// A row read back: columns by index.
pub(crate) enum DbRow {
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteRow),
    #[cfg(feature = "postgres")]
    Postgres(PgRow),
}

impl DbRow {
    /// A non-null text column.
    pub(crate) fn text(&self, index: usize) -> Result<String, StoreError> {
        self.opt_text(index)?
            .ok_or_else(|| StoreError::corrupt(format!("column {index} is unexpectedly null")))
    }

    /// A nullable text column.
    pub(crate) fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        use sqlx::Row as _;
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(row) => row.try_get::<Option<String>, _>(index),
            #[cfg(feature = "postgres")]
            Self::Postgres(row) => row.try_get::<Option<String>, _>(index),
        }
        .map_err(decode_error)
    }

    /// A non-null integer column.
    pub(crate) fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.opt_int(index)?
            .ok_or_else(|| StoreError::corrupt(format!("column {index} is unexpectedly null")))
    }

    /// A nullable integer column.
    pub(crate) fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        use sqlx::Row as _;
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(row) => row.try_get::<Option<i64>, _>(index),
            #[cfg(feature = "postgres")]
            Self::Postgres(row) => row.try_get::<Option<i64>, _>(index),
        }
        .map_err(decode_error)
    }
}

fn decode_error(error: sqlx::Error) -> StoreError {
    StoreError::corrupt(format!("cannot decode a column: {error}"))
}

/// Rewrites `?` placeholders to `$n` (PostgreSQL). The queries of this crate never contain a
/// `?` inside a literal.
#[cfg(feature = "postgres")]
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Int(value) => query.bind(value),
                Arg::Text(value) => query.bind(value),
            };
        }
        query
    }};
}

/// A pool of connections (reads and single-statement writes outside a transaction).
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

impl Pool {
    /// The backend.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a query and returns all rows.
    pub(crate) async fn fetch_all(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<DbRow>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => {
                let query = bind_all!(sqlx::query(sql), args);
                let rows = query.fetch_all(pool).await.map_err(map_error)?;
                Ok(rows.into_iter().map(DbRow::Sqlite).collect())
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                let sql = numbered(sql);
                let query = bind_all!(sqlx::query(&sql), args);
                let rows = query.fetch_all(pool).await.map_err(map_error)?;
                Ok(rows.into_iter().map(DbRow::Postgres).collect())
            }
        }
    }

    /// Runs a query and returns its first row, if any.
    pub(crate) async fn fetch_optional(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DbRow>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => {
                let query = bind_all!(sqlx::query(sql), args);
                let row = query.fetch_optional(pool).await.map_err(map_error)?;
                Ok(row.map(DbRow::Sqlite))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                let sql = numbered(sql);
                let query = bind_all!(sqlx::query(&sql), args);
                let row = query.fetch_optional(pool).await.map_err(map_error)?;
                Ok(row.map(DbRow::Postgres))
            }
        }
    }

    /// Runs a statement and returns the number of rows it affected.
    pub(crate) async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => {
                let query = bind_all!(sqlx::query(sql), args);
                Ok(query
                    .execute(pool)
                    .await
                    .map_err(map_error)?
                    .rows_affected())
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                let sql = numbered(sql);
                let query = bind_all!(sqlx::query(&sql), args);
                Ok(query
                    .execute(pool)
                    .await
                    .map_err(map_error)?
                    .rows_affected())
            }
        }
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`, so that the write lock is
    /// taken up front (waiting up to the busy timeout) instead of failing half way.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => Ok(Tx::Sqlite(
                pool.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(map_error)?,
            )),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => Ok(Tx::Postgres(pool.begin().await.map_err(map_error)?)),
        }
    }

    /// Closes the pool.
    pub(crate) async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// Where the store's reads go: the pool (PostgreSQL; an in-memory SQLite database, whose one
/// connection is the database), or the read connections of a SQLite file.
#[derive(Clone, Debug)]
pub(crate) enum Reads {
    Pool(Pool),
    #[cfg(feature = "sqlite")]
    Sqlite(std::sync::Arc<super::sqlite_reads::SqliteReaders>),
}

impl Reads {
    /// The backend.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Pool(pool) => pool.backend(),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs a query and returns all rows.
    pub(crate) async fn fetch_all(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<DbRow>, StoreError> {
        match self {
            Self::Pool(pool) => pool.fetch_all(sql, args).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(readers) => {
                let mut lease = readers.lease().await?;
                let query = bind_all!(sqlx::query(sql), args);
                let rows = query
                    .fetch_all(lease.connection())
                    .await
                    .map_err(map_error)?;
                lease.give_back();
                Ok(rows.into_iter().map(DbRow::Sqlite).collect())
            }
        }
    }

    /// Runs a query and returns its first row, if any.
    pub(crate) async fn fetch_optional(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DbRow>, StoreError> {
        match self {
            Self::Pool(pool) => pool.fetch_optional(sql, args).await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(readers) => {
                let mut lease = readers.lease().await?;
                let query = bind_all!(sqlx::query(sql), args);
                // `fetch_optional` stops after the first row and resets the statement, so the
                // connection is idle again once it returns.
                let row = query
                    .fetch_optional(lease.connection())
                    .await
                    .map_err(map_error)?;
                lease.give_back();
                Ok(row.map(DbRow::Sqlite))
            }
        }
    }

    /// Closes the connections.
    pub(crate) async fn close(&self) {
        match self {
            Self::Pool(pool) => pool.close().await,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(readers) => readers.close().await,
        }
    }
}

/// An open transaction. Dropping it without [`Tx::commit`] rolls it back.
pub(crate) enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// Runs a query and returns all rows.
    pub(crate) async fn fetch_all(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<DbRow>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => {
                let query = bind_all!(sqlx::query(sql), args);
                let rows = query.fetch_all(&mut **tx).await.map_err(map_error)?;
                Ok(rows.into_iter().map(DbRow::Sqlite).collect())
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => {
                let sql = numbered(sql);
                let query = bind_all!(sqlx::query(&sql), args);
                let rows = query.fetch_all(&mut **tx).await.map_err(map_error)?;
                Ok(rows.into_iter().map(DbRow::Postgres).collect())
            }
        }
    }

    /// Runs a query and returns its first row, if any.
    pub(crate) async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DbRow>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => {
                let query = bind_all!(sqlx::query(sql), args);
                let row = query.fetch_optional(&mut **tx).await.map_err(map_error)?;
                Ok(row.map(DbRow::Sqlite))
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => {
                let sql = numbered(sql);
                let query = bind_all!(sqlx::query(&sql), args);
                let row = query.fetch_optional(&mut **tx).await.map_err(map_error)?;
                Ok(row.map(DbRow::Postgres))
            }
        }
    }

    /// Runs a statement and returns the number of rows it affected.
    pub(crate) async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => {
                let query = bind_all!(sqlx::query(sql), args);
                Ok(query
                    .execute(&mut **tx)
                    .await
                    .map_err(map_error)?
                    .rows_affected())
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => {
                let sql = numbered(sql);
                let query = bind_all!(sqlx::query(&sql), args);
                Ok(query
                    .execute(&mut **tx)
                    .await
                    .map_err(map_error)?
                    .rows_affected())
            }
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => tx.commit().await.map_err(map_error),
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => tx.commit().await.map_err(map_error),
        }
    }

    /// Rolls back (also what dropping does, but this waits for it).
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(tx) => tx.rollback().await.map_err(map_error),
            #[cfg(feature = "postgres")]
            Self::Postgres(tx) => tx.rollback().await.map_err(map_error),
        }
    }
}

/// Unique indexes: (table, first column) as SQLite reports them, index name as PostgreSQL
/// reports it, and the field of the port.
const UNIQUE_INDEXES: &[(&str, &str, &str, &str)] = &[
    (
        "identities",
        "email_normalized",
        "uq_identities_email",
        unique_fields::IDENTITY_EMAIL,
    ),
    (
        "identities",
        "crm_contact_id",
        "uq_identities_crm_contact_id",
        unique_fields::IDENTITY_CRM_CONTACT_ID,
    ),
    (
        "organizations",
        "crm_account_id",
        "uq_organizations_crm_account_id",
        unique_fields::ORGANIZATION_CRM_ACCOUNT_ID,
    ),
    (
        "organizations",
        "join_code",
        "uq_organizations_join_code",
        unique_fields::ORGANIZATION_JOIN_CODE,
    ),
    (
        "organization_email_domains",
        "domain",
        "uq_organization_email_domains_domain",
        unique_fields::ORGANIZATION_EMAIL_DOMAIN,
    ),
    (
        "contracts",
        "crm_contract_id",
        "uq_contracts_crm_contract_id",
        unique_fields::CONTRACT_CRM_CONTRACT_ID,
    ),
    (
        "memberships",
        "identity_id",
        "uq_memberships_membership",
        unique_fields::MEMBERSHIP,
    ),
    (
        "services",
        "key",
        "uq_services_key",
        unique_fields::SERVICE_KEY,
    ),
    (
        "business_roles",
        "key",
        "uq_business_roles_key",
        unique_fields::BUSINESS_ROLE_KEY,
    ),
    (
        "invitations",
        "token_hash",
        "uq_invitations_token",
        unique_fields::INVITATION_TOKEN,
    ),
    (
        "sessions",
        "token_hash",
        "uq_sessions_token",
        unique_fields::SESSION_TOKEN,
    ),
    (
        "credentials",
        "provider",
        "uq_credentials_federated_link",
        unique_fields::FEDERATED_LINK,
    ),
    (
        "settings",
        "kind",
        "uq_settings_key",
        unique_fields::SETTING_KEY,
    ),
];

/// The port's field for a unique violation, from SQLite's message
/// (`UNIQUE constraint failed: table.column, ...`) or PostgreSQL's constraint name.
fn unique_field(message: &str, constraint: Option<&str>) -> Option<&'static str> {
    if let Some(name) = constraint {
        return UNIQUE_INDEXES
            .iter()
            .find(|(_, _, index, _)| *index == name)
            .map(|(_, _, _, field)| *field);
    }
    let columns = message.split_once("constraint failed:")?.1.trim();
    let first = columns.split(',').next()?.trim();
    let (table, column) = first.split_once('.')?;
    UNIQUE_INDEXES
        .iter()
        .find(|(t, c, _, _)| *t == table && *c == column)
        .map(|(_, _, _, field)| *field)
}

/// Maps a driver error to the port's error kinds.
pub(crate) fn map_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if db.is_unique_violation() {
                return match unique_field(db.message(), db.constraint()) {
                    Some(field) => StoreError::unique(field),
                    // A primary key: the record was created concurrently.
                    None => StoreError::conflict("a record with the same id"),
                };
            }
            match code.as_str() {
                // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6), extended codes 261, 262, 517.
                "5" | "6" | "261" | "262" | "517" => {
                    StoreError::unavailable(format!("database is busy: {}", db.message()))
                }
                // PostgreSQL: serialization failure, deadlock.
                "40001" | "40P01" => StoreError::conflict("a record (serialization failure)"),
                // PostgreSQL: connection exceptions, insufficient resources, admin shutdown.
                c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
                    StoreError::unavailable(db.message())
                }
                _ => StoreError::unavailable(format!("database error: {}", db.message())),
            }
        }
        sqlx::Error::RowNotFound => StoreError::not_found("row"),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::corrupt(error.to_string()),
        _ => StoreError::unavailable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_messages_name_the_field() {
        assert_eq!(
            unique_field(
                "UNIQUE constraint failed: identities.email_normalized",
                None
            ),
            Some(unique_fields::IDENTITY_EMAIL)
        );
        assert_eq!(
            unique_field(
                "UNIQUE constraint failed: credentials.provider, credentials.subject",
                None
            ),
            Some(unique_fields::FEDERATED_LINK)
        );
        assert_eq!(
            unique_field("UNIQUE constraint failed: identities.id", None),
            None
        );
    }

    #[test]
    fn postgres_constraints_name_the_field() {
        assert_eq!(
            unique_field("duplicate key", Some("uq_memberships_membership")),
            Some(unique_fields::MEMBERSHIP)
        );
        assert_eq!(unique_field("duplicate key", Some("identities_pkey")), None);
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
