//! Pulling contract statuses from a CRM and reconciling them.

use async_trait::async_trait;
use ciam_core::organizations::ContractStatus;
use ciam_crm::commands::{ContractState, UpsertContractRequest};
use ciam_crm::{
    ContractStatusPage, CrmContractStatus, CrmSource, CrmSourceError, reconcile_contracts,
};

use crate::world;

struct Pages(Vec<Vec<CrmContractStatus>>);

#[async_trait]
impl CrmSource for Pages {
    async fn contract_statuses(
        &self,
        cursor: Option<String>,
    ) -> Result<ContractStatusPage, CrmSourceError> {
        let index: usize = cursor.map_or(0, |c| c.parse().unwrap());
        Ok(ContractStatusPage {
            items: self.0.get(index).cloned().unwrap_or_default(),
            next: (index + 1 < self.0.len()).then(|| (index + 1).to_string()),
        })
    }
}

fn status(id: &str, status: ContractStatus) -> CrmContractStatus {
    CrmContractStatus {
        crm_contract_id: id.into(),
        status,
    }
}

#[tokio::test]
async fn reconcile_applies_the_crm_statuses() {
    let w = world().await;
    w.city_group().await;
    for id in ["CON-2", "CON-3"] {
        w.provisioner
            .upsert_contract(
                &w.crm,
                UpsertContractRequest {
                    crm_contract_id: id.into(),
                    crm_account_id: "ACC-1".into(),
                    services: vec!["smartplan-app".into()],
                    status: ContractState::Active,
                    valid_from: None,
                    valid_until: None,
                },
            )
            .await
            .unwrap();
    }
    let source = Pages(vec![
        vec![
            status("CON-1", ContractStatus::Active),
            status("CON-2", ContractStatus::Suspended),
        ],
        vec![
            status("CON-3", ContractStatus::Ended),
            status("CON-404", ContractStatus::Active),
        ],
    ]);
    let report = reconcile_contracts(&w.ciam, &w.crm, &source).await.unwrap();
    assert_eq!(report.checked, 4);
    assert_eq!(report.changed, ["CON-2", "CON-3"]);
    assert_eq!(report.unknown, ["CON-404"]);
    assert!(report.failed.is_empty());
    let store = &w.store;
    assert_eq!(
        store
            .contract_by_crm_id("CON-2")
            .await
            .unwrap()
            .unwrap()
            .status,
        ContractStatus::Suspended
    );
    assert_eq!(
        store
            .contract_by_crm_id("CON-3")
            .await
            .unwrap()
            .unwrap()
            .status,
        ContractStatus::Ended
    );
    // Again: nothing to do; an ended contract shown active is reported, not reactivated.
    let again = reconcile_contracts(
        &w.ciam,
        &w.crm,
        &Pages(vec![vec![
            status("CON-3", ContractStatus::Active),
            status("CON-2", ContractStatus::Suspended),
        ]]),
    )
    .await
    .unwrap();
    assert!(again.changed.is_empty());
    assert_eq!(again.failed.len(), 1);
}
