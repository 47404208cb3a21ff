//! The demo cast, seeded idempotently (a second run keeps what is there and adds what is
//! missing):
//!
//! - the catalog: service `smartplan-app` (SmartPlan Application) with its application roles,
//!   and the business role "Energy manager";
//! - SmartPlan (the provider organization) with **Scott Long**, account manager, and
//!   **Betty Office**, back office;
//! - **City Group, Inc.** (CRM account `ACC-1001`, domain `citygroup.example`) with the active
//!   contract `CON-2001` covering SmartPlan Application; with
//!   [`SeedOptions::city_group_requires_mfa`] its members must use a second factor;
//! - **Jeremy Mills**, City Group's contact person: by default *not yet invited* (the story in
//!   the browser starts with Scott inviting him); [`JeremyAs::ContactPerson`] seeds him as an
//!   active contact person with the demo password instead (page tests use it);
//! - **KOKO Media Inc.**, registered by **Karl Kearnes** (email verified), waiting for back
//!   office approval (unless [`SeedOptions::without_koko_registration`]);
//! - a lead: **Lena Lead** (`LEAD-77`), invited by the CRM into City Group.
//!
//! Every account that can sign in uses [`DEMO_PASSWORD`].

use std::collections::BTreeSet;

use ciam_core::authz::IntegrationScope;
use ciam_core::contact::EmailAddress;
use ciam_core::credentials::Password;
use ciam_core::delivery::{DevMailbox, first_code};
use ciam_core::identities::StaffRole;
use ciam_core::ids::{IdentityId, OrganizationId};
use ciam_core::invitations::{Acceptance, InvitationRequest};
use ciam_core::organizations::{
    ContractStatus, ContractUpsert, OrgKind, OrgPolicy, OrganizationUpsert,
};
use ciam_core::registrations::{OrgRegistrationForm, RequestStatus};
use ciam_core::secrets::OneTimeCode;
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use ciam_core::{Ciam, Principal};

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "harbour-lantern-2026";

/// The service key of SmartPlan Application.
pub const APP_SERVICE: &str = "smartplan-app";
/// City Group's CRM account id.
pub const CITY_GROUP_ACCOUNT: &str = "ACC-1001";
/// City Group's CRM contract id.
pub const CITY_GROUP_CONTRACT: &str = "CON-2001";
/// Scott Long's email.
pub const SCOTT: &str = "scott.long@smartplan.example";
/// Betty Office's email (back office).
pub const BETTY: &str = "betty.office@smartplan.example";
/// Jeremy Mills's email.
pub const JEREMY: &str = "jeremy.mills@citygroup.example";
/// Karl Kearnes's email.
pub const KARL: &str = "karl.kearnes@kokomedia.example";
/// The lead's email.
pub const LENA: &str = "lena.lead@citygroup.example";
/// The lead's CRM lead id.
pub const LENA_LEAD_ID: &str = "LEAD-77";

/// How Jeremy Mills is seeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JeremyAs {
    /// Not yet invited: Scott invites him in the browser (the story).
    #[default]
    NotYetInvited,
    /// An active contact person of City Group with the demo password and the business role
    /// "Energy manager".
    ContactPerson,
}

/// What to seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedOptions {
    /// How Jeremy Mills is seeded.
    pub jeremy: JeremyAs,
    /// City Group requires a second factor of every member at sign-in (`smartplan demo` sets
    /// it; off by default so that page tests sign in with a password alone).
    pub city_group_requires_mfa: bool,
    /// Seed no KOKO Media registration (`smartplan demo --without-koko-registration`: the
    /// browser story registers KOKO Media itself).
    pub without_koko_registration: bool,
}

/// The seeded cast, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cast {
    /// SmartPlan, the provider organization.
    pub provider: OrganizationId,
    /// City Group, Inc.
    pub city_group: OrganizationId,
    /// Scott Long.
    pub scott: IdentityId,
    /// Betty Office.
    pub betty: IdentityId,
    /// Jeremy Mills, when seeded as contact person.
    pub jeremy: Option<IdentityId>,
}

/// Why seeding stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedError {
    /// A step failed.
    #[error("seeding the demo failed at \"{step}\": {message}")]
    Step {
        /// The step.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
}

fn at<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> SeedError {
    move |error| SeedError::Step {
        step,
        message: error.to_string(),
    }
}

fn email(text: &str) -> Result<EmailAddress, SeedError> {
    EmailAddress::parse(text).map_err(at("email"))
}

/// Seeds the cast. `mailbox` is the dev mailbox the façade sends to (Karl's verification code
/// is read from it).
pub async fn seed(
    ciam: &Ciam,
    mailbox: &DevMailbox,
    options: SeedOptions,
) -> Result<Cast, SeedError> {
    let system = Principal::System;
    let store = ciam.store();
    let password = Password::new(DEMO_PASSWORD);

    ciam.catalog()
        .define_service(
            &system,
            ServiceDefinition {
                key: APP_SERVICE.into(),
                name: "SmartPlan Application".into(),
                app_roles: vec![
                    "consumption.read".into(),
                    "consumption.export".into(),
                    "billing.read".into(),
                ],
            },
        )
        .await
        .map_err(at("service"))?;
    ciam.catalog()
        .define_business_role(
            &system,
            BusinessRoleDefinition {
                key: "energy-manager".into(),
                name: "Energy manager".into(),
                grants: vec![
                    (APP_SERVICE.into(), "consumption.read".into()),
                    (APP_SERVICE.into(), "consumption.export".into()),
                ],
            },
        )
        .await
        .map_err(at("business role"))?;
    ciam.catalog()
        .define_business_role(
            &system,
            BusinessRoleDefinition {
                key: "billing-viewer".into(),
                name: "Billing viewer".into(),
                grants: vec![(APP_SERVICE.into(), "billing.read".into())],
            },
        )
        .await
        .map_err(at("business role"))?;

    // SmartPlan and its staff. The provider is found through Scott's membership.
    let scott_email = email(SCOTT)?;
    let existing_scott = store
        .identity_by_email(&scott_email)
        .await
        .map_err(at("find Scott"))?;
    let (provider, scott) = match existing_scott {
        Some(scott) => {
            let memberships = store
                .memberships_of_identity(scott.id)
                .await
                .map_err(at("find SmartPlan"))?;
            let mut provider = None;
            for membership in memberships {
                if let Some(org) = store
                    .organization(membership.organization)
                    .await
                    .map_err(at("find SmartPlan"))?
                    && org.kind == OrgKind::Provider
                {
                    provider = Some(org.id);
                }
            }
            let provider = provider.ok_or_else(|| SeedError::Step {
                step: "find SmartPlan",
                message: "Scott Long exists but is not a member of the provider".into(),
            })?;
            (provider, scott.id)
        }
        None => {
            let provider = ciam
                .organizations()
                .create_provider(&system, "SmartPlan")
                .await
                .map_err(at("create SmartPlan"))?;
            let scott = join_staff(
                ciam,
                provider.id,
                SCOTT,
                ("Scott", "Long"),
                StaffRole::AccountManager,
                &password,
            )
            .await?;
            (provider.id, scott)
        }
    };
    let betty = match store
        .identity_by_email(&email(BETTY)?)
        .await
        .map_err(at("find Betty"))?
    {
        Some(betty) => betty.id,
        None => {
            join_staff(
                ciam,
                provider,
                BETTY,
                ("Betty", "Office"),
                StaffRole::BackOffice,
                &password,
            )
            .await?
        }
    };

    // City Group through the CRM (upserts: repeating them changes nothing).
    let crm = ciam.principals().integration(
        "crm",
        [IntegrationScope::Provisioning, IntegrationScope::Leads],
    );
    let city = ciam
        .organizations()
        .upsert(
            &crm,
            OrganizationUpsert {
                crm_account_id: CITY_GROUP_ACCOUNT.into(),
                name: "City Group, Inc.".into(),
                kind: OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["citygroup.example".into()],
                suspended: false,
            },
        )
        .await
        .map_err(at("City Group"))?;
    ciam.organizations()
        .upsert_contract(
            &crm,
            ContractUpsert {
                crm_contract_id: CITY_GROUP_CONTRACT.into(),
                crm_account_id: CITY_GROUP_ACCOUNT.into(),
                services: vec![APP_SERVICE.into()],
                status: ContractStatus::Active,
                valid_from: None,
                valid_until: None,
            },
        )
        .await
        .map_err(at("City Group contract"))?;
    if options.city_group_requires_mfa && !city.policy.require_mfa {
        ciam.organizations()
            .configure(
                &system,
                city.id,
                city.join_code.clone(),
                city.branding.clone(),
                OrgPolicy {
                    require_mfa: true,
                    ..city.policy.clone()
                },
            )
            .await
            .map_err(at("City Group requires MFA"))?;
    }

    let jeremy = match options.jeremy {
        JeremyAs::NotYetInvited => None,
        JeremyAs::ContactPerson => {
            let existing = store
                .identity_by_email(&email(JEREMY)?)
                .await
                .map_err(at("find Jeremy"))?;
            match existing {
                Some(jeremy) => Some(jeremy.id),
                None => {
                    let issued = ciam
                        .invitations()
                        .invite(
                            &system,
                            city.id,
                            InvitationRequest {
                                email: JEREMY.into(),
                                given_name: Some("Jeremy".into()),
                                family_name: Some("Mills".into()),
                                business_roles: vec!["energy-manager".into()],
                                contact_person: true,
                                ..InvitationRequest::default()
                            },
                        )
                        .await
                        .map_err(at("invite Jeremy"))?;
                    let token = issued.token.ok_or_else(|| SeedError::Step {
                        step: "invite Jeremy",
                        message: "no invitation token".into(),
                    })?;
                    let accepted = ciam
                        .invitations()
                        .accept(
                            &Principal::Anonymous,
                            &token,
                            Acceptance {
                                password: Some(password.clone()),
                                ..Acceptance::default()
                            },
                        )
                        .await
                        .map_err(at("Jeremy accepts"))?;
                    Some(accepted.identity.id)
                }
            }
        }
    };

    // KOKO Media's registration by Karl, verified, waiting for back office.
    let karl_email = email(KARL)?;
    let karl_exists = store
        .identity_by_email(&karl_email)
        .await
        .map_err(at("find Karl"))?
        .is_some();
    let pending = store
        .pending_org_registrations(1000)
        .await
        .map_err(at("find KOKO Media"))?;
    let registered = pending
        .iter()
        .any(|registration| registration.applicant.email.same_as(&karl_email));
    if !options.without_koko_registration && !karl_exists && !registered {
        let registration = ciam
            .registrations()
            .register_organization(
                &Principal::Anonymous,
                OrgRegistrationForm {
                    organization_name: "KOKO Media Inc.".into(),
                    business_id: Some("FI2912345-6".into()),
                    email: KARL.into(),
                    given_name: "Karl".into(),
                    family_name: "Kearnes".into(),
                    phone: None,
                    password: password.clone(),
                },
            )
            .await
            .map_err(at("KOKO Media registers"))?;
        if matches!(registration.status, RequestStatus::AwaitingVerification) {
            let message = mailbox.latest_to(KARL).ok_or_else(|| SeedError::Step {
                step: "KOKO Media verification",
                message: "no verification mail".into(),
            })?;
            let code = first_code(&message.text).ok_or_else(|| SeedError::Step {
                step: "KOKO Media verification",
                message: "no code in the mail".into(),
            })?;
            ciam.registrations()
                .verify_registration(registration.id, &OneTimeCode::from_presented(code), None)
                .await
                .map_err(at("KOKO Media verification"))?;
        }
    }

    // The lead, invited by the CRM (once).
    let lena = email(LENA)?;
    let lena_exists = store
        .identity_by_email(&lena)
        .await
        .map_err(at("find the lead"))?
        .is_some();
    let lena_invited = !store
        .open_invitations_for_email(&lena)
        .await
        .map_err(at("find the lead"))?
        .is_empty();
    if !lena_exists && !lena_invited {
        ciam.invitations()
            .invite(
                &crm,
                city.id,
                InvitationRequest {
                    email: LENA.into(),
                    given_name: Some("Lena".into()),
                    family_name: Some("Lead".into()),
                    crm_lead_id: Some(LENA_LEAD_ID.into()),
                    ..InvitationRequest::default()
                },
            )
            .await
            .map_err(at("invite the lead"))?;
    }

    Ok(Cast {
        provider,
        city_group: city.id,
        scott,
        betty,
        jeremy,
    })
}

/// Invites a member of SmartPlan's staff and accepts for them.
async fn join_staff(
    ciam: &Ciam,
    provider: OrganizationId,
    address: &str,
    (given, family): (&str, &str),
    role: StaffRole,
    password: &Password,
) -> Result<IdentityId, SeedError> {
    let issued = ciam
        .invitations()
        .invite(
            &Principal::System,
            provider,
            InvitationRequest {
                email: address.into(),
                given_name: Some(given.into()),
                family_name: Some(family.into()),
                staff_roles: BTreeSet::from([role]),
                ..InvitationRequest::default()
            },
        )
        .await
        .map_err(at("invite staff"))?;
    let token = issued.token.ok_or_else(|| SeedError::Step {
        step: "invite staff",
        message: "no invitation token".into(),
    })?;
    let accepted = ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            &token,
            Acceptance {
                password: Some(password.clone()),
                ..Acceptance::default()
            },
        )
        .await
        .map_err(at("staff accepts"))?;
    Ok(accepted.identity.id)
}
