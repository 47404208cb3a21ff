//! Concurrency: atomic single use, no lost updates, exclusive leases.

use std::collections::BTreeSet;
use std::sync::Arc;

use ciam_core::StoreErrorKind;
use ciam_core::store::Store;
use tokio::task::JoinSet;

use super::builders::{Fixture, at};
use super::commit::put;
use super::outbox::seed;
use super::{Fail, Outcome, ensure, ensure_eq};

const TASKS: usize = 16;

fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, Fail> {
    result.map_err(|e| Fail(format!("a concurrent task failed: {e}")))
}

pub(crate) async fn concurrent_consume_once(store: Arc<dyn Store>) -> Outcome {
    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.consume_once("invitation:once", at(0), at(10)).await });
    }
    let mut wins = 0;
    while let Some(result) = tasks.join_next().await {
        if joined(result)?? {
            wins += 1;
        }
    }
    ensure_eq!(wins, 1, "concurrent consume_once calls that won");

    let mut tasks = JoinSet::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.increment_counter("attempts", at(0), at(10)).await });
    }
    let mut counts = BTreeSet::new();
    while let Some(result) = tasks.join_next().await {
        counts.insert(joined(result)??);
    }
    ensure_eq!(
        counts,
        (1..=u32::try_from(TASKS).unwrap_or(u32::MAX)).collect::<BTreeSet<_>>(),
        "concurrent increments each see their own count"
    );
    Ok(())
}

pub(crate) async fn concurrent_commits(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(60);
    let person = f.identity("ann@acme.example", "Ann", "Lee")?;
    store.commit(put([person.clone().into()])).await?;
    let mut read = person.clone();
    read.version = 1;
    let mut tasks = JoinSet::new();
    for n in 0..TASKS {
        let store = Arc::clone(&store);
        let mut update = read.clone();
        update.name.given = format!("Writer{n}");
        let mut changes = put([update.into()]);
        changes.event(f.event(None, Some(person.id), at(1)));
        tasks.spawn(async move { (n, store.commit(changes).await) });
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    while let Some(result) = tasks.join_next().await {
        match joined(result)? {
            (n, Ok(())) => winners.push(n),
            (_, Err(e)) if e.kind() == StoreErrorKind::Conflict => conflicts += 1,
            (_, Err(e)) => return Err(Fail(format!("expected Conflict, got {:?}: {e}", e.kind()))),
        }
    }
    ensure_eq!(
        winners.len(),
        1,
        "concurrent updates from one version that committed"
    );
    ensure_eq!(
        conflicts,
        TASKS - 1,
        "concurrent updates that got a Conflict"
    );
    let stored = store.identity(person.id).await?;
    ensure_eq!(
        stored.map(|i| (i.version, i.name.given)),
        winners.first().map(|n| (2, format!("Writer{n}"))),
        "the winner's update, stored once"
    );
    ensure_eq!(store.outbox_depth().await?, 1, "only the winner's event");
    Ok(())
}

pub(crate) async fn concurrent_claims(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(61);
    let keys: Vec<usize> = (0..40).collect();
    let (_, events) = seed(&store, &f, 40, &keys).await?;
    let mut tasks = JoinSet::new();
    for consumer in ["a", "b"] {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..100 {
                let claimed = store.claim_outbox(consumer, 3, at(100), at(200)).await?;
                if claimed.is_empty() {
                    break;
                }
                let ids: Vec<_> = claimed.iter().map(|e| e.event.id).collect();
                mine.extend(ids.iter().copied());
                store.ack_outbox(consumer, &ids).await?;
                tokio::task::yield_now().await;
            }
            Ok::<_, ciam_core::StoreError>(mine)
        });
    }
    let mut all = Vec::new();
    while let Some(result) = tasks.join_next().await {
        all.extend(joined(result)??);
    }
    let unique: BTreeSet<_> = all.iter().copied().collect();
    ensure_eq!(unique.len(), all.len(), "no entry was handed to two claims");
    ensure_eq!(
        unique,
        events.iter().map(|e| e.id).collect::<BTreeSet<_>>(),
        "every entry was claimed"
    );
    ensure_eq!(store.outbox_depth().await?, 0, "everything acknowledged");

    // Without acknowledgements, two consumers racing for the same entries split them.
    let more: Vec<usize> = (0..40).collect();
    let (_, events) = seed(&store, &f, 40, &more).await?;
    let mut tasks = JoinSet::new();
    for consumer in ["a", "b"] {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.claim_outbox(consumer, 1000, at(300), at(400)).await });
    }
    let mut claimed = Vec::new();
    while let Some(result) = tasks.join_next().await {
        claimed.extend(joined(result)??.into_iter().map(|e| e.event.id));
    }
    let unique: BTreeSet<_> = claimed.iter().copied().collect();
    ensure!(
        unique.len() == claimed.len(),
        "two consumers claimed the same entry: {} claims, {} distinct",
        claimed.len(),
        unique.len()
    );
    ensure_eq!(
        unique,
        events.iter().map(|e| e.id).collect::<BTreeSet<_>>(),
        "between them the consumers claimed every entry"
    );
    Ok(())
}
