//! Cross-crate scenario tests for ciam-rs: the SmartPlan story. The tests live in `tests/scenarios/`;
//! this library holds the test harness they share with the SmartPlan server's tests.

pub mod oidc_peer;
