#![doc = include_str!("../README.md")]

use ciam_core::events::{DomainEvent, EventKind};

/// Whether the CRM cares about an event: lead registered, customer user registered, contact
/// details changed, membership and roles changed, user deactivated or removed, organization
/// registration submitted and decided, contract changes.
pub fn is_crm_relevant(event: &DomainEvent) -> bool {
    matches!(
        event.kind,
        EventKind::LeadRegistered { .. }
            | EventKind::CustomerUserRegistered { .. }
            | EventKind::ContactDetailsChanged { .. }
            | EventKind::BusinessRolesChanged { .. }
            | EventKind::MandatesChanged { .. }
            | EventKind::MembershipActivated
            | EventKind::MembershipRemoved
            | EventKind::IdentityDisabled { .. }
            | EventKind::IdentityEnabled
            | EventKind::OrgRegistrationSubmitted { .. }
            | EventKind::OrgRegistrationApproved { .. }
            | EventKind::OrgRegistrationRejected { .. }
            | EventKind::AccessRevoked { .. }
    )
}
