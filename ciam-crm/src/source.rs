//! Pulling contract statuses from a CRM that cannot push: a [`CrmSource`] lists them, and
//! [`reconcile_contracts`] applies the differences through the façade.

use async_trait::async_trait;
use ciam_core::organizations::{ContractChange, ContractStatus, ProvisioningError};
use ciam_core::{Ciam, Principal};
use serde::{Deserialize, Serialize};

/// A contract's status as the CRM sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmContractStatus {
    /// The CRM contract id.
    pub crm_contract_id: String,
    /// The status in the CRM.
    pub status: ContractStatus,
}

/// One page of contract statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContractStatusPage {
    /// The statuses.
    pub items: Vec<CrmContractStatus>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

/// Errors of a [`CrmSource`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrmSourceError {
    /// The CRM could not be reached or answered badly; try again later.
    #[error("crm unavailable: {0}")]
    Unavailable(String),
}

/// Where contract statuses come from, for CRMs that cannot push (optional for integrators).
#[async_trait]
pub trait CrmSource: Send + Sync {
    /// A page of contract statuses, continuing after `cursor`.
    async fn contract_statuses(
        &self,
        cursor: Option<String>,
    ) -> Result<ContractStatusPage, CrmSourceError>;
}

/// What a reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Contracts compared.
    pub checked: usize,
    /// Contracts whose status was changed (suspended, resumed, ended).
    pub changed: Vec<String>,
    /// CRM contracts ciam-rs does not know (provision them with an upsert).
    pub unknown: Vec<String>,
    /// Contracts that could not be changed, with why (an ended contract the CRM shows
    /// active again, a denied or failed change).
    pub failed: Vec<(String, String)>,
}

/// Errors of a reconciliation as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] CrmSourceError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ciam_core::StoreError),
    /// The source kept giving pages beyond the limit.
    #[error("the source gave more than {0} pages")]
    TooManyPages(usize),
}

/// Most pages read in one reconciliation.
pub const MAX_RECONCILE_PAGES: usize = 100_000;

/// Compares every contract status of `source` with the store and applies the differences
/// through `ciam.organizations().change_contract` as `principal` (the same rules, events and
/// session revocations as a pushed change). Failing contracts are reported, not fatal.
pub async fn reconcile_contracts(
    ciam: &Ciam,
    principal: &Principal,
    source: &dyn CrmSource,
) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport::default();
    let mut cursor = None;
    for _ in 0..MAX_RECONCILE_PAGES {
        let page = source.contract_statuses(cursor.take()).await?;
        for item in page.items {
            report.checked += 1;
            let Some(current) = ciam
                .store()
                .contract_by_crm_id(&item.crm_contract_id)
                .await?
            else {
                report.unknown.push(item.crm_contract_id);
                continue;
            };
            let change = match (current.status, item.status) {
                (now, wanted) if now == wanted => continue,
                (ContractStatus::Ended, _) => {
                    report.failed.push((
                        item.crm_contract_id,
                        "contract has ended in ciam-rs and cannot be reactivated".to_owned(),
                    ));
                    continue;
                }
                (_, ContractStatus::Ended) => ContractChange::End,
                (_, ContractStatus::Suspended) => ContractChange::Suspend,
                (_, ContractStatus::Active) => ContractChange::Resume,
            };
            match ciam
                .organizations()
                .change_contract(principal, &item.crm_contract_id, change)
                .await
            {
                Ok(_) => report.changed.push(item.crm_contract_id),
                Err(ProvisioningError::Store(error)) => return Err(error.into()),
                Err(error) => report
                    .failed
                    .push((item.crm_contract_id, error.to_string())),
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(report),
        }
    }
    Err(ReconcileError::TooManyPages(MAX_RECONCILE_PAGES))
}
