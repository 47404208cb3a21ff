//! Sessions created straight in the store for the memory measurement (a login costs an
//! argon2id verification, so 100 000 of them would take most of an hour here), and the one SQL
//! statement the run needs outside the store: creating and dropping its PostgreSQL database.

use ciam_core::contact::EmailAddress;
use ciam_core::ids::SessionId;
use ciam_core::secrets::SecretToken;
use ciam_core::sessions::{AuthMethod, Session};
use ciam_core::{ChangeSet, Clock as _, OsRandom, Store as _, SystemClock};
use ciam_store::SqlStore;
use sqlx::Connection as _;

use crate::{BenchError, Result};

/// Creates `count` live sessions of the person with `email` and returns their tokens (what
/// the session cookie carries).
pub async fn create(database_url: &str, email: &str, count: usize) -> Result<Vec<String>> {
    let store = SqlStore::open(database_url)
        .await
        .map_err(|error| BenchError::Step(format!("opening the store: {error}")))?;
    let email = EmailAddress::parse(email)
        .map_err(|error| BenchError::Step(format!("{email}: {error}")))?;
    let identity = store
        .identity_by_email(&email)
        .await
        .map_err(|error| BenchError::Step(format!("looking up {email:?}: {error}")))?
        .ok_or_else(|| BenchError::Step(format!("{email:?} not in the store")))?;
    let now = SystemClock.now();
    let random = OsRandom;
    let mut tokens = Vec::with_capacity(count);
    let mut remaining = count;
    while remaining > 0 {
        let chunk = remaining.min(1000);
        let mut changes = ChangeSet::new();
        for _ in 0..chunk {
            let token = SecretToken::generate(&random);
            changes.put(Session {
                id: SessionId::generate(&random),
                version: 0,
                token_hash: token.hash(),
                identity: identity.id,
                methods: vec![AuthMethod::Pwd],
                created_at: now,
                last_seen_at: now,
                idle_expires_at: now + chrono::Duration::hours(2),
                absolute_expires_at: now + chrono::Duration::hours(12),
                revoked: None,
            });
            tokens.push(token.expose().to_owned());
        }
        store
            .commit(changes)
            .await
            .map_err(|error| BenchError::Step(format!("storing sessions: {error}")))?;
        remaining -= chunk;
    }
    Ok(tokens)
}

/// Runs one statement on the PostgreSQL server at `url`.
pub async fn postgres_execute(url: &str, statement: &str) -> Result<()> {
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .map_err(|error| BenchError::Step(format!("PostgreSQL {url}: {error}")))?;
    sqlx::query(statement)
        .execute(&mut connection)
        .await
        .map_err(|error| BenchError::Step(format!("{statement}: {error}")))?;
    let _ = connection.close().await;
    Ok(())
}
