//! `MemoryStore` against the conformance suite.

use std::sync::Arc;

use ciam_core::store::Store;
use ciam_store::MemoryStore;
use ciam_store::conformance;

async fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

ciam_store::conformance_tests!(memory_store);

#[tokio::test]
async fn run_all_passes() {
    conformance::run_all(memory_store).await.unwrap();
    assert!(
        conformance::run_all_collecting(memory_store)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_unknown_check_is_a_failure() {
    let failure = conformance::run_check("no_such_check", memory_store)
        .await
        .unwrap_err();
    assert!(failure.to_string().contains("no_such_check"), "{failure}");
}
