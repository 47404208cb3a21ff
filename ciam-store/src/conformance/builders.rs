//! Test records for the checks: deterministic ids (seeded randomness) and fixed times.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use ciam_core::RandomSource as _;
use ciam_core::SeededRandom;
use ciam_core::authz::Actor;
use ciam_core::contact::{EmailAddress, EmailDomain, PersonName};
use ciam_core::credentials::{Credential, CredentialKind, PasswordHashString};
use ciam_core::events::{DomainEvent, EventKind};
use ciam_core::identities::{Identity, IdentityStatus, Membership, MembershipStatus};
use ciam_core::ids::{
    BusinessRoleId, ContractId, CredentialId, EventId, IdentityId, InvitationId, JoinRequestId,
    MembershipId, OrgRegistrationId, OrganizationId, ServiceId, SessionId, SettingId,
};
use ciam_core::invitations::{Invitation, InvitationKind, InvitationStatus};
use ciam_core::organizations::{
    Branding, Contract, ContractStatus, OrgKind, OrgPolicy, OrgStatus, Organization,
};
use ciam_core::registrations::{Applicant, JoinRequest, OrgRegistration, RequestStatus};
use ciam_core::secrets::TokenHash;
use ciam_core::services::{BusinessRole, Service};
use ciam_core::sessions::{AuthMethod, Session};
use ciam_core::settings::{Setting, SettingKind};

use super::Fail;

/// A valid PHC string (the hash itself is never verified by a store).
const PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY";

/// Builds records for one check.
pub(crate) struct Fixture {
    random: SeededRandom,
}

/// The fixed start of time for every check: 2030-01-01T00:00:00Z.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + TimeDelta::seconds(1_893_456_000)
}

/// `t0()` plus `minutes`.
pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(minutes)
}

/// Parses an email written in a check.
pub(crate) fn email(text: &str) -> Result<EmailAddress, Fail> {
    EmailAddress::parse(text).map_err(|e| Fail(format!("bad test email {text}: {e}")))
}

/// Parses a domain written in a check.
pub(crate) fn domain(text: &str) -> Result<EmailDomain, Fail> {
    EmailDomain::parse(text).map_err(|e| Fail(format!("bad test domain {text}: {e}")))
}

fn name(given: &str, family: &str) -> Result<PersonName, Fail> {
    PersonName::parse(given, family).map_err(|e| Fail(format!("bad test name: {e}")))
}

impl Fixture {
    /// A fixture with its own seeded randomness.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            random: SeededRandom::new(seed),
        }
    }

    /// A random token hash.
    pub(crate) fn token_hash(&self) -> TokenHash {
        let mut bytes = [0u8; 32];
        self.random.fill(&mut bytes);
        TokenHash::from_bytes(bytes)
    }

    /// An active customer organization named `name`, created at `t0`.
    pub(crate) fn organization(&self, name: &str) -> Organization {
        Organization {
            id: OrganizationId::generate(&self.random),
            version: 0,
            kind: OrgKind::Customer,
            status: OrgStatus::Active,
            name: name.to_owned(),
            parent: None,
            crm_account_id: None,
            email_domains: BTreeSet::new(),
            join_code: None,
            branding: Branding::default(),
            policy: OrgPolicy::default(),
            created_at: t0(),
            updated_at: t0(),
        }
    }

    /// An active contract of `organization` with CRM id `crm_id`.
    pub(crate) fn contract(&self, organization: OrganizationId, crm_id: &str) -> Contract {
        Contract {
            id: ContractId::generate(&self.random),
            version: 0,
            organization,
            crm_contract_id: crm_id.to_owned(),
            services: BTreeSet::new(),
            status: ContractStatus::Active,
            valid_from: None,
            valid_until: None,
            access_ended_at: None,
            created_at: t0(),
            updated_at: t0(),
        }
    }

    /// An active identity.
    pub(crate) fn identity(
        &self,
        address: &str,
        given: &str,
        family: &str,
    ) -> Result<Identity, Fail> {
        Ok(Identity {
            id: IdentityId::generate(&self.random),
            version: 0,
            email: email(address)?,
            email_verified: true,
            phone: None,
            phone_verified: false,
            name: name(given, family)?,
            status: IdentityStatus::Active,
            crm_contact_id: None,
            pending_email: None,
            pending_phone: None,
            disabled_reason: None,
            created_at: t0(),
            updated_at: t0(),
        })
    }

    /// An active membership.
    pub(crate) fn membership(
        &self,
        identity: IdentityId,
        organization: OrganizationId,
    ) -> Membership {
        Membership {
            id: MembershipId::generate(&self.random),
            version: 0,
            identity,
            organization,
            status: MembershipStatus::Active,
            business_roles: BTreeSet::new(),
            mandates: BTreeSet::new(),
            staff_roles: BTreeSet::new(),
            crm_lead_id: None,
            created_at: t0(),
            updated_at: t0(),
        }
    }

    /// A service with key `key`.
    pub(crate) fn service(&self, key: &str) -> Service {
        Service {
            id: ServiceId::generate(&self.random),
            version: 0,
            key: key.to_owned(),
            name: format!("Service {key}"),
            app_roles: BTreeSet::from(["read".to_owned()]),
        }
    }

    /// A business role with key `key`.
    pub(crate) fn business_role(&self, key: &str) -> BusinessRole {
        BusinessRole {
            id: BusinessRoleId::generate(&self.random),
            version: 0,
            key: key.to_owned(),
            name: format!("Role {key}"),
            grants: BTreeSet::new(),
        }
    }

    /// A pending member invitation with a fresh token, created at `created_at`.
    pub(crate) fn invitation(
        &self,
        organization: OrganizationId,
        address: &str,
        created_at: DateTime<Utc>,
    ) -> Result<Invitation, Fail> {
        Ok(Invitation {
            id: InvitationId::generate(&self.random),
            version: 0,
            organization,
            email: email(address)?,
            name: None,
            kind: InvitationKind::Member,
            business_roles: BTreeSet::new(),
            mandates: BTreeSet::new(),
            staff_roles: BTreeSet::new(),
            status: InvitationStatus::Pending,
            token_hash: Some(self.token_hash()),
            expires_at: created_at + TimeDelta::days(7),
            invited_by: Actor::System,
            batch: None,
            accepted_by: None,
            created_at,
            updated_at: created_at,
        })
    }

    fn applicant(&self, address: &str) -> Result<Applicant, Fail> {
        Ok(Applicant {
            email: email(address)?,
            name: name("Ann", "Applicant")?,
            phone: None,
            password_hash: PasswordHashString::parse(PHC)
                .map_err(|e| Fail(format!("bad test PHC string: {e}")))?,
            email_challenge: None,
            phone_challenge: None,
            codes_sent: 1,
        })
    }

    /// An organization registration waiting for approval, created at `created_at`.
    pub(crate) fn org_registration(
        &self,
        organization_name: &str,
        created_at: DateTime<Utc>,
    ) -> Result<OrgRegistration, Fail> {
        Ok(OrgRegistration {
            id: OrgRegistrationId::generate(&self.random),
            version: 0,
            organization_name: organization_name.to_owned(),
            business_id: None,
            email_domain: None,
            applicant: self.applicant("applicant@registrant.example")?,
            status: RequestStatus::PendingApproval,
            organization: None,
            created_at,
            updated_at: created_at,
        })
    }

    /// A join request waiting for approval, created at `created_at`.
    pub(crate) fn join_request(
        &self,
        organization: OrganizationId,
        address: &str,
        created_at: DateTime<Utc>,
    ) -> Result<JoinRequest, Fail> {
        Ok(JoinRequest {
            id: JoinRequestId::generate(&self.random),
            version: 0,
            organization,
            applicant: self.applicant(address)?,
            status: RequestStatus::PendingApproval,
            identity: None,
            created_at,
            updated_at: created_at,
        })
    }

    /// A password credential.
    pub(crate) fn password(
        &self,
        identity: IdentityId,
        created_at: DateTime<Utc>,
    ) -> Result<Credential, Fail> {
        Ok(Credential {
            id: CredentialId::generate(&self.random),
            version: 0,
            identity,
            kind: CredentialKind::Password {
                hash: PasswordHashString::parse(PHC)
                    .map_err(|e| Fail(format!("bad test PHC string: {e}")))?,
            },
            created_at,
            updated_at: created_at,
        })
    }

    /// A federated link credential.
    pub(crate) fn federated_link(
        &self,
        identity: IdentityId,
        provider: &str,
        subject: &str,
        created_at: DateTime<Utc>,
    ) -> Credential {
        Credential {
            id: CredentialId::generate(&self.random),
            version: 0,
            identity,
            kind: CredentialKind::FederatedLink {
                provider: provider.to_owned(),
                subject: subject.to_owned(),
            },
            created_at,
            updated_at: created_at,
        }
    }

    /// A live session started at `created_at` with a fresh token.
    pub(crate) fn session(&self, identity: IdentityId, created_at: DateTime<Utc>) -> Session {
        Session {
            id: SessionId::generate(&self.random),
            version: 0,
            token_hash: self.token_hash(),
            identity,
            methods: vec![AuthMethod::Pwd],
            created_at,
            last_seen_at: created_at,
            idle_expires_at: created_at + TimeDelta::minutes(30),
            absolute_expires_at: created_at + TimeDelta::hours(12),
            revoked: None,
        }
    }

    /// A setting of `kind` with `key`, belonging to `organization`, with a small JSON body.
    pub(crate) fn setting(
        &self,
        kind: SettingKind,
        key: &str,
        organization: Option<OrganizationId>,
    ) -> Result<Setting, Fail> {
        Setting::new(
            SettingId::generate(&self.random),
            kind,
            key,
            organization,
            &serde_json::json!({ "key": key, "enabled": true, "urls": ["https://a.example/acs"] }),
            t0(),
        )
        .map_err(|e| Fail(format!("bad test setting {key}: {e}")))
    }

    /// An event about `organization` and/or `identity` at `at`.
    pub(crate) fn event(
        &self,
        organization: Option<OrganizationId>,
        identity: Option<IdentityId>,
        at: DateTime<Utc>,
    ) -> DomainEvent {
        DomainEvent {
            id: EventId::generate(&self.random),
            at,
            actor: Actor::System,
            organization,
            identity,
            kind: EventKind::MembershipActivated,
        }
    }
}
