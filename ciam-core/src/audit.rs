//! The audit log: the domain events, read back by organization, person and time.

use crate::authz::{Action, DenyReason, Principal, Target, authorize};
use crate::ciam::Context;
use crate::store::{EventQuery, StoreError, StoredEvent};

/// Errors reading the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Not allowed.
    #[error(transparent)]
    Denied(#[from] DenyReason),
    /// The organization does not exist.
    #[error("organization not found")]
    UnknownOrganization,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The audit log. Get one from [`crate::Ciam::audit`].
pub struct Audit<'a> {
    pub(crate) ctx: &'a Context,
}

impl Audit<'_> {
    /// Events matching `query`, newest first. An organization's log needs a mandate there (or
    /// staff); a person's own log is theirs to read; everything else is for staff.
    pub async fn events(
        &self,
        principal: &Principal,
        query: EventQuery,
    ) -> Result<Vec<StoredEvent>, AuditError> {
        let decision = match (query.organization, query.identity) {
            (Some(organization), _) => {
                let org = self
                    .ctx
                    .store
                    .organization(organization)
                    .await?
                    .ok_or(AuditError::UnknownOrganization)?;
                self.ctx
                    .authorize_on(principal, Action::ViewAudit, &org)
                    .await?
            }
            (None, Some(identity)) if principal.identity() == Some(identity) => Ok(()),
            (None, _) => authorize(principal, &Action::ViewAudit, &Target::Global).into_result(),
        };
        decision?;
        Ok(self.ctx.store.events(query).await?)
    }
}
