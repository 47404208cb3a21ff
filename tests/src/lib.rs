//! Cross-crate scenario tests for ciam-rs: the SmartPlan story. The tests live in `tests/scenarios/`.
