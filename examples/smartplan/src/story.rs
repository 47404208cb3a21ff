//! The SmartPlan story, step by step, through the ciam-core façade.

use std::collections::BTreeSet;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ciam_core::authz::IntegrationScope;
use ciam_core::credentials::Password;
use ciam_core::delivery::{DevMailbox, DevSmsOutbox, first_code, first_link};
use ciam_core::identities::{Mandate, StaffRole};
use ciam_core::ids::OrganizationId;
use ciam_core::invitations::{Acceptance, BatchRowOutcome, InvitationRequest};
use ciam_core::organizations::{
    ContractChange, ContractStatus, ContractUpsert, OrgKind, OrganizationUpsert,
};
use ciam_core::registrations::{OrgRegistrationForm, RegistrationDecision};
use ciam_core::secrets::{OneTimeCode, SecretToken};
use ciam_core::services::{BusinessRoleDefinition, ServiceDefinition};
use ciam_core::sessions::AuthMethod;
use ciam_core::store::{EventQuery, Store};
use ciam_core::{Ciam, Policy, Principal};
use ciam_store::SqlStore;

/// The result of the story walk.
pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn step(number: u32, text: &str) {
    println!("\n{number:>2}. {text}");
}

fn note(text: impl AsRef<str>) {
    println!("    {}", text.as_ref());
}

fn token_in_mail(mail: &DevMailbox, to: &str) -> Result<SecretToken> {
    let message = mail.latest_to(to).ok_or("no mail")?;
    note(format!("mail to {to}: \"{}\"", message.subject));
    let link = first_link(&message.text).ok_or("no link in the mail")?;
    note(format!("link: {}…", &link[..link.len().min(60)]));
    let token = link.split("token=").nth(1).ok_or("no token in the link")?;
    Ok(SecretToken::from_presented(token))
}

fn code_in(text: &str) -> Result<OneTimeCode> {
    Ok(OneTimeCode::from_presented(
        first_code(text).ok_or("no code")?,
    ))
}

/// Invites a member of SmartPlan's staff, accepts for them, and returns their principal.
async fn join_staff(
    ciam: &Ciam,
    provider: OrganizationId,
    email: &str,
    (given, family): (&str, &str),
    role: StaffRole,
    password: &Password,
) -> Result<Principal> {
    let issued = ciam
        .invitations()
        .invite(
            &Principal::System,
            provider,
            InvitationRequest {
                email: email.into(),
                given_name: Some(given.into()),
                family_name: Some(family.into()),
                staff_roles: BTreeSet::from([role]),
                ..InvitationRequest::default()
            },
        )
        .await?;
    let token = issued.token.ok_or("no token")?;
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
        .await?;
    Ok(ciam.principals().for_identity(accepted.identity.id).await?)
}

/// Walks the story through the façade on a fresh SQLite database in `data_dir` and prints
/// each step (`smartplan story`).
pub async fn run(data_dir: &Path) -> Result<()> {
    // A fresh embedded SQLite database each run, so that the story can be walked again.
    std::fs::create_dir_all(data_dir)?;
    let database = data_dir.join("story.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", database.display()));
        if file.exists() {
            std::fs::remove_file(file)?;
        }
    }
    let url = format!("sqlite://{}", database.display());
    let store = Arc::new(SqlStore::open(&url).await?);
    let mail = Arc::new(DevMailbox::default());
    let sms = Arc::new(DevSmsOutbox::default());
    let ciam = Ciam::builder()
        .store(store.clone())
        .mailer(mail.clone())
        .sms(sms.clone())
        .policy(Policy {
            public_base_url: "http://127.0.0.1:8080".into(),
            ..Policy::default()
        })
        .build()?;
    let system = Principal::System;
    let password = Password::new("harbour-lantern-2026");
    println!(
        "SmartPlan story on ciam-rs (SQLite database {}, argon2id with OWASP parameters)",
        database.display()
    );

    step(
        1,
        "SmartPlan defines its services and the business roles people understand",
    );
    ciam.catalog()
        .define_service(
            &system,
            ServiceDefinition {
                key: "smartplan-app".into(),
                name: "SmartPlan Application".into(),
                app_roles: vec![
                    "consumption.read".into(),
                    "consumption.export".into(),
                    "billing.read".into(),
                ],
            },
        )
        .await?;
    ciam.catalog()
        .define_business_role(
            &system,
            BusinessRoleDefinition {
                key: "energy-manager".into(),
                name: "Energy manager".into(),
                grants: vec![
                    ("smartplan-app".into(), "consumption.read".into()),
                    ("smartplan-app".into(), "consumption.export".into()),
                ],
            },
        )
        .await?;
    note(
        "service smartplan-app; business role \"Energy manager\" = consumption.read + consumption.export",
    );
    let provider = ciam
        .organizations()
        .create_provider(&system, "SmartPlan")
        .await?;

    step(2, "Scott Long joins SmartPlan as account manager");
    let scott = join_staff(
        &ciam,
        provider.id,
        "scott.long@smartplan.example",
        ("Scott", "Long"),
        StaffRole::AccountManager,
        &password,
    )
    .await?;
    note("Scott accepted his invitation and set a password");

    step(3, "The CRM provisions City Group, Inc. and its contract");
    let crm = ciam.principals().integration(
        "crm",
        [IntegrationScope::Provisioning, IntegrationScope::Leads],
    );
    let city = ciam
        .organizations()
        .upsert(
            &crm,
            OrganizationUpsert {
                crm_account_id: "ACC-1001".into(),
                name: "City Group, Inc.".into(),
                kind: OrgKind::Customer,
                parent_crm_account_id: None,
                email_domains: vec!["citygroup.example".into()],
                suspended: false,
            },
        )
        .await?;
    ciam.organizations()
        .upsert_contract(
            &crm,
            ContractUpsert {
                crm_contract_id: "CON-2001".into(),
                crm_account_id: "ACC-1001".into(),
                services: vec!["smartplan-app".into()],
                status: ContractStatus::Active,
                valid_from: None,
                valid_until: None,
            },
        )
        .await?;
    note("organization ACC-1001 with contract CON-2001 covering smartplan-app");

    step(
        4,
        "Scott invites Jeremy Mills as City Group's contact person",
    );
    ciam.invitations()
        .invite(
            &scott,
            city.id,
            InvitationRequest {
                email: "jeremy.mills@citygroup.example".into(),
                given_name: Some("Jeremy".into()),
                family_name: Some("Mills".into()),
                business_roles: vec!["energy-manager".into()],
                contact_person: true,
                ..InvitationRequest::default()
            },
        )
        .await?;
    let token = token_in_mail(&mail, "jeremy.mills@citygroup.example")?;

    step(5, "Jeremy opens the link, sets a password, and signs in");
    let jeremy = ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            &token,
            Acceptance {
                password: Some(password.clone()),
                ..Acceptance::default()
            },
        )
        .await?;
    let jeremy_id = jeremy.identity.id;
    let session = ciam
        .sessions()
        .start(jeremy_id, vec![AuthMethod::Pwd])
        .await?;
    let jeremy = ciam.sessions().validate(&session.token).await?.principal;
    let roles = ciam
        .roles()
        .resolve(&system, jeremy_id, "smartplan-app")
        .await?;
    note(format!(
        "Jeremy's roles in SmartPlan Application: {:?}",
        roles.app_roles
    ));

    step(
        6,
        "Jeremy invites colleagues in one batch and delegates service management",
    );
    let (_, outcomes) = ciam
        .invitations()
        .invite_batch(
            &jeremy,
            city.id,
            vec![
                InvitationRequest {
                    email: "mary.major@citygroup.example".into(),
                    business_roles: vec!["energy-manager".into()],
                    ..InvitationRequest::default()
                },
                InvitationRequest {
                    email: "not-an-email".into(),
                    ..InvitationRequest::default()
                },
                InvitationRequest {
                    email: "jeremy.mills@citygroup.example".into(),
                    ..InvitationRequest::default()
                },
            ],
        )
        .await?;
    for outcome in &outcomes {
        let text = match outcome {
            BatchRowOutcome::Invited { .. } => "invited".to_owned(),
            other => format!("{other:?}"),
        };
        note(format!("row: {text}"));
    }
    let token = token_in_mail(&mail, "mary.major@citygroup.example")?;
    let mary = ciam
        .invitations()
        .accept(
            &Principal::Anonymous,
            &token,
            Acceptance {
                given_name: Some("Mary".into()),
                family_name: Some("Major".into()),
                password: Some(password.clone()),
            },
        )
        .await?;
    let app = store
        .service_by_key("smartplan-app")
        .await?
        .ok_or("no service")?;
    ciam.administration()
        .set_mandates(
            &jeremy,
            mary.membership.id,
            BTreeSet::from([Mandate::ServiceManager(app.id)]),
        )
        .await?;
    note("Mary Major now manages the roles of SmartPlan Application in City Group");

    step(7, "Jeremy adds and verifies his phone for SMS codes");
    ciam.profile()
        .request_phone_change(&jeremy, jeremy_id, "+358 40 123 4567")
        .await?;
    let message = sms.latest_to("+358401234567").ok_or("no sms")?;
    note(format!("SMS to +358401234567: \"{}\"", message.text));
    ciam.profile()
        .confirm_phone_change(&jeremy, jeremy_id, &code_in(&message.text)?)
        .await?;
    note("phone verified; the CRM hears ContactDetailsChanged");

    step(
        8,
        "Karl Kearnes registers KOKO Media Inc.; back office approves",
    );
    let registration = ciam
        .registrations()
        .register_organization(
            &Principal::Anonymous,
            OrgRegistrationForm {
                organization_name: "KOKO Media Inc.".into(),
                business_id: None,
                email: "karl.kearnes@kokomedia.example".into(),
                given_name: "Karl".into(),
                family_name: "Kearnes".into(),
                phone: None,
                password: password.clone(),
            },
        )
        .await?;
    let message = mail
        .latest_to("karl.kearnes@kokomedia.example")
        .ok_or("no mail")?;
    ciam.registrations()
        .verify_registration(registration.id, &code_in(&message.text)?, None)
        .await?;
    note("email verified; the registration waits for back office");
    let betty = join_staff(
        &ciam,
        provider.id,
        "betty.office@smartplan.example",
        ("Betty", "Office"),
        StaffRole::BackOffice,
        &password,
    )
    .await?;
    let approved = ciam
        .registrations()
        .decide_registration(&betty, registration.id, RegistrationDecision::Approve)
        .await?;
    note(format!(
        "approved: organization {} created, Karl is its contact person",
        approved
            .organization
            .map(|id| id.to_string())
            .unwrap_or_default()
    ));

    step(
        9,
        "The CRM invites a lead; the lead registers and the CRM hears the lead id",
    );
    ciam.invitations()
        .invite(
            &crm,
            city.id,
            InvitationRequest {
                email: "lena.lead@citygroup.example".into(),
                crm_lead_id: Some("LEAD-77".into()),
                ..InvitationRequest::default()
            },
        )
        .await?;
    let token = token_in_mail(&mail, "lena.lead@citygroup.example")?;
    ciam.invitations()
        .accept(
            &Principal::Anonymous,
            &token,
            Acceptance {
                given_name: Some("Lena".into()),
                family_name: Some("Lead".into()),
                password: Some(password.clone()),
            },
        )
        .await?;

    step(10, "City Group's contract ends: access ends at once");
    ciam.organizations()
        .change_contract(&scott, "CON-2001", ContractChange::End)
        .await?;
    let still = ciam.sessions().validate(&session.token).await.is_ok();
    let roles = ciam
        .roles()
        .resolve(&system, jeremy_id, "smartplan-app")
        .await?;
    note(format!(
        "Jeremy's session still valid: {still}; roles now: {:?}",
        roles.app_roles
    ));

    step(11, "What the CRM hears (the outbox, in order)");
    let mut events = store
        .events(EventQuery {
            limit: 1000,
            ..EventQuery::default()
        })
        .await?;
    events.sort_by_key(|stored| stored.sequence);
    for stored in events {
        note(format!(
            "#{:<3} {}",
            stored.sequence,
            stored.event.type_name()
        ));
    }
    println!(
        "\n{} mails and {} SMS would have been sent. The web pages come with the SmartPlan server.",
        mail.len(),
        sms.messages().len()
    );
    Ok(())
}
