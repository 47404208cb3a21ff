#![doc = include_str!("../README.md")]

mod memory;

pub use memory::MemoryStore;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlStore, SqlStoreOptions};

#[cfg(feature = "conformance")]
pub mod conformance;
