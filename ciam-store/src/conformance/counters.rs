//! Single use, counters and idempotency records.

use std::sync::Arc;

use ciam_core::store::{IdempotencyRecord, Store};

use super::builders::at;
use super::{Outcome, ensure, ensure_eq};

pub(crate) async fn consume_once_with_expiry(store: Arc<dyn Store>) -> Outcome {
    ensure!(
        store.consume_once("otp:1", at(0), at(10)).await?,
        "the first use wins"
    );
    ensure!(
        !store.consume_once("otp:1", at(1), at(20)).await?,
        "a second use before expiry loses"
    );
    ensure!(
        !store.consume_once("otp:1", at(9), at(20)).await?,
        "still used just before expiry"
    );
    ensure!(
        store.consume_once("otp:2", at(1), at(10)).await?,
        "another key is independent"
    );
    ensure!(
        store.consume_once("otp:1", at(10), at(30)).await?,
        "usable again once expired"
    );
    ensure!(
        !store.consume_once("otp:1", at(11), at(40)).await?,
        "and used again until the new expiry"
    );
    ensure!(
        store.consume_once("otp:1", at(30), at(40)).await?,
        "the new expiry counts"
    );
    Ok(())
}

pub(crate) async fn counters_with_expiry(store: Arc<dyn Store>) -> Outcome {
    ensure_eq!(
        store.counter("login:ann", at(0)).await?,
        0,
        "an absent counter"
    );
    ensure_eq!(
        store.increment_counter("login:ann", at(0), at(10)).await?,
        1,
        "first increment"
    );
    ensure_eq!(
        store.increment_counter("login:ann", at(1), at(99)).await?,
        2,
        "second increment"
    );
    ensure_eq!(
        store.increment_counter("login:ann", at(2), at(99)).await?,
        3,
        "third increment"
    );
    ensure_eq!(
        store.counter("login:ann", at(9)).await?,
        3,
        "the count before expiry"
    );
    ensure_eq!(store.counter("login:bob", at(9)).await?, 0, "another key");
    ensure_eq!(
        store.counter("login:ann", at(10)).await?,
        0,
        "the first expiry stands (later increments do not extend it)"
    );
    ensure_eq!(
        store.increment_counter("login:ann", at(10), at(20)).await?,
        1,
        "an expired counter starts again at one"
    );
    ensure_eq!(
        store.counter("login:ann", at(19)).await?,
        1,
        "with the new expiry"
    );
    ensure_eq!(
        store.counter("login:ann", at(20)).await?,
        0,
        "and expires then"
    );
    store.increment_counter("login:ann", at(20), at(30)).await?;
    store.increment_counter("login:ann", at(20), at(30)).await?;
    store.reset_counter("login:ann").await?;
    ensure_eq!(
        store.counter("login:ann", at(21)).await?,
        0,
        "after a reset"
    );
    ensure_eq!(
        store.increment_counter("login:ann", at(21), at(30)).await?,
        1,
        "counting again after a reset"
    );
    store.reset_counter("never-used").await?;
    Ok(())
}

pub(crate) async fn idempotency_records(store: Arc<dyn Store>) -> Outcome {
    let first = IdempotencyRecord {
        request_hash: "hash-1".to_owned(),
        response: serde_json::json!({"status": 201, "id": "abc"}),
    };
    let second = IdempotencyRecord {
        request_hash: "hash-2".to_owned(),
        response: serde_json::json!({"status": 200}),
    };
    ensure_eq!(
        store.idempotency_record("crm", "k1", at(0)).await?,
        None,
        "nothing saved yet"
    );
    ensure!(
        store
            .save_idempotency_record("crm", "k1", first.clone(), at(60))
            .await?,
        "the first save"
    );
    ensure!(
        !store
            .save_idempotency_record("crm", "k1", second.clone(), at(60))
            .await?,
        "a second save with the same key is refused"
    );
    ensure_eq!(
        store.idempotency_record("crm", "k1", at(59)).await?,
        Some(first.clone()),
        "the first response is kept"
    );
    ensure_eq!(
        store.idempotency_record("other", "k1", at(1)).await?,
        None,
        "scopes are separate"
    );
    ensure!(
        store
            .save_idempotency_record("other", "k1", second.clone(), at(60))
            .await?,
        "the same key in another scope"
    );
    ensure_eq!(
        store.idempotency_record("crm", "k1", at(60)).await?,
        None,
        "expired"
    );
    ensure!(
        store
            .save_idempotency_record("crm", "k1", second.clone(), at(120))
            .await?,
        "an expired key can be saved again (after a lookup found it expired)"
    );
    ensure_eq!(
        store.idempotency_record("crm", "k1", at(61)).await?,
        Some(second),
        "the new response"
    );
    Ok(())
}
