#![doc = include_str!("../README.md")]

mod memory;

pub use memory::MemoryStore;

#[cfg(feature = "conformance")]
pub mod conformance;
