//! A SmartPlan world for tests: the provider, its staff, services and business roles.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use ciam_core::credentials::{Password, PasswordParams};
use ciam_core::delivery::{DevMailbox, DevSmsOutbox, first_code, first_link};
use ciam_core::events::DomainEvent;
use ciam_core::identities::StaffRole;
use ciam_core::ids::{IdentityId, OrganizationId};
use ciam_core::invitations::{Acceptance, InvitationRequest};
use ciam_core::organizations::{ContractStatus, ContractUpsert, Organization, OrganizationUpsert};
use ciam_core::registrations::ContractLookup;
use ciam_core::secrets::{OneTimeCode, SecretToken};
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use ciam_core::store::{EventQuery, Store};
use ciam_core::{Ciam, FixedClock, Policy, Principal, SeededRandom};
use ciam_store::MemoryStore;

pub const APP: &str = "smartplan-app";

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

pub struct World {
    pub ciam: Ciam,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<FixedClock>,
    pub mail: Arc<DevMailbox>,
    pub sms: Arc<DevSmsOutbox>,
    pub provider: Organization,
    /// Scott Long, account manager.
    pub scott: Principal,
    /// Betty Office, back office.
    pub back_office: Principal,
    /// Carl Service, customer service.
    pub customer_service: Principal,
}

/// An invitation of `email` with nothing else.
pub fn request(email: &str) -> InvitationRequest {
    InvitationRequest {
        email: email.into(),
        ..InvitationRequest::default()
    }
}

pub fn password() -> Password {
    Password::new("correct horse battery staple")
}

impl World {
    pub async fn new() -> Self {
        Self::with_lookup(None).await
    }

    pub async fn with_lookup(lookup: Option<Arc<dyn ContractLookup>>) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FixedClock::new(start_time()));
        let mail = Arc::new(DevMailbox::default());
        let sms = Arc::new(DevSmsOutbox::default());
        let policy = Policy {
            password_params: PasswordParams::INSECURE_FAST_FOR_TESTS,
            public_base_url: "https://my.smartplan.example".into(),
            ..Policy::default()
        };
        let mut builder = Ciam::builder()
            .store(store.clone())
            .clock(clock.clone())
            .random(Arc::new(SeededRandom::new(42)))
            .mailer(mail.clone())
            .sms(sms.clone())
            .policy(policy);
        if let Some(lookup) = lookup {
            builder = builder.contract_lookup(lookup);
        }
        let ciam = builder.build().unwrap();
        let system = Principal::System;
        let catalog = ciam.catalog();
        catalog
            .define_service(
                &system,
                ServiceDefinition {
                    key: APP.into(),
                    name: "SmartPlan Application".into(),
                    app_roles: vec![
                        "consumption.read".into(),
                        "consumption.export".into(),
                        "billing.read".into(),
                    ],
                },
            )
            .await
            .unwrap();
        catalog
            .define_service(
                &system,
                ServiceDefinition {
                    key: "smartplan-reports".into(),
                    name: "SmartPlan Reports".into(),
                    app_roles: vec!["reports.view".into()],
                },
            )
            .await
            .unwrap();
        catalog
            .define_business_role(
                &system,
                BusinessRoleDefinition {
                    key: "energy-manager".into(),
                    name: "Energy manager".into(),
                    grants: vec![
                        (APP.into(), "consumption.read".into()),
                        (APP.into(), "consumption.export".into()),
                    ],
                },
            )
            .await
            .unwrap();
        catalog
            .define_business_role(
                &system,
                BusinessRoleDefinition {
                    key: "finance".into(),
                    name: "Finance".into(),
                    grants: vec![(APP.into(), "billing.read".into())],
                },
            )
            .await
            .unwrap();
        catalog
            .define_business_role(
                &system,
                BusinessRoleDefinition {
                    key: "report-reader".into(),
                    name: "Report reader".into(),
                    grants: vec![("smartplan-reports".into(), "reports.view".into())],
                },
            )
            .await
            .unwrap();
        let provider = ciam
            .organizations()
            .create_provider(&system, "SmartPlan")
            .await
            .unwrap();
        let mut world = World {
            ciam,
            store,
            clock,
            mail,
            sms,
            provider,
            scott: Principal::System,
            back_office: Principal::System,
            customer_service: Principal::System,
        };
        world.scott = world
            .staff(
                "scott.long@smartplan.example",
                "Scott",
                "Long",
                StaffRole::AccountManager,
            )
            .await;
        world.back_office = world
            .staff(
                "betty.office@smartplan.example",
                "Betty",
                "Office",
                StaffRole::BackOffice,
            )
            .await;
        world.customer_service = world
            .staff(
                "carl.service@smartplan.example",
                "Carl",
                "Service",
                StaffRole::CustomerService,
            )
            .await;
        world
    }

    async fn staff(&self, email: &str, given: &str, family: &str, role: StaffRole) -> Principal {
        let issued = self
            .ciam
            .invitations()
            .invite(
                &Principal::System,
                self.provider.id,
                InvitationRequest {
                    email: email.into(),
                    given_name: Some(given.into()),
                    family_name: Some(family.into()),
                    staff_roles: BTreeSet::from([role]),
                    ..InvitationRequest::default()
                },
            )
            .await
            .unwrap();
        let accepted = self
            .ciam
            .invitations()
            .accept(
                &Principal::Anonymous,
                &issued.token.unwrap(),
                Acceptance {
                    password: Some(password()),
                    ..Acceptance::default()
                },
            )
            .await
            .unwrap();
        self.principal(accepted.identity.id).await
    }

    pub async fn principal(&self, identity: IdentityId) -> Principal {
        self.ciam.principals().for_identity(identity).await.unwrap()
    }

    /// Scott provisions City Group, Inc. with an active contract for the application.
    pub async fn city_group(&self) -> Organization {
        let org = self
            .ciam
            .organizations()
            .upsert(
                &self.scott,
                OrganizationUpsert {
                    crm_account_id: "ACC-1001".into(),
                    name: "City Group, Inc.".into(),
                    kind: ciam_core::organizations::OrgKind::Customer,
                    parent_crm_account_id: None,
                    email_domains: vec!["citygroup.example".into()],
                    suspended: false,
                },
            )
            .await
            .unwrap();
        self.ciam
            .organizations()
            .upsert_contract(
                &self.scott,
                ContractUpsert {
                    crm_contract_id: "CON-2001".into(),
                    crm_account_id: "ACC-1001".into(),
                    services: vec![APP.into()],
                    status: ContractStatus::Active,
                    valid_from: None,
                    valid_until: None,
                },
            )
            .await
            .unwrap();
        org
    }

    /// Invites and accepts; returns the new member's principal and identity id.
    pub async fn member(
        &self,
        inviter: &Principal,
        org: OrganizationId,
        request: InvitationRequest,
    ) -> (Principal, IdentityId) {
        let email = request.email.clone();
        self.ciam
            .invitations()
            .invite(inviter, org, request)
            .await
            .unwrap();
        let token = self.invitation_token(&email);
        let accepted = self
            .ciam
            .invitations()
            .accept(
                &Principal::Anonymous,
                &token,
                Acceptance {
                    given_name: Some("Given".into()),
                    family_name: Some("Family".into()),
                    password: Some(password()),
                },
            )
            .await
            .unwrap();
        (
            self.principal(accepted.identity.id).await,
            accepted.identity.id,
        )
    }

    /// The token in the newest invitation mail to `email`.
    pub fn invitation_token(&self, email: &str) -> SecretToken {
        let message = self.mail.latest_to(email).expect("an invitation mail");
        let link = first_link(&message.text).expect("a link in the mail");
        let token = link.split("token=").nth(1).expect("a token in the link");
        SecretToken::from_presented(token)
    }

    /// The code in the newest mail to `email`.
    pub fn mail_code(&self, email: &str) -> OneTimeCode {
        let message = self.mail.latest_to(email).expect("a mail");
        OneTimeCode::from_presented(first_code(&message.text).expect("a code"))
    }

    /// The code in the newest SMS to `phone`.
    pub fn sms_code(&self, phone: &str) -> OneTimeCode {
        let message = self.sms.latest_to(phone).expect("an sms");
        OneTimeCode::from_presented(first_code(&message.text).expect("a code"))
    }

    /// All events, oldest first.
    pub async fn events(&self) -> Vec<DomainEvent> {
        let mut events: Vec<_> = self
            .store
            .events(EventQuery {
                limit: 1000,
                ..EventQuery::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|stored| stored.event)
            .collect();
        events.reverse();
        events
    }

    pub async fn event_types(&self) -> Vec<String> {
        self.events()
            .await
            .iter()
            .map(DomainEvent::type_name)
            .collect()
    }
}
