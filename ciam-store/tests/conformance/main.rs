//! The store conformance suite (`ciam_store::conformance`) against every backend.
//!
//! One module per backend; each expands `ciam_store::conformance_tests!` with a factory that
//! returns a fresh, empty store, so every contract is its own test.
//!
//! Run with `cargo test -p ciam-store --features conformance --test conformance`.

#[cfg(feature = "sqlite")]
mod kill;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
