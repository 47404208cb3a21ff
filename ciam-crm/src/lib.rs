#![doc = include_str!("../README.md")]

pub mod commands;
mod connector;
mod dispatcher;
pub mod events;
pub mod openapi;
mod provisioner;
pub mod source;
pub mod validation;
pub mod webhook;

pub use crate::connector::{CrmConnector, DeliveryResult, RecordingConnector};
pub use crate::dispatcher::{
    BatchReport, DeadLetter, DispatchError, Dispatcher, DispatcherConfig, RunReport, backoff_delay,
};
pub use crate::events::{CrmEvent, CrmEventData, EventTranslator, is_crm_relevant};
pub use crate::provisioner::{
    CommandError, DEFAULT_IDEMPOTENCY_TTL_HOURS, MAX_IDEMPOTENCY_KEY_LEN, Provisioner,
    idempotency_scope, organization_response, request_hash,
};
pub use crate::source::{
    ContractStatusPage, CrmContractStatus, CrmSource, CrmSourceError, ReconcileError,
    ReconcileReport, reconcile_contracts,
};
pub use crate::validation::{FieldError, ValidationErrors};
