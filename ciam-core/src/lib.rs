#![doc = include_str!("../README.md")]

pub mod audit;
pub mod authz;
mod ciam;
pub mod clock;
pub mod contact;
pub mod credentials;
pub mod delivery;
pub mod events;
pub mod identities;
pub mod ids;
pub mod imports;
pub mod invitations;
pub mod login;
mod messages;
pub mod organizations;
pub mod principals;
pub mod registrations;
pub mod secrets;
pub mod services;
pub mod sessions;
pub mod settings;
pub mod store;

pub use crate::authz::{Action, Actor, Decision, DenyReason, Principal, authorize};
pub use crate::ciam::{
    BuildError, Ciam, CiamBuilder, DEFAULT_WEBMAIL_DOMAINS, Policy, WebmailPolicy,
};
pub use crate::clock::{Clock, FixedClock, OsRandom, RandomSource, SeededRandom, SystemClock};
pub use crate::store::{ChangeSet, Store, StoreError, StoreErrorKind};
