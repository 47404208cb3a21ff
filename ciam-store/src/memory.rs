//! The in-memory store (being written).
