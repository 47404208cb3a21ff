//! Integration tests of ciam-core that need no store: authorization rules and their
//! invariants.

mod authz_properties;
mod staff_roles;
