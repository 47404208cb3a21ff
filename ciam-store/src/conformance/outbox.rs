//! The outbox: ordering per resource, leases, ack, release, dead letters.

use std::collections::BTreeSet;
use std::sync::Arc;

use ciam_core::events::DomainEvent;
use ciam_core::ids::{EventId, OrganizationId};
use ciam_core::store::{ChangeSet, OutboxEntry, ReleaseOutcome, Store};

use super::builders::{Fixture, at};
use super::commit::put;
use super::{Outcome, ensure, ensure_eq};

/// Stores `resources` organizations and then one event per entry of `keys` (an index into
/// those organizations), each in its own commit; returns the organizations and the events.
pub(crate) async fn seed(
    store: &Arc<dyn Store>,
    f: &Fixture,
    resources: usize,
    keys: &[usize],
) -> Result<(Vec<OrganizationId>, Vec<DomainEvent>), super::Fail> {
    let orgs: Vec<_> = (0..resources)
        .map(|n| f.organization(&format!("Org {n}")))
        .collect();
    let ids: Vec<_> = orgs.iter().map(|o| o.id).collect();
    store.commit(put(orgs.into_iter().map(Into::into))).await?;
    let mut events = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        let organization = ids.get(*key).copied();
        let minutes = i64::try_from(n).unwrap_or(0);
        let event = f.event(organization, None, at(minutes));
        let mut changes = ChangeSet::new();
        changes.event(event.clone());
        store.commit(changes).await?;
        events.push(event);
    }
    Ok((ids, events))
}

fn ids(entries: &[OutboxEntry]) -> BTreeSet<EventId> {
    entries.iter().map(|e| e.event.id).collect()
}

fn id_of(events: &[DomainEvent], n: usize) -> Result<EventId, super::Fail> {
    events
        .get(n)
        .map(|e| e.id)
        .ok_or_else(|| super::Fail(format!("test event {n} missing")))
}

pub(crate) async fn outbox_orders_each_resource(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(50);
    // Resource 0: events 0, 2, 3; resource 1: events 1, 4.
    let (_, events) = seed(&store, &f, 2, &[0, 1, 0, 0, 1]).await?;
    let e = |n| id_of(&events, n);
    let now = at(100);
    let lease = at(200);
    let first = store.claim_outbox("worker", 10, now, lease).await?;
    ensure_eq!(
        ids(&first),
        BTreeSet::from([e(0)?, e(1)?]),
        "the oldest entry of each resource"
    );
    let sequences: Vec<i64> = first.iter().map(|x| x.sequence).collect();
    ensure!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "claims come in sequence order: {sequences:?}"
    );
    store.ack_outbox("worker", &[e(0)?, e(1)?]).await?;
    ensure_eq!(
        ids(&store.claim_outbox("worker", 10, now, lease).await?),
        BTreeSet::from([e(2)?, e(4)?]),
        "the next entry of each resource after acknowledgement"
    );
    store.ack_outbox("worker", &[e(2)?, e(4)?]).await?;
    ensure_eq!(
        ids(&store.claim_outbox("worker", 10, now, lease).await?),
        BTreeSet::from([e(3)?]),
        "the last entry"
    );
    store.ack_outbox("worker", &[e(3)?]).await?;
    ensure_eq!(
        store.claim_outbox("worker", 10, now, lease).await?.len(),
        0,
        "nothing left"
    );
    ensure_eq!(
        store.outbox_depth().await?,
        0,
        "depth after everything was acknowledged"
    );

    // The limit counts claimed entries.
    let (_, more) = seed(&store, &f, 5, &[0, 1, 2, 3, 4]).await?;
    let limited = store.claim_outbox("worker", 3, now, lease).await?;
    ensure_eq!(limited.len(), 3, "claims respect the limit");
    ensure_eq!(
        ids(&limited),
        more.iter().take(3).map(|x| x.id).collect::<BTreeSet<_>>(),
        "the oldest entries are claimed first"
    );
    ensure_eq!(
        store.claim_outbox("worker", 0, now, lease).await?.len(),
        0,
        "limit 0 claims nothing"
    );
    Ok(())
}

pub(crate) async fn outbox_leases_are_exclusive(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(51);
    let (_, events) = seed(&store, &f, 3, &[0, 1, 2]).await?;
    let all: BTreeSet<_> = events.iter().map(|e| e.id).collect();
    let a = store.claim_outbox("a", 10, at(0), at(5)).await?;
    ensure_eq!(ids(&a), all.clone(), "consumer a claims everything");
    ensure_eq!(
        store.claim_outbox("b", 10, at(1), at(6)).await?.len(),
        0,
        "consumer b gets nothing while a holds the leases"
    );
    ensure_eq!(
        store.claim_outbox("b", 10, at(4), at(9)).await?.len(),
        0,
        "nothing just before the leases run out"
    );
    let b = store.claim_outbox("b", 10, at(5), at(15)).await?;
    ensure_eq!(
        ids(&b),
        all.clone(),
        "consumer b claims the entries once a's leases ran out"
    );
    ensure_eq!(
        store.claim_outbox("a", 10, at(6), at(16)).await?.len(),
        0,
        "a cannot take them back while b holds them"
    );
    // a's late acknowledgement is ignored: the entries belong to b now.
    store
        .ack_outbox("a", &all.iter().copied().collect::<Vec<_>>())
        .await?;
    ensure_eq!(
        store.outbox_depth().await?,
        3,
        "depth after an acknowledgement without the lease"
    );
    store
        .ack_outbox("b", &all.iter().copied().collect::<Vec<_>>())
        .await?;
    ensure_eq!(
        store.outbox_depth().await?,
        0,
        "depth after b's acknowledgement"
    );
    Ok(())
}

pub(crate) async fn outbox_ack_needs_the_lease(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(52);
    let (_, events) = seed(&store, &f, 2, &[0, 1]).await?;
    let e0 = id_of(&events, 0)?;
    let e1 = id_of(&events, 1)?;
    // Not claimed by anyone: an acknowledgement does nothing.
    store.ack_outbox("a", &[e0, e1]).await?;
    ensure_eq!(
        store.outbox_depth().await?,
        2,
        "unclaimed entries cannot be acknowledged"
    );
    let claimed = store.claim_outbox("a", 1, at(0), at(10)).await?;
    ensure_eq!(ids(&claimed), BTreeSet::from([e0]), "a claims one entry");
    store.ack_outbox("b", &[e0]).await?;
    ensure_eq!(
        store.outbox_depth().await?,
        2,
        "another consumer cannot acknowledge it"
    );
    // Unknown ids are ignored.
    store
        .ack_outbox("a", &[e0, e1, f.event(None, None, at(0)).id])
        .await?;
    ensure_eq!(
        store.outbox_depth().await?,
        1,
        "only the leased entry is acknowledged"
    );
    ensure_eq!(
        ids(&store.claim_outbox("b", 10, at(1), at(10)).await?),
        BTreeSet::from([e1]),
        "the other entry is still there"
    );
    store.ack_outbox("b", &[e1]).await?;
    store.ack_outbox("b", &[e1]).await?;
    ensure_eq!(
        store.outbox_depth().await?,
        0,
        "acknowledging twice is harmless"
    );
    ensure_eq!(
        store
            .events(ciam_core::store::EventQuery {
                limit: 10,
                ..Default::default()
            })
            .await?
            .len(),
        2,
        "acknowledged events stay in the audit log"
    );
    Ok(())
}

pub(crate) async fn outbox_release_waits_for_retry(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(53);
    // Resource 0 has two events: a failing first one holds back the second.
    let (_, events) = seed(&store, &f, 2, &[0, 0, 1]).await?;
    let e0 = id_of(&events, 0)?;
    let e1 = id_of(&events, 1)?;
    let e2 = id_of(&events, 2)?;
    let claimed = store.claim_outbox("a", 10, at(0), at(5)).await?;
    ensure_eq!(ids(&claimed), BTreeSet::from([e0, e2]), "first claim");
    ensure!(
        store
            .release_outbox("b", e0, "not mine", at(1), 5)
            .await
            .is_err(),
        "a consumer without the lease cannot release"
    );
    ensure_eq!(
        store
            .release_outbox("a", e0, "receiver said 503", at(10), 5)
            .await?,
        ReleaseOutcome::WillRetry,
        "release with attempts left"
    );
    store.ack_outbox("a", &[e2]).await?;
    ensure_eq!(
        store.claim_outbox("b", 10, at(9), at(12)).await?.len(),
        0,
        "before retry_at neither the released entry nor the next one of its resource is due"
    );
    let retried = store.claim_outbox("b", 10, at(10), at(20)).await?;
    ensure_eq!(
        ids(&retried),
        BTreeSet::from([e0]),
        "the released entry at retry_at"
    );
    let entry = retried.first();
    ensure_eq!(
        entry.map(|x| x.attempts),
        Some(1),
        "attempts after one release"
    );
    ensure_eq!(
        entry.and_then(|x| x.last_error.clone()),
        Some("receiver said 503".to_owned()),
        "the last error"
    );
    ensure!(
        store
            .release_outbox("a", e0, "late", at(30), 5)
            .await
            .is_err(),
        "the former lease holder cannot release it any more"
    );
    store.ack_outbox("b", &[e0]).await?;
    ensure_eq!(
        ids(&store.claim_outbox("b", 10, at(11), at(20)).await?),
        BTreeSet::from([e1]),
        "the next entry of the resource after the retried one is acknowledged"
    );
    ensure!(
        store
            .release_outbox("b", f.event(None, None, at(0)).id, "unknown", at(30), 5)
            .await
            .is_err(),
        "releasing an unknown entry fails"
    );
    Ok(())
}

pub(crate) async fn outbox_dead_letters(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(54);
    let (_, events) = seed(&store, &f, 2, &[0, 0, 1]).await?;
    let e0 = id_of(&events, 0)?;
    let e1 = id_of(&events, 1)?;
    let e2 = id_of(&events, 2)?;
    ensure_eq!(
        store.claim_outbox("a", 1, at(0), at(5)).await?.len(),
        1,
        "claim"
    );
    ensure_eq!(
        store.release_outbox("a", e0, "boom 1", at(1), 3).await?,
        ReleaseOutcome::WillRetry,
        "first failure"
    );
    ensure_eq!(
        ids(&store.claim_outbox("a", 1, at(1), at(5)).await?),
        BTreeSet::from([e0]),
        "second try"
    );
    ensure_eq!(
        store.release_outbox("a", e0, "boom 2", at(2), 3).await?,
        ReleaseOutcome::WillRetry,
        "second failure"
    );
    ensure_eq!(
        ids(&store.claim_outbox("a", 1, at(2), at(5)).await?),
        BTreeSet::from([e0]),
        "third try"
    );
    ensure_eq!(
        store.release_outbox("a", e0, "boom 3", at(3), 3).await?,
        ReleaseOutcome::DeadLettered,
        "the third failure uses up three attempts"
    );
    let dead = store.dead_letters(10).await?;
    ensure_eq!(dead.len(), 1, "one dead letter");
    ensure_eq!(
        dead.first().map(|d| d.event.id),
        Some(e0),
        "the dead letter's event"
    );
    ensure_eq!(
        dead.first().map(|d| d.attempts),
        Some(3),
        "the dead letter's attempts"
    );
    ensure_eq!(
        dead.first().and_then(|d| d.last_error.clone()),
        Some("boom 3".to_owned()),
        "the dead letter's last error"
    );
    ensure_eq!(
        store.outbox_depth().await?,
        2,
        "dead letters do not count in the depth"
    );
    let next = store.claim_outbox("a", 10, at(100), at(105)).await?;
    ensure!(!ids(&next).contains(&e0), "a dead letter is never claimed");
    ensure_eq!(
        ids(&next),
        BTreeSet::from([e1, e2]),
        "a dead letter no longer holds back its resource"
    );
    // Dead letters are listed oldest first and limited.
    store.release_outbox("a", e2, "fatal", at(101), 1).await?;
    store.release_outbox("a", e1, "fatal", at(101), 1).await?;
    ensure_eq!(
        store
            .dead_letters(10)
            .await?
            .iter()
            .map(|d| d.event.id)
            .collect::<Vec<_>>(),
        vec![e0, e1, e2],
        "dead letters, oldest first"
    );
    ensure_eq!(
        store.dead_letters(2).await?.len(),
        2,
        "dead letters, limited"
    );
    Ok(())
}

pub(crate) async fn outbox_redeliver(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(55);
    let (_, events) = seed(&store, &f, 1, &[0]).await?;
    let e0 = id_of(&events, 0)?;
    ensure!(
        store.redeliver(e0, at(0)).await.is_err(),
        "an entry that is not a dead letter cannot be redelivered"
    );
    store.claim_outbox("a", 1, at(0), at(5)).await?;
    store.release_outbox("a", e0, "gone", at(1), 1).await?;
    ensure_eq!(
        store.outbox_depth().await?,
        0,
        "depth with only a dead letter"
    );
    ensure_eq!(
        store.claim_outbox("a", 1, at(50), at(55)).await?.len(),
        0,
        "a dead letter is not claimed"
    );
    store.redeliver(e0, at(60)).await?;
    ensure_eq!(
        store.dead_letters(10).await?.len(),
        0,
        "no dead letters after redelivery"
    );
    ensure_eq!(store.outbox_depth().await?, 1, "depth after redelivery");
    let again = store.claim_outbox("b", 1, at(60), at(65)).await?;
    ensure_eq!(
        ids(&again),
        BTreeSet::from([e0]),
        "the redelivered entry is due now"
    );
    ensure_eq!(again.first().map(|x| x.attempts), Some(0), "attempts reset");
    store.ack_outbox("b", &[e0]).await?;
    ensure!(
        store.redeliver(e0, at(70)).await.is_err(),
        "an acknowledged entry cannot be redelivered"
    );
    Ok(())
}

pub(crate) async fn outbox_depth_counts_open_entries(store: Arc<dyn Store>) -> Outcome {
    let f = Fixture::new(56);
    ensure_eq!(store.outbox_depth().await?, 0, "an empty outbox");
    let (_, events) = seed(&store, &f, 4, &[0, 1, 2, 3]).await?;
    ensure_eq!(store.outbox_depth().await?, 4, "every committed event");
    store.claim_outbox("a", 10, at(0), at(5)).await?;
    ensure_eq!(store.outbox_depth().await?, 4, "leased entries still count");
    store.ack_outbox("a", &[id_of(&events, 0)?]).await?;
    store
        .release_outbox("a", id_of(&events, 1)?, "retry", at(9), 5)
        .await?;
    store
        .release_outbox("a", id_of(&events, 2)?, "dead", at(9), 1)
        .await?;
    ensure_eq!(
        store.outbox_depth().await?,
        2,
        "acknowledged and dead entries do not count; waiting ones do"
    );
    Ok(())
}
