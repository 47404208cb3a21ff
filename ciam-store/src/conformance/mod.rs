//! The store conformance suite: every contract of the [`Store`] port, as checks that any
//! backend can run.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ciam_store::conformance::ConformanceFailure> {
//! use std::sync::Arc;
//! use ciam_core::store::Store;
//! ciam_store::conformance::run_all(|| async {
//!     Arc::new(ciam_store::MemoryStore::new()) as Arc<dyn Store>
//! })
//! .await
//! # }
//! ```
//!
//! Each check gets a fresh, empty store from the factory. Failures are values naming the check
//! and the contract it covers. [`conformance_tests!`](crate::conformance_tests) turns the suite
//! into one `#[tokio::test]` per check.

mod builders;
mod commit;
mod concurrency;
mod counters;
mod outbox;
mod queries;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ciam_core::store::{Store, StoreError, StoreErrorKind};

/// A failed conformance check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConformanceFailure {
    check: &'static str,
    contract: &'static str,
    message: String,
}

impl ConformanceFailure {
    /// The name of the check that failed (as in [`check_names`]).
    pub fn check(&self) -> &'static str {
        self.check
    }

    /// The contract of the `Store` port that the check covers.
    pub fn contract(&self) -> &'static str {
        self.contract
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConformanceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store conformance check `{}` failed ({}): {}",
            self.check, self.contract, self.message
        )
    }
}

impl std::error::Error for ConformanceFailure {}

/// A failure inside a check, before it is named.
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) String);

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Self(format!(
            "unexpected store error ({:?}): {error}",
            error.kind()
        ))
    }
}

/// What a check returns.
pub(crate) type Outcome = Result<(), Fail>;

/// Fails the check with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::conformance::Fail(format!($($msg)+)));
        }
    };
}

/// Fails the check unless both sides are equal, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let left = $left;
        let right = $right;
        if left != right {
            return Err($crate::conformance::Fail(format!(
                "{}\n  got:      {:?}\n  expected: {:?}",
                format!($($msg)+),
                left,
                right
            )));
        }
    }};
}

pub(crate) use {ensure, ensure_eq};

/// Checks that `result` is an error of `kind` (and, for unique errors, of `field`).
pub(crate) fn expect_error<T: fmt::Debug>(
    result: Result<T, StoreError>,
    kind: StoreErrorKind,
    field: Option<&'static str>,
    what: &str,
) -> Outcome {
    match result {
        Ok(value) => Err(Fail(format!(
            "{what}: expected a {kind:?} error, got Ok({value:?})"
        ))),
        Err(error) if error.kind() != kind => Err(Fail(format!(
            "{what}: expected a {kind:?} error, got {:?}: {error}",
            error.kind()
        ))),
        Err(error) if field.is_some() && error.field() != field => Err(Fail(format!(
            "{what}: expected the unique field {field:?}, got {:?}",
            error.field()
        ))),
        Err(_) => Ok(()),
    }
}

type CheckFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    name: &'static str,
    contract: &'static str,
    run: fn(Arc<dyn Store>) -> CheckFuture,
}

impl Check {
    /// The check's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The contract it covers.
    pub fn contract(&self) -> &'static str {
        self.contract
    }

    /// Runs the check against `store` (which should be fresh and empty).
    pub async fn run(&self, store: Arc<dyn Store>) -> Result<(), ConformanceFailure> {
        (self.run)(store)
            .await
            .map_err(|Fail(message)| ConformanceFailure {
                check: self.name,
                contract: self.contract,
                message,
            })
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("contract", &self.contract)
            .finish_non_exhaustive()
    }
}

macro_rules! checks {
    ($($module:ident :: $name:ident => $contract:literal,)*) => {
        /// Every check of the suite, in the order [`run_all`] runs them.
        pub const CHECKS: &[Check] = &[
            $(Check {
                name: stringify!($name),
                contract: $contract,
                run: |store| Box::pin($module::$name(store)),
            },)*
        ];
    };
}

checks! {
    commit::commit_inserts_every_record_kind => "a record written with version 0 is stored with version 1",
    commit::commit_updates_with_the_read_version => "an update carrying the stored version succeeds and bumps it",
    commit::commit_rejects_a_stale_version => "a stale version is a Conflict, never a lost update",
    commit::commit_rejects_a_new_record_twice => "version 0 means the record must not exist yet",
    commit::commit_rejects_an_update_of_a_missing_record => "a version above 0 needs a stored record",
    commit::commit_deletes_with_the_read_version => "deletions are version-checked",
    commit::commit_is_all_or_nothing => "a failed commit writes no record and no event",
    commit::commit_writes_events_in_order => "events land in the audit log and the outbox, in commit order",
    commit::unique_identity_email => "Identity::email is unique, case-insensitively",
    commit::unique_identity_crm_contact_id => "Identity::crm_contact_id is unique",
    commit::unique_organization_crm_account_id => "Organization::crm_account_id is unique",
    commit::unique_organization_email_domain => "each Organization::email_domains entry is unique",
    commit::unique_organization_join_code => "Organization::join_code is unique",
    commit::unique_contract_crm_contract_id => "Contract::crm_contract_id is unique",
    commit::unique_membership => "one membership per (identity, organization)",
    commit::unique_service_key => "Service::key is unique",
    commit::unique_business_role_key => "BusinessRole::key is unique",
    commit::unique_invitation_token => "Invitation::token_hash is unique",
    commit::unique_session_token => "Session::token_hash is unique",
    commit::unique_federated_link => "(provider, subject) of a federated link is unique",
    commit::unique_setting_key => "(Setting::kind, Setting::key) is unique",
    commit::unique_within_one_change_set => "unique fields clash within one change set too",
    commit::unique_values_are_freed => "a unique value released by an update or deletion can be reused",
    queries::organization_lookups => "organizations by id, CRM account, email domain, join code; sub-organizations",
    queries::organization_search => "search_organizations: case-insensitive substring, ordered by name, limited",
    queries::contract_lookups => "contracts by id, CRM id and organization",
    queries::contracts_with_access_ended => "contracts_with_access_ended_before: access ended at or before the instant",
    queries::identity_lookups => "identities by id, email (case-insensitive) and CRM contact",
    queries::identity_search => "search_identities: email prefix or name, case-insensitive, ordered by email, limited",
    queries::membership_lookups => "memberships by id, by (identity, organization) and by identity",
    queries::batch_lookups => "batch reads: identities by many emails, memberships of many identities in an organization, open invitations for many emails; lists of any length",
    queries::identity_access => "an identity with its memberships, organizations and contracts in one read; the same by session token",
    queries::members_pagination => "members_of_organization: ordered by email, keyset pages cover everyone once",
    queries::services_and_roles => "services and business roles by id and key, ordered by key",
    queries::invitation_queries => "invitations by token, by organization (newest first), by status (oldest first), open by email",
    queries::registration_queries => "pending organization registrations and join requests, oldest first",
    queries::credential_and_session_queries => "credentials by identity and federated link; sessions by token and identity",
    queries::setting_queries => "settings by (kind, key) and by kind and organization, ordered by key; updates and deletions version-checked",
    queries::audit_events => "events: filters by organization, identity and time, newest first, limited",
    outbox::outbox_orders_each_resource => "only the oldest open entry of an ordering key is deliverable",
    outbox::outbox_leases_are_exclusive => "two consumers never hold the same entry; expired leases move on",
    outbox::outbox_ack_needs_the_lease => "ack removes only entries leased by the consumer",
    outbox::outbox_release_waits_for_retry => "a released entry is due again at retry_at, with attempts and error",
    outbox::outbox_dead_letters => "an entry released max_attempts times is a dead letter",
    outbox::outbox_redeliver => "redeliver puts a dead letter back with attempts reset",
    outbox::outbox_depth_counts_open_entries => "outbox_depth counts unacknowledged entries, not dead letters",
    counters::consume_once_with_expiry => "consume_once: first use wins until expiry",
    counters::counters_with_expiry => "counters count, expire and reset",
    counters::idempotency_records => "idempotency records: saved once per scope and key, until expiry",
    concurrency::concurrent_consume_once => "of concurrent single uses exactly one wins",
    concurrency::concurrent_commits => "of concurrent updates from one version exactly one commits",
    concurrency::concurrent_claims => "concurrent claims never hand out the same entry twice",
}

/// The names of all checks, in order.
pub fn check_names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(Check::name)
}

/// Runs the check called `name` against a fresh store from `make_store`.
pub async fn run_check<F, Fut>(name: &str, make_store: F) -> Result<(), ConformanceFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    match CHECKS.iter().find(|check| check.name == name) {
        Some(check) => check.run(make_store().await).await,
        None => Err(ConformanceFailure {
            check: "unknown",
            contract: "the check exists",
            message: format!("no conformance check is called `{name}`"),
        }),
    }
}

/// Runs every check, each against a fresh store from `make_store`; stops at the first failure.
pub async fn run_all<F, Fut>(make_store: F) -> Result<(), ConformanceFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for check in CHECKS {
        check.run(make_store().await).await?;
    }
    Ok(())
}

/// Runs every check, each against a fresh store, and returns all failures.
pub async fn run_all_collecting<F, Fut>(make_store: F) -> Vec<ConformanceFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    let mut failures = Vec::new();
    for check in CHECKS {
        if let Err(failure) = check.run(make_store().await).await {
            failures.push(failure);
        }
    }
    failures
}

/// Expands to one `#[tokio::test]` per conformance check (multi-threaded runtime), each running
/// against a fresh store from the factory expression, plus a test that the list is complete.
///
/// The factory is an expression of a type `Fn() -> impl Future<Output = Arc<dyn Store>>`; the
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```ignore
/// mod memory {
///     ciam_store::conformance_tests!(|| async {
///         std::sync::Arc::new(ciam_store::MemoryStore::new()) as std::sync::Arc<dyn ciam_core::Store>
///     });
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::__conformance_tests!($factory;
            commit_inserts_every_record_kind,
            commit_updates_with_the_read_version,
            commit_rejects_a_stale_version,
            commit_rejects_a_new_record_twice,
            commit_rejects_an_update_of_a_missing_record,
            commit_deletes_with_the_read_version,
            commit_is_all_or_nothing,
            commit_writes_events_in_order,
            unique_identity_email,
            unique_identity_crm_contact_id,
            unique_organization_crm_account_id,
            unique_organization_email_domain,
            unique_organization_join_code,
            unique_contract_crm_contract_id,
            unique_membership,
            unique_service_key,
            unique_business_role_key,
            unique_invitation_token,
            unique_session_token,
            unique_federated_link,
            unique_setting_key,
            unique_within_one_change_set,
            unique_values_are_freed,
            organization_lookups,
            organization_search,
            contract_lookups,
            contracts_with_access_ended,
            identity_lookups,
            identity_search,
            membership_lookups,
            batch_lookups,
            identity_access,
            members_pagination,
            services_and_roles,
            invitation_queries,
            registration_queries,
            credential_and_session_queries,
            setting_queries,
            audit_events,
            outbox_orders_each_resource,
            outbox_leases_are_exclusive,
            outbox_ack_needs_the_lease,
            outbox_release_waits_for_retry,
            outbox_dead_letters,
            outbox_redeliver,
            outbox_depth_counts_open_entries,
            consume_once_with_expiry,
            counters_with_expiry,
            idempotency_records,
            concurrent_consume_once,
            concurrent_commits,
            concurrent_claims,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($factory:expr; $($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Err(failure) =
                    $crate::conformance::run_check(stringify!($name), $factory).await
                {
                    panic!("{failure}");
                }
            }
        )*

        #[test]
        fn conformance_tests_cover_every_check() {
            let listed: &[&str] = &[$(stringify!($name)),*];
            let all: Vec<&str> = $crate::conformance::check_names().collect();
            assert_eq!(listed, all.as_slice(), "conformance_tests! is out of date");
        }
    };
}
